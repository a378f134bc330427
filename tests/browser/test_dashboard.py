"""The merchant dashboard in real Chromium against the real app (gunicorn), worker and PostgreSQL:
sign-in, every dashboard test id, transactions from API payments, webhook configuration, test
deliveries to a real receiver, retries, the integration guide's snippets and CSRF protection."""
import csv
import io
import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import expect
from requests.structures import CaseInsensitiveDict
from standardwebhooks import Webhook

from axe import violations
from helpers import (LOCAL_TIME_RE, TEST_MERCHANT, TEST_MERCHANT_ID, api_headers, create_payment_over_http,
                     insert_payment, insert_payments, insert_webhook_logs, wait_until)

from app import webhooks
from app.ids import new_id
from app.money import indian_digits, money, money_whole

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "test@example.com", "password"

# Every data-test-id of the dashboard that a page shows without any data (rows are checked with data).
PAGE_IDS = {
    "/dashboard": ["dashboard", "api-credentials", "api-key", "api-secret-reveal", "reveal-secret-button", "stats-container",
                   "total-transactions", "total-amount", "success-rate"],
    "/dashboard/transactions": ["transactions-table"],
    "/dashboard/webhooks": ["webhook-config", "webhook-config-form", "webhook-url-input", "webhook-secret-reveal",
                            "reveal-secret-button", "webhook-status-filter", "webhook-event-filter",
                            "regenerate-secret-button", "save-webhook-button", "test-webhook-button",
                            "webhook-logs-table", "endpoints-link"],
    "/dashboard/webhooks/endpoints": ["endpoints-table", "add-endpoint-form", "endpoint-url-input", "event-checkbox",
                                      "endpoint-description-input", "add-endpoint-button"],
    "/dashboard/docs": ["api-docs", "section-create-order", "code-snippet-create-order", "section-sdk-integration",
                        "code-snippet-sdk", "section-webhook-verification", "code-snippet-webhook",
                        "reveal-secret-button"],
    "/dashboard/jobs": ["jobs-dashboard", "worker-status", "oldest-pending-age", "job-counts-table",
                        "dead-jobs-table"],
}
ROW_IDS = {
    "transaction-row": ["payment-id", "order-id", "amount", "method", "status", "created-at"],
    "webhook-log-item": ["webhook-event", "webhook-status", "webhook-attempts", "webhook-last-attempt",
                         "webhook-response-code", "retry-webhook-button"],
}


def tid(name):
    return f'[data-test-id="{name}"]'


def indian(n):
    """Expected grouping, written independently of the app: 5,00,000 / 1,23,45,678."""
    return re.sub(r"(\d)(?=(\d\d)+\d$)", r"\1,", str(n))


# ---- fixtures and steps -----------------------------------------------------------------------

@pytest.fixture(autouse=True)
def restore_test_merchant(db):
    """The seeded merchant is shared with other tests: start each test without a webhook URL and
    put its URL and secret back afterwards, whatever the test changed."""
    before = db.one("SELECT webhook_url, webhook_secret FROM merchants WHERE id = %(id)s", {"id": TEST_MERCHANT_ID})
    db.execute("UPDATE merchants SET webhook_url = NULL WHERE id = %(id)s", {"id": TEST_MERCHANT_ID})
    yield
    db.execute("UPDATE merchants SET webhook_url = %(u)s, webhook_secret = %(s)s WHERE id = %(id)s", {"u": before["webhook_url"], "s": before["webhook_secret"], "id": TEST_MERCHANT_ID})


def sign_in(page, base, email=EMAIL, password=PASSWORD, path="/login"):
    page.goto(base + path)
    page.fill(tid("email-input"), email)
    page.fill(tid("password-input"), password)
    page.click(tid("login-button"))
    return page


def merchant_row(db, merchant_id=TEST_MERCHANT_ID):
    return db.one("SELECT * FROM merchants WHERE id = %(id)s", {"id": merchant_id})


def wait_for_status(db, table, object_id, status, timeout=15):
    def reached():
        return db.value(f"SELECT status FROM {table} WHERE id = %(id)s", {"id": object_id}) == status

    wait_until(reached, timeout=timeout, message=f"{object_id} {status}")


def log_by_event_id(db, event_id):
    return db.one("SELECT * FROM webhook_logs WHERE event_id = %(e)s", {"e": event_id})


def sideways(page):
    """How many pixels the page is wider than the window: a phone pans the whole page that far."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


# ---- formatting (pure) --------------------------------------------------------------------------

@pytest.mark.parametrize("n,expected", [(0, "0"), (7, "7"), (999, "999"), (1000, "1,000"), (99999, "99,999"),
                                        (100000, "1,00,000"), (500000, "5,00,000"), (12345678, "1,23,45,678"),
                                        (1000000000, "1,00,00,00,000")])
def test_indian_digit_grouping(n, expected):
    assert indian_digits(n) == expected == indian(n)


@pytest.mark.parametrize("paise,currency,exact,whole", [
    (50000, "INR", "₹500.00", "₹500"),
    (50000000, "INR", "₹5,00,000.00", "₹5,00,000"),
    (123456, "INR", "₹1,234.56", "₹1,235"),
    (149, "INR", "₹1.49", "₹1"),
    (0, "INR", "₹0.00", "₹0"),
    (123456, "USD", "USD 1,234.56", "USD 1,235"),
])
def test_money_formats_integer_paise(paise, currency, exact, whole):
    assert money(paise, currency) == exact and money_whole(paise, currency) == whole


# ---- sign-in ------------------------------------------------------------------------------------

def test_bad_login_shows_an_error_and_signs_nobody_in(page, live_api):
    for email, password in [(EMAIL, "wrong-password"), ("nobody@example.com", PASSWORD), (EMAIL, PASSWORD + " ")]:
        sign_in(page, live_api.url, email, password)
        expect(page.locator(tid("login-error"))).to_have_text("Invalid email or password.")
        expect(page).to_have_url(re.compile(r"/login$"))
        expect(page.locator(tid("email-input"))).to_have_value(email)
    page.goto(live_api.url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_signed_out_pages_redirect_to_login_and_sign_out_works(page, context, live_api):
    for path in PAGE_IDS:
        page.goto(live_api.url + path)
        expect(page).to_have_url(re.compile(r"/login\?next=" + re.escape(path).replace("/", "(/|%2F)") + "$"))
        expect(page.locator(tid("login-form"))).to_be_visible()
    # After signing in, the page that was asked for opens.
    page.fill(tid("email-input"), EMAIL)
    page.fill(tid("password-input"), PASSWORD)
    page.click(tid("login-button"))
    expect(page).to_have_url(live_api.url + "/dashboard/jobs")
    cookie = next(c for c in context.cookies() if c["name"] == "session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.click(tid("logout-button"))
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(tid("flash-message"))).to_have_text("You have been signed out.")
    page.goto(live_api.url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_login_shows_every_dashboard_test_id(page, live_api):
    page.goto(live_api.url + "/login")
    for name in ("login-form", "email-input", "password-input", "login-button"):
        expect(page.locator(tid(name))).to_be_visible()
    page.fill(tid("email-input"), EMAIL.upper())  # emails are matched case-insensitively
    page.fill(tid("password-input"), PASSWORD)
    page.click(tid("login-button"))
    expect(page).to_have_url(live_api.url + "/dashboard")
    for path, names in PAGE_IDS.items():
        page.goto(live_api.url + path)
        for name in names:
            expect(page.locator(tid(name)).first).to_be_visible()
    page.goto(live_api.url + "/dashboard")
    expect(page.locator(tid("api-key"))).to_have_text("key_test_abc123")
    expect(page.locator(tid("api-secret"))).to_have_text("secret_test_xyz789")
    expect(page.locator(tid("total-amount"))).to_have_text(re.compile(r"^₹\d{1,2}(,\d\d)*,\d{3}$|^₹\d{1,3}$"))
    expect(page.locator(tid("success-rate"))).to_have_text(re.compile(r"^\d{1,3}%$|^—$"))  # — before any settled payment
    expect(page.locator(tid("total-transactions"))).to_have_text(re.compile(r"^[\d,]+$"))


# ---- transactions and stats -----------------------------------------------------------------------

def test_api_payment_appears_in_transactions_with_amount_and_status(page, live_api, live_worker, db):
    upi = create_payment_over_http(live_api.url, TEST_MERCHANT, amount=123456)
    card = create_payment_over_http(live_api.url, TEST_MERCHANT, amount=50000, method="card")
    for p in (upi, card):
        wait_for_status(db, "payments", p["id"], "success")

    sign_in(page, live_api.url)
    page.goto(live_api.url + "/dashboard/transactions")
    row = page.locator(f'{tid("transaction-row")}[data-payment-id="{upi["id"]}"]')
    expect(row.locator(tid("payment-id"))).to_have_text(upi["id"])
    expect(row.locator(tid("order-id"))).to_have_text(upi["order_id"])
    expect(row.locator(tid("amount"))).to_have_text("₹1,234.56")
    expect(row.locator(tid("method"))).to_have_text("upi")
    expect(row.locator(tid("status"))).to_have_text("success")
    expect(row.locator(tid("created-at"))).to_have_text(LOCAL_TIME_RE)
    card_row = page.locator(f'{tid("transaction-row")}[data-payment-id="{card["id"]}"]')
    expect(card_row.locator(tid("amount"))).to_have_text("₹500.00")
    expect(card_row.locator(tid("method"))).to_have_text("card")
    for name in ROW_IDS["transaction-row"]:
        expect(card_row.locator(tid(name))).to_have_count(1)

    # The status filter keeps or drops the row.
    page.select_option(tid("status-filter"), "failed")
    page.click(tid("filter-button"))
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(row).to_have_count(0)
    page.select_option(tid("status-filter"), "success")
    page.click(tid("filter-button"))
    expect(row).to_have_count(1)

    # The row links to the payment's page.
    row.locator(f'{tid("payment-id")} a').click()
    expect(page).to_have_url(f"{live_api.url}/dashboard/transactions/{upi['id']}")
    detail = page.locator(tid("transaction-detail"))
    expect(detail.locator(tid("status")).first).to_have_text("success")
    expect(detail.locator(tid("amount")).first).to_have_text("₹1,234.56")
    expect(detail.locator(tid("method"))).to_contain_text("shopper@okbank")
    page.goto(f"{live_api.url}/dashboard/transactions/pay_doesnotexist0000")
    expect(page.locator("h1")).to_have_text("Payment not found")


def test_stats_chart_and_paging_come_from_real_data(page, live_api, live_worker, db, dashboard_merchant):
    m = dashboard_merchant
    # 21 successful payments through the API: 20 × ₹20,000 + ₹1,00,000 = ₹5,00,000 …
    made = [create_payment_over_http(live_api.url, m, amount=2_000_000) for _ in range(20)]
    made.append(create_payment_over_http(live_api.url, m, amount=10_000_000, method="card"))
    wait_until(lambda: db.value("SELECT count(*) FROM payments WHERE merchant_id = %(m)s AND status = 'success'", {"m": m["id"]}) == 21, timeout=20, message="21 payments settled")
    # … and one that the bank declined (the live worker settles every payment as a success in test
    # mode, so this row is written as settlement would have left it).
    order_id, pay_id = new_id("order_"), new_id("pay_")
    db.execute("INSERT INTO orders (id, merchant_id, amount) VALUES (%(o)s, %(m)s, 70000)", {"o": order_id, "m": m["id"]})
    db.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, status, error_code, "
                    "error_description) VALUES (%(p)s, %(o)s, %(m)s, 70000, 'INR', 'upi', 'x@okbank', 'failed', 'PAYMENT_FAILED', "
                    "'declined')", {"p": pay_id, "o": order_id, "m": m["id"]})

    sign_in(page, live_api.url, m["email"], m["password"])
    expect(page.locator(tid("api-key"))).to_have_text(m["api_key"])
    expect(page.locator(tid("api-secret"))).to_have_text(m["api_secret"])
    expect(page.locator(tid("total-transactions"))).to_have_text("22")
    expect(page.locator(tid("total-amount"))).to_have_text("₹" + indian(500000))
    expect(page.locator(tid("success-rate"))).to_have_text("95%")  # 21 of 22, rounded down
    bars = page.locator(tid("chart-day"))
    expect(bars).to_have_count(14)
    assert sum(int(bars.nth(i).get_attribute("data-count")) for i in range(14)) == 22

    # Paging: newest first, 20 a page; only this merchant's payments.
    page.goto(live_api.url + "/dashboard/transactions")
    rows = page.locator(tid("transaction-row"))
    expect(rows).to_have_count(20)
    expect(rows.first).to_have_attribute("data-payment-id", pay_id)
    expect(page.locator(tid("page-info"))).to_have_text("1–20 of 22")
    page.click(tid("next-page"))
    expect(rows).to_have_count(2)
    shown = {rows.nth(i).get_attribute("data-payment-id") for i in range(2)}
    assert shown == {made[0]["id"], made[1]["id"]}
    page.goto(live_api.url + "/dashboard/transactions?status=failed")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(tid("status"))).to_have_text("failed")


# ---- webhooks -----------------------------------------------------------------------------------

def test_save_url_regenerate_secret_and_test_webhook_arrives(page, live_api, live_worker, receiver, db):
    rx = receiver()
    sign_in(page, live_api.url, path="/login?next=/dashboard/webhooks")
    expect(page).to_have_url(live_api.url + "/dashboard/webhooks")

    # A URL the gateway refuses is a form error, with what was typed kept; nothing is saved.
    page.fill(tid("webhook-url-input"), "ftp://example.com/hook")
    page.click(tid("save-webhook-button"))
    expect(page.locator(tid("webhook-url-error"))).to_contain_text("http(s)")
    expect(page.locator(tid("webhook-url-input"))).to_have_value("ftp://example.com/hook")
    assert merchant_row(db)["webhook_url"] is None

    page.fill(tid("webhook-url-input"), rx.url)
    page.click(tid("save-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_have_text(f"Webhook URL saved: {rx.url}")
    expect(page.locator(tid("webhook-url-input"))).to_have_value(rx.url)
    assert merchant_row(db)["webhook_url"] == rx.url

    # The secret shows once revealed; a new one is generated only after its confirmation.
    secret = page.locator(tid("webhook-secret"))
    expect(secret).to_be_hidden()
    page.click(tid("reveal-secret-button"))
    expect(secret).to_be_visible()
    old = secret.inner_text()
    assert old == merchant_row(db)["webhook_secret"]
    page.click(tid("regenerate-secret-button"))
    expect(page.locator(tid("confirm-regenerate-button"))).to_be_visible()
    assert merchant_row(db)["webhook_secret"] == old  # only the confirmation changes it
    page.click(tid("confirm-regenerate-button"))
    expect(page.locator(tid("flash-message"))).to_contain_text("A new webhook secret was generated")
    page.click(tid("reveal-secret-button"))
    expect(secret).not_to_have_text(old)
    expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{40,}$"))
    new = secret.inner_text()
    assert merchant_row(db)["webhook_secret"] == new

    page.click(tid("test-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_have_text(f"Test webhook queued for {rx.url}.")
    delivery = rx.wait_for(1, event="webhook.test")[0]
    headers = CaseInsensitiveDict(delivery["headers"])
    # Signed with the secret the page shows now (both schemes), not the old one.
    assert headers["X-Webhook-Signature"] == webhooks.sign_hex(new, delivery["body"].decode())
    assert headers["X-Webhook-Signature"] != webhooks.sign_hex(old, delivery["body"].decode())
    assert Webhook(new).verify(delivery["body"], dict(headers))["event"] == "webhook.test"

    log = log_by_event_id(db, headers["webhook-id"])
    wait_for_status(db, "webhook_logs", log["id"], "success")
    page.reload()
    item = page.locator(f'{tid("webhook-log-item")}[data-webhook-id="{log["id"]}"]')
    expect(item.locator(tid("webhook-event"))).to_have_text("webhook.test")
    expect(item.locator(tid("webhook-status"))).to_have_text("success")
    expect(item.locator(tid("webhook-attempts"))).to_have_text("1")
    expect(item.locator(tid("webhook-response-code"))).to_have_text("200")
    expect(item.locator(tid("webhook-last-attempt"))).to_have_text(LOCAL_TIME_RE)
    for name in ROW_IDS["webhook-log-item"]:
        expect(item.locator(tid(name))).to_have_count(1)

    # Clearing the URL stops webhooks; the test button then explains why nothing was sent.
    page.fill(tid("webhook-url-input"), "")
    page.click(tid("save-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_have_text("Webhook URL cleared.")
    assert merchant_row(db)["webhook_url"] is None
    page.click(tid("test-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_have_text("Configure a webhook URL first.")


def test_retry_a_failed_webhook_from_the_logs_table(page, live_api, live_worker, receiver, db):
    rx = receiver(responses=[500] * 5)  # every scheduled attempt fails; the manual retry succeeds
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": rx.url, "id": TEST_MERCHANT_ID})
    sign_in(page, live_api.url, path="/login?next=/dashboard/webhooks")
    page.click(tid("test-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_contain_text("Test webhook queued")  # the POST's redirect has landed
    event_id = CaseInsensitiveDict(rx.wait_for(1)[0]["headers"])["webhook-id"]
    log = log_by_event_id(db, event_id)
    wait_for_status(db, "webhook_logs", log["id"], "failed", timeout=30)  # 5 attempts, 1 s apart

    page.reload()
    item = page.locator(f'{tid("webhook-log-item")}[data-webhook-id="{log["id"]}"]')
    expect(item.locator(tid("webhook-status"))).to_have_text("failed")
    expect(item.locator(tid("webhook-attempts"))).to_have_text("5")
    expect(item.locator(tid("webhook-response-code"))).to_have_text("500")

    item.locator(tid("retry-webhook-button")).click()
    expect(page.locator(tid("flash-message"))).to_have_text(f"Webhook retry scheduled ({log['id']}).")
    deliveries = rx.wait_for(6)
    assert {CaseInsensitiveDict(d["headers"])["webhook-id"] for d in deliveries} == {event_id}  # the same event
    assert deliveries[-1]["status"] == 200 and deliveries[-1]["body"] == deliveries[0]["body"]
    wait_for_status(db, "webhook_logs", log["id"], "success")
    page.reload()
    expect(item.locator(tid("webhook-status"))).to_have_text("success")
    expect(item.locator(tid("webhook-attempts"))).to_have_text("1")
    expect(item.locator(tid("webhook-response-code"))).to_have_text("200")


def test_payment_page_shows_its_refunds_and_webhook_events(page, live_api, live_worker, receiver, db):
    rx = receiver()
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": rx.url, "id": TEST_MERCHANT_ID})
    payment = create_payment_over_http(live_api.url, TEST_MERCHANT, amount=80000)
    wait_for_status(db, "payments", payment["id"], "success")
    r = requests.post(f"{live_api.url}/api/v1/payments/{payment['id']}/refunds", json={"amount": 30000, "reason": "size"},
                      headers=api_headers(), timeout=10)
    assert r.status_code == 201, r.text
    refund = r.json()
    wait_for_status(db, "refunds", refund["id"], "processed")
    rx.wait_for(1, event="refund.processed")

    sign_in(page, live_api.url)
    page.goto(f"{live_api.url}/dashboard/transactions/{payment['id']}")
    refund_row = page.locator(f'{tid("refund-row")}[data-refund-id="{refund["id"]}"]')
    expect(refund_row.locator(tid("refund-amount"))).to_have_text("₹300.00")
    expect(refund_row.locator(tid("refund-status"))).to_have_text("processed")
    expect(page.locator(tid("refunded-amount"))).to_have_text("₹300.00")
    events = page.locator(f'{tid("payment-webhook-item")} {tid("webhook-event")}')
    expect(events).to_have_text(["payment.created", "payment.success", "refund.created", "refund.processed"])


def test_add_an_endpoint_with_two_events_and_reveal_its_secret(page, live_api, dashboard_merchant):
    m = dashboard_merchant
    sign_in(page, live_api.url, m["email"], m["password"], path="/login?next=/dashboard/webhooks")
    page.click(tid("endpoints-link"))
    expect(page).to_have_url(live_api.url + "/dashboard/webhooks/endpoints")
    expect(page.locator(tid("endpoints-empty"))).to_be_visible()

    page.fill(tid("endpoint-url-input"), "http://127.0.0.1:9/orders-hook")
    page.uncheck(f'{tid("event-checkbox")}[value="*"]')  # the form starts on All events
    page.check(f'{tid("event-checkbox")}[value="payment.success"]')
    page.check(f'{tid("event-checkbox")}[value="refund.processed"]')
    page.fill(tid("endpoint-description-input"), "Orders & refunds")
    page.click(tid("add-endpoint-button"))
    expect(page.locator(tid("flash-message"))).to_have_text("Endpoint added: http://127.0.0.1:9/orders-hook")

    api = f"{live_api.url}/api/v1/webhooks/endpoints"
    [listed] = requests.get(api, headers=m["headers"], timeout=10).json()["data"]
    endpoint = requests.get(f"{api}/{listed['id']}", headers=m["headers"], timeout=10).json()
    assert endpoint["events"] == ["payment.success", "refund.processed"]
    row = page.locator(f'{tid("endpoint-row")}[data-endpoint-id="{endpoint["id"]}"]')
    expect(row.locator(tid("endpoint-url"))).to_have_text("http://127.0.0.1:9/orders-hook")
    expect(row.locator(tid("endpoint-events"))).to_have_text("payment.success, refund.processed")
    expect(row.locator(tid("endpoint-description"))).to_have_text("Orders & refunds")
    expect(row.locator(tid("endpoint-status"))).to_have_text("enabled")
    expect(row.locator(tid("first-endpoint-badge"))).to_be_visible()  # the merchant's first: the Webhooks page's URL
    expect(row.locator(tid("endpoint-created-at"))).to_have_text(LOCAL_TIME_RE)

    # Its page keeps the secret masked until it is revealed.
    row.locator(tid("manage-endpoint-link")).click()
    secret = page.locator(tid("endpoint-secret"))
    expect(secret).to_be_hidden()
    page.click(tid("reveal-secret-button"))
    expect(secret).to_be_visible()
    expect(secret).to_have_text(endpoint["secret"])


def test_rotate_an_endpoints_secret_and_the_next_delivery_verifies_with_either(page, live_api, live_worker, receiver,
                                                                              dashboard_merchant):
    m = dashboard_merchant
    rx = receiver()
    api = f"{live_api.url}/api/v1/webhooks/endpoints"
    created = requests.post(api, headers=m["headers"], json={"url": rx.url}, timeout=10)
    assert created.status_code == 201, created.text
    endpoint_id, old = created.json()["id"], created.json()["secret"]

    def api_secret():
        return requests.get(f"{api}/{endpoint_id}", headers=m["headers"], timeout=10).json()["secret"]

    sign_in(page, live_api.url, m["email"], m["password"], path=f"/login?next=/dashboard/webhooks/endpoints/{endpoint_id}")
    confirm = page.locator(tid("confirm-rotate-button"))
    expect(confirm).to_be_hidden()
    page.click(tid("rotate-secret-button"))  # opens the confirmation step; nothing is rotated yet
    expect(confirm).to_be_visible()
    assert api_secret() == old
    page.select_option(tid("rotate-overlap-select"), label="1 hour")
    confirm.click()
    expect(page.locator(tid("flash-message"))).to_contain_text("A new secret was generated. The previous one also signs "
                                                               "every delivery until")
    expect(page.locator(tid("previous-secret-expiry"))).to_be_visible()
    page.click(tid("reveal-secret-button"))
    secret = page.locator(tid("endpoint-secret"))
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    new = secret.inner_text()
    assert new != old and api_secret() == new

    # During the overlap a delivery verifies with the new secret and with the old one.
    page.goto(live_api.url + "/dashboard/webhooks")
    page.click(tid("test-webhook-button"))
    delivery = rx.wait_for(1, event="webhook.test")[0]
    headers = CaseInsensitiveDict(delivery["headers"])
    for key in (new, old):
        assert Webhook(key).verify(delivery["body"], dict(headers))["event"] == "webhook.test"
    assert headers["X-Webhook-Signature"] == webhooks.sign_hex(new, delivery["body"].decode())
    assert headers["X-Webhook-Signature-Previous"] == webhooks.sign_hex(old, delivery["body"].decode())


# ---- integration guide ----------------------------------------------------------------------------

def test_docs_snippets_verify_a_real_delivery(page, live_api, live_worker, receiver, db, tmp_path):
    rx = receiver()
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": rx.url, "id": TEST_MERCHANT_ID})
    secret = merchant_row(db)["webhook_secret"]
    sign_in(page, live_api.url)
    page.goto(live_api.url + "/dashboard/docs")
    # The secrets are masked in the code until the merchant reveals them.
    shown = page.locator(tid("api-docs")).inner_text()
    assert secret not in shown and TEST_MERCHANT["api_secret"] not in shown
    curl = page.locator(tid("code-snippet-create-order")).inner_text()
    assert f"curl -X POST {live_api.url}/api/v1/orders" in curl and "X-Api-Key: key_test_abc123" in curl
    assert "X-Api-Secret: secret_••••" in curl
    assert 'WEBHOOK_SECRET = "whsec_••••' in page.locator(tid("code-snippet-webhook-python")).inner_text()
    sdk = page.locator(tid("code-snippet-sdk")).inner_text()
    assert f'<script src="{live_api.url}/checkout.js"></script>' in sdk and "new PaymentGateway({" in sdk
    page.locator(tid("create-order-secrets-reveal")).locator(tid("reveal-secret-button")).click()
    expect(page.locator(tid("code-snippet-create-order"))).to_be_hidden()
    expect(page.locator(tid("code-snippet-create-order-revealed"))).to_contain_text(
        f"X-Api-Secret: {TEST_MERCHANT['api_secret']}")
    page.locator(tid("webhook-secrets-reveal")).locator(tid("reveal-secret-button")).click()
    expect(page.locator(tid("code-snippet-webhook"))).to_be_hidden()
    python_code = page.locator(tid("code-snippet-webhook-python-revealed")).inner_text()
    node_code = page.locator(tid("code-snippet-webhook-node-revealed")).inner_text()
    assert f'WEBHOOK_SECRET = "{secret}"' in python_code

    # The API reference is the app's OpenAPI document.
    spec = requests.get(live_api.url + "/openapi.json", timeout=10)
    assert spec.status_code == 200
    for path, item in spec.json()["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                expect(page.locator(f'{tid("api-operation")}[data-method="{method.upper()}"][data-path="{path}"]')
                       ).to_have_count(1)

    # A real delivery (signed by the worker with the seeded secret) passes the snippets' checks …
    r = requests.post(f"{live_api.url}/api/v1/webhooks/test", headers=api_headers(), timeout=10)
    assert r.status_code in (200, 202), r.text
    delivery = rx.wait_for(1, event="webhook.test")[0]
    # … and so does one signed locally with a freshly generated (standard base64) secret.
    other_secret, body = webhooks.new_secret(), b'{"id":"evt_local","event":"webhook.test","data":{}}'
    samples = [(delivery["body"], dict(CaseInsensitiveDict(delivery["headers"])), secret),
               (body, webhooks.headers_for(other_secret, "evt_local", body.decode()), other_secret)]

    ns = {"__name__": "merchant_snippet"}
    exec(compile(python_code, "webhook_snippet.py", "exec"), ns)  # noqa: S102 - the page's own example code
    client = ns["app"].test_client()
    for raw, hdrs, key in samples:
        hdrs = CaseInsensitiveDict(hdrs)
        assert ns["verify_hex_signature"](raw, hdrs["X-Webhook-Signature"], key)
        assert not ns["verify_hex_signature"](raw + b" ", hdrs["X-Webhook-Signature"], key)
        assert ns["verify_standard_webhook"](raw, hdrs, key)
        assert not ns["verify_standard_webhook"](raw.replace(b"test", b"tEst"), hdrs, key)
    hdrs = CaseInsensitiveDict(samples[0][1])
    wire = {"X-Webhook-Signature": hdrs["X-Webhook-Signature"], "Content-Type": "application/json"}
    assert client.post("/webhook", data=samples[0][0], headers=wire).status_code == 200
    assert client.post("/webhook", data=samples[0][0] + b" ", headers=wire).status_code == 401

    # The Node.js functions, run by node (the Express part needs the express package: left out).
    harness = node_code.split("// Express")[0] + """
const samples = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
console.log(JSON.stringify(samples.map((s) => {
  const body = Buffer.from(s.body, "utf8");
  const h = s.headers;
  return [verifyHexSignature(body, h["x-webhook-signature"], s.secret),
          verifyStandardWebhook(body, h, s.secret),
          verifyHexSignature(Buffer.concat([body, Buffer.from(" ")]), h["x-webhook-signature"], s.secret),
          verifyStandardWebhook(Buffer.concat([body, Buffer.from(" ")]), h, s.secret)];
})));
"""
    (tmp_path / "verify.js").write_text(harness)
    (tmp_path / "samples.json").write_text(json.dumps(
        [{"body": raw.decode(), "secret": key, "headers": {k.lower(): v for k, v in hdrs.items()}}
         for raw, hdrs, key in samples]))
    node = subprocess.run(["node", str(tmp_path / "verify.js"), str(tmp_path / "samples.json")],
                          capture_output=True, text=True, timeout=30)
    assert node.returncode == 0, node.stderr
    assert json.loads(node.stdout) == [[True, True, False, False]] * len(samples)


# ---- jobs -----------------------------------------------------------------------------------------

def test_jobs_page_shows_queue_worker_and_dead_jobs(page, live_api, live_worker, db, dashboard_merchant):
    payment = create_payment_over_http(live_api.url, TEST_MERCHANT, amount=10000)
    wait_for_status(db, "payments", payment["id"], "success")
    wait_until(lambda: db.value("SELECT count(*) FROM worker_heartbeats WHERE beat_at > now() - interval '5 s'"),
               timeout=15, message="a worker heartbeat")
    other = create_payment_over_http(live_api.url, dashboard_merchant, amount=10000)
    ids = db.values("""
        INSERT INTO jobs (kind, payload, status, attempts, last_error, created_at, next_run_at) VALUES
          ('payment.settle', jsonb_build_object('payment_id', CAST(%(mine)s AS text)), 'dead', 10, 'boom: the bank timed out', now(), now()),
          ('payment.settle', jsonb_build_object('payment_id', CAST(%(theirs)s AS text)), 'dead', 10, 'another merchant''s', now(), now()),
          ('dashboard.probe', '{}', 'pending', 0, NULL, now() - interval '2 hours', now() + interval '1 hour')
        RETURNING id
        """, {"mine": payment["id"], "theirs": other["id"]})
    try:
        sign_in(page, live_api.url, path="/login?next=/dashboard/jobs")
        expect(page.locator(tid("worker-status"))).to_have_text("running")
        expect(page.locator(tid("oldest-pending-age"))).to_have_text(re.compile(r"^2 h \d+ min$"))
        settle_row = page.locator(f'{tid("job-kind-row")}[data-kind="payment.settle"]')
        expect(settle_row.locator(tid("job-count-dead"))).to_have_text(re.compile(r"^[1-9]\d*$"))
        expect(page.locator(f'{tid("job-kind-row")}[data-kind="dashboard.probe"] {tid("job-count-pending")}')
               ).to_have_text("1")
        mine = page.locator(f'{tid("dead-job-row")}[data-job-id="{ids[0]}"]')
        expect(mine.locator(tid("dead-job-error"))).to_have_text("boom: the bank timed out")
        expect(page.locator(f'{tid("dead-job-row")}[data-job-id="{ids[1]}"]')).to_have_count(0)  # not ours
    finally:
        db.execute("DELETE FROM jobs WHERE id = ANY(%(ids)s)", {"ids": ids})


# ---- CSRF -----------------------------------------------------------------------------------------

def _token(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_form_posts_without_the_csrf_token_are_refused(live_api, db):
    s = requests.Session()
    base = live_api.url
    # Signing in needs the token too (login CSRF).
    assert s.post(f"{base}/login", data={"email": EMAIL, "password": PASSWORD}, allow_redirects=False,
                  timeout=10).status_code == 400
    r = s.post(f"{base}/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _token(s.get(f"{base}/login").text)},
               allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard"
    before = merchant_row(db)

    for path, data in [("/dashboard/webhooks", {"webhook_url": "http://127.0.0.1:9/hook"}),
                       ("/dashboard/webhooks/secret", {}), ("/dashboard/webhooks/test", {}), ("/logout", {})]:
        for token in (None, "forged-token"):
            r = s.post(base + path, data=dict(data, **({"csrf_token": token} if token else {})),
                       allow_redirects=False, timeout=10)
            assert r.status_code == 400, (path, r.status_code)
            assert "could not be accepted" in r.text
    after = merchant_row(db)
    assert (after["webhook_url"], after["webhook_secret"]) == (before["webhook_url"], before["webhook_secret"])
    assert s.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 200  # still signed in

    # The same form with its token goes through.
    token = _token(s.get(f"{base}/dashboard/webhooks", timeout=10).text)
    r = s.post(f"{base}/dashboard/webhooks", data={"webhook_url": "http://127.0.0.1:9/hook", "csrf_token": token},
               allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert merchant_row(db)["webhook_url"] == "http://127.0.0.1:9/hook"

    # The JSON API (key and secret, no cookies) is not subject to the form token.
    r = requests.post(f"{base}/api/v1/orders", json={"amount": 10000}, headers=api_headers(), timeout=10)
    assert r.status_code == 201


# ---- screenshots for the README (DASHBOARD_SCREENSHOTS=docs to refresh them) ----------------------

@pytest.mark.skipif(not os.environ.get("DASHBOARD_SCREENSHOTS"), reason="set DASHBOARD_SCREENSHOTS=<dir> to refresh")
def test_screenshots(browser, live_api, live_worker, receiver, db, dashboard_merchant):
    out = Path(os.environ["DASHBOARD_SCREENSHOTS"])
    out.mkdir(parents=True, exist_ok=True)
    m = dashboard_merchant
    db.execute("UPDATE merchants SET name = 'Chai & Co.' WHERE id = %(id)s", {"id": m["id"]})
    # Two weeks of history, written as settlement leaves it, so the chart has something to show.
    for day in range(13, 0, -1):
        for i in range((day * 7) % 5 + 2):
            order_id, pay_id = new_id("order_"), new_id("pay_")
            amount = 25_000 + ((day * 31 + i * 17) % 40) * 5_000
            status = "failed" if (day + i) % 9 == 0 else "success"
            card = (day + i) % 3 == 0
            db.execute("INSERT INTO orders (id, merchant_id, amount, status, created_at) VALUES "
                            "(%(o)s, %(m)s, %(a)s, %(s)s, now() - make_interval(days => %(d)s))", {"o": order_id, "m": m["id"], "a": amount, "d": day, "s": "paid" if status == "success" else "created"})
            db.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, "
                            "card_last4, status, error_code, created_at, updated_at) VALUES (%(p)s, %(o)s, %(m)s, %(a)s, 'INR', %(method)s, "
                            "%(vpa)s, %(net)s, %(last4)s, %(s)s, %(err)s, now() - make_interval(days => %(d)s, mins => %(i)s), "
                            "now() - make_interval(days => %(d)s))", {"p": pay_id, "o": order_id, "m": m["id"], "a": amount, "s": status, "d": day, "i": i * 37,
                        "method": "card" if card else "upi", "vpa": None if card else "asha@okbank",
                        "net": "visa" if card else None, "last4": "1111" if card else None,
                        "err": "PAYMENT_FAILED" if status == "failed" else None})
    ok, flaky = receiver(), receiver(responses=[500] * 10)
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": ok.url, "id": m["id"]})
    paid = [create_payment_over_http(live_api.url, m, amount=a, method=meth)
            for a, meth in [(49_900, "upi"), (1_25_000_00, "card"), (2_999_00, "upi")]]
    for p in paid:
        wait_for_status(db, "payments", p["id"], "success")
    requests.post(f"{live_api.url}/api/v1/payments/{paid[1]['id']}/refunds", json={"amount": 25_000_00, "reason": "returned"},
                  headers=m["headers"], timeout=10).raise_for_status()
    ok.wait_for(1, event="refund.processed")
    wait_until(lambda: not db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND status <> 'success'", {"m": m["id"]}), timeout=20, message="deliveries done")
    # Then the merchant's endpoint starts failing: the next payment's events end up failed.
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": flaky.url, "id": m["id"]})
    create_payment_over_http(live_api.url, m, amount=75_000)
    wait_until(lambda: db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND status = 'failed'", {"m": m["id"]}) == 2, timeout=40, message="two failed deliveries")

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        page.goto(live_api.url + "/login")
        page.screenshot(path=out / "dashboard-login.png")
        sign_in(page, live_api.url, m["email"], m["password"])
        shots = [("dashboard-overview.png", "/dashboard"), ("dashboard-transactions.png", "/dashboard/transactions"),
                 ("dashboard-payment.png", f"/dashboard/transactions/{paid[1]['id']}"),
                 ("dashboard-webhooks.png", "/dashboard/webhooks"), ("dashboard-docs.png", "/dashboard/docs"),
                 ("dashboard-jobs.png", "/dashboard/jobs")]
        failed = db.one("SELECT id, created_at FROM webhook_logs WHERE merchant_id = %(m)s AND status = 'failed' "
                        "LIMIT 1", {"m": m["id"]})
        shots += [("dashboard-delivery.png", f"/dashboard/webhooks/deliveries/{failed['id']}?"
                                             + urlencode({"at": failed["created_at"].isoformat()})),
                  ("dashboard-endpoints.png", "/dashboard/webhooks/endpoints")]
        for name, path in shots:
            page.goto(live_api.url + path)
            page.screenshot(path=out / name, full_page=name not in ("dashboard-docs.png",))
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(live_api.url + "/dashboard/transactions")
        page.screenshot(path=out / "dashboard-phone.png")
    finally:
        ctx.close()


# ---- deliveries, secrets and accessibility ----------------------------------------------------------

def test_a_delivery_page_filters_retry_and_resend(page, live_api, live_worker, receiver, db, dashboard_merchant):
    m = dashboard_merchant
    rx = receiver()
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": rx.url, "id": m["id"]})
    [failed] = insert_webhook_logs(db, m["id"], 1)
    db.execute("UPDATE webhook_logs SET status = 'failed', event = 'payment.failed', attempts = 5, response_code = 500 "
               "WHERE id = %(id)s", {"id": failed})
    sign_in(page, live_api.url, m["email"], m["password"], path="/login?next=/dashboard/webhooks")
    page.click(tid("test-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_contain_text("Test webhook queued")  # the POST's redirect has landed
    [sent] = rx.wait_for(1)
    log = log_by_event_id(db, CaseInsensitiveDict(sent["headers"])["webhook-id"])
    wait_for_status(db, "webhook_logs", log["id"], "success")
    page.reload()

    # The delivery's page: the body sent, the response, the attempt.
    item = page.locator(f'{tid("webhook-log-item")}[data-webhook-id="{log["id"]}"]')
    expect(item.locator(tid("retry-webhook-button"))).to_have_text("Resend")
    item.locator(tid("webhook-log-link")).click()
    expect(page).to_have_url(re.compile(rf"/dashboard/webhooks/deliveries/{log['id']}\?at="))
    assert json.loads(page.locator(tid("webhook-request-body")).inner_text()) == sent["json"]
    expect(page.locator(tid("webhook-response-code"))).to_have_text("200")
    assert json.loads(page.locator(tid("webhook-response-body")).inner_text()) == {"ok": True}
    expect(page.locator(tid("webhook-attempts"))).to_have_text("1 of 5")
    expect(page.locator(tid("webhook-last-attempt"))).to_have_text(LOCAL_TIME_RE)
    # Resend from its page: the same body again, and back on this page.
    here = page.url
    page.click(tid("retry-webhook-button"))
    expect(page.locator(tid("flash-message"))).to_have_text(f"Webhook retry scheduled ({log['id']}).")
    assert page.url == here
    again = rx.wait_for(2)[1]
    assert again["body"] == sent["body"]
    # The Resend's attempt is listed after the first one, each with its time.
    wait_until(lambda: len(log_by_event_id(db, log["event_id"])["attempted_at"]) == 2, message="second attempt recorded")
    page.reload()
    expect(page.locator(tid("webhook-attempt-time"))).to_have_count(2)
    expect(page.locator(tid("webhook-attempt-time")).nth(1)).to_have_text(LOCAL_TIME_RE)

    # The filters, and Retry keeping them.
    page.click(tid("deliveries-link"))
    page.select_option(tid("webhook-status-filter"), "failed")
    page.click(tid("webhook-filter-button"))
    expect(page).to_have_url(re.compile(r"status=failed"))
    rows = page.locator(tid("webhook-log-item"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-webhook-id", failed)
    filtered = page.url
    rows.first.locator(tid("retry-webhook-button")).click()
    expect(page.locator(tid("flash-message"))).to_have_text(f"Webhook retry scheduled ({failed}).")
    assert page.url == filtered
    page.select_option(tid("webhook-status-filter"), label="All")
    page.select_option(tid("webhook-event-filter"), "webhook.test")
    page.click(tid("webhook-filter-button"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-webhook-id", str(log["id"]))
    page.click(tid("webhook-filter-clear"))
    expect(rows).to_have_count(2)


def test_the_api_secret_is_masked_until_revealed(page, live_api, dashboard_merchant):
    m = dashboard_merchant
    sign_in(page, live_api.url, m["email"], m["password"])
    secret = page.locator(tid("api-secret"))
    expect(secret).to_be_hidden()
    assert m["api_secret"] not in page.inner_text("body")  # what the screen shows
    page.click(tid("reveal-secret-button"))
    expect(secret).to_be_visible()
    expect(secret).to_have_text(m["api_secret"])


def test_every_dashboard_page_passes_axe_on_a_desktop_and_a_phone(browser, live_api, db, dashboard_merchant):
    m = dashboard_merchant
    [pay_id] = insert_payments(db, m["id"], [(123456, "success", "upi")])
    insert_payments(db, m["id"], [(70000, "failed", "card")])
    [log_id] = insert_webhook_logs(db, m["id"], 1)
    endpoint = requests.post(f"{live_api.url}/api/v1/webhooks/endpoints", headers=m["headers"], timeout=10,
                             json={"url": "http://127.0.0.1:9/hook", "description": "orders"})
    assert endpoint.status_code in (200, 201), endpoint.text
    pages = ["/dashboard", "/dashboard/transactions", f"/dashboard/transactions/{pay_id}", "/dashboard/webhooks",
             f"/dashboard/webhooks/deliveries/{log_id}", "/dashboard/webhooks/endpoints",
             f"/dashboard/webhooks/endpoints/{endpoint.json()['id']}", "/dashboard/docs", "/dashboard/jobs",
             "/dashboard/webhooks/deliveries/00000000-0000-4000-8000-000000000000"]  # the not-found page
    found, wide = {}, {}
    for width, height in [(1280, 800), (390, 844)]:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        try:
            page.goto(live_api.url + "/login")
            found[f"{width} /login"] = violations(page, "moderate")
            sign_in(page, live_api.url, m["email"], m["password"])
            for path in pages:
                page.goto(live_api.url + path)
                expect(page.locator(tid("test-mode-banner"))).to_be_visible()
                found[f"{width} {path}"] = violations(page, "moderate")
                wide[f"{width} {path}"] = sideways(page)
            # The parts that only show once used: the refund form open, the list filtered (its Clear
            # link, the CSV link and a date the page refuses), the guide's secrets revealed.
            page.goto(f"{live_api.url}/dashboard/transactions/{pay_id}")
            page.click(tid("refund-button"))
            expect(page.locator(tid("refund-confirm-button"))).to_be_visible()
            found[f"{width} refund form"] = violations(page, "moderate")
            page.goto(live_api.url + "/dashboard/transactions?q=shopper%40okbank&status=success&from=2026-01-01&to=2099-12-31")
            expect(page.locator(tid("clear-filters"))).to_be_visible()
            expect(page.locator(tid("export-csv-link"))).to_be_visible()
            expect(page.locator(tid("transaction-row"))).to_have_count(1)
            found[f"{width} filtered transactions"] = violations(page, "moderate")
            page.goto(live_api.url + "/dashboard/transactions?status=failed&from=not-a-date")
            expect(page.locator(tid("filter-error"))).to_be_visible()
            found[f"{width} refused filter"] = violations(page, "moderate")
            page.goto(live_api.url + "/dashboard/docs")
            for button in page.locator(tid("reveal-secret-button")).all():
                button.click()
            found[f"{width} revealed guide"] = violations(page, "moderate")
            # Every operation of the API reference opened, as a reader looking one up would.
            page.locator(tid("api-operation")).evaluate_all("ops => ops.forEach(op => { op.open = true; })")
            found[f"{width} opened API reference"] = violations(page, "moderate")
            wide[f"{width} opened API reference"] = sideways(page)
            if width == 390:
                # A phone: a compact header, and each payment's Amount and Status on screen.
                page.goto(live_api.url + "/dashboard/transactions")
                assert page.locator(".topbar").bounding_box()["height"] < 120
                row = page.locator(tid("transaction-row")).first
                for name in ("amount", "status"):
                    box = row.locator(tid(name)).bounding_box()
                    assert box and 0 <= box["x"] and box["x"] + box["width"] <= width, (name, box)
        finally:
            ctx.close()
    assert {where: v for where, v in found.items() if v} == {}
    assert {where: px for where, px in wide.items() if px > 0} == {}  # nothing to pan sideways, on a phone either


def test_a_keyboard_user_skips_to_the_content_and_the_favicon_loads(page, live_api, dashboard_merchant):
    m = dashboard_merchant
    sign_in(page, live_api.url, m["email"], m["password"])
    expect(page.locator(tid("dashboard"))).to_be_visible()  # the overview loaded: a Tab before it lands on the login page
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    icon = page.request.get(live_api.url + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")


# ---- payment actions, search, dates and export ------------------------------------------------------

def settled_payment(db, live_api, merchant, amount, method="upi"):
    payment = create_payment_over_http(live_api.url, merchant, amount=amount, method=method)
    wait_for_status(db, "payments", payment["id"], "success")
    return payment


def test_a_refund_from_the_dashboard_is_what_the_api_then_shows(page, live_api, live_worker, db, dashboard_merchant):
    m = dashboard_merchant
    payment = settled_payment(db, live_api, m, 12345)
    sign_in(page, live_api.url, m["email"], m["password"])
    page.goto(f"{live_api.url}/dashboard/transactions/{payment['id']}")
    amount = page.locator(tid("refund-amount-input"))
    expect(amount).to_be_hidden()  # the Refund button opens the form
    page.click(tid("refund-button"))
    expect(amount).to_have_value("123.45")
    assert violations(page, context=tid("payment-actions")) == []  # the actions added here (the page: axe's own test)
    amount.fill("23.45")
    page.click(tid("refund-confirm-button"))
    rows = page.locator(tid("refund-row"))
    expect(rows).to_have_count(1)
    expect(rows.locator(tid("refund-amount"))).to_have_text("₹23.45")
    expect(page.locator(tid("refunded-amount"))).to_have_text("₹23.45")

    # Too much is a message on the page, and nothing changes.
    page.click(tid("refund-button"))
    expect(amount).to_have_value("100.00")
    amount.fill("100.01")
    page.click(tid("refund-confirm-button"))
    expect(page.locator(tid("refund-error"))).to_have_text("Refund amount exceeds available amount.")
    assert violations(page, context=tid("payment-actions")) == []
    expect(rows).to_have_count(1)
    amount.fill("100.00")  # the rest
    page.click(tid("refund-confirm-button"))
    expect(rows).to_have_count(2)
    expect(page.locator(tid("refund-button"))).to_have_count(0)

    listed = requests.get(f"{live_api.url}/api/v1/payments/{payment['id']}/refunds",
                          headers=api_headers(m["api_key"], m["api_secret"]), timeout=10)
    assert listed.status_code == 200
    assert sorted(r["amount"] for r in listed.json()["data"]) == [2345, 10000]
    page.goto(live_api.url + "/dashboard/transactions")
    row = page.locator(f'{tid("transaction-row")}[data-payment-id="{payment["id"]}"]')
    expect(row.locator(tid("refund-state"))).to_have_text("Refunded")
    expect(row.locator(tid("customer"))).to_have_text("shopper@okbank")


def test_capture_from_the_dashboard(page, live_api, live_worker, db, dashboard_merchant):
    m = dashboard_merchant
    payment = settled_payment(db, live_api, m, 50000, method="card")
    sign_in(page, live_api.url, m["email"], m["password"])
    page.goto(f"{live_api.url}/dashboard/transactions/{payment['id']}")
    expect(page.locator(tid("captured"))).to_have_text("no")
    page.click(tid("capture-button"))
    expect(page.locator(tid("captured"))).to_have_text("yes")
    expect(page.locator(tid("capture-button"))).to_have_count(0)
    got = requests.get(f"{live_api.url}/api/v1/payments/{payment['id']}",
                       headers=api_headers(m["api_key"], m["api_secret"]), timeout=10).json()
    assert got["captured"] is True


def listed_ids(page):
    """The payment ids of the transactions list, every page, by its Older link."""
    ids = []
    while True:
        page.locator(tid("transactions-table")).wait_for()
        ids += page.locator(tid("transaction-row")).evaluate_all("rows => rows.map(r => r.dataset.paymentId)")
        older = page.locator(tid("next-page"))
        if not older.count():
            return ids
        older.click()


def test_search_date_range_clearing_and_a_csv_of_exactly_the_filtered_rows(page, live_api, db, dashboard_merchant):
    m = dashboard_merchant
    day = datetime(2026, 3, 10, tzinfo=timezone.utc)
    # 10 March in Asia/Kolkata runs from 9 March 18:30 UTC to 10 March 18:30 UTC.
    inside = [insert_payment(db, m["id"], day + timedelta(hours=-5, minutes=i), status="failed" if i % 4 == 0 else "success",
                             error="declined" if i % 4 == 0 else None) for i in range(25)]
    last_minute = insert_payment(db, m["id"], datetime(2026, 3, 10, 18, 29, 59, tzinfo=timezone.utc),
                                 method="card", last4="4242", receipt="=INV-1")
    next_day = insert_payment(db, m["id"], datetime(2026, 3, 10, 18, 30, tzinfo=timezone.utc), vpa="asha@okbank")
    sign_in(page, live_api.url, m["email"], m["password"])
    page.goto(live_api.url + "/dashboard/transactions")

    # Search, by shape: last 4, VPA, receipt.
    for q, expected in [("4242", [last_minute]), ("ASHA@okbank", [next_day]), ("=INV-1", [last_minute])]:
        page.fill(tid("search-input"), q)
        page.click(tid("filter-button"))
        expect(page.locator(tid("page-info"))).to_have_text(f"{len(expected)} matching payment")
        assert listed_ids(page) == expected
    assert violations(page, context=tid("transactions-filter")) == []
    page.click(tid("clear-filters"))
    expect(page.locator(tid("search-input"))).to_have_value("")
    expect(page.locator(tid("page-info"))).to_have_text("1–20 of 27")

    # One day in the merchant's time zone: 23:59:59 IST is in it, 00:00 IST the next day is not.
    page.fill(tid("from-date"), "2026-03-10")
    page.fill(tid("to-date"), "2026-03-10")
    page.select_option(tid("status-filter"), "success")
    page.click(tid("filter-button"))
    expect(page.locator(tid("page-info"))).to_have_text("1–19 of 19")
    shown = listed_ids(page)
    assert shown[0] == last_minute and next_day not in shown
    assert shown == [last_minute] + [p for i, p in reversed(list(enumerate(inside))) if i % 4][:18]
    last = page.locator(f'{tid("transaction-row")}[data-payment-id="{last_minute}"] time')
    page.goto(live_api.url + "/dashboard/transactions?status=success&from=2026-03-10&to=2026-03-10")
    expect(last).to_have_text("2026-03-10 23:59:59 IST")
    expect(last).to_have_attribute("title", "2026-03-10T18:29:59Z (UTC)")

    with page.expect_download() as download:
        page.click(tid("export-csv-link"))
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["payment_id"] for r in rows] == shown
    assert rows[0]["receipt"] == "'=INV-1" and rows[0]["created_at_local"] == "2026-03-10T23:59:59+05:30"
    assert download.value.suggested_filename.startswith("payments-")
