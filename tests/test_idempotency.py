"""Idempotency: one object per (merchant, key), the stored response replayed byte-for-byte
for 24 h, 409 for another body, nothing stored on failure, and one payment under concurrent duplicates."""
import json
import threading

import pytest
import requests

from helpers import CARD, count, create_order, headers, paid_payment, settle


def post(client, merchant, path, body, key, header="Idempotency-Key"):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, headers=headers(merchant, **{header: key}))


def test_order_replay_is_byte_for_byte(client, db, merchant):
    first = post(client, merchant, "/api/v1/orders", {"amount": 50000, "receipt": "r1"}, "order-key-1")
    again = post(client, merchant, "/api/v1/orders", {"amount": 50000, "receipt": "r1"}, "order-key-1")
    assert first.status_code == again.status_code == 201
    assert first.get_data() == again.get_data()
    assert again.headers["Content-Type"] == "application/json"
    assert count(db, "orders", merchant["id"]) == 1


def test_payment_replay_is_byte_for_byte_even_after_it_settled(client, db, worker, merchant):
    order = create_order(client, merchant)
    body = {"order_id": order["id"], "method": "card", "card": CARD}
    first = post(client, merchant, "/api/v1/payments", body, "pay-key-1")
    assert first.status_code == 201
    assert settle(worker, db, first.get_json()["id"]) == "success"
    again = post(client, merchant, "/api/v1/payments", body, "pay-key-1")
    assert again.status_code == 201 and again.get_data() == first.get_data()  # the stored response, not a new read
    assert count(db, "payments", merchant["id"]) == 1


def test_same_key_other_body_is_409(client, db, merchant):
    assert post(client, merchant, "/api/v1/orders", {"amount": 50000}, "k-409").status_code == 201
    r = post(client, merchant, "/api/v1/orders", {"amount": 50001}, "k-409")
    assert r.status_code == 409
    err = r.get_json()["error"]
    assert err["code"] == "BAD_REQUEST_ERROR" and "different request" in err["description"]
    assert count(db, "orders", merchant["id"]) == 1


def test_same_key_on_another_endpoint_is_409(client, db, merchant):
    order = create_order(client, merchant)
    assert post(client, merchant, "/api/v1/orders", {"amount": 50000}, "shared").status_code == 201
    r = post(client, merchant, "/api/v1/payments", {"order_id": order["id"], "method": "upi", "vpa": "a@b"}, "shared")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "payments", merchant["id"]) == 0


@pytest.mark.parametrize("bad", [
    {"amount": 99}, {"amount": 500.0}, {"amount": 500, "x": 1}, "{not json",
])
def test_failed_validation_stores_nothing_and_the_key_stays_usable(client, db, merchant, bad):
    r = post(client, merchant, "/api/v1/orders", bad, "retry-me")
    assert r.status_code == 400
    assert db.value("SELECT count(*) FROM idempotency_keys WHERE merchant_id = %(m)s", {"m": merchant["id"]}) == 0
    r = post(client, merchant, "/api/v1/orders", {"amount": 50000}, "retry-me")
    assert r.status_code == 201
    assert count(db, "orders", merchant["id"]) == 1


@pytest.mark.parametrize("path, body", [("/api/v1/orders", {"amount": 50000}), ("/api/v1/payments", None)],
                         ids=["order", "payment"])
def test_object_and_key_commit_together(client, db, merchant, monkeypatch, path, body):
    """With a key, the new object joins the key's transaction (it does not commit on its own):
    when storing the response fails, there is neither the object nor a claimed key."""
    from app import idempotency

    body = body or {"order_id": create_order(client, merchant)["id"], "method": "upi", "vpa": "a@b"}
    table = path.rsplit("/", 1)[1]
    before = count(db, table, merchant["id"])

    def unavailable(*args, **kwargs):
        raise RuntimeError("cannot store the response")

    with monkeypatch.context() as m:
        m.setattr(idempotency, "json", type("NoJson", (), {"dumps": staticmethod(unavailable)}))
        assert post(client, merchant, path, body, "commit-together").status_code == 500
    assert count(db, table, merchant["id"]) == before
    assert post(client, merchant, path, body, "commit-together").status_code == 201
    assert count(db, table, merchant["id"]) == before + 1


def test_failed_payment_request_keeps_the_key_usable(client, db, merchant):
    order = create_order(client, merchant)
    r = post(client, merchant, "/api/v1/payments", {"order_id": order["id"], "method": "upi", "vpa": "bad"}, "pk")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "INVALID_VPA"
    r = post(client, merchant, "/api/v1/payments", {"order_id": order["id"], "method": "upi", "vpa": "good@bank"}, "pk")
    assert r.status_code == 201
    assert count(db, "payments", merchant["id"]) == 1


def test_expired_key_is_free_again(client, db, merchant):
    first = post(client, merchant, "/api/v1/orders", {"amount": 50000}, "old-key")
    row = db.one("SELECT created_at, expires_at FROM idempotency_keys WHERE merchant_id = %(m)s AND key = 'old-key'", {"m": merchant["id"]})
    assert (row["expires_at"] - row["created_at"]).total_seconds() == 24 * 3600
    db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
                    "WHERE merchant_id = %(m)s AND key = 'old-key'", {"m": merchant["id"]})
    second = post(client, merchant, "/api/v1/orders", {"amount": 60000}, "old-key")  # another body: no 409
    assert second.status_code == 201 and second.get_json()["id"] != first.get_json()["id"]
    third = post(client, merchant, "/api/v1/orders", {"amount": 60000}, "old-key")  # and it is stored anew
    assert third.get_data() == second.get_data()
    assert count(db, "orders", merchant["id"]) == 2


def test_keys_are_scoped_per_merchant(client, db, merchant, make_merchant):
    other = make_merchant()
    a = post(client, merchant, "/api/v1/orders", {"amount": 50000}, "same-key")
    b = post(client, other, "/api/v1/orders", {"amount": 50000}, "same-key")
    assert a.status_code == b.status_code == 201
    assert a.get_json()["id"] != b.get_json()["id"]
    assert b.get_json()["merchant_id"] == other["id"]
    assert count(db, "orders", merchant["id"]) == count(db, "orders", other["id"]) == 1


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Refund-Idempotency"])
def test_refund_keys(client, db, worker, merchant, header):
    _, p = paid_payment(client, db, worker, merchant, 10000)
    path = f"/api/v1/payments/{p['id']}/refunds"
    first = post(client, merchant, path, {"amount": 4000}, "rk-1", header)
    again = post(client, merchant, path, {"amount": 4000}, "rk-1", header)
    assert first.status_code == again.status_code == 201 and first.get_data() == again.get_data()
    assert post(client, merchant, path, {"amount": 4001}, "rk-1", header).status_code == 409
    assert db.value("SELECT count(*) FROM refunds WHERE payment_id = %(p)s", {"p": p["id"]}) == 1
    # a refund over the available amount stores nothing; the key works afterwards
    assert post(client, merchant, path, {"amount": 7000}, "rk-2", header).status_code == 400
    assert post(client, merchant, path, {"amount": 6000}, "rk-2", header).status_code == 201


def test_key_limits(client, db, merchant):
    r = post(client, merchant, "/api/v1/orders", {"amount": 500}, "k" * 256)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    r = post(client, merchant, "/api/v1/orders", {"amount": 500}, "tab\there")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "orders", merchant["id"]) == 0
    assert post(client, merchant, "/api/v1/orders", {"amount": 500}, "k" * 255).status_code == 201


def test_concurrent_duplicate_payments_make_one_payment(client, db, merchant, live_api):
    """20 requests with one key at once over real HTTP: exactly one payment; every answer is the
    stored 201 (the same payment) or a 409 while the first is in flight."""
    order = create_order(client, merchant)
    body = json.dumps({"order_id": order["id"], "method": "upi", "vpa": "race@bank"})
    start = threading.Barrier(20)
    results = [None] * 20

    def one(i):
        with requests.Session() as s:
            start.wait()
            r = s.post(f"{live_api.url}/api/v1/payments", data=body, timeout=30,
                       headers=headers(merchant, **{"Idempotency-Key": "race-key"}))
            results[i] = (r.status_code, r.content)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(db, "payments", merchant["id"]) == 1
    pid = db.value("SELECT id FROM payments WHERE merchant_id = %(m)s", {"m": merchant["id"]})
    created = [content for code, content in results if code == 201]
    assert created and all(code in (201, 409) for code, _ in results), [code for code, _ in results]
    assert all(content == created[0] for content in created)  # byte-for-byte the same response
    assert json.loads(created[0])["id"] == pid
    for code, content in results:
        if code == 409:
            assert json.loads(content)["error"]["code"] == "BAD_REQUEST_ERROR"
    assert db.value("SELECT count(*) FROM jobs WHERE kind = 'payment.settle' AND payload->>'payment_id' = %(p)s", {"p": pid}) == 1


def test_checkout_payment_with_a_key_makes_one_payment(client, db, merchant, make_merchant):
    """The public (checkout) endpoint honours Idempotency-Key too, scoped to the order."""
    order = create_order(client, merchant)
    body = json.dumps({"order_id": order["id"], "method": "upi", "vpa": "tap@bank"})
    h = {"Content-Type": "application/json", "Idempotency-Key": "double-click"}
    first = client.post("/api/v1/payments/public", data=body, headers=h)
    again = client.post("/api/v1/payments/public", data=body, headers=h)
    assert first.status_code == again.status_code == 201 and first.get_data() == again.get_data()
    assert count(db, "payments", merchant["id"]) == 1
    other = json.dumps({"order_id": order["id"], "method": "upi", "vpa": "other@bank"})
    assert client.post("/api/v1/payments/public", data=other, headers=h).status_code == 409
    # another merchant's order with the same key is a different scope
    theirs = create_order(client, (m2 := make_merchant()))
    body2 = json.dumps({"order_id": theirs["id"], "method": "upi", "vpa": "tap@bank"})
    assert client.post("/api/v1/payments/public", data=body2, headers=h).status_code == 201
    assert count(db, "payments", m2["id"]) == 1


def _public_pay(client, order_id, key, vpa="shopper@okbank"):
    return client.post("/api/v1/payments/public", json={"order_id": order_id, "method": "upi", "vpa": vpa},
                       headers={"Idempotency-Key": key})


def test_a_shopper_cannot_claim_the_merchants_idempotency_keys(client, db, merchant):
    """Anyone with an open order of the merchant could send the keys the merchant will use next
    (receipt_1002) through the checkout's endpoint; the merchant's own requests were then refused."""
    shop = create_order(client, merchant)
    assert _public_pay(client, shop["id"], "receipt_1002").status_code == 201
    r = post(client, merchant, "/api/v1/orders", {"amount": 1002}, "receipt_1002")
    assert r.status_code == 201, r.get_json()
    assert post(client, merchant, "/api/v1/orders", {"amount": 1002}, "receipt_1002").get_data() == r.get_data()
    # and the merchant's payment with a key a shopper used first
    theirs, shop2 = create_order(client, merchant), create_order(client, merchant)
    assert _public_pay(client, shop2["id"], "pay-1003").status_code == 201
    r = post(client, merchant, "/api/v1/payments", {"order_id": theirs["id"], "method": "upi", "vpa": "m@bank"},
             "pay-1003")
    assert r.status_code == 201, r.get_json()
    assert count(db, "orders", merchant["id"]) == 4 and count(db, "payments", merchant["id"]) == 3


def test_the_merchants_keys_do_not_block_a_shopper(client, db, merchant):
    """The other way round: a key the merchant used is no answer (nor a 409) for a shopper."""
    used = post(client, merchant, "/api/v1/orders", {"amount": 500}, "k-shared")
    assert used.status_code == 201
    shop = create_order(client, merchant)
    r = _public_pay(client, shop["id"], "k-shared")
    assert r.status_code == 201 and r.get_json()["order_id"] == shop["id"]
    assert count(db, "payments", merchant["id"]) == 1


def test_a_public_key_is_scoped_to_its_order(client, db, merchant):
    """One key on two orders of the same merchant (two shoppers' checkouts): two payments; the same
    key, order and body again (a double-clicked Pay): the first payment."""
    a, b = create_order(client, merchant), create_order(client, merchant)
    first = _public_pay(client, a["id"], "double-click")
    other = _public_pay(client, b["id"], "double-click", "someone@else")
    assert first.status_code == other.status_code == 201, other.get_json()
    assert first.get_json()["id"] != other.get_json()["id"]
    again = _public_pay(client, a["id"], "double-click")
    assert again.status_code == 201 and again.get_data() == first.get_data()
    assert count(db, "payments", merchant["id"]) == 2
