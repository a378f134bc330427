"""Payment-to-webhook latency: from the POST /api/v1/payments response to the payment.success
webhook arriving at the merchant's endpoint, p50 and p99.

    .venv/bin/python bench/latency_bench.py --sequential 500 --rate 50 --seconds 10 --runs 3

Each run: a fresh `bench_latency` database; the gateway under the launcher's gunicorn command
(2 workers × 4 threads, gthread) and one worker.py (its default batch and delivery threads), both
in test mode with TEST_PROCESSING_DELAY=0; the receiver is an HTTP server in this process (the
test merchant's webhook URL). First --warmup payments one after another, right after start-up,
reported apart: the first payments after the processes start are slower than the steady state
that follows, and a short run measured from start-up shows mostly them. Then --sequential
payments one after another, then payments started at --rate per second for --seconds whatever the
earlier ones did (open loop). Medians of the runs.
Targets: p50 <= 6 ms, p99 <= 15 ms sequential and <= 20 ms at 50/s. With --against REV the runs
alternate between the work tree and REV (checked out in a temporary git worktree, its own
migrations on its own fresh database): "no worse than before" measured side by side.
"""
import argparse
import contextlib
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import requests

import common


class Receiver(ThreadingHTTPServer):
    """The merchant's webhook endpoint: the arrival time of each payment.success, by payment id."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.at, self.cond = {}, threading.Condition()
        self.url = f"http://127.0.0.1:{self.server_port}/webhook"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def arrival(self, payment_id, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: payment_id in self.at, timeout):
                raise SystemExit(f"no payment.success webhook for {payment_id} within {timeout} s")
            return self.at[payment_id]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a merchant's server

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        arrived = time.monotonic()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if event["event"] == "payment.success":
            with self.server.cond:
                self.server.at[event["data"]["payment"]["id"]] = arrived
                self.server.cond.notify_all()

    def log_message(self, *args):
        pass


def make_orders(session, base, n):
    return [session.post(f"{base}/api/v1/orders", json={"amount": 50000}, headers=common.AUTH).json()["id"]
            for _ in range(n)]


def pay(session, base, order_id):
    """(payment id, monotonic time of the response)."""
    r = session.post(f"{base}/api/v1/payments", json={"order_id": order_id, "method": "upi", "vpa": "lat@okbank"},
                     headers=common.AUTH)
    t = time.monotonic()
    assert r.status_code == 201, r.text
    return r.json()["id"], t


def one_by_one(session, base, receiver, order_ids):
    """A payment for each order, one after another, each waited for at the receiver: the latencies in s."""
    latencies = []
    for order_id in order_ids:
        payment_id, t = pay(session, base, order_id)
        latencies.append(receiver.arrival(payment_id) - t)
    return latencies


@contextlib.contextmanager
def stack(root, log_dir, db_name):
    """The tree at `root` served on a fresh database `db_name`: its gateway and worker.py, the test
    merchant's webhooks going to a Receiver. Yields (gateway URL, receiver, database URL); stops
    them and drops the database after, also when starting fails."""
    db_url = common.fresh_database(db_name, root)
    receiver, api, worker = Receiver(), None, None
    try:
        with psycopg.connect(db_url) as c:
            c.execute("UPDATE merchants SET webhook_url = %(url)s WHERE id = %(id)s",
                      {"url": receiver.url, "id": common.TEST_MERCHANT_ID})
        env = common.test_mode_env(db_url)
        api = common.Server("api", env, log_dir, root=root)
        worker = common.start_worker(env, log_dir, root=root)
        yield api.url, receiver, db_url
    finally:
        for p in (worker, api):
            if p:
                p.stop()
        receiver.shutdown()
        common.drop_databases([db_name])


def one_run(args, log_dir, root=common.ROOT):
    """Latencies in ms: (the warm-up's, sequential, at the rate), of the tree at `root`."""
    with stack(root, log_dir, "bench_latency") as (base, receiver, _):
        s = requests.Session()
        warmup = one_by_one(s, base, receiver, make_orders(s, base, args.warmup))
        sequential = one_by_one(s, base, receiver, make_orders(s, base, args.sequential))
        orders, sent, local = make_orders(s, base, int(args.rate * args.seconds)), [], threading.local()

        def fire(order_id):
            local.s = getattr(local, "s", None) or requests.Session()
            sent.append(pay(local.s, base, order_id))

        with ThreadPoolExecutor(16) as pool:
            start = time.monotonic()
            for i, order_id in enumerate(orders):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))  # pacing the load, open loop
                pool.submit(fire, order_id)
        rated = [receiver.arrival(payment_id) - t for payment_id, t in sent]
        return [[x * 1000 for x in ms] for ms in (warmup, sequential, rated)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warmup", type=int, default=100, help="sequential payments right after start-up, reported apart")
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", metavar="REV", help="git revision to alternate with the work tree")
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-latency-")
    cases = ("warmup", "sequential", "rate")
    with common.revision_tree(args.against, log_dir) as old_tree:
        trees = {"new": common.ROOT, **({"old": old_tree} if old_tree else {})}
        rows = {(tree, case): [] for tree in trees for case in cases}
        for i in range(args.runs):
            for tree in (list(trees) if i % 2 == 0 else list(reversed(trees))):  # which goes first alternates
                for case, ms in zip(cases, one_run(args, log_dir, trees[tree])):
                    rows[tree, case].append((common.percentile(ms, 50), common.percentile(ms, 99)))
                print(f"run {i + 1} {tree}: " + "; ".join(
                    f"{case} p50 {rows[tree, case][-1][0]:.1f} ms, p99 {rows[tree, case][-1][1]:.1f} ms"
                    for case in cases), flush=True)
    print(f"\ngunicorn 2 workers × 4 threads, gthread; one worker.py; TEST_PROCESSING_DELAY=0; "
          f"{args.runs} run(s){' each, alternated with ' + args.against if args.against else ''}; "
          f"{common.pg_settings(common.server_url())}; {common.machine()}\n")
    print("| tree | case | p50 ms, median (runs) | p99 ms, median (runs) | target |\n|---|---|---|---|---|")
    for tree in trees:
        for case, label, goal in (("warmup", f"the first {args.warmup} payments after start-up, sequential", ""),
                                  ("sequential", f"{args.sequential} sequential payments after those", "≤ 6 / ≤ 15 ms"),
                                  ("rate", f"payments at {args.rate:g}/s for {args.seconds:g} s", "≤ 6 / ≤ 20 ms")):
            name = "work tree" if tree == "new" else args.against
            print(f"| {name} | {label} | {common.runs([r[0] for r in rows[tree, case]], '.1f')} | "
                  f"{common.runs([r[1] for r in rows[tree, case]], '.1f')} | {goal} |")


if __name__ == "__main__":
    main()
