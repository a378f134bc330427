"""The merchant JSON API, /api/v1: one module per resource."""
from flask import Blueprint, request

from ..errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# What a cross-site HTML form (or a no-preflight fetch) can send; the API never reads these.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@bp.before_app_request
def refuse_form_bodies():
    """415 for a form-typed write anywhere under /api/, before authentication: another site's
    form could otherwise replay a browser's cached credentials on a body-less endpoint."""
    if request.method in _WRITES and request.mimetype in FORM_TYPES and request.path.startswith("/api/"):
        raise ApiError(f"Content-Type {request.mimetype} is not accepted: send application/json.", status=415)


from . import orders, payments, refunds, webhooks, jobs_status  # noqa: E402,F401  (routes)
