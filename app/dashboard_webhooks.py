"""The dashboard's Webhooks page (the first endpoint's URL and secret, the delivery log with its
filters) and a page per delivery (the body sent, the last response, the attempts). They are routes
of dashboard.bp, so its CSRF check, HTML error pages and no-store headers apply to them."""
import json
from datetime import datetime

from flask import current_app, flash, g, redirect, render_template, request, url_for

from . import dashboard_data as data
from . import db, events, webhooks
from .auth import login_required
from .dashboard import PAGE_SIZE, _safe_next, bp
from .errors import ApiError


def _filters():
    """The delivery log's filters as asked, unknown values dropped (as the transactions' status)."""
    status, event = request.args.get("status", ""), request.args.get("event", "")
    return {"status": status if status in webhooks.LOG_STATUSES else "",
            "event": event if event in events.CATALOG else ""}


def _webhooks_page(url_value=None, url_error=None, status=200):
    c = db.conn()
    f = _filters()
    before, after = request.args.get("before"), request.args.get("after")
    paging = data.browse(c, "webhook_logs", webhooks.LOG_COLUMNS, g.merchant["id"], f["status"] or None,
                         before=before, after=after, size=PAGE_SIZE, event=f["event"] or None)
    config = webhooks.get_config(c, g.merchant["id"])
    return render_template("dashboard/webhooks.html", hook=config, logs=paging["rows"], paging=paging,
                           url_value=config["webhook_url"] if url_value is None else url_value,
                           url_error=url_error, events=events.CATALOG, test_event=events.WEBHOOK_TEST,
                           filters=f, statuses=webhooks.LOG_STATUSES,
                           pager_args={k: v for k, v in f.items() if v}), status


@bp.get("/dashboard/webhooks")
@login_required
def webhooks_page():
    return _webhooks_page()


@bp.post("/dashboard/webhooks")
@login_required
def save_webhook_url():
    url = request.form.get("webhook_url", "")
    c = db.conn()
    try:
        config = webhooks.set_url(c, g.merchant["id"], url, current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"],
                                  current_app.config["WEBHOOK_ALLOWED_HOSTS"])
    except ApiError as e:
        # Shown next to the field, with what was typed kept; nothing was written.
        return _webhooks_page(url_value=url, url_error=e.description, status=400)
    flash(f"Webhook URL saved: {config['webhook_url']}" if config["webhook_url"] else "Webhook URL cleared.",
          "success")
    return redirect(url_for("dashboard.webhooks_page"))


@bp.post("/dashboard/webhooks/secret")
@login_required
def regenerate_webhook_secret():
    # The form's confirmation step sends confirm=yes; anything else (an old form, a stray
    # request) changes nothing, because the current secret stops working at once.
    if request.form.get("confirm") != "yes":
        flash("The secret was not changed: confirm the regeneration first.", "error")
        return redirect(url_for("dashboard.webhooks_page"))
    c = db.conn()
    webhooks.regenerate_secret(c, g.merchant["id"])
    flash("A new webhook secret was generated; deliveries are signed with it from now on.", "success")
    return redirect(url_for("dashboard.webhooks_page"))


@bp.post("/dashboard/webhooks/test")
@login_required
def send_test_webhook():
    c = db.conn()
    try:
        webhooks.send_test(c, g.merchant["id"])
    except ApiError as e:
        flash(e.description, "error")
        return redirect(url_for("dashboard.webhooks_page"))
    flash(f"Test webhook queued for {g.merchant['webhook_url']}.", "success")
    return redirect(url_for("dashboard.webhooks_page"))


@bp.post("/dashboard/webhooks/<log_id>/retry")
@login_required
def retry_webhook(log_id):
    """Retry (or Resend, for a delivered one): the same log and body queued again; back to the
    page the button was on (its `next`), filters and cursor included."""
    c = db.conn()
    try:
        result = webhooks.retry(c, g.merchant["id"], log_id)
    except ApiError as e:  # not found, or an attempt is on the wire right now (409)
        flash(e.description, "error")
    else:
        flash(f"{result['message']} ({log_id}).", "success")
    return redirect(_safe_next(request.form.get("next")) if request.form.get("next")
                    else url_for("dashboard.webhooks_page"))


def _created_at(text):
    """The ?at= of a delivery's link (its created_at, the partition key), or None."""
    try:
        at = datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return at if at.tzinfo else None


def _pretty(body):
    """The JSON sent, indented for reading (the exact bytes are shown beside it)."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@bp.get("/dashboard/webhooks/deliveries/<log_id>")
@login_required
def delivery_page(log_id):
    c = db.conn()
    delivery = webhooks.get_log(c, g.merchant["id"], log_id, _created_at(request.args.get("at")))
    if delivery is None:
        return render_template("dashboard/not_found.html", what="Webhook delivery",
                               back=(url_for("dashboard.webhooks_page"), "webhooks")), 404
    return render_template("dashboard/webhook_delivery.html", w=delivery, pretty_body=_pretty(delivery["body"]),
                           retry_intervals=current_app.config["WEBHOOK_RETRY_INTERVALS"],
                           max_attempts=webhooks.MAX_ATTEMPTS)
