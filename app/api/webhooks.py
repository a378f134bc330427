"""/api/v1/webhooks: logs, retry, endpoints, configuration (the first endpoint), test event."""
import json
from datetime import datetime, timezone

from flask import g, request

from .. import db, endpoints, webhooks
from ..auth import api_auth
from ..events import check_name
from ..schemas import (ENDPOINT, ENDPOINT_WITH_SECRET, EVENT, WEBHOOK_LOG, EndpointCreate, EndpointUpdate,
                       EventListQuery, Replay, SecretRotation, WebhookConfigIn, load)
from . import bp
from .common import json_body, listing, paging, settings


@bp.get("/webhooks")
@api_auth
def list_webhooks():
    page = paging()
    rows, total = webhooks.list_logs(db.conn(), g.merchant["id"], page.limit, page.offset, page.window)
    return listing(WEBHOOK_LOG, rows, total, page)


@bp.post("/webhooks/<log_id>/retry")
@api_auth
def retry_webhook(log_id):
    c = db.conn()
    result = webhooks.retry(c, g.merchant["id"], log_id)
    return result


@bp.get("/webhooks/config")
@api_auth
def get_webhook_config():
    return webhooks.get_config(db.conn(), g.merchant["id"])


@bp.put("/webhooks/config")
@bp.post("/webhooks/config")
@api_auth
def set_webhook_config():
    data = load(WebhookConfigIn, json_body())
    c = db.conn()
    config = webhooks.set_url(c, g.merchant["id"], data["webhook_url"], settings()["WEBHOOK_ALLOW_PRIVATE_TARGETS"],
                              settings()["WEBHOOK_ALLOWED_HOSTS"])
    return config


@bp.post("/webhooks/config/secret")
@api_auth
def regenerate_webhook_secret():
    """The first endpoint's secret, replaced at once unless the body gives expire_previous_in."""
    keep = _rotation().get("expire_previous_in", 0)
    c = db.conn()
    return webhooks.regenerate_secret(c, g.merchant["id"], keep)


# ---- endpoints -----------------------------------------------------------------------------------

def _rotation():
    return load(SecretRotation, json_body()) if request.content_length else {}


@bp.get("/webhooks/endpoints")
@api_auth
def list_endpoints():
    page = paging()
    rows, total = endpoints.page(db.conn(), g.merchant["id"], page.limit, page.offset, page.window)
    return listing(ENDPOINT, rows, total, page)


@bp.post("/webhooks/endpoints")
@api_auth
def create_endpoint():
    data = load(EndpointCreate, json_body())
    row = endpoints.create(db.conn(), g.merchant["id"], data["url"], data["events"], data["description"],
                           settings()["WEBHOOK_ALLOW_PRIVATE_TARGETS"], settings()["WEBHOOK_ALLOWED_HOSTS"])
    return ENDPOINT_WITH_SECRET.dump(row), 201


@bp.get("/webhooks/endpoints/<endpoint_id>")
@api_auth
def get_endpoint(endpoint_id):
    return ENDPOINT_WITH_SECRET.dump(endpoints.get(db.conn(), g.merchant["id"], endpoint_id))


@bp.patch("/webhooks/endpoints/<endpoint_id>")
@api_auth
def update_endpoint(endpoint_id):
    changes = load(EndpointUpdate, json_body())
    row = endpoints.update(db.conn(), g.merchant["id"], endpoint_id, changes,
                           settings()["WEBHOOK_ALLOW_PRIVATE_TARGETS"], settings()["WEBHOOK_ALLOWED_HOSTS"])
    return ENDPOINT_WITH_SECRET.dump(row)


@bp.delete("/webhooks/endpoints/<endpoint_id>")
@api_auth
def delete_endpoint(endpoint_id):
    endpoints.delete(db.conn(), g.merchant["id"], endpoint_id)
    return "", 204


@bp.post("/webhooks/endpoints/<endpoint_id>/secret")
@api_auth
def rotate_endpoint_secret(endpoint_id):
    keep = _rotation().get("expire_previous_in", endpoints.DEFAULT_OVERLAP)
    row = endpoints.rotate(db.conn(), g.merchant["id"], endpoint_id, keep)
    return ENDPOINT_WITH_SECRET.dump(row)


@bp.post("/webhooks/test")
@api_auth
def send_test_webhook():
    c = db.conn()
    url = webhooks.send_test(c, g.merchant["id"])
    return {"status": "queued", "message": "Test webhook queued", "webhook_url": url}, 202


@bp.post("/webhooks/endpoints/<endpoint_id>/replay")
@api_auth
def replay_endpoint(endpoint_id):
    data = load(Replay, json_body())
    since = datetime.fromtimestamp(data["since"], timezone.utc)
    queued = webhooks.replay(db.conn(), g.merchant["id"], endpoint_id, since, data.get("status") == "failed")
    return {"queued": queued}, 202


# ---- events --------------------------------------------------------------------------------------

def _event(row):
    return dict(row, data=json.loads(row["body"])["data"])


@bp.get("/events")
@api_auth
def list_events():
    page = paging(EventListQuery)
    event = page.filters.get("event")
    if event:
        check_name(event, "event")
    rows, total = webhooks.list_events(db.conn(), g.merchant["id"], page.limit, page.offset, page.window, event)
    return listing(EVENT, [_event(r) for r in rows], total, page)


@bp.get("/events/<event_id>")
@api_auth
def get_event(event_id):
    return EVENT.dump(_event(webhooks.get_event(db.conn(), g.merchant["id"], event_id)))
