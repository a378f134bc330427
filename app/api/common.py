"""Helpers shared by the API views: the JSON body, list paging and the request's settings."""
import json
import math

from flask import current_app, request

from ..errors import ApiError
from ..schemas import ListQuery, load

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def _finite(text):
    value = float(text)
    if not math.isfinite(value):  # 1e400: PostgreSQL's jsonb refuses infinity (a 500 otherwise)
        raise ValueError("number out of range")
    return value


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python accepts them, JSON does not


def json_body():
    """The request's JSON object, or a clear 4xx: wrong content type, empty, malformed, not an
    object, NaN/Infinity, or nested too deep to parse."""
    if not request.is_json:
        raise ApiError("Content-Type must be application/json.", status=415)
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError("Request body must be a JSON object.")
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("Request body is not valid JSON.") from None
    except RecursionError:  # [[[[…: 64 KB of brackets exhausts the parser's stack
        raise ApiError("Request body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise ApiError("Request body must be a JSON object.")
    return data


def paging():
    """limit/offset (aliases count/skip): limit defaults to 10 and is capped at 100."""
    q = load(ListQuery, request.args.to_dict())
    limit = q.get("limit", q.get("count", DEFAULT_LIMIT))
    offset = q.get("offset", q.get("skip", 0))
    return min(limit, MAX_LIMIT), offset, q.get("status")


def listing(schema, rows, total, limit, offset):
    return {"data": schema.dump(rows, many=True), "total": total, "limit": limit, "offset": offset}


def settings():
    return current_app.config
