"""The dashboard's payments: the transactions list (filters, search, date range, CSV export) and a
payment's page with its Refund and Capture actions. Routes of dashboard.bp, so its CSRF check, HTML
error pages and no-store headers apply; the actions go through the API's own domain functions."""
import uuid
from datetime import datetime, timezone

from flask import Response, current_app, flash, g, redirect, render_template, request, stream_with_context, url_for

from . import dashboard_data as data
from . import db, payment_search, payments, refunds
from .api.common import settings
from .auth import login_required
from .dashboard import PAGE_SIZE, bp
from .errors import ApiError, Conflict, NotFound
from .idempotency import once
from .money import money, parse_plain, plain
from .schemas import PAYMENT_STATUSES, REFUND, RefundCreate, load

# Dashboard refund keys live apart from the API's Idempotency-Keys of the same merchant.
REFUND_KEY_SCOPE = "dashboard-refund"


def _tz():
    return current_app.config["DASHBOARD_TIMEZONE"]


@bp.get("/dashboard/transactions")
@login_required
def transactions():
    filters = payment_search.parse(request.args)
    paging = payment_search.browse(db.conn(), g.merchant["id"], filters, _tz(), before=request.args.get("before"),
                                   after=request.args.get("after"), size=PAGE_SIZE)
    return render_template("dashboard/transactions.html", rows=paging["rows"], filters=filters,
                           statuses=PAYMENT_STATUSES, paging=paging, pager_args=filters.args(),
                           refund_state=payment_search.refund_state)


@bp.get("/dashboard/transactions.csv")
@login_required
def export_transactions():
    filters = payment_search.parse(request.args)
    stamp = datetime.now(timezone.utc).astimezone(_tz()).strftime("%Y%m%d-%H%M%S")
    rows = payment_search.export(db.conn(), g.merchant["id"], filters, _tz())
    return Response(stream_with_context(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="payments-{stamp}.csv"'})


def _not_found():
    return render_template("dashboard/not_found.html", what="Payment"), 404


def _sentence(e):
    """An action's ApiError as the page shows it: one full stop at its end."""
    return f"{e.description}.".replace("..", ".")


def _payment_page(payment_id, status=200, **form):
    """The payment's page; `form` keeps what a refused action was sent with (and its error)."""
    c = db.conn()
    try:
        payment = payments.get(c, g.merchant["id"], payment_id)
    except NotFound:
        return _not_found()
    refund_rows, _ = refunds.list_for_payment(c, g.merchant["id"], payment_id, 100, 0)
    refunded = refunds.refunded(c, payment_id)
    rest = payment["amount"] - refunded
    return render_template("dashboard/transaction.html", payment=payment, refunds=refund_rows, refunded=refunded,
                           refundable=rest if payment["status"] == "success" and rest > 0 else 0,
                           refund_amount=form.get("amount", plain(rest, payment["currency"])),
                           refund_error=form.get("refund_error"), capture_error=form.get("capture_error"),
                           refund_key=uuid.uuid4().hex,
                           events=data.webhook_events_for_payment(c, g.merchant["id"], payment_id)), status


@bp.get("/dashboard/transactions/<payment_id>")
@login_required
def transaction(payment_id):
    return _payment_page(payment_id)


@bp.post("/dashboard/transactions/<payment_id>/refund")
@login_required
def refund_payment(payment_id):
    c = db.conn()
    try:
        currency = payments.get(c, g.merchant["id"], payment_id)["currency"]
    except NotFound:
        return _not_found()
    typed = request.form.get("amount", "").strip().replace(",", "").lstrip("₹").strip()
    # In the payment's currency, as the form shows it: rupees and paise for INR, whole yen for JPY.
    amount = parse_plain(typed, currency)
    if not amount:
        unit = "rupees" if currency == "INR" else currency
        return _payment_page(payment_id, 400, amount=typed, refund_error=f"Enter the amount to refund in {unit}, "
                             f"more than zero, such as {plain(12345, currency)}.")

    def create():
        # The API's rules: the same schema, the same domain function, the payment row locked.
        refund = refunds.create(c, g.merchant, payment_id, load(RefundCreate, {"amount": amount}), settings())
        return REFUND.dump(refund), 201

    try:
        # The form's hidden key makes a second submit of the same form replay the first refund.
        response = once(g.merchant["id"], create, scope=REFUND_KEY_SCOPE,
                        key=request.form.get("idempotency_key", "")[:64] or None)
    except NotFound:
        return _not_found()
    except Conflict:
        return _payment_page(payment_id, 409, amount=typed,
                             refund_error="This refund form was already sent. Reload the page to make another refund.")
    except ApiError as e:
        return _payment_page(payment_id, 400, amount=typed, refund_error=_sentence(e))
    refund = response.get_json()
    flash(f"Refund {refund['id']} of {money(refund['amount'], refund['currency'])} accepted.", "success")
    return redirect(url_for("dashboard.transaction", payment_id=payment_id))


@bp.post("/dashboard/transactions/<payment_id>/capture")
@login_required
def capture_payment(payment_id):
    c = db.conn()
    try:
        payment = payments.get(c, g.merchant["id"], payment_id)
        payments.capture(c, g.merchant["id"], payment_id, payment["amount"])
    except NotFound:
        return _not_found()
    except ApiError as e:
        return _payment_page(payment_id, 400, capture_error=_sentence(e))
    flash(f"Payment {payment_id} captured.", "success")
    return redirect(url_for("dashboard.transaction", payment_id=payment_id))
