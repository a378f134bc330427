"""Payment-to-webhook latency: from the create-payment response to the payment.success webhook
arriving at a local receiver, with TEST_PROCESSING_DELAY=0 (gunicorn API + worker.py + receiver,
all real processes and real HTTP). 50 sequential payments, then payments created at 50/s.

    python bench/latency_bench.py --sequential 50 --rate 50 --seconds 10 --runs 3
"""
import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg
import requests

import common
from helpers import Api

AUTH = {"X-Api-Key": "key_test_abc123", "X-Api-Secret": "secret_test_xyz789"}


class Arrivals:
    """Receiver side: monotonic arrival time of each payment.success, by payment id."""

    def __init__(self):
        self.rx = common.Receiver()
        self.at = {}
        self.cond = threading.Condition()
        original = self.rx._app

        def app(environ, start_response):
            result = original(environ, start_response)
            with self.rx.cond:
                last = self.rx.requests[-1]
            if last["json"]["event"] == "payment.success":
                with self.cond:
                    self.at[last["json"]["data"]["payment"]["id"]] = last["at"]
                    self.cond.notify_all()
            return result

        self.rx.server.app = app

    def wait(self, payment_id, timeout=10):
        with self.cond:
            self.cond.wait_for(lambda: payment_id in self.at, timeout)
            return self.at.get(payment_id)


def make_orders(session, base, n):
    return [session.post(f"{base}/api/v1/orders", json={"amount": 50000}, headers=AUTH).json()["id"] for _ in range(n)]


def create_payment(session, base, order_id):
    r = session.post(f"{base}/api/v1/payments", json={"order_id": order_id, "method": "upi", "vpa": "lat@okbank"},
                     headers=AUTH)
    t = time.monotonic()
    assert r.status_code == 201, r.text
    return r.json()["id"], t


def one_run(args, log_dir):
    url = common.fresh_database("bench_latency")
    arrivals = Arrivals()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("UPDATE merchants SET webhook_url = %s WHERE api_key = 'key_test_abc123'", (arrivals.rx.url,))
    env = common.worker_env(url, WEB_CONCURRENCY=2)
    api = Api(env, log_dir, workers=2, threads=4)
    worker = common.start_worker(env, log_dir)
    try:
        common.wait_for_heartbeat(url, worker.proc.pid)
        s = requests.Session()
        base = api.url
        make_orders(s, base, 5)  # warm the pools
        seq = []
        for order_id in make_orders(s, base, args.sequential):
            pid, t = create_payment(s, base, order_id)
            arrived = arrivals.wait(pid)
            assert arrived, f"no webhook for {pid}"
            seq.append((arrived - t) * 1000)
        # Open loop at a fixed rate: a request is started every 1/rate s whatever the previous did.
        n = int(args.rate * args.seconds)
        orders = make_orders(s, base, n)
        sent = []
        local = threading.local()

        def fire(order_id):
            if not hasattr(local, "s"):
                local.s = requests.Session()
            sent.append(create_payment(local.s, base, order_id))

        with ThreadPoolExecutor(16) as pool:
            start = time.monotonic()
            for i, order_id in enumerate(orders):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load generator, not synchronisation
                pool.submit(fire, order_id)
        rated = []
        for pid, t in sent:
            arrived = arrivals.wait(pid)
            assert arrived, f"no webhook for {pid}"
            rated.append((arrived - t) * 1000)
        # Memory after the load: each gunicorn worker process and the worker.
        api_workers = psutil.Process(api.process.proc.pid).children()
        return {"sequential_ms": seq, "rated_ms": rated,
                "api_worker_rss_mb": max(p.memory_info().rss for p in api_workers) / 2**20,
                "worker_rss_mb": psutil.Process(worker.proc.pid).memory_info().rss / 2**20}
    finally:
        worker.stop()
        api.stop()
        arrivals.rx.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-latency-")
    runs = []
    for i in range(args.runs):
        r = one_run(args, log_dir)
        row = {"seq_p50": common.percentile(r["sequential_ms"], 50), "seq_p99": common.percentile(r["sequential_ms"], 99),
               "rate_p50": common.percentile(r["rated_ms"], 50), "rate_p99": common.percentile(r["rated_ms"], 99),
               "api_rss": r["api_worker_rss_mb"], "worker_rss": r["worker_rss_mb"]}
        runs.append(row)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f} {'MB' if k.endswith('rss') else 'ms'}" for k, v in row.items()),
              flush=True)
    med = {k: common.median([r[k] for r in runs]) for k in runs[0]}
    lines = ["| case | p50 (median of runs) | p99 (median of runs) | target | runs (p50/p99 ms) |", "|---|---|---|---|---|",
             f"| 50 sequential payments | {med['seq_p50']:.1f} ms | {med['seq_p99']:.1f} ms | ≤ 6 / ≤ 15 ms | "
             + "; ".join(f"{r['seq_p50']:.1f}/{r['seq_p99']:.1f}" for r in runs) + " |",
             f"| payments at {args.rate:.0f}/s for {args.seconds:.0f} s | {med['rate_p50']:.1f} ms | {med['rate_p99']:.1f} ms"
             f" | ≤ 6 / ≤ 20 ms | " + "; ".join(f"{r['rate_p50']:.1f}/{r['rate_p99']:.1f}" for r in runs) + " |"]
    lines += ["", f"Set-up: gunicorn 2 workers × 4 threads (gthread), one worker.py (batch 200, 16 delivery threads), "
              f"TEST_MODE with TEST_PROCESSING_DELAY=0, the receiver in the benchmark process; the test merchant "
              f"also gets its payment.created events. Memory after the run: largest gunicorn worker "
              f"{max(r['api_rss'] for r in runs):.0f} MB RSS, worker.py {max(r['worker_rss'] for r in runs):.0f} MB RSS."]
    print("\n".join(lines))
    common.write_result("latency.md", "\n".join(lines) + "\n")
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "latency.json").write_text(json.dumps({"machine": common.machine(), "runs": runs,
                                                             "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
