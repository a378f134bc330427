"""Totals from rollups (app/rollups.py): every total a list or the dashboard shows equals a count of
the rows, whatever was sealed, settled, refunded, moved or deleted, and whatever ran at once."""
import threading
from datetime import datetime, timedelta, timezone

import pytest

from helpers import connect, create_order, create_payment, settle, wait_until

from app import db as app_db
from app import partitions, rollups
from app.ids import new_id

HOUR = timedelta(hours=1)


@pytest.fixture
def c(app):
    with app_db.connect(app.extensions["db_pool"]) as conn:
        yield conn


def this_hour():
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def windows():
    """Windows of every shape: open, one side open, inside one hour, across hours, on boundaries."""
    h = this_hour()
    return [(None, None), (h - 4 * HOUR, None), (None, h - 2 * HOUR + timedelta(minutes=13)),
            (h - 4 * HOUR + timedelta(minutes=30), h - HOUR + timedelta(seconds=5)),
            (h - 3 * HOUR, h - HOUR), (h - 3 * HOUR + timedelta(minutes=1), h - 3 * HOUR + timedelta(minutes=50)),
            (h - 2 * HOUR, None), (h, None), (h - HOUR, h + HOUR), (h + HOUR, h)]


def counted(db, kind, merchant_id, window, status=None):
    lo, hi = window
    return db.value(f"""
        SELECT count(*) FROM {kind}
         WHERE merchant_id = %(m)s AND (%(s)s::text IS NULL OR status = %(s)s)
           AND (%(lo)s::timestamptz IS NULL OR created_at >= %(lo)s) AND (%(hi)s::timestamptz IS NULL OR created_at < %(hi)s)
        """, {"m": merchant_id, "s": status, "lo": lo, "hi": hi})


def assert_exact(c, db, kind, merchant_id, statuses=(None,), more=()):
    for window in windows() + list(more):
        for status in statuses:
            assert rollups.count(c, kind, merchant_id, window, status) == counted(db, kind, merchant_id, window, status), \
                (kind, window, status)


def spread(db, table, ids, minutes):
    """Move rows into past hours (this fires the rollup triggers like any UPDATE of created_at)."""
    for row_id, m in zip(ids, minutes):
        db.execute(f"UPDATE {table} SET created_at = date_trunc('hour', now(), 'UTC') - make_interval(mins => %(m)s) "
                   "WHERE id = %(id)s", {"m": m, "id": row_id})


MINUTES = [1, 59, 60, 61, 119, 120, 150, 181, 239, 300]  # minutes before this hour: on, near and across boundaries


def test_totals_equal_a_count_after_sealing_settling_refunding_and_deleting(c, client, db, worker, make_merchant):
    m = make_merchant()
    pays = [create_payment(client, m, 10000 + i) for i in range(len(MINUTES))]
    spread(db, "payments", [p["id"] for p in pays], MINUTES)
    spread(db, "orders", [p["order_id"] for p in pays], MINUTES)
    statuses = (None, "pending", "processing", "success", "failed")
    assert_exact(c, db, "payments", m["id"], statuses)
    rollups.seal(c)
    assert db.value("SELECT sum(n) FROM rollups WHERE merchant_id = %(m)s AND kind = 'payments'", {"m": m["id"]}) == len(pays)
    assert_exact(c, db, "payments", m["id"], statuses)
    assert_exact(c, db, "orders", m["id"], (None, "created", "paid"))

    # Settlement moves each payment (and its order) to another status inside a sealed hour.
    for p in pays:
        settle(worker, db, p["id"])
    assert_exact(c, db, "payments", m["id"], statuses)
    assert_exact(c, db, "orders", m["id"], (None, "created", "paid"))
    assert rollups.count(c, "payments", m["id"], (None, None), "success") == len(pays)

    # Refunds made now (not sealed), then moved into sealed hours, then processed there.
    refunds = [client.post(f"/api/v1/payments/{p['id']}/refunds", json={"amount": 100}, headers=m["headers"]).get_json()
               for p in pays[:4]]
    spread(db, "refunds", [r["id"] for r in refunds], MINUTES[:4])
    assert_exact(c, db, "refunds", m["id"], (None, "pending", "processed"))
    db.execute("UPDATE refunds SET status = 'processed', processed_at = now() WHERE id = %(id)s", {"id": refunds[0]["id"]})
    assert_exact(c, db, "refunds", m["id"], (None, "pending", "processed"))

    # An order deleted by an operator, and one imported with an old created_at.
    gone = create_order(client, m)
    spread(db, "orders", [gone["id"]], [30])
    db.execute("DELETE FROM orders WHERE id = %(id)s", {"id": gone["id"]})
    db.execute("INSERT INTO orders (id, merchant_id, amount, created_at) VALUES "
               "('order_' || substr(md5(random()::text), 1, 16), %(m)s, 500, now() - interval '3 hours')", {"m": m["id"]})
    assert_exact(c, db, "orders", m["id"], (None, "created", "paid"))


def test_counts_per_window_equal_a_count_per_window_on_no_hour(c, client, db, make_merchant):
    """count_windows (the dashboard's days in its time zone): windows whose edges fall inside hours,
    on hours and across days, each exact by status, sealed or not, in one statement."""
    m = make_merchant()
    pays = [create_payment(client, m, 50000 + i) for i in range(len(MINUTES))]
    spread(db, "payments", [p["id"] for p in pays], MINUTES)
    for p in pays[::3]:
        db.execute("UPDATE payments SET status = 'failed' WHERE id = %(id)s", {"id": p["id"]})
    h = this_hour()
    edges = [h - timedelta(days=2, minutes=30), h - 4 * HOUR - timedelta(minutes=30), h - 3 * HOUR,
             h - HOUR - timedelta(minutes=1), h - timedelta(minutes=30), h + HOUR]
    for sealed in (False, True):
        if sealed:
            rollups.seal(c)
        got = rollups.count_windows(c, "payments", m["id"], edges)
        for w, window in enumerate(zip(edges, edges[1:])):
            for status in ("pending", "processing", "success", "failed"):
                assert got[w].get(status, 0) == counted(db, "payments", m["id"], window, status), (sealed, window, status)
        assert sum(sum(n.values()) for n in got) == len(pays)


def test_the_lists_and_the_dashboard_show_the_rollup_totals(c, client, db, make_merchant):
    m = make_merchant()
    pays = [create_payment(client, m, 20000) for _ in range(3)]
    spread(db, "payments", [p["id"] for p in pays], [5, 65, 125])
    rollups.seal(c)
    # Rows the list does not count itself any more: a wrong rollup would show in the total.
    for table in ("rollups", "rollups_daily"):
        db.execute(f"UPDATE {table} SET n = n + 100 WHERE merchant_id = %(m)s AND kind = 'payments'", {"m": m["id"]})
    body = client.get("/api/v1/payments?count=1", headers=m["headers"]).get_json()
    # Each rollup row read adds its 100: one to three of them (an hour row per payment, or one day
    # row for those of yesterday in the first hours of a UTC day), never a count of the rows themselves.
    assert body["total"] in (103, 203, 303) and len(body["data"]) == 1
    rollups.seal(c, recount_from=this_hour() - 6 * HOUR)
    assert client.get("/api/v1/payments?count=1", headers=m["headers"]).get_json()["total"] == 3


def test_sealing_stops_at_the_oldest_running_transaction(app, c):
    """A payment inserted by a transaction that began before an hour ended carries a created_at in
    that hour, so that hour is sealed only once the transaction is over."""
    with connect(app, autocommit=False) as other:
        began = other.value("SELECT now()")
        assert rollups.horizon(c) == began
        other.rollback()
    assert rollups.horizon(c) > began


def test_totals_stay_exact_while_sealing_races_status_changes_and_imports(app, c, client, db, make_merchant):
    m = make_merchant()
    pays = [create_payment(client, m, 30000 + i) for i in range(12)]
    spread(db, "payments", [p["id"] for p in pays], [(i * 37) % 400 + 1 for i in range(12)])
    stop = threading.Event()
    errors = []

    def run(fn):
        try:
            with connect(app) as own:
                while not stop.is_set():
                    fn(own)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    step = iter(range(10 ** 9))

    def change(own):  # status changes of rows in sealed hours, each its own transaction
        i = next(step)
        own.execute("UPDATE payments SET status = %(s)s WHERE id = %(id)s",
                    {"s": ("processing", "failed", "pending")[i % 3], "id": pays[i % len(pays)]["id"]})

    reseals = []

    def reseal(own):  # sealing again and again, from six hours back
        rollups.seal(own, recount_from=this_hour() - 6 * HOUR)
        reseals.append(1)

    def import_(own):  # rows written into sealed hours, as a data import would
        i = next(step)
        own.execute("""
            WITH o AS (INSERT INTO orders (id, merchant_id, amount, created_at)
                       VALUES (%(o)s, %(m)s, 500, now() - make_interval(mins => %(age)s)) RETURNING id, created_at)
            INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status, created_at)
            SELECT %(p)s, o.id, %(m)s, 500, 'INR', 'upi', 'a@okbank', 'failed', o.created_at FROM o
            """, {"o": new_id("order_"), "p": new_id("pay_"), "m": m["id"], "age": i % 300 + 1})

    def create(own):  # payments made now, through the API
        create_payment(client, m, 40000)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in (change, change, reseal, import_, create)]
    for t in threads:
        t.start()
    wait_until(lambda: len(reseals) >= 60 or errors, timeout=60, message="sixty sealings")
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert_exact(c, db, "payments", m["id"], (None, "pending", "processing", "failed"))


def test_webhook_log_totals_stay_exact_as_partitions_are_created_and_dropped(c, db, make_merchant):
    """Logs that waited in the DEFAULT partition move into their day's new partition (deleted
    there, inserted with no trigger: counted in again); expired days are dropped whole (their
    rollups deleted with them); expired DEFAULT rows are deleted row by row."""
    m = make_merchant()
    for days in (45, 40, 40, 20, 3, 3, 0):
        db.execute("INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, created_at) "
                   "VALUES (%(m)s, 'payment.success', %(e)s, '{}', '{}', 'success', now() - make_interval(days => %(d)s))",
                   {"m": m["id"], "e": new_id("evt_"), "d": days})
    days = [(this_hour() - timedelta(days=d), None) for d in (50, 41, 30, 19, 2)]
    rollups.seal(c)
    assert_exact(c, db, "webhook_logs", m["id"], more=days)
    partitions.ensure(db)
    assert_exact(c, db, "webhook_logs", m["id"], more=days)
    partitions.drop_expired(db, retention_days=30)
    assert counted(db, "webhook_logs", m["id"], (None, None)) == 4
    assert_exact(c, db, "webhook_logs", m["id"], more=days)


def test_each_advisory_lock_has_its_own_key():
    """The sealing's lock (taken shared by every trigger that moves a count) is neither the
    migrations' nor the partitions': sharing one would make partition upkeep skip its turn, or wait,
    whenever a late settlement moves a count."""
    from app import migrate

    assert len({migrate.LOCK_ID, partitions.LOCK_ID, rollups.LOCK}) == 3
    assert f"pg_advisory_xact_lock_shared({rollups.LOCK})" in (migrate.DIRECTORY / "0003_rollups.sql").read_text()


def test_events_are_counted_by_name_also_when_written_into_sealed_hours(c, db, make_merchant):
    """Events count by their name (the ?event= filter): an event written into an already sealed hour
    is counted under its name by the trigger, and the total by name stays a count."""
    m = make_merchant()
    rollups.seal(c)
    for name, minutes in (("payment.success", 90), ("payment.success", 150), ("refund.created", 90)):
        db.execute("INSERT INTO events (id, merchant_id, event, body, created_at) "
                   "VALUES (%(i)s, %(m)s, %(e)s, '{}', date_trunc('hour', now(), 'UTC') - make_interval(mins => %(a)s))",
                   {"i": new_id("evt_"), "m": m["id"], "e": name, "a": minutes})
    assert db.value("SELECT sum(n) FROM rollups WHERE kind = 'events' AND merchant_id = %(m)s AND status = "
                    "'payment.success'", {"m": m["id"]}) == 2
    for name, expected in (("payment.success", 2), ("refund.created", 1), (None, 3)):
        assert rollups.count(c, "events", m["id"], status=name) == expected
