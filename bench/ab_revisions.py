"""Old against new: one api_bench.py target served by a git revision and by the work tree, alternated.

    .venv/bin/python bench/ab_revisions.py e484250~1 --target payments+reads --rounds 6 --seconds 8

The old revision is checked out into a temporary git worktree. Both trees run their own launcher's
gunicorn command (--workers 2 --threads 4, gthread) on one fresh `bench_api` database with the
current schema; each round runs wrk (as api_bench.py: -t1 -c16) on both, which goes first
alternating. Printed: every run, then the medians of req/s and of the CPU per request of gunicorn
and of PostgreSQL, and new/old ratios. This is how a speed claim is proven on a noisy machine;
`HEAD` as the revision gives an A/A run, the noise floor.
"""
import argparse
import tempfile

import api_bench
import common


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="git revision to compare the work tree with")
    args = api_bench.side_by_side_arguments(ap, "payments+reads")
    target = api_bench.TARGETS[args.target]
    db_url = common.fresh_database(api_bench.DB)
    settings = common.pg_settings(db_url)
    with tempfile.TemporaryDirectory(prefix="ab_revisions_") as tmp, common.revision_tree(args.old, tmp) as old_tree:
        servers = {}
        try:
            env = common.app_env(db_url)
            orders = api_bench.Orders(db_url, 2 * target.orders * (args.warmup + args.rounds * args.seconds))
            servers["old"] = common.Server("old", env, tmp, args.workers, args.threads, root=old_tree)
            servers["new"] = common.Server("new", env, tmp, args.workers, args.threads)
            runs = api_bench.alternate(servers, target, args.rounds, args.seconds, args.warmup, orders, tmp)
        finally:
            for s in servers.values():
                s.stop()
    print(f"\n{args.target}: old = {args.old}, new = the work tree; gunicorn {args.workers} workers × {args.threads} "
          f"threads, gthread; wrk -t1 -c16 -d{args.seconds}s, {args.rounds} alternated rounds; {settings}; "
          f"{common.machine()}")
    api_bench.print_ratios(runs, "old", "new")


if __name__ == "__main__":
    main()
