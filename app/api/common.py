"""Helpers shared by the API views: list paging and the request's settings."""
from flask import current_app, request

from ..schemas import ListQuery, load

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def paging():
    """limit/offset (aliases count/skip): limit defaults to 10 and is capped at 100."""
    q = load(ListQuery(), request.args.to_dict())
    limit = q.get("limit", q.get("count", DEFAULT_LIMIT))
    offset = q.get("offset", q.get("skip", 0))
    return min(limit, MAX_LIMIT), offset, q.get("status")


def listing(schema, rows, total, limit, offset):
    return {"data": schema.dump(rows, many=True), "total": total, "limit": limit, "offset": offset}


def settings():
    return current_app.config
