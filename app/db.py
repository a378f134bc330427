"""The database: a psycopg_pool connection pool per process, the request's connection, and five
helpers over psycopg's own API (SQL with %(name)s parameters, rows as dicts):

    db.one(c, "SELECT … WHERE id = %(id)s", {"id": x})   -> dict or None
    db.all(c, sql, params)                               -> [dict, …]
    db.value(c, sql, params)                             -> the first column of the first row, or None
    db.values(c, sql, params)                            -> the first column of every row
    db.execute(c, sql, params)                           -> the number of rows affected

Connections are in autocommit: a single statement is its own transaction (no BEGIN/COMMIT round
trips), and work that must commit together runs in `with db.transaction(c):`.
"""
import contextlib
import logging
import re
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit, urlunsplit

import click
import psycopg
from flask import current_app, g
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .config import TEST_MERCHANT

log = logging.getLogger(__name__)
POOL_TIMEOUT_SECONDS = 5  # a request waits this long for a connection, then fails (503)


def libpq_url(url, database=None):
    """The URL as libpq understands it (postgres://, postgresql:// and SQLAlchemy-style
    postgresql+driver:// are accepted), for psycopg.connect and psql; with `database`, the same
    server and role but that database (a socket path stays in ?host=)."""
    parts = urlsplit(re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url))
    if database is not None:
        parts = parts._replace(path="/" + quote(database))
    return urlunsplit(parts)


def make_pool(url, size=10, name="gateway"):
    """At most `size` connections, opened as needed (one kept from the start); a caller waits up
    to POOL_TIMEOUT_SECONDS for one, then gets a PoolTimeout (an OperationalError: a 503). A
    failed connect is not retried on the pool's back-off timer (1, 2, 4 … s) but by the next
    caller: the gateway is back as soon as the database is (see release() for the connections
    that died with it). Sessions are UTC with a statement timeout; a connection lives an hour at
    most; connecting never hangs (3 s). No `check` of every connection handed out: its empty
    query cost 0.035 ms of PostgreSQL CPU per request, 18 % of an order's
    (docs/decisions/002-database-layer.md)."""
    return ConnectionPool(
        libpq_url(url), min_size=1, max_size=size, name=name, open=True, timeout=POOL_TIMEOUT_SECONDS,
        max_lifetime=3600, reconnect_timeout=0,
        kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 3,
                "options": "-c timezone=UTC -c statement_timeout=15000"})


# ---- connections ------------------------------------------------------------------------------

def rollback(c):
    """End an open transaction without forgetting the connection's prepared statements.
    psycopg's rollback() also runs DEALLOCATE ALL (in case the rollback undid a CREATE they
    depend on); this app changes no schema on a pooled connection and PostgreSQL replans a
    prepared statement by itself when a table changes. With psycopg's rollback every read
    request made the next statements on its connection parse and plan afresh: payments mixed
    with reads took 0.77 ms of PostgreSQL CPU per request instead of 0.41 ms
    (docs/decisions/002-database-layer.md)."""
    c._after_commit = None
    if c.closed or c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    with c.lock:
        res = c.pgconn.exec_(b"ROLLBACK")
    if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.OperationalError(f"ROLLBACK failed: {c.pgconn.get_error_message()}")


@contextlib.contextmanager
def transaction(c):
    """BEGIN … COMMIT around the block, or ROLLBACK when it raises. Inside an open transaction the
    block simply joins it: a domain function that needs atomicity says so, and a caller that
    needs more around it (an idempotency key stored with the object) opens the outer one.
    Not psycopg's c.transaction(): its rollback forgets the prepared statements (see rollback())
    and its nested blocks cost two savepoint round trips each."""
    if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield c
        return
    c.execute("BEGIN")
    c._after_commit = None  # left by a transaction that did not end here
    try:
        yield c
    except BaseException:
        rollback(c)
        raise
    if c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        rollback(c)  # a statement failed and its error was handled: nothing to commit
    else:
        c.execute("COMMIT")
        done, c._after_commit = c._after_commit, None
        for fn in done or ():
            fn()


def generic_plans(c):
    """For the rest of the open transaction, prepared statements run the plan made once for every
    value of their parameters (plan_cache_mode). For statements on a partitioned table: with a
    custom plan, which prunes the partitions while planning, PostgreSQL never settles on the
    generic plan and plans the statement again at every call (docs/decisions/009)."""
    c.execute("SET LOCAL plan_cache_mode = force_generic_plan")


def after_commit(c, fn):
    """Call fn() once the work done on c so far has committed: at once between transactions (in
    autocommit a statement commits by itself), else when the open transaction() block commits;
    never when it rolls back. For counting what happened, not what was only attempted."""
    if c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        fn()
    elif getattr(c, "_after_commit", None) is None:
        c._after_commit = [fn]
    else:
        c._after_commit.append(fn)


def release(pool, c):
    """Give a connection back, idle (psycopg_pool would roll back with psycopg's rollback()). One
    that lost the server means the others likely did too (a database restart): the pool then
    tests its idle ones and replaces the dead, so requests do not fail one stale connection at a
    time."""
    try:
        rollback(c)
    except psycopg.Error:
        pass  # broken: the pool discards it
    broken = c.broken
    pool.putconn(c)
    if broken:
        pool.check()


@contextlib.contextmanager
def connect(pool):
    """A pooled connection for the block (autocommit); anything left open is rolled back."""
    c = pool.getconn()
    try:
        yield c
    finally:
        release(pool, c)


def pool():
    return current_app.extensions["db_pool"]


def conn():
    """The request's connection, given back when the request ends."""
    if "db_conn" not in g:
        g.db_conn = pool().getconn()
    return g.db_conn


def close_conn(exc=None):
    c = g.pop("db_conn", None)
    if c is not None:
        release(pool(), c)


# ---- statements -------------------------------------------------------------------------------

def one(c, sql, params=None):
    return c.execute(sql, params).fetchone()


def all(c, sql, params=None):  # noqa: A001 - reads as db.all(...)
    return c.execute(sql, params).fetchall()


def value(c, sql, params=None):
    row = c.execute(sql, params).fetchone()
    return next(iter(row.values())) if row else None


def values(c, sql, params=None):
    return [next(iter(row.values())) for row in c.execute(sql, params).fetchall()]


def execute(c, sql, params=None):
    return c.execute(sql, params).rowcount


def bounds(window):
    """(from, to) in unix seconds, inclusive at whole seconds, None for open -> (start, end) as
    datetimes, end exclusive: created_at keeps microseconds while the API shows whole seconds, so
    to=T takes in all of second T."""
    start, end = window
    return (None if start is None else datetime.fromtimestamp(start, timezone.utc),
            None if end is None else datetime.fromtimestamp(end + 1, timezone.utc))


def page(c, table, columns, where, params, limit, offset, window=(None, None), count=None):
    """One page, newest first, and the exact total: the shape of every list endpoint. window: see
    bounds(); plain comparisons on created_at, so the (merchant_id, created_at) indexes serve them.
    count(start, end), when given, computes the total a cheaper way than counting (rollups.count)."""
    start, end = bounds(window)
    params = dict(params, limit=limit, offset=offset)
    if start is not None:
        where, params["start"] = where + " AND created_at >= %(start)s", start
    if end is not None:
        where, params["end"] = where + " AND created_at < %(end)s", end
    total = count(start, end) if count else value(c, f"SELECT count(*) FROM {table} WHERE {where}", params)
    rows = all(c, f"SELECT {columns} FROM {table} WHERE {where} "
                  f"ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s", params)
    return rows, total


def keyset(c, table, columns, where, params, limit, before=None, after=None):
    """A page by cursor, newest first, in constant time however deep: the rows just older than
    `before` or just newer than `after` (each a (created_at, id) of a row), through the
    (merchant_id, created_at DESC, id DESC) indexes. Returns (rows, newer, older): whether there
    are rows on either side of the page."""
    params = dict(params, limit=limit + 1)
    if after:
        params["at"], params["id"] = after
        rows = all(c, f"SELECT {columns} FROM {table} WHERE {where} AND (created_at, id) > (%(at)s, %(id)s) "
                      f"ORDER BY created_at, id LIMIT %(limit)s", params)
        return rows[:limit][::-1], len(rows) > limit, True
    if before:
        params["at"], params["id"] = before
        where += " AND (created_at, id) < (%(at)s, %(id)s)"
    rows = all(c, f"SELECT {columns} FROM {table} WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %(limit)s", params)
    return rows[:limit], before is not None, len(rows) > limit


# ---- the test merchant -----------------------------------------------------------------------------------

def seeds_test_merchant(cfg):
    """Whether start-up seeds the test merchant: SEED_TEST_MERCHANT when set, else TEST_MODE."""
    seed = cfg.get("SEED_TEST_MERCHANT")
    return bool(cfg.get("TEST_MODE")) if seed is None else bool(seed)


def seed_test_merchant(c, cfg):
    """When asked (seeds_test_merchant), insert or refresh the test merchant; otherwise deactivate
    it if an earlier start seeded it. Rows only, no schema: run at the worker's start and by the
    tests. Returns whether it is seeded."""
    from werkzeug.security import check_password_hash, generate_password_hash

    if not seeds_test_merchant(cfg):
        # Its key, secret and password are public (an earlier release seeded it everywhere): a start
        # that does not ask for it switches it off, keeping its data; a seeding start turns it back on.
        if execute(c, "UPDATE merchants SET is_active = false, updated_at = now() WHERE id = %(id)s AND is_active",
                   {"id": TEST_MERCHANT["id"]}):
            log.warning("deactivated the test merchant %s: its credentials are public (SEED_TEST_MERCHANT=true "
                        "brings it back)", TEST_MERCHANT["id"])
        return False
    existing = one(c, "SELECT password_hash FROM merchants WHERE id = %(id)s", {"id": TEST_MERCHANT["id"]})
    # Keep the stored hash when the password is unchanged (hashing is deliberately slow).
    password = cfg["TEST_MERCHANT_PASSWORD"]
    if existing and existing["password_hash"] and check_password_hash(existing["password_hash"], password):
        password_hash = existing["password_hash"]
    else:
        password_hash = generate_password_hash(password)
    c.execute(
        """
        INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_secret, webhook_url, password_hash)
        VALUES (%(id)s, %(name)s, %(email)s, %(api_key)s, %(api_secret)s, %(webhook_secret)s, %(webhook_url)s,
                %(password_hash)s)
        ON CONFLICT (id) DO UPDATE
           SET password_hash = EXCLUDED.password_hash, is_active = true,
               -- a URL the merchant saved is kept; an empty one points at the local receiver
               webhook_url = COALESCE(merchants.webhook_url, EXCLUDED.webhook_url)
        """,
        dict(TEST_MERCHANT, webhook_url=cfg["TEST_MERCHANT_WEBHOOK_URL"], password_hash=password_hash))
    return True


def init_app(app):
    app.extensions["db_pool"] = make_pool(app.config["DATABASE_URL"], app.config["DB_POOL_SIZE"])
    app.teardown_appcontext(close_conn)
    app.cli.add_command(seed_command)
    from .rollups import recount_command  # rollups builds on this module
    app.cli.add_command(recount_command)


@click.command("seed")
def seed_command():
    """Seed the test merchant when SEED_TEST_MERCHANT (or TEST_MODE) asks, as the worker does at start."""
    with connect(pool()) as c:
        seeded = seed_test_merchant(c, current_app.config)
    click.echo("Test merchant seeded." if seeded else "Test merchant not seeded (SEED_TEST_MERCHANT is off).")
