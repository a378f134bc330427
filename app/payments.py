"""Payments: accept (the payment, its settlement job and its event commit together), settle, capture."""
import contextlib
import json
import random

import psycopg
from psycopg.pq import TransactionStatus

from . import db, ids, jobs, logs, metrics, orders, rollups, validation, webhooks
from .errors import ApiError, Conflict, ExpiredCard, InvalidCard, InvalidVpa, NotFound
from .events import PAYMENT_CREATED, PAYMENT_FAILED, PAYMENT_SUCCESS
from .ids import new_id
from .schemas import PAYMENT

SETTLE = "payment.settle"
SETTLED_EVENTS = {"success": PAYMENT_SUCCESS, "failed": PAYMENT_FAILED}  # the event a settlement emits
COLUMNS = ("id, order_id, merchant_id, amount, currency, method, status, vpa, card_network, card_last4, "
           "captured, error_code, error_description, notes, created_at, updated_at")


def _check_id(payment_id):
    ids.check("pay_", payment_id, "Payment")


def check_method(data):
    """The payment method's rules for its details. Returns the columns to store: the VPA, or only the
    card's network and last four digits (the number and CVV go no further than this function)."""
    if data["method"] == "upi":
        if not validation.valid_vpa(data["vpa"]):
            raise InvalidVpa("Invalid VPA: expected the form name@bank.", field="vpa")
        return {"vpa": data["vpa"], "card_network": None, "card_last4": None}
    card = data["card"]
    if not validation.valid_card_number(card["number"]):
        raise InvalidCard("Invalid card number.", field="card.number")
    if not validation.valid_cvv(card["cvv"]):
        raise InvalidCard("Invalid CVV: expected 3 or 4 digits.", field="card.cvv")
    if not validation.expiry_ok(card["expiry_month"], card["expiry_year"]):
        raise ExpiredCard("Card expired or expiry date invalid.", field="card.expiry_month")
    digits = validation.normalize_card_number(card["number"])
    return {"vpa": None, "card_network": validation.card_network(digits), "card_last4": digits[-4:]}


def _check_order(order, data):
    """Why a payment for this order is refused, if it is."""
    if order["status"] != "created":
        raise ApiError("Order is already paid.", field="order_id")
    if "amount" in data and data["amount"] != order["amount"]:
        raise ApiError("Payment amount must equal the order amount.", field="amount")
    if "currency" in data and data["currency"].upper() != order["currency"]:
        raise ApiError("Payment currency must equal the order currency.", field="currency")


MAX_ATTEMPTS = 20  # payments per order, whatever their status: a shopper (or a script) may not retry forever
IN_FLIGHT_INDEX = "payments_one_in_flight_per_order"

# One statement: read the order and its payments so far, insert the payment and its settlement job
# when the order allows it, and tell whether the merchant takes webhooks. With %(alone)s the
# statement is the whole transaction (autocommit), so it inserts only for a merchant without a
# webhook URL: one with a URL needs its payment.created event in the same transaction. The count
# sees only committed payments: a concurrent one still in its transaction is caught by the unique
# index IN_FLIGHT_INDEX instead.
_CREATE = f"""
WITH o AS (SELECT id, amount, currency, status FROM orders WHERE id = %(order_id)s AND merchant_id = %(m)s),
     m AS (SELECT webhook_url IS NOT NULL AS has_url FROM merchants WHERE id = %(m)s),
     n AS (SELECT count(*) AS attempts, count(*) FILTER (WHERE status IN ('pending', 'processing')) AS in_flight
             FROM payments WHERE order_id = %(order_id)s),
     p AS (INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4, notes)
           SELECT %(id)s, o.id, %(m)s, o.amount, o.currency, %(method)s, %(vpa)s, %(card_network)s, %(card_last4)s,
                  %(notes)s::jsonb
             FROM o, m, n
            WHERE o.status = 'created'
              AND o.amount = coalesce(%(amount)s::integer, o.amount)
              AND o.currency = coalesce(%(currency)s::text, o.currency)
              AND n.in_flight = 0 AND n.attempts < {MAX_ATTEMPTS}
              AND NOT (%(alone)s AND m.has_url)
           RETURNING {COLUMNS}),
     j AS ({jobs.insert_sql(SETTLE, "jsonb_strip_nulls(jsonb_build_object('payment_id', p.id, "
                                     "'request_id', %(request_id)s::text))", "p")})
SELECT o.status AS order_status, o.amount AS order_amount, o.currency AS order_currency, m.has_url,
       n.attempts, n.in_flight, p.*
  FROM o CROSS JOIN m CROSS JOIN n LEFT JOIN p ON true
"""


def _in_progress():
    return Conflict("A payment is already in progress for this order; wait for it to complete.",
                    field="order_id")


def create(c, merchant, data):
    """Accept a payment for one of the merchant's orders: the payment row, its settlement job and
    the payment.created event commit together, or not at all. One payment of an order may be in
    flight at a time, and an order takes MAX_ATTEMPTS payments at most."""
    try:
        method = check_method(data)
    except ApiError:
        _check_order(orders.get(c, merchant["id"], data["order_id"]), data)  # the order's errors come first
        raise
    orders.check_id(data["order_id"])
    params = dict(method, id=new_id("pay_"), order_id=data["order_id"], m=merchant["id"], method=data["method"],
                  amount=data.get("amount"), currency=data["currency"].upper() if "currency" in data else None,
                  notes=json.dumps(data["notes"]), request_id=logs.current_request_id())
    # Without a webhook URL (the auth cache's hint) the payment is one statement, committed by
    # itself: a transaction's BEGIN and COMMIT cost 20 % of the throughput (docs/decisions/002).
    alone = not merchant.get("has_webhook_url", True) and c.info.transaction_status == TransactionStatus.IDLE
    row = _insert(c, merchant, params, alone)
    if alone and row is not None and row["id"] is None and row["has_url"]:
        row = _insert(c, merchant, params, alone=False)  # a URL saved since the hint was cached
    if row is None:
        raise NotFound("Order not found.", field="order_id")
    if row["id"] is None:
        _check_order({k: row["order_" + k] for k in ("status", "amount", "currency")}, data)
        if row["in_flight"]:
            raise _in_progress()
        raise ApiError(f"This order has reached its limit of {MAX_ATTEMPTS} payment attempts.", field="order_id")
    metrics.count_payments(c, [row])
    return {k: row[k] for k in COLUMNS.split(", ")}


def _insert(c, merchant, params, alone):
    """Run _CREATE, alone or in a transaction with the payment.created event; a concurrent payment
    of the same order that won the race is a 409."""
    try:
        with contextlib.nullcontext() if alone else db.transaction(c):
            row = db.one(c, _CREATE, dict(params, alone=alone))
            if not alone and row is not None and row["id"] is not None and row["has_url"]:
                payment = {k: row[k] for k in COLUMNS.split(", ")}
                webhooks.emit_event(c, merchant["id"], PAYMENT_CREATED, {"payment": PAYMENT.dump(payment)})
        return row
    except psycopg.errors.UniqueViolation as e:
        if e.diag.constraint_name == IN_FLIGHT_INDEX:
            raise _in_progress() from None
        raise


def get(c, merchant_id, payment_id, lock=False):
    """The merchant's payment or 404 (another merchant's payment is 404 too)."""
    _check_id(payment_id)
    row = db.one(c, f"SELECT {COLUMNS} FROM payments WHERE id = %(id)s AND merchant_id = %(m)s"
                    + (" FOR UPDATE" if lock else ""), {"id": payment_id, "m": merchant_id})
    if row is None:
        raise NotFound("Payment not found.")
    return row


def get_public(c, payment_id):
    """Any payment by id, for the checkout's polling (ids are unguessable)."""
    _check_id(payment_id)
    row = db.one(c, f"SELECT {COLUMNS} FROM payments WHERE id = %(id)s", {"id": payment_id})
    if row is None:
        raise NotFound("Payment not found.")
    return row


def list_(c, merchant_id, limit, offset, status=None, window=(None, None), order_id=None):
    """The merchant's payments, newest first; optionally only one status or one order's."""
    where, params = "merchant_id = %(m)s", {"m": merchant_id}
    if status:
        where, params["status"] = where + " AND status = %(status)s", status
    if order_id:
        where, params["order_id"] = where + " AND order_id = %(order_id)s", order_id
    # One order's payments are few (at most 20): counted as they are; the merchant's from the rollups.
    return db.page(c, "payments", COLUMNS, where, params, limit, offset, window,
                   count=None if order_id else rollups.counter(c, "payments", merchant_id, status))


def capture(c, merchant_id, payment_id, amount):
    """Mark a successful payment captured; the amount must be the payment's amount."""
    with db.transaction(c):
        payment = get(c, merchant_id, payment_id, lock=True)
        if payment["status"] != "success":
            raise ApiError("Payment not in capturable state")
        if payment["captured"]:
            raise ApiError("Payment has already been captured")
        if amount != payment["amount"]:
            raise ApiError("Capture amount must equal the payment amount.", field="amount")
        return db.one(c, f"UPDATE payments SET captured = true, updated_at = now() WHERE id = %(id)s "
                         f"RETURNING {COLUMNS}", {"id": payment_id})


# ---- settlement (worker) ----------------------------------------------------------------------

def _delay_seconds(settings):
    if settings["TEST_MODE"]:
        return settings["TEST_PROCESSING_DELAY"] / 1000.0
    return random.uniform(5, 10)


def _outcome(method, settings):
    """(status, error_code, error_description) for a payment leaving the bank."""
    if settings["TEST_MODE"]:
        ok = settings["TEST_PAYMENT_SUCCESS"]
    else:
        ok = random.random() < (0.90 if method == "upi" else 0.95)
    if ok:
        return "success", None, None
    reason = "UPI transaction declined by the payer's bank" if method == "upi" else "Card declined by the issuing bank"
    return "failed", "PAYMENT_FAILED", reason


def settle_batch(c, batch, settings, emit):
    """Run a batch of settlement jobs in the caller's transaction, a handful of statements for the
    whole batch. pending -> processing (and come back after the bank's delay), processing -> success
    or failed. Every transition is guarded on the expected status, so a job run twice settles once.
    Returns {job_id: delay} for jobs to run again; the other jobs are done."""
    job_of = {j["payload"]["payment_id"]: j["id"] for j in batch}
    # Lock the payments in id order: two workers never deadlock on a shared pair.
    rows = db.all(c, """
        SELECT p.id, p.order_id, p.method, p.status, p.merchant_id, m.webhook_url IS NOT NULL AS has_url
          FROM payments p JOIN merchants m ON m.id = p.merchant_id
         WHERE p.id = ANY(%(ids)s) AND p.status IN ('pending', 'processing')
         ORDER BY p.id FOR UPDATE OF p
        """, {"ids": list(job_of)})
    again, to_processing, settle = {}, [], []
    for r in rows:
        delay = _delay_seconds(settings) if r["status"] == "pending" else 0
        if delay > 0:
            to_processing.append(r)
            again[job_of[r["id"]]] = delay
        else:
            settle.append((r, *_outcome(r["method"], settings)))
    if to_processing:
        db.execute(c, "UPDATE payments SET status = 'processing', updated_at = now() "
                      "WHERE id = ANY(%(ids)s) AND status = 'pending'", {"ids": [r["id"] for r in to_processing]})
        metrics.count_payments(c, [dict(r, status="processing") for r in to_processing])  # locked, all pending
    if settle:
        _settle(c, settle, emit)
    return again


def _settle(c, settle, emit):
    """One statement for the batch: each order is paid once, by the first successful payment of it
    in the batch (payment id order); a later success for an order already paid becomes a failure
    (the unique index would refuse it anyway). Two workers settle payments of one order at once
    only on an upgraded database's old rows (one payment of an order is in flight at a time since),
    where a deadlock fails a batch that the worker then runs job by job."""
    rows, statuses, codes, descs = zip(*settle)
    settled = db.all(c, f"""
        WITH t AS (SELECT * FROM unnest(CAST(%(ids)s AS text[]), CAST(%(orders)s AS text[]), CAST(%(s)s AS text[]),
                                        CAST(%(c)s AS text[]), CAST(%(d)s AS text[])) WITH ORDINALITY AS t(id, order_id, s, c, d, n)),
             claim AS (SELECT DISTINCT ON (order_id) id, order_id FROM t WHERE s = 'success' ORDER BY order_id, n),
             paid AS (UPDATE orders o SET status = 'paid', updated_at = now() FROM claim
                       WHERE o.id = claim.order_id AND o.status = 'created' RETURNING claim.id),
             outcome AS (SELECT t.*, t.s = 'success' AND t.id NOT IN (SELECT id FROM paid) AS lost FROM t)
        UPDATE payments p
           SET status = CASE WHEN t.lost THEN 'failed' ELSE t.s END,
               error_code = CASE WHEN t.lost THEN 'PAYMENT_FAILED' ELSE t.c END,
               error_description = CASE WHEN t.lost THEN 'Order is already paid by another payment' ELSE t.d END,
               updated_at = now()
          FROM outcome t
         WHERE p.id = t.id AND p.status IN ('pending', 'processing')
        RETURNING {", ".join("p." + col.strip() for col in COLUMNS.split(","))}
        """, {"ids": [r["id"] for r in rows], "orders": [r["order_id"] for r in rows], "s": list(statuses),
              "c": list(codes), "d": list(descs)})
    has_url = {r["id"]: r["has_url"] for r in rows}
    metrics.count_payments(c, settled)
    emit([(p["merchant_id"], SETTLED_EVENTS[p["status"]], {"payment": PAYMENT.dump(p)})
          for p in settled if has_url[p["id"]]])
