"""The reference of bench/api_bench.py: a bare Flask app, one POST endpoint, one INSERT.

Same driver as the gateway (psycopg 3), a pool of 10 connections per process (as DB_POOL_SIZE),
the same gunicorn command (api_bench.py takes the launcher's), the same database. No auth, no
validation, no logging: parse the JSON body, INSERT one row into a table of its own, commit,
answer 201 with the row.

    DATABASE_URL=postgresql://... gunicorn 'bench.bare_app:create_app()'
    curl -d '{"amount": 50000}' -H 'Content-Type: application/json' localhost:8000/bare
"""
import os

import psycopg
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


def create_app():
    conninfo = os.environ["DATABASE_URL"]
    with psycopg.connect(conninfo) as c:
        c.execute("SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": LOCK})
        c.execute(TABLE_DDL)
    pool = ConnectionPool(conninfo, min_size=1, max_size=int(os.environ.get("DB_POOL_SIZE", "10")), open=True,
                          kwargs={"options": "-c timezone=UTC"})
    app = Flask(__name__)

    @app.post("/bare")
    def bare():
        data = request.get_json()
        with pool.connection() as c:  # commits on leaving the block
            row = c.execute("INSERT INTO bench_bare (amount, currency) VALUES (%(amount)s, %(currency)s) "
                            "RETURNING id, created_at",
                            {"amount": data["amount"], "currency": data.get("currency", "INR")}).fetchone()
        return {"id": row[0], "amount": data["amount"], "created_at": row[1].isoformat()}, 201

    return app
