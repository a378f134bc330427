"""The official razorpay Python client (2.0.1), pointed at the gateway with base_url=<app>/api and the
test merchant's key and secret (HTTP Basic), works for orders, payments, capture and refunds."""
import time
from datetime import datetime, timezone

import pytest
import razorpay

from helpers import TEST_KEY, TEST_MERCHANT, TEST_SECRET, pay_over_http, settle


@pytest.fixture
def rzp(live_api):
    # razorpay.Client takes base_url as a constructor option; resource paths start with /v1.
    return razorpay.Client(auth=(TEST_KEY, TEST_SECRET), base_url=live_api.url + "/api")


def test_create_and_fetch_order(rzp):
    order = rzp.order.create({"amount": 50000, "currency": "INR", "receipt": "rcpt_rzp_1", "notes": {"sku": "A1"}})
    assert order["id"].startswith("order_") and order["entity"] == "order"
    assert (order["amount"], order["currency"], order["receipt"], order["status"]) == (50000, "INR", "rcpt_rzp_1", "created")
    fetched = rzp.order.fetch(order["id"])
    assert fetched["id"] == order["id"] and fetched["notes"] == {"sku": "A1"}
    listed = rzp.order.all({"count": 1})
    assert listed["data"][0]["id"] == order["id"] and listed["limit"] == 1


def test_fetch_payment_capture_and_refund(rzp, live_api, db, worker):
    order = rzp.order.create({"amount": 25000, "currency": "INR"})
    payment_id = pay_over_http(live_api.url, TEST_MERCHANT, order["id"], vpa="rzp@okaxis")["id"]
    assert rzp.payment.fetch(payment_id)["status"] == "pending"
    assert settle(worker, db, payment_id) == "success"

    payment = rzp.payment.fetch(payment_id)
    assert (payment["status"], payment["amount"], payment["order_id"], payment["vpa"]) == ("success", 25000, order["id"], "rzp@okaxis")
    assert rzp.payment.capture(payment_id, 25000, {"currency": "INR"})["captured"] is True

    refund = rzp.payment.refund(payment_id, {"amount": 10000, "notes": {"why": "size"}})  # POST …/refund
    assert refund["id"].startswith("rfnd_") and (refund["amount"], refund["status"]) == (10000, "pending")
    assert rzp.refund.fetch(refund["id"])["payment_id"] == payment_id
    rest = rzp.payment.refund(payment_id)  # no amount: the rest
    assert rest["amount"] == 15000
    refunds = rzp.payment.fetch_multiple_refund(payment_id)
    assert refunds["total"] == 2 and [x["id"] for x in refunds["data"]] == [rest["id"], refund["id"]]
    assert rzp.order.fetch(order["id"])["status"] == "paid"


def test_refund_routes_the_client_calls(rzp, live_api, db, worker):
    """refund.create / refund.all / order.payments / payment.fetch_refund_id and list filters."""
    order = rzp.order.create({"amount": 30000, "currency": "INR"})
    payment_id = pay_over_http(live_api.url, TEST_MERCHANT, order["id"], vpa="rzp@okaxis")["id"]
    assert settle(worker, db, payment_id) == "success"

    listed = rzp.order.payments(order["id"])
    assert [p["id"] for p in listed["data"]] == [payment_id] and listed["total"] == 1

    refund = rzp.refund.create({"payment_id": payment_id, "amount": 12000, "notes": {"why": "size"},
                                "receipt": "rzp_rf_1", "speed": "normal"})
    assert (refund["payment_id"], refund["amount"], refund["notes"], refund["receipt"]) == (
        payment_id, 12000, {"why": "size"}, "rzp_rf_1")
    assert rzp.payment.fetch_refund_id(payment_id, refund["id"]) == rzp.refund.fetch(refund["id"])
    rest = rzp.refund.create({"payment_id": payment_id})
    assert rest["amount"] == 18000
    with pytest.raises(razorpay.errors.BadRequestError, match="^Refund amount exceeds available amount$"):
        rzp.refund.create({"payment_id": payment_id, "amount": 100})

    mine = rzp.refund.all({"count": 100})
    assert [x["id"] for x in mine["data"][:2]] == [rest["id"], refund["id"]]
    made = int(datetime.strptime(refund["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())
    window = rzp.refund.all({"from": made, "to": int(time.time()) + 1, "count": 100})
    assert {refund["id"], rest["id"]} <= {x["id"] for x in window["data"]}
    assert rzp.refund.all({"to": made - 3600})["total"] < mine["total"]
    with pytest.raises(razorpay.errors.BadRequestError, match="order_id"):
        rzp.payment.all({"order_id": order["id"]})


def test_errors_surface_as_razorpay_exceptions(rzp):
    with pytest.raises(razorpay.errors.BadRequestError):
        rzp.order.create({"amount": 50})
    with pytest.raises(razorpay.errors.ServerError):  # the client maps codes it does not know (NOT_FOUND_ERROR) to this
        rzp.order.fetch("order_AAAAAAAAAAAAAAAA")
    wrong = razorpay.Client(auth=(TEST_KEY, "wrong"), base_url=rzp.base_url)
    with pytest.raises(razorpay.errors.ServerError, match="Invalid API key or secret"):
        wrong.order.all()
