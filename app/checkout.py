"""The shopper's side: the /checkout page, the checkout.js SDK and the success signature.

The page is plain HTML + one static script (no inline script, so the Content-Security-Policy can
be strict). Embedded in the SDK's iframe (`embedded=true`) it reports to the merchant page with
postMessage, only ever to the parent's origin, which the SDK passes as `parent_origin`.
"""
import hashlib
import hmac
import logging
import re
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, render_template, request, send_from_directory

from . import db, orders, payments
from .config import ROOT
from .errors import NotFound, html_errors

log = logging.getLogger(__name__)
bp = Blueprint("checkout", __name__)
html_errors(bp)

SDK_DIR = ROOT / "sdk"
SDK_MAX_AGE = 300  # seconds: short, so a fixed SDK reaches merchants' shoppers within minutes

# A serialised web origin as location.origin gives it: scheme, host, optional port; nothing else.
# Being this strict also keeps the value safe to place in the CSP header (no spaces, no ';').
# Matched with fullmatch: a "$" would also match before a trailing newline, which then broke the header.
_ORIGIN_RE = re.compile(
    r"(https?)://("
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"  # DNS name / IPv4
    r"|\[[0-9a-f:.]+\]"                                                                       # IPv6 literal
    r")(?::([0-9]{1,5}))?", re.IGNORECASE)


def valid_origin(value):
    """The origin, lower-cased, when `value` is exactly scheme://host[:port]; else None."""
    if not isinstance(value, str) or len(value) > 300:
        return None
    m = _ORIGIN_RE.fullmatch(value)
    if m is None or (m.group(3) and not 0 < int(m.group(3)) <= 65535):
        return None
    return value.lower()


def payment_signature(api_secret, order_id, payment_id):
    """Hex HMAC-SHA256 of "order_id|payment_id" with the merchant's API secret (razorpay's
    verify_payment_signature scheme), so a merchant's server can trust a success it is told of."""
    return hmac.new(api_secret.encode(), f"{order_id}|{payment_id}".encode(), hashlib.sha256).hexdigest()


def _frame_ancestors_setting():
    """CHECKOUT_FRAME_ANCESTORS: '*' (any site may embed) or a list of origins."""
    raw = current_app.config.get("CHECKOUT_FRAME_ANCESTORS") or "*"
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    allowed = [o for o in (valid_origin(x) for x in raw if x != "*") if o]
    return None if "*" in raw or not allowed else allowed


def _parent_origin():
    """The origin the embedded page posts to: `parent_origin` as the SDK sends it, else the
    Referer's origin (an iframe opened without the SDK). (origin, error message)."""
    given = request.args.get("parent_origin")
    if given is not None:
        origin = valid_origin(given)
        return (origin, None) if origin else (None, "The parent_origin parameter is not a valid web origin.")
    parts = urlsplit(request.referrer or "")
    return valid_origin(f"{parts.scheme}://{parts.netloc}") if parts.scheme and parts.netloc else None, None


def _error_page(status, title, message, embedded=False, parent_origin=None, **extra):
    return render_template("checkout_error.html", title=title, message=message, embedded=embedded,
                           parent_origin=parent_origin, **extra), status


CALLBACK_URL_MAX = 2000


def callback_origin(value):
    """The origin of `value` when it is an absolute http(s) URL whose origin is a plain
    scheme://host[:port] (no credentials, no spaces or control characters, at most
    CALLBACK_URL_MAX long); else None. The page POSTs the payment's signature there, so nothing
    else (javascript:, data:) is accepted, and the origin is safe to place in the CSP."""
    if not isinstance(value, str) or len(value) > CALLBACK_URL_MAX or any(ch.isspace() or ch < " " for ch in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return valid_origin(f"{parts.scheme}://{parts.netloc}")


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _text_option(name, limit):
    """An optional display text the SDK passes (name, description, prefill), cut to `limit`;
    control characters (NUL, line breaks) become a space, as they have no place on the page."""
    value = _CONTROL_RE.sub(" ", request.args.get(name) or "").strip()
    return value[:limit] or None


@bp.get("/checkout")
def checkout_page():
    """The order summary and the UPI/card forms; every failure to start is a readable page."""
    embedded = request.args.get("embedded", "").lower() == "true"
    order_id = request.args.get("order_id", "").strip()
    key = request.args.get("key")
    parent_origin, origin_error = _parent_origin() if embedded else (None, None)
    if origin_error:
        return _error_page(400, "Checkout cannot start", origin_error, embedded)
    allowed = _frame_ancestors_setting()
    if embedded and parent_origin and allowed is not None and parent_origin not in allowed:
        return _error_page(403, "Checkout cannot be embedded here",
                           "This website is not allowed to embed the checkout.", embedded)
    g.checkout_frame_ancestor = parent_origin if embedded else None
    callback_url = back_url = back_host = None
    if "callback_url" in request.args and not embedded:
        callback_url = request.args["callback_url"]
        g.checkout_form_target = callback_origin(callback_url)
        if g.checkout_form_target is None:
            return _error_page(400, "Checkout cannot start",
                               "The link's callback_url is not a valid http(s) address. Ask the merchant for a new link.")
        back_url = g.checkout_form_target + "/"
        # Anyone can write a link with a callback_url: the shopper sees which site they go back to.
        back_host = urlsplit(back_url).netloc
    if not order_id:
        return _error_page(400, "No order", "The checkout link has no order_id. Ask the merchant for a new link.",
                           embedded, parent_origin)
    try:
        order = orders.get_public(db.conn(), order_id[:64])
    except NotFound:
        return _error_page(404, "Order not found",
                           "We could not find this order. Check the link or ask the merchant for a new one.",
                           embedded, parent_origin)
    # The SDK names the merchant whose page opened the checkout: never show another merchant's order.
    if key is not None and not hmac.compare_digest(key.encode(), order["api_key"].encode()):
        log.warning("checkout refused: key does not own the order", extra={"order_id": order["id"]})
        return _error_page(403, "Checkout refused",
                           "This order belongs to a different merchant than the one that opened the checkout.",
                           embedded, parent_origin)
    if order["status"] != "created":
        return _error_page(409, "Already paid", "This order has already been paid. Nothing more to pay.",
                           embedded, parent_origin, already_paid=True, order=order, back_url=back_url,
                           back_host=back_host)
    return render_template(
        "checkout.html", order=order, embedded=embedded, parent_origin=parent_origin,
        test_mode=current_app.config.get("TEST_MODE"), callback_url=callback_url, back_url=back_url,
        back_host=back_host, poll_timeout=current_app.config.get("CHECKOUT_POLL_TIMEOUT", 600),
        name=_text_option("name", 100), description=_text_option("description", 255),
        prefill_vpa=_text_option("prefill[vpa]", 255))


@bp.get("/checkout/orders/<order_id>/payments/<payment_id>")
def payment_status(order_id, payment_id):
    """Where a payment of the checkout stands, for the checkout page and for the SDK on the
    merchant's page (another origin) once the modal is closed: {paymentId, orderId, status} and,
    once settled, `signature` (success) or `error: {code, description}` and `orderPaid` (failure).

    The pair of ids is the capability, as with Razorpay's checkout, which hands the signature to
    the merchant page's handler in the browser too: a payment is told of only to whoever names its
    order as well, and nothing of the merchant or of other payments is. Each id carries 65 random
    bits, so guessing a pair is out of reach without a rate limit; any id that is not the pair is
    the same 404, so the answer never tells which half was wrong."""
    c = db.conn()
    try:
        payment = payments.get_public(c, payment_id)
    except NotFound:
        payment = None
    if payment is None or not hmac.compare_digest(payment["order_id"].encode(), order_id.encode()):
        return _cors(_json_error(404, "NOT_FOUND_ERROR", "Payment not found."))
    body = {"paymentId": payment["id"], "orderId": payment["order_id"], "status": payment["status"]}
    if payment["status"] == "success":
        # The view reads the one secret it needs, as api/payments.py reads the order's merchant.
        secret = db.value(c, "SELECT api_secret FROM merchants WHERE id = %(id)s", {"id": payment["merchant_id"]})
        body["signature"] = payment_signature(secret, payment["order_id"], payment["id"])
    elif payment["status"] == "failed":
        body["error"] = {"code": payment["error_code"], "description": payment["error_description"]}
        # A payment that lost to another one of the same order: the order is paid, say so.
        body["orderPaid"] = db.value(c, "SELECT status FROM orders WHERE id = %(id)s",
                                     {"id": payment["order_id"]}) == "paid"
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return _cors(resp)


def _cors(resp):
    # Any page may read it (no cookies are involved, so no credentials are allowed either).
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return resp


def _json_error(status, code, description):
    resp = jsonify(error={"code": code, "description": description})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/checkout.js")
def sdk():
    """The embeddable SDK: one dependency-free file, cached briefly, loadable from any site."""
    resp = send_from_directory(SDK_DIR, "checkout.js", mimetype="text/javascript", max_age=SDK_MAX_AGE,
                               conditional=True)
    resp.headers["Cache-Control"] = f"public, max-age={SDK_MAX_AGE}"
    resp.headers.pop("Content-Disposition", None)
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return resp


def _csp(frame_ancestors, form_target=None):
    form_action = f"'self' {form_target}" if form_target else "'self'"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; font-src 'self'; form-action {form_action}; base-uri 'none'; "
            f"object-src 'none'; frame-ancestors {frame_ancestors}")


@bp.after_request
def _security_headers(resp):
    # The SDK is a script that other sites load and browsers cache: the page's policy is not its own.
    if request.endpoint in ("checkout.sdk", "checkout.payment_status"):
        return resp
    # The page is embedded by merchants: frame-ancestors instead of X-Frame-Options. An embedded
    # page may be framed by the origin it reports to only; the standalone page by the setting.
    embedder = g.get("checkout_frame_ancestor")
    allowed = _frame_ancestors_setting()
    # The success form goes to the merchant's callback_url: its origin (validated) joins form-action.
    resp.headers["Content-Security-Policy"] = _csp(embedder or (" ".join(allowed) if allowed else "*"),
                                                   g.get("checkout_form_target"))
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    # The order's state changes under the page (paid): never serve it from a cache.
    resp.headers["Cache-Control"] = "no-store"
    return resp


def init_app(app):
    """Register the blueprint."""
    app.register_blueprint(bp)
