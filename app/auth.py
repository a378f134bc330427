"""Who is calling: API key + secret (headers or HTTP Basic) -> g.merchant, counted against
API_RATE_LIMIT when it is set; dashboard login_required."""
import functools
import hmac
import time

from flask import current_app, g, redirect, request, session, url_for

from . import db, ratelimit
from .errors import AuthenticationError, TooManyRequests

# Compared against when the key is unknown, so a wrong key costs the same time as a wrong secret.
_DUMMY_SECRET = "secret_" + "x" * 24

MERCHANT_COLUMNS = "id, name, email, api_key, api_secret, webhook_url, webhook_secret, is_active"

# API keys seen lately, per process: api_key -> (valid until, {id, name, api_secret, is_active,
# has_webhook_url}). Saves a query on every API call; a deactivated merchant is refused within
# AUTH_CACHE_SECONDS. has_webhook_url is a hint for payments.create (its statement decides).
# Unknown keys are not cached, so guessing cannot fill it.
AUTH_CACHE_SECONDS = 5.0
AUTH_CACHE_MAX = 10_000
_auth_cache = {}


def _credentials():
    key = request.headers.get("X-Api-Key")
    secret = request.headers.get("X-Api-Secret")
    if key is None and request.authorization and request.authorization.type == "basic":
        key = request.authorization.username
        secret = request.authorization.password
    return key, secret


def authenticate():
    """Load the calling merchant into g.merchant or raise 401."""
    key, secret = _credentials()
    if not key or not secret:
        raise AuthenticationError()
    if "\x00" in key:  # no key contains it, and PostgreSQL refuses it in a query (a 500, not a 401)
        raise AuthenticationError("Invalid API key or secret.")
    merchant = _lookup(key)
    expected = merchant["api_secret"] if merchant else _DUMMY_SECRET
    ok = hmac.compare_digest(expected.encode(), secret.encode())
    if not (merchant and ok and merchant["is_active"]):
        raise AuthenticationError("Invalid API key or secret.")
    g.merchant = merchant
    limit = current_app.extensions["api_rate_limit"]
    if limit is not None:
        _count_call(key, limit)
    return merchant


def _count_call(key, limit):
    """Count this call against its API key (committed at once: the request's connection is in
    autocommit); over the limit, a 429 before the view reads the body or changes anything."""
    decision = ratelimit.take(db.conn(), f"api:{key}", limit)
    g.api_rate_limit = decision
    if not decision.allowed:
        raise TooManyRequests(f"Too many requests for this API key (limit {current_app.config['API_RATE_LIMIT']}): "
                              f"retry after {decision.headers()['Retry-After']} s.")


def _rate_limit_headers(resp):
    # Every answer to a counted call, its errors included, says where the key stands.
    decision = g.get("api_rate_limit")
    if decision is not None:
        resp.headers.update(decision.headers())
    return resp


def init_app(app):
    """Parse API_RATE_LIMIT once (a bad value stops the start); unset, the API counts nothing."""
    raw = app.config.get("API_RATE_LIMIT")
    limit = ratelimit.setting("API_RATE_LIMIT", raw) if raw else None
    app.extensions["api_rate_limit"] = limit
    if limit is not None:
        app.after_request(_rate_limit_headers)


def _lookup(key):
    now = time.monotonic()
    hit = _auth_cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    merchant = db.one(db.conn(), "SELECT id, name, api_secret, is_active, webhook_url IS NOT NULL AS has_webhook_url "
                                 "FROM merchants WHERE api_key = %(key)s", {"key": key})
    if merchant is not None:
        if len(_auth_cache) >= AUTH_CACHE_MAX:
            _auth_cache.clear()
        _auth_cache[key] = (now + AUTH_CACHE_SECONDS, merchant)
    return merchant


def api_auth(view):
    """Require API credentials for a view."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        authenticate()
        return view(*args, **kwargs)

    return wrapped


def session_token(merchant):
    """What a dashboard session carries to stay valid: it changes when the merchant signs out
    (session_version) or the password changes, and the cookie reveals neither."""
    message = f"{merchant['id']}:{merchant['session_version']}:{merchant['password_hash']}"
    return hmac.new(current_app.secret_key.encode(), message.encode(), "sha256").hexdigest()


def signed_in_merchant():
    """The merchant whose dashboard session this request carries, or None (a session from before
    a sign-out or a password change is none)."""
    merchant_id, token = session.get("merchant_id"), session.get("token")
    if not (merchant_id and isinstance(token, str)):
        return None
    merchant = db.one(db.conn(), f"SELECT {MERCHANT_COLUMNS}, session_version, password_hash FROM merchants "
                                 "WHERE id = %(id)s AND is_active", {"id": merchant_id})
    if not (merchant and merchant["password_hash"]
            and hmac.compare_digest(session_token(merchant).encode(), token.encode())):
        return None
    del merchant["password_hash"]
    return merchant


def login_required(view):
    """Dashboard pages: redirect to /login when signed out."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        merchant = signed_in_merchant()
        if not merchant:
            session.clear()
            return redirect(url_for("dashboard.login", next=request.path))
        g.merchant = merchant
        return view(*args, **kwargs)

    return wrapped
