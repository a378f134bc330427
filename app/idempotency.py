"""Idempotency-Key for creating POSTs: one object per (merchant, key), replayed for 24 h."""
import functools
import hashlib
import hmac
import json
from urllib.parse import urlencode

from flask import current_app, g, request

from . import db
from .errors import ApiError, Conflict

MAX_KEY_LENGTH = 255


def _respond(body_text, status):
    return current_app.response_class(body_text, status=status, mimetype="application/json")


def idempotent(*header_names):
    """Wrap a creating view that returns (dict, status). With a key, the new object and its stored
    response land in one transaction."""
    header_names = header_names or ("Idempotency-Key",)

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            return once(g.merchant["id"], lambda: view(*args, **kwargs), header_names)

        return wrapped

    return decorator


# Separates a public key's order from the key: a control character, which merchants' own keys
# may not contain, so a scoped key never equals one of theirs.
SCOPE_SEPARATOR = "\x1f"


def once(merchant_id, produce, header_names=("Idempotency-Key",), scope=None, key=None):
    """Run produce() -> (dict, status), at most once per (merchant, key) when the request
    carries a key; a repeat gets the stored response. For views whose merchant is known only after
    reading the body (the checkout's public payment), which cannot use the decorator. An
    unauthenticated view passes its order id as `scope`: anyone may call it, so its keys live
    apart from the merchant's and from other orders' (stored as "<scope>\x1f<key>"). A form (the
    dashboard's refund) passes its key, from a hidden field, as `key`."""
    key = key or next((request.headers[h] for h in header_names if request.headers.get(h)), None)
    c = db.conn()
    if key is None:
        body, status = produce()
        return _respond(current_app.json.dumps(body), status)
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(f"Idempotency key may be at most {MAX_KEY_LENGTH} characters.")
    if any(ch < " " or ch == "\x7f" for ch in key):  # a NUL would make PostgreSQL raise (500)
        raise ApiError("Idempotency key must not contain control characters.")
    if scope is not None:
        key = scope + SCOPE_SEPARATOR + key
    digest = request_digest()
    params = {"k": key, "m": merchant_id, "h": digest}
    with db.transaction(c):
        # The primary key decides, not a check-then-insert: a concurrent request with the same key
        # blocks here until the first commits (then it replays) or rolls back (then it goes ahead).
        # An expired key is taken over in the same statement.
        claimed = db.value(c, """
            INSERT INTO idempotency_keys (key, merchant_id, request_hash) VALUES (%(k)s, %(m)s, %(h)s)
            ON CONFLICT (merchant_id, key) DO UPDATE
               SET request_hash = EXCLUDED.request_hash, response = NULL,
                   created_at = now(), expires_at = now() + interval '24 hours'
             WHERE idempotency_keys.expires_at <= now()
            RETURNING 1
            """, params)
        if claimed:
            body, status = produce()
            text_body = current_app.json.dumps(body)
            db.execute(c, "UPDATE idempotency_keys SET response = %(r)s::jsonb WHERE merchant_id = %(m)s AND key = %(k)s",
                       dict(params, r=json.dumps({"status": status, "body": text_body})))
            return _respond(text_body, status)
        stored = db.one(c, "SELECT request_hash, response FROM idempotency_keys WHERE merchant_id = %(m)s AND key = %(k)s",
                        params)
    if stored["request_hash"] != digest:
        raise Conflict("Idempotency key was already used with a different request.", field="Idempotency-Key")
    if stored["response"] is None:
        raise Conflict("A request with this idempotency key is still in progress.")
    return _respond(stored["response"]["body"], stored["response"]["status"])


def request_digest():
    """Keyed hash of method, path and body. Keyed (HMAC with SECRET_KEY), because a payment body
    holds a card number and CVV: a plain SHA-256 of it could be brute-forced from the stored
    last four digits, which would amount to storing the card."""
    mac = hmac.new(current_app.config["SECRET_KEY"].encode(), digestmod=hashlib.sha256)
    mac.update(b"%s %s\n" % (request.method.encode(), request.path.encode()))
    body = request.get_data(cache=True)
    if not body and request.form:
        # A dashboard form: its fields were parsed (the body read) by the CSRF check before the view.
        body = urlencode(sorted((k, v) for k, v in request.form.items(multi=True) if k != "csrf_token")).encode()
    mac.update(body)
    return mac.hexdigest()


def delete_expired(c):
    """Periodic duty: expired keys are free again (and the table stays small)."""
    return db.execute(c, "DELETE FROM idempotency_keys WHERE expires_at <= now()")
