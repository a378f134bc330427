"""/api/v1/webhooks: logs, retry, configuration, test event."""
from flask import g

from .. import db, webhooks
from ..auth import api_auth
from ..schemas import WEBHOOK_LOG, WebhookConfigIn, load
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
    c = db.conn()
    config = webhooks.regenerate_secret(c, g.merchant["id"])
    return config


@bp.post("/webhooks/test")
@api_auth
def send_test_webhook():
    c = db.conn()
    url = webhooks.send_test(c, g.merchant["id"])
    return {"status": "queued", "message": "Test webhook queued", "webhook_url": url}, 202
