"""Who is calling: API key + secret (headers or HTTP Basic) -> g.merchant; dashboard login_required."""
import functools
import hmac
import time

from flask import current_app, g, redirect, request, session, url_for

from . import db
from .errors import AuthenticationError

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
    return merchant


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
