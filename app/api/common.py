"""Helpers shared by the API views: the JSON body, list paging and the request's settings."""
import json
import math
import typing

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


class Page(typing.NamedTuple):
    limit: int
    offset: int
    window: tuple  # (from, to): unix seconds, inclusive, None when open
    filters: dict  # the list's own filters (status on /payments)


def paging(schema=ListQuery):
    """The list query: limit/offset (aliases count/skip; limit defaults to 10, capped at 100),
    from/to, and the filters the schema documents; any other parameter is a 400 naming it."""
    q = load(schema, request.args.to_dict())
    count, skip = q.pop("count", DEFAULT_LIMIT), q.pop("skip", 0)
    limit, offset = q.pop("limit", count), q.pop("offset", skip)
    window = (q.pop("from_", None), q.pop("to", None))
    return Page(min(limit, MAX_LIMIT), offset, window, q)


def listing(schema, rows, total, page):
    """The list envelope {data, total, limit, offset}."""
    return {"data": schema.dump(rows, many=True), "total": total, "limit": page.limit, "offset": page.offset}


def settings():
    return current_app.config
