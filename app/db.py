"""The database: one connection pool per app (app/pg.py), a connection per request, SQL helpers."""
import logging
from datetime import datetime, timezone
import re
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import click
from flask import current_app, g

from .config import ROOT, TEST_MERCHANT
from .pg import Pool, text

log = logging.getLogger(__name__)
SCHEMA_LOCK = 7240001  # advisory lock id: processes starting together apply the schema one at a time


def libpq_url(url, database=None):
    """The URL as libpq understands it (postgres://, postgresql:// and SQLAlchemy-style
    postgresql+driver:// are accepted), for psycopg.connect and psql; with `database`, the same
    server and role but that database (a socket path stays in ?host=)."""
    parts = urlsplit(re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url))
    if database is not None:
        parts = parts._replace(path="/" + quote(database))
    return urlunsplit(parts)


def make_pool(url, pool_size=10):
    """The connection pool: never hangs on connect (3 s), UTC sessions, a statement timeout, and
    after a database restart it reconnects by itself (see pg.Pool.invalidate)."""
    return Pool(libpq_url(url), size=pool_size, connect_timeout=3,
                options="-c timezone=UTC -c statement_timeout=15000")


def pool():
    return current_app.extensions["db_pool"]


def conn():
    """The request's connection, in a transaction that the view commits (or teardown rolls back)."""
    if "db_conn" not in g:
        g.db_conn = pool().connect()
    return g.db_conn


def one(sql, c=None, **params):
    """First row as a mapping, or None."""
    row = (c or conn()).execute(text(sql), params).mappings().first()
    return dict(row) if row is not None else None


def scalar(sql, c=None, **params):
    return (c or conn()).execute(text(sql), params).scalar()


def page(c, table, columns, where, params, limit, offset, window=(None, None)):
    """One page, newest first, and the exact total: the shape of every list endpoint. window is
    (from, to) in unix seconds, both inclusive at whole seconds; None leaves that side open. The
    bounds are plain comparisons on created_at, so the (merchant_id, created_at) indexes serve them."""
    start, end = window
    params = dict(params, limit=limit, offset=offset)
    if start is not None:
        where += " AND created_at >= :from_at"
        params["from_at"] = datetime.fromtimestamp(start, timezone.utc)
    if end is not None:
        # created_at keeps microseconds while the API shows whole seconds: to=T takes in all of second T.
        where += " AND created_at < :to_at"
        params["to_at"] = datetime.fromtimestamp(end + 1, timezone.utc)
    total = c.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar()
    rows = c.execute(text(f"SELECT {columns} FROM {table} WHERE {where} "
                          f"ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset"), params).mappings().all()
    return [dict(r) for r in rows], total


def close_conn(exc=None):
    c = g.pop("db_conn", None)
    if c is not None:
        try:
            c.rollback()
        finally:
            c.close()


def seeds_test_merchant(cfg):
    """Whether start-up seeds the test merchant: SEED_TEST_MERCHANT when set, else TEST_MODE."""
    seed = cfg.get("SEED_TEST_MERCHANT")
    return bool(cfg.get("TEST_MODE")) if seed is None else bool(seed)


def apply_schema(c):
    """Run schema.sql (idempotent) and, when asked, seed the test merchant, under an advisory lock."""
    from werkzeug.security import check_password_hash, generate_password_hash

    cfg = current_app.config
    raw = c.driver_connection
    with raw.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cur.execute(Path(ROOT / "schema.sql").read_text())
    if not seeds_test_merchant(cfg):
        # Its key, secret and password are public (an earlier release seeded it everywhere): a start
        # that does not ask for it switches it off, keeping its data; a seeding start turns it back on.
        if c.execute(text("UPDATE merchants SET is_active = false, updated_at = now() WHERE id = :id AND is_active "
                          "RETURNING id"), {"id": TEST_MERCHANT["id"]}).first():
            log.warning("deactivated the test merchant %s: its credentials are public (SEED_TEST_MERCHANT=true "
                        "brings it back)", TEST_MERCHANT["id"])
        c.commit()
        return False
    existing = one("SELECT password_hash FROM merchants WHERE id = :id", c, id=TEST_MERCHANT["id"])
    # Keep the stored hash when the password is unchanged (hashing is deliberately slow).
    password = cfg["TEST_MERCHANT_PASSWORD"]
    if existing and existing["password_hash"] and check_password_hash(existing["password_hash"], password):
        password_hash = existing["password_hash"]
    else:
        password_hash = generate_password_hash(password)
    c.execute(
        text(
            """
            INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_secret, webhook_url, password_hash)
            VALUES (:id, :name, :email, :api_key, :api_secret, :webhook_secret, :webhook_url, :password_hash)
            ON CONFLICT (id) DO UPDATE
               SET password_hash = EXCLUDED.password_hash, is_active = true,
                   -- a URL the merchant saved is kept; an empty one points at the local receiver
                   webhook_url = COALESCE(merchants.webhook_url, EXCLUDED.webhook_url)
            """
        ),
        dict(TEST_MERCHANT, webhook_url=cfg["TEST_MERCHANT_WEBHOOK_URL"], password_hash=password_hash),
    )
    c.commit()
    return True


def init_app(app):
    app.extensions["db_pool"] = make_pool(app.config["DATABASE_URL"], app.config["DB_POOL_SIZE"])
    app.teardown_appcontext(close_conn)
    app.cli.add_command(init_db_command)


@click.command("init-db")
def init_db_command():
    """Apply schema.sql and seed the test merchant when asked (safe to run again)."""
    with pool().connect() as c:
        seeded = apply_schema(c)
    click.echo("Schema applied, test merchant seeded." if seeded else "Schema applied (test merchant not seeded).")
