"""/api/v1/orders"""
from flask import g

from .. import db, orders, payments
from ..auth import api_auth
from ..idempotency import idempotent
from ..schemas import ORDER, ORDER_PUBLIC, PAYMENT, OrderCreate, load
from . import bp
from .common import json_body, listing, paging


@bp.post("/orders")
@api_auth
@idempotent()
def create_order():
    data = load(OrderCreate, json_body())
    return ORDER.dump(orders.create(db.conn(), g.merchant["id"], data)), 201


@bp.get("/orders")
@api_auth
def list_orders():
    page = paging()
    rows, total = orders.list_(db.conn(), g.merchant["id"], page.limit, page.offset, page.window)
    return listing(ORDER, rows, total, page)


@bp.get("/orders/<order_id>")
@api_auth
def get_order(order_id):
    return ORDER.dump(orders.get(db.conn(), g.merchant["id"], order_id))


@bp.get("/orders/<order_id>/payments")
@api_auth
def list_order_payments(order_id):
    page = paging()
    c = db.conn()
    orders.get(c, g.merchant["id"], order_id)  # 404 unless the order is the merchant's
    rows, total = payments.list_(c, g.merchant["id"], page.limit, page.offset, window=page.window, order_id=order_id)
    return listing(PAYMENT, rows, total, page)


@bp.get("/orders/<order_id>/public")
def get_order_public(order_id):
    return ORDER_PUBLIC.dump(orders.get_public(db.conn(), order_id))
