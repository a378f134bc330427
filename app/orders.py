"""Orders: what a merchant wants to be paid (amount in paise), paid by at most one payment."""
import json

from . import db, ids, rollups
from .errors import NotFound
from .ids import new_id

COLUMNS = "id, merchant_id, amount, currency, receipt, notes, status, created_at, updated_at"


def check_id(order_id):
    """404 for anything that cannot be an order id."""
    ids.check("order_", order_id, "Order", field="order_id")


def create(c, merchant_id, data):
    """Insert an order (validated by schemas.OrderCreate): one statement, committed by itself
    unless the caller has a transaction open (an Idempotency-Key's)."""
    return db.one(c, f"INSERT INTO orders (id, merchant_id, amount, currency, receipt, notes) "
                     f"VALUES (%(id)s, %(m)s, %(amount)s, %(currency)s, %(receipt)s, %(notes)s::jsonb) "
                     f"RETURNING {COLUMNS}",
                  {"id": new_id("order_"), "m": merchant_id, "amount": data["amount"],
                   "currency": data["currency"].upper(), "receipt": data["receipt"], "notes": json.dumps(data["notes"])})


def get(c, merchant_id, order_id, lock=False):
    """The merchant's order or 404 (another merchant's order is 404 too)."""
    check_id(order_id)
    row = db.one(c, f"SELECT {COLUMNS} FROM orders WHERE id = %(id)s AND merchant_id = %(m)s"
                    + (" FOR UPDATE" if lock else ""), {"id": order_id, "m": merchant_id})
    if row is None:
        raise NotFound("Order not found.", field="order_id")
    return row


def get_public(c, order_id):
    """What the checkout shows: amount, currency, status, receipt and the merchant's name."""
    check_id(order_id)
    row = db.one(c, "SELECT o.id, o.amount, o.currency, o.status, o.receipt, o.merchant_id, m.name AS merchant_name, m.api_key "
                    "FROM orders o JOIN merchants m ON m.id = o.merchant_id WHERE o.id = %(id)s AND m.is_active",
                 {"id": order_id})
    if row is None:
        raise NotFound("Order not found.", field="order_id")
    return row


def list_(c, merchant_id, limit, offset, window=(None, None)):
    """The merchant's orders, newest first."""
    return db.page(c, "orders", COLUMNS, "merchant_id = %(m)s", {"m": merchant_id}, limit, offset, window,
                   count=rollups.counter(c, "orders", merchant_id))
