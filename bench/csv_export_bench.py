"""The dashboard's CSV export keeps the gunicorn worker's memory flat however many payments it streams.

    .venv/bin/python bench/csv_export_bench.py --sizes 10000,1000000

For each size N, a fresh `bench_csv_<N>` database whose test merchant gets N payments with their
orders and refunds, seeded by scale_bench.py's SQL (11,000 a day, 88 % success, 1 in 20 successful
payments refunded), VACUUM ANALYZE, the rollups sealed; then the gateway under the launcher's
gunicorn command with ONE worker (so its process is the one measured) × 4 threads. Signed in to
the dashboard, it downloads a one-row export (to load every code path), reads the worker's peak
resident set (VmHWM in /proc), downloads `/dashboard/transactions.csv` (every payment) and reads the
peak again. Printed: rows, MB and seconds of the download, the worker's peak RSS before and after.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

import common
import scale_bench

TABLES = ("orders", "payments", "refunds")  # scale_bench's seeding without the webhook logs


def seed(db_url, n):
    with psycopg.connect(db_url, autocommit=True) as c:
        params = {"n": n, "m": common.TEST_MERCHANT_ID, "t0": c.execute("SELECT now()").fetchone()[0]}
        for table in TABLES:
            t = time.monotonic()
            rows = c.execute(scale_bench.SEED[table], params).rowcount
            print(f"  {table}: {rows:,} rows in {time.monotonic() - t:.1f} s", flush=True)
        c.execute("VACUUM (ANALYZE) orders, payments, refunds")


def peak_rss_mb(pid):
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def download(session, url):
    """(rows, bytes, seconds) of a streamed download."""
    t, size, rows = time.perf_counter(), 0, 0
    with session.get(url, stream=True, timeout=3600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=1 << 16):
            size += len(chunk)
            rows += chunk.count(b"\n")
    return rows - 1, size, time.perf_counter() - t  # the header row is not a payment


def measure(db_url, n, log_dir):
    server = common.Server(f"api-{n}", common.app_env(db_url), log_dir, workers=1, threads=4)
    try:
        [worker] = server.ps.children()
        browser = requests.Session()
        scale_bench.sign_in(browser, server.url)
        some = psycopg.connect(db_url).execute("SELECT id FROM payments LIMIT 1").fetchone()[0]
        download(browser, f"{server.url}/dashboard/transactions.csv?q={some}")
        before = peak_rss_mb(worker.pid)
        rows, size, seconds = download(browser, server.url + "/dashboard/transactions.csv")
        after = peak_rss_mb(worker.pid)
    finally:
        server.stop()
    if rows != n:
        sys.exit(f"the export had {rows:,} rows, not {n:,}")
    return {"rows": rows, "mb": size / 1e6, "seconds": seconds, "before": before, "after": after}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,1000000", help="comma list of payment counts")
    ap.add_argument("--keep", action="store_true", help="keep the bench_csv_<N> databases")
    args = ap.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",")})
    results, databases = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-csv-") as log_dir:
        try:
            for n in sizes:
                print(f"\n# {n:,} payments: database bench_csv_{n}", flush=True)
                databases[n] = common.fresh_database(f"bench_csv_{n}")
                seed(databases[n], n)
                scale_bench.seal_rollups(databases[n])
                results[n] = measure(databases[n], n, log_dir)
                print(f"  {results[n]}", flush=True)
        finally:
            if not args.keep:
                common.drop_databases(f"bench_csv_{n}" for n in databases)
    print(f"\ngunicorn 1 worker × 4 threads, gthread (the launcher's command), LOG_LEVEL=WARNING; "
          f"{common.pg_settings(common.server_url())}; {common.machine()}\n")
    print("| payments | CSV rows | MB | seconds | rows/s | worker peak RSS before | after the export |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n:,} | {r['rows']:,} | {r['mb']:.1f} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
              f"| {r['before']:.1f} MB | {r['after']:.1f} MB |")


if __name__ == "__main__":
    main()
