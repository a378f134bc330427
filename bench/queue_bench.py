"""Queue throughput: worker.py draining N queued no-op jobs and N payment settlements, beside
pgqueuer and procrastinate draining N no-op jobs on the same server (bench/queue_peers.py).

    .venv/bin/python -m pip install -r bench/requirements.txt   # the peers
    .venv/bin/python bench/queue_bench.py --jobs 20000 --runs 3

Each run of ours: a fresh `bench_queue` database, worker.py started and idle (JOB_BATCH_SIZE
--batch, its other settings at their defaults), then N jobs committed in one transaction; timed
until none is pending or processing. Also reported: transactions committed per job
(pg_stat_database) and the worker's peak RSS. Contenders alternate within each run; medians.
Target: our no-op drain >= 5x pgqueuer's.
"""
import argparse
import tempfile
import threading
import time

import psutil
import psycopg

import common

SEED_SETTLEMENTS = [
    "INSERT INTO orders (id, merchant_id, amount) SELECT 'order_' || lpad(i::text, 16, '0'), %(m)s, 1000 "
    "FROM generate_series(1, %(n)s) i",
    "INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa) "
    "SELECT 'pay_' || lpad(i::text, 16, '0'), 'order_' || lpad(i::text, 16, '0'), %(m)s, 1000, 'INR', 'upi', 'b@okbank' "
    "FROM generate_series(1, %(n)s) i",
    "INSERT INTO jobs (kind, payload) SELECT 'payment.settle', jsonb_build_object('payment_id', "
    "'pay_' || lpad(i::text, 16, '0')) FROM generate_series(1, %(n)s) i",
]
SEED_NOOP = ["INSERT INTO jobs (kind, payload) SELECT 'bench.noop', '{}'::jsonb FROM generate_series(1, %(n)s)"]


def commits(c):
    c.execute("SELECT pg_stat_clear_snapshot()")
    return c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def drain_ours(kind, jobs, batch, log_dir):
    db_url = common.fresh_database("bench_queue")
    worker = common.start_worker(common.test_mode_env(db_url, JOB_BATCH_SIZE=batch), log_dir, noop=kind == "noop")
    peak, done = [0], threading.Event()

    def sample_rss():
        proc = psutil.Process(worker.proc.pid)
        while not done.wait(0.05):
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                return

    threading.Thread(target=sample_rss, daemon=True).start()
    try:
        with psycopg.connect(db_url, autocommit=True) as c:
            before = commits(c)
            with c.transaction():
                for sql in SEED_NOOP if kind == "noop" else SEED_SETTLEMENTS:
                    c.execute(sql, {"n": jobs, "m": common.TEST_MERCHANT_ID})
            t0, polls = time.perf_counter(), 0
            while c.execute("SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('pending', 'processing'))").fetchone()[0]:
                polls += 1
                worker.check_alive()
                time.sleep(0.01)  # polling the observable end of the drain
            seconds = time.perf_counter() - t0
            completed = c.execute("SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
            assert completed == jobs, f"{completed} of {jobs} jobs completed"
        done.set()
        # The worker's backends flush their statistics as they exit; then this database's commits,
        # less this script's own (the seed, the polls, the reads), are the worker's.
        worker.stop()
        with psycopg.connect(db_url, autocommit=True) as c:
            common.wait_until(lambda: c.execute("SELECT count(*) FROM pg_stat_activity "
                                                "WHERE datname = current_database()").fetchone()[0] == 1,
                              message="the worker's connections closed")
            per_job = (commits(c) - before - polls - 4) / jobs
        return {"jobs_per_s": jobs / seconds, "commits_per_job": per_job, "rss_mb": peak[0] / 2**20}
    finally:
        done.set()
        worker.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=200, help="worker.py's JOB_BATCH_SIZE")
    ap.add_argument("--peers", default="pgqueuer,procrastinate", help="comma list, or '' for ours alone")
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-queue-")
    peers = [p for p in args.peers.split(",") if p]
    if peers:
        from queue_peers import run_peer  # needs bench/requirements.txt
    results = {"ours_noop": [], "ours_settle": [], **{p: [] for p in peers}}
    for i in range(args.runs):
        results["ours_noop"].append(drain_ours("noop", args.jobs, args.batch, log_dir))
        for p in peers:
            results[p].append(run_peer(p, common.server_url(), args.jobs))
        results["ours_settle"].append(drain_ours("settle", args.jobs, args.batch, log_dir))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]['jobs_per_s']:.0f}/s" for k, v in results.items()), flush=True)
    med = {k: common.median([r["jobs_per_s"] for r in v]) for k, v in results.items()}
    print(f"\n{args.jobs} jobs queued before each drain; worker.py JOB_BATCH_SIZE {args.batch}, other settings default; "
          f"peers at their defaults (queue_peers.py); {args.runs} run(s); {common.pg_settings(common.server_url())}; "
          f"{common.machine()}\n")
    print("| contender | jobs/s, median (runs) | vs pgqueuer | commits/job | peak worker RSS |\n|---|---|---:|---:|---:|")
    for k, v in results.items():
        ratio = f"{med[k] / med['pgqueuer']:.1f}×" if "pgqueuer" in med else ""
        ours = (f"{common.median([r['commits_per_job'] for r in v]):.4f} | {max(r['rss_mb'] for r in v):.0f} MB"
                if k.startswith("ours") else " | ")
        print(f"| {k} | {common.runs([r['jobs_per_s'] for r in v])} | {ratio} | {ours} |")

if __name__ == "__main__":
    main()
