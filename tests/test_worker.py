"""The jobs table and worker.py: lifecycles, exactly-once effects, leases, crashes, graceful stop."""
import json
import secrets
import signal
import threading
import time

import psycopg
import pytest

from helpers import CARD, create_payment, own_transaction, wait_until

import worker as worker_module
from app import db as db_module, ids as ids_module, jobs, payments


def seed_payments(db, merchant_id, n, method="upi"):
    """n orders with a pending payment and its settlement job each (as the API would leave them)."""
    tag = secrets.token_hex(3)
    db.execute("""
        INSERT INTO orders (id, merchant_id, amount)
        SELECT 'order_' || %(tag)s || lpad(i::text, 10, '0'), %(m)s, 1000 FROM generate_series(1, %(n)s) i;
        """, {"tag": tag, "m": merchant_id, "n": n})
    db.execute("""
        INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa)
        SELECT 'pay_' || %(tag)s || lpad(i::text, 10, '0'), 'order_' || %(tag)s || lpad(i::text, 10, '0'), %(m)s, 1000, 'INR',
               'upi', 'shopper@upi' FROM generate_series(1, %(n)s) i
        """, {"tag": tag, "m": merchant_id, "n": n})
    db.execute("INSERT INTO jobs (kind, payload) SELECT 'payment.settle', "
        "jsonb_build_object('payment_id', 'pay_' || %(tag)s || lpad(i::text, 10, '0')) FROM generate_series(1, %(n)s) i", {"tag": tag, "n": n})
    return f"pay_{tag}%"


def status_counts(db, like):
    rows = db.execute("SELECT status, count(*) FROM payments WHERE id LIKE %(p)s GROUP BY status", {"p": like})
    return {r["status"]: r["count"] for r in rows}


def events_per_payment(db, like):
    """payment id -> number of payment.success/failed webhook rows written for it."""
    rows = db.execute("SELECT payload->'data'->'payment'->>'id' AS pid, count(*) FROM webhook_logs "
        "WHERE event IN ('payment.success', 'payment.failed') AND payload->'data'->'payment'->>'id' LIKE %(p)s "
        "GROUP BY 1", {"p": like})
    return {r["pid"]: r["count"] for r in rows}


def drain(w, limit=100):
    """Run worker steps until nothing is due."""
    for _ in range(limit):
        if not w.step():
            return
    raise AssertionError("queue did not drain")


def test_payment_settles_to_success_and_pays_the_order(client, merchant, api, worker, clean_queue):
    pay = create_payment(client, merchant)
    assert pay["status"] == "pending"
    drain(worker)
    got = api.get(f"/api/v1/payments/{pay['id']}").get_json()
    assert got["status"] == "success" and got["error_code"] is None
    assert api.get(f"/api/v1/orders/{pay['order_id']}").get_json()["status"] == "paid"


def test_payment_goes_through_processing_during_the_bank_delay(app, client, merchant, api, worker, clean_queue,
                                                               monkeypatch):
    monkeypatch.setitem(app.config, "TEST_PROCESSING_DELAY", 300)
    pay = create_payment(client, merchant, method="card", card=CARD)
    assert worker.step()
    assert client.get(f"/api/v1/payments/{pay['id']}/public").get_json()["status"] == "processing"
    # The delay is the job's next_run_at, not a sleep in the worker: nothing is due right now.
    assert not worker.step()
    wait_until(lambda: worker.step(), timeout=5, message="settlement after the delay")
    assert client.get(f"/api/v1/payments/{pay['id']}/public").get_json()["status"] == "success"


def test_failing_test_mode_marks_payment_failed_with_reason(app, client, merchant, api, worker, clean_queue,
                                                            monkeypatch):
    with monkeypatch.context() as m:
        m.setitem(app.config, "TEST_PAYMENT_SUCCESS", False)
        pay = create_payment(client, merchant)
        drain(worker)
    got = api.get(f"/api/v1/payments/{pay['id']}").get_json()
    assert got["status"] == "failed"
    assert got["error_code"] == "PAYMENT_FAILED" and got["error_description"]
    assert api.get(f"/api/v1/orders/{pay['order_id']}").get_json()["status"] == "created"  # still payable


def test_refund_is_processed_with_timestamp(client, merchant, api, worker, clean_queue):
    pay = create_payment(client, merchant)
    drain(worker)
    r = api.post(f"/api/v1/payments/{pay['id']}/refunds", json={"amount": 20000})
    assert r.status_code == 201 and r.get_json()["status"] == "pending"
    drain(worker)
    refund = api.get(f"/api/v1/refunds/{r.get_json()['id']}").get_json()
    assert refund["status"] == "processed" and refund["processed_at"].endswith("Z")


def test_a_job_run_twice_settles_once_and_emits_one_event(client, make_merchant, worker, clean_queue, db):
    m = make_merchant(webhook_url="http://127.0.0.1:9/unused")
    pay = create_payment(client, m)
    drain(worker)
    # Run the same settlement again, as a reclaimed job would.
    jobs.enqueue(db, payments.SETTLE, {"payment_id": pay["id"]})
    drain(worker)
    assert events_per_payment(db, pay["id"]) == {pay["id"]: 1}
    assert db.value("SELECT status FROM payments WHERE id = %(id)s", {"id": pay["id"]}) == "success"


def test_second_success_for_a_paid_order_fails_instead_of_charging_twice(client, merchant, worker, clean_queue,
                                                                         db):
    first = create_payment(client, merchant, vpa="a@bank")["id"]
    # A second one in flight, as a database from before one payment in flight per order may hold.
    ids = [first, ids_module.new_id("pay_")]
    db.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, single_flight) "
                    "SELECT %(id)s, order_id, merchant_id, amount, currency, method, vpa, NULL FROM payments WHERE id = %(p)s", {"id": ids[1], "p": first})
    jobs.enqueue(db, payments.SETTLE, {"payment_id": ids[1]})
    drain(worker)
    statuses = db.values("SELECT status FROM payments WHERE id = ANY(%(ids)s)", {"ids": ids})
    assert sorted(statuses) == ["failed", "success"]


def test_crashing_handler_retries_with_backoff_then_dies_keeping_the_error(worker, clean_queue, db, monkeypatch):
    def crash(c, payload, settings, emit):
        raise RuntimeError("bank adapter exploded")

    monkeypatch.setitem(worker_module.HANDLERS, "test.crash", worker_module.Each(crash))
    job_id = jobs.enqueue(db, "test.crash", {})
    db.execute("UPDATE jobs SET max_attempts = 2 WHERE id = %(id)s", {"id": job_id})
    assert worker.step()
    row = db.one("SELECT status, attempts, last_error, next_run_at > now() AS later FROM jobs "
                          "WHERE id = %(id)s", {"id": job_id})
    assert row["status"] == "pending" and row["attempts"] == 1 and row["later"] and "exploded" in row["last_error"]
    db.execute("UPDATE jobs SET next_run_at = now() WHERE id = %(id)s", {"id": job_id})  # skip the backoff
    assert worker.step()
    row = db.one("SELECT status, last_error FROM jobs WHERE id = %(id)s", {"id": job_id})
    assert row["status"] == "dead" and "bank adapter exploded" in row["last_error"]


def test_one_bad_job_does_not_hold_back_its_batch(client, merchant, worker, clean_queue, db, monkeypatch):
    good = create_payment(client, merchant)
    bad_job = jobs.enqueue(db, payments.SETTLE, {"payment_id": None})  # a malformed payload
    real = worker_module.HANDLERS[payments.SETTLE]

    def picky(c, batch, settings, emit):
        if any(j["payload"]["payment_id"] is None for j in batch):
            raise ValueError("payment_id missing")
        return real.run(c, batch, settings, emit)

    monkeypatch.setitem(worker_module.HANDLERS, payments.SETTLE, worker_module.Batched(picky))
    assert worker.step()
    assert db.value("SELECT status FROM payments WHERE id = %(id)s", {"id": good["id"]}) == "success"
    assert db.value("SELECT last_error FROM jobs WHERE id = %(id)s", {"id": bad_job})


def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_finish(db, clean_queue):
    job_id = jobs.enqueue(db, "test.noop", {})
    [claimed] = jobs.claim(db, "00000000-0000-0000-0000-000000000001", 10, 30)
    assert claimed["id"] == job_id
    db.execute("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = %(id)s", {"id": job_id})
    assert jobs.reclaim_expired(db) == 1
    [again] = jobs.claim(db, "00000000-0000-0000-0000-000000000002", 10, 30)
    assert again["id"] == job_id
    # The first owner's lease is gone: its completion is fenced off.
    assert jobs.finish(db, [(job_id, "00000000-0000-0000-0000-000000000001", None)]) == []
    assert jobs.finish(db, [(job_id, "00000000-0000-0000-0000-000000000002", None)]) == [job_id]


def test_jobs_status_endpoint_counts_and_sees_the_worker(client, worker, clean_queue, db):
    jobs.enqueue(db, "test.noop", {})
    body = client.get("/api/v1/test/jobs/status").get_json()
    assert body["pending"] >= 1 and set(body) == {"pending", "processing", "completed", "failed", "worker_status"}
    worker.heartbeat()
    assert client.get("/api/v1/test/jobs/status").get_json()["worker_status"] == "running"
    assert client.get("/health").get_json()["worker"] == "running"
    db.execute("DELETE FROM worker_heartbeats")
    assert client.get("/api/v1/test/jobs/status").get_json()["worker_status"] == "stopped"


@pytest.fixture
def jobs_listener(app):
    """A connection that LISTENs on the jobs channel, as a worker does."""
    c = psycopg.connect(db_module.libpq_url(app.config["DATABASE_URL"]), autocommit=True)
    c.execute("LISTEN jobs")
    yield c
    c.close()


def gate_share_locks(db, granted):
    """SHARE locks on the wake-up gate: held by sleeping workers (granted) or awaited."""
    return db.value("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE c.relname = 'jobs_wakeup_gate' AND l.mode = 'ShareLock' AND l.granted = %(g)s",
                    {"g": granted})


def seconds_to_settle(client, make_payment):
    """From creating a payment to seeing it settled."""
    t0 = time.monotonic()
    pay = make_payment()
    wait_until(lambda: client.get(f"/api/v1/payments/{pay['id']}/public").get_json()["status"] == "success",
               interval=0.005, message="settlement")
    return time.monotonic() - t0


def test_notify_wakes_an_idle_worker_within_milliseconds(client, merchant, clean_queue, worker_threads, monkeypatch):
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 30.0)  # only a NOTIFY can wake it in time
    worker_threads()
    wait_until(lambda: client.get("/health").get_json()["worker"] == "running", message="worker heartbeat")
    assert seconds_to_settle(client, lambda: create_payment(client, merchant)) < 0.5


def test_two_sleeping_workers_share_the_gate_and_a_payment_wakes_them(client, merchant, db, clean_queue,
                                                                     worker_threads, monkeypatch):
    """Several worker processes may run: asleep, each holds the wake-up gate at once (SHARE locks
    do not conflict), and a new payment's NOTIFY still reaches them within milliseconds."""
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 30.0)
    worker_threads(2)
    wait_until(lambda: gate_share_locks(db, granted=True) == 2, message="both workers asleep, each holding the gate")
    assert seconds_to_settle(client, lambda: create_payment(client, merchant)) < 0.5


def test_a_job_enqueued_while_no_worker_sleeps_sends_no_notify_and_still_runs_at_once(
        app, merchant, db, clean_queue, worker_threads, jobs_listener, monkeypatch):
    """The lost wake-up race of the gate (schema.sql, jobs_notify): a transaction enqueues while no
    worker is asleep, so it sends no NOTIFY; it commits only once the worker, about to sleep, waits
    for the gate. The worker's last look at the queue must then see the job, not the poll."""
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 30.0)
    with own_transaction(app) as tx:
        like = seed_payments(tx, merchant["id"], 1)  # uncommitted: payment + due settlement job
        worker_threads()
        wait_until(lambda: gate_share_locks(db, granted=False),
                   message="the worker waiting for the gate behind the enqueuing transaction")
        tx.commit()
        t0 = time.monotonic()
    wait_until(lambda: status_counts(db, like).get("success") == 1, interval=0.005, message="settlement")
    assert time.monotonic() - t0 < 0.5
    assert list(jobs_listener.notifies(timeout=0.2, stop_after=1)) == []


def test_the_trigger_notifies_exactly_when_a_worker_sleeps_or_is_about_to(app, db, clean_queue, jobs_listener):
    """The trigger's side of the gate, at the SQL level: no NOTIFY while nobody holds or awaits the
    gate; a NOTIFY while a sleeper holds it, or merely waits for it; and a savepoint rolled back
    forgets the transaction's check together with its lock, so the next job checks again."""
    insert = "INSERT INTO jobs (kind, status, next_run_at) VALUES ('test.gate', 'completed', now())"
    due = "INSERT INTO jobs (kind) VALUES ('test.gate')"

    def notified():
        return bool(list(jobs_listener.notifies(timeout=0.3, stop_after=1)))

    def take_gate(c):
        c.execute("SET LOCAL lock_timeout = '5s'; LOCK TABLE jobs_wakeup_gate IN SHARE MODE")

    db.execute(due)
    assert not notified()  # every worker awake (here: none at all)
    with own_transaction(app) as sleeper:
        take_gate(sleeper)
        db.execute(insert)  # not due: no check at all, so no NOTIFY even with a sleeper
        assert not notified()
        db.execute(due)
        assert notified()
    db.execute(due)
    assert not notified()

    with own_transaction(app) as silent, own_transaction(app) as sleeper:
        silent.execute(due)  # passes the gate without a NOTIFY, holds it until commit
        waiter = threading.Thread(target=take_gate, args=(sleeper,))
        waiter.start()
        wait_until(lambda: gate_share_locks(db, granted=False), message="a sleeper waiting for the gate")
        db.execute(due)  # refused behind the waiting sleeper: must notify
        assert notified()
        silent.commit()
        waiter.join(10)
        sleeper.rollback()

    with own_transaction(app) as tx, own_transaction(app) as sleeper:
        tx.execute("SAVEPOINT s")
        tx.execute(due)
        tx.execute("ROLLBACK TO SAVEPOINT s")  # the job, its gate lock and the check: gone
        take_gate(sleeper)  # granted at once: the rolled-back lock is released
        tx.execute(due)
        tx.commit()
        assert notified()
        sleeper.rollback()


@pytest.mark.slow
def test_two_worker_processes_drain_2000_jobs_each_exactly_once(start_worker, make_merchant, receiver, db,
                                                                 clean_queue):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    like = seed_payments(db, m["id"], 2000)
    workers = [start_worker(), start_worker()]
    wait_until(lambda: status_counts(db, like).get("success") == 2000, timeout=120, interval=0.2,
               message="2,000 settlements")
    counts = events_per_payment(db, like)
    assert len(counts) == 2000 and set(counts.values()) == {1}
    deliveries = rx.wait_for(2000, timeout=120)
    assert len({d["headers"]["Webhook-Id"] for d in deliveries}) == 2000
    for w in workers:
        assert w.stop() == 0, w.output()
    # Both took part (SKIP LOCKED shares the work) and neither crashed.
    assert all("completed" in w.output() for w in workers)


@pytest.mark.slow
def test_sigkilled_worker_loses_nothing_and_duplicates_no_event(start_worker, make_merchant, receiver, db,
                                                               clean_queue):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    like = seed_payments(db, m["id"], 1000)
    first = start_worker(JOB_BATCH_SIZE="50")
    wait_until(lambda: status_counts(db, like).get("success", 0) >= 100, timeout=60, message="some settled")
    first.kill()
    assert status_counts(db, like).get("success", 0) < 1000, "drained before the kill: nothing was tested"
    start_worker(JOB_BATCH_SIZE="50")  # leases of the killed worker expire (JOB_LEASE_SECONDS=5) and come back
    wait_until(lambda: status_counts(db, like).get("success") == 1000, timeout=120, interval=0.2,
               message="all 1,000 settled after restart")
    counts = events_per_payment(db, like)
    assert len(counts) == 1000 and set(counts.values()) == {1}
    wait_until(lambda: db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND "
                                       "status = 'success'", {"m": m["id"]}) == 1000,
               timeout=120, interval=0.2, message="every event delivered")
    delivered_ids = {d["headers"]["Webhook-Id"] for d in rx.requests}
    assert len(delivered_ids) == 1000


def test_sigterm_stops_gracefully_within_10_seconds(start_worker, db, clean_queue):
    w = start_worker()
    wait_until(lambda: db.value("SELECT count(*) FROM worker_heartbeats WHERE pid = %(pid)s", {"pid": w.proc.pid}) == 1, message="worker heartbeat")
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(10) == 0
    assert time.monotonic() - t0 < 10
    assert "stopped" in w.output()
    assert db.value("SELECT count(*) FROM jobs WHERE status = 'processing'") == 0


def test_job_payloads_never_hold_card_data(client, merchant, db):
    create_payment(client, merchant, method="card", card=dict(CARD, number="5555 5555 5555 4444", cvv="987"))
    dump = json.dumps(db.values("SELECT payload FROM jobs"))
    assert "5555555555554444" not in dump and "5555 5555 5555 4444" not in dump and "987" not in dump
