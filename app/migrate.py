"""Schema migrations: migrations/NNNN_name.sql, applied in order, each once, each recorded in
schema_migrations (one row per applied migration). `python -m app.launcher migrate` runs them;
`make run` and the tests run them too; the API and the worker never do (starting them takes no
lock on any table).

- Concurrent runs (two deployments at once) take turns on an advisory lock; the second finds
  nothing left to do.
- Each migration runs in a transaction of its own with a lock_timeout: a migration that would
  queue behind a long transaction (a pg_dump, a report) gives up after LOCK_TIMEOUT instead of
  holding every later query on that table behind it, and is tried again, ATTEMPTS times.
- A file whose first line is `-- migrate: no-transaction` runs outside a transaction, one
  statement at a time (each ends with `;` at the end of a line), for what cannot run in one:
  CREATE/DROP INDEX CONCURRENTLY (write them with IF [NOT] EXISTS, so a retry skips what is done).
- 0001 is the schema of the first releases, written to bring any of their databases forward:
  a database made before migrations existed (its tables, no schema_migrations) gets 0001 like a
  new one and keeps its data.

How to write one: docs/migrations.md.
"""
import logging
import re
import time
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

from .config import ROOT

log = logging.getLogger(__name__)

DIRECTORY = ROOT / "migrations"
LOCK_ID = 7240001  # advisory lock: one migrating process at a time
LOCK_TIMEOUT = "5s"
ATTEMPTS = 5
NO_TRANSACTION = "-- migrate: no-transaction"


def files(directory=DIRECTORY):
    """(version, name, path) of every migration, in order."""
    found = []
    for path in sorted(Path(directory).glob("[0-9][0-9][0-9][0-9]_*.sql")):
        version, name = path.stem.split("_", 1)
        found.append((version, name, path))
    return found


def statements(sql):
    """The statements of a no-transaction file: sent one by one, since several in one query string
    would run as one implicit transaction."""
    found = [s.strip() for s in re.split(r";[ \t]*$", sql, flags=re.MULTILINE)]
    return [s for s in found if any(line.strip() and not line.strip().startswith("--") for line in s.splitlines())]


def applied(c):
    """Versions recorded in schema_migrations (none when the table does not exist yet)."""
    with c.cursor(row_factory=tuple_row) as cur:
        if cur.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            return set()
        return {row[0] for row in cur.execute("SELECT version FROM schema_migrations")}


def pending(c, directory=DIRECTORY):
    """Migrations not applied to this database yet."""
    done = applied(c)
    return [name for version, name, _ in files(directory) if version not in done]


def migrate(url, directory=DIRECTORY, lock_timeout=LOCK_TIMEOUT, attempts=ATTEMPTS):
    """Apply the pending migrations; returns the file names applied."""
    done_now = []
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
                      "applied_at timestamptz NOT NULL DEFAULT now())")
            done = applied(c)
            if not done and c.execute("SELECT to_regclass('payments')").fetchone()[0] is not None:
                log.warning("a database from a release before migrations: 0001 brings it forward, keeping its data")
            for version, name, path in files(directory):
                if version not in done:
                    _apply(c, version, name, path.read_text(), lock_timeout, attempts)
                    done_now.append(path.name)
                    log.warning("applied migration %s", path.name)
        finally:
            c.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return done_now


def _apply(c, version, name, sql, lock_timeout, attempts):
    record = ("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
    for attempt in range(1, attempts + 1):
        try:
            if sql.startswith(NO_TRANSACTION):
                c.execute(f"SET lock_timeout = '{lock_timeout}'")
                try:
                    for statement in statements(sql):
                        c.execute(statement)
                finally:
                    c.execute("RESET lock_timeout")
                c.execute(*record)
            else:
                with c.transaction():
                    c.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                    c.execute(sql)
                    c.execute(*record)
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts:
                raise
            wait = min(2 ** attempt, 30)
            log.warning("migration %s_%s waited %s for a lock (a long transaction holds it); trying again in %s s "
                        "(%d of %d)", version, name, lock_timeout, wait, attempt, attempts)
            time.sleep(wait)  # let the transaction that holds the lock end
