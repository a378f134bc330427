"""Two revisions of the gateway side by side: one api_bench target, alternated between them.

    .venv/bin/python bench/ab_revisions.py e484250~1 --target payments+reads

serves the old revision (checked out into a temporary git worktree) and the work tree on one
fresh `bench_api` database, both with the same gunicorn settings as api_bench.py (2 workers × 4
threads), then runs the target with wrk against each, alternating which goes first, and prints
every run and the medians: req/s and the CPU per request of the gunicorn processes and of the
PostgreSQL backends. Written to show what a change did (e484250: the pool's ROLLBACK keeps the
connection's prepared statements); api_bench.py's targets and set-up are reused as they are.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BENCH_NO_REEXEC", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import api_bench as B  # noqa: E402  (run it with the project's venv: .venv/bin/python)

TARGETS = {
    "payments": dict(path="/api/v1/payments", body=B.PAYMENT_BODY, orders=True),
    "payments+reads": dict(path="/api/v1/payments", body=B.PAYMENT_BODY, orders=True, reads=True),
    "orders": dict(path="/api/v1/orders", body=B.ORDER_BODY),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="git revision to compare the work tree with")
    ap.add_argument("--target", choices=sorted(TARGETS), default="payments+reads")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rate", type=int, default=0,
                    help="also run both at this constant rate (req/s, open loop) and compare their latency")
    ap.add_argument("--latency-seconds", type=int, default=10, help="per round and revision, in 2 s turns")
    args = ap.parse_args()
    spec = TARGETS[args.target]

    url, _ = B.server_url()
    lock = B.run_lock(url)  # noqa: F841  (held until exit)
    bench_url = B.fresh_database(url)
    wrk = B.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="ab_revisions_") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_tree), args.old], cwd=B.ROOT, check=True)
        orders_file = B.OrderPool(bench_url, Path(tmp) / "orders.txt", 60000)
        env = B.base_env(bench_url, LOG_LEVEL="WARNING")
        servers = {}
        try:
            servers["new"] = B.Server("new", "app:create_app()", env, 2, 4, tmp)
            servers["old"] = B.Server("old", "app:create_app()", env, 2, 4, tmp, root=old_tree)
            for s in servers.values():
                s.wait_ready()
            targets = {name: B.Target(f"{args.target} ({name})", s, spec["path"], spec["body"], auth=True,
                                      orders_file=orders_file if spec.get("orders") else None,
                                      reads=spec.get("reads", False))
                       for name, s in servers.items()}
            B.prepare_wal(bench_url)
            for t in targets.values():
                B.run_wrk(wrk, t, 5, 16, 1)  # warm-up
            runs = {"old": [], "new": []}
            for r in range(args.rounds):
                for _, name in B.in_turns(["old", "new"], 1, first=r):  # which goes first alternates
                    x = B.run_wrk(wrk, targets[name], args.seconds, 16, 1)
                    if x["errors"]:
                        sys.exit(f"{name}: {x['errors']} errors")
                    runs[name].append(x)
                    print(f"round {r + 1} {name:3s} {x['rps']:6.0f} req/s, app {x['app_cpu_ms']:.3f} ms/req, "
                          f"PostgreSQL {x['pg_cpu_ms']:.3f} ms/req", flush=True)
            if args.rate:
                lat_args = argparse.Namespace(latency_seconds=args.latency_seconds, latency_slice=2,
                                              latency_rounds=args.rounds)
                latency = B.latency_phase(lat_args, list(targets.values()), {t.name: args.rate for t in targets.values()})
        finally:
            for s in servers.values():
                s.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=B.ROOT)
    print(f"\n{args.target}, old = {args.old}, new = the work tree; gunicorn 2 × 4 gthread, wrk -t1 -c16 "
          f"-d{args.seconds}s, {args.rounds} alternated rounds; medians (ranges):")
    for key, label, fmt in (("rps", "req/s", ".0f"), ("app_cpu_ms", "app CPU ms/req", ".3f"),
                            ("pg_cpu_ms", "PostgreSQL CPU ms/req", ".3f")):
        cells = []
        for name in ("old", "new"):
            v = [x[key] for x in runs[name]]
            cells.append(f"{name} {statistics.median(v):{fmt}} ({min(v):{fmt}}-{max(v):{fmt}})")
        print(f"  {label}: " + ", ".join(cells))
    if args.rate:
        print(f"at {args.rate} req/s, {args.rounds} rounds of {args.latency_seconds} s in 2 s turns (pooled samples):")
        for name, t in targets.items():
            x = latency[t.name]
            print(f"  {name}: p50 {x['p50']:.1f} ms, p99 {x['p99']:.1f} ms, max {x['max']:.0f} ms, errors {x['errors']}")


if __name__ == "__main__":
    main()
