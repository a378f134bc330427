"""Queue throughput: worker.py draining N queued no-op jobs and N settlements, beside pgqueuer and
procrastinate draining N no-op jobs on the same server (alternating, several runs, medians).

    python bench/queue_bench.py --jobs 20000 --runs 3
"""
import argparse
import json
import tempfile
import threading

import psutil
import psycopg

import common

SEED_SETTLEMENTS = """
INSERT INTO merchants (id, name, email, api_key, api_secret)
VALUES ('11111111-1111-1111-1111-111111111111', 'Bench', 'bench@example.com', 'key_bench', 'secret_bench')
ON CONFLICT DO NOTHING;
INSERT INTO orders (id, merchant_id, amount)
SELECT 'order_' || lpad(i::text, 16, '0'), '11111111-1111-1111-1111-111111111111', 1000 FROM generate_series(1, %(n)s) i;
INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa)
SELECT 'pay_' || lpad(i::text, 16, '0'), 'order_' || lpad(i::text, 16, '0'), '11111111-1111-1111-1111-111111111111',
       1000, 'INR', 'upi', 'bench@okbank' FROM generate_series(1, %(n)s) i;
INSERT INTO jobs (kind, payload)
SELECT 'payment.settle', jsonb_build_object('payment_id', 'pay_' || lpad(i::text, 16, '0')) FROM generate_series(1, %(n)s) i;
"""
SEED_NOOP = "INSERT INTO jobs (kind, payload) SELECT 'bench.noop', '{}'::jsonb FROM generate_series(1, %(n)s)"


class RssSampler(threading.Thread):
    """Peak resident memory of a process, sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.done.wait(0.05)


def db_commits(c):
    c.execute("SELECT pg_stat_clear_snapshot()")
    return c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def drain_ours(kind, jobs, batch, log_dir):
    """Start worker.py, wait until it is idle, queue `jobs` in one transaction, time the drain."""
    url = common.fresh_database("bench_queue")
    env = common.worker_env(url, JOB_BATCH_SIZE=batch)
    worker = common.start_worker(env, log_dir, noop=(kind == "noop"))
    try:
        common.wait_for_heartbeat(url, worker.proc.pid)
        sampler = RssSampler(worker.proc.pid)
        sampler.start()
        with psycopg.connect(url, autocommit=True) as c:
            commits0 = db_commits(c)
            with c.transaction():
                for statement in (SEED_NOOP if kind == "noop" else SEED_SETTLEMENTS).split(";"):
                    if statement.strip():
                        c.execute(statement, {"n": jobs})
            t0 = common.now()  # the jobs are committed: the NOTIFY is on its way
            polls = 0
            while c.execute("SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('pending', 'processing'))"
                            ).fetchone()[0]:
                polls += 1
                worker_alive = worker.alive()
                assert worker_alive, worker.output()
                threading.Event().wait(0.01)
            seconds = common.now() - t0
            done = c.execute("SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()[0]
            if kind == "settle":
                settled = c.execute("SELECT count(*) FROM payments WHERE status = 'success'").fetchone()[0]
                assert settled == jobs, f"{settled} of {jobs} settled"
        assert done == jobs, f"{done} of {jobs} completed"
        sampler.done.set()
        sampler.join()
        # Transactions committed in this database during the drain, from pg_stat_database once the
        # worker's backends have exited (they flush their statistics then), less this script's own
        # (the seed, the polls and the reads above). Other databases on the server do not count.
        worker.stop()
        with psycopg.connect(url, autocommit=True) as c:
            common.wait_until(lambda: c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                "current_database()").fetchone()[0] == 1, message="worker gone")
            commits = db_commits(c) - commits0 - (polls + 4)
        return {"seconds": seconds, "jobs_per_s": jobs / seconds, "commits_per_job": commits / jobs,
                "peak_rss_mb": sampler.peak / 2**20}
    finally:
        worker.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--peers", default="pgqueuer,procrastinate", help="comma list, or '' to skip")
    ap.add_argument("--json", default=str(common.RESULTS / "queue.json"))
    args = ap.parse_args()
    log_dir = tempfile.mkdtemp(prefix="bench-queue-")
    peers = [p for p in args.peers.split(",") if p]
    run_peer = None
    if peers:
        from queue_peers import run_peer  # noqa: F811 - needs bench/requirements.txt

    results = {"ours_noop": [], "ours_settle": [], **{p: [] for p in peers}}
    for i in range(args.runs):
        # Alternate so that the machine's noise falls on every contender alike.
        results["ours_noop"].append(drain_ours("noop", args.jobs, args.batch, log_dir))
        for p in peers:
            results[p].append(run_peer(p, common.server_url(), args.jobs))
        results["ours_settle"].append(drain_ours("settle", args.jobs, args.batch, log_dir))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]['jobs_per_s']:.0f}/s" for k, v in results.items()), flush=True)

    url = common.fresh_database("bench_queue")
    summary = {
        "machine": common.machine(),
        "postgres": common.pg_settings(url),
        "jobs": args.jobs,
        "runs": args.runs,
        "batch": args.batch,
        "results": results,
        "median_jobs_per_s": {k: common.median([r["jobs_per_s"] for r in v]) for k, v in results.items()},
    }
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=2, default=str)
    med = summary["median_jobs_per_s"]
    print(json.dumps(med, indent=2))
    ref = med.get("pgqueuer")
    lines = [f"{args.jobs} jobs queued before the drain starts; {args.runs} runs alternating; worker.py batch "
             f"{args.batch}, lease 30 s; peers at their defaults (bench/queue_peers.py).", "",
             "| contender | median jobs/s | vs pgqueuer | runs (jobs/s) | commits/job | peak worker RSS |",
             "|---|---|---|---|---|---|"]
    for k, v in results.items():
        runs = ", ".join(f"{r['jobs_per_s']:.0f}" for r in v)
        cpj = common.median([r["commits_per_job"] for r in v if "commits_per_job" in r]) if k.startswith("ours") else None
        rss = max(r.get("peak_rss_mb", 0) for r in v) if k.startswith("ours") else None
        ratio = f"{med[k] / ref:.1f}×" if ref else ""
        lines.append(f"| {k} | {med[k]:.0f} | {ratio} | {runs} | {'' if cpj is None else f'{cpj:.4f}'} | "
                     f"{'' if rss is None else f'{rss:.0f} MB'} |")
    print("\n".join(lines))
    common.write_result("queue.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
