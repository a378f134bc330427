"""The merchant JSON API, /api/v1: one module per resource."""
from flask import Blueprint, request

from ..errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def json_body():
    """The request's JSON object, or a clear 4xx: wrong content type, empty, malformed, not an object."""
    if not request.is_json:
        raise ApiError("Content-Type must be application/json.", status=415)
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError("Request body must be a JSON object.")
    try:
        import json

        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError("Request body must be a JSON object.")
    return data


from . import orders, payments, refunds, webhooks, jobs_status  # noqa: E402,F401  (routes)
