"""The peer PostgreSQL job queues of bench/queue_bench.py: pgqueuer and procrastinate draining N no-op jobs.

One run (run_peer): a fresh database bench_<library> on the same server, the library's schema
installed its own documented way, N no-op jobs enqueued through its batch API in chunks of 1,000
(not timed), then one consumer with the library's default settings drains the queue in its "stop
when empty" mode, timed from its start until it returns. The handler counts each job by its index:
the run fails unless every job ran exactly once and the library's own tables agree. Both run on
uvloop (pgqueuer's own CLI does). Needs bench/requirements.txt.

Settings, the libraries' defaults: pgqueuer QueueManager.run(batch_size=10, unlimited concurrent
tasks, mode=drain) on one asyncpg connection, durable tables; procrastinate run_worker_async
(concurrency=1, wait=False, listen_notify=True, delete_jobs="never") over psycopg_pool.
"""
import asyncio
import time
from collections import Counter

import psycopg
import uvloop

import common

CHUNK = 1000


def check_exactly_once(seen, jobs, library):
    if sum(seen.values()) != jobs or len(seen) != jobs:
        raise AssertionError(f"{library}: {sum(seen.values())} runs of {len(seen)} distinct jobs, {jobs} queued")


async def _pgqueuer(url, jobs):
    import asyncpg
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()  # what `pgq install` runs
        for start in range(0, jobs, CHUNK):
            part = range(start, min(jobs, start + CHUNK))
            await queries.enqueue(["noop"] * len(part), [str(i).encode() for i in part], [0] * len(part))
        qm, seen = QueueManager(queries), Counter()

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            seen[int(job.payload)] += 1

        t0 = time.perf_counter()
        await qm.run(mode=QueueExecutionMode.drain)
        seconds = time.perf_counter() - t0
    finally:
        if not conn.is_closed():
            await conn.close()
    check_exactly_once(seen, jobs, "pgqueuer")
    conn = await asyncpg.connect(url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        logged = await conn.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    finally:
        await conn.close()
    if left or logged != jobs:
        raise AssertionError(f"pgqueuer: {left} jobs left in the queue, {logged} logged successful")
    return seconds


async def _procrastinate(url, jobs):
    import procrastinate

    app, seen = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url)), Counter()

    @app.task(name="noop")
    async def noop(i):
        seen[i] += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()  # what `procrastinate schema --apply` runs
        for start in range(0, jobs, CHUNK):
            await noop.batch_defer_async(*({"i": i} for i in range(start, min(jobs, start + CHUNK))))
        t0 = time.perf_counter()
        await app.run_worker_async(wait=False, install_signal_handlers=False)
        seconds = time.perf_counter() - t0
    check_exactly_once(seen, jobs, "procrastinate")
    with psycopg.connect(url) as c:
        counts = dict(c.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall())
    if counts != {"succeeded": jobs}:
        raise AssertionError(f"procrastinate: job statuses {counts}, expected {jobs} succeeded")
    return seconds


def run_peer(name, url, jobs):
    """One drain of `jobs` no-op jobs by library `name` on url's server: {"jobs_per_s": …}."""
    db_url = common.database_url(url, f"bench_{name}")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "bench_{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "bench_{name}"')
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        seconds = runner.run({"pgqueuer": _pgqueuer, "procrastinate": _procrastinate}[name](db_url, jobs))
    return {"jobs_per_s": jobs / seconds}
