"""ApiError hierarchy and the one JSON error path (the {"error": {...}} envelope) for every
response but the HTML pages', whose blueprints answer their own errors as HTML (html_errors)."""
import logging

from flask import current_app, jsonify, request
from markupsafe import escape
import psycopg
from werkzeug.exceptions import HTTPException, MethodNotAllowed

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


class TooManyRequests(ApiError):
    """Too many requests for this API key: retry after the seconds Retry-After gives."""

    status = 429
    code = "TOO_MANY_REQUESTS"


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


def _http_error(e):
    page = _page_handler(e)
    if page is not None:
        return page(e)
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


def _page_handler(e):
    """For a 405, the error handler of the blueprint whose URL it is: Flask names no blueprint for
    an error of routing, yet a wrong method on a page's URL (GET /logout) is that page's error."""
    if request.url_rule is not None or not isinstance(e, MethodNotAllowed) or not e.valid_methods:
        return None
    try:
        rule, _ = current_app.create_url_adapter(request).match(method=e.valid_methods[0], return_rule=True)
    except HTTPException:
        return None
    return _page_error if rule.endpoint.rpartition(".")[0] in _PAGE_BLUEPRINTS else None


def _db_error(e):
    # A lost or refused connection is an outage, not a bug: 503; the pool reconnects by itself.
    if isinstance(e, psycopg.OperationalError):
        log.warning("database unavailable: %s", type(e).__name__)
        return error_response(ServiceUnavailable())
    return _unexpected(e)


def _unexpected(e):
    log.exception("unhandled error on %s %s", request.method, request.path)
    err = ApiError("Something went wrong on our side; the request was not applied.", status=500)
    err.code = "SERVER_ERROR"
    return error_response(err)


def _page_error(e):
    """An error of an HTML page as a short HTML answer: people read these pages, not programs."""
    if isinstance(e, HTTPException):
        return e  # werkzeug's own page (a 405 keeps its Allow header)
    if isinstance(e, ApiError):
        return escape(e.description), e.status
    if isinstance(e, psycopg.OperationalError):
        log.warning("database unavailable: %s", type(e).__name__)
        return escape(ServiceUnavailable.__doc__), ServiceUnavailable.status
    log.exception("unhandled error on %s %s", request.method, request.path)
    return "Internal server error", 500


_PAGE_BLUEPRINTS = set()  # the blueprints html_errors() was given: their 405s are pages too


def html_errors(bp):
    """Errors of the requests `bp` serves, and a 405 on one of its URLs, answer as HTML; the
    app's handlers, for every other request, answer with the JSON envelope."""
    _PAGE_BLUEPRINTS.add(bp.name)
    bp.register_error_handler(Exception, _page_error)


def init_app(app):
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(psycopg.Error, _db_error)
    app.register_error_handler(Exception, _unexpected)
