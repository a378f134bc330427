"""The gateway's Flask application factory."""
import io
import logging
import time

from flask import Flask, abort, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import ClosingIterator

from . import config as config_module, logs


def create_app(test_config=None):
    """Build the app: config, database, blueprints, error handlers, CLI. Nothing runs at import."""
    app = Flask(__name__, static_folder="../static", template_folder="../templates")
    settings = config_module.load()
    if test_config:
        settings.update(test_config)
    if not settings.get("DATABASE_URL"):
        from .embedded import ensure_database_url

        settings["DATABASE_URL"] = ensure_database_url()
    settings.setdefault("SECRET_KEY", config_module.secret_key())
    app.config.from_mapping(settings)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.json.sort_keys = False
    app.session_interface = _SessionInterface()
    proxies = app.config["TRUST_PROXY"]
    if proxies:
        # Only the hops the operator vouches for: a client's own X-Forwarded-* would otherwise
        # choose its address (the sign-in throttle's key) and the scheme. Host and port are left
        # alone: links come from PUBLIC_URL, and a proxy that does not set them would pass the
        # client's own.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=0, x_port=0)
    app.json.compact = True
    _configure_logging(app)

    from . import auth, db, errors

    db.init_app(app)
    errors.init_app(app)
    auth.init_app(app)

    from . import checkout, dashboard, metrics, money, openapi
    from .api import bp as api_bp
    from .health import bp as health_bp

    _request_log(app)  # first, so its start time is set before any other hook can answer
    _body_limit(app)
    _nosniff(app)
    metrics.init_app(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    openapi.init_app(app)
    money.init_app(app)
    checkout.init_app(app)
    dashboard.init_app(app)
    return app


class _SessionInterface(SecureCookieSessionInterface):
    """The API authenticates by key, never by cookie: its requests get no session (opening one
    builds a signing serializer on every request)."""

    def open_session(self, app, request):
        if request.path.startswith("/api/"):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app):
        """Secure when SESSION_COOKIE_SECURE says so or the request came over HTTPS."""
        return super().get_cookie_secure(app) or request.is_secure


def _body_limit(app):
    """A body over MAX_CONTENT_LENGTH is a 413 however it is framed and whatever the route reads."""
    wsgi_app = app.wsgi_app

    def read_chunked(environ, start_response):
        # Without Content-Length werkzeug stops reading at the limit and says nothing, so a chunked
        # body is read here, one byte past the limit at most, and passed on as a body of that length.
        if environ.get("HTTP_TRANSFER_ENCODING") and "CONTENT_LENGTH" not in environ \
                and environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read(app.config["MAX_CONTENT_LENGTH"] + 1)
            del environ["HTTP_TRANSFER_ENCODING"]  # the server has de-chunked it
            environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        return wsgi_app(environ, start_response)

    app.wsgi_app = read_chunked

    @app.before_request
    def _refuse_large_body():
        if (request.content_length or 0) > app.config["MAX_CONTENT_LENGTH"]:
            abort(413)


def _nosniff(app):
    @app.after_request
    def _no_type_guessing(resp):
        # Every answer states its true type (the checkout's static script included): a browser must
        # not guess another one from the bytes.
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp


def _configure_logging(app):
    logs.configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])


def _request_log(app):
    log = logging.getLogger("app.request")
    wsgi_app = app.wsgi_app

    def with_request_id(environ, start_response):
        # Around the whole app, so that every answer carries the id (errors and pages included) and
        # every line logged until the body is sent names it.
        request_id = logs.request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        environ["gateway.request_id"] = request_id

        def start(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            return start_response(status, [*headers, (logs.HEADER, request_id)], exc_info)

        token = logs.bind(request_id)
        try:
            return ClosingIterator(wsgi_app(environ, start), lambda: logs.unbind(token))
        except BaseException:
            logs.unbind(token)
            raise

    app.wsgi_app = with_request_id

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        g.request_id = request.environ.get("gateway.request_id") or logs.current_request_id()

    @app.after_request
    def _log(resp):
        # One line per request; never the body (it may hold card data) nor credentials, nor the raw
        # path (ids, anything a client typed): the route's rule. Named arguments, so that the JSON
        # line has each as a key of its own.
        if log.isEnabledFor(logging.INFO):
            merchant = g.get("merchant")
            log.info("%(method)s %(route)s %(status)s %(duration_ms).1fms",
                     {"method": request.method, "route": request.url_rule.rule if request.url_rule else None,
                      "status": resp.status_code,
                      "duration_ms": round((time.perf_counter() - g.get("t0", time.perf_counter())) * 1000, 1)},
                     extra={"merchant": str(merchant["id"])} if merchant else None)
        return resp
