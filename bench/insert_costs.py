"""What a payment costs PostgreSQL, part by part, against the bare INSERT of bench/bare_app.py.

    .venv/bin/python bench/insert_costs.py --rounds 3 --seconds 5

pgbench (8 clients, 2 threads, prepared statements) on a fresh `bench_costs` database, with
synchronous_commit off so that the figures are PostgreSQL's work and not the disk's flush. Every
transaction first takes the next of a million unpaid orders from a sequence (the bare INSERT
takes one too, so that all pay the same). The scripts, alternating in order every round:
  bare         the bare app's INSERT (one index, no constraint)
  payment      the statement POST /api/v1/payments sends (app/payments.py _CREATE: the order, the
               merchant and the order's payments read, the payment and its settlement job inserted)
  payment row  only the payment's INSERT (its indexes, checks, foreign keys and triggers)
  no FKs       the same on a copy of the database whose payments have no foreign keys
  job row      only the settlement job's INSERT (its indexes and the wake-up trigger)
Printed: transactions/s per script (medians of the rounds) and the bare INSERT's over each: with
the cores saturated, how many times the bare INSERT's work the script is.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

import common

sys.path.insert(0, str(common.ROOT))
from app import payments  # noqa: E402  (the statement the API sends)

DB, COPY = "bench_costs", "bench_costs_nofk"
ORDERS = 1_000_000
M = common.TEST_MERCHANT_ID
NEXT = "SELECT 'order_' || lpad(nextval('bench_next')::text, 16, '0') AS oid, " \
       "'pay_' || lpad(currval('bench_next')::text, 16, '0') AS pid \\gset\n"
PAYMENT_ROW = (f"INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, notes) "
               f"VALUES (:pid, :oid, '{M}', 50000, 'INR', 'upi', 'bench@okbank', '{{}}');\n")
# The API's statement for a UPI payment of a merchant without a webhook URL (the benchmark's test
# merchant), its parameters written in: the ids as pgbench variables, the rest as literals.
LITERALS = {"order_id": ":oid", "id": ":pid", "m": f"'{M}'", "method": "'upi'", "vpa": "'bench@okbank'",
            "card_network": "NULL", "card_last4": "NULL", "amount": "NULL", "currency": "NULL", "notes": "'{}'",
            "alone": "true", "request_id": "NULL"}
SCRIPTS = {
    "bare": "INSERT INTO bench_bare (amount, currency) VALUES (50000, 'INR') RETURNING id, created_at;\n",
    "payment": re.sub(r"%\((\w+)\)s", lambda m: LITERALS[m.group(1)], payments._CREATE).strip() + ";\n",
    "payment row": PAYMENT_ROW,
    "no FKs": PAYMENT_ROW,
    "job row": "INSERT INTO jobs (kind, payload) VALUES ('payment.settle', jsonb_build_object('payment_id', CAST(:pid AS text)));\n",
}


def pgbench_path():
    """The server's own pgbench when it is the embedded one, else the one on PATH."""
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    found = shutil.which("pgbench") if os.environ.get("DATABASE_URL") else None
    return found or str(bundled)


def prepare(url):
    """The bare table, the orders and the sequence handing them out; a copy of it all whose
    payments have no foreign keys."""
    with psycopg.connect(url) as c:
        c.execute("CREATE TABLE bench_bare (id bigserial PRIMARY KEY, amount integer NOT NULL, "
                  "currency text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        c.execute("CREATE SEQUENCE bench_next")
        c.execute("INSERT INTO orders (id, merchant_id, amount, currency, receipt) "
                  "SELECT 'order_' || lpad(g::text, 16, '0'), %(m)s, 50000, 'INR', 'bench' "
                  "FROM generate_series(1, %(n)s) g", {"m": M, "n": ORDERS})
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
    server = common.server_url()
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{COPY}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{COPY}" TEMPLATE "{DB}"')
    copy = common.database_url(server, COPY)
    with psycopg.connect(copy) as c:
        for fk in c.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'payments'::regclass "
                            "AND contype = 'f'").fetchall():
            c.execute(f"ALTER TABLE payments DROP CONSTRAINT {fk[0]}")
    return copy


def _payments(url):
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM payments").fetchone()[0]


def run(pgbench, url, name, seconds, tmp):
    """Transactions/s of one pgbench run of SCRIPTS[name]; a payment script must have inserted a
    payment per transaction (the statement inserts nothing once the orders run out)."""
    path = Path(tmp) / "script.sql"
    path.write_text(NEXT + SCRIPTS[name])
    env = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
    before = _payments(url)
    out = subprocess.run([pgbench, "-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", str(seconds), "-f", str(path),
                          psycopg.conninfo.make_conninfo(url)], env=env, capture_output=True, text=True)
    tps = re.search(r"^tps = ([\d.]+)", out.stdout, re.M)
    done = re.search(r"transactions actually processed: (\d+)", out.stdout)
    if out.returncode != 0 or not tps or not done or re.search(r"failed transactions: [1-9]", out.stdout):
        sys.exit(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    if name.startswith("payment") or name == "no FKs":
        inserted = _payments(url) - before
        if inserted != int(done.group(1)):
            sys.exit(f"{name}: {inserted} payments for {done.group(1)} transactions (out of orders? raise ORDERS)")
    return float(tps.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    url = common.fresh_database(DB)
    names = list(SCRIPTS)
    results = {n: [] for n in names}
    try:
        copy = prepare(url)
        pgbench = pgbench_path()
        settings = common.pg_settings(url)
        with tempfile.TemporaryDirectory(prefix="insert_costs_") as tmp:
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    results[name].append(run(pgbench, copy if name == "no FKs" else url, name, args.seconds, tmp))
                    print(f"round {r + 1} {name:12s} {results[name][-1]:8.0f} tx/s", flush=True)
    finally:
        common.drop_databases([DB, COPY])  # a million orders each
    print(f"\npgbench -c 8 -j 2 -M prepared, {args.rounds} round(s) of {args.seconds} s per script, order reversed "
          f"every round; synchronous_commit off; {settings}; {common.machine()}\n")
    print("| script | median tx/s (runs) | the bare INSERT's work × |\n|---|---|---:|")
    bare = common.median(results["bare"])
    for name in names:
        print(f"| {name} | {common.runs(results[name])} | {bare / common.median(results[name]):.1f} |")


if __name__ == "__main__":
    main()
