"""Merchants are isolated: another merchant's order, payment, refund, event, webhook endpoint and
delivery ids are 404 everywhere."""
import pytest

from helpers import create_order, paid_payment, pay


@pytest.fixture
def theirs(client, db, worker, make_merchant, receiver):
    """Merchant A's objects: a paid order with a refunded payment, and an unpaid order, and the
    events, webhook endpoint and deliveries they raised."""
    a = make_merchant(webhook_url=receiver().url)
    order, payment = paid_payment(client, db, worker, a, 10000)
    r = client.post(f"/api/v1/payments/{payment['id']}/refunds", json={"amount": 1000}, headers=a["headers"])
    assert r.status_code == 201
    unpaid = create_order(client, a, 20000)
    ids = {"event": "SELECT id FROM events", "endpoint": "SELECT id FROM webhook_endpoints",
           "log": "SELECT id::text FROM webhook_logs"}
    ids = {k: db.value(sql + " WHERE merchant_id = %(m)s LIMIT 1", {"m": a["id"]}) for k, sql in ids.items()}
    assert all(ids.values()), ids  # a missing one would be a 404 whatever the isolation
    return dict(ids, merchant=a, order=order, payment=payment, refund=r.get_json(), unpaid=unpaid)


def test_other_merchants_ids_are_404_everywhere(client, db, theirs, merchant):
    o, p, rf, unpaid = theirs["order"]["id"], theirs["payment"]["id"], theirs["refund"]["id"], theirs["unpaid"]["id"]
    me = merchant["headers"]
    calls = [
        ("GET", f"/api/v1/orders/{o}", None),
        ("GET", f"/api/v1/payments/{p}", None),
        ("GET", f"/api/v1/payments/{p}/refunds", None),
        ("GET", f"/api/v1/refunds/{rf}", None),
        ("POST", "/api/v1/payments", {"order_id": unpaid, "method": "upi", "vpa": "me@bank"}),
        ("POST", f"/api/v1/payments/{p}/capture", {"amount": 10000}),
        ("POST", f"/api/v1/payments/{p}/refunds", {"amount": 100}),
        ("POST", f"/api/v1/payments/{p}/refund", {"amount": 100}),
        ("POST", f"/api/v1/payments/{p}/refund", None),
        ("GET", f"/api/v1/orders/{o}/payments", None),
        ("GET", f"/api/v1/payments/{p}/refunds/{rf}", None),
        ("POST", "/api/v1/refunds", {"payment_id": p, "amount": 100}),
        ("GET", f"/api/v1/events/{theirs['event']}", None),
        ("GET", f"/api/v1/webhooks/endpoints/{theirs['endpoint']}", None),
        ("POST", f"/api/v1/webhooks/endpoints/{theirs['endpoint']}/replay", {"since": 0}),
        ("POST", f"/api/v1/webhooks/{theirs['log']}/retry", None),
    ]
    for method, path, body in calls:
        r = client.open(path, method=method, json=body, headers=me) if body is not None else \
            client.open(path, method=method, headers=me)
        assert r.status_code == 404, (method, path, r.get_json())
        assert r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"
    # nothing of theirs changed, nothing was created for anyone
    assert db.value("SELECT count(*) FROM payments WHERE order_id = %(o)s", {"o": unpaid}) == 0
    assert db.value("SELECT captured FROM payments WHERE id = %(p)s", {"p": p}) is False
    assert db.value("SELECT count(*) FROM refunds WHERE payment_id = %(p)s", {"p": p}) == 1
    assert db.value("SELECT count(*) FROM payments WHERE merchant_id = %(m)s", {"m": merchant["id"]}) == 0


def test_other_merchants_objects_are_not_listed(client, theirs, merchant):
    for path in ("/api/v1/orders", "/api/v1/payments", "/api/v1/refunds", "/api/v1/events", "/api/v1/webhooks",
                 "/api/v1/webhooks/endpoints"):
        body = client.get(path, headers=merchant["headers"]).get_json()
        assert body["data"] == [] and body["total"] == 0
    # and the owner sees them
    a = theirs["merchant"]["headers"]
    assert client.get("/api/v1/orders", headers=a).get_json()["total"] == 2
    assert client.get("/api/v1/payments", headers=a).get_json()["total"] == 1
    assert client.get(f"/api/v1/refunds/{theirs['refund']['id']}", headers=a).status_code == 200


def test_owner_still_reaches_everything(client, theirs):
    a = theirs["merchant"]["headers"]
    p = theirs["payment"]["id"]
    assert client.get(f"/api/v1/orders/{theirs['order']['id']}", headers=a).status_code == 200
    assert client.get(f"/api/v1/payments/{p}/refunds", headers=a).get_json()["total"] == 1
    assert client.post(f"/api/v1/payments/{p}/capture", json={"amount": 10000}, headers=a).status_code == 200
    assert pay(client, theirs["merchant"], theirs["unpaid"]["id"])["order_id"] == theirs["unpaid"]["id"]


def test_public_views_show_no_merchant_secrets(client, theirs):
    order = client.get(f"/api/v1/orders/{theirs['order']['id']}/public").get_json()
    payment = client.get(f"/api/v1/payments/{theirs['payment']['id']}/public").get_json()
    assert set(order) == {"id", "amount", "currency", "status", "merchant_name"}
    assert set(payment) == {"id", "order_id", "status", "amount", "currency", "method"}
    blob = str(order) + str(payment)
    assert theirs["merchant"]["api_key"] not in blob and theirs["merchant"]["id"] not in blob
