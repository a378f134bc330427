"""One tree, two environments: an api_bench.py target served as is (A) and with --env-b set (B), alternated.

    .venv/bin/python bench/ab_env.py --target orders --env-b API_RATE_LIMIT=1000000/second --rounds 6

What a setting costs, as ab_revisions.py measures a revision: the work tree's gunicorn twice on one
fresh `bench_api` database (A without the --env-b names even if this shell sets them), wrk as
api_bench.py, first one alternating. Printed: each run; medians (req/s, CPU per request) and B/A.
"""
import argparse
import tempfile

import api_bench
import common


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env-b", action="append", required=True, metavar="NAME=VALUE", help="B's setting (repeatable)")
    args = api_bench.side_by_side_arguments(ap, "orders")
    extra = dict(kv.split("=", 1) for kv in args.env_b)
    target = api_bench.TARGETS[args.target]
    db_url = common.fresh_database(api_bench.DB)
    settings = common.pg_settings(db_url)
    with tempfile.TemporaryDirectory(prefix="ab_env_") as tmp:
        orders = api_bench.Orders(db_url, 2 * target.orders * (args.warmup + args.rounds * args.seconds))
        env_a = {k: v for k, v in common.app_env(db_url).items() if k not in extra}
        servers = {}
        try:
            servers["A"] = common.Server("A", env_a, tmp, args.workers, args.threads)
            servers["B"] = common.Server("B", dict(env_a, **extra), tmp, args.workers, args.threads)
            runs = api_bench.alternate(servers, target, args.rounds, args.seconds, args.warmup, orders, tmp)
        finally:
            for s in servers.values():
                s.stop()
    print(f"\n{args.target}: B = {' '.join(args.env_b)}; gunicorn {args.workers} workers × {args.threads} threads, "
          f"gthread; wrk -t1 -c16 -d{args.seconds}s, {args.rounds} alternated rounds; {settings}; {common.machine()}")
    api_bench.print_ratios(runs, "A", "B")


if __name__ == "__main__":
    main()
