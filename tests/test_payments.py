"""Payments: create (private and public), get, public poll view, lists, capture; card data never stored."""
import json
import logging
import re
import threading

import pytest
import requests

from app import auth, jobs, migrate, payments, webhooks
from app.ids import new_id
from helpers import (CARD, JSON, TIME_RE, count, create_order, create_payment, headers, paid_payment, pay, payment_body,
                     settle)

PAY_ID = re.compile(r"^pay_[A-Za-z0-9]{16}$")
PUBLIC_FIELDS = {"id", "order_id", "status", "amount", "currency", "method"}


def test_upi_payment_is_accepted_pending(client, merchant):
    order = create_order(client, merchant, 50000)
    r = client.post("/api/v1/payments", json={"order_id": order["id"], "method": "upi", "vpa": "asha@okhdfc"},
                    headers=merchant["headers"])
    assert r.status_code == 201
    p = r.get_json()
    assert PAY_ID.match(p["id"])
    assert (p["order_id"], p["merchant_id"], p["amount"], p["currency"], p["method"], p["status"], p["vpa"]) == (
        order["id"], merchant["id"], 50000, "INR", "upi", "pending", "asha@okhdfc")
    assert p["card_network"] is None and p["card_last4"] is None
    assert TIME_RE.match(p["created_at"])


@pytest.mark.parametrize("number,network,last4", [
    ("4111111111111111", "visa", "1111"),
    ("5555 5555 5555 4444", "mastercard", "4444"),
    ("3782-822463-10005", "amex", "0005"),
    ("6011111111111117", "rupay", "1117"),
    ("2221000000000009", "mastercard", "0009"),
])
def test_card_payment_shows_network_and_last4_only(client, merchant, number, network, last4):
    order = create_order(client, merchant)
    p = pay(client, merchant, order["id"], "card", card=dict(CARD, number=number, cvv="4321"))
    assert (p["method"], p["status"], p["card_network"], p["card_last4"], p["vpa"]) == ("card", "pending", network, last4, None)
    digits = number.replace(" ", "").replace("-", "")
    assert not {"card", "number", "cvv", "expiry_month", "expiry_year"} & set(p)
    assert digits not in json.dumps(p) and "4321" not in (p["card_last4"], p["vpa"])


@pytest.mark.parametrize("card_fields", [
    {"expiry_month": "01", "expiry_year": "99"},        # strings, YY
    {"expiry_month": 12, "expiry_year": 2099},
    {"cvv": 123},
    {"cvv": "1234"},
    {"holder_name": None},
])
def test_card_payment_accepts_spec_variants(client, merchant, card_fields):
    order = create_order(client, merchant)
    pay(client, merchant, order["id"], "card", card=dict(CARD, **card_fields))


@pytest.mark.parametrize("over,status,code,field", [
    ({"method": "upi", "vpa": "no-at-sign"}, 400, "INVALID_VPA", "vpa"),
    ({"method": "upi", "vpa": "a@b.c"}, 400, "INVALID_VPA", "vpa"),
    ({"method": "upi", "vpa": ""}, 400, "INVALID_VPA", "vpa"),
    ({"card": dict(CARD, number="1234567890123456")}, 400, "INVALID_CARD", "card.number"),
    ({"card": dict(CARD, number="4111")}, 400, "INVALID_CARD", "card.number"),
    ({"card": dict(CARD, number="4111 1111 1111 111x")}, 400, "INVALID_CARD", "card.number"),
    ({"card": dict(CARD, cvv="12")}, 400, "INVALID_CARD", "card.cvv"),
    ({"card": dict(CARD, cvv="12345")}, 400, "INVALID_CARD", "card.cvv"),
    ({"card": dict(CARD, cvv=None)}, 400, "INVALID_CARD", "card.cvv"),
    ({"card": dict(CARD, expiry_month=1, expiry_year=2020)}, 400, "EXPIRED_CARD", None),
    ({"card": dict(CARD, expiry_month=13, expiry_year=2030)}, 400, "EXPIRED_CARD", None),
    ({"card": dict(CARD, expiry_month=0, expiry_year=2030)}, 400, "EXPIRED_CARD", None),
    ({"card": dict(CARD, expiry_month=12, expiry_year="20")}, 400, "EXPIRED_CARD", None),
    ({"method": "netbanking"}, 400, "BAD_REQUEST_ERROR", "method"),
    ({"method": "UPI", "vpa": "a@b"}, 400, "BAD_REQUEST_ERROR", "method"),
    ({"method": None}, 400, "BAD_REQUEST_ERROR", "method"),
    ({"method": "upi", "card": None}, 400, "BAD_REQUEST_ERROR", None),     # upi without vpa (card: null is bad too)
    ({"method": "upi"}, 400, "BAD_REQUEST_ERROR", "vpa"),
    ({"card": None}, 400, "BAD_REQUEST_ERROR", "card"),
    ({"card": "4111111111111111"}, 400, "BAD_REQUEST_ERROR", None),
    ({"card": {"number": "4111111111111111"}}, 400, "BAD_REQUEST_ERROR", None),        # expiry and cvv missing
    ({"card": dict(CARD, number=4111111111111111)}, 400, "BAD_REQUEST_ERROR", "card.number"),
    ({"card": dict(CARD, pin="1234")}, 400, "BAD_REQUEST_ERROR", "card.pin"),           # unknown field
    ({"amount": 49999}, 400, "BAD_REQUEST_ERROR", "amount"),                             # differs from the order
    ({"amount": 50000.0}, 400, "BAD_REQUEST_ERROR", "amount"),
    ({"amount": "50000"}, 400, "BAD_REQUEST_ERROR", "amount"),
    ({"currency": "USD"}, 400, "BAD_REQUEST_ERROR", "currency"),
    ({"notes": ["x"]}, 400, "BAD_REQUEST_ERROR", "notes"),
    ({"tip": 10}, 400, "BAD_REQUEST_ERROR", "tip"),
    ({"order_id": "order_AAAAAAAAAAAAAAAA"}, 404, "NOT_FOUND_ERROR", "order_id"),
    ({"order_id": "order_\u0000"}, 400, "BAD_REQUEST_ERROR", "order_id"),
    ({"order_id": 12}, 400, "BAD_REQUEST_ERROR", "order_id"),
    ({"order_id": None}, 400, "BAD_REQUEST_ERROR", "order_id"),
])
@pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/payments/public"])
def test_bad_payment_is_refused_and_writes_nothing(client, db, merchant, path, over, status, code, field):
    order = create_order(client, merchant, 50000)
    body = dict(payment_body(order["id"], "card"), **over)
    r = client.post(path, json=body, headers=merchant["headers"] if "public" not in path else {})
    assert r.status_code == status, r.get_json()
    err = r.get_json()["error"]
    assert err["code"] == code and err["description"]
    if field:
        assert err.get("field") == field
    assert count(db, "payments", merchant["id"]) == 0
    assert "4111111111111111" not in r.get_data(as_text=True)


@pytest.mark.parametrize("body", ["", "{", "[]", "null", '{"order_id": NaN}', "[" * 20000 + "]" * 20000])
@pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/payments/public"])
def test_malformed_payment_body_is_400(client, db, merchant, path, body):
    r = client.post(path, data=body, headers=headers(merchant))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "payments", merchant["id"]) == 0


@pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/payments/public"])
def test_payment_with_wrong_content_type_or_huge_body(client, db, merchant, path):
    order = create_order(client, merchant)
    body = json.dumps({"order_id": order["id"], "method": "upi", "vpa": "a@b"})
    r = client.post(path, data=body, headers=dict(merchant["headers"], **{"Content-Type": "text/plain"}))
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    big = json.dumps({"order_id": order["id"], "method": "upi", "vpa": "a" * (1 << 20) + "@b"})
    r = client.post(path, data=big, headers=headers(merchant))
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "payments", merchant["id"]) == 0


def test_amount_equal_to_the_order_is_accepted(client, merchant):
    order = create_order(client, merchant, 777)
    assert pay(client, merchant, order["id"], amount=777, currency="INR")["amount"] == 777


def test_payment_and_its_settlement_commit_together(client, db, worker, merchant):
    """Accepted at once as pending; the worker's job (written with it) settles it and pays the order."""
    order = create_order(client, merchant)
    p = pay(client, merchant, order["id"])
    assert p["status"] == "pending"
    job = db.value("SELECT count(*) FROM jobs WHERE kind = 'payment.settle' AND payload->>'payment_id' = %(id)s", {"id": p["id"]})
    assert job == 1
    assert settle(worker, db, p["id"]) == "success"
    got = client.get(f"/api/v1/payments/{p['id']}", headers=merchant["headers"]).get_json()
    assert got["status"] == "success" and got["error_code"] is None
    assert client.get(f"/api/v1/orders/{order['id']}", headers=merchant["headers"]).get_json()["status"] == "paid"


def test_payment_created_event_commits_with_the_payment(client, db, make_merchant):
    """No URL, no event; a URL set a moment ago (while the API still has the merchant cached as
    having none) gets the next payment's payment.created, written with the payment."""
    m = make_merchant()
    first = create_payment(client, m)
    db.execute("UPDATE merchants SET webhook_url = 'http://127.0.0.1:9/hook' WHERE id = %(id)s", {"id": m["id"]})
    assert auth._auth_cache[m["api_key"]][1]["has_webhook_url"] is False  # the API still thinks: no URL
    second = create_payment(client, m)
    events = db.values("SELECT payload->'data'->'payment'->>'id' FROM webhook_logs "
                             "WHERE merchant_id = %(m)s AND event = 'payment.created'", {"m": m["id"]})
    assert events == [second["id"]]
    jobs = db.value("SELECT count(*) FROM jobs WHERE kind = 'payment.settle' AND payload->>'payment_id' = ANY(%(ids)s)", {"ids": [first["id"], second["id"]]})
    assert jobs == 2


@pytest.mark.parametrize("url_set", ["before", "after the merchant was cached"])
def test_no_payment_without_its_event(client, db, make_merchant, monkeypatch, url_set):
    """The payment.created event is part of the payment's transaction: when it cannot be written,
    neither the payment nor its settlement job exists."""
    m = make_merchant(webhook_url="http://127.0.0.1:9/hook" if url_set == "before" else None)
    order = create_order(client, m)
    if url_set != "before":
        db.execute("UPDATE merchants SET webhook_url = 'http://127.0.0.1:9/hook' WHERE id = %(id)s", {"id": m["id"]})

    def unavailable(*args, **kwargs):
        raise RuntimeError("webhook_logs unavailable")

    monkeypatch.setattr(webhooks, "emit_events", unavailable)
    jobs = "SELECT count(*) FROM jobs WHERE kind = 'payment.settle'"
    before = db.value(jobs)
    r = client.post("/api/v1/payments", json={"order_id": order["id"], "method": "upi", "vpa": "a@b"},
                    headers=m["headers"])
    assert r.status_code == 500 and r.get_json()["error"]["code"] == "SERVER_ERROR"
    assert count(db, "payments", m["id"]) == 0
    assert db.value(jobs) == before


def test_paying_a_paid_order_is_400(client, db, worker, merchant):
    order, _ = paid_payment(client, db, worker, merchant)
    for path, h in [("/api/v1/payments", merchant["headers"]), ("/api/v1/payments/public", {})]:
        r = client.post(path, json={"order_id": order["id"], "method": "upi", "vpa": "a@b"}, headers=h)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "payments", merchant["id"]) == 1


@pytest.mark.parametrize("webhook_url", [None, "http://127.0.0.1:9/hook"], ids=["no URL", "URL"])
def test_an_orders_error_comes_before_a_bad_method(client, db, worker, make_merchant, webhook_url):
    """A payment with both a bad VPA and an order that cannot be paid names the order's problem,
    whichever way the payment would have been written."""
    m = make_merchant(webhook_url=webhook_url)
    order, _ = paid_payment(client, db, worker, m)
    other = create_order(client, m, 5000)
    cases = [({"order_id": order["id"]}, "Order is already paid."),
             ({"order_id": other["id"], "amount": 4000}, "Payment amount must equal the order amount."),
             ({"order_id": "order_AAAAAAAAAAAAAAAA"}, "Order not found.")]
    for fields, message in cases:
        for vpa in ("no-at-sign", "ok@bank"):
            r = client.post("/api/v1/payments", json={"method": "upi", "vpa": vpa, **fields}, headers=m["headers"])
            assert r.status_code in (400, 404) and r.get_json()["error"]["description"] == message, (vpa, r.get_json())
    assert count(db, "payments", m["id"]) == 1


def test_get_payment(client, merchant):
    order = create_order(client, merchant)
    p = pay(client, merchant, order["id"], "card")
    r = client.get(f"/api/v1/payments/{p['id']}", headers=merchant["headers"])
    assert r.status_code == 200
    got = r.get_json()
    for key in ("updated_at", "captured", "error_code", "error_description"):
        assert key in got
    assert got["captured"] is False and got["error_code"] is None and got["error_description"] is None
    assert TIME_RE.match(got["updated_at"]) and got == p


@pytest.mark.parametrize("payment_id", ["pay_AAAAAAAAAAAAAAAA", "pay_%00", "nope"])
def test_unknown_payment_is_404(client, merchant, payment_id):
    for path, h in [(f"/api/v1/payments/{payment_id}", merchant["headers"]), (f"/api/v1/payments/{payment_id}/public", {})]:
        r = client.get(path, headers=h)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_public_poll_view_has_exactly_the_spec_fields(client, db, worker, merchant):
    order = create_order(client, merchant, 2500)
    p = pay(client, merchant, order["id"], "card")
    r = client.get(f"/api/v1/payments/{p['id']}/public")  # no credentials
    assert r.status_code == 200
    assert r.get_json() == {"id": p["id"], "order_id": order["id"], "status": "pending", "amount": 2500,
                            "currency": "INR", "method": "card"}
    settle(worker, db, p["id"])
    assert client.get(f"/api/v1/payments/{p['id']}/public").get_json()["status"] == "success"


def test_public_payment_create(client, db, worker, merchant):
    """The checkout's call: no credentials, the merchant is the order's."""
    order = create_order(client, merchant, 4200)
    r = client.post("/api/v1/payments/public", json={"order_id": order["id"], "method": "upi", "vpa": "x@ybl"})
    assert r.status_code == 201
    p = r.get_json()
    assert set(p) == PUBLIC_FIELDS
    assert (p["order_id"], p["amount"], p["currency"], p["method"], p["status"]) == (order["id"], 4200, "INR", "upi", "pending")
    full = client.get(f"/api/v1/payments/{p['id']}", headers=merchant["headers"]).get_json()
    assert full["merchant_id"] == merchant["id"] and full["vpa"] == "x@ybl"
    assert settle(worker, db, p["id"]) == "success"


def test_public_payment_of_unknown_order_is_404(client):
    r = client.post("/api/v1/payments/public", json={"order_id": "order_AAAAAAAAAAAAAAAA", "method": "upi", "vpa": "a@b"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_payment_endpoints_need_credentials(client, merchant):
    order = create_order(client, merchant)
    p = pay(client, merchant, order["id"])
    for method, path in [("POST", "/api/v1/payments"), ("GET", "/api/v1/payments"), ("GET", f"/api/v1/payments/{p['id']}"),
                         ("POST", f"/api/v1/payments/{p['id']}/capture")]:
        r = client.open(path, method=method, json={"order_id": order["id"], "method": "upi", "vpa": "a@b", "amount": 50000})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "AUTHENTICATION_ERROR", path


# ---- lists -------------------------------------------------------------------------------------

def test_list_payments(client, merchant, make_merchant):
    made = [create_payment(client, merchant) for _ in range(12)]
    create_payment(client, make_merchant())
    r = client.get("/api/v1/payments", headers=merchant["headers"])
    body = r.get_json()
    assert list(body) == ["data", "total", "limit", "offset"]
    assert (body["total"], body["limit"], body["offset"]) == (12, 10, 0)
    assert [p["id"] for p in body["data"]] == [p["id"] for p in reversed(made)][:10]
    body = client.get("/api/v1/payments?count=5&skip=10", headers=merchant["headers"]).get_json()
    assert (body["limit"], body["offset"]) == (5, 10)
    assert [p["id"] for p in body["data"]] == [made[1]["id"], made[0]["id"]]
    assert client.get("/api/v1/payments?limit=500", headers=merchant["headers"]).get_json()["limit"] == 100
    assert client.get("/api/v1/payments?offset=-1", headers=merchant["headers"]).status_code == 400


# ---- capture -------------------------------------------------------------------------------------

def test_capture_needs_a_successful_payment(client, db, worker, merchant):
    order = create_order(client, merchant, 9900)
    p = pay(client, merchant, order["id"])
    r = client.post(f"/api/v1/payments/{p['id']}/capture", json={"amount": 9900}, headers=merchant["headers"])
    assert r.status_code == 400
    assert r.get_json()["error"] == {"code": "BAD_REQUEST_ERROR", "description": "Payment not in capturable state"}
    settle(worker, db, p["id"])
    r = client.post(f"/api/v1/payments/{p['id']}/capture", json={"amount": 9900}, headers=merchant["headers"])
    assert r.status_code == 200
    got = r.get_json()
    assert got["captured"] is True and got["status"] == "success" and got["id"] == p["id"]
    assert client.get(f"/api/v1/payments/{p['id']}", headers=merchant["headers"]).get_json()["captured"] is True
    # a second capture is refused and changes nothing
    r = client.post(f"/api/v1/payments/{p['id']}/capture", json={"amount": 9900}, headers=merchant["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"


def test_failed_payment_is_not_capturable(client, db, merchant):
    order = create_order(client, merchant, 9900)
    p = pay(client, merchant, order["id"])
    db.execute("UPDATE payments SET status = 'failed', error_code = 'PAYMENT_FAILED', "
                    "error_description = 'declined' WHERE id = %(id)s", {"id": p["id"]})
    r = client.post(f"/api/v1/payments/{p['id']}/capture", json={"amount": 9900}, headers=merchant["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["description"] == "Payment not in capturable state"
    got = client.get(f"/api/v1/payments/{p['id']}", headers=merchant["headers"]).get_json()
    assert (got["status"], got["error_code"], got["error_description"]) == ("failed", "PAYMENT_FAILED", "declined")


@pytest.mark.parametrize("body", [{}, {"amount": 9899}, {"amount": 9900.0}, {"amount": "9900"}, {"amount": True},
                                  {"amount": 9900, "extra": 1}, {"amount": -9900}])
def test_bad_capture_is_400_and_leaves_it_uncaptured(client, db, worker, merchant, body):
    _, p = paid_payment(client, db, worker, merchant, 9900)
    r = client.post(f"/api/v1/payments/{p['id']}/capture", json=body, headers=merchant["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert client.get(f"/api/v1/payments/{p['id']}", headers=merchant["headers"]).get_json()["captured"] is False


def test_capture_of_unknown_payment_is_404(client, merchant):
    r = client.post("/api/v1/payments/pay_AAAAAAAAAAAAAAAA/capture", json={"amount": 100}, headers=merchant["headers"])
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


# ---- card data never stored ------------------------------------------------------------------

CARDS = [("4111111111111111", "737"), ("5555555555554444", "8812"), ("378282246310005", "9431"),
         ("6011111111111117", "5207")]


def test_database_holds_neither_card_number_nor_cvv(client, db, worker, make_merchant, receiver, caplog):
    """After card payments (private and public, accepted, settled, replayed, refunded, and refused),
    no column of any table holds a full card number or a CVV; the webhooks and logs do not either."""
    caplog.set_level(logging.DEBUG)
    hook = receiver()
    merchant = make_merchant(webhook_url=hook.url)  # so the events' payloads are stored and sent too
    for i, (number, cvv) in enumerate(CARDS):
        order = create_order(client, merchant, 10000 + i)
        card = dict(CARD, number=number, cvv=cvv)
        # refused first: the spaced number with a bad CVV, then with an expired date
        spaced = " ".join(number[j:j + 4] for j in range(0, len(number), 4))
        for bad in (dict(card, number=spaced, cvv=cvv + "00"), dict(card, number=spaced, expiry_year=2001)):
            assert client.post("/api/v1/payments", json={"order_id": order["id"], "method": "card", "card": bad},
                               headers=merchant["headers"]).status_code == 400
        path, h = ("/api/v1/payments", headers(merchant, **{"Idempotency-Key": f"card-{i}"})) if i % 2 else \
                  ("/api/v1/payments/public", JSON)
        body = json.dumps({"order_id": order["id"], "method": "card", "card": card})
        r = client.post(path, data=body, headers=h)
        assert r.status_code == 201
        if i % 2:
            assert client.post(path, data=body, headers=h).status_code == 201  # replayed
        assert settle(worker, db, r.get_json()["id"]) == "success"
        assert client.post(f"/api/v1/payments/{r.get_json()['id']}/refunds", json={"amount": 100},
                           headers=merchant["headers"]).status_code == 201
    hook.wait_for(4, event="payment.success")
    for _ in range(10):  # process the refunds and the deliveries emitted so far
        if not worker.step():
            break

    tables = db.values("SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
    assert {"payments", "jobs", "webhook_logs", "idempotency_keys", "refunds"} <= set(tables)
    dump = "\n".join(row for t in tables for row in db.values(f'SELECT row_to_json(t)::text FROM "{t}" t'))
    assert "1111" in dump  # the scan sees the payments (last four digits are kept)
    sent = "\n".join(r["body"].decode() for r in hook.requests)
    logged = "\n".join(rec.getMessage() + str(rec.__dict__) for rec in caplog.records)
    for number, cvv in CARDS:
        for haystack, where in [(dump, "database"), (sent, "webhooks"), (logged, "logs")]:
            assert number not in haystack, f"card number in the {where}"
            # as a string, or under a cvv key (a bare number would match any id or count of the dump)
            assert f'"{cvv}"' not in haystack and '"cvv":' not in haystack, f"CVV in the {where}"


def test_list_payments_by_status(client, db, worker, merchant):
    _, done = paid_payment(client, db, worker, merchant)
    pending = create_payment(client, merchant)  # after the worker's step
    pending_list = client.get("/api/v1/payments?status=pending", headers=merchant["headers"]).get_json()
    assert [p["id"] for p in pending_list["data"]] == [pending["id"]] and pending_list["total"] == 1
    success_list = client.get("/api/v1/payments?status=success", headers=merchant["headers"]).get_json()
    assert [p["id"] for p in success_list["data"]] == [done["id"]]
    for bad in ("paid", "%00", "SUCCESS"):
        r = client.get(f"/api/v1/payments?status={bad}", headers=merchant["headers"])
        assert r.status_code == 400 and r.get_json()["error"]["field"] == "status"


def test_an_old_database_with_several_payments_in_flight_upgrades_and_is_paid_once(app, client, db, worker,
                                                                                     merchant):
    """A database from before one payment in flight per order was enforced, where an order has three
    payments pending: migration 0001 still applies (the unique index leaves those rows out), a new
    payment of that order waits for them (409), and when they settle together exactly one succeeds,
    the others fail with the reason, and the order is paid once (the shopper is never charged twice)."""
    order = create_order(client, merchant)
    together = [pay(client, merchant, order["id"])]
    db.execute("DROP INDEX payments_one_in_flight_per_order")
    db.execute("ALTER TABLE payments DROP COLUMN single_flight")
    try:
        for _ in range(2):
            together.append({"id": new_id("pay_")})
            db.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa) "
                            "SELECT %(id)s, order_id, merchant_id, amount, currency, method, vpa FROM payments WHERE id = %(p)s", {"id": together[-1]["id"], "p": together[0]["id"]})
            jobs.enqueue(db, payments.SETTLE, {"payment_id": together[-1]["id"]})
    finally:
        db.execute("DELETE FROM schema_migrations WHERE version = '0001'")  # as if made before migrations
        migrate.migrate(app.config["DATABASE_URL"])
    assert db.value("SELECT count(*) FROM payments WHERE order_id = %(o)s AND single_flight IS NULL", {"o": order["id"]}) == 3
    r = client.post("/api/v1/payments", json={"order_id": order["id"], "method": "upi", "vpa": "a@bank"},
                    headers=merchant["headers"])
    assert r.status_code == 409 and "in progress" in r.get_json()["error"]["description"]
    for p in together:
        settle(worker, db, p["id"])
    rows = db.all("SELECT id, status, error_code, error_description FROM payments WHERE order_id = %(o)s", {"o": order["id"]})
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "success"]
    assert {(r["error_code"], r["error_description"]) for r in rows if r["status"] == "failed"} == {
        ("PAYMENT_FAILED", "Order is already paid by another payment")}
    assert client.get(f"/api/v1/orders/{order['id']}", headers=merchant["headers"]).get_json()["status"] == "paid"


# ---- one payment in flight, 20 attempts per order ---------------------------------------------------

def _post_payment(client, merchant, endpoint, order_id, vpa="shopper@okbank", key=None):
    """POST a UPI payment to the merchant's endpoint or the checkout's public one."""
    path, h = ("/api/v1/payments", dict(merchant["headers"])) if endpoint == "private" else ("/api/v1/payments/public", {})
    if key:
        h["Idempotency-Key"] = key
    return client.post(path, json={"order_id": order_id, "method": "upi", "vpa": vpa}, headers=h)


def _fail_in_flight(app, worker, db, monkeypatch, order_id):
    """Let the real worker settle the order's payment in flight as declined by the bank."""
    pid = db.value("SELECT id FROM payments WHERE order_id = %(o)s AND status IN ('pending', 'processing')", {"o": order_id})
    with monkeypatch.context() as m:
        m.setitem(app.config, "TEST_PAYMENT_SUCCESS", False)
        assert settle(worker, db, pid) == "failed"


@pytest.mark.parametrize("endpoint", ["private", "public"])
def test_a_second_payment_while_one_is_in_flight_is_409_and_a_retry_after_a_failure_works(
        app, client, db, worker, monkeypatch, make_merchant, receiver, endpoint):
    m = make_merchant(webhook_url=receiver().url)
    order = create_order(client, m)
    first = _post_payment(client, m, endpoint, order["id"])
    assert first.status_code == 201
    for vpa in ("shopper@okbank", "other@okbank"):  # the same details again, or others
        r = _post_payment(client, m, endpoint, order["id"], vpa)
        assert r.status_code == 409, r.get_json()
        assert r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
        assert "payment is already in progress for this order" in r.get_json()["error"]["description"]
    assert count(db, "payments", m["id"]) == 1
    assert count(db, "webhook_logs", m["id"]) == 1  # payment.created of the first only
    db.execute("UPDATE payments SET status = 'processing' WHERE id = %(id)s", {"id": first.get_json()["id"]})
    assert _post_payment(client, m, endpoint, order["id"]).status_code == 409  # processing is in flight too
    _fail_in_flight(app, worker, db, monkeypatch, order["id"])
    again = _post_payment(client, m, endpoint, order["id"])  # the checkout's Try again after a failure
    assert again.status_code == 201 and again.get_json()["id"] != first.get_json()["id"]
    assert count(db, "payments", m["id"]) == 2


@pytest.mark.parametrize("endpoint", ["private", "public"])
def test_an_order_takes_at_most_20_payment_attempts(app, client, db, worker, monkeypatch, merchant, endpoint):
    order = create_order(client, merchant)
    first = _post_payment(client, merchant, endpoint, order["id"], key="attempt-1")
    assert first.status_code == 201
    _fail_in_flight(app, worker, db, monkeypatch, order["id"])
    for i in range(2, 21):
        assert _post_payment(client, merchant, endpoint, order["id"], key=f"attempt-{i}").status_code == 201
        _fail_in_flight(app, worker, db, monkeypatch, order["id"])
    r = _post_payment(client, merchant, endpoint, order["id"], key="attempt-21")
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"] == {"code": "BAD_REQUEST_ERROR", "field": "order_id",
                                     "description": "This order has reached its limit of 20 payment attempts."}
    assert count(db, "payments", merchant["id"]) == 20
    # An idempotent replay still answers the first payment, byte for byte.
    replay = _post_payment(client, merchant, endpoint, order["id"], key="attempt-1")
    assert replay.status_code == 201 and replay.get_data() == first.get_data()


@pytest.mark.parametrize("endpoint", ["private", "public"])
def test_simultaneous_payments_of_one_order_make_exactly_one(client, db, merchant, live_api, endpoint):
    """Over real HTTP, 8 payments of one order at once (different details, no key): one 201, the
    others 409; one payment and one settlement job in the database."""
    order = create_order(client, merchant)
    path = "/api/v1/payments" if endpoint == "private" else "/api/v1/payments/public"
    h = headers(merchant) if endpoint == "private" else JSON
    start = threading.Barrier(8)
    codes = [None] * 8

    def one(i):
        with requests.Session() as s:
            start.wait()
            body = json.dumps({"order_id": order["id"], "method": "upi", "vpa": f"race{i}@bank"})
            codes[i] = s.post(f"{live_api.url}{path}", data=body, headers=h, timeout=30).status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * 7
    assert count(db, "payments", merchant["id"]) == 1
    assert db.value("SELECT count(*) FROM jobs WHERE kind = 'payment.settle' AND payload->>'payment_id' IN "
                           "(SELECT id FROM payments WHERE order_id = %(o)s)", {"o": order["id"]}) == 1
