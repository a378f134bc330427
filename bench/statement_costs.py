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
import tempfile
import time

import psycopg
import requests

import common
from latency_bench import make_orders, one_by_one, stack

TOP = 12


def costs(root, name, n, log_dir):
    db_name = f"bench_statements_{name}"
    with stack(root, log_dir, db_name) as (base, receiver, db_url), \
            psycopg.connect(db_url, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        s = requests.Session()
        one_by_one(s, base, receiver, make_orders(s, base, 100))
        orders = make_orders(s, base, n)  # before the reset: only the payments are counted
        c.execute("SELECT pg_stat_statements_reset()")
        one_by_one(s, base, receiver, orders)
        time.sleep(0.5)  # the last deliveries' outcomes are recorded after they arrive
        return c.execute("""
            SELECT calls, total_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
              FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname = %(db)s AND query NOT LIKE '%%pg_stat_statements%%'
             ORDER BY total_exec_time + total_plan_time DESC""", {"db": db_name}).fetchall()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payments", type=int, default=500)
    ap.add_argument("--against", metavar="REV", help="git revision to measure after the work tree")
    args = ap.parse_args()
    with psycopg.connect(common.server_url()) as c:
        if "pg_stat_statements" not in c.execute("SHOW shared_preload_libraries").fetchone()[0]:
            raise SystemExit("the server does not load pg_stat_statements (see this script's docstring)")
        if c.execute("SHOW pg_stat_statements.track_planning").fetchone()[0] != "on":
            raise SystemExit("pg_stat_statements.track_planning is off: every planning time would read 0")
    log_dir = tempfile.mkdtemp(prefix="bench-statements-")
    with common.revision_tree(args.against, log_dir) as old_tree:
        trees = {"work tree": common.ROOT, **({args.against: old_tree} if old_tree else {})}
        for i, (name, root) in enumerate(trees.items()):
            rows = costs(root, str(i), args.payments, log_dir)
            n = args.payments
            print(f"\n{name}: {sum(r[1] + r[2] for r in rows) / n * 1000:.0f} µs of PostgreSQL time per payment, "
                  f"of which planning {sum(r[2] for r in rows) / n * 1000:.0f} µs; {n} sequential payments; "
                  f"{common.pg_settings(common.server_url())}\n")
            print("| calls per payment | execution µs | planning µs | statement |\n|---:|---:|---:|---|")
            for calls, exec_ms, plan_ms, query in rows[:TOP]:
                print(f"| {calls / n:.2f} | {exec_ms / n * 1000:.0f} | {plan_ms / n * 1000:.0f} | `{query}` |")


if __name__ == "__main__":
    main()
