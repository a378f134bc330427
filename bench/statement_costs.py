"""What PostgreSQL spends per payment, statement by statement, planning apart from execution:
pg_stat_statements over sequential payments, each followed to its payment.success webhook.

    DATABASE_URL=postgresql://… .venv/bin/python bench/statement_costs.py --payments 500 [--against REV]

The server must load pg_stat_statements (`shared_preload_libraries = 'pg_stat_statements'` and
`pg_stat_statements.track_planning = on`, then a restart; the embedded server of `make run` does not).
Per tree (the work tree, and REV in a temporary git worktree with --against): a fresh database,
the gateway and worker.py as latency_bench.py starts them, 100 payments to warm up, the statistics
reset, then --payments sequential payments. Printed: the statements that took the most time, with
calls, execution and planning microseconds per payment.
"""
import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import requests

import common
from latency_bench import Receiver, make_orders, pay

TOP = 12


def costs(root, name, n, log_dir):
    db_name = f"bench_statements_{name}"
    db_url = common.fresh_database(db_name, root)
    receiver = Receiver()
    with psycopg.connect(db_url) as c:
        c.execute("UPDATE merchants SET webhook_url = %(url)s WHERE id = %(id)s",
                  {"url": receiver.url, "id": common.TEST_MERCHANT_ID})
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    env = common.test_mode_env(db_url)
    api = worker = None
    try:
        api = common.Server("api", env, log_dir, root=root)
        worker = common.start_worker(env, log_dir, root=root)
        s = requests.Session()
        for order_id in make_orders(s, api.url, 100):
            receiver.arrival(pay(s, api.url, order_id)[0])
        orders = make_orders(s, api.url, n)
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("SELECT pg_stat_statements_reset()")
        for order_id in orders:
            receiver.arrival(pay(s, api.url, order_id)[0])
        time.sleep(0.5)  # the last deliveries' outcomes are recorded after they arrive
        with psycopg.connect(db_url, autocommit=True) as c:
            return c.execute("""
                SELECT calls, total_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
                  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                 WHERE d.datname = %(db)s AND query NOT LIKE '%%pg_stat_statements%%'
                 ORDER BY total_exec_time + total_plan_time DESC""", {"db": db_name}).fetchall()
    finally:
        for p in (worker, api):
            if p:
                p.stop()
        receiver.shutdown()
        common.drop_databases([db_name])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payments", type=int, default=500)
    ap.add_argument("--against", metavar="REV", help="git revision to measure after the work tree")
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-statements-")
    trees = {"work tree": common.ROOT}
    if args.against:
        trees[args.against] = Path(log_dir) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(trees[args.against]), args.against],
                       cwd=common.ROOT, check=True)
    try:
        with psycopg.connect(common.server_url()) as c:
            if "pg_stat_statements" not in c.execute("SHOW shared_preload_libraries").fetchone()[0]:
                raise SystemExit("the server does not load pg_stat_statements (see this script's docstring)")
        for i, (name, root) in enumerate(trees.items()):
            rows = costs(root, str(i), args.payments, log_dir)
            n = args.payments
            print(f"\n{name}: {sum(r[1] + r[2] for r in rows) / n * 1000:.0f} µs of PostgreSQL time per payment, "
                  f"of which planning {sum(r[2] for r in rows) / n * 1000:.0f} µs; {n} sequential payments; "
                  f"{common.pg_settings(common.server_url())}\n")
            print("| calls per payment | execution µs | planning µs | statement |\n|---:|---:|---:|---|")
            for calls, exec_ms, plan_ms, query in rows[:TOP]:
                print(f"| {calls / n:.2f} | {exec_ms / n * 1000:.0f} | {plan_ms / n * 1000:.0f} | `{query}` |")
    finally:
        if args.against:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees[args.against])], cwd=common.ROOT,
                           check=False)


if __name__ == "__main__":
    main()
