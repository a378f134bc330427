#!/usr/bin/env python
"""How fast the peer Postgres job queues drain N queued no-op jobs: pgqueuer and procrastinate.

Each run gets a fresh database (bench_<library>: dropped and created again), the library's schema
installed its own documented way, N no-op jobs enqueued in bulk through its batch API (timed on
their own), and then one consumer with the library's default settings drains the queue in its
"stop when empty" mode. Drain time runs from the consumer start until it returns with every job
done; the handler counts each job by its index, and the run fails unless every index ran exactly
once and the library's own tables agree.

    pip install -r bench/requirements.txt
    python bench/queue_peers.py --jobs 20000 --runs 3 --json out.json

The database is --database-url, else $DATABASE_URL, else the embedded server (app.embedded). The
bench_* databases are created next to the URL's database with the same role. Other scripts reuse
`run_peer(name, url, jobs)` (one run, a dict) and `database_settings(url)`.
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from importlib.metadata import version as dist_version
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.db import libpq_url  # noqa: E402

PEERS = ("pgqueuer", "procrastinate")

# The libraries' own defaults, stated so the results say what ran. enqueue_chunk: jobs per batch
# enqueue call (each call is one statement in its own transaction).
DEFAULTS = {
    "pgqueuer": {
        "driver": "asyncpg (one connection, AsyncpgDriver)",
        "batch_size": 10,               # QueueManager.run default: jobs claimed per dequeue
        "max_concurrent_tasks": None,   # QueueManager.run default: unlimited
        "concurrency_limit": 0,         # entrypoint default: unlimited
        "mode": "drain",
        "durability": "durable",        # Queries.install() default: all tables logged
        "enqueue_chunk": 1000,
    },
    "procrastinate": {
        "driver": "psycopg 3 (PsycopgConnector, psycopg_pool defaults)",
        "concurrency": 1,               # run_worker_async default
        "wait": False,                  # stop once the queues are caught up
        "listen_notify": True,          # default
        "delete_jobs": "never",         # default: finished jobs stay with status succeeded
        "enqueue_chunk": 1000,
    },
}

# Server settings that bear on queue throughput; reported with the results.
PG_SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_level", "full_page_writes",
               "shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout", "work_mem",
               "max_connections", "autovacuum")


# ---- database plumbing ---------------------------------------------------------------------------

def default_url():
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from app.embedded import ensure_database_url

    return ensure_database_url()


def admin_url(url):
    """The URL's own database (postgres when it names none), as a libpq URL."""
    url = libpq_url(url)
    return url if urlsplit(url).path.strip("/") else libpq_url(url, database="postgres")


def fresh_database(url, dbname):
    """DROP (closing other sessions) and CREATE dbname; return its URL."""
    with psycopg.connect(admin_url(url), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return libpq_url(url, database=dbname)


def database_settings(url):
    """The server settings that matter here, as SHOW reports them."""
    with psycopg.connect(admin_url(url)) as c:
        return {name: c.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                for name in PG_SETTINGS}


def chunks(n, size):
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def check_exactly_once(seen, jobs, library):
    dupes = sum(1 for v in seen.values() if v > 1)
    missing = jobs - len(seen)
    ran = sum(seen.values())
    if ran != jobs or dupes or missing:
        raise AssertionError(f"{library}: {ran} runs for {jobs} jobs ({missing} never ran, {dupes} ran twice)")


# ---- pgqueuer ------------------------------------------------------------------------------------

async def _pgqueuer(url, jobs, settings):
    import asyncpg
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    # Install: the library's Queries.install() (what `pgq install` runs).
    conn = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        t0 = time.perf_counter()
        for part in chunks(jobs, settings["enqueue_chunk"]):
            await queries.enqueue(["noop"] * len(part), [str(i).encode() for i in part], [0] * len(part))
        enqueue_s = time.perf_counter() - t0

        qm = QueueManager(queries)
        seen = Counter()

        @qm.entrypoint("noop", concurrency_limit=settings["concurrency_limit"])
        async def noop(job: Job) -> None:
            seen[int(job.payload)] += 1

        t0 = time.perf_counter()
        await qm.run(batch_size=settings["batch_size"], max_concurrent_tasks=settings["max_concurrent_tasks"],
                     mode=QueueExecutionMode.drain)
        drain_s = time.perf_counter() - t0
    finally:
        if not conn.is_closed():
            await conn.close()

    check_exactly_once(seen, jobs, "pgqueuer")
    conn = await asyncpg.connect(url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        done = await conn.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    finally:
        await conn.close()
    if left or done != jobs:
        raise AssertionError(f"pgqueuer: {left} jobs left in the queue, {done} logged successful")
    return enqueue_s, drain_s


# ---- procrastinate -------------------------------------------------------------------------------

async def _procrastinate(url, jobs, settings):
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    seen = Counter()

    @app.task(name="noop")
    async def noop(i):
        seen[i] += 1

    async with app.open_async():
        # Install: SchemaManager.apply_schema_async() (what `procrastinate schema --apply` runs).
        await app.schema_manager.apply_schema_async()

        t0 = time.perf_counter()
        for part in chunks(jobs, settings["enqueue_chunk"]):
            await noop.batch_defer_async(*({"i": i} for i in part))
        enqueue_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        await app.run_worker_async(concurrency=settings["concurrency"], wait=settings["wait"],
                                   listen_notify=settings["listen_notify"], delete_jobs=settings["delete_jobs"],
                                   install_signal_handlers=False)
        drain_s = time.perf_counter() - t0

    check_exactly_once(seen, jobs, "procrastinate")
    with psycopg.connect(url) as c:
        counts = dict(c.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall())
    if counts != {"succeeded": jobs}:
        raise AssertionError(f"procrastinate: job statuses {counts}, expected {jobs} succeeded")
    return enqueue_s, drain_s


RUNNERS = {"pgqueuer": _pgqueuer, "procrastinate": _procrastinate}


def _event_loop():
    """uvloop when installed (pgqueuer's own CLI runs on it), else asyncio's loop; the same for both."""
    try:
        import uvloop

        return "uvloop", uvloop.new_event_loop
    except ImportError:
        return "asyncio", asyncio.new_event_loop


def settings_for(name, **overrides):
    s = dict(DEFAULTS[name])
    s.update({k: v for k, v in overrides.items() if v is not None})
    s["event_loop"] = _event_loop()[0]
    return s


def run_peer(name, url, jobs, **overrides):
    """One run of one peer: fresh database bench_<name> on url's server, enqueue `jobs` no-op jobs,
    drain them. Returns {library, version, jobs, enqueue_s, drain_s, jobs_per_s, settings}.
    overrides replace DEFAULTS[name] entries (e.g. batch_size=100, concurrency=10)."""
    if name not in RUNNERS:
        raise ValueError(f"unknown peer {name!r}; one of {PEERS}")
    settings = settings_for(name, **overrides)
    db_url = fresh_database(url, f"bench_{name}")
    with asyncio.Runner(loop_factory=_event_loop()[1]) as runner:
        enqueue_s, drain_s = runner.run(RUNNERS[name](db_url, jobs, settings))
    return {
        "library": name,
        "version": dist_version(name),
        "jobs": jobs,
        "enqueue_s": round(enqueue_s, 3),
        "drain_s": round(drain_s, 3),
        "jobs_per_s": round(jobs / drain_s, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "settings": settings,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--runs", type=int, default=1, help="runs per library, alternating libraries")
    p.add_argument("--only", choices=PEERS, action="append", help="run only this library (repeatable)")
    p.add_argument("--database-url", help="default: $DATABASE_URL, else the embedded server")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--pgqueuer-batch-size", type=int, help=f"default {DEFAULTS['pgqueuer']['batch_size']}")
    p.add_argument("--procrastinate-concurrency", type=int,
                   help=f"default {DEFAULTS['procrastinate']['concurrency']}")
    p.add_argument("--enqueue-chunk", type=int, help="jobs per batch enqueue call (default 1000)")
    args = p.parse_args(argv)

    url = args.database_url or default_url()
    overrides = {
        "pgqueuer": {"batch_size": args.pgqueuer_batch_size, "enqueue_chunk": args.enqueue_chunk},
        "procrastinate": {"concurrency": args.procrastinate_concurrency, "enqueue_chunk": args.enqueue_chunk},
    }
    names = args.only or list(PEERS)
    db = database_settings(url)
    results = {n: {"version": dist_version(n), "runs": [], "settings": {**settings_for(n, **overrides[n]),
                                                                         "jobs": args.jobs, "database": db}}
               for n in names}
    for r in range(args.runs):
        for n in names:
            res = run_peer(n, url, args.jobs, **overrides[n])
            results[n]["runs"].append({k: res[k] for k in ("drain_s", "jobs_per_s", "enqueue_s", "loadavg_1m")})
            print(f"run {r + 1}/{args.runs} {n} {res['version']}: enqueue {res['enqueue_s']:.2f}s, "
                  f"drain {res['drain_s']:.2f}s = {res['jobs_per_s']:.0f} jobs/s (load {res['loadavg_1m']})",
                  file=sys.stderr, flush=True)
    for n in names:
        results[n]["median_jobs_per_s"] = round(statistics.median(x["jobs_per_s"] for x in results[n]["runs"]), 1)
    out = json.dumps(results, indent=2)
    print(out)
    if args.json:
        Path(args.json).write_text(out + "\n")
    return results


if __name__ == "__main__":
    main()
