"""Webhook delivery: deliveries/s from worker.py to a local receiver that answers at once, and the
delivery lag of a healthy merchant while another merchant's endpoint hangs.

    python bench/webhook_bench.py --events 5000 --merchants 10 --runs 3
"""
import argparse
import json
import sys
import tempfile
import time
import uuid

import psycopg

import common
from app import db as app_db, webhooks
from app.pg import text


def start_receiver(log_dir):
    port = common.free_port()
    p = common.Process([sys.executable, "-m", "gunicorn", "receiver:app", "--chdir", str(common.ROOT / "bench"),
                        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "32", "--worker-class",
                        "gthread", "--no-control-socket", "--log-level", "warning"], None, "receiver", log_dir)
    import requests

    common.wait_until(lambda: _up(requests, port), timeout=20, message="receiver")
    return p, f"http://127.0.0.1:{port}"


def _up(requests, port):
    try:
        return requests.post(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def add_merchants(pool, urls):
    ids = []
    with pool.begin() as c:
        for url in urls:
            mid = str(uuid.uuid4())
            c.execute(text("INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret) "
                           "VALUES (:id, 'Bench', :e, :k, 's', :u, :w)"),
                      {"id": mid, "e": f"{mid}@bench", "k": f"key_{mid}", "u": url, "w": webhooks.new_secret()})
            ids.append(mid)
    return ids


def emit(pool, merchant_ids, per_merchant):
    with pool.begin() as c:
        webhooks.emit_events(c, [(m, "webhook.test", {"n": i}) for i in range(per_merchant) for m in merchant_ids])


def throughput(args, log_dir, receiver_url):
    url = common.fresh_database("bench_webhooks")
    pool = app_db.make_pool(url)
    merchants = add_merchants(pool, [receiver_url + "/webhook"] * args.merchants)
    emit(pool, merchants, args.events // args.merchants)
    n = (args.events // args.merchants) * args.merchants
    worker = common.start_worker(common.worker_env(url), log_dir)
    try:
        with psycopg.connect(url, autocommit=True) as c:
            # Timed from the worker's first claim (its start-up is not delivery time).
            common.wait_until(lambda: c.execute("SELECT count(*) FROM webhook_logs WHERE attempts > 0").fetchone()[0],
                              timeout=30, interval=0.005, message="first delivery")
            t0 = time.perf_counter()
            common.wait_until(lambda: c.execute("SELECT count(*) FROM webhook_logs WHERE status = 'success'"
                                                ).fetchone()[0] == n, timeout=300, interval=0.02, message="all delivered")
            seconds = time.perf_counter() - t0
            first_to_last = c.execute("SELECT extract(epoch FROM max(last_attempt_at) - min(last_attempt_at)) "
                                      "FROM webhook_logs").fetchone()[0]
        return {"deliveries": n, "seconds": seconds, "per_s": n / seconds,
                "per_s_db_clock": n / float(first_to_last) if first_to_last else None}
    finally:
        worker.stop()
        pool.dispose()


def lag_with_hanging_neighbour(args, log_dir, receiver_url):
    url = common.fresh_database("bench_webhooks")
    pool = app_db.make_pool(url)
    healthy, hanging = add_merchants(pool, [receiver_url + "/webhook", receiver_url + "/hang"])
    worker = common.start_worker(common.worker_env(url), log_dir)
    try:
        common.wait_for_heartbeat(url, worker.proc.pid)
        end = time.monotonic() + args.lag_seconds
        i = 0
        while time.monotonic() < end:
            emit(pool, [hanging, healthy], 1)  # one event each, 20 times a second
            i += 1
            time.sleep(0.05)  # pacing the event source, not synchronisation
        with psycopg.connect(url, autocommit=True) as c:
            common.wait_until(lambda: c.execute("SELECT count(*) FROM webhook_logs WHERE merchant_id = %s AND "
                                                "status = 'success'", (healthy,)).fetchone()[0] == i,
                              timeout=30, message="healthy merchant's deliveries")
            lags = [float(r[0]) * 1000 for r in c.execute(
                "SELECT extract(epoch FROM last_attempt_at - created_at) FROM webhook_logs WHERE merchant_id = %s",
                (healthy,))]
        return {"events": i, "p50_ms": common.percentile(lags, 50), "p99_ms": common.percentile(lags, 99),
                "max_ms": max(lags)}
    finally:
        worker.stop()
        pool.dispose()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--merchants", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lag-seconds", type=float, default=10)
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-webhooks-")
    receiver, receiver_url = start_receiver(log_dir)
    try:
        tp, lag = [], []
        for i in range(args.runs):
            tp.append(throughput(args, log_dir, receiver_url))
            lag.append(lag_with_hanging_neighbour(args, log_dir, receiver_url))
            print(f"run {i + 1}: {tp[-1]['per_s']:.0f} deliveries/s; healthy lag p50 {lag[-1]['p50_ms']:.1f} ms "
                  f"p99 {lag[-1]['p99_ms']:.1f} ms", flush=True)
    finally:
        receiver.stop()
    med_tp = common.median([r["per_s"] for r in tp])
    med_p50 = common.median([r["p50_ms"] for r in lag])
    med_p99 = common.median([r["p99_ms"] for r in lag])
    lines = ["| measure | median | runs | target |", "|---|---|---|---|",
             f"| deliveries/s ({args.events} events, {args.merchants} merchants, receiver answers at once) | "
             f"{med_tp:.0f}/s | " + ", ".join(f"{r['per_s']:.0f}" for r in tp) + " | ≥ 500/s |",
             f"| healthy merchant's delivery lag while another's endpoint hangs, p50 | {med_p50:.1f} ms | "
             + ", ".join(f"{r['p50_ms']:.1f}" for r in lag) + " | |",
             f"| … p99 | {med_p99:.1f} ms | " + ", ".join(f"{r['p99_ms']:.1f}" for r in lag) + " | < 1 s |"]
    print("\n".join(lines))
    common.write_result("webhooks.md", "\n".join(lines) + "\n")
    (common.RESULTS / "webhooks.json").write_text(json.dumps({"machine": common.machine(), "throughput": tp,
                                                              "lag": lag}, indent=2))


if __name__ == "__main__":
    main()
