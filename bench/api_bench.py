"""API throughput: POST /api/v1/orders and POST /api/v1/payments against a bare Flask INSERT.

    .venv/bin/python bench/api_bench.py --rounds 3 --seconds 10

The gateway and bench/bare_app.py (parse the JSON body, one INSERT, commit, 201) run under the
launcher's own gunicorn command (--workers 2 --threads 4, gthread) on one fresh `bench_api`
database. wrk (bench/wrk/post.lua: -t1 -c16, keep-alive) loads each target in turn, after a
warm-up; the order of the targets is reversed every round, so a slow spell of a shared machine
falls on all of them. Printed: each run, then per target the median req/s, its ratio to bare and
the CPU per request of the gunicorn processes and of the database's PostgreSQL backends (the
steadiest figure on a noisy machine). Every payment takes an order of its own (an order takes one
payment in flight), inserted by SQL before the run. Targets: orders >= 0.85x bare, payments >= 0.8x.

Extra targets (--targets): orders+idem (a fresh Idempotency-Key on every order), payments+reads
(each payment followed by GET /api/v1/orders/{id}; req/s counts both).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

import common

DB = "bench_api"
LUA = common.ROOT / "bench" / "wrk" / "post.lua"
ORDER_BODY = '{"amount":50000,"currency":"INR","receipt":"bench"}'
PAYMENT_BODY = '{"order_id":"%ORDER%","method":"upi","vpa":"bench@okbank"}'
MAX_RPS = 3000  # more payments per second than these 2-core machines serve: a run's share of fresh orders


@dataclass
class Target:
    name: str
    server: str  # "ours" or "bare"
    path: str
    body: str
    orders: bool = False  # each request pays a fresh order
    idem: bool = False
    reads: bool = False


TARGETS = {t.name: t for t in [
    Target("bare", "bare", "/bare", ORDER_BODY),
    Target("orders", "ours", "/api/v1/orders", ORDER_BODY),
    Target("payments", "ours", "/api/v1/payments", PAYMENT_BODY, orders=True),
    Target("orders+idem", "ours", "/api/v1/orders", ORDER_BODY, idem=True),
    Target("payments+reads", "ours", "/api/v1/payments", PAYMENT_BODY, orders=True, reads=True),
]}


def backends(db_name):
    """The PostgreSQL backends serving db_name (their process title names it)."""
    return [p for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].startswith("postgres:") and f" {db_name} " in p.info["cmdline"][0]]


def cpu(procs):
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


class Orders:
    """Unpaid orders of the test merchant for the payments targets, each paid once. Inserted by SQL
    before the runs (a bulk insert just before a run would hand it the autovacuum that follows)."""

    def __init__(self, db_url, seconds):
        self.db_url, self.ids, self.next = db_url, [], 0
        self.add(seconds * MAX_RPS)
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("VACUUM (ANALYZE) orders")  # now rather than by autovacuum during a run

    def add(self, n):
        ids = [common.new_id("order_") for _ in range(n)]
        with psycopg.connect(self.db_url) as c:
            c.execute("INSERT INTO orders (id, merchant_id, amount, currency, receipt) SELECT unnest(%(ids)s::text[]), "
                      "%(m)s, 50000, 'INR', 'bench'", {"ids": ids, "m": common.TEST_MERCHANT_ID})
        self.ids += ids

    def write(self, path, seconds):
        """Unused orders enough for a run of `seconds`, one a line, for post.lua."""
        if len(self.ids) - self.next < seconds * MAX_RPS:
            self.add(seconds * MAX_RPS)
        Path(path).write_text("\n".join(self.ids[self.next:self.next + seconds * MAX_RPS]) + "\n")


def run_wrk(server, target, seconds, orders, tmp, connections=16):
    """One wrk run: req/s, errors, closed-loop p50/p99, and the CPU per request of the server and of PostgreSQL."""
    env = dict(os.environ, BENCH_PATH=target.path, BENCH_BODY=target.body, BENCH_NONCE=str(time.time_ns()),
               BENCH_AUTH="0" if target.server == "bare" else "1", BENCH_IDEM="1" if target.idem else "0",
               BENCH_READS="1" if target.reads else "0")
    if target.orders:
        env["BENCH_ORDERS_FILE"] = str(Path(tmp) / "orders.txt")
        orders.write(env["BENCH_ORDERS_FILE"], seconds)
    app0, pg0 = cpu(server.procs()), cpu(backends(DB))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA),
                          server.url + target.path], env=env, capture_output=True, text=True)
    app1, pg1 = cpu(server.procs()), cpu(backends(DB))
    m = re.search(r"^BENCH_JSON (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        sys.exit(f"wrk failed on {target.name}: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    if target.orders:  # requests still in flight when wrk stopped may have paid an order too
        orders.next += r["requests"] + connections
    n = max(r["requests"], 1)
    used = lambda after, before: sum(v - before.get(pid, 0.0) for pid, v in after.items())  # noqa: E731
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "errors": r["errors"],
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "app_ms": used(app1, app0) * 1000 / n, "pg_ms": used(pg1, pg0) * 1000 / n}


def side_by_side_arguments(ap, default_target):
    """The options ab_revisions.py and ab_env.py share; returns the parsed arguments."""
    ap.add_argument("--target", choices=[t for t in TARGETS if t != "bare"], default=default_target)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    return ap.parse_args()


def alternate(servers, target, rounds, seconds, warmup, orders, tmp):
    """Warm both servers up, then `rounds` rounds of wrk on each, which goes first alternating;
    {name: [run, …]}. For side-by-side comparisons of two servers (ab_revisions.py, ab_env.py)."""
    names = list(servers)
    runs = {name: [] for name in names}
    for s in servers.values():
        run_wrk(s, target, warmup, orders, tmp)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            x = run_wrk(servers[name], target, seconds, orders, tmp)
            if x["errors"]:
                raise SystemExit(f"{name}: {x['errors']} errors; server logs in {tmp}")
            runs[name].append(x)
            print(f"round {r + 1} {name} {x['rps']:6.0f} req/s, app {x['app_ms']:.3f} ms/req, "
                  f"PostgreSQL {x['pg_ms']:.3f} ms/req", flush=True)
    return runs


def print_ratios(runs, first, second):
    """Medians of req/s and CPU per request of both, and second/first."""
    for key, label, fmt in (("rps", "req/s", ".0f"), ("app_ms", "app CPU ms/req", ".3f"),
                            ("pg_ms", "PostgreSQL CPU ms/req", ".3f")):
        a, b = ([x[key] for x in runs[n]] for n in (first, second))
        print(f"  {label}: {first} {common.runs(a, fmt)}, {second} {common.runs(b, fmt)}; "
              f"{second}/{first} {common.median(b) / common.median(a):.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="each target's wrk run per round")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of wrk per target before the rounds")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--targets", default="bare,orders,payments", help=f"comma list of {', '.join(TARGETS)}")
    args = ap.parse_args()
    targets = [TARGETS[t] for t in args.targets.split(",")]
    db_url = common.fresh_database(DB)
    settings = common.pg_settings(db_url)
    results = {t.name: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="api_bench_") as tmp:
        env = common.app_env(db_url)
        orders = Orders(db_url, sum(t.orders for t in targets) * (args.warmup + args.rounds * args.seconds))
        servers = {}
        try:
            servers["ours"] = common.Server("ours", env, tmp, args.workers, args.threads)
            servers["bare"] = common.Server("bare", env, tmp, args.workers, args.threads, app="bench.bare_app:create_app()")
            for t in targets:
                x = run_wrk(servers[t.server], t, args.warmup, orders, tmp)
                if x["errors"]:
                    sys.exit(f"{t.name}: {x['errors']} errors in the warm-up; server logs in {tmp}")
            for r in range(args.rounds):
                for t in targets if r % 2 == 0 else targets[::-1]:
                    x = run_wrk(servers[t.server], t, args.seconds, orders, tmp)
                    results[t.name].append(x)
                    print(f"round {r + 1} {t.name:15s} {x['rps']:6.0f} req/s, app {x['app_ms']:.2f} ms/req, "
                          f"PostgreSQL {x['pg_ms']:.2f} ms/req, errors {x['errors']}", flush=True)
        finally:
            for s in servers.values():
                s.stop()
    med = {name: common.median([x["rps"] for x in xs]) for name, xs in results.items()}
    print(f"\ngunicorn {args.workers} workers × {args.threads} threads, gthread (the launcher's command), "
          f"LOG_LEVEL=WARNING, 10 pooled connections per process; wrk -t1 -c16, {args.rounds} round(s) of "
          f"{args.seconds} s per target, order reversed every round; {settings}; {common.machine()}\n")
    print("| target | median req/s (runs) | vs bare | app CPU ms/req | PostgreSQL CPU ms/req | wrk p50 / p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, xs in results.items():
        ratio = f"{med[name] / med['bare']:.2f}×" if "bare" in med else ""
        print(f"| {name} | {common.runs([x['rps'] for x in xs])} | {ratio} | "
              f"{common.median([x['app_ms'] for x in xs]):.2f} | {common.median([x['pg_ms'] for x in xs]):.2f} | "
              f"{common.median([x['p50_ms'] for x in xs]):.1f} / {common.median([x['p99_ms'] for x in xs]):.1f} | "
              f"{sum(x['errors'] for x in xs)} |")
    for name, goal in (("orders", 0.85), ("payments", 0.8)):
        if name in med and "bare" in med:
            ratio = med[name] / med["bare"]
            print(f"{name}/bare = {ratio:.2f}× (target ≥ {goal}×: {'met' if ratio >= goal else 'NOT met'})")


if __name__ == "__main__":
    main()
