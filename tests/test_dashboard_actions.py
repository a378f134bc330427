"""What a merchant does on the dashboard's payments, over the Flask test client: refund (full,
partial, refused, sent twice, without its CSRF token) and capture on a payment's page; search, date
range (in Asia/Kolkata) and clearing filters on the transactions list; its CSV export. Rows are
written directly (each case exact and quick); browser/test_dashboard.py drives the same in Chromium."""
import csv
import io
import re
from datetime import datetime, timezone

import pytest

from helpers import LOCAL_TIME_RE, TIME_RE, insert_payment, page

from app import config

KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def now():
    return datetime.now(timezone.utc)


def refund_form(dashboard, pay_id):
    """The refund form's hidden fields as the payment's page renders them."""
    html = dashboard.get(f"/dashboard/transactions/{pay_id}").get_data(as_text=True)
    return {"csrf_token": CSRF.search(html).group(1), "idempotency_key": KEY.search(html).group(1)}


def refund(dashboard, pay_id, amount, form=None):
    return dashboard.post(f"/dashboard/transactions/{pay_id}/refund",
                          data=dict(form or refund_form(dashboard, pay_id), amount=amount))


def refunds_of(db, pay_id):
    return [r["amount"] for r in db.all("SELECT amount FROM refunds WHERE payment_id = %(p)s ORDER BY created_at",
                                         {"p": pay_id})]


def listed(dashboard, query=""):
    """Every payment id the transactions list shows for this query string, all pages followed."""
    ids, url = [], f"/dashboard/transactions?{query}"
    while url:
        shown = page(dashboard.get(url))
        ids += [r.attrs["data-payment-id"] for r in shown.all("transaction-row")]
        nxt = shown.all("next-page")
        url = nxt[0].attrs["href"].replace("&amp;", "&") if nxt else None
    return ids


# ---- refund and capture ---------------------------------------------------------------------------

def test_a_partial_then_the_full_rest_refund_from_the_payment_page(client, db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now())
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert shown.one("refund-button").text == "Refund"
    assert shown.one("refund-amount-input").attrs["value"] == "123.45"  # the whole amount by default

    r = refund(dashboard, pay_id, "23.45")
    assert r.status_code == 302 and r.headers["Location"] == f"/dashboard/transactions/{pay_id}"
    assert refunds_of(db, pay_id) == [2345]
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert "Refund rfnd_" in shown.text and "₹23.45 accepted" in shown.text
    [row] = shown.all("refund-row")
    assert row.one("refund-amount").text == "₹23.45" and row.one("refund-status").text == "pending"
    assert shown.one("refunded-amount").text == "₹23.45"
    assert shown.one("refund-amount-input").attrs["value"] == "100.00"  # what is left
    assert page(dashboard.get("/dashboard/transactions")).one(
        "transaction-row", data_payment_id=pay_id).one("refund-state").text == "Partly refunded"

    assert refund(dashboard, pay_id, "100").status_code == 302
    assert refunds_of(db, pay_id) == [2345, 10000]
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert len(shown.all("refund-row")) == 2 and not shown.all("refund-button")  # nothing left to refund
    assert page(dashboard.get("/dashboard/transactions")).one(
        "transaction-row", data_payment_id=pay_id).one("refund-state").text == "Refunded"
    # The API sees the dashboard's refunds.
    api = client.get(f"/api/v1/payments/{pay_id}/refunds", headers=dashboard_merchant["headers"]).get_json()
    assert sorted(r["amount"] for r in api["data"]) == [2345, 10000]


@pytest.mark.parametrize("amount, message", [
    ("123.46", "Refund amount exceeds available amount."),
    ("abc", "Enter the amount to refund in rupees"),
    ("0", "Enter the amount to refund in rupees"),
    ("-5", "Enter the amount to refund in rupees"),
    ("1.234", "Enter the amount to refund in rupees"),
    ("", "Enter the amount to refund in rupees"),
])
def test_a_refund_the_rules_refuse_is_a_message_and_changes_nothing(db, dashboard, dashboard_merchant, amount, message):
    pay_id = insert_payment(db, dashboard_merchant["id"], now())
    shown = page(refund(dashboard, pay_id, amount), 400)
    assert shown.one("refund-error").text.startswith(message)
    assert shown.one("refund-amount-input").attrs["value"] == amount  # what was typed is kept
    assert refunds_of(db, pay_id) == []


def test_a_yen_payment_is_refunded_and_exported_in_whole_yen(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now(), amount=150000)
    db.execute("UPDATE payments SET currency = 'JPY' WHERE id = %(p)s", {"p": pay_id})
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert shown.one("amount").text == "¥150,000"
    assert shown.one("refund-amount-input").attrs["value"] == "150000"  # yen have no decimals
    assert "Enter the amount to refund in JPY" in page(refund(dashboard, pay_id, "1.50"), 400).one("refund-error").text
    assert refund(dashboard, pay_id, "500").status_code == 302
    assert refunds_of(db, pay_id) == [500]  # ¥500, not ¥50,000
    [row] = csv.DictReader(io.StringIO(dashboard.get(f"/dashboard/transactions.csv?q={pay_id}").get_data(as_text=True)))
    assert (row["amount"], row["amount_paise"], row["refunded"], row["currency"]) == ("150000", "150000", "500", "JPY")


def test_the_refunded_total_counts_every_refund_beyond_the_listed_ones(db, dashboard, dashboard_merchant):
    """The page lists the newest 100 refunds; what is refunded and what is left count all of them."""
    pay_id = insert_payment(db, dashboard_merchant["id"], now())  # ₹123.45
    db.execute("INSERT INTO refunds (id, payment_id, merchant_id, amount) "
               "SELECT 'rfnd_' || lpad(i::text, 16, '0'), %(p)s, %(m)s, 100 FROM generate_series(1, 101) i",
               {"p": pay_id, "m": dashboard_merchant["id"]})
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert len(shown.all("refund-row")) == 100
    assert shown.one("refunded-amount").text == "₹101.00"
    assert shown.one("refund-amount-input").attrs["value"] == "22.45"


def test_a_failed_payment_offers_no_refund_and_a_posted_one_is_refused(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now(), status="failed", error="Card declined")
    assert not page(dashboard.get(f"/dashboard/transactions/{pay_id}")).all("refund-button")
    html = dashboard.get(f"/dashboard/transactions/{pay_id}").get_data(as_text=True)
    form = {"csrf_token": CSRF.search(html).group(1), "idempotency_key": "k1"}
    shown = page(refund(dashboard, pay_id, "10", form), 400)
    assert "Payment must be successful to be refunded." in shown.text
    assert refunds_of(db, pay_id) == []


def test_the_same_refund_form_sent_twice_refunds_once(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now())
    form = refund_form(dashboard, pay_id)
    first, second = refund(dashboard, pay_id, "10.00", form), refund(dashboard, pay_id, "10.00", form)
    assert first.status_code == second.status_code == 302
    assert refunds_of(db, pay_id) == [1000]
    # The same form with another amount (back button, edit, send) is not a second refund either.
    shown = page(refund(dashboard, pay_id, "20.00", form), 409)
    assert "already sent" in shown.one("refund-error").text
    assert refunds_of(db, pay_id) == [1000]
    # A freshly loaded form is a new refund.
    assert refund(dashboard, pay_id, "20.00").status_code == 302 and refunds_of(db, pay_id) == [1000, 2000]


def test_refund_and_capture_need_the_forms_csrf_token(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now())
    r = dashboard.post(f"/dashboard/transactions/{pay_id}/refund", data={"amount": "10", "idempotency_key": "k"})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    assert dashboard.post(f"/dashboard/transactions/{pay_id}/capture").status_code == 400
    assert refunds_of(db, pay_id) == []
    assert db.value("SELECT captured FROM payments WHERE id = %(p)s", {"p": pay_id}) is False


def test_capture_marks_an_uncaptured_successful_payment_captured_once(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now())
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert shown.one("captured").text == "no" and shown.one("capture-button").text == "Capture ₹123.45"
    token = CSRF.search(dashboard.get(f"/dashboard/transactions/{pay_id}").get_data(as_text=True)).group(1)
    r = dashboard.post(f"/dashboard/transactions/{pay_id}/capture", data={"csrf_token": token})
    assert r.status_code == 302
    shown = page(dashboard.get(f"/dashboard/transactions/{pay_id}"))
    assert shown.one("captured").text == "yes" and not shown.all("capture-button")
    assert "captured" in shown.text
    assert shown.one("flash-message").text == f"Payment {pay_id} captured."
    again = page(dashboard.post(f"/dashboard/transactions/{pay_id}/capture", data={"csrf_token": token}), 400)
    assert again.one("capture-error").text == "Payment has already been captured."
    pending = insert_payment(db, dashboard_merchant["id"], now(), status="pending")
    assert not page(dashboard.get(f"/dashboard/transactions/{pending}")).all("capture-button")
    refused = page(dashboard.post(f"/dashboard/transactions/{pending}/capture", data={"csrf_token": token}), 400)
    assert refused.one("capture-error").text == "Payment not in capturable state."
    assert db.value("SELECT captured FROM payments WHERE id = %(p)s", {"p": pending}) is False


def test_another_merchants_payment_cannot_be_refunded_or_captured(db, dashboard, make_merchant):
    theirs = insert_payment(db, make_merchant()["id"], now())
    token = CSRF.search(dashboard.get("/dashboard/transactions").get_data(as_text=True)).group(1)
    assert dashboard.post(f"/dashboard/transactions/{theirs}/refund",
                          data={"csrf_token": token, "amount": "1", "idempotency_key": "x"}).status_code == 404
    assert dashboard.post(f"/dashboard/transactions/{theirs}/capture", data={"csrf_token": token}).status_code == 404
    assert refunds_of(db, theirs) == []


# ---- the list: search, dates, filters ----------------------------------------------------------------

@pytest.fixture
def shop(db, dashboard_merchant, make_merchant):
    """A UPI payment, a card payment, a failed one with a receipt; another merchant's with the same VPA."""
    m = dashboard_merchant["id"]
    t = now()
    made = {"upi": insert_payment(db, m, t, vpa="Asha@OKBank"),
            "card": insert_payment(db, m, t, method="card", last4="4242"),
            "receipt": insert_payment(db, m, t, status="failed", error="UPI transaction declined by the payer's bank",
                              vpa="ravi@upi", receipt="INV-2026-0042")}
    insert_payment(db, make_merchant()["id"], t, vpa="asha@okbank")
    return made


def test_the_list_shows_customer_and_failure_reason(dashboard, shop):
    shown = page(dashboard.get("/dashboard/transactions"))
    assert shown.one("transaction-row", data_payment_id=shop["upi"]).one("customer").text == "Asha@OKBank"
    assert shown.one("transaction-row", data_payment_id=shop["card"]).one("customer").text == "visa •••• 4242"
    failed = shown.one("transaction-row", data_payment_id=shop["receipt"])
    assert failed.one("failure-reason").text == "UPI transaction declined by the payer's bank"
    assert not shown.one("transaction-row", data_payment_id=shop["upi"]).all("failure-reason")
    assert LOCAL_TIME_RE.match(failed.one("created-at").text)


def test_search_by_payment_id_order_id_vpa_last4_and_receipt(db, dashboard, shop):
    order_of_card = db.value("SELECT order_id FROM payments WHERE id = %(p)s", {"p": shop["card"]})
    for q, expected in [(shop["upi"], [shop["upi"]]), (order_of_card, [shop["card"]]),
                        ("asha@okbank", [shop["upi"]]),  # any case, only this merchant's
                        ("4242", [shop["card"]]), ("INV-2026-0042", [shop["receipt"]]),
                        ("1111", []), ("nobody@bank", []), ("pay_unknown", []), ("INV-none", [])]:
        shown = page(dashboard.get("/dashboard/transactions", query_string={"q": q}))
        assert [r.attrs["data-payment-id"] for r in shown.all("transaction-row")] == expected, q
        assert shown.one("search-input").attrs["value"] == q
        assert shown.one("page-info").text == f"{len(expected)} matching payment{'' if len(expected) == 1 else 's'}"
        if not expected:
            assert "No payments match these filters" in shown.one("transactions-empty").text
    # The search and the status filter together.
    assert listed(dashboard, "q=asha@okbank&status=failed") == []


def test_a_date_range_is_whole_days_in_the_merchants_time_zone(db, dashboard, dashboard_merchant):
    m = dashboard_merchant["id"]
    # 23:59:30 IST on 10 March is 18:29:30 UTC; 00:00:30 IST on 11 March is 18:30:30 UTC.
    late = insert_payment(db, m, datetime(2026, 3, 10, 18, 29, 30, tzinfo=timezone.utc))
    early = insert_payment(db, m, datetime(2026, 3, 10, 18, 30, 30, tzinfo=timezone.utc))
    before = insert_payment(db, m, datetime(2026, 3, 9, 18, 29, 59, tzinfo=timezone.utc))  # 9 March, 23:59:59 IST
    assert listed(dashboard, "from=2026-03-10&to=2026-03-10") == [late]
    assert listed(dashboard, "from=2026-03-11&to=2026-03-11") == [early]
    assert listed(dashboard, "from=2026-03-10") == [early, late]
    assert listed(dashboard, "to=2026-03-10") == [late, before]
    shown = page(dashboard.get("/dashboard/transactions?from=2026-03-10&to=2026-03-11"))
    assert shown.one("page-info").text == "1–2 of 2"
    assert shown.one("from-date").attrs["value"] == "2026-03-10" and shown.one("to-date").attrs["value"] == "2026-03-11"
    cell = shown.one("transaction-row", data_payment_id=late).one("created-at")
    assert cell.text == "2026-03-10 23:59:30 IST"
    [time_el] = [c for c in cell.children if not isinstance(c, str)]
    assert time_el.attrs["title"] == "2026-03-10T18:29:30Z (UTC)" and TIME_RE.match(time_el.attrs["datetime"])


def test_bad_dates_are_a_message_not_an_error(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], now())
    shown = page(dashboard.get("/dashboard/transactions?from=2026-02-30"))
    assert "is not a date" in shown.one("filter-error").text
    assert [r.attrs["data-payment-id"] for r in shown.all("transaction-row")] == [pay_id]
    shown = page(dashboard.get("/dashboard/transactions?from=2026-03-11&to=2026-03-10"))
    assert "after the To date" in shown.one("filter-error").text


def test_filters_are_kept_by_the_pager_and_cleared_by_one_link(db, dashboard, dashboard_merchant):
    m, t = dashboard_merchant["id"], datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
    made = [insert_payment(db, m, t.replace(minute=i)) for i in range(23)]
    insert_payment(db, m, t.replace(minute=30), status="failed", error="declined")
    query = "status=success&from=2026-05-01&to=2026-05-01"
    first = page(dashboard.get(f"/dashboard/transactions?{query}"))
    assert first.one("page-info").text == "1–20 of 23"
    href = first.one("next-page").attrs["href"]
    assert "status=success" in href and "from=2026-05-01" in href and "to=2026-05-01" in href
    second = page(dashboard.get(href))
    assert second.one("page-info").text == "21–23 of 23"
    assert listed(dashboard, query) == made[::-1]
    assert first.one("clear-filters").attrs["href"] == "/dashboard/transactions"
    assert len(page(dashboard.get("/dashboard/transactions")).all("transaction-row")) == 20
    assert not page(dashboard.get("/dashboard/transactions")).all("clear-filters")


# ---- CSV ---------------------------------------------------------------------------------------------

def download(dashboard, query=""):
    r = dashboard.get(f"/dashboard/transactions.csv?{query}")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="payments-\d{8}-\d{6}\.csv"', r.headers["Content-Disposition"])
    return list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))


def test_the_csv_holds_exactly_the_filtered_payments_of_every_page(db, dashboard, dashboard_merchant):
    m, t = dashboard_merchant["id"], datetime(2026, 6, 1, 6, 0, tzinfo=timezone.utc)
    for i in range(45):
        insert_payment(db, m, t.replace(second=i), status="failed" if i % 3 == 0 else "success", error="declined" if i % 3 == 0 else None)
    insert_payment(db, m, datetime(2026, 6, 2, 20, 0, tzinfo=timezone.utc))  # 3 June in IST: outside the range
    for query in ("status=success&from=2026-06-01&to=2026-06-02", "from=2026-06-01&to=2026-06-02", "status=failed", ""):
        shown = listed(dashboard, query)
        assert [row["payment_id"] for row in download(dashboard, query)] == shown, query
    assert len(listed(dashboard, "status=success&from=2026-06-01&to=2026-06-02")) == 30
    export_link = page(dashboard.get("/dashboard/transactions?status=failed&q=shopper@okbank")).one("export-csv-link")
    assert export_link.attrs["href"].replace("&amp;", "&") == "/dashboard/transactions.csv?status=failed&q=shopper@okbank"


def test_csv_columns_and_values(db, dashboard, dashboard_merchant):
    pay_id = insert_payment(db, dashboard_merchant["id"], datetime(2026, 7, 1, 20, 0, 5, tzinfo=timezone.utc), amount=50005,
                    method="card", last4="4242", receipt="INV-7")
    refund(dashboard, pay_id, "100.05")
    [row] = download(dashboard, f"q={pay_id}")
    assert row == {"payment_id": pay_id, "order_id": row["order_id"], "receipt": "INV-7", "status": "success",
                   "amount": "500.05", "amount_paise": "50005", "currency": "INR", "refunded": "100.05",
                   "refunded_paise": "10005", "refund_state": "Partly refunded", "method": "card", "vpa": "",
                   "card_network": "visa", "card_last4": "4242", "captured": "false", "error_code": "",
                   "error_description": "", "notes": "", "created_at_utc": "2026-07-01T20:00:05Z",
                   "created_at_local": "2026-07-02T01:30:05+05:30"}
    assert row["order_id"].startswith("order_")


def test_csv_cells_a_spreadsheet_would_run_as_formulas_start_with_an_apostrophe(db, dashboard, dashboard_merchant):
    m, t = dashboard_merchant["id"], now()
    cases = {"=HYPERLINK(\"http://evil\")": "'=HYPERLINK(\"http://evil\")", "+1+1": "'+1+1", "-2": "'-2",
             "@SUM(A1)": "'@SUM(A1)", "INV-1": "INV-1"}
    made = {insert_payment(db, m, t, receipt=receipt, error="=cmd|' /C calc'!A0", status="failed"): want
            for receipt, want in cases.items()}
    rows = {r["payment_id"]: r for r in download(dashboard)}
    for pay_id, want in made.items():
        assert rows[pay_id]["receipt"] == want
        assert rows[pay_id]["error_description"] == "'=cmd|' /C calc'!A0"


def test_an_unknown_time_zone_stops_the_start_naming_the_setting():
    with pytest.raises(ValueError, match="DASHBOARD_TIMEZONE 'Asia/Kolkatta': not a known IANA time zone"):
        config.load({"DASHBOARD_TIMEZONE": "Asia/Kolkatta"})
    assert config.load({})["DASHBOARD_TIMEZONE"].key == "Asia/Kolkata"
    assert config.load({"DASHBOARD_TIMEZONE": "Europe/London"})["DASHBOARD_TIMEZONE"].key == "Europe/London"
