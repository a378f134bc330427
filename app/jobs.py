"""The Postgres job queue, and every statement on the `jobs` table: enqueue inside the caller's
transaction, claim with a lease, finish fenced on the lease. It knows kinds only as strings
(worker.HANDLERS maps kinds to handlers)."""
import json

import psycopg

from . import db, logs

STATUSES = ("pending", "processing", "completed", "dead")


def wakeup_gate(c, wait_seconds):
    """Take the wake-up gate for a worker about to sleep, in the caller's transaction (held until
    it ends); False when an enqueuing transaction kept it busy for wait_seconds. While a worker
    holds the gate, the trigger jobs_notify (schema.sql) makes every transaction that enqueues a
    due job send NOTIFY jobs; while none does, enqueuing sends none, which saves every committing
    transaction PostgreSQL's NOTIFY queue lock (docs/decisions/003-wakeup-gate.md)."""
    c.execute(f"SET LOCAL lock_timeout = '{float(wait_seconds)}s'")
    try:
        c.execute("LOCK TABLE jobs_wakeup_gate IN SHARE MODE")
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def enqueue(c, kind, payload, delay_seconds=0.0):
    """Insert one job in the caller's transaction; it becomes visible (and wakes the worker) on commit."""
    return enqueue_many(c, kind, [payload], delay_seconds)[0]["id"]


def insert_sql(kind, payload_sql, source):
    """The INSERT of one due job per row of `source`, its payload built by `payload_sql` (SQL), for
    a statement that also writes what the jobs are about (a payment and its settlement job in one
    round trip: payments._CREATE)."""
    return f"INSERT INTO jobs (kind, payload) SELECT '{kind}', {payload_sql} FROM {source}"


def leased_insert_sql(kind, payload_sql, source):
    """As insert_sql, with `RETURNING id, payload`, and the jobs leased to the calling worker when
    the statement's params carry lease_id and lease_s (see lease_params; enqueue_many's lease)."""
    return (f"INSERT INTO jobs (kind, payload, status, lease_id, locked_until, attempts) "
            f"SELECT '{kind}', {payload_sql}, "
            f"CASE WHEN %(lease_id)s::uuid IS NULL THEN 'pending' ELSE 'processing' END, %(lease_id)s::uuid, "
            f"CASE WHEN %(lease_id)s::uuid IS NULL THEN NULL ELSE now() + make_interval(secs => %(lease_s)s) END, "
            f"CASE WHEN %(lease_id)s::uuid IS NULL THEN 0 ELSE 1 END FROM {source} RETURNING id, payload")


def lease_params(lease=None):
    """The params leased_insert_sql reads: the lease (lease_id, seconds) or none, and the request id."""
    lease_id, lease_s = lease or (None, 0)
    return {"lease_id": lease_id, "lease_s": float(lease_s), "request_id": logs.current_request_id()}


def enqueue_many(c, kind, payloads, delay_seconds=0.0, lease=None, stamp=None):
    """Insert jobs of one kind in one statement; returns their rows (id, payload). With
    lease=(lease_id, seconds) they start leased to the calling worker, which runs them right
    after its commit without claiming them again. A job enqueued while a request (or a job of one)
    is handled carries its request_id, which the worker's lines about it name. With stamp (a
    key), each payload also gets the transaction's time, now(), under that key: the time of what
    the caller writes in the same transaction (webhooks: the log's created_at)."""
    lease_id, lease_s = lease or (None, 0)
    request_id = logs.current_request_id()
    if request_id:
        payloads = [{"request_id": request_id, **p} for p in payloads]
    return db.all(c, """
        INSERT INTO jobs (kind, payload, next_run_at, status, lease_id, locked_until, attempts)
        SELECT %(kind)s,
               CASE WHEN %(stamp)s::text IS NULL THEN p.payload
                    ELSE p.payload || jsonb_build_object(%(stamp)s::text, now()) END,
               now() + make_interval(secs => %(delay)s),
               CASE WHEN %(lease)s::uuid IS NULL THEN 'pending' ELSE 'processing' END, %(lease)s::uuid,
               CASE WHEN %(lease)s::uuid IS NULL THEN NULL ELSE now() + make_interval(secs => %(lease_s)s) END,
               CASE WHEN %(lease)s::uuid IS NULL THEN 0 ELSE 1 END
          FROM unnest(%(payloads)s::jsonb[]) AS p(payload)
        RETURNING id, payload
        """, {"kind": kind, "payloads": [json.dumps(p) for p in payloads], "delay": float(delay_seconds),
              "lease": lease_id, "lease_s": float(lease_s), "stamp": stamp})


def claim(c, lease_id, limit, lease_seconds, exclude_kinds=()):
    """Lease up to `limit` due jobs. FOR UPDATE SKIP LOCKED lets several workers claim side by side
    without waiting on each other; the caller commits the claim before running anything."""
    return db.all(c, """
        UPDATE jobs j
           SET status = 'processing', lease_id = %(lease)s, attempts = j.attempts + 1,
               locked_until = now() + make_interval(secs => %(lease_s)s), updated_at = now()
          FROM (SELECT id FROM jobs
                 WHERE status = 'pending' AND next_run_at <= now() AND kind <> ALL(CAST(%(exclude)s AS text[]))
                 ORDER BY next_run_at
                 LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED) due
         WHERE j.id = due.id
        RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts
        """, {"lease": lease_id, "limit": limit, "lease_s": float(lease_seconds), "exclude": list(exclude_kinds)})


def finish(c, outcomes):
    """Record how leased jobs went: outcomes are (job_id, lease_id, seconds until it runs again, or
    None when it is done). Fenced on the lease: a job another worker reclaimed meanwhile is left
    alone. Returns the ids recorded."""
    if not outcomes:
        return []
    ids, leases, waits = zip(*outcomes)
    return db.values(c, """
        UPDATE jobs j
           SET status = CASE WHEN t.wait IS NULL THEN 'completed' ELSE 'pending' END,
               next_run_at = CASE WHEN t.wait IS NULL THEN j.next_run_at ELSE now() + make_interval(secs => t.wait) END,
               attempts = CASE WHEN t.wait IS NULL THEN j.attempts ELSE 0 END,  -- a planned step, not a failure
               lease_id = NULL, locked_until = NULL, updated_at = now()
          FROM unnest(%(ids)s::bigint[], %(leases)s::uuid[], %(waits)s::float8[]) AS t(id, lease, wait)
         WHERE j.id = t.id AND j.lease_id = t.lease
        RETURNING j.id
        """, {"ids": list(ids), "leases": list(leases), "waits": [None if w is None else float(w) for w in waits]})


def release(c, ids, lease_id, delay_seconds=0.0):
    """Give jobs back untouched (shutdown, or a merchant already at its concurrency cap)."""
    if not ids:
        return []
    return db.values(c, "UPDATE jobs SET status = 'pending', lease_id = NULL, locked_until = NULL, "
                        "attempts = greatest(attempts - 1, 0), next_run_at = now() + make_interval(secs => %(d)s), "
                        "updated_at = now() WHERE id = ANY(%(ids)s) AND lease_id = %(lease)s RETURNING id",
                     {"ids": list(ids), "lease": lease_id, "d": float(delay_seconds)})


def fail(c, job_id, lease_id, error):
    """A handler crashed: retry with exponential backoff, or 'dead' after max_attempts."""
    return db.value(c, """
        UPDATE jobs SET lease_id = NULL, locked_until = NULL, last_error = left(%(error)s, 2000), updated_at = now(),
               status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
               -- 2, 4, 8 … seconds, capped at 5 minutes
               next_run_at = now() + make_interval(secs => least(power(2, attempts), 300))
         WHERE id = %(id)s AND lease_id = %(lease)s
        RETURNING status
        """, {"id": job_id, "lease": lease_id, "error": error})


def reclaim_expired(c):
    """Jobs whose lease ran out (their worker died) become due again; too many tries -> dead."""
    return db.execute(c, """
        UPDATE jobs SET lease_id = NULL, locked_until = NULL, updated_at = now(), next_run_at = now(),
               status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
               last_error = CASE WHEN attempts >= max_attempts THEN 'lease expired too often' ELSE last_error END
         WHERE status = 'processing' AND locked_until < now()
        """)


def extend_lease(c, ids, lease_id, seconds):
    """Keep long-running jobs (a slow webhook endpoint) from being reclaimed."""
    if ids:
        db.execute(c, "UPDATE jobs SET locked_until = now() + make_interval(secs => %(s)s) "
                      "WHERE id = ANY(%(ids)s) AND lease_id = %(lease)s", {"ids": list(ids), "lease": lease_id, "s": float(seconds)})


def trim(c, keep_completed_seconds=3600, keep_dead_days=7):
    """Delete finished jobs so the hot table stays small."""
    return db.execute(c, "DELETE FROM jobs WHERE (status = 'completed' AND updated_at < now() - make_interval(secs => %(s)s)) "
                         "OR (status = 'dead' AND updated_at < now() - make_interval(days => %(d)s))",
                      {"s": float(keep_completed_seconds), "d": keep_dead_days})


def status(c, job_id):
    """'pending', 'processing', 'completed', 'dead', or None when it was trimmed."""
    return db.value(c, "SELECT status FROM jobs WHERE id = %(id)s", {"id": job_id})


def run_now(c, job_id):
    """A pending job becomes due now, with its attempts forgotten (a manual retry)."""
    return db.execute(c, "UPDATE jobs SET next_run_at = now(), attempts = 0, updated_at = now() "
                         "WHERE id = %(id)s AND status = 'pending'", {"id": job_id})


def overview(c):
    """Counts by kind and status, and how long the oldest pending job has waited."""
    by_kind = {}
    for row in db.all(c, "SELECT kind, status, count(*) AS n FROM jobs GROUP BY kind, status ORDER BY kind"):
        by_kind.setdefault(row["kind"], dict.fromkeys(STATUSES, 0))[row["status"]] = row["n"]
    totals = {s: sum(k[s] for k in by_kind.values()) for s in STATUSES}
    ages = db.one(c, """
        SELECT extract(epoch FROM now() - min(created_at)) AS oldest_pending,
               extract(epoch FROM now() - min(next_run_at) FILTER (WHERE next_run_at <= now())) AS oldest_due,
               count(*) FILTER (WHERE next_run_at <= now()) AS due
          FROM jobs WHERE status = 'pending'
        """)
    return {"by_kind": by_kind, "totals": totals, "due": ages["due"],
            "oldest_pending_seconds": None if ages["oldest_pending"] is None else float(ages["oldest_pending"]),
            "oldest_due_seconds": None if ages["oldest_due"] is None else float(ages["oldest_due"])}


def queue_depth(c):
    """For /metrics: jobs by kind and status for the statuses that make up the queue (pending,
    processing, dead), and the seconds the oldest due job has waited (0 when none is due). Each
    part reads its own partial index, so a scrape costs as much as the queue holds, not the
    table of finished jobs (overview() above reads them all)."""
    counts = db.all(c, """
        SELECT kind, 'pending' AS status, count(*) AS n FROM jobs WHERE status = 'pending' GROUP BY kind
        UNION ALL
        SELECT kind, 'processing', count(*) FROM jobs WHERE status = 'processing' GROUP BY kind
        UNION ALL
        SELECT kind, 'dead', count(*) FROM jobs WHERE status = 'dead' GROUP BY kind
        """)
    oldest = db.value(c, "SELECT extract(epoch FROM now() - min(next_run_at)) FROM jobs "
                         "WHERE status = 'pending' AND next_run_at <= now()")
    return counts, max(0.0, float(oldest or 0))


def dead_of_merchant(c, merchant_id, limit=20):
    """The most recent dead jobs that concern this merchant's payments, refunds or webhooks.
    The queue is shared by all merchants: a job's last_error may name another merchant's objects,
    so only this merchant's own are listed (the counts above are public anyway)."""
    return db.all(c, """
        SELECT j.id, j.kind, j.attempts, j.max_attempts, j.last_error, j.created_at, j.updated_at,
               coalesce(j.payload ->> 'payment_id', j.payload ->> 'refund_id', j.payload ->> 'log_id') AS subject
          FROM jobs j
         WHERE j.status = 'dead'
           AND (j.payload ->> 'merchant_id' = CAST(%(m)s AS text)
                OR EXISTS (SELECT 1 FROM payments p WHERE p.id = j.payload ->> 'payment_id' AND p.merchant_id = %(m)s)
                OR EXISTS (SELECT 1 FROM refunds r WHERE r.id = j.payload ->> 'refund_id' AND r.merchant_id = %(m)s))
         ORDER BY j.updated_at DESC, j.id DESC
         LIMIT %(limit)s
        """, {"m": merchant_id, "limit": limit})


def seconds_until_next(c):
    """Seconds until the earliest pending job is due (None when there is none)."""
    return db.value(c, "SELECT extract(epoch FROM min(next_run_at) - now()) FROM jobs WHERE status = 'pending'")
