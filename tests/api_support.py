"""Shared steps of the merchant API tests: create an order, pay it, settle it with the real worker."""
import re

import pytest


from helpers import CARD, wait_until

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # 2026-01-15T10:31:00Z
JSON = {"Content-Type": "application/json"}


def headers(merchant, **extra):
    return dict(merchant["headers"], **JSON, **extra)


def create_order(client, merchant, amount=50000, **fields):
    r = client.post("/api/v1/orders", json=dict(fields, amount=amount), headers=merchant["headers"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def pay(client, merchant, order_id, method="upi", **fields):
    body = {"order_id": order_id, "method": method}
    if method == "upi":
        body["vpa"] = "shopper@okbank"
    else:
        body["card"] = dict(CARD)
    body.update(fields)
    r = client.post("/api/v1/payments", json=body, headers=merchant["headers"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def payment_status(db, payment_id):
    return db.value("SELECT status FROM payments WHERE id = %(id)s", {"id": payment_id})


def settle(worker, db, payment_id):
    """Run the real worker's steps until the payment is final (test mode: delay 0, success)."""
    def final():
        worker.step()
        return payment_status(db, payment_id) in ("success", "failed")

    wait_until(final, timeout=10, message=f"{payment_id} settled")
    return payment_status(db, payment_id)


def paid_payment(client, db, worker, merchant, amount=50000, method="upi"):
    """An order and a successful payment of it."""
    order = create_order(client, merchant, amount)
    payment = pay(client, merchant, order["id"], method)
    assert settle(worker, db, payment["id"]) == "success"
    return order, payment


def count(db, table, merchant_id):
    return db.value(f"SELECT count(*) FROM {table} WHERE merchant_id = %(m)s", {"m": merchant_id})


@pytest.fixture(scope="module")
def api_worker(app):
    """The real worker (worker.Worker) driven step by step in this process."""
    from worker import Worker

    w = Worker(app)
    yield w
    w.pool.shutdown(wait=True)
    w.db.close()
