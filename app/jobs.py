"""The Postgres job queue: enqueue inside the caller's transaction, claim with a lease, finish
fenced on the lease. It knows kinds only as strings (the worker maps kinds to handlers)."""
import json

from .pg import text


# The trigger jobs_notify (schema.sql) sends NOTIFY jobs when a due job is inserted while a worker
# is asleep (it holds the wake-up gate); PostgreSQL folds the notifications of one transaction.


def enqueue(c, kind, payload, delay_seconds=0.0):
    """Insert one job in the caller's transaction; it becomes visible (and wakes the worker) on commit."""
    return c.execute(text(
        "INSERT INTO jobs (kind, payload, next_run_at) "
        "VALUES (:kind, CAST(:payload AS jsonb), now() + make_interval(secs => :delay)) RETURNING id"),
        {"kind": kind, "payload": json.dumps(payload), "delay": float(delay_seconds)}).scalar()


def claim(c, lease_id, limit, lease_seconds, exclude_kinds=()):
    """Lease up to `limit` due jobs. FOR UPDATE SKIP LOCKED lets several workers claim side by side
    without waiting on each other; the caller commits the claim before running anything."""
    return c.execute(text(
        """
        UPDATE jobs j
           SET status = 'processing', lease_id = :lease, attempts = j.attempts + 1,
               locked_until = now() + make_interval(secs => :lease_s), updated_at = now()
          FROM (SELECT id FROM jobs
                 WHERE status = 'pending' AND next_run_at <= now() AND kind <> ALL(CAST(:exclude AS text[]))
                 ORDER BY next_run_at
                 LIMIT :limit
                 FOR UPDATE SKIP LOCKED) due
         WHERE j.id = due.id
        RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts
        """),
        {"lease": lease_id, "limit": limit, "lease_s": float(lease_seconds), "exclude": list(exclude_kinds)},
    ).mappings().all()


def complete(c, ids, lease_id):
    """Mark jobs done; returns the ids still held under this lease (the others were reclaimed)."""
    if not ids:
        return []
    return c.execute(text(
        "UPDATE jobs SET status = 'completed', lease_id = NULL, locked_until = NULL, updated_at = now() "
        "WHERE id = ANY(:ids) AND lease_id = :lease RETURNING id"),
        {"ids": list(ids), "lease": lease_id}).scalars().all()


def reschedule(c, ids, lease_id, delays):
    """Put leased jobs back to run again after their delay (planned steps, not failures)."""
    if not ids:
        return []
    return c.execute(text(
        """
        UPDATE jobs j SET status = 'pending', lease_id = NULL, locked_until = NULL, attempts = 0,
               next_run_at = now() + make_interval(secs => t.d), updated_at = now()
          FROM unnest(CAST(:ids AS bigint[]), CAST(:delays AS float8[])) AS t(id, d)
         WHERE j.id = t.id AND j.lease_id = :lease
        RETURNING j.id
        """), {"ids": list(ids), "delays": [float(d) for d in delays], "lease": lease_id}).scalars().all()


def release(c, ids, lease_id, delay_seconds=0.0):
    """Give jobs back untouched (shutdown, or a merchant already at its concurrency cap)."""
    if not ids:
        return []
    return c.execute(text(
        "UPDATE jobs SET status = 'pending', lease_id = NULL, locked_until = NULL, "
        "attempts = greatest(attempts - 1, 0), next_run_at = now() + make_interval(secs => :d), updated_at = now() "
        "WHERE id = ANY(:ids) AND lease_id = :lease RETURNING id"),
        {"ids": list(ids), "lease": lease_id, "d": float(delay_seconds)}).scalars().all()


def fail(c, job_id, lease_id, error):
    """A handler crashed: retry with exponential backoff, or 'dead' after max_attempts."""
    return c.execute(text(
        """
        UPDATE jobs SET lease_id = NULL, locked_until = NULL, last_error = left(:error, 2000), updated_at = now(),
               status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
               -- 2, 4, 8 … seconds, capped at 5 minutes
               next_run_at = now() + make_interval(secs => least(power(2, attempts), 300))
         WHERE id = :id AND lease_id = :lease
        RETURNING status
        """), {"id": job_id, "lease": lease_id, "error": error}).scalar()


def reclaim_expired(c):
    """Jobs whose lease ran out (their worker died) become due again; too many tries -> dead."""
    return c.execute(text(
        """
        UPDATE jobs SET lease_id = NULL, locked_until = NULL, updated_at = now(), next_run_at = now(),
               status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
               last_error = CASE WHEN attempts >= max_attempts THEN 'lease expired too often' ELSE last_error END
         WHERE status = 'processing' AND locked_until < now()
        """)).rowcount


def extend_lease(c, ids, lease_id, seconds):
    """Keep long-running jobs (a slow webhook endpoint) from being reclaimed."""
    if ids:
        c.execute(text("UPDATE jobs SET locked_until = now() + make_interval(secs => :s) "
                       "WHERE id = ANY(:ids) AND lease_id = :lease"),
                  {"ids": list(ids), "lease": lease_id, "s": float(seconds)})


def trim(c, keep_completed_seconds=3600, keep_dead_days=7):
    """Delete finished jobs so the hot table stays small."""
    return c.execute(text(
        "DELETE FROM jobs WHERE (status = 'completed' AND updated_at < now() - make_interval(secs => :s)) "
        "OR (status = 'dead' AND updated_at < now() - make_interval(days => :d))"),
        {"s": float(keep_completed_seconds), "d": keep_dead_days}).rowcount


def counts(c):
    """Jobs by status: {pending, processing, completed, dead}."""
    out = {"pending": 0, "processing": 0, "completed": 0, "dead": 0}
    for status, n in c.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")):
        out[status] = n
    return out


def seconds_until_next(c):
    """Seconds until the earliest pending job is due (None when there is none)."""
    return c.execute(text(
        "SELECT extract(epoch FROM min(next_run_at) - now()) FROM jobs WHERE status = 'pending'")).scalar()
