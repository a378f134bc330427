"""Payment-to-webhook latency: from the POST /api/v1/payments response to the payment.success
webhook arriving at the merchant's endpoint, p50 and p99.

    .venv/bin/python bench/latency_bench.py --sequential 50 --rate 50 --seconds 10 --runs 3
    .venv/bin/python bench/latency_bench.py --against f257dd7 --sequential 200 --rate 50 --seconds 10 --runs 5

Each run: a fresh database; the gateway under the launcher's gunicorn command (2 workers × 4
threads, gthread) and one worker.py (its default batch and delivery threads), both in test mode
with TEST_PROCESSING_DELAY=0; the receiver is an HTTP server in this process (the test merchant's
webhook URL). First --sequential payments one after another, then payments started at --rate per
second for --seconds whatever the earlier ones did (open loop). Medians of the runs.
Targets: p50 <= 6 ms, p99 <= 15 ms sequential and <= 20 ms at 50/s.

With --against REV, "no worse than before" is measured paired: REV (checked out in a temporary git
worktree, its own migrations on its own fresh database) runs beside the work tree, both stacks up at
once. The sequential payments alternate between them one by one (new, old, new, old …) and the
open-loop phase fires both at --rate each, interleaved, so a slow spell of a shared machine falls on
both alike. Printed besides the medians: the median of the per-run new/old p50 ratios.
"""
import argparse
import json
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


class Stack:
    """One tree's gateway, worker and fresh database, its webhooks going to `receiver`."""

    def __init__(self, name, root, receiver, log_dir):
        self.name, self.api, self.worker = name, None, None
        db_url = common.fresh_database(f"bench_latency_{name}", root)
        with psycopg.connect(db_url) as c:
            c.execute("UPDATE merchants SET webhook_url = %(url)s WHERE id = %(id)s",
                      {"url": receiver.url, "id": common.TEST_MERCHANT_ID})
        env = common.test_mode_env(db_url)
        log_dir = Path(log_dir) / name
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.api = common.Server("api", env, log_dir, root=root)
            self.worker = common.start_worker(env, log_dir, root=root)
        except BaseException:
            self.stop()
            raise
        self.session = requests.Session()
        self.orders(5)  # warms the connection pools

    def orders(self, n):
        return [self.session.post(f"{self.api.url}/api/v1/orders", json={"amount": 50000},
                                  headers=common.AUTH).json()["id"] for _ in range(n)]

    def pay(self, order_id, session=None):
        """(payment id, monotonic time of the response)."""
        r = (session or self.session).post(f"{self.api.url}/api/v1/payments", headers=common.AUTH,
                                           json={"order_id": order_id, "method": "upi", "vpa": "lat@okbank"})
        t = time.monotonic()
        assert r.status_code == 201, r.text
        return r.json()["id"], t

    def stop(self):
        for p in (self.worker, self.api):
            if p:
                p.stop()


def one_run(args, trees, log_dir):
    """Latencies in ms per tree name: {name: (sequential, at the rate)}. With several trees their
    payments alternate one by one, then fire together at the rate each."""
    receiver = Receiver()
    stacks = []
    try:
        for name, root in trees.items():
            stacks.append(Stack(name, root, receiver, log_dir))
        sequential = {s.name: [] for s in stacks}
        todo = {s.name: s.orders(args.sequential) for s in stacks}
        for i in range(args.sequential):
            for s in (stacks if i % 2 == 0 else stacks[::-1]):  # which goes first alternates
                payment_id, t = s.pay(todo[s.name][i])
                sequential[s.name].append(receiver.arrival(payment_id) - t)
        n = int(args.rate * args.seconds)
        todo = {s.name: s.orders(n) for s in stacks}
        sent, local = {s.name: [] for s in stacks}, threading.local()

        def fire(s, order_id):
            local.s = getattr(local, "s", None) or requests.Session()
            sent[s.name].append(s.pay(order_id, local.s))

        with ThreadPoolExecutor(16) as pool:
            start = time.monotonic()
            for i in range(n):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))  # pacing the load, open loop
                for s in (stacks if i % 2 == 0 else stacks[::-1]):
                    pool.submit(fire, s, todo[s.name][i])
        return {s.name: ([x * 1000 for x in sequential[s.name]],
                         [(receiver.arrival(p) - t) * 1000 for p, t in sent[s.name]]) for s in stacks}
    finally:
        for s in stacks:
            s.stop()
        receiver.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", metavar="REV", help="git revision to run paired with the work tree")
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-latency-")
    trees = {"new": common.ROOT}
    if args.against:
        trees["old"] = Path(log_dir) / "old-tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(trees["old"]), args.against],
                       cwd=common.ROOT, check=True)
    cases = ("sequential", "rate")
    rows = {(tree, case): [] for tree in trees for case in cases}
    try:
        for i in range(args.runs):
            for tree, measured in one_run(args, trees, log_dir).items():
                for case, ms in zip(cases, measured):
                    rows[tree, case].append((common.percentile(ms, 50), common.percentile(ms, 99)))
                print(f"run {i + 1} {tree}: " + "; ".join(
                    f"{case} p50 {rows[tree, case][-1][0]:.1f} ms, p99 {rows[tree, case][-1][1]:.1f} ms"
                    for case in cases), flush=True)
    finally:
        if args.against:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees["old"])], cwd=common.ROOT, check=False)
        common.drop_databases([f"bench_latency_{tree}" for tree in trees])
    print(f"\ngunicorn 2 workers × 4 threads, gthread; one worker.py per tree; TEST_PROCESSING_DELAY=0; "
          f"{args.runs} run(s){', paired with ' + args.against if args.against else ''}; "
          f"{common.pg_settings(common.server_url())}; {common.machine()}\n")
    print("| tree | case | p50 ms, median (runs) | p99 ms, median (runs) | target |\n|---|---|---|---|---|")
    for tree in trees:
        for case, label, goal in (("sequential", f"{args.sequential} sequential payments", "≤ 6 / ≤ 15 ms"),
                                  ("rate", f"payments at {args.rate:g}/s for {args.seconds:g} s", "≤ 6 / ≤ 20 ms")):
            name = "work tree" if tree == "new" else args.against
            print(f"| {name} | {label} | {common.runs([r[0] for r in rows[tree, case]], '.1f')} | "
                  f"{common.runs([r[1] for r in rows[tree, case]], '.1f')} | {goal} |")
    if args.against:
        for case in cases:
            ratios = [n[0] / o[0] for n, o in zip(rows["new", case], rows["old", case])]
            print(f"\n{case}: new/old p50 per run {common.runs(ratios, '.2f')}", end="")
        print()


if __name__ == "__main__":
    main()
