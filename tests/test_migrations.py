"""Schema migrations (app/migrate.py): what `python -m app.launcher migrate` builds equals
schema.sql, a database of the previous release is brought forward with its data, a migration
gives up on a lock instead of queueing every query behind it, and starting the API or the worker
takes no lock on any table."""
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pgserver
import psycopg
import pytest
import requests

from helpers import Process, api_headers, free_port, own_transaction, wait_until
from app import migrate

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS_RELEASE = "e78ab25"  # the release before migrations existed
# pg_dump from the embedded PostgreSQL 16: it dumps this server's version or an older one.
PG_DUMP = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"


def catalog(url):
    """The schema as pg_dump writes it, without comments, settings and the migrations' own table."""
    out = subprocess.run([str(PG_DUMP), "--schema-only", "--no-owner", "--no-privileges",
                          "--exclude-table=schema_migrations", url], capture_output=True, text=True, check=True).stdout
    # Debian's PostgreSQL 15 dumps a per-table version stamp as a column option (pg_attver): not schema.
    lines = [line for line in out.splitlines()
             if line.strip() and not line.startswith(("--", "SET ", "SELECT pg_catalog.set_config"))
             and "(pg_attver=" not in line]
    return "\n".join(lines)


def test_schema_sql_and_the_migrations_build_the_same_database(new_database):
    fresh, migrated = new_database(), new_database()
    with psycopg.connect(fresh, autocommit=True) as c:
        c.execute((ROOT / "schema.sql").read_text())
    assert migrate.migrate(migrated) == [path.name for _, _, path in migrate.files()]
    assert re.search(r"CREATE TABLE public\.payments", catalog(migrated))
    assert catalog(fresh) == catalog(migrated)


def test_migrate_records_each_migration_once_and_a_second_run_does_nothing(new_database):
    url = new_database()
    first = migrate.migrate(url)
    assert first and migrate.migrate(url) == []
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(version, name) for version, name, _ in migrate.files()]
        assert migrate.pending(c) == []
        # migrate does not seed: no merchant at all
        assert c.execute("SELECT count(*) FROM merchants").fetchone()[0] == 0


def test_a_migration_behind_a_long_transaction_gives_up_then_retries(new_database, tmp_path, monkeypatch):
    """A long read (pg_dump, a report) holds a table: the migration waits lock_timeout, not
    forever, changes nothing, and is tried again once the lock is free."""
    url = new_database()
    migrate.migrate(url)
    for _, _, path in migrate.files():
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "9999_probe.sql").write_text("ALTER TABLE jobs ADD COLUMN probe integer;")
    reader = psycopg.connect(url)
    reader.execute("SELECT count(*) FROM jobs")  # an open transaction: its ACCESS SHARE lock stays
    waits = []

    def sleep(seconds):  # instead of waiting: the long transaction ends
        waits.append(seconds)
        reader.commit()

    monkeypatch.setattr(migrate.time, "sleep", sleep)
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable):
            migrate.migrate(url, tmp_path, lock_timeout="100ms", attempts=1)
        with psycopg.connect(url) as c:
            assert migrate.pending(c, tmp_path) == ["probe"]  # nothing half-applied
        reader.execute("SELECT count(*) FROM jobs")  # holds the lock again
        assert migrate.migrate(url, tmp_path, lock_timeout="100ms", attempts=3) == ["9999_probe.sql"]
        assert len(waits) == 1
    finally:
        reader.close()
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'jobs' "
                         "AND column_name = 'probe'").fetchone()[0] == 1


def assert_kept(old, new, where):
    """Every value of `old` is in `new` unchanged; `new` may carry more keys."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for key, value in old.items():
            assert key in new, f"{where}: {key} is gone"
            assert_kept(value, new[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), where
        for i, (a, b) in enumerate(zip(old, new)):
            assert_kept(a, b, f"{where}[{i}]")
    else:
        assert new == old, f"{where}: {old!r} became {new!r}"


def launcher(command, env, log_dir, cwd=ROOT):
    return Process([sys.executable, "-m", "app.launcher", command], env, f"launcher-{command}", log_dir, cwd=cwd)


def healthy(url):
    try:
        return requests.get(url + "/health", timeout=2).json().get("status") == "healthy"
    except (requests.RequestException, ValueError):
        return False


def test_starting_the_api_and_the_worker_takes_no_lock(app, process_env, log_dir):
    """With a long transaction holding every table (as pg_dump does), a new API process and a new
    worker start and serve: they change no schema (an earlier release dropped and created a
    trigger at every start and waited behind such a transaction)."""
    port = free_port()
    env = dict(process_env, PORT=str(port))
    with own_transaction(app) as reader:
        tables = reader.values("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        reader.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE")
        api, worker = launcher("api", env, log_dir), launcher("worker", env, log_dir)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: healthy(url), timeout=30, message=f"API and worker healthy:\n{api.output()[-2000:]}"
                                                                  f"\n{worker.output()[-2000:]}")
            r = requests.post(url + "/api/v1/orders", json={"amount": 50000}, headers=api_headers(), timeout=5)
            assert r.status_code == 201, r.text
        finally:
            api.stop()
            worker.stop()
        reader.rollback()


def test_a_database_of_the_previous_release_is_upgraded_in_place(new_database, process_env, log_dir, tmp_path):
    """The previous release (from git) makes orders, payments, a refund and webhook deliveries
    through its API; after `migrate` the new code serves every one of them unchanged, and new
    work goes on from them."""
    tree = tmp_path / "previous"
    add = subprocess.run(["git", "worktree", "add", "--detach", str(tree), PREVIOUS_RELEASE], cwd=ROOT,
                         capture_output=True, text=True)
    if add.returncode:
        pytest.fail(f"the previous release {PREVIOUS_RELEASE} is not in this clone's history: {add.stderr}")
    url = new_database()
    port, receiver_port = free_port(), free_port()
    env = dict(process_env, DATABASE_URL=url, PORT=str(port), TEST_MERCHANT_PORT=str(receiver_port),
               TEST_PROCESSING_DELAY="100")
    base, headers = f"http://127.0.0.1:{port}", api_headers()
    try:
        old = launcher("run", env, log_dir, cwd=tree)
        try:
            wait_until(lambda: healthy(base), timeout=60, message=f"the previous release up:\n{old.output()[-3000:]}")
            paid_order = requests.post(base + "/api/v1/orders", json={"amount": 50000, "receipt": "r-1"},
                                       headers=headers).json()
            open_order = requests.post(base + "/api/v1/orders", json={"amount": 20000}, headers=headers).json()
            payment = requests.post(base + "/api/v1/payments", headers=headers,
                                    json={"order_id": paid_order["id"], "method": "upi", "vpa": "old@bank"}).json()
            wait_until(lambda: requests.get(f"{base}/api/v1/payments/{payment['id']}", headers=headers)
                       .json()["status"] == "success", timeout=30, message="the old payment settled")
            refund = requests.post(f"{base}/api/v1/payments/{payment['id']}/refunds", json={"amount": 10000},
                                   headers=headers).json()
            wait_until(lambda: requests.get(f"{base}/api/v1/refunds/{refund['id']}", headers=headers)
                       .json()["status"] == "processed", timeout=30, message="the old refund processed")

            def delivered():
                logs = requests.get(base + "/api/v1/webhooks?limit=100", headers=headers).json()
                return logs if logs["data"] and all(x["status"] == "success" for x in logs["data"]) \
                    and len(logs["data"]) >= 4 else None

            wait_until(delivered, timeout=30, message="the old release's webhooks delivered")
            paths = [f"/api/v1/orders/{paid_order['id']}", f"/api/v1/orders/{open_order['id']}",
                     f"/api/v1/payments/{payment['id']}", f"/api/v1/refunds/{refund['id']}",
                     "/api/v1/webhooks?limit=100", "/api/v1/payments?count=100"]
            before = {p: requests.get(base + p, headers=headers).json() for p in paths}
        finally:
            assert old.stop() == 0, old.output()[-3000:]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)

    with psycopg.connect(url) as c:
        assert c.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None  # made before migrations
    new = launcher("run", env, log_dir)  # `make run`: migrate, then the processes
    try:
        wait_until(lambda: healthy(base), timeout=60, message=f"the new release up:\n{new.output()[-3000:]}")
        assert "migrations applied: 0001_initial.sql" in new.output()
        for p in paths:  # every field the old release showed is unchanged (new fields may appear)
            assert_kept(before[p], requests.get(base + p, headers=headers).json(), p)
        # New work on the old rows: the rest of the refund, a payment of the old open order, a
        # redelivery of an old event, and the lists' from/to window.
        rest = requests.post(f"{base}/api/v1/payments/{payment['id']}/refunds", json={}, headers=headers)
        assert rest.status_code == 201 and rest.json()["amount"] == 40000
        second = requests.post(base + "/api/v1/payments", headers=headers,
                               json={"order_id": open_order["id"], "method": "upi", "vpa": "new@bank"})
        assert second.status_code == 201, second.text
        wait_until(lambda: requests.get(f"{base}/api/v1/orders/{open_order['id']}", headers=headers)
                   .json()["status"] == "paid", timeout=30, message="the old order paid by the new release")
        old_log = before["/api/v1/webhooks?limit=100"]["data"][-1]
        assert requests.post(f"{base}/api/v1/webhooks/{old_log['id']}/retry", headers=headers).status_code == 200
        at = int(datetime.strptime(paid_order["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                 .timestamp())
        window = requests.get(f"{base}/api/v1/orders?from={at}&to={at}", headers=headers)
        assert window.status_code == 200, window.text
        assert paid_order["id"] in [o["id"] for o in window.json()["data"]]
    finally:
        new.stop()
