"""The partitions of the tables kept by day, webhook_logs (migrations/0004) and events (0007), one
per UTC day of created_at: ensure() creates the days to come, drop_expired() drops the days past
the retention (WEBHOOK_LOG_RETENTION_DAYS) as whole tables. The worker runs
both (maintain) at its start and hourly; `python -m app.launcher migrate` runs ensure() so that a
new database has its days before any worker ran.

The DEFAULT partition takes the rows of a day that has no partition (a worker down longer than
DAYS_AHEAD days), so an insert never fails; ensure() moves them into their day's partition when it
creates it. A database upgraded with logs also has webhook_logs_legacy, every row from before up
to the end of its newest row's day: it goes whole like a day once that day is past the retention.

These are the only schema changes made outside migrations, while payments and deliveries use the
table, so each is a transaction of its own that waits at most LOCK_TIMEOUT for its locks (and so
holds the queries that queue behind it no longer), is tried ATTEMPTS times, and otherwise is left
to the next run: docs/decisions/006-webhook-log-partitions.md has the locks and the figures. Give
them a connection in autocommit with no transaction open.
"""
import logging
import time

import psycopg
from psycopg import sql

from . import db, rollups

log = logging.getLogger(__name__)

DAYS_AHEAD = 7          # a worker may be down this long before rows go to the DEFAULT partition
TABLES = ("webhook_logs", "events")  # each partitioned by range of created_at, with a DEFAULT partition
LOCK_ID = 7240002       # advisory lock: one process changes the partitions at a time
LOCK_TIMEOUT = "100ms"  # the longest a delivery or a payment waits behind a drop or an attach
ATTEMPTS = 5
MOVE_TIMEOUT = "300s"   # moving the DEFAULT partition's rows of a day after a long outage

# Every partition but the DEFAULT one, with its bounds (lower None: MINVALUE, the legacy partition).
# pg_get_expr writes a bound as FOR VALUES FROM ('…') TO ('…') in this session's time zone and
# style, which the casts read back as such.
_PARTITIONS = r"""
    SELECT c.relname AS name,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS lower,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_partitioned_table p ON p.partrelid = i.inhparent
     WHERE i.inhparent = %(table)s::regclass AND c.oid <> p.partdefid
"""

# The days from today (UTC) to DAYS_AHEAD ahead, and the days of rows waiting in the DEFAULT
# partition, that no partition covers yet.
_MISSING_DAYS = """
    WITH parts AS (PARTITIONS),
         days AS (SELECT (now() AT TIME ZONE 'UTC')::date + n AS day FROM generate_series(0, %(ahead)s) n
                  UNION
                  SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM {table}_default),
         ranges AS (SELECT day, day::timestamp AT TIME ZONE 'UTC' AS lower,
                           (day + 1)::timestamp AT TIME ZONE 'UTC' AS upper FROM days)
    SELECT %(table)s::text || '_p' || to_char(day, 'YYYYMMDD') AS name, lower, upper
      FROM ranges r
     WHERE NOT EXISTS (SELECT 1 FROM parts p
                        WHERE coalesce(p.lower, '-infinity') < r.upper AND p.upper > r.lower)
     ORDER BY day
""".replace("PARTITIONS", _PARTITIONS)

# Logs of days before this are expired: the start of the UTC day `days` ago. A day boundary, so
# that what is gone is every log before one time (whole partitions, and DEFAULT rows alike).
_CUTOFF = """
    SELECT (date_trunc('day', (now() - make_interval(days => %(days)s)) AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC'
"""


def partitions(c, table="webhook_logs"):
    """Every partition of table but the DEFAULT one: dicts of name, lower (None: from the first)
    and upper."""
    return db.all(c, _PARTITIONS + " ORDER BY upper", {"table": table})


def ensure(c, days_ahead=DAYS_AHEAD, attempts=ATTEMPTS, lock_timeout=LOCK_TIMEOUT):
    """Create, for each table, the partitions of today through days_ahead days ahead, and of every
    day the DEFAULT partition holds rows of, moving those rows in. Idempotent; a process that finds
    another one at it leaves the work to it. Returns the names created."""
    created = []
    for table in TABLES:
        for day in db.all(c, _MISSING_DAYS.replace("{table}", table), {"ahead": days_ahead, "table": table}):
            moved = _in_own_transaction(c, f"create {day['name']}", lambda: _create(c, table, **day), attempts,
                                        lock_timeout)
            if moved is None:
                return created  # busy or locked out: the next run goes on
            if moved is not False:
                created.append(day["name"])
                log.info("%s: created partition %s (%d rows moved from the default partition)", table, day["name"],
                         moved)
    return created


def _create(c, parent, name, lower, upper):
    """One day's partition, in the caller's transaction; the number of rows moved into it, or
    False when another process created it meanwhile."""
    if db.value(c, "SELECT to_regclass(%(n)s)", {"n": name}) is not None:
        return False
    table, parent_id, default = sql.Identifier(name), sql.Identifier(parent), sql.Identifier(parent + "_default")
    # A table of its own first, then ATTACH (CREATE TABLE … PARTITION OF would take ACCESS
    # EXCLUSIVE on the parent, which reads wait for too).
    c.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(table, parent_id))
    # SHARE on the parent makes inserts wait for the attach (milliseconds, but for a move after a
    # long outage): an insert routed by the partitions it saw before would put a row of this day
    # in the DEFAULT partition and fail its new constraint, failing the payment that wrote it.
    # Reads go on. Parent first, as ATTACH and every query lock them.
    c.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(parent_id))
    c.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(default))
    c.execute(f"SET LOCAL statement_timeout = '{MOVE_TIMEOUT}'")
    moved = db.execute(c, sql.SQL("""
        WITH moved AS (DELETE FROM {} WHERE created_at >= %(lower)s AND created_at < %(upper)s RETURNING *)
        INSERT INTO {} SELECT * FROM moved
        """).format(default, table), {"lower": lower, "upper": upper})
    c.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
              .format(parent_id, table, sql.Literal(lower), sql.Literal(upper)))
    if moved:  # the DELETE above took them out of the rollups (its trigger); the INSERT had none
        rollups.count_in(c, parent, name)
    return moved


def drop_expired(c, retention_days, attempts=ATTEMPTS, lock_timeout=LOCK_TIMEOUT):
    """For each table, drop the partitions whose days all lie before the start of the UTC day
    retention_days ago, oldest first, each a DROP TABLE (no row deleted one by one), then delete
    the DEFAULT partition's rows from before that time. Returns the names dropped and the number
    of DEFAULT rows deleted (None when a partition could not be dropped this time)."""
    cutoff = db.value(c, _CUTOFF, {"days": retention_days})
    dropped, deleted = [], 0
    for table in TABLES:
        for part in partitions(c, table):
            if part["upper"] > cutoff:
                break
            done = _in_own_transaction(c, f"drop {part['name']}", lambda: _drop(c, table, **part), attempts,
                                       lock_timeout)
            if done is None:
                return dropped, None  # newer days wait for this one: what is gone stays "everything before a time"
            dropped.append(part["name"])
            log.info("%s: dropped partition %s (rows before %s)", table, part["name"], part["upper"].isoformat())
        n = _in_own_transaction(c, "delete expired default rows", lambda: _delete_default(c, table, cutoff),
                                attempts, lock_timeout)
        if n:
            log.info("%s: deleted %d rows before %s from the default partition", table, n, cutoff.isoformat())
        deleted = None if n is None or deleted is None else deleted + n
    return dropped, deleted


def _drop(c, parent, name, lower, upper):
    # ACCESS EXCLUSIVE on the parent (and the DEFAULT partition) for a moment: it waits for the
    # transactions using the table to end, and the ones that come meanwhile wait behind it, at
    # most lock_timeout. DETACH … CONCURRENTLY would not block them, but PostgreSQL refuses it
    # while a DEFAULT partition exists.
    c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    rollups.forget(c, parent, lower, upper)
    return True


def _delete_default(c, parent, cutoff):
    # Row by row, so the rollups' DELETE trigger takes each out (rows of days with no partition: few).
    return db.execute(c, sql.SQL("DELETE FROM {} WHERE created_at < %(cutoff)s").format(
        sql.Identifier(parent + "_default")), {"cutoff": cutoff})


def maintain(c, retention_days, days_ahead=DAYS_AHEAD):
    """The worker's duty: drop what expired (first, so that no partition is created for expired
    rows waiting in the DEFAULT partition), then create the days to come."""
    drop_expired(c, retention_days)
    ensure(c, days_ahead)


def _in_own_transaction(c, what, fn, attempts, lock_timeout):
    """fn() in a transaction of its own on c (in autocommit) that waits lock_timeout at most for
    each lock, tried `attempts` times; None when another process holds the partitions' advisory
    lock or every attempt timed out."""
    for attempt in range(1, attempts + 1):
        try:
            with db.transaction(c):
                c.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                if not db.value(c, "SELECT pg_try_advisory_xact_lock(%(id)s)", {"id": LOCK_ID}):
                    log.info("%s: another process is changing the partitions", what)
                    return None
                return fn()
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts:
                log.warning("%s: waited %s for a lock %d times (a long transaction holds the table); "
                            "left to the next run", what, lock_timeout, attempts)
                return None
            time.sleep(min(2 ** (attempt - 1), 8))  # let the transaction that holds the lock end
