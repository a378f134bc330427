"""The dashboard's pages over the Flask test client: the numbers, rows and pages they compute from
the database. browser/test_dashboard.py drives the same pages in Chromium, with payments made
through the running gateway; these tests write the rows directly, so each case is exact and quick."""
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from helpers import LOCAL_TIME_RE, insert_payment, insert_payments, new_merchant, page, paid_payment, wait_until

from app import dashboard_data, rollups
from app import db as app_db

KOLKATA, NEW_YORK = ZoneInfo("Asia/Kolkata"), ZoneInfo("America/New_York")
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


@pytest.fixture
def twenty_two_payments(db, dashboard_merchant, make_merchant):
    """The merchant's 21 successful payments (20 × ₹20,000 and one ₹1,00,000 card payment, ₹5,00,000
    in all) and, newest, one the bank declined; and another merchant's payment, which must not count."""
    made = insert_payments(db, dashboard_merchant["id"], [(2_000_000, "success", "upi")] * 20
                           + [(10_000_000, "success", "card"), (70_000, "failed", "upi")])
    insert_payments(db, make_merchant()["id"], [(99_900, "success", "upi")])
    return made


def test_overview_counts_the_merchants_own_payments(dashboard, dashboard_merchant, twenty_two_payments):
    overview = page(dashboard.get("/dashboard"))
    assert overview.one("api-key").text == dashboard_merchant["api_key"]
    assert overview.one("api-secret").text == dashboard_merchant["api_secret"]
    assert overview.one("total-transactions").text == "22"
    assert overview.one("total-amount").text == "₹5,00,000"
    assert overview.one("success-rate").text == "95%"  # 21 of 22, rounded down
    bars = overview.all("chart-day")
    assert len(bars) == 14 and sum(int(b.attrs["data-count"]) for b in bars) == 22
    assert "Payments per day (the last 14 days, Asia/Kolkata time)" in overview.text  # whose days, said plainly


def test_transactions_are_paged_newest_first_and_filtered_by_status(dashboard, twenty_two_payments):
    made = twenty_two_payments
    first = page(dashboard.get("/dashboard/transactions"))
    rows = first.all("transaction-row")
    assert [r.attrs["data-payment-id"] for r in rows] == made[::-1][:20]
    assert first.one("page-info").text == "1–20 of 22"
    assert first.one("next-page").attrs["href"] == f"/dashboard/transactions?before={made[2]}"
    assert not first.all("prev-page")
    row = first.one("transaction-row", data_payment_id=made[2])  # the oldest on this page
    assert row.one("payment-id").text == made[2] and row.one("order-id").text.startswith("order_")
    assert (row.one("amount").text, row.one("method").text, row.one("status").text) == ("₹20,000.00", "upi", "success")
    assert LOCAL_TIME_RE.match(row.one("created-at").text)

    second = page(dashboard.get(f"/dashboard/transactions?before={made[2]}"))
    assert [r.attrs["data-payment-id"] for r in second.all("transaction-row")] == [made[1], made[0]]
    assert second.one("page-info").text == "21–22 of 22" and not second.all("next-page")
    assert second.one("prev-page").attrs["href"] == f"/dashboard/transactions?after={made[1]}"
    back = page(dashboard.get(f"/dashboard/transactions?after={made[1]}"))
    assert [r.attrs["data-payment-id"] for r in back.all("transaction-row")] == made[::-1][:20]
    assert back.one("page-info").text == "1–20 of 22" and not back.all("prev-page")
    # A cursor that is not one of the merchant's payments starts from the newest.
    for cursor in ("pay_unknown", "'; --", made[0] + "x"):
        assert page(dashboard.get(f"/dashboard/transactions?before={cursor}")).one("page-info").text == "1–20 of 22"

    failed = page(dashboard.get("/dashboard/transactions?status=failed"))
    [row] = failed.all("transaction-row")
    assert row.attrs["data-payment-id"] == made[-1] and row.one("status").text == "failed"
    assert row.one("amount").text == "₹700.00"


def test_a_payment_page_shows_its_refunds_and_webhook_events(client, db, worker, dashboard, dashboard_merchant,
                                                             receiver):
    m = dashboard_merchant
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": receiver().url, "id": m["id"]})
    _, payment = paid_payment(client, db, worker, m, 80000)
    r = client.post(f"/api/v1/payments/{payment['id']}/refunds", json={"amount": 30000, "reason": "size"},
                    headers=m["headers"])
    assert r.status_code == 201, r.get_json()
    refund = r.get_json()

    def processed():
        worker.step()
        return db.value("SELECT status FROM refunds WHERE id = %(id)s", {"id": refund["id"]}) == "processed"

    wait_until(processed, message="refund processed")

    detail = page(dashboard.get(f"/dashboard/transactions/{payment['id']}"))
    assert detail.one("transaction-detail").attrs["data-payment-id"] == payment["id"]
    row = detail.one("refund-row", data_refund_id=refund["id"])
    assert (row.one("refund-amount").text, row.one("refund-status").text) == ("₹300.00", "processed")
    assert detail.one("refunded-amount").text == "₹300.00"
    assert detail.one("method").text == "upi · shopper@okbank"
    assert [item.one("webhook-event").text for item in detail.all("payment-webhook-item")] == [
        "payment.created", "payment.success", "refund.created", "refund.processed"]
    assert dashboard.get("/dashboard/transactions/pay_doesnotexist0000").status_code == 404


def test_jobs_page_shows_the_queue_the_worker_and_only_the_merchants_dead_jobs(dashboard, dashboard_merchant, db,
                                                                              clean_queue):
    [mine] = insert_payments(db, dashboard_merchant["id"], [(10_000, "pending", "upi")])
    [theirs] = insert_payments(db, new_merchant(db)["id"], [(10_000, "pending", "upi")])
    ids = db.values("""
        INSERT INTO jobs (kind, payload, status, attempts, last_error, created_at, next_run_at) VALUES
          ('payment.settle', jsonb_build_object('payment_id', CAST(%(mine)s AS text)), 'dead', 10, 'boom: the bank timed out', now(), now()),
          ('payment.settle', jsonb_build_object('payment_id', CAST(%(theirs)s AS text)), 'dead', 10, 'another merchant''s', now(), now()),
          ('dashboard.probe', '{}', 'pending', 0, NULL, now() - interval '2 hours', now() + interval '1 hour')
        RETURNING id
        """, {"mine": mine, "theirs": theirs})
    db.execute("INSERT INTO worker_heartbeats (worker_id, hostname, pid) VALUES ('dashboard-pages', 'here', 1)")
    try:
        jobs = page(dashboard.get("/dashboard/jobs"))
    finally:
        db.execute("DELETE FROM worker_heartbeats WHERE worker_id = 'dashboard-pages'")
        db.execute("DELETE FROM jobs WHERE id = ANY(%(ids)s)", {"ids": ids})
    assert jobs.one("worker-status").text == "running"
    assert jobs.one("oldest-pending-age").text == "2 h 0 min"
    assert (jobs.one("jobs-pending").text, jobs.one("jobs-dead").text) == ("1", "2")
    assert jobs.one("job-kind-row", data_kind="payment.settle").one("job-count-dead").text == "2"
    assert jobs.one("job-kind-row", data_kind="dashboard.probe").one("job-count-pending").text == "1"
    assert jobs.one("dead-job-row", data_job_id=str(ids[0])).one("dead-job-error").text == "boom: the bank timed out"
    assert [row.attrs["data-job-id"] for row in jobs.all("dead-job-row")] == [str(ids[0])]  # not another merchant's


def test_jobs_page_says_stopped_when_every_heartbeat_is_stale(dashboard, db):
    saved = db.all("DELETE FROM worker_heartbeats RETURNING *")
    db.execute("INSERT INTO worker_heartbeats (worker_id, hostname, pid, beat_at) "
               "VALUES ('dashboard-stale', 'there', 2, now() - interval '1 minute')")
    try:
        jobs = page(dashboard.get("/dashboard/jobs"))
    finally:
        db.execute("DELETE FROM worker_heartbeats WHERE worker_id = 'dashboard-stale'")
        for w in saved:  # the heartbeats of workers other tests started
            db.execute("INSERT INTO worker_heartbeats (worker_id, hostname, pid, started_at, beat_at) "
                       "VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(started_at)s, %(beat_at)s) "
                       "ON CONFLICT (worker_id) DO NOTHING", w)
    assert jobs.one("worker-status").text == "stopped"
    assert "dashboard-stale" in jobs.one("workers-table").text and "silent" in jobs.one("workers-table").text


def test_headers_never_call_a_local_time_utc_and_phone_rows_name_their_cells(dashboard, dashboard_merchant, db):
    [upi, card] = insert_payments(db, dashboard_merchant["id"], [(10_000, "success", "upi"), (20_000, "failed", "card")])
    for path in ("/dashboard/transactions", f"/dashboard/transactions/{upi}", "/dashboard/webhooks",
                 "/dashboard/webhooks/endpoints", "/dashboard/jobs"):
        html = dashboard.get(path).get_data(as_text=True)
        # Every time is shown in the dashboard's zone (UTC only on hover), so no heading says UTC.
        assert "(UTC)</th>" not in html and "(UTC)</dt>" not in html, path
    listed = page(dashboard.get("/dashboard/transactions"))
    for pay_id, customer in ((upi, "shopper@okbank"), (card, "visa •••• 1111")):
        row = listed.one("transaction-row", data_payment_id=pay_id)
        assert row.one("customer").text == customer
        # On a phone each row is a block of cells: the ones a value alone does not explain say what they are.
        assert [row.one(name).attrs.get("data-label") for name in ("order-id", "customer", "method", "created-at")
                ] == ["Order", "Customer", "Method", "Created"]


# ---- the overview chart's days, in DASHBOARD_TIMEZONE ------------------------------------------

def midnight(day, tz):
    return datetime.combine(day, time(), tz)


def chart_days(dashboard):
    """The overview chart as shown: {date: (payments, successful)}, oldest first."""
    bars = page(dashboard.get("/dashboard")).all("chart-day")
    return {date.fromisoformat(b.attrs["data-day"]): (int(b.attrs["data-count"]), int(b.attrs["data-succeeded"]))
            for b in bars}


def counted_per_day(db, merchant_id, tz, days):
    """A count(*) of the merchant's payments grouped by their date in `tz`, for these dates."""
    rows = db.all("""
        SELECT (created_at AT TIME ZONE %(tz)s)::date AS day, count(*) AS n, count(*) FILTER (WHERE status = 'success') AS ok
          FROM payments WHERE merchant_id = %(m)s GROUP BY 1
        """, {"tz": tz.key, "m": merchant_id})
    found = {r["day"]: (r["n"], r["ok"]) for r in rows}
    return {d: found.get(d, (0, 0)) for d in days}


@pytest.fixture
def unseal(app):
    """unseal(at): the payments' rollups from the hour `at` on taken back, for every merchant, as
    they were before the worker sealed those hours (their rows are then counted from the table);
    sealed again after the test. Sound only while tests run one at a time, as this suite does:
    another test's totals would read the same rollups meanwhile."""
    pool = app.extensions["db_pool"]

    def take_back(at):
        with app_db.connect(pool) as c, app_db.transaction(c):
            app_db.execute(c, "SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": rollups.LOCK})
            app_db.execute(c, "DELETE FROM rollups WHERE kind = 'payments' AND hour >= %(t)s", {"t": at})
            app_db.execute(c, "DELETE FROM rollups_daily WHERE kind = 'payments' AND day >= date_trunc('day', %(t)s, 'UTC')",
                           {"t": at})
            app_db.execute(c, "UPDATE rollups_sealed SET sealed_until = %(t)s WHERE kind = 'payments'", {"t": at})

    yield take_back
    with app_db.connect(pool) as c:
        rollups.seal(c)


def test_the_chart_counts_local_days_whether_their_hours_are_sealed_or_not(app, db, dashboard, dashboard_merchant,
                                                                            monkeypatch, unseal):
    """A payment at 18:15 UTC is in that day in Asia/Kolkata, one at 18:45 UTC in the next (local
    midnight is 18:30 UTC, on no UTC hour): so the chart shows them, from the rollups or from the rows."""
    monkeypatch.setitem(app.config, "DASHBOARD_TIMEZONE", KOLKATA)
    m = dashboard_merchant["id"]
    today = datetime.now(timezone.utc).astimezone(KOLKATA).date()
    first, edge = today - timedelta(days=13), midnight(today - timedelta(days=2), KOLKATA)
    placed = [(midnight(first, KOLKATA) - 15 * MINUTE, "success"),  # the day before the chart's first
              (midnight(first, KOLKATA) + 15 * MINUTE, "success"),
              (edge - 30 * MINUTE, "success"), (edge - 15 * MINUTE, "success"),  # 18:00 and 18:15 UTC
              (edge - timedelta(microseconds=1), "failed"), (edge, "failed"),
              (edge + 15 * MINUTE, "success"), (edge + 30 * MINUTE, "failed"),  # 18:45 and 19:00 UTC
              (edge + 3 * HOUR, "success"), (edge + timedelta(hours=5, minutes=30), "success"),  # a UTC midnight
              (edge + timedelta(days=1, minutes=-1), "failed"), (midnight(today, KOLKATA), "success"),
              (datetime.now(timezone.utc) - MINUTE, "success")]
    for at, status in placed:
        insert_payment(db, m, at, status=status, error="declined" if status == "failed" else None)
    days = [first + timedelta(days=i) for i in range(14)]
    expected = counted_per_day(db, m, KOLKATA, days)
    assert expected[edge.date() - timedelta(days=1)] == (3, 2) and expected[edge.date()] == (6, 3)  # what the test is about

    with app_db.connect(app.extensions["db_pool"]) as c:
        rollups.seal(c)
    assert chart_days(dashboard) == expected
    unseal(edge.astimezone(timezone.utc).replace(minute=0) - HOUR)  # the hours around that midnight not sealed yet
    assert chart_days(dashboard) == expected
    unseal(midnight(first, KOLKATA).astimezone(timezone.utc).replace(minute=0) - 2 * HOUR)  # none of the 14 days
    assert chart_days(dashboard) == expected
    overview = page(dashboard.get("/dashboard"))
    assert "Payments per day (the last 14 days, Asia/Kolkata time)" in overview.text
    assert "(UTC)" not in " ".join(b.text for b in overview.all("chart-day"))


def test_the_chart_counts_days_of_23_and_25_hours_in_a_zone_with_dst(app, db, dashboard, dashboard_merchant,
                                                                      monkeypatch, unseal):
    """In America/New_York the day clocks go forward has 23 hours and the day they go back 25: each
    payment is counted in its local date, on the page (today's 14 days) and across both changes."""
    monkeypatch.setitem(app.config, "DASHBOARD_TIMEZONE", NEW_YORK)
    m = dashboard_merchant["id"]
    today = datetime.now(timezone.utc).astimezone(NEW_YORK).date()
    recent = midnight(today - timedelta(days=3), NEW_YORK)
    spring, autumn = date(2026, 3, 8), date(2026, 11, 1)  # 23 and 25 hours long
    placed = [recent - 10 * MINUTE, recent, recent + 10 * MINUTE, midnight(today - timedelta(days=13), NEW_YORK),
              midnight(today - timedelta(days=13), NEW_YORK) - timedelta(microseconds=1),
              datetime(2026, 3, 7, 23, 50, tzinfo=NEW_YORK), datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK),
              datetime(2026, 3, 8, 23, 30, tzinfo=NEW_YORK), datetime(2026, 3, 9, 0, 15, tzinfo=NEW_YORK),
              datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK), datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK),
              datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK), datetime(2026, 11, 1, 23, 30, tzinfo=NEW_YORK),
              datetime(2026, 11, 2, 0, 10, tzinfo=NEW_YORK), datetime(2026, 10, 31, 23, 59, tzinfo=NEW_YORK)]
    for i, at in enumerate(placed):
        insert_payment(db, m, at, status="success" if i % 3 else "pending")
    assert sum(1 for at in placed if at.astimezone(NEW_YORK).date() == autumn) == 4

    def expected(last):
        return counted_per_day(db, m, NEW_YORK, [last - timedelta(days=13 - i) for i in range(14)])

    def shown(last):  # the chart as it would be drawn at noon on `last`
        with app_db.connect(app.extensions["db_pool"]) as c:
            rows = dashboard_data.payments_per_day(c, m, NEW_YORK, now=datetime.combine(last, time(12), NEW_YORK))
        return {r["day"]: (r["total"], r["succeeded"]) for r in rows}

    with app_db.connect(app.extensions["db_pool"]) as c:
        rollups.seal(c)
    for state in ("sealed", "not sealed"):
        if state == "not sealed":
            unseal(datetime(2026, 3, 1, tzinfo=timezone.utc))
        assert chart_days(dashboard) == expected(today), state
        for last in (spring + timedelta(days=5), autumn + timedelta(days=5)):
            assert shown(last) == expected(last), (state, last)
        assert shown(autumn + timedelta(days=5))[autumn][0] == 4 and shown(spring + timedelta(days=5))[spring][0] == 2
