"""The reference for bench/api_bench.py: a bare Flask app, one POST endpoint, one INSERT.

Same driver as the gateway (psycopg 3), a pool of comparable size (10 connections per process, as
DB_POOL_SIZE), same gunicorn settings (api_bench.py builds the command from app.launcher's), same
database. No auth, no validation, no logging, no SQLAlchemy: parse the JSON body, INSERT one row
into a table of its own, commit, answer 201 with the row.

    DATABASE_URL=postgresql://... gunicorn 'bench.bare_app:create_app()'
    curl -d '{"amount": 50000}' -H 'Content-Type: application/json' localhost:PORT/bare
"""
import os

from flask import Flask, request
from psycopg_pool import ConnectionPool

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_bare (
    id         bigserial PRIMARY KEY,
    amount     integer NOT NULL,
    currency   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
LOCK = 7240777  # advisory lock: two workers starting together create the table one at a time


def ensure_table(conninfo):
    import psycopg

    with psycopg.connect(conninfo) as c:
        c.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        c.execute(TABLE_DDL)


def libpq(url):
    # SQLAlchemy-style URLs (postgresql+psycopg://) are not libpq's.
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


def create_app():
    conninfo = libpq(os.environ["DATABASE_URL"])
    ensure_table(conninfo)
    size = int(os.environ.get("DB_POOL_SIZE", "10"))
    pool = ConnectionPool(conninfo, min_size=1, max_size=size, open=True,
                          kwargs={"options": "-c timezone=UTC"})
    app = Flask(__name__)

    @app.post("/bare")
    def bare():
        data = request.get_json()
        with pool.connection() as c:  # commits on leaving the block
            row = c.execute("INSERT INTO bench_bare (amount, currency) VALUES (%s, %s) "
                            "RETURNING id, created_at", (data["amount"], data.get("currency", "INR"))).fetchone()
        return {"id": row[0], "amount": data["amount"], "created_at": row[1].isoformat()}, 201

    return app
