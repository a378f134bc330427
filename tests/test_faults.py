"""Faults: PostgreSQL restarting under API and worker load, a webhook receiver that is down for a
while. (A worker SIGKILLed mid-drain is in test_worker.py.)"""
import sys
import threading
import time

import psycopg
import pytest
import requests

from helpers import Api, Process, Receiver, api_headers, free_port, wait_until

from app import db as app_db, embedded


class Load(threading.Thread):
    """Creates an order and pays it, over and over, recording every answer."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.answers = []          # (status, content-type, body-or-None)
        self.paid = []             # payment ids acknowledged with 201

    def run(self):
        s = requests.Session()
        h = api_headers()
        while not self.stop.is_set():
            try:
                r = s.post(f"{self.base}/api/v1/orders", json={"amount": 10000}, headers=h, timeout=10)
                self.answers.append((r.status_code, r.headers.get("Content-Type"), r.json()))
                if r.status_code != 201:
                    continue
                r = s.post(f"{self.base}/api/v1/payments", json={"order_id": r.json()["id"], "method": "upi",
                                                                 "vpa": "load@okbank"}, headers=h, timeout=10)
                self.answers.append((r.status_code, r.headers.get("Content-Type"), r.json()))
                if r.status_code == 201:
                    self.paid.append(r.json()["id"])
            except requests.RequestException as e:  # a refused connection would be a failure too
                self.answers.append((None, None, repr(e)))


@pytest.mark.slow
def test_postgres_restart_under_load_loses_no_acknowledged_payment(private_server, process_env, log_dir):
    path, url = private_server
    env = dict(process_env, DATABASE_URL=url)
    api = Api(env, log_dir, workers=2, threads=4)
    worker = Process([sys.executable, "worker.py"], env, "fault-worker", log_dir)
    load = Load(api.url)
    try:
        wait_until(lambda: requests.get(api.url + "/health", timeout=5).json()["worker"] == "running", timeout=30,
                   message="worker running")
        load.start()
        wait_until(lambda: len(load.paid) >= 20, timeout=30, message="payments before the outage")
        embedded.stop(path, mode="immediate")
        down = time.monotonic()
        wait_until(lambda: any(a[0] == 503 for a in load.answers[-5:]), timeout=15, message="503 during outage")
        time.sleep(1.0)  # keep the database down a little while under load (the outage, not a sync)
        embedded.start(path)
        before = len(load.paid)
        wait_until(lambda: len(load.paid) > before + 10, timeout=15, message="payments again after the restart")
        assert time.monotonic() - down < 30
        load.stop.set()
        load.join(15)
        statuses = {a[0] for a in load.answers}
        assert statuses <= {201, 503}, [a for a in load.answers if a[0] not in (201, 503)][:3]
        for status, ctype, body in load.answers:
            if status == 503:
                assert ctype == "application/json" and body["error"]["code"] == "SERVER_ERROR"
        # Every acknowledged payment is in the database and settles (the worker recovered too).
        with psycopg.connect(url) as c:
            wait_until(lambda: c.execute("SELECT count(*) FROM payments WHERE id = ANY(%s) AND status = 'success'",
                                         (load.paid,)).fetchone()[0] == len(load.paid),
                       timeout=30, interval=0.2, message="every acknowledged payment settled")
    finally:
        load.stop.set()
        worker.stop()
        api.stop()
    assert worker.proc.returncode == 0, worker.output()[-2000:]


@pytest.mark.slow
def test_receiver_down_for_a_while_then_deliveries_succeed(client, make_merchant, db, running_worker):
    port = free_port()
    m = make_merchant(webhook_url=f"http://127.0.0.1:{port}/webhook")
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    # Nothing listens yet: the first attempts are refused and retried.
    row = wait_until(lambda: db.one(
        "SELECT attempts, status, response_body FROM webhook_logs WHERE merchant_id = %(m)s AND attempts >= 2",
        {"m": m["id"]}), timeout=15, message="two refused attempts")
    assert row["status"] == "pending" and "Connection" in row["response_body"]
    rx = Receiver(port=port)  # the receiver comes up on the very port the merchant configured
    try:
        rx.wait_for(1, timeout=15)
        final = wait_until(lambda: (r := db.one(
            "SELECT attempts, status FROM webhook_logs WHERE merchant_id = %(m)s", {"m": m["id"]}))["status"]
            == "success" and r, message="delivered once the receiver is back")
        assert 3 <= final["attempts"] <= 5
    finally:
        rx.close()


def test_a_timed_out_statement_keeps_the_pools_connections(app):
    """A statement or lock timeout is an OperationalError too, but the connection survives it: the
    pool must not throw it away as it does when the server is gone (the worker's gate takes a lock
    with a timeout on every sleep)."""
    pool = app.extensions["db_pool"]
    before = pool.get_stats()
    with app_db.connect(pool) as c:
        pid = c.info.backend_pid
        with pytest.raises(psycopg.errors.QueryCanceled), app_db.transaction(c):
            c.execute("SET LOCAL statement_timeout = '10ms'")
            c.execute("SELECT pg_sleep(1)")
        assert app_db.value(c, "SELECT pg_backend_pid()") == pid  # the same connection, still working
    after = pool.get_stats()
    for lost in ("connections_lost", "returns_bad"):
        assert after.get(lost, 0) == before.get(lost, 0), lost
    # And the pool kept it: it is among the idle connections it hands out.
    idle = [pool.getconn() for _ in range(after["pool_available"])]
    try:
        assert pid in {c.info.backend_pid for c in idle}
    finally:
        for c in idle:
            pool.putconn(c)


def test_a_rolled_back_transaction_keeps_the_connections_prepared_statements(app, merchant, db):
    """A failed request's transaction, or one a connection is given back in, ends in a ROLLBACK.
    It must discard what the transaction wrote, but not the statements the connection has
    prepared: psycopg's own rollback deallocates them all, and the next payment on that connection
    was parsed and planned again (nearly twice the PostgreSQL CPU per request)."""
    pool = app.extensions["db_pool"]
    insert = ("INSERT INTO orders (id, merchant_id, amount, currency, receipt) "
              "VALUES (%(id)s, %(m)s, 100, 'INR', 'x')")
    c = pool.getconn()
    try:
        for i in range(6):  # psycopg prepares a statement once it has run it 5 times
            c.execute(insert, {"id": f"order_Prepared{i:08d}", "m": merchant["id"]})
        before = app_db.values(c, "SELECT statement FROM pg_prepared_statements")
        assert any("INSERT INTO orders" in s for s in before)
        with pytest.raises(RuntimeError), app_db.transaction(c):
            c.execute(insert, {"id": "order_RolledBack000001", "m": merchant["id"]})
            raise RuntimeError("the request failed")
        c.execute("BEGIN")
        c.execute(insert, {"id": "order_RolledBack000002", "m": merchant["id"]})
        app_db.rollback(c)  # what release() does to a connection given back inside a transaction
        assert app_db.values(c, "SELECT statement FROM pg_prepared_statements") == before
    finally:
        pool.putconn(c)
    assert db.value("SELECT count(*) FROM orders WHERE id LIKE 'order_RolledBack%'") == 0
