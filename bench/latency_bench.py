"""Payment-to-webhook latency: from the POST /api/v1/payments response to the payment.success
webhook arriving at the merchant's endpoint, p50 and p99.

    .venv/bin/python bench/latency_bench.py --sequential 50 --rate 50 --seconds 10 --runs 3

Each run: a fresh `bench_latency` database; the gateway under the launcher's gunicorn command
(2 workers × 4 threads, gthread) and one worker.py (its default batch and delivery threads), both
in test mode with TEST_PROCESSING_DELAY=0; the receiver is an HTTP server in this process (the
test merchant's webhook URL). First --sequential payments one after another, then payments started
at --rate per second for --seconds whatever the earlier ones did (open loop). Medians of the runs.
Targets: p50 <= 6 ms, p99 <= 15 ms sequential and <= 20 ms at 50/s.
"""
import argparse
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


def one_run(args, log_dir):
    """Latencies in ms: (sequential, at the rate)."""
    db_url = common.fresh_database("bench_latency")
    receiver = Receiver()
    with psycopg.connect(db_url) as c:
        c.execute("UPDATE merchants SET webhook_url = %(url)s WHERE id = %(id)s",
                  {"url": receiver.url, "id": common.TEST_MERCHANT_ID})
    env = common.test_mode_env(db_url)
    api = worker = None
    try:
        api = common.Server("api", env, log_dir)
        worker = common.start_worker(env, log_dir)
        s = requests.Session()
        make_orders(s, api.url, 5)  # warms the connection pools
        sequential = []
        for order_id in make_orders(s, api.url, args.sequential):
            payment_id, t = pay(s, api.url, order_id)
            sequential.append(receiver.arrival(payment_id) - t)
        orders, sent, local = make_orders(s, api.url, int(args.rate * args.seconds)), [], threading.local()

        def fire(order_id):
            local.s = getattr(local, "s", None) or requests.Session()
            sent.append(pay(local.s, api.url, order_id))

        with ThreadPoolExecutor(16) as pool:
            start = time.monotonic()
            for i, order_id in enumerate(orders):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))  # pacing the load, open loop
                pool.submit(fire, order_id)
        rated = [receiver.arrival(payment_id) - t for payment_id, t in sent]
        return [x * 1000 for x in sequential], [x * 1000 for x in rated]
    finally:
        for p in (worker, api):
            if p:
                p.stop()
        receiver.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-latency-")
    rows = {"sequential": [], "rate": []}
    for i in range(args.runs):
        for name, ms in zip(rows, one_run(args, log_dir)):
            rows[name].append((common.percentile(ms, 50), common.percentile(ms, 99)))
        print(f"run {i + 1}: " + "; ".join(f"{name} p50 {v[-1][0]:.1f} ms, p99 {v[-1][1]:.1f} ms"
                                           for name, v in rows.items()), flush=True)
    print(f"\ngunicorn 2 workers × 4 threads, gthread; one worker.py; TEST_PROCESSING_DELAY=0; "
          f"{args.runs} run(s); {common.pg_settings(common.server_url())}; {common.machine()}\n")
    print("| case | p50 ms, median (runs) | p99 ms, median (runs) | target |\n|---|---|---|---|")
    for name, label, goal in (("sequential", f"{args.sequential} sequential payments", "≤ 6 / ≤ 15 ms"),
                              ("rate", f"payments at {args.rate:g}/s for {args.seconds:g} s", "≤ 6 / ≤ 20 ms")):
        print(f"| {label} | {common.runs([r[0] for r in rows[name]], '.1f')} | "
              f"{common.runs([r[1] for r in rows[name]], '.1f')} | {goal} |")


if __name__ == "__main__":
    main()
