"""The checkout page and the checkout.js SDK in real Chromium, against the real API under
gunicorn, a real worker.py and a merchant page served from a different origin.

Order matters in this module: the tests that need payments to FAIL run their own worker with
TEST_PAYMENT_SUCCESS=false and come before the first test that starts `live_worker` (module scoped,
payments succeed), so no succeeding worker can claim their settlement jobs.
"""
import hashlib
import hmac
import os
import re
import shutil
import threading
from datetime import date
from pathlib import Path
from urllib.parse import urlencode

import pytest
import razorpay
import requests
from playwright.sync_api import expect
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from axe import violations
from helpers import TEST_MERCHANT, Api, create_order_over_http, free_port, wait_until

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
CARD_NUMBER = "4111111111111111"
FUTURE_EXPIRY = f"12/{(date.today().year + 3) % 100:02d}"
PAY_ID = re.compile(r"^pay_[A-Za-z0-9]{16}$")


def tid(name):
    return f'[data-test-id="{name}"]'


# ---- the gateway ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_api(process_env, log_dir, app):
    """This module's own running gateway, so its failing-worker tests share it with nobody."""
    api = Api(process_env, log_dir, workers=2, threads=8)
    yield api
    api.stop()


# ---- a merchant's shop on another origin --------------------------------------------------------

SHOP_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Merchant shop</title></head>
<body>
  <main>
    <h1>Shop</h1>
    <button id="pay" type="button">Pay now</button>
    <ul id="events"></ul>
  </main>
  <script src="GATEWAY/checkout.js"></script>
  <script src="/shop.js"></script>
</body></html>
"""

# The merchant's own script: records every callback, and every message the page receives at all
# (so a test can tell "the forged message arrived and was ignored" from "it never arrived").
SHOP_JS = """
window.events = [];
window.received = [];
window.addEventListener("message", function (e) { window.received.push({origin: e.origin, data: e.data}); });
function record(kind, data) {
  window.events.push({kind: kind, data: data || null});
  var li = document.createElement("li");
  li.setAttribute("data-kind", kind);
  li.textContent = kind + " " + JSON.stringify(data || null);
  document.getElementById("events").appendChild(li);
}
var params = new URLSearchParams(location.search);
document.getElementById("pay").addEventListener("click", function () {
  var options = {
    key: params.get("key"),
    orderId: params.get("order_id"),
    onSuccess: function (data) { record("success", data); },
    onFailure: function (data) { record("failure", data); },
    onClose: function (data) { record("close", data); }
  };
  if (params.has("load_timeout")) options.loadTimeout = Number(params.get("load_timeout"));
  if (params.has("name")) options.name = params.get("name");
  if (params.has("description")) options.description = params.get("description");
  if (params.has("vpa")) options.prefill = {vpa: params.get("vpa")};
  // A merchant's own bug: its onSuccess records the success, then throws.
  if (params.has("throw_on_success")) {
    options.onSuccess = function (data) { record("success", data); throw new Error("the shop's onSuccess broke"); };
  }
  window.gateway = new PaymentGateway(options);
  window.gateway.open();
});
"""


class MerchantSite:
    """A real HTTP server on its own port (another origin than the gateway) with a strict CSP of
    its own: the SDK must work without 'unsafe-inline' on the merchant's page."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.posts = []  # form POSTs to /callback (the hosted checkout's callback_url)
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                       daemon=True)  # close() waits for a poll (the default is 0.5 s)
        self.thread.start()

    @Request.application
    def _app(self, request):
        if request.path == "/callback" and request.method == "POST":
            self.posts.append(request.form.to_dict())
            return Response("<!doctype html><title>Order confirmed</title><h1>Thank you</h1>", mimetype="text/html")
        if request.path == "/shop.js":
            return Response(SHOP_JS, mimetype="text/javascript")
        resp = Response(SHOP_HTML.replace("GATEWAY", self.gateway), mimetype="text/html")
        # connect-src: the SDK follows a payment itself once its modal is closed (docs/sdk.md).
        resp.headers["Content-Security-Policy"] = (f"default-src 'self'; script-src 'self' {self.gateway}; "
                                                   f"frame-src {self.gateway}; connect-src 'self' {self.gateway}; "
                                                   "style-src 'self'")
        return resp

    def url(self, order_id, key, **options):
        return f"{self.origin}/?" + urlencode(dict(order_id=order_id, key=key, **options))

    def close(self):
        self.server.shutdown()


@pytest.fixture
def merchant_site():
    made = []

    def make(gateway):
        site = MerchantSite(gateway)
        made.append(site)
        return site

    yield make
    for site in made:
        site.close()


# ---- helpers ------------------------------------------------------------------------------------

def payments_of(db, order_id):
    return db.all("SELECT id, method, status, vpa, card_network, card_last4, error_code, error_description "
                  "FROM payments WHERE order_id = %(o)s ORDER BY created_at", {"o": order_id})


def watch(page):
    """Collect console errors, page errors and every request URL of a page."""
    seen = {"errors": [], "urls": [], "posts": []}
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))

    def on_request(r):
        seen["urls"].append(r.url)
        if r.method == "POST":
            seen["posts"].append(r.url)

    page.on("request", on_request)
    return seen


def pay_upi(scope, vpa="asha@okbank"):
    scope.locator(tid("method-upi")).click()
    expect(scope.locator(tid("upi-form"))).to_be_visible()
    scope.locator(tid("vpa-input")).fill(vpa)
    scope.locator(tid("pay-button")).click()


def fill_card(scope, number=CARD_NUMBER, expiry=FUTURE_EXPIRY, cvv="123", name="Asha Rao"):
    scope.locator(tid("method-card")).click()
    expect(scope.locator(tid("card-form"))).to_be_visible()
    scope.locator(tid("card-number-input")).fill(number)
    scope.locator(tid("expiry-input")).fill(expiry)
    scope.locator(tid("cvv-input")).fill(cvv)
    scope.locator(tid("cardholder-name-input")).fill(name)


def stops_following(page, gateway="window.gateway"):
    """Wait until the SDK no longer polls a closed modal's payment. Evaluated from outside the page:
    the merchant's CSP forbids the eval that page.wait_for_function would need."""
    wait_until(lambda: page.evaluate(f"!{gateway}._isFollowing()"), timeout=15, message="the SDK to stop polling")


def settle_in_db(db, payment_id, status):
    """Settle a payment in the database as the worker would (the order is paid on a success)."""
    error = ("PAYMENT_FAILED", "Payment declined by the bank") if status == "failed" else (None, None)
    db.execute("UPDATE payments SET status = %(s)s, error_code = %(c)s, error_description = %(d)s WHERE id = %(id)s",
               {"s": status, "c": error[0], "d": error[1], "id": payment_id})
    if status == "success":
        db.execute("UPDATE orders SET status = 'paid' WHERE id = (SELECT order_id FROM payments WHERE id = %(id)s)",
                   {"id": payment_id})


def expect_signature(merchant, data):
    """The success signature verifies with razorpay's own utility and with a plain HMAC."""
    client = razorpay.Client(auth=(merchant["api_key"], merchant["api_secret"]))
    assert client.utility.verify_payment_signature({
        "razorpay_order_id": data["orderId"], "razorpay_payment_id": data["paymentId"],
        "razorpay_signature": data["signature"]})
    expected = hmac.new(merchant["api_secret"].encode(), f"{data['orderId']}|{data['paymentId']}".encode(),
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, data["signature"])


# ---- headers, error pages (no worker needed) ----------------------------------------------------

def test_checkout_security_headers_and_sdk_served(live_api, make_merchant):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    r = requests.get(f"{live_api.url}/checkout", params={"order_id": order_id}, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in r.text  # no inline script: the CSP can stay strict

    embedded = requests.get(f"{live_api.url}/checkout", timeout=10, params={
        "order_id": order_id, "embedded": "true", "parent_origin": "http://shop.example:8080"})
    assert embedded.status_code == 200
    assert embedded.headers["Content-Security-Policy"].endswith("frame-ancestors http://shop.example:8080")
    assert 'data-parent-origin="http://shop.example:8080"' in embedded.text

    sdk = requests.get(f"{live_api.url}/checkout.js", timeout=10)
    assert sdk.status_code == 200
    assert sdk.headers["Content-Type"].startswith("text/javascript")
    assert "max-age=" in sdk.headers["Cache-Control"] and sdk.headers["X-Content-Type-Options"] == "nosniff"
    assert "window.PaymentGateway" in sdk.text
    # The page loads its own script, a file named apart from the SDK.
    assert 'src="/static/checkout-page.js"' in r.text
    page_js = requests.get(f"{live_api.url}/static/checkout-page.js", timeout=10)
    assert page_js.status_code == 200 and page_js.headers["X-Content-Type-Options"] == "nosniff"
    assert "window.PaymentGateway" not in page_js.text


@pytest.mark.parametrize("origin", ["http://shop.example/path", "javascript:alert(1)", "null", "*",
                                    "http://a.example; script-src *", "ftp://shop.example", "http://user@shop.example"])
def test_embedded_checkout_refuses_a_malformed_parent_origin(live_api, make_merchant, origin):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    r = requests.get(f"{live_api.url}/checkout", timeout=10,
                     params={"order_id": order_id, "embedded": "true", "parent_origin": origin})
    assert r.status_code == 400 and "parent_origin" in r.text
    assert r.headers["Content-Security-Policy"].endswith("frame-ancestors *")  # the setting, not the value


def test_unknown_order_is_a_clear_page(page, live_api):
    resp = page.goto(f"{live_api.url}/checkout?order_id=order_doesnotexist00")
    assert resp.status == 404 and resp.headers["content-type"].startswith("text/html")
    expect(page.locator(tid("error-message"))).to_contain_text("could not find this order")
    expect(page.locator(tid("pay-button"))).to_have_count(0)


def test_paid_order_is_a_clear_page(page, live_api, make_merchant, db):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    db.execute("UPDATE orders SET status = 'paid' WHERE id = %(id)s", {"id": order_id})
    resp = page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    assert resp.status == 409
    expect(page.locator(tid("error-message"))).to_contain_text("already been paid")
    expect(page.locator(tid("pay-button"))).to_have_count(0)


def test_key_of_another_merchant_is_refused(page, live_api, make_merchant):
    owner, other = make_merchant(), make_merchant()
    order_id = create_order_over_http(live_api.url, owner)["id"]
    resp = page.goto(f"{live_api.url}/checkout?order_id={order_id}&key={other['api_key']}")
    assert resp.status == 403
    expect(page.locator(tid("error-message"))).to_contain_text("different merchant")
    expect(page.locator(tid("order-amount"))).to_have_count(0)
    # The owner's own key opens it.
    resp = page.goto(f"{live_api.url}/checkout?order_id={order_id}&key={owner['api_key']}")
    assert resp.status == 200
    expect(page.locator(tid("order-amount"))).to_have_text("₹500.00")


def test_status_endpoint_signs_only_a_successful_payment(live_api, make_merchant, db):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    r = requests.post(f"{live_api.url}/api/v1/payments/public", timeout=10,
                      json={"order_id": order_id, "method": "upi", "vpa": "asha@okbank"})
    assert r.status_code == 201
    pay_id = r.json()["id"]
    url = f"{live_api.url}/checkout/orders/{order_id}/payments/{pay_id}"
    assert requests.get(url, timeout=10).json() == {"paymentId": pay_id, "orderId": order_id, "status": "pending"}
    # The payment id alone is not enough: the old single-id view is gone.
    assert requests.get(f"{live_api.url}/checkout/payments/{pay_id}/result", timeout=10).status_code == 404
    settle_in_db(db, pay_id, "failed")
    assert requests.get(url, timeout=10).json() == {
        "paymentId": pay_id, "orderId": order_id, "status": "failed", "orderPaid": False,
        "error": {"code": "PAYMENT_FAILED", "description": "Payment declined by the bank"}}
    settle_in_db(db, pay_id, "success")
    body = requests.get(url, timeout=10).json()
    assert body["paymentId"] == pay_id and body["orderId"] == order_id and body["status"] == "success"
    assert set(body) == {"paymentId", "orderId", "status", "signature"}  # nothing of the merchant
    expect_signature(merchant, body)


# ---- client-side checks: caught before anything is sent -----------------------------------------

def test_invalid_vpa_is_caught_before_submit(page, live_api, make_merchant, db):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    seen = watch(page)
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    for bad in ["not-a-vpa", "asha@ok-bank", "@okbank", "asha@"]:
        pay_upi(page, bad)
        expect(page.locator("#vpa-error")).to_be_visible()
        expect(page.locator("#vpa-error")).to_contain_text("valid UPI ID")
        expect(page.locator(tid("vpa-input"))).to_have_attribute("aria-invalid", "true")
        expect(page.locator(tid("vpa-input"))).to_be_focused()
    expect(page.locator(tid("processing-state"))).to_be_hidden()
    assert seen["posts"] == []
    assert payments_of(db, order_id) == []


@pytest.mark.parametrize("card,field,message", [
    ({"number": "1234567890123456"}, "#card-number-error", "not valid"),          # fails Luhn
    ({"number": "411111111111"}, "#card-number-error", "13 to 19 digits"),        # 12 digits
    ({"number": "4111 abcd"}, "#card-number-error", "13 to 19 digits"),  # letters never get in
    ({"expiry": "01/20"}, "#expiry-error", "expired"),
    ({"expiry": "13/30"}, "#expiry-error", "MM/YY"),
    ({"expiry": "12/3"}, "#expiry-error", "MM/YY"),
    ({"cvv": "12"}, "#cvv-error", "3 digits"),
    ({"number": "378282246310005", "cvv": "123"}, "#cvv-error", "American Express CVV is the 4 digits"),
])
def test_invalid_card_is_caught_before_submit(page, live_api, make_merchant, db, card, field, message):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    seen = watch(page)
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    fill_card(page, **card)
    page.locator(tid("pay-button")).click()
    expect(page.locator(field)).to_be_visible()
    expect(page.locator(field)).to_contain_text(message)
    expect(page.locator(tid("card-form"))).to_be_visible()
    expect(page.locator(tid("processing-state"))).to_be_hidden()
    assert seen["posts"] == []
    assert payments_of(db, order_id) == []


# ---- failing payments (their own API and worker; before live_worker starts) ---------------------

@pytest.fixture
def failing_gateway(live_api, start_worker):
    """The gateway with a worker whose every payment fails. The worker alone decides the outcome
    (the API only accepts payments), so the shared API serves and only the worker is special."""
    start_worker(TEST_PAYMENT_SUCCESS="false")
    return live_api


def test_failed_payment_shows_error_then_retry_returns_to_the_form(page, failing_gateway, make_merchant, db):
    order_id = create_order_over_http(failing_gateway.url, make_merchant())["id"]
    page.goto(f"{failing_gateway.url}/checkout?order_id={order_id}")
    pay_upi(page)
    expect(page.locator(tid("processing-state"))).to_be_visible()
    expect(page.locator(tid("processing-message"))).to_contain_text("Processing")
    expect(page.locator(tid("error-state"))).to_be_visible()
    expect(page.locator(tid("error-message"))).to_contain_text("declined")
    expect(page.locator(tid("success-state"))).to_be_hidden()
    expect(page.locator(tid("error-state")).locator("h1")).to_have_text("Payment failed")
    assert violations(page, "minor") == []
    [payment] = payments_of(db, order_id)
    assert payment["status"] == "failed" and payment["error_code"] == "PAYMENT_FAILED"

    page.locator(tid("retry-button")).click()
    expect(page.locator(tid("error-state"))).to_be_hidden()
    expect(page.locator(tid("upi-form"))).to_be_visible()
    expect(page.locator(tid("pay-button"))).to_be_enabled()
    # The shopper can try again (with a card this time); it is a new payment of the same order.
    fill_card(page)
    page.locator(tid("pay-button")).click()
    expect(page.locator(tid("error-state"))).to_be_visible()
    assert [p["method"] for p in payments_of(db, order_id)] == ["upi", "card"]


def test_sdk_reports_a_failure_and_stays_open(page, failing_gateway, make_merchant, merchant_site, db):
    merchant = make_merchant()
    order_id = create_order_over_http(failing_gateway.url, merchant)["id"]
    site = merchant_site(failing_gateway.url)
    page.goto(site.url(order_id, merchant["api_key"]))
    page.locator("#pay").click()
    frame = page.frame_locator(tid("payment-iframe"))
    pay_upi(frame)
    expect(page.locator('#events li[data-kind="failure"]')).to_have_count(1)
    expect(page.locator(tid("payment-modal"))).to_be_visible()
    expect(frame.locator(tid("retry-button"))).to_be_visible()
    [event] = page.evaluate("window.events")
    [payment] = payments_of(db, order_id)
    # onFailure says why, in the payment's own error code and description.
    assert event["data"] == {"paymentId": payment["id"], "orderId": order_id, "status": "failed",
                             "error": {"code": "PAYMENT_FAILED", "description": payment["error_description"]}}
    assert payment["error_description"]


# ---- the modal, card entry, trust: no payment settles here (no worker runs yet) -----------------

def open_sdk(page, site, order_id, merchant, **options):
    """The merchant page with the SDK's modal open and its checkout loaded; (frame locator, Frame)."""
    page.goto(site.url(order_id, merchant["api_key"], **options))
    page.locator("#pay").click()
    frame = page.frame_locator(tid("payment-iframe"))
    expect(frame.locator(tid("checkout-container"))).to_be_visible()
    return frame, page.locator(tid("payment-iframe")).element_handle().content_frame()


def sdk_payment_processing(page, api, make_merchant, merchant_site):
    """A merchant page on another origin whose SDK modal shows a UPI payment processing (no worker
    settles it yet); (merchant, order id, frame locator)."""
    merchant = make_merchant()
    order_id = create_order_over_http(api.url, merchant)["id"]
    frame, _ = open_sdk(page, merchant_site(api.url), order_id, merchant)
    pay_upi(frame)
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    return merchant, order_id, frame


def sdk_holding_payments(page, api, make_merchant, merchant_site, hold=lambda held: True):
    """A merchant page with the SDK's modal open whose payment requests are held on their way (those
    `hold` picks, given the held ones so far; the rest go through); (merchant, order id, frame, held routes)."""
    merchant = make_merchant()
    order_id = create_order_over_http(api.url, merchant)["id"]
    frame, _ = open_sdk(page, merchant_site(api.url), order_id, merchant)
    held = []
    page.route("**/api/v1/payments/public",
               lambda route: held.append(route) if hold(held) else route.continue_())
    return merchant, order_id, frame, held


def pay_and_close_while_sending(page, frame, held, close=lambda page: page.locator(tid("close-modal-button")).click()):
    """The shopper pays and closes the modal before the gateway answers: a payment is in flight, so
    the SDK asks first, and "Close anyway" takes the modal off the page."""
    before = len(held)
    pay_upi(frame)
    wait_until(lambda: (page.evaluate("1"), len(held) > before)[1], message="the payment request")
    close(page)
    expect(page.locator(tid("confirm-close-dialog"))).to_be_visible()
    page.locator(tid("confirm-close-button")).click()
    expect(page.locator(tid("payment-modal"))).to_have_count(0)


def the_held_payment_is_made_and_reported(page, db, merchant, order_id, route):
    """The held request `route` goes through after its modal closed with no answer (one onClose
    already came, with none): the second onClose carries the payment made, and its success still
    arrives, signed, with no iframe left behind."""
    route.fulfill(response=route.fetch())
    [payment] = payments_of(db, order_id)
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(2)
    settle_in_db(db, payment["id"], "success")
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    stops_following(page)
    events = page.evaluate("window.events")
    assert events[:2] == [{"kind": "close", "data": None},
                          {"kind": "close", "data": {"paymentId": payment["id"], "orderId": order_id,
                                                     "status": "pending"}}]
    assert [e["kind"] for e in events] == ["close", "close", "success"]
    expect_signature(merchant, events[2]["data"])
    assert page.evaluate("document.querySelectorAll('iframe').length") == 0  # nothing left behind


def test_closing_while_processing_asks_first_and_the_success_still_arrives(
        page, live_api, start_worker, make_merchant, merchant_site, db):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    seen = watch(page)
    frame, iframe = open_sdk(page, site, order_id, merchant)
    pay_upi(frame)
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    assert violations(iframe, "minor") == []
    modal, dialog = page.locator(tid("payment-modal")), page.locator(tid("confirm-close-dialog"))

    # ×: the shopper is asked, and keeping the window changes nothing.
    page.locator(tid("close-modal-button")).click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("still processing")
    expect(page.locator(tid("cancel-close-button"))).to_be_focused()
    assert violations(page, "minor") == []
    for key, name in [("Tab", "confirm-close-button"), ("Tab", "cancel-close-button"),
                      ("Shift+Tab", "confirm-close-button")]:  # only the question can be reached
        page.keyboard.press(key)
        expect(page.locator(tid(name))).to_be_focused()
    page.locator(tid("cancel-close-button")).click()
    expect(dialog).to_have_count(0)
    expect(modal).to_be_visible()
    # Escape inside the checkout asks too; Escape again answers "keep waiting".
    frame.locator(tid("processing-message")).press("Escape")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(modal).to_be_visible()
    assert page.evaluate("window.events") == []

    # Escape on the merchant page, then "close anyway": onClose carries the payment.
    page.keyboard.press("Escape")
    page.locator(tid("confirm-close-button")).click()
    expect(modal).to_have_count(0)
    [payment] = payments_of(db, order_id)
    assert payment["status"] in ("pending", "processing")
    [closed] = page.evaluate("window.events")
    assert closed["kind"] == "close"
    assert closed["data"]["paymentId"] == payment["id"] and closed["data"]["orderId"] == order_id
    assert closed["data"]["status"] in ("pending", "processing")

    # The payment settles after the modal is gone: the SDK, polling on its own, reports it once.
    start_worker()
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    stops_following(page)  # it stops asking once it has the answer
    events = page.evaluate("window.events")
    assert [e["kind"] for e in events] == ["close", "success"]
    assert events[1]["data"]["paymentId"] == payment["id"] and events[1]["data"]["status"] == "success"
    expect_signature(merchant, events[1]["data"])
    assert seen["errors"] == []  # the cross-origin polling passed both pages' policies


def test_closing_while_processing_still_reports_a_failure_with_its_reason(
        page, live_api, start_worker, make_merchant, merchant_site, db):
    merchant, order_id, frame = sdk_payment_processing(page, live_api, make_merchant, merchant_site)
    frame.locator(tid("processing-message")).press("Escape")
    page.locator(tid("confirm-close-button")).click()
    expect(page.locator(tid("payment-modal"))).to_have_count(0)

    start_worker(TEST_PAYMENT_SUCCESS="false")
    expect(page.locator('#events li[data-kind="failure"]')).to_have_count(1)
    stops_following(page)
    events = page.evaluate("window.events")
    [payment] = payments_of(db, order_id)
    assert [e["kind"] for e in events] == ["close", "failure"]
    assert events[1]["data"] == {"paymentId": payment["id"], "orderId": order_id, "status": "failed",
                                 "error": {"code": "PAYMENT_FAILED", "description": payment["error_description"]}}


def test_a_payment_that_settles_while_the_close_question_is_open_is_reported_once(
        page, live_api, start_worker, make_merchant, merchant_site, db):
    merchant, order_id, frame = sdk_payment_processing(page, live_api, make_merchant, merchant_site)
    page.locator(tid("close-modal-button")).click()
    expect(page.locator(tid("confirm-close-dialog"))).to_be_visible()

    # 1. It fails while the question is asked: the out-of-date question goes, the failure stays.
    [payment] = payments_of(db, order_id)
    settle_in_db(db, payment["id"], "failed")
    expect(page.locator('#events li[data-kind="failure"]')).to_have_count(1)
    expect(page.locator(tid("confirm-close-dialog"))).to_have_count(0)
    expect(frame.locator(tid("error-state"))).to_be_visible()

    # 2. The retry succeeds while the question is asked: onSuccess once, then the modal closes.
    frame.locator(tid("retry-button")).click()
    pay_upi(frame)
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    page.locator(tid("close-modal-button")).click()
    expect(page.locator(tid("confirm-close-dialog"))).to_be_visible()
    start_worker()
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    events = page.evaluate("window.events")
    assert [e["kind"] for e in events] == ["failure", "success", "close"]
    assert events[2]["data"]["status"] == "success"  # onClose: the payment, settled
    assert not page.evaluate("window.gateway._isFollowing()")  # settled before it closed: nothing to follow


def test_close_confirmed_as_the_payment_succeeds_reports_it_once(page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame = sdk_payment_processing(page, live_api, make_merchant, merchant_site)
    page.locator(tid("close-modal-button")).click()
    [payment] = payments_of(db, order_id)
    # The success lands and "Close anyway" is pressed at once, twice over: whichever the SDK hears
    # first (the checkout's message or its own polling), the merchant hears of the success once.
    settle_in_db(db, payment["id"], "success")
    page.evaluate("""() => { const b = document.querySelector('[data-test-id=confirm-close-button]');
                            b.click(); b.click(); window.gateway.close(); }""")
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    stops_following(page)
    events = page.evaluate("window.events")
    assert sorted(e["kind"] for e in events) == ["close", "success"]
    [success] = [e["data"] for e in events if e["kind"] == "success"]
    assert success["paymentId"] == payment["id"]
    expect_signature(merchant, success)


def test_closing_while_the_payment_is_being_sent_still_reports_it(page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame, held = sdk_holding_payments(page, live_api, make_merchant, merchant_site)

    # 1. The request fails: onClose waits for the checkout to know, then says there is no payment.
    pay_and_close_while_sending(page, frame, held)
    route = held.pop()
    assert page.evaluate("window.events") == []
    route.abort()
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)
    assert page.evaluate("window.events") == [{"kind": "close", "data": None}]

    # 2. The gateway makes the payment after the modal is gone: onClose carries it, and its
    # success still arrives.
    page.evaluate("void window.gateway.open()")
    pay_and_close_while_sending(page, frame, held)
    route = held.pop()
    route.fulfill(response=route.fetch())
    [payment] = payments_of(db, order_id)
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(2)
    assert page.evaluate("window.events")[1] == {
        "kind": "close", "data": {"paymentId": payment["id"], "orderId": order_id, "status": "pending"}}
    settle_in_db(db, payment["id"], "success")
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    stops_following(page)
    events = page.evaluate("window.events")
    assert [e["kind"] for e in events] == ["close", "close", "success"]
    assert events[2]["data"]["paymentId"] == payment["id"]
    expect_signature(merchant, events[2]["data"])


def test_a_checkout_reopened_while_the_first_payment_is_being_sent_still_reports_that_payment(
        page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame, held = sdk_holding_payments(page, live_api, make_merchant, merchant_site)
    modal = page.locator("#payment-gateway-modal")
    pay_and_close_while_sending(page, frame, held, close=lambda page: page.keyboard.press("Escape"))
    expect(modal).to_have_count(0)

    # The merchant reopens the checkout and the shopper closes it at once, before the first answer.
    page.evaluate("void window.gateway.open()")
    expect(modal).to_be_visible()
    page.keyboard.press("Escape")  # nothing in flight in this modal: it closes without asking
    expect(modal).to_have_count(0)
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)

    # The first payment is made now: onClose still carries it, and its success still arrives.
    the_held_payment_is_made_and_reported(page, db, merchant, order_id, held.pop())


def test_a_checkout_reopened_while_the_first_payment_is_being_sent_names_its_parts_once(
        page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame, held = sdk_holding_payments(page, live_api, make_merchant, merchant_site)
    pay_and_close_while_sending(page, frame, held)

    # Reopened while the first checkout waits out of sight: the test ids and the question's ARIA
    # ids name the visible modal only.
    page.evaluate("void window.gateway.open()")
    for name in ("payment-modal", "payment-iframe", "close-modal-button", "confirm-close-dialog"):
        expect(page.locator(tid(name))).to_have_count(1 if name != "confirm-close-dialog" else 0)
    pay_upi(frame)
    wait_until(lambda: (page.evaluate("1"), len(held) == 2)[1], message="the second payment request")
    page.locator(tid("close-modal-button")).click()
    expect(page.locator(tid("confirm-close-dialog"))).to_be_visible()
    assert page.evaluate("document.querySelectorAll('#pg-confirm-title, #pg-confirm-text').length") == 2
    assert violations(page, "minor") == []
    for route in held:
        route.abort()
    expect(page.locator(tid("confirm-close-dialog"))).to_have_count(0)  # nothing in flight any more
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)  # the first modal's
    page.locator(tid("close-modal-button")).click()
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    assert page.evaluate("window.events") == [{"kind": "close", "data": None}] * 2
    assert page.evaluate("document.querySelectorAll('iframe').length") == 0


def test_two_modals_closed_while_their_payments_are_being_sent_report_each_answer(
        page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame, held = sdk_holding_payments(page, live_api, make_merchant, merchant_site)
    for sent in (1, 2):  # the shopper pays and closes before the answer, reopens, and does it again
        if sent == 2:
            page.evaluate("void window.gateway.open()")
        pay_and_close_while_sending(page, frame, held)
    assert len(held) == 2
    assert page.evaluate("window.events") == []  # neither modal knows yet whether it made a payment

    # The second is refused, the first is made: each modal's onClose says so, and the payment made
    # is followed to its success.
    held[1].abort()
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)
    the_held_payment_is_made_and_reported(page, db, merchant, order_id, held[0])


def test_a_modal_closed_while_sending_reports_its_own_payment_not_the_reopened_ones(
        page, live_api, make_merchant, merchant_site, db):
    # Only the first payment request is held on its way; the reopened modal's goes through.
    merchant, order_id, frame, held = sdk_holding_payments(page, live_api, make_merchant, merchant_site,
                                                           hold=lambda held: not held)
    pay_and_close_while_sending(page, frame, held)

    page.evaluate("void window.gateway.open()")
    pay_upi(frame)
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    [second] = payments_of(db, order_id)

    # The first modal's payment is refused: its onClose says it made none; the reopened modal's
    # payment is its own, reported when that modal closes.
    held[0].abort()
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)
    assert page.evaluate("window.events") == [{"kind": "close", "data": None}]
    assert not page.evaluate("window.gateway._isFollowing()")  # the open modal still shows it
    page.locator(tid("close-modal-button")).click()
    page.locator(tid("confirm-close-button")).click()
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(2)
    assert page.evaluate("window.events")[1] == {
        "kind": "close", "data": {"paymentId": second["id"], "orderId": order_id, "status": "pending"}}
    settle_in_db(db, second["id"], "success")
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    stops_following(page)
    assert [e["kind"] for e in page.evaluate("window.events")] == ["close", "close", "success"]


def test_a_retry_refused_after_the_modal_closed_reports_the_earlier_failed_attempt(
        page, live_api, make_merchant, merchant_site, db):
    sent = []  # the first attempt goes through; the retry is held on its way
    merchant, order_id, frame, held = sdk_holding_payments(page, live_api, make_merchant, merchant_site,
                                                           hold=lambda held: sent.append(1) or len(sent) > 1)
    pay_upi(frame)
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    [first] = payments_of(db, order_id)
    settle_in_db(db, first["id"], "failed")
    expect(page.locator('#events li[data-kind="failure"]')).to_have_count(1)
    frame.locator(tid("retry-button")).click()
    pay_and_close_while_sending(page, frame, held)

    # The retry is refused: onClose carries the attempt the modal did make, and its failure.
    held[0].abort()
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)
    assert page.evaluate("window.events")[1] == {
        "kind": "close", "data": {"paymentId": first["id"], "orderId": order_id, "status": "failed"}}
    assert not page.evaluate("window.gateway._isFollowing()")  # settled: nothing to follow


def test_reopened_checkout_reports_both_the_followed_and_the_new_payment(
        page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame = sdk_payment_processing(page, live_api, make_merchant, merchant_site)
    page.locator(tid("close-modal-button")).click()
    page.locator(tid("confirm-close-button")).click()
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    [first] = payments_of(db, order_id)

    # The merchant opens the same checkout again while the SDK still follows the first payment.
    page.evaluate("void window.gateway.open()")
    expect(frame.locator(tid("vpa-input"))).to_be_visible()
    settle_in_db(db, first["id"], "failed")
    expect(page.locator('#events li[data-kind="failure"]')).to_have_count(1)
    # The followed payment has its answer: the SDK stops asking, and the new modal stays usable.
    assert not page.evaluate("window.gateway._isFollowing()")
    pay_upi(frame)  # the shopper pays again in the reopened modal, and this one succeeds
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    second = payments_of(db, order_id)[1]
    settle_in_db(db, second["id"], "success")
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    events = page.evaluate("window.events")
    assert [e["kind"] for e in events] == ["close", "failure", "success", "close"]
    assert events[1]["data"]["paymentId"] == first["id"] and events[2]["data"]["paymentId"] == second["id"]
    expect_signature(merchant, events[2]["data"])


def test_a_second_checkout_opened_while_the_first_still_follows_its_payment(
        page, live_api, make_merchant, merchant_site, db):
    merchant, order_id, frame = sdk_payment_processing(page, live_api, make_merchant, merchant_site)
    page.locator(tid("close-modal-button")).click()
    page.locator(tid("confirm-close-button")).click()
    [payment] = payments_of(db, order_id)
    page.evaluate("window.first = window.gateway")
    page.locator("#pay").click()  # the shop makes a new PaymentGateway for the same order
    expect(frame.locator(tid("vpa-input"))).to_be_visible()
    assert page.evaluate("window.first !== window.gateway && !window.first.isOpen()")

    settle_in_db(db, payment["id"], "success")
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)  # from the first, once
    stops_following(page, "window.first")
    page.locator(tid("close-modal-button")).click()  # the second has no payment: it closes at once
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    events = page.evaluate("window.events")
    assert [e["kind"] for e in events] == ["close", "success", "close"]
    assert events[1]["data"]["paymentId"] == payment["id"] and events[2]["data"] is None
    expect_signature(merchant, events[1]["data"])


def test_status_endpoint_answers_only_the_order_and_payment_pair(live_api, make_merchant):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    other_order = create_order_over_http(live_api.url, merchant)["id"]
    r = requests.post(f"{live_api.url}/api/v1/payments/public", timeout=10,
                      json={"order_id": order_id, "method": "upi", "vpa": "asha@okbank"})
    pay_id = r.json()["id"]
    ok = requests.get(f"{live_api.url}/checkout/orders/{order_id}/payments/{pay_id}", timeout=10,
                      headers={"Origin": "http://shop.example"})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "*"
    assert ok.json() == {"paymentId": pay_id, "orderId": order_id, "status": "pending"}
    assert "Access-Control-Allow-Credentials" not in ok.headers
    assert ok.headers["Cache-Control"] == "no-store"  # a pending answer must not stand in for the settled one
    wrong = requests.get(f"{live_api.url}/checkout/orders/{other_order}/payments/{pay_id}", timeout=10)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_modal_shows_a_loader_until_the_checkout_is_ready(page, live_api, make_merchant, merchant_site):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    held = []
    page.route(re.compile(r".*/checkout\?order_id=.*"), lambda route: held.append(route))  # held: the iframe waits
    page.goto(site.url(order_id, merchant["api_key"]))
    page.locator("#pay").click()
    loader = page.locator(tid("modal-loader"))
    expect(loader).to_be_visible()
    expect(loader).to_contain_text("Loading")
    assert violations(page, "minor") == []
    page.wait_for_function("document.querySelector('[data-test-id=payment-iframe]') !== null")
    wait_until(lambda: (page.evaluate("1"), held)[1], message="the checkout request")
    held[0].continue_()
    expect(page.locator(tid("payment-iframe"))).to_be_visible()
    expect(page.frame_locator(tid("payment-iframe")).locator(tid("vpa-input"))).to_be_visible()
    expect(loader).to_have_count(0)


def test_modal_says_so_when_the_checkout_never_loads(page, live_api, make_merchant, merchant_site):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    page.route(re.compile(r".*/checkout\?order_id=.*"), lambda route: route.abort())
    page.goto(site.url(order_id, merchant["api_key"], load_timeout=500))
    page.locator("#pay").click()
    error = page.locator(tid("modal-load-error"))
    expect(error).to_be_visible()
    expect(error).to_contain_text("could not be loaded")
    expect(page.locator(tid("modal-load-error-close"))).to_be_focused()
    assert violations(page, "minor") == []
    for key, name in [("Shift+Tab", "close-modal-button"), ("Shift+Tab", "modal-load-error-close"),
                      ("Tab", "close-modal-button"), ("Tab", "modal-load-error-close")]:  # both ways round
        page.keyboard.press(key)
        expect(page.locator(tid(name))).to_be_focused()
    page.locator(tid("modal-load-error-close")).click()
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    assert page.evaluate("window.events") == [{"kind": "close", "data": None}]


def test_still_processing_after_the_polling_limit_offers_no_pay_again(page, start_api, make_merchant, db):
    api = start_api(CHECKOUT_POLL_TIMEOUT="1")
    order_id = create_order_over_http(api.url, make_merchant())["id"]
    page.goto(f"{api.url}/checkout?order_id={order_id}")
    pay_upi(page)
    state = page.locator(tid("still-processing-state"))
    expect(state).to_be_visible()
    expect(state.locator("h1")).to_have_text("Still processing")
    [payment] = payments_of(db, order_id)
    expect(page.locator(tid("pending-payment-id"))).to_have_text(payment["id"])
    expect(page.locator(tid("error-state"))).to_be_hidden()
    expect(page.locator(tid("retry-button"))).to_be_hidden()
    expect(page.locator(tid("pay-button"))).to_be_hidden()
    assert violations(page, "minor") == []


def test_an_order_paid_meanwhile_is_already_paid_not_a_failure(page, live_api, make_merchant, db):
    merchant = make_merchant()
    # 1. Paid in another tab before this one submits: the API refuses, the page says "already paid".
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    db.execute("UPDATE orders SET status = 'paid' WHERE id = %(id)s", {"id": order_id})
    pay_upi(page)
    paid = page.locator(tid("already-paid-state"))
    expect(paid).to_be_visible()
    expect(paid.locator("h1")).to_have_text("Already paid")
    expect(page.locator(tid("error-state"))).to_be_hidden()
    expect(page.locator(tid("retry-button"))).to_be_hidden()
    assert violations(page, "minor") == []

    # 2. This payment lost to a concurrent one (the worker fails the later success): still "paid".
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    pay_upi(page)
    expect(page.locator(tid("processing-state"))).to_be_visible()
    [payment] = payments_of(db, order_id)
    db.execute("UPDATE orders SET status = 'paid' WHERE id = %(id)s", {"id": order_id})
    db.execute("UPDATE payments SET status = 'failed', error_code = 'PAYMENT_FAILED', "
               "error_description = 'Order is already paid by another payment' WHERE id = %(id)s", {"id": payment["id"]})
    expect(paid).to_be_visible()
    expect(page.locator(tid("error-state"))).to_be_hidden()

    # 3. Opened once paid: its own page, not a failure.
    resp = page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    assert resp.status == 409
    expect(paid.locator("h1")).to_have_text("Already paid")
    expect(page.locator(tid("error-state"))).to_have_count(0)
    assert violations(page, "minor") == []


def test_card_entry_formats_as_the_card_reads(page, live_api, make_merchant):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    seen = watch(page)
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    page.locator(tid("method-card")).click()
    number, expiry, cvv = (page.locator(tid(n)) for n in ("card-number-input", "expiry-input", "cvv-input"))
    logo = page.locator(tid("card-network-logo"))
    expect(page.locator("label[for=holder-name]")).to_have_text("Name on card (optional)")
    assert violations(page, "minor") == []

    # American Express: 4-6-5, its logo, a 4-digit CVV; letters never get in.
    number.click()
    page.keyboard.type("3782a8224-6310005")
    expect(number).to_have_value("3782 822463 10005")
    expect(logo).to_have_attribute("data-network", "American Express")
    expect(logo.locator('svg[data-network="American Express"]')).to_be_visible()
    expect(logo.locator('svg[data-network="Visa"]')).to_be_hidden()
    cvv.click()
    page.keyboard.type("12x345")
    expect(cvv).to_have_value("1234")

    # Visa: groups of four, 3-digit CVV (the 4th digit is cut), its own logo.
    number.fill("")
    number.click()
    page.keyboard.type("4111111111111111")
    expect(number).to_have_value("4111 1111 1111 1111")
    expect(logo.locator('svg[data-network="Visa"]')).to_be_visible()
    expect(cvv).to_have_value("123")
    # An edit in the middle keeps the grouping and the caret after the digit typed.
    number.evaluate("e => e.setSelectionRange(5, 5)")
    page.keyboard.type("9")
    expect(number).to_have_value("4111 9111 1111 1111 1")
    assert number.evaluate("e => e.selectionStart") == 6
    page.keyboard.press("Backspace")
    expect(number).to_have_value("4111 1111 1111 1111")
    assert number.evaluate("e => e.selectionStart") == 4
    number.evaluate("e => e.setSelectionRange(5, 5)")
    page.keyboard.press("Backspace")  # over the space: the digit before it goes
    expect(number).to_have_value("4111 1111 1111 111")
    assert number.evaluate("e => e.selectionStart") == 3

    # Expiry: a month digit that cannot start two is padded, the slash comes by itself.
    expiry.click()
    page.keyboard.type("9")
    expect(expiry).to_have_value("09/")
    page.keyboard.type("3a0")
    expect(expiry).to_have_value("09/30")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")  # the slash goes with the last year digit: no re-added slash
    expect(expiry).to_have_value("09")
    assert all(u.startswith(live_api.url) for u in seen["urls"])  # the logos are drawn, not fetched


def test_the_order_shows_who_is_paid_for_what(page, live_api, start_api, make_merchant, merchant_site):
    merchant = make_merchant()
    order = create_order_over_http(live_api.url, merchant, receipt="rcpt_4217")
    site = merchant_site(live_api.url)
    frame, iframe = open_sdk(page, site, order["id"], merchant, name="Chai Point", description="Two cups of chai",
                             vpa="asha@okbank")
    expect(frame.locator(tid("merchant-name"))).to_have_text("Chai Point")
    expect(frame.locator(tid("order-description"))).to_have_text("Two cups of chai")
    expect(frame.locator(tid("order-receipt"))).to_have_text("rcpt_4217")
    expect(frame.locator(tid("vpa-input"))).to_have_value("asha@okbank")
    expect(frame.locator(tid("test-mode-ribbon"))).to_contain_text("Test mode")
    assert violations(iframe, "minor") == []

    # Currencies without a minor unit: 150000 JPY is ¥150,000.
    yen = create_order_over_http(live_api.url, merchant, amount=150000, currency="JPY")["id"]
    page.goto(f"{live_api.url}/checkout?order_id={yen}")
    expect(page.locator(tid("order-amount"))).to_have_text("¥150,000")
    expect(page.locator(tid("pay-button"))).to_have_text("Pay ¥150,000")
    expect(page.locator(tid("order-description"))).to_have_count(0)  # none given

    # Outside test mode there is no ribbon.
    live = start_api(TEST_MODE="false")
    page.goto(f"{live.url}/checkout?order_id={order['id']}")
    expect(page.locator(tid("order-amount"))).to_have_text("₹500.00")
    expect(page.locator(tid("test-mode-ribbon"))).to_have_count(0)


def test_focus_stays_inside_the_modal(page, live_api, make_merchant, merchant_site):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    frame, _ = open_sdk(page, site, order_id, merchant)
    close = page.locator(tid("close-modal-button"))
    close.focus()
    page.keyboard.press("Tab")
    expect(frame.locator(tid("method-upi"))).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(close).to_be_focused()
    page.keyboard.press("Shift+Tab")  # around the back: the checkout's last control
    expect(frame.get_by_role("button", name="Cancel payment")).to_be_focused()
    page.keyboard.press("Tab")  # and forward again: back to the close button, never the page behind
    expect(close).to_be_focused()
    expect(page.locator("#pay")).not_to_be_focused()


def test_focus_stays_on_a_control_after_a_network_error(page, live_api, make_merchant, db):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    page.route("**/api/v1/payments/public", lambda route: route.abort())
    pay_upi(page)
    expect(page.locator("#form-error")).to_contain_text("could not reach the payment server")
    expect(page.locator(tid("pay-button"))).to_be_focused()
    expect(page.locator(tid("pay-button"))).to_be_enabled()
    assert payments_of(db, order_id) == []


def test_every_error_page_has_a_heading_and_passes_axe(page, live_api):
    resp = page.goto(f"{live_api.url}/checkout?order_id=order_doesnotexist00")
    assert resp.status == 404
    expect(page.locator("h1")).to_have_text("Order not found")
    assert violations(page, "minor") == []


# ---- successful payments (live_worker: payments settle at once) ---------------------------------

def test_upi_payment_succeeds_on_the_standalone_page(page, live_api, live_worker, make_merchant, db):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    seen = watch(page)
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    expect(page.locator(tid("checkout-container"))).to_be_visible()
    expect(page.locator(tid("order-summary"))).to_be_visible()
    expect(page.locator(tid("order-amount"))).to_have_text("₹500.00")
    expect(page.locator(tid("order-id"))).to_have_text(order_id)
    expect(page.locator(tid("payment-methods"))).to_be_visible()
    assert violations(page, "minor") == []  # the form, UPI chosen
    pay_upi(page)
    expect(page.locator(tid("processing-state"))).to_be_visible()
    expect(page.locator(tid("success-state"))).to_be_visible()
    expect(page.locator(tid("success-message"))).to_contain_text("successful")
    expect(page.locator(tid("amount-paid"))).to_have_text("₹500.00")
    expect(page.locator(tid("success-state")).locator("h1")).to_have_text("Payment successful")
    assert violations(page, "minor") == []
    pay_id = page.locator(tid("payment-id")).inner_text()
    assert PAY_ID.match(pay_id), pay_id
    assert payments_of(db, order_id) == [{"id": pay_id, "method": "upi", "status": "success", "vpa": "asha@okbank",
                                          "card_network": None, "card_last4": None, "error_code": None,
                                          "error_description": None}]
    assert db.value("SELECT status FROM orders WHERE id = %(id)s", {"id": order_id}) == "paid"
    assert seen["posts"] == [f"{live_api.url}/api/v1/payments/public"]
    assert seen["errors"] == []


def test_card_payment_succeeds_by_keyboard_alone(page, live_api, live_worker, make_merchant, db):
    order_id = create_order_over_http(live_api.url, make_merchant(), amount=123456)["id"]
    seen = watch(page)
    page.goto(f"{live_api.url}/checkout?order_id={order_id}")
    expect(page.locator(tid("order-amount"))).to_have_text("₹1,234.56")
    page.keyboard.press("Tab")
    expect(page.locator(tid("method-upi"))).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(tid("method-card"))).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(tid("card-form"))).to_be_visible()
    for name, value in [("card-number-input", CARD_NUMBER), ("expiry-input", FUTURE_EXPIRY.replace("/", "")),
                        ("cvv-input", "123"), ("cardholder-name-input", "Asha Rao")]:
        page.keyboard.press("Tab")
        expect(page.locator(tid(name))).to_be_focused()
        page.keyboard.type(value)
    expect(page.locator(tid("card-number-input"))).to_have_value("4111 1111 1111 1111")
    expect(page.locator(tid("expiry-input"))).to_have_value(FUTURE_EXPIRY)
    page.keyboard.press("Enter")  # submits the form
    expect(page.locator(tid("processing-state"))).to_be_visible()
    expect(page.locator(tid("success-state"))).to_be_visible()
    pay_id = page.locator(tid("payment-id")).inner_text()
    [payment] = payments_of(db, order_id)
    assert payment["id"] == pay_id and payment["status"] == "success"
    assert (payment["method"], payment["card_network"], payment["card_last4"]) == ("card", "visa", "1111")
    # Card data went out only in a POST body: never in a URL, never in the API's log.
    digits = re.compile(r"4111.?1111.?1111.?1111")
    assert not any(digits.search(u) for u in seen["urls"])
    assert not digits.search(live_api.process.output())
    expect(page.locator(tid("card-number-input"))).to_have_value("")
    expect(page.locator(tid("cvv-input"))).to_have_value("")
    assert seen["errors"] == []


def test_sdk_pays_inside_the_iframe_on_another_origin(page, live_api, live_worker, make_merchant, merchant_site, db):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    assert site.origin != live_api.url
    seen = watch(page)
    page.goto(site.url(order_id, merchant["api_key"]))
    assert page.evaluate("typeof window.PaymentGateway") == "function"
    page.locator("#pay").click()

    modal = page.locator(tid("payment-modal"))
    expect(modal).to_be_visible()
    expect(modal).to_have_attribute("id", "payment-gateway-modal")
    expect(page.locator(tid("close-modal-button"))).to_be_visible()
    iframe_src = page.locator(tid("payment-iframe")).get_attribute("src")
    assert iframe_src.startswith(f"{live_api.url}/checkout?") and "embedded=true" in iframe_src
    assert f"order_id={order_id}" in iframe_src and f"key={merchant['api_key']}" in iframe_src

    frame = page.frame_locator(tid("payment-iframe"))
    expect(frame.locator(tid("order-amount"))).to_have_text("₹500.00")
    pay_upi(frame)
    expect(frame.locator(tid("processing-state"))).to_be_visible()
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    expect(modal).to_have_count(0)  # onSuccess, then closed
    events = page.evaluate("window.events")
    assert [e["kind"] for e in events] == ["success", "close"]
    data = events[0]["data"]
    [payment] = payments_of(db, order_id)
    assert data["paymentId"] == payment["id"] and PAY_ID.match(data["paymentId"])
    assert data["orderId"] == order_id and data["status"] == "success" and payment["status"] == "success"
    expect_signature(merchant, data)
    assert seen["errors"] == []  # nothing refused by either page's CSP


def test_an_on_success_that_throws_still_closes_the_modal(page, live_api, live_worker, make_merchant, merchant_site):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(site.url(order_id, merchant["api_key"], throw_on_success="1"))
    page.locator("#pay").click()
    pay_upi(page.frame_locator(tid("payment-iframe")))
    expect(page.locator('#events li[data-kind="success"]')).to_have_count(1)
    expect(page.locator(tid("payment-modal"))).to_have_count(0)  # closed all the same, onClose called
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)
    # The shop's error is not swallowed: it still reaches the console.
    wait_until(lambda: any("the shop's onSuccess broke" in e for e in errors), message="the error re-thrown")


def test_sdk_close_button_and_escape_close_the_modal(page, live_api, make_merchant, merchant_site):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    page.goto(site.url(order_id, merchant["api_key"]))
    modal, closes = page.locator(tid("payment-modal")), page.locator('#events li[data-kind="close"]')

    page.locator("#pay").click()
    expect(modal).to_be_visible()
    page.locator(tid("close-modal-button")).click()
    expect(modal).to_have_count(0)
    expect(closes).to_have_count(1)

    page.locator("#pay").click()
    expect(modal).to_be_visible()
    page.keyboard.press("Escape")  # focus is on the merchant page (the modal's close button)
    expect(modal).to_have_count(0)
    expect(closes).to_have_count(2)

    page.locator("#pay").click()
    frame = page.frame_locator(tid("payment-iframe"))
    frame.locator(tid("vpa-input")).click()
    page.keyboard.press("Escape")  # focus is inside the iframe: it asks the SDK with close_modal
    expect(modal).to_have_count(0)
    expect(closes).to_have_count(3)
    assert "success" not in [e["kind"] for e in page.evaluate("window.events")]
    expect(page.locator("#pay")).to_be_focused()  # focus returns where it was


def test_sdk_ignores_forged_messages(page, live_api, make_merchant, merchant_site):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    page.goto(site.url(order_id, merchant["api_key"]))
    page.locator("#pay").click()
    expect(page.locator(tid("payment-modal"))).to_be_visible()
    forged = {"type": "payment_success",
              "data": {"paymentId": "pay_forged0000000000", "orderId": order_id, "status": "success",
                       "signature": "0" * 64}}

    # 1. From the merchant page itself (another script on it, an extension): wrong origin and source.
    page.evaluate("m => window.postMessage(m, '*')", forged)
    page.wait_for_function("window.received.length >= 1")

    # 2. From a real gateway page in ANOTHER frame: the right origin, but not the SDK's own iframe.
    page.evaluate("""([src]) => { const f = document.createElement('iframe'); f.id = 'other';
                     f.src = src; document.body.appendChild(f); }""",
                  [f"{live_api.url}/checkout?order_id={order_id}&embedded=true&parent_origin={site.origin}"])
    other = page.frame_locator("#other")
    expect(other.locator(tid("order-amount"))).to_be_visible()
    other_frame = page.locator("#other").element_handle().content_frame()
    other_frame.evaluate("m => window.parent.postMessage(m, '*')", forged)
    page.wait_for_function(f"window.received.some(r => r.origin === {live_api.url!r})")

    expect(page.locator(tid("payment-modal"))).to_be_visible()
    assert page.evaluate("window.events") == []
    # A close_modal from the other frame is ignored too.
    other_frame.evaluate("() => window.parent.postMessage({type: 'close_modal', data: {}}, '*')")
    page.wait_for_function(f"window.received.filter(r => r.origin === {live_api.url!r}).length >= 2")
    expect(page.locator(tid("payment-modal"))).to_be_visible()
    assert page.evaluate("window.events") == []


def test_sdk_with_another_merchants_key_is_refused_in_the_modal(page, live_api, make_merchant, merchant_site):
    owner, other = make_merchant(), make_merchant()
    order_id = create_order_over_http(live_api.url, owner)["id"]
    site = merchant_site(live_api.url)
    page.goto(site.url(order_id, other["api_key"]))
    page.locator("#pay").click()
    frame = page.frame_locator(tid("payment-iframe"))
    expect(frame.locator(tid("error-message"))).to_contain_text("different merchant")
    expect(frame.locator(tid("pay-button"))).to_have_count(0)
    expect(frame.locator("h1")).to_have_text("Checkout refused")
    assert violations(page.locator(tid("payment-iframe")).element_handle().content_frame(), "minor") == []
    frame.get_by_role("button", name="Close").click()  # posts close_modal
    expect(page.locator(tid("payment-modal"))).to_have_count(0)
    expect(page.locator('#events li[data-kind="close"]')).to_have_count(1)


def test_hosted_checkout_posts_the_signed_result_to_callback_url(page, live_api, live_worker, make_merchant,
                                                                  merchant_site, db):
    merchant = make_merchant()
    order_id = create_order_over_http(live_api.url, merchant)["id"]
    site = merchant_site(live_api.url)
    callback = f"{site.origin}/callback"
    resp = page.goto(f"{live_api.url}/checkout?" + urlencode({"order_id": order_id, "callback_url": callback}))
    assert f"form-action 'self' {site.origin};" in resp.headers["content-security-policy"]
    back = page.locator(tid("back-to-merchant"))
    expect(back).to_have_attribute("href", f"{site.origin}/")
    expect(back).to_contain_text(f"Back to Merchant {merchant['id'][:6]}")
    expect(back).to_contain_text(f"({site.origin.split('//')[1]})")  # where it leads, whoever wrote the link
    pay_upi(page)
    page.wait_for_url(callback)  # the page submitted the form: the shopper is back at the shop
    expect(page.locator("h1")).to_have_text("Thank you")
    [payment] = payments_of(db, order_id)
    assert payment["status"] == "success"
    assert site.posts == [{"razorpay_payment_id": payment["id"], "razorpay_order_id": order_id,
                           "razorpay_signature": site.posts[0]["razorpay_signature"]}]
    expect_signature(merchant, {"orderId": order_id, "paymentId": payment["id"],
                                "signature": site.posts[0]["razorpay_signature"]})


@pytest.mark.parametrize("callback", ["javascript:alert(1)", "ftp://shop.example/cb", "/relative/path",
                                      "http://user:pw@shop.example/cb", "data:text/html,hi", "http://",
                                      "https://shop.example/" + "a" * 2100, "http://shop.example/a b",
                                      "http://shop.example;sandbox/cb", "http://[::1/cb"])
def test_hosted_checkout_refuses_a_bad_callback_url(page, live_api, make_merchant, callback):
    order_id = create_order_over_http(live_api.url, make_merchant())["id"]
    resp = page.goto(f"{live_api.url}/checkout?" + urlencode({"order_id": order_id, "callback_url": callback}))
    assert resp.status == 400
    expect(page.locator(tid("error-message"))).to_contain_text("callback_url")
    expect(page.locator(tid("pay-button"))).to_have_count(0)
    assert "form-action 'self';" in resp.headers["content-security-policy"]


def test_demo_shop_says_paid_only_after_its_server_verified_the_signature(page, live_api, live_worker,
                                                                          make_merchant):
    from test_merchant.app import create_app as create_shop

    merchant = make_merchant()
    shop = create_shop({"GATEWAY_URL": live_api.url, "API_KEY": merchant["api_key"],
                        "API_SECRET": merchant["api_secret"]})
    port = free_port()
    server = make_server("127.0.0.1", port, shop, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{port}"
        # A forged success is refused by the shop's server.
        forged = requests.post(f"{base}/verify", timeout=10,
                               json={"orderId": "order_x", "paymentId": "pay_x", "signature": "0" * 64})
        assert forged.status_code == 400 and forged.json()["verified"] is False
        # Its server names the price; and a rightly signed payment of an order the shop did not
        # create (a cheaper one of the same merchant) buys nothing.
        made = requests.post(f"{base}/create-order", json={"amount": 100}, timeout=10)
        assert made.status_code == 201 and made.json()["amount"] == 50000
        cheap = create_order_over_http(live_api.url, merchant, amount=100)["id"]
        signature = hmac.new(merchant["api_secret"].encode(), f"{cheap}|pay_x".encode(), hashlib.sha256).hexdigest()
        other = requests.post(f"{base}/verify", timeout=10,
                              json={"orderId": cheap, "paymentId": "pay_x", "signature": signature})
        assert other.status_code == 400 and other.json()["verified"] is False

        held = {"create": [], "verify": []}
        page.route("**/create-order", lambda route: held["create"].append(route))
        page.route("**/verify", lambda route: held["verify"].append(route))
        page.goto(base)
        buy, result = page.locator(tid("buy-button")), page.locator(tid("shop-result"))
        buy.click()
        expect(buy).to_be_disabled()  # busy while its server creates the order
        expect(buy).to_have_attribute("aria-busy", "true")
        wait_until(lambda: (page.evaluate("1"), held["create"])[1], message="the order request")
        held["create"][0].continue_()
        frame = page.frame_locator(tid("payment-iframe"))
        expect(frame.locator(tid("merchant-name"))).to_have_text("Demo shop")
        pay_upi(frame)
        expect(buy).to_have_text("Confirming your payment…")  # the success is a claim until verified
        expect(result).to_have_text("")
        wait_until(lambda: (page.evaluate("1"), held["verify"])[1], message="the verify request")
        held["verify"][0].continue_()
        expect(result).to_have_text(re.compile(r"^Paid: pay_[A-Za-z0-9]{16}$"))
        expect(buy).to_be_enabled()
    finally:
        server.shutdown()


def test_phone_width_has_no_horizontal_scrolling(browser, live_api, live_worker, make_merchant, merchant_site):
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        order_id = create_order_over_http(live_api.url, make_merchant(), amount=10_000_000)["id"]  # ₹1,00,000.00
        page.goto(f"{live_api.url}/checkout?order_id={order_id}")
        expect(page.locator(tid("order-amount"))).to_have_text("₹1,00,000.00")

        def fits():
            return page.evaluate("document.documentElement.scrollWidth") <= 360

        assert fits()
        fill_card(page, number="1234567890123456", expiry="01/20", cvv="1")
        page.locator(tid("pay-button")).click()
        expect(page.locator("#card-number-error")).to_be_visible()
        assert fits()
        # Every input has a label.
        assert page.evaluate("[...document.querySelectorAll('input')].every(i => i.labels.length > 0)")
        fill_card(page)
        page.locator(tid("pay-button")).click()
        expect(page.locator(tid("success-state"))).to_be_visible()
        assert fits()

        merchant = make_merchant()
        order_id = create_order_over_http(live_api.url, merchant)["id"]
        site = merchant_site(live_api.url)
        page.goto(site.url(order_id, merchant["api_key"]))
        page.locator("#pay").click()
        frame = page.frame_locator(tid("payment-iframe"))
        expect(frame.locator(tid("vpa-input"))).to_be_visible()
        assert fits()
        box = page.locator(tid("payment-iframe")).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360
        assert frame.locator("html").evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        context.close()


def test_every_state_passes_axe_on_a_390_px_phone(browser, live_api, live_worker, make_merchant, merchant_site, db):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        merchant = make_merchant()
        order_id = create_order_over_http(live_api.url, merchant)["id"]
        page.goto(f"{live_api.url}/checkout?order_id={order_id}")
        expect(page.locator("#pay-panel h1")).to_be_visible()
        assert violations(page, "minor") == []  # UPI form
        fill_card(page, number="1234567890123456", expiry="01/20", cvv="1")
        page.locator(tid("pay-button")).click()
        expect(page.locator("#card-number-error")).to_be_visible()
        assert violations(page, "minor") == []  # card form with its errors
        fill_card(page)
        page.locator(tid("pay-button")).click()
        expect(page.locator(tid("success-state")).locator("h1")).to_be_visible()
        assert violations(page, "minor") == []  # success
        page.goto(f"{live_api.url}/checkout?order_id={order_id}")  # now paid: its own page
        expect(page.locator(tid("already-paid-state")).locator("h1")).to_be_visible()
        assert violations(page, "minor") == []

        # The SDK's modal, its loader, and the checkout inside it.
        order_id = create_order_over_http(live_api.url, merchant)["id"]
        site = merchant_site(live_api.url)
        held = []
        page.route(re.compile(r".*/checkout\?order_id=.*"), lambda route: held.append(route))
        page.goto(site.url(order_id, merchant["api_key"]))
        page.locator("#pay").click()
        expect(page.locator(tid("modal-loader"))).to_be_visible()
        assert violations(page, "minor") == []
        wait_until(lambda: (page.evaluate("1"), held)[1], message="the checkout request")
        held[0].continue_()
        frame = page.frame_locator(tid("payment-iframe"))
        expect(frame.locator("#pay-panel h1")).to_be_visible()
        assert violations(page, "minor") == []
        assert violations(page.locator(tid("payment-iframe")).element_handle().content_frame(), "minor") == []
    finally:
        context.close()


def test_screenshots(browser, live_api, tmp_path):
    """Render the checkout at desktop and phone sizes. With CHECKOUT_SCREENSHOTS=docs the pictures
    are written to docs/ (the README shows them); otherwise to a temporary directory."""
    order_id = create_order_over_http(live_api.url, TEST_MERCHANT, amount=50000)["id"]  # the seeded Test Merchant
    out = DOCS if os.environ.get("CHECKOUT_SCREENSHOTS") == "docs" else tmp_path
    for name, viewport, method in [("checkout-desktop.png", {"width": 1280, "height": 800}, "upi"),
                                   ("checkout-phone.png", {"width": 360, "height": 740}, "card")]:
        context = browser.new_context(viewport=viewport, device_scale_factor=1)
        try:
            page = context.new_page()
            page.goto(f"{live_api.url}/checkout?order_id={order_id}")
            page.locator(tid(f"method-{method}")).click()
            expect(page.locator(tid(f"{method}-form"))).to_be_visible()
            page.locator("body").click(position={"x": 1, "y": 1})  # no focus ring in the picture
            tmp = tmp_path / name
            page.screenshot(path=str(tmp), full_page=True)
            assert tmp.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if out != tmp_path:
                shutil.copyfile(tmp, out / name)
        finally:
            context.close()
