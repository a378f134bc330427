"""/api/v1/payments/{id}/refunds and /api/v1/refunds"""
from flask import g, request

from .. import db, refunds
from ..auth import api_auth
from ..idempotency import idempotent
from ..schemas import REFUND, RefundCreate, load
from . import bp
from .common import json_body, listing, paging, settings


@bp.post("/payments/<payment_id>/refunds")
@bp.post("/payments/<payment_id>/refund")
@api_auth
@idempotent("Idempotency-Key", "X-Refund-Idempotency")
def create_refund(payment_id):
    # An empty body means "refund the rest", as Razorpay's client sends it.
    data = load(RefundCreate, json_body() if request.get_data(cache=True).strip() else {})
    return REFUND.dump(refunds.create(db.conn(), g.merchant, payment_id, data, settings())), 201


@bp.get("/payments/<payment_id>/refunds")
@api_auth
def list_refunds(payment_id):
    limit, offset, _ = paging()
    rows, total = refunds.list_for_payment(db.conn(), g.merchant["id"], payment_id, limit, offset)
    return listing(REFUND, rows, total, limit, offset)


@bp.get("/refunds/<refund_id>")
@api_auth
def get_refund(refund_id):
    return REFUND.dump(refunds.get(db.conn(), g.merchant["id"], refund_id))
