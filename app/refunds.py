"""Refunds: never more than the payment's amount, however many arrive at once."""
import json
import random

from . import db, ids, jobs, payments, webhooks
from .errors import ApiError, NotFound
from .events import REFUND_CREATED, REFUND_PROCESSED
from .ids import new_id
from .schemas import PAYMENT, REFUND
from .pg import text

PROCESS = "refund.process"
COLUMNS = "id, payment_id, merchant_id, amount, reason, receipt, notes, status, created_at, processed_at"
# A refund shows its payment's currency, which the refunds table does not repeat.
WITH_CURRENCY = COLUMNS + ", (SELECT p.currency FROM payments p WHERE p.id = refunds.payment_id) AS currency"


def _with_currency(refund, payment):
    return dict(refund, currency=payment["currency"])


def create(c, merchant, payment_id, data, settings):
    """Accept a refund (amount defaults to what is left). The payment row is locked first, so
    concurrent refunds are counted one after another and their total never exceeds the amount."""
    payment = payments.get(c, merchant["id"], payment_id, lock=True)
    if payment["status"] != "success":
        raise ApiError("Payment must be successful to be refunded.", field="payment_id")
    refunded = c.execute(text("SELECT COALESCE(sum(amount), 0) FROM refunds WHERE payment_id = :id"),
                         {"id": payment_id}).scalar()
    available = payment["amount"] - refunded
    amount = data.get("amount", available)
    # One message for every over-refund, a fully refunded payment's too: clients match on it.
    if amount > available or available <= 0:
        raise ApiError("Refund amount exceeds available amount", field="amount")
    refund = dict(c.execute(text(
        f"INSERT INTO refunds (id, payment_id, merchant_id, amount, reason, receipt, notes) "
        f"VALUES (:id, :p, :m, :amount, :reason, :receipt, CAST(:notes AS jsonb)) RETURNING {COLUMNS}"),
        {"id": new_id("rfnd_"), "p": payment_id, "m": merchant["id"], "amount": amount, "reason": data.get("reason"),
         "receipt": data.get("receipt"), "notes": json.dumps(data.get("notes", {}))}).mappings().one())
    delay = settings["TEST_PROCESSING_DELAY"] / 1000.0 if settings["TEST_MODE"] else random.uniform(3, 5)
    jobs.enqueue(c, PROCESS, {"refund_id": refund["id"]}, delay_seconds=delay)
    refund = _with_currency(refund, payment)
    webhooks.emit_event(c, merchant["id"], REFUND_CREATED, {"refund": REFUND.dump(refund), "payment": PAYMENT.dump(payment)})
    return refund


def get(c, merchant_id, refund_id):
    """The merchant's refund or 404."""
    ids.check("rfnd_", refund_id, "Refund")
    row = c.execute(text(f"SELECT {WITH_CURRENCY} FROM refunds WHERE id = :id AND merchant_id = :m"),
                    {"id": refund_id, "m": merchant_id}).mappings().first()
    if row is None:
        raise NotFound("Refund not found.")
    return dict(row)


def get_of_payment(c, merchant_id, payment_id, refund_id):
    """The merchant's refund of that payment, or 404 (a refund of another payment is 404 too)."""
    refund = get(c, merchant_id, refund_id)
    if refund["payment_id"] != payment_id:
        raise NotFound("Refund not found.")
    return refund


def list_(c, merchant_id, limit, offset, window=(None, None)):
    """The merchant's refunds, newest first."""
    return db.page(c, "refunds", WITH_CURRENCY, "merchant_id = :m", {"m": merchant_id}, limit, offset, window)


def list_for_payment(c, merchant_id, payment_id, limit, offset, window=(None, None)):
    """A payment's refunds, newest first; 404 unless the payment is the merchant's."""
    payment = payments.get(c, merchant_id, payment_id)
    rows, total = db.page(c, "refunds", COLUMNS, "merchant_id = :m AND payment_id = :p",
                              {"m": merchant_id, "p": payment_id}, limit, offset, window)
    return [_with_currency(r, payment) for r in rows], total


def process_batch(c, batch, settings, emit):
    """pending -> processed (guarded, so a job run twice processes once), then refund.processed."""
    ids = [j["payload"]["refund_id"] for j in batch]
    rows = c.execute(text(
        f"""
        UPDATE refunds r SET status = 'processed', processed_at = now()
          FROM payments p, merchants m
         WHERE r.id = ANY(:ids) AND r.status = 'pending' AND p.id = r.payment_id AND m.id = r.merchant_id
        RETURNING r.{COLUMNS.replace(', ', ', r.')}, m.webhook_url IS NOT NULL AS has_url,
                  {", ".join(f"p.{col} AS p_{col}" for col in payments.COLUMNS.split(", "))}
        """), {"ids": ids}).mappings().all()
    events = []
    for r in rows:
        if r["has_url"]:
            payment = {k[2:]: v for k, v in r.items() if k.startswith("p_")}
            refund = _with_currency({k: r[k] for k in COLUMNS.split(", ")}, payment)
            events.append((r["merchant_id"], REFUND_PROCESSED,
                           {"refund": REFUND.dump(refund), "payment": PAYMENT.dump(payment)}))
    emit(events)
    return {}
