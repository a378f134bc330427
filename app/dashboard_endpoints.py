"""The dashboard's webhook endpoint pages: /dashboard/webhooks/endpoints (every endpoint and the form
to add one) and a page per endpoint (edit, disable or enable, rotate its secret, delete). They are
routes of dashboard.bp, so its CSRF check, HTML error pages and no-store headers apply to them."""
import functools
from datetime import datetime, timedelta, timezone

from flask import current_app, flash, g, redirect, render_template, request, url_for

from . import db, endpoints, events, webhooks
from .auth import login_required
from .dashboard import bp
from .errors import ApiError, NotFound
from .schemas import EndpointCreate, EndpointUpdate, load
from .timefmt import local

# The overlaps a rotation offers: seconds the secret being replaced keeps signing beside the new one.
OVERLAPS = [(0, "none: replace it at once"), (3600, "1 hour"), (endpoints.DEFAULT_OVERLAP, "24 hours"),
            (7 * 86400, "7 days")]
FIELDS = ("url", "events", "description")


def _targets():
    """The SSRF settings endpoints.create and update check a URL with."""
    return current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"], current_app.config["WEBHOOK_ALLOWED_HOSTS"]


def _typed():
    """The add/edit form as typed (kept on the page when it is refused)."""
    return {"url": request.form.get("url", "").strip(), "events": request.form.getlist("events"),
            "description": request.form.get("description", "").strip()}


def _checked(schema, form):
    """The typed form validated like the API's body; an ApiError naming the field otherwise."""
    if not form["url"]:
        raise ApiError("Enter the URL to send events to.", field="url")
    if not form["events"]:
        raise ApiError("Choose the events to send, or All events.", field="events")
    return load(schema, dict(form, description=form["description"] or None))


def _errors(e):
    """{field: message} for the form (the schema names a list's item events.0)."""
    field = (e.field or "").split(".")[0]
    return {field if field in FIELDS else "form": e.description}


def _or_not_found(view):
    """The "not found" page for an endpoint that is not the signed-in merchant's (another
    merchant's is not found either) or was deleted since its page was loaded."""
    @functools.wraps(view)
    def page(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except NotFound:
            return render_template("dashboard/not_found.html", what="Webhook endpoint",
                                   back=(url_for("dashboard.endpoints_page"), "webhook endpoints")), 404
    return page


def _list_page(form=None, errors=None, status=200):
    rows = endpoints.list_(db.conn(), g.merchant["id"])
    form = form or {"url": "", "events": [endpoints.ALL], "description": ""}
    return render_template("dashboard/endpoints.html", endpoints=rows, form=form, errors=errors or {},
                           catalog=events.CATALOG, all_events=endpoints.ALL), status


def _endpoint_page(endpoint, form=None, errors=None, status=200):
    form = form or {"url": endpoint["url"], "events": endpoint["events"], "description": endpoint["description"] or ""}
    return render_template("dashboard/endpoint.html", endpoint=endpoint, form=form, errors=errors or {},
                           catalog=events.CATALOG, all_events=endpoints.ALL, overlaps=OVERLAPS,
                           default_overlap=endpoints.DEFAULT_OVERLAP, replay_windows=REPLAY_WINDOWS), status


def _back(endpoint_id, message, category="success"):
    """The endpoint's page again, with what the action did (or why it did nothing) above it."""
    flash(message, category)
    return redirect(url_for("dashboard.endpoint_page", endpoint_id=endpoint_id))


@bp.get("/dashboard/webhooks/endpoints")
@login_required
def endpoints_page():
    return _list_page()


@bp.post("/dashboard/webhooks/endpoints")
@login_required
def add_endpoint():
    form = _typed()
    try:
        data = _checked(EndpointCreate, form)
        row = endpoints.create(db.conn(), g.merchant["id"], data["url"], data["events"], data["description"],
                               *_targets())
    except ApiError as e:
        # Shown next to its field, with what was typed kept; nothing was written.
        return _list_page(form, _errors(e), 400)
    flash(f"Endpoint added: {row['url']}", "success")
    return redirect(url_for("dashboard.endpoints_page"))


@bp.get("/dashboard/webhooks/endpoints/<endpoint_id>")
@login_required
@_or_not_found
def endpoint_page(endpoint_id):
    return _endpoint_page(endpoints.get(db.conn(), g.merchant["id"], endpoint_id))


@bp.post("/dashboard/webhooks/endpoints/<endpoint_id>")
@login_required
@_or_not_found
def save_endpoint(endpoint_id):
    c = db.conn()
    endpoint = endpoints.get(c, g.merchant["id"], endpoint_id)
    form = _typed()
    try:
        changes = _checked(EndpointUpdate, form)
        if changes["url"] == endpoint["url"]:
            del changes["url"]  # not looked up again: a description edit must not fail on today's DNS
        endpoints.update(c, g.merchant["id"], endpoint_id, changes, *_targets())
    except NotFound:  # an ApiError too, but the page's, not a field's
        raise
    except ApiError as e:
        return _endpoint_page(endpoint, form, _errors(e), 400)
    return _back(endpoint_id, "Endpoint saved.")


@bp.post("/dashboard/webhooks/endpoints/<endpoint_id>/enabled")
@login_required
@_or_not_found
def set_endpoint_enabled(endpoint_id):
    enabled = request.form.get("enabled") == "true"
    endpoints.update(db.conn(), g.merchant["id"], endpoint_id, {"enabled": enabled}, *_targets())
    return _back(endpoint_id, "Endpoint enabled: it gets new events again." if enabled
                 else "Endpoint disabled: it gets no new events until it is enabled again.")


@bp.post("/dashboard/webhooks/endpoints/<endpoint_id>/secret")
@login_required
@_or_not_found
def rotate_endpoint_secret(endpoint_id):
    overlap = request.form.get("overlap", type=int)
    if overlap not in dict(OVERLAPS):
        return _back(endpoint_id, "Choose how long the current secret keeps signing.", "error")
    row = endpoints.rotate(db.conn(), g.merchant["id"], endpoint_id, overlap)
    if row["previous_expires_at"]:
        until = local(row["previous_expires_at"], current_app.config["DASHBOARD_TIMEZONE"])
        return _back(endpoint_id, f"A new secret was generated. The previous one also signs every delivery until {until}.")
    return _back(endpoint_id, "A new secret was generated; the previous one no longer signs deliveries.")


# How far back a replay from the dashboard goes (the API takes any time).
REPLAY_WINDOWS = [(3600, "the last hour"), (6 * 3600, "the last 6 hours"), (86400, "the last 24 hours"),
                  (3 * 86400, "the last 3 days"), (7 * 86400, "the last 7 days"), (30 * 86400, "the last 30 days")]


@bp.post("/dashboard/webhooks/endpoints/<endpoint_id>/replay")
@login_required
@_or_not_found
def replay_endpoint(endpoint_id):
    window = request.form.get("window", type=int)
    if window not in dict(REPLAY_WINDOWS):
        return _back(endpoint_id, "Choose how far back to send the events again.", "error")
    since = datetime.now(timezone.utc) - timedelta(seconds=window)
    queued = webhooks.replay(db.conn(), g.merchant["id"], endpoint_id, since, request.form.get("failed") == "on")
    return _back(endpoint_id, f"{queued} deliver{'y' if queued == 1 else 'ies'} queued to this endpoint.")


@bp.post("/dashboard/webhooks/endpoints/<endpoint_id>/delete")
@login_required
@_or_not_found
def delete_endpoint(endpoint_id):
    endpoint = endpoints.delete(db.conn(), g.merchant["id"], endpoint_id)
    flash(f"Endpoint deleted: {endpoint['url']}", "success")
    return redirect(url_for("dashboard.endpoints_page"))
