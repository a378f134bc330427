"""What the shape of an id costs PostgreSQL: time-first ids (app/ids.py) against fully random ones.

    .venv/bin/python bench/ids_bench.py --rows 300000 --pairs 5000 --runs 3

Two databases with the gateway's schema, each holding --rows orders and as many payments whose ids
were made by one scheme: "time-first" (app.ids.new_id: the minute, then 11 random digits) and
"random" (16 random base-62 digits, the gateway's ids before). Each run, alternating which goes
first: CHECKPOINT, then --pairs times what a shop does, through the gateway's own functions on one
pooled connection: create an order (orders.create, its own transaction), then pay it
(payments.create: the payment and its settlement job in one statement). Measured per pair: WAL
written, full-page images among it (pg_stat_wal.wal_fpi), and the CPU of the PostgreSQL backend.

The window right after a checkpoint is where the schemes differ: the first change of an index page
after a checkpoint writes the whole 8 KB page into the WAL. Random ids put each new key on a random
page of the primary-key index (and a payment's order_id on a random page of payments_order_id),
time-first ids put them beside the keys of the last minutes. Results: bench/results/ids.md.
"""
import argparse
import secrets
import statistics
import sys
import time

import psutil
import psycopg

import common  # noqa: F401  (puts the project on sys.path)
from app import ids, orders, payments
from app.config import TEST_MERCHANT
from app.pg import Pool

def random_id(prefix, now=None):
    """The ids before app/ids.py put the minute first: 16 random base-62 digits."""
    return prefix + "".join(secrets.choice(ids.BASE62) for _ in range(16))


SCHEMES = {"time-first": ids.new_id, "random": random_id}


def fill(url, make_id, rows):
    """rows orders and one settled payment each, with ids of one scheme, made over the last days."""
    now = time.time()
    with psycopg.connect(url) as c:
        for start in range(0, rows, 50000):
            n = min(50000, rows - start)
            made = [now - 86400 * 3 * (rows - start - i) / rows for i in range(n)]  # oldest first
            order_ids = [make_id("order_", t) for t in made]
            c.execute("INSERT INTO orders (id, merchant_id, amount, status) "
                      "SELECT unnest(%s::text[]), %s, 50000, 'paid'", (order_ids, TEST_MERCHANT["id"]))
            c.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, status, vpa) "
                      "SELECT unnest(%s::text[]), unnest(%s::text[]), %s, 50000, 'INR', 'upi', 'success', 'a@b'",
                      ([make_id("pay_", t) for t in made], order_ids, TEST_MERCHANT["id"]))
        c.commit()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")


def wal_fpi(c):
    # This backend's WAL counters reach pg_stat_wal at the end of a transaction, when forced.
    c.execute("SELECT pg_stat_force_next_flush()")
    c.execute("SELECT 1")
    return c.execute("SELECT wal_fpi FROM pg_stat_wal").fetchone()[0]


def run(url, make_id, pairs):
    pool = Pool(url, size=1)
    orders.new_id = payments.new_id = make_id  # the gateway's own functions, with this scheme's ids
    merchant = {"id": TEST_MERCHANT["id"]}
    with pool.connect() as c:
        raw = c.driver_connection
        raw.autocommit = True
        backend = psutil.Process(raw.info.backend_pid)
        raw.execute("CHECKPOINT")
        fpi0, wal0 = wal_fpi(raw), common.wal_bytes(raw)
        cpu0 = sum(backend.cpu_times()[:2])
        raw.autocommit = False
        for _ in range(pairs):
            order = orders.create(c, merchant["id"], {"amount": 50000, "currency": "INR", "receipt": None, "notes": {}})
            payments.create(c, merchant, {"order_id": order["id"], "method": "upi", "vpa": "shop@okbank", "notes": {}})
        cpu = sum(backend.cpu_times()[:2]) - cpu0
        raw.autocommit = True
        wal, fpi = common.wal_bytes(raw) - wal0, wal_fpi(raw) - fpi0
    pool.dispose()
    return {"wal": wal / pairs, "fpi": fpi / pairs, "cpu_us": cpu / pairs * 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=300000, help="orders and payments already in each database")
    ap.add_argument("--pairs", type=int, default=5000, help="orders created and paid per run, after a CHECKPOINT")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    urls = {}
    for name, make_id in SCHEMES.items():
        urls[name] = common.fresh_database(f"bench_ids_{name.replace('-', '_')}")
        fill(urls[name], make_id, args.rows)
        print(f"{name}: {args.rows} orders and payments in place", file=sys.stderr, flush=True)
    results = {name: [] for name in SCHEMES}
    for r in range(args.runs):
        for name in list(SCHEMES) if r % 2 == 0 else list(SCHEMES)[::-1]:
            x = run(urls[name], SCHEMES[name], args.pairs)
            results[name].append(x)
            print(f"run {r + 1} {name:10s} WAL {x['wal']:7.0f} B/pair, {x['fpi']:.2f} full-page images/pair, "
                  f"PostgreSQL CPU {x['cpu_us']:5.0f} µs/pair", file=sys.stderr, flush=True)
    report(args, results, common.pg_settings(urls["time-first"]))


def report(args, results, pg):
    m = common.machine()
    med = {name: {k: statistics.median(x[k] for x in runs) for k in ("wal", "fpi", "cpu_us")}
           for name, runs in results.items()}
    t, r = med["time-first"], med["random"]
    lines = [
        f"Run: {m['date']} on {m['cpus']} × {m['cpu']}, PostgreSQL {pg['server_version']}, shared_buffers "
        f"{pg['shared_buffers']}, synchronous_commit {pg['synchronous_commit']}, fsync {pg['fsync']}; "
        f"`bench/ids_bench.py --rows {args.rows} --pairs {args.pairs} --runs {args.runs}`.",
        "",
        f"Each database holds {args.rows:,} orders and payments with ids of its scheme. A run: CHECKPOINT, then "
        f"{args.pairs:,} times create an order and pay it (the gateway's orders.create and payments.create, one "
        "connection, each its own transaction). Medians of the runs, schemes alternated; per order + payment:",
        "",
        "| ids | WAL bytes | full-page images | PostgreSQL CPU µs |",
        "|---|---:|---:|---:|",
    ]
    for name in SCHEMES:
        x = med[name]
        lines.append(f"| {name} | {x['wal']:,.0f} | {x['fpi']:.2f} | {x['cpu_us']:.0f} |")
    lines += ["", f"Time-first / random: WAL {t['wal'] / r['wal']:.2f}×, full-page images {t['fpi'] / r['fpi']:.2f}×, "
              f"CPU {t['cpu_us'] / r['cpu_us']:.2f}×.", "", "Raw runs (WAL B / FPI / CPU µs per pair):", ""]
    for name, runs in results.items():
        lines.append(f"- {name}: " + "; ".join(f"{x['wal']:.0f} / {x['fpi']:.2f} / {x['cpu_us']:.0f}" for x in runs))
    (common.RESULTS / "ids.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
