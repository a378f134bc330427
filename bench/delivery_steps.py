"""The database steps between a payment and its webhook, each timed alone: what the worker's
settlement transaction costs (settle, emit payment.success, commit), emitting one event, reading
a queued delivery (load_attempts) and recording a delivered attempt (record_attempts).

    .venv/bin/python bench/delivery_steps.py --rounds 300

Unlike the scripts that time the gateway over HTTP, this one imports it (like explain_pages.py):
it calls the very functions the worker calls, in this process, one at a time on one connection
of the gateway's pool, on a fresh `bench_delivery_steps` database (every migration, the day
partitions made, a merchant with a webhook URL). Medians after the first 50 rounds. Run it in a
worktree of another revision to compare (it copes with the revisions before partitions and
endpoints: `cp bench/delivery_steps.py <worktree>/bench/`).
"""
import argparse
import inspect
import os
import random
import statistics
import string
import sys
import time
import uuid

import common

sys.path.insert(0, str(common.ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    db_url = common.fresh_database("bench_delivery_steps")
    os.environ.update(common.test_mode_env(db_url))
    from app import create_app, db, payments, webhooks
    try:
        from app import partitions
    except ImportError:  # a revision from before webhook_logs was partitioned
        partitions = None
    by_payload = "payloads" in inspect.signature(webhooks.load_attempts).parameters

    app = create_app()
    ident = lambda prefix: prefix + "".join(random.choices(string.ascii_letters + string.digits, k=16))  # noqa: E731
    steps = {"settle + emit + commit": [], "emit one event + commit": [], "load_attempts": [],
             "record_attempts (a success)": []}
    with app.app_context(), db.connect(db.pool()) as c:
        if partitions:
            partitions.ensure(c)
        m = str(uuid.uuid4())
        db.execute(c, "INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret) "
                      "VALUES (%(m)s, 'Bench', %(e)s, %(k)s, 's', 'http://127.0.0.1:9/hook', %(s)s)",
                   {"m": m, "e": f"{m}@bench.invalid", "k": f"key_{m}", "s": webhooks.new_secret()})
        for i in range(args.rounds):
            order, payment = ident("order_"), ident("pay_")
            db.execute(c, "INSERT INTO orders (id, merchant_id, amount) VALUES (%(o)s, %(m)s, 1000)", {"o": order, "m": m})
            db.execute(c, "INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa) "
                          "VALUES (%(p)s, %(o)s, %(m)s, 1000, 'INR', 'upi', 'a@okbank')", {"p": payment, "o": order, "m": m})
            lease = (str(uuid.uuid4()), 30)
            t0 = time.perf_counter()
            with db.transaction(c):
                payments.settle_batch(c, [{"id": 0, "payload": {"payment_id": payment}}], app.config,
                                      lambda events: webhooks.emit_events(c, events, lease=lease))
            t1 = time.perf_counter()
            with db.transaction(c):
                [(job_id, payload, _)] = webhooks.emit_events(c, [(m, "webhook.test", {"n": i})], lease=lease)
            t2 = time.perf_counter()
            webhooks.load_attempts(c, [payload] if by_payload else [payload["log_id"]])
            t3 = time.perf_counter()
            with db.transaction(c):
                webhooks.record_attempts(c, [{"job_id": job_id, "lease": lease[0], "log_id": payload["log_id"],
                                              "created_at": payload.get("created_at"), "status": "success", "wait": None,
                                              "code": 200, "body": "ok"}])
            t4 = time.perf_counter()
            for name, ms in zip(steps, ((t1 - t0), (t2 - t1), (t3 - t2), (t4 - t3))):
                steps[name].append(ms * 1000)
    print(f"\n{args.rounds} rounds, medians after 50; {common.pg_settings(common.server_url())}; {common.machine()}\n")
    print("| step | ms |\n|---|---:|")
    for name, times in steps.items():
        print(f"| {name} | {statistics.median(times[50:]):.2f} |")


if __name__ == "__main__":
    main()
