"""Webhook delivery: deliveries/s from worker.py to a receiver that answers at once, with one
endpoint per merchant and with --endpoints endpoints per merchant, and the delivery lag of a
healthy merchant while another merchant's endpoint hangs.

    .venv/bin/python bench/webhook_bench.py --events 5000 --merchants 10 --endpoints 3 --runs 3

Each run, on a fresh `bench_webhooks` database: --events webhook.test events spread over
--merchants merchants are queued (webhook_logs rows, one per endpoint, and their delivery jobs, by
SQL as the gateway writes them), then one worker.py (its defaults) delivers them to
bench/receiver.py (gunicorn, 1 worker × 32 threads); timed from the first attempt to the last
success. The one-endpoint and the several-endpoint runs alternate. Then two merchants, one
whose endpoint hangs (30 s; the gateway's timeout cuts it) and a healthy one, get one event each
20 times a second for --lag-seconds: the healthy one's lag is created_at to delivery.
Targets: >= 500 deliveries/s; healthy lag p99 < 1 s.
"""
import argparse
import base64
import json
import secrets
import tempfile
import time
import uuid

import psycopg
import requests

import common

EMIT = """
WITH logs AS (
    INSERT INTO webhook_logs (merchant_id, endpoint_id, event, event_id, payload, body, next_retry_at, job_id)
    SELECT t.m, t.e, 'webhook.test', t.i, t.b::jsonb, t.b, now(), nextval('jobs_id_seq')
      FROM unnest(%(m)s::uuid[], %(e)s::text[], %(i)s::text[], %(b)s::text[]) AS t(m, e, i, b)
    RETURNING id, merchant_id, endpoint_id, job_id, created_at)
INSERT INTO jobs (id, kind, payload)
SELECT job_id, 'webhook.deliver', jsonb_build_object('log_id', id, 'merchant_id', merchant_id,
                                                     'endpoint_id', endpoint_id, 'created_at', created_at)
  FROM logs
"""


def start_receiver(log_dir):
    port = common.free_port()
    receiver = common.Process([common.PY, "-m", "gunicorn", "receiver:app", "--chdir", str(common.ROOT / "bench"),
                               "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "32",
                               "--worker-class", "gthread", "--no-control-socket", "--log-level", "warning"],
                              None, "receiver", log_dir)

    def up():
        receiver.check_alive()
        try:
            return requests.post(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    common.wait_until(up, timeout=20, message="receiver")
    return receiver, f"http://127.0.0.1:{port}"


def secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def add_merchants(c, urls, endpoints=1):
    """A merchant per URL, with `endpoints` endpoints to it (the first one is the merchant's URL, as
    the gateway's trigger makes it). Returns {merchant id: [endpoint ids]}."""
    made = {}
    for url in urls:
        mid = str(uuid.uuid4())
        c.execute("INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret) "
                  "VALUES (%(id)s, 'Bench', %(email)s, %(key)s, 's', %(url)s, %(secret)s)",
                  {"id": mid, "email": f"{mid}@bench.invalid", "key": f"key_{mid}", "url": url, "secret": secret()})
        for _ in range(endpoints - 1):
            c.execute("INSERT INTO webhook_endpoints (id, merchant_id, url, secret) VALUES (%(id)s, %(m)s, %(u)s, %(s)s)",
                      {"id": common.new_id("we_"), "m": mid, "u": url, "s": secret()})
        made[mid] = [r[0] for r in c.execute("SELECT id FROM webhook_endpoints WHERE merchant_id = %(m)s", {"m": mid})]
    c.commit()
    return made


def emit(c, merchants, per_merchant):
    """per_merchant webhook.test events for each merchant, one delivery per endpoint, in one transaction."""
    m, e, i, b = [], [], [], []
    for n in range(per_merchant):
        for merchant_id, endpoints in merchants.items():
            event_id = common.new_id("evt_")
            body = json.dumps({"id": event_id, "event": "webhook.test", "timestamp": int(time.time()), "data": {"n": n}})
            for endpoint_id in endpoints:
                m.append(merchant_id)
                e.append(endpoint_id)
                i.append(event_id)
                b.append(body)
    c.execute(EMIT, {"m": m, "e": e, "i": i, "b": b})
    c.commit()


def count(c, sql, **params):
    return c.execute(sql, params).fetchone()[0]


def throughput(args, log_dir, receiver_url, endpoints=1):
    db_url = common.fresh_database("bench_webhooks")
    per = args.events // args.merchants
    with psycopg.connect(db_url) as c:
        emit(c, add_merchants(c, [receiver_url + "/webhook"] * args.merchants, endpoints), per)
    worker = common.start_worker(common.test_mode_env(db_url), log_dir)
    try:
        with psycopg.connect(db_url, autocommit=True) as c:
            common.wait_until(lambda: count(c, "SELECT count(*) FROM webhook_logs WHERE attempts > 0"),
                              timeout=30, interval=0.005, message="first delivery")
            t0 = time.perf_counter()  # from the first claim: the worker's start-up is not delivery time
            total = per * args.merchants * endpoints
            common.wait_until(lambda: count(c, "SELECT count(*) FROM webhook_logs WHERE status = 'success'") == total,
                              timeout=300, interval=0.02, message="all delivered")
            return total / (time.perf_counter() - t0)
    finally:
        worker.stop()


def lag_with_hanging_neighbour(args, log_dir, receiver_url):
    """The healthy merchant's delivery lags in ms."""
    db_url = common.fresh_database("bench_webhooks")
    with psycopg.connect(db_url) as c:
        merchants = add_merchants(c, [receiver_url + "/webhook", receiver_url + "/hang"])
        healthy, hanging = list(merchants)
        worker = common.start_worker(common.test_mode_env(db_url), log_dir)
        try:
            n, end = 0, time.monotonic() + args.lag_seconds
            while time.monotonic() < end:
                emit(c, {hanging: merchants[hanging], healthy: merchants[healthy]}, 1)
                n += 1
                time.sleep(0.05)  # pacing the event source
            c.autocommit = True
            common.wait_until(lambda: count(c, "SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND "
                                               "status = 'success'", m=healthy) == n,
                              timeout=30, message="the healthy merchant's deliveries")
            return [float(r[0]) * 1000 for r in c.execute(
                "SELECT extract(epoch FROM last_attempt_at - created_at) FROM webhook_logs WHERE merchant_id = %(m)s",
                {"m": healthy})]
        finally:
            worker.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--merchants", type=int, default=10)
    ap.add_argument("--endpoints", type=int, default=3, help="endpoints per merchant in the second throughput run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lag-seconds", type=float, default=10)
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-webhooks-")
    receiver, receiver_url = start_receiver(log_dir)
    rates, several, p50, p99 = [], [], [], []
    try:
        for i in range(args.runs):
            rates.append(throughput(args, log_dir, receiver_url))
            several.append(throughput(args, log_dir, receiver_url, args.endpoints))
            lags = lag_with_hanging_neighbour(args, log_dir, receiver_url)
            p50.append(common.percentile(lags, 50))
            p99.append(common.percentile(lags, 99))
            print(f"run {i + 1}: {rates[-1]:.0f} deliveries/s, {several[-1]:.0f} with {args.endpoints} endpoints per "
                  f"merchant; healthy lag p50 {p50[-1]:.1f} ms, p99 {p99[-1]:.1f} ms", flush=True)
    finally:
        receiver.stop()
    print(f"\none worker.py (its defaults), receiver gunicorn 1 × 32 threads; {args.runs} run(s); "
          f"{common.pg_settings(common.server_url())}; {common.machine()}\n")
    print("| measure | median (runs) | target |\n|---|---|---|")
    print(f"| deliveries/s, {args.events} events, {args.merchants} merchants | {common.runs(rates)} | ≥ 500/s |")
    print(f"| … {args.endpoints} endpoints per merchant ({args.endpoints} deliveries per event) | {common.runs(several)} "
          f"({common.median(several) / common.median(rates):.2f}×) | no worse |")
    print(f"| healthy merchant's lag beside a hanging endpoint, p50 ms | {common.runs(p50, '.1f')} | |")
    print(f"| … p99 ms | {common.runs(p99, '.1f')} | < 1 s |")


if __name__ == "__main__":
    main()
