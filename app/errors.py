"""ApiError hierarchy and the one JSON error path (SPEC §3 envelope) for every API response."""
import logging

from flask import jsonify, request
import psycopg
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Bad request."""

    status = 400
    code = "BAD_REQUEST_ERROR"

    def __init__(self, description=None, field=None, status=None):
        super().__init__(description or self.__doc__)
        self.description = description or self.__doc__
        self.field = field
        if status is not None:
            self.status = status

    def body(self):
        err = {"code": self.code, "description": self.description}
        if self.field:
            err["field"] = self.field
        return {"error": err}


class Conflict(ApiError):
    """The request conflicts with the current state."""

    status = 409


class AuthenticationError(ApiError):
    """Authentication failed: send X-Api-Key and X-Api-Secret (or HTTP Basic key:secret)."""

    status = 401
    code = "AUTHENTICATION_ERROR"


class NotFound(ApiError):
    """The requested resource does not exist."""

    status = 404
    code = "NOT_FOUND_ERROR"


class InvalidVpa(ApiError):
    """Invalid VPA."""

    code = "INVALID_VPA"


class InvalidCard(ApiError):
    """Invalid card details."""

    code = "INVALID_CARD"


class ExpiredCard(ApiError):
    """Card has expired."""

    code = "EXPIRED_CARD"


class ServiceUnavailable(ApiError):
    """The database is unavailable; try again shortly."""

    status = 503
    code = "SERVER_ERROR"


def error_response(err):
    """The JSON envelope. A 401 carries no WWW-Authenticate: a browser would prompt for Basic
    credentials and then send them with every cross-site request to the API."""
    resp = jsonify(err.body())
    resp.status_code = err.status
    return resp


def wants_json():
    """HTML pages (checkout, dashboard, login) render their own errors; everything else is JSON."""
    p = request.path
    return not (p.startswith("/checkout") or p.startswith("/dashboard") or p.startswith("/login") or p == "/logout")


def _http_error(e):
    if not wants_json():
        return e
    desc = {404: "The requested URL was not found.", 405: f"Method {request.method} is not allowed for this URL.",
            413: "Request body is too large."}.get(e.code, e.description)
    status = e.code or 500
    err = ApiError(desc, status=status)
    if status >= 500:
        err.code = "SERVER_ERROR"
    elif status == 401:
        err.code = "AUTHENTICATION_ERROR"
    elif status == 404:
        err.code = "NOT_FOUND_ERROR"
    resp = error_response(err)
    if status == 405 and hasattr(e, "valid_methods") and e.valid_methods:
        resp.headers["Allow"] = ", ".join(e.valid_methods)
    return resp


def _db_error(e):
    # A lost or refused connection is an outage, not a bug: 503; the pool reconnects by itself.
    if isinstance(e, psycopg.OperationalError):
        log.warning("database unavailable: %s", type(e).__name__)
        return error_response(ServiceUnavailable())
    return _unexpected(e)


def _unexpected(e):
    log.exception("unhandled error on %s %s", request.method, request.path)
    if not wants_json():
        return "Internal server error", 500
    err = ApiError("Something went wrong on our side; the request was not applied.", status=500)
    err.code = "SERVER_ERROR"
    return error_response(err)


def init_app(app):
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(psycopg.Error, _db_error)
    app.register_error_handler(Exception, _unexpected)
