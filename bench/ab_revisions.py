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
import subprocess
import tempfile
from pathlib import Path

import api_bench
import common


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="git revision to compare the work tree with")
    ap.add_argument("--target", choices=[t for t in api_bench.TARGETS if t != "bare"], default="payments+reads")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    target = api_bench.TARGETS[args.target]
    db_url = common.fresh_database(api_bench.DB)
    settings = common.pg_settings(db_url)
    runs = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="ab_revisions_") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_tree), args.old], cwd=common.ROOT, check=True)
        servers = {}
        try:
            env = common.app_env(db_url)
            orders = api_bench.Orders(db_url, 2 * target.orders * (args.warmup + args.rounds * args.seconds))
            servers["new"] = common.Server("new", env, tmp, args.workers, args.threads)
            servers["old"] = common.Server("old", env, tmp, args.workers, args.threads, root=old_tree)
            for s in servers.values():
                api_bench.run_wrk(s, target, args.warmup, orders, tmp)
            for r in range(args.rounds):
                for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    x = api_bench.run_wrk(servers[name], target, args.seconds, orders, tmp)
                    if x["errors"]:
                        raise SystemExit(f"{name}: {x['errors']} errors; server logs in {tmp}")
                    runs[name].append(x)
                    print(f"round {r + 1} {name} {x['rps']:6.0f} req/s, app {x['app_ms']:.3f} ms/req, "
                          f"PostgreSQL {x['pg_ms']:.3f} ms/req", flush=True)
        finally:
            for s in servers.values():
                s.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=common.ROOT)
    print(f"\n{args.target}: old = {args.old}, new = the work tree; gunicorn {args.workers} workers × {args.threads} "
          f"threads, gthread; wrk -t1 -c16 -d{args.seconds}s, {args.rounds} alternated rounds; {settings}; "
          f"{common.machine()}")
    for key, label, fmt in (("rps", "req/s", ".0f"), ("app_ms", "app CPU ms/req", ".3f"),
                            ("pg_ms", "PostgreSQL CPU ms/req", ".3f")):
        old, new = ([x[key] for x in runs[n]] for n in ("old", "new"))
        print(f"  {label}: old {common.runs(old, fmt)}, new {common.runs(new, fmt)}; "
              f"new/old {common.median(new) / common.median(old):.2f}")


if __name__ == "__main__":
    main()
