"""The merchant JSON API, /api/v1: one module per resource."""
from flask import Blueprint, request

from ..errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# What a cross-site HTML form (or a no-preflight fetch) can send; the API never reads these.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OTHER_ORIGINS = frozenset({"cross-site", "same-site"})  # same-site: another subdomain, another origin all the same


@bp.before_app_request
def refuse_browser_forgeries():
    """Writes under /api/ that another site's page could make with a browser's cached credentials,
    refused before authentication: a form content type (415), or any write the browser itself
    marks as coming from another origin (`Sec-Fetch-Site: cross-site`, or `same-site` from another
    subdomain; 403: a body-less `fetch` in no-cors mode carries no content type). Servers and SDKs
    send no Sec-Fetch-Site; the checkout's own calls are same-origin."""
    if request.method not in _WRITES or not request.path.startswith("/api/"):
        return
    if request.mimetype in FORM_TYPES:
        raise ApiError(f"Content-Type {request.mimetype} is not accepted: send application/json.", status=415)
    if request.headers.get("Sec-Fetch-Site") in _OTHER_ORIGINS:
        raise ApiError("Cross-site requests from a browser are not accepted: call the API from your server.",
                       status=403)


@bp.after_app_request
def no_store(resp):
    """No cache between the merchant's server and us keeps an answer under /api/ (its errors
    included): they carry secrets (webhook and endpoint secrets) and account data."""
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


from . import orders, payments, refunds, webhooks, jobs_status  # noqa: E402,F401  (routes)
