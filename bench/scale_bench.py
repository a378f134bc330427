"""How the latency of list and dashboard pages grows with one merchant's history.

    .venv/bin/python bench/scale_bench.py --sizes 10000,1000000 [--explain]

For each size N, a fresh `bench_scale_<N>` database whose test merchant gets, by SQL alone (one
INSERT … SELECT over generate_series per table, every constraint and index of schema.sql in
place, then VACUUM ANALYZE): N payments at 11,000 a day up to the start of the seeding (N = 1M
covers 91 days, 10M 2.5 years), each with its own order (`paid` for a successful payment); 88 %
success, 12 % failed, pending and processing in the last five minutes; 60 % UPI, 40 % cards;
a processed refund for 1 in 20 successful payments, 10 minutes to 10 hours after it; one
delivered webhook log of about 640 bytes per payment of the last 30 days. Then rollups.seal()
when app/rollups.py exists, and the gateway under the launcher's gunicorn command (2 workers ×
4 threads, gthread), one server per size. Each page is fetched sequentially on keep-alive
connections, at every size in turn (the sizes alternate), 3 warm-ups then 15 timed requests;
the median is kept. Printed: one row per page, its milliseconds at each
size and the ratio largest/smallest. Exit status 1 when a page answered anything but 200. The
`to=<now-80d>` rows find nothing below 880,000 payments (80 days): there they time the index
seek alone.

--explain prints EXPLAIN (ANALYZE, BUFFERS) of every statement the pages run at the largest size
(bench/explain_pages.py calls the gateway's own functions) and fails when one reads a whole table;
the gateway's prepared statements may switch to a generic plan after their fifth run.
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time

import psycopg
import requests

import common

PER_DAY = 11_000
EMAIL, PASSWORD = "test@example.com", "password"  # the test merchant's dashboard sign-in (app/config.py)
WARMUPS, TIMED = 3, 15
OLD_DAYS = 80  # the `to=` window: payments older than this

B36 = "'0123456789abcdefghijklmnopqrstuvwxyz'"


def id_minute(ts):
    """SQL for the 5 base-36 digits of the minute of `ts` since 2025-01-01 that start an id (app/ids.py)."""
    m = f"greatest(0, floor((extract(epoch FROM {ts}) - 1735689600) / 60))::bigint"
    return " || ".join(f"substr({B36}, (({m} / {36 ** d}) %% 36)::int + 1, 1)" for d in (4, 3, 2, 1, 0))


# One row per payment i: its time (11,000 a day, the newest at t0), order time, status, method,
# amount and the 11 trailing id characters (unique: i in hex). `r` is a deterministic pseudo-random
# number in 0 … 2^32 from which the attributes are read.
SERIES = f"""
    SELECT i, ts, ts - interval '20 seconds' AS o_ts, r,
           CASE WHEN ts > %(t0)s::timestamptz - interval '5 minutes'
                     THEN CASE WHEN i %% 2 = 0 THEN 'pending' ELSE 'processing' END
                WHEN r %% 1000 < 880 THEN 'success' ELSE 'failed' END AS status,
           CASE WHEN (r / 1000) %% 10 < 6 THEN 'upi' ELSE 'card' END AS method,
           (100 + (r / 1000) %% 499900)::int AS amount,
           substr(md5(i::text), 1, 3) || lpad(to_hex(i), 8, '0') AS tail
      FROM generate_series(1, %(n)s::bigint) AS i,
           LATERAL (SELECT %(t0)s::timestamptz - make_interval(secs => ((%(n)s - i) * 86400.0 / {PER_DAY})::float8) AS ts,
                           hashint8(i)::bigint + 2147483648 AS r) AS x
"""

SEED = {
    "orders": f"""
        INSERT INTO orders (id, merchant_id, amount, currency, receipt, status, created_at, updated_at)
        SELECT 'order_' || {id_minute('o_ts')} || tail, %(m)s, amount, 'INR', 'rcpt_' || i,
               CASE WHEN status = 'success' THEN 'paid' ELSE 'created' END, o_ts,
               CASE WHEN status = 'success' THEN ts + interval '6 seconds' ELSE o_ts END
          FROM ({SERIES}) AS s
    """,
    "payments": f"""
        INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, status, vpa, card_network,
                              card_last4, error_code, error_description, captured, created_at, updated_at)
        SELECT 'pay_' || {id_minute('ts')} || tail, 'order_' || {id_minute('o_ts')} || tail, %(m)s, amount, 'INR',
               method, status,
               CASE WHEN method = 'upi' THEN 'cust' || (i %% 100000) || '@okaxis' END,
               CASE WHEN method = 'card' THEN (ARRAY['visa', 'mastercard', 'rupay', 'amex'])[((r / 100000) %% 4 + 1)::int] END,
               CASE WHEN method = 'card' THEN lpad(((r / 7) %% 10000)::text, 4, '0') END,
               CASE WHEN status = 'failed' THEN 'PAYMENT_FAILED' END,
               CASE WHEN status = 'failed' AND method = 'upi' THEN 'UPI transaction declined by the payer''s bank'
                    WHEN status = 'failed' THEN 'Card declined by the issuing bank' END,
               status = 'success' AND i %% 2 = 0, ts,
               CASE WHEN status IN ('success', 'failed') THEN ts + interval '6 seconds' ELSE ts END
          FROM ({SERIES}) AS s
    """,
    # 1 in 20 successful payments, in full or half, 10 minutes to 10 hours later (a payment whose
    # refund would come after t0 has none yet).
    "refunds": f"""
        INSERT INTO refunds (id, payment_id, merchant_id, amount, reason, status, created_at, processed_at, receipt)
        SELECT 'rfnd_' || {id_minute('rt')} || substr(p.id, 10), p.id, p.merchant_id,
               CASE WHEN h %% 2 = 0 THEN p.amount ELSE greatest(p.amount / 2, 1) END,
               'customer request', 'processed', rt, rt + interval '4 seconds', 'rf_' || substr(p.id, 10)
          FROM payments p,
               LATERAL (SELECT hashtext(p.id) AS h) AS x,
               LATERAL (SELECT p.created_at + (1 + ((h >> 10) & 63)) * interval '10 minutes' AS rt) AS y
         WHERE p.merchant_id = %(m)s AND p.status = 'success' AND (h & 1023) < 51 AND rt <= %(t0)s::timestamptz
    """,
    # The event a payment's last change emitted, as the worker would have delivered it.
    "webhook_logs": """
        INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, attempts, last_attempt_at,
                                  response_code, response_body, created_at)
        SELECT p.merchant_id, ev, 'evt_' || substr(p.id, 5), body::jsonb, body, 'success', 1,
               p.updated_at + interval '40 milliseconds', 200, '{"received":true}', p.updated_at
          FROM payments p,
               LATERAL (SELECT CASE p.status WHEN 'success' THEN 'payment.success' WHEN 'failed' THEN 'payment.failed'
                               ELSE 'payment.created' END AS ev) AS e,
               LATERAL (SELECT json_build_object(
                   'id', 'evt_' || substr(p.id, 5), 'event', ev, 'timestamp', extract(epoch FROM p.updated_at)::bigint,
                   'data', json_build_object('payment', json_build_object(
                       'id', p.id, 'entity', 'payment', 'order_id', p.order_id, 'merchant_id', p.merchant_id,
                       'amount', p.amount, 'currency', p.currency, 'method', p.method, 'status', p.status,
                       'vpa', p.vpa, 'card_network', p.card_network, 'card_last4', p.card_last4,
                       'captured', p.captured, 'error_code', p.error_code, 'error_description', p.error_description,
                       'notes', json_build_object('customer_ref', 'cust_' || substr(md5(p.id), 1, 20),
                                                  'channel', 'web-checkout'),
                       'created_at', to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                       'updated_at', to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
               )::text AS body) AS b
         WHERE p.merchant_id = %(m)s AND p.created_at >= %(t0)s::timestamptz - interval '30 days'
    """,
}


def seed(db_url, n):
    """The merchant's history of n payments; {table: (rows, seconds)} and the total seconds."""
    done, start = {}, time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as c:
        # One instant for every statement, so a payment's order id is computed the same in both.
        params = {"n": n, "m": common.TEST_MERCHANT_ID, "t0": c.execute("SELECT now()").fetchone()[0]}
        c.execute("SET maintenance_work_mem = '256MB'")  # this session's VACUUM and nothing else
        for table, sql in SEED.items():
            t = time.monotonic()
            rows = c.execute(sql, params).rowcount
            done[table] = (rows, time.monotonic() - t)
            print(f"  {table}: {rows:,} rows in {done[table][1]:.1f} s", flush=True)
        t = time.monotonic()
        c.execute("VACUUM (ANALYZE) orders, payments, refunds, webhook_logs")
        done["VACUUM ANALYZE"] = (None, time.monotonic() - t)
        print(f"  VACUUM ANALYZE in {done['VACUUM ANALYZE'][1]:.1f} s", flush=True)
        size = c.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    total = time.monotonic() - start
    print(f"  seeded {n:,} payments in {total:.1f} s; database {size}", flush=True)
    return done, total


def seal_rollups(db_url):
    """rollups.seal() as the gateway would run it, in a process of its own; seconds, or None without app/rollups.py."""
    if not (common.ROOT / "app" / "rollups.py").exists():
        print("  app/rollups.py does not exist on this tree: no rollups sealed", flush=True)
        return None
    code = ("from app import create_app, db, rollups\n"
            "app = create_app()\n"
            "with app.app_context(), db.connect(db.pool()) as c:\n"
            "    rollups.seal(c)\n")
    t = time.monotonic()
    subprocess.run([common.PY, "-c", code], env=common.app_env(db_url), cwd=common.ROOT, check=True)
    seconds = time.monotonic() - t
    print(f"  rollups.seal() in {seconds:.1f} s", flush=True)
    return seconds


def landmarks(db_url):
    """Ids the pages need: the payment just before now-OLD_DAYS (or the oldest), for the dashboard's
    page that far back, and a recent refunded payment with webhook logs, for a payment's page."""
    with psycopg.connect(db_url) as c:
        old = c.execute("SELECT id FROM payments WHERE merchant_id = %(m)s ORDER BY created_at <= now() - %(d)s * interval '1 day' "
                        "DESC, created_at DESC LIMIT 1", {"m": common.TEST_MERCHANT_ID, "d": OLD_DAYS}).fetchone()[0]
        refunded = c.execute("SELECT payment_id FROM refunds WHERE merchant_id = %(m)s ORDER BY created_at DESC LIMIT 1",
                             {"m": common.TEST_MERCHANT_ID}).fetchone()[0]
    return {"old": old, "refunded": refunded}


def pages(n, ids=None):
    """(label, path, API or dashboard, reported only) for a merchant with n payments; ids from
    landmarks() (None: for the labels alone)."""
    old = int(time.time()) - OLD_DAYS * 86400
    ids = ids or {"old": "", "refunded": ""}
    return [
        ("GET /api/v1/orders?count=10", "/api/v1/orders?count=10", "api", False),
        ("GET /api/v1/payments?count=10", "/api/v1/payments?count=10", "api", False),
        ("GET /api/v1/payments?count=10&status=failed", "/api/v1/payments?count=10&status=failed", "api", False),
        ("GET /api/v1/refunds?count=10", "/api/v1/refunds?count=10", "api", False),
        ("GET /api/v1/webhooks?count=10", "/api/v1/webhooks?count=10", "api", False),
        (f"GET /api/v1/payments?count=10&to=<now-{OLD_DAYS}d>", f"/api/v1/payments?count=10&to={old}", "api", False),
        (f"GET /api/v1/orders?count=10&to=<now-{OLD_DAYS}d>", f"/api/v1/orders?count=10&to={old}", "api", False),
        ("GET /api/v1/payments?count=10&skip=<N-20>", f"/api/v1/payments?count=10&skip={max(n - 20, 0)}",
         "api", True),
        ("GET /dashboard", "/dashboard", "dashboard", False),
        ("GET /dashboard/transactions", "/dashboard/transactions", "dashboard", False),
        ("GET /dashboard/transactions?status=failed", "/dashboard/transactions?status=failed", "dashboard", False),
        ("GET /dashboard/webhooks", "/dashboard/webhooks", "dashboard", False),
        (f"GET /dashboard/transactions?before=<a payment {OLD_DAYS}d back>", f"/dashboard/transactions?before={ids['old']}",
         "dashboard", False),
        ("GET /dashboard/transactions/<a refunded payment>", f"/dashboard/transactions/{ids['refunded']}", "dashboard", False),
        # The search box, by kind (the seeding's VPAs are cust<i % 100000>@okaxis, its receipts rcpt_<i>).
        ("GET /dashboard/transactions?q=<a VPA>", "/dashboard/transactions?q=cust4242@okaxis", "dashboard", False),
        ("GET /dashboard/transactions?q=<card last 4>", "/dashboard/transactions?q=4242", "dashboard", False),
        ("GET /dashboard/transactions?q=<a receipt>", "/dashboard/transactions?q=rcpt_5000", "dashboard", False),
        (f"GET /dashboard/transactions?status=failed&from=<{OLD_DAYS}d back>&to=<a week later>",
         f"/dashboard/transactions?status=failed&from={day(OLD_DAYS)}&to={day(OLD_DAYS - 7)}", "dashboard", False),
    ]


def day(days_back):
    """The date `days_back` days ago (UTC), as the dashboard's date filters take it."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() - days_back * 86400))


def sign_in(session, base):
    """The dashboard's sign-in form, posted with its CSRF token, as a browser does."""
    form = session.get(base + "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    r = session.post(base + "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token, "next": ""},
                     allow_redirects=False)
    if r.status_code != 302 or "/dashboard" not in r.headers.get("Location", ""):
        sys.exit(f"dashboard sign-in failed: {r.status_code} {r.text[:300]}")


def measure(servers):
    """servers: {n: (base URL, landmarks)}. Each page is fetched at every size in turn, round after
    round (the sizes alternate, so a slow spell of the machine hits them alike). Returns
    {n: {label: median ms, or the failing status as a string}} and the reported-only labels."""
    sessions = {}
    for n, (base, _) in servers.items():
        api, browser = requests.Session(), requests.Session()
        api.headers.update(common.AUTH)
        sign_in(browser, base)
        sessions[n] = {"api": api, "dashboard": browser}
    out, reported = {n: {} for n in servers}, set()
    listing = {n: pages(n, ids) for n, (_, ids) in servers.items()}
    for i, (label, _, kind, only_reported) in enumerate(next(iter(listing.values()))):
        times, failed = {n: [] for n in servers}, {}
        for k in range(WARMUPS + TIMED):
            for n, (base, _) in servers.items():
                if n in failed:
                    continue
                t = time.perf_counter()
                r = sessions[n][kind].get(base + listing[n][i][1], allow_redirects=False, timeout=120)
                ms = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    failed[n] = f"HTTP {r.status_code}"
                    print(f"  {label} at {n:,}: {failed[n]}: {r.text[:300]}", flush=True)
                elif k >= WARMUPS:
                    times[n].append(ms)
        for n in servers:
            out[n][label] = failed.get(n) or common.median(times[n])
        if only_reported:
            reported.add(label)
        print(f"  {label}: " + ", ".join(f"{n:,}: {out[n][label]}" if n in failed else f"{n:,}: {out[n][label]:.1f} ms"
                                         for n in servers), flush=True)
    return out, reported


# ---- --explain: the gateway's list and dashboard SQL ----------------------------------------------

def explain(db_url, n):
    """EXPLAIN (ANALYZE, BUFFERS) of every statement the pages run (bench/explain_pages.py, which
    calls the gateway's own functions); False when a plan reads a whole table."""
    print(f"\n## EXPLAIN (ANALYZE, BUFFERS) at {n:,} payments\n", flush=True)
    done = subprocess.run([common.PY, str(common.ROOT / "bench" / "explain_pages.py"), common.TEST_MERCHANT_ID],
                          env=dict(common.app_env(db_url), PYTHONPATH=str(common.ROOT)), cwd=common.ROOT)
    return done.returncode == 0


# ---- the run ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,1000000", help="comma list of payment counts (10000000 allowed)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS) of the lists at the largest size")
    ap.add_argument("--keep", action="store_true", help="keep the bench_scale_<N> databases (dropped by default: 1M is ~2 GB)")
    args = ap.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",")})
    results, seeded, reported = {}, {}, set()
    failed_explain = False
    settings = common.pg_settings(common.server_url())
    with psycopg.connect(common.server_url()) as c:
        settings += f", jit {c.execute('SHOW jit').fetchone()[0]}"  # it compiles the overview's chart query at 200,000
    databases = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as log_dir:
        try:
            for n in sizes:
                name = f"bench_scale_{n}"
                print(f"\n# {n:,} payments ({n / PER_DAY:.1f} days at {PER_DAY:,} a day): database {name}", flush=True)
                databases[n] = common.fresh_database(name)
                seeded[n] = seed(databases[n], n)[1]
                seal_rollups(databases[n])
            servers = {n: common.Server("api", common.app_env(url), log_dir, args.workers, args.threads)
                       for n, url in databases.items()}
            try:
                print("\n# the pages, sizes alternating", flush=True)
                results, reported = measure({n: (srv.url, landmarks(databases[n])) for n, srv in servers.items()})
            finally:
                for srv in servers.values():
                    srv.stop()
            if args.explain and not explain(databases[sizes[-1]], sizes[-1]):
                failed_explain = True
        finally:
            if not args.keep:
                common.drop_databases(f"bench_scale_{n}" for n in databases)
    print(f"\ngunicorn {args.workers} workers × {args.threads} threads, gthread (the launcher's command), "
          f"LOG_LEVEL=WARNING, one server per size; sequential GETs on keep-alive connections, the sizes "
          f"alternating, median of {TIMED} after {WARMUPS} warm-ups; {settings}; {common.machine()}")
    print("seeding (payments, orders, refunds, webhook logs, VACUUM ANALYZE): "
          + ", ".join(f"{n:,}: {s:.0f} s" for n, s in seeded.items()) + "\n")
    first, last = sizes[0], sizes[-1]
    print("| page | " + " | ".join(f"ms at {n:,}" for n in sizes) + f" | {last:,} / {first:,} |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    failed = False
    for label, *_ in pages(last):
        cells = [results[n][label] for n in sizes]
        failed |= any(isinstance(x, str) for x in cells)
        ratio = (f"{cells[-1] / cells[0]:.1f}×" if not any(isinstance(x, str) for x in (cells[0], cells[-1]))
                 and cells[0] > 0 else "—")
        name = label + (" (reported, not a target)" if label in reported else "")
        print(f"| {name} | " + " | ".join(x if isinstance(x, str) else f"{x:.1f}" for x in cells) + f" | {ratio} |")
    if failed:
        sys.exit("some page did not answer 200 (see above)")
    if failed_explain:
        sys.exit("some page reads a whole table (see the plans above)")


if __name__ == "__main__":
    main()
