"""/api/v1/payments"""
from flask import g

from .. import db, orders, payments
from ..auth import api_auth
from ..schemas import PAYMENT, PAYMENT_PUBLIC, CaptureIn, PaymentCreate, PaymentListQuery, load
from ..idempotency import idempotent, once
from . import bp
from .common import json_body, listing, paging


@bp.post("/payments")
@api_auth
@idempotent()
def create_payment():
    data = load(PaymentCreate, json_body())
    return PAYMENT.dump(payments.create(db.conn(), g.merchant, data)), 201


@bp.post("/payments/public")
def create_payment_public():
    """The checkout page's call: no credentials, the merchant is the order's."""
    data = load(PaymentCreate, json_body())
    c = db.conn()
    merchant_id = orders.get_public(c, data["order_id"])["merchant_id"]
    # An Idempotency-Key here is scoped to the order (anyone can call this view, so it must not
    # claim the merchant's own keys): a double-clicked Pay button that sends one key makes one payment.
    return once(merchant_id, lambda: (PAYMENT_PUBLIC.dump(payments.create(c, {"id": merchant_id}, data)), 201),
                scope=data["order_id"])


@bp.get("/payments")
@api_auth
def list_payments():
    page = paging(PaymentListQuery)
    rows, total = payments.list_(db.conn(), g.merchant["id"], page.limit, page.offset, page.filters.get("status"),
                                 page.window)
    return listing(PAYMENT, rows, total, page)


@bp.get("/payments/<payment_id>")
@api_auth
def get_payment(payment_id):
    return PAYMENT.dump(payments.get(db.conn(), g.merchant["id"], payment_id))


@bp.get("/payments/<payment_id>/public")
def get_payment_public(payment_id):
    return PAYMENT_PUBLIC.dump(payments.get_public(db.conn(), payment_id))


@bp.post("/payments/<payment_id>/capture")
@api_auth
def capture_payment(payment_id):
    data = load(CaptureIn, json_body())
    c = db.conn()
    payment = payments.capture(c, g.merchant["id"], payment_id, data["amount"])
    return PAYMENT.dump(payment)
