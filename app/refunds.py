"""Refunds: never more than the payment's amount, however many arrive at once."""
import json
import random

from . import db, ids, jobs, payments, rollups, webhooks
from .errors import ApiError, NotFound
from .events import REFUND_CREATED, REFUND_PROCESSED
from .ids import new_id
from .schemas import PAYMENT, REFUND

PROCESS = "refund.process"
COLUMNS = "id, payment_id, merchant_id, amount, reason, receipt, notes, status, created_at, processed_at"
# A refund shows its payment's currency, which the refunds table does not repeat.
WITH_CURRENCY = COLUMNS + ", (SELECT p.currency FROM payments p WHERE p.id = refunds.payment_id) AS currency"


def _with_currency(refund, payment):
    return dict(refund, currency=payment["currency"])


def create(c, merchant, payment_id, data, settings):
    """Accept a refund (amount defaults to what is left). The payment row is locked first, so
    concurrent refunds are counted one after another and their total never exceeds the amount."""
    with db.transaction(c):
        payment = payments.get(c, merchant["id"], payment_id, lock=True)
        if payment["status"] != "success":
            raise ApiError("Payment must be successful to be refunded.", field="payment_id")
        so_far = db.one(c, "SELECT COALESCE(sum(amount), 0) AS refunded, "
                           "(SELECT webhook_url IS NOT NULL FROM merchants WHERE id = %(m)s) AS has_url "
                           "FROM refunds WHERE payment_id = %(id)s", {"id": payment_id, "m": merchant["id"]})
        available = payment["amount"] - so_far["refunded"]
        amount = data.get("amount", available)
        # One message for every over-refund, a fully refunded payment's too: clients match on it.
        if amount > available or available <= 0:
            raise ApiError("Refund amount exceeds available amount", field="amount")
        refund = db.one(c, f"INSERT INTO refunds (id, payment_id, merchant_id, amount, reason, receipt, notes) "
                           f"VALUES (%(id)s, %(p)s, %(m)s, %(amount)s, %(reason)s, %(receipt)s, %(notes)s::jsonb) "
                           f"RETURNING {COLUMNS}",
                        {"id": new_id("rfnd_"), "p": payment_id, "m": merchant["id"], "amount": amount,
                         "reason": data.get("reason"), "receipt": data.get("receipt"),
                         "notes": json.dumps(data.get("notes", {}))})
        delay = settings["TEST_PROCESSING_DELAY"] / 1000.0 if settings["TEST_MODE"] else random.uniform(3, 5)
        jobs.enqueue(c, PROCESS, {"refund_id": refund["id"]}, delay_seconds=delay)
        refund = _with_currency(refund, payment)
        if so_far["has_url"]:
            webhooks.emit_event(c, merchant["id"], REFUND_CREATED,
                                {"refund": REFUND.dump(refund), "payment": PAYMENT.dump(payment)})
    return refund


def get(c, merchant_id, refund_id):
    """The merchant's refund or 404."""
    ids.check("rfnd_", refund_id, "Refund")
    row = db.one(c, f"SELECT {WITH_CURRENCY} FROM refunds WHERE id = %(id)s AND merchant_id = %(m)s",
                 {"id": refund_id, "m": merchant_id})
    if row is None:
        raise NotFound("Refund not found.")
    return row


def get_of_payment(c, merchant_id, payment_id, refund_id):
    """The merchant's refund of that payment, or 404 (a refund of another payment is 404 too)."""
    refund = get(c, merchant_id, refund_id)
    if refund["payment_id"] != payment_id:
        raise NotFound("Refund not found.")
    return refund


def list_(c, merchant_id, limit, offset, window=(None, None)):
    """The merchant's refunds, newest first."""
    return db.page(c, "refunds", WITH_CURRENCY, "merchant_id = %(m)s", {"m": merchant_id}, limit, offset, window,
                   count=rollups.counter(c, "refunds", merchant_id))


def refunded(c, payment_id):
    """The total of the payment's refunds, all of them (a page of them would miss the rest)."""
    return db.value(c, "SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = %(p)s", {"p": payment_id})


def list_for_payment(c, merchant_id, payment_id, limit, offset, window=(None, None)):
    """A payment's refunds, newest first; 404 unless the payment is the merchant's."""
    payment = payments.get(c, merchant_id, payment_id)
    rows, total = db.page(c, "refunds", COLUMNS, "merchant_id = %(m)s AND payment_id = %(p)s",
                              {"m": merchant_id, "p": payment_id}, limit, offset, window)
    return [_with_currency(r, payment) for r in rows], total


def process(c, payload, settings, emit):
    """pending -> processed (guarded, so a job run twice processes once), then refund.processed."""
    r = db.one(c, f"""
        UPDATE refunds r SET status = 'processed', processed_at = now()
          FROM payments p, merchants m
         WHERE r.id = %(id)s AND r.status = 'pending' AND p.id = r.payment_id AND m.id = r.merchant_id
        RETURNING r.{COLUMNS.replace(', ', ', r.')}, m.webhook_url IS NOT NULL AS has_url,
                  {", ".join(f"p.{col} AS p_{col}" for col in payments.COLUMNS.split(", "))}
        """, {"id": payload["refund_id"]})
    if r is not None and r["has_url"]:
        payment = {k[2:]: v for k, v in r.items() if k.startswith("p_")}
        refund = _with_currency({k: r[k] for k in COLUMNS.split(", ")}, payment)
        emit([(r["merchant_id"], REFUND_PROCESSED, {"refund": REFUND.dump(refund), "payment": PAYMENT.dump(payment)})])
