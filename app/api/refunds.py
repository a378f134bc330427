"""/api/v1/payments/{id}/refunds and /api/v1/refunds"""
from flask import g, request

from .. import db, refunds
from ..auth import api_auth
from ..idempotency import idempotent
from ..schemas import REFUND, RefundCreate, RefundCreateForPayment, load
from . import bp
from .common import json_body, listing, paging, settings

IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-Refund-Idempotency")


@bp.post("/payments/<payment_id>/refunds")
@bp.post("/payments/<payment_id>/refund")
@api_auth
@idempotent(*IDEMPOTENCY_HEADERS)
def create_refund(payment_id):
    # An empty body means "refund the rest", as Razorpay's client sends it.
    data = load(RefundCreate, json_body() if request.get_data(cache=True).strip() else {})
    return REFUND.dump(refunds.create(db.conn(), g.merchant, payment_id, data, settings())), 201


@bp.post("/refunds")
@api_auth
@idempotent(*IDEMPOTENCY_HEADERS)
def create_refund_for_payment():
    """The Razorpay SDKs' refund.create: the payment is named in the body."""
    data = load(RefundCreateForPayment, json_body())
    payment_id = data.pop("payment_id")
    return REFUND.dump(refunds.create(db.conn(), g.merchant, payment_id, data, settings())), 201


@bp.get("/refunds")
@api_auth
def list_all_refunds():
    page = paging()
    rows, total = refunds.list_(db.conn(), g.merchant["id"], page.limit, page.offset, page.window)
    return listing(REFUND, rows, total, page)


@bp.get("/payments/<payment_id>/refunds")
@api_auth
def list_refunds(payment_id):
    page = paging()
    rows, total = refunds.list_for_payment(db.conn(), g.merchant["id"], payment_id, page.limit, page.offset,
                                           page.window)
    return listing(REFUND, rows, total, page)


@bp.get("/payments/<payment_id>/refunds/<refund_id>")
@api_auth
def get_payment_refund(payment_id, refund_id):
    return REFUND.dump(refunds.get_of_payment(db.conn(), g.merchant["id"], payment_id, refund_id))


@bp.get("/refunds/<refund_id>")
@api_auth
def get_refund(refund_id):
    return REFUND.dump(refunds.get(db.conn(), g.merchant["id"], refund_id))
