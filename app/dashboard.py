"""The merchant dashboard: /login, /logout and /dashboard/... (server-rendered, no JavaScript).
Every form carries a Flask-WTF CSRF token; the session cookie is HttpOnly and SameSite=Lax; failed
sign-ins are throttled (app/ratelimit.py) and signing out ends the session (docs/security.md)."""
import functools
import hashlib
import hmac
import logging
import math
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.security import check_password_hash, generate_password_hash

from . import dashboard_data as data
from . import config, dashboard_docs, db, jobs, ratelimit
from .auth import login_required, session_token, signed_in_merchant
from .errors import html_errors
from .timefmt import iso, when

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__)
html_errors(bp)
csrf = CSRFProtect()
bp.before_request(csrf.protect)  # each form here carries the token; a failure is _csrf_error's page

PAGE_SIZE = 20


# ---- sign in / out ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _dummy_hash():
    # Checked against when the email is unknown, so both failures cost one password hash.
    return generate_password_hash("not-a-password")


def _safe_next(target):
    """Only a local dashboard path: ?next= must not send a signed-in merchant elsewhere."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard"):
        return url_for("dashboard.overview")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _throttle_keys(email):
    """The sign-in throttle's keys: the client address, and the email as a digest keyed with
    SECRET_KEY (a password typed into the email field must not be stored)."""
    digest = hmac.new(current_app.secret_key.encode(), email.strip().lower().encode(), hashlib.sha256)
    return f"login-address:{request.remote_addr}", f"login-email:{digest.hexdigest()}"


def _throttle(c, email):
    """Count this attempt against its address, then its email, before any password hash is
    computed; the refusal, if any. An attempt refused for its email still counts for its address."""
    by_address, by_email = current_app.extensions["login_limits"]
    address_key, email_key = _throttle_keys(email)
    decision = ratelimit.hit(c, address_key, by_address)
    if decision.allowed:
        decision = ratelimit.hit(c, email_key, by_email)
    return None if decision.allowed else decision


def _signed_in(c, email):
    """A success: forget the email's failures and give the address back the attempt it counted."""
    address_key, email_key = _throttle_keys(email)
    ratelimit.clear(c, email_key)
    ratelimit.give_back(c, address_key)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if signed_in_merchant():
            return redirect(url_for("dashboard.overview"))
        return render_template("login.html", email="", next=request.args.get("next", ""))
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    c = db.conn()
    refused = _throttle(c, email)
    if refused:
        log.warning("dashboard login throttled")
        seconds = max(math.ceil(refused.retry_after), 1)
        minutes = math.ceil(seconds / 60)
        wait = (f"{seconds} second{'s' if seconds > 1 else ''}" if seconds < 60
                else f"{minutes} minute{'s' if minutes > 1 else ''}")
        return render_template("login.html", email=email, next=request.form.get("next", ""),
                               error=f"Too many sign-in attempts. Try again in {wait}."), 429, refused.headers()
    merchant = data.find_login(c, email) if email else None
    stored = (merchant or {}).get("password_hash") or _dummy_hash()
    ok = check_password_hash(stored, password) and bool(merchant and merchant["password_hash"])
    if not ok:
        log.info("dashboard login refused")
        return render_template("login.html", email=email, next=request.form.get("next", ""),
                               error="Invalid email or password."), 401
    _signed_in(c, email)
    # A fresh session on sign-in: nothing from before (a planted session id included) survives.
    session.clear()
    session["merchant_id"] = str(merchant["id"])
    session["token"] = session_token(merchant)
    log.info("dashboard login", extra={"merchant_id": str(merchant["id"])})
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    merchant = signed_in_merchant()
    if merchant:
        # Ends this session and every copy of its cookie (and the merchant's other sessions).
        c = db.conn()
        data.end_sessions(c, merchant["id"])
    session.clear()
    flash("You have been signed out.", "info")
    return redirect(url_for("dashboard.login"))


@bp.after_request
def _private(resp):
    # Every page here shows secrets or takes a password: never framed (clickjacking), never
    # kept by a browser or proxy cache.
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---- pages ------------------------------------------------------------------------------------

@bp.get("/dashboard")
@login_required
def overview():
    c = db.conn()
    tz = current_app.config["DASHBOARD_TIMEZONE"]
    days = data.payments_per_day(c, g.merchant["id"], tz)
    return render_template("dashboard/overview.html", stats=data.stats(c, g.merchant["id"]),
                           chart=data.chart(days), days=days, zone=str(tz))


@bp.get("/dashboard/docs")
@login_required
def docs():
    spec = dashboard_docs.load_spec()
    # The configured address, never the Host header: a forged Host must not reach copy-paste code.
    values = {"base_url": current_app.config["PUBLIC_URL"], "api_key": g.merchant["api_key"]}

    def snippets(api_secret, webhook_secret):
        # Plain-text templates (not autoescaped); docs.html escapes them once when it shows them.
        return {name: render_template(f"dashboard/snippets/{name}.txt", api_secret=api_secret,
                                      webhook_secret=webhook_secret, **values)
                for name in ("create_order.sh", "sdk.html", "webhook.py", "webhook.js")}

    # Shown with the secrets masked, as on the other pages; revealed, ready to run.
    return render_template("dashboard/docs.html", snippets=snippets("secret_••••••••••••", "whsec_••••••••••••••••"),
                           revealed=snippets(g.merchant["api_secret"],
                                             g.merchant["webhook_secret"] or "whsec_your_webhook_secret"),
                           spec=spec, reference=dashboard_docs.reference(spec),
                           retry_intervals=current_app.config["WEBHOOK_RETRY_INTERVALS"], **values)


@bp.get("/dashboard/jobs")
@login_required
def jobs_page():
    c = db.conn()
    workers = data.workers(c)  # newest beat first: a live worker, if any, is among them
    return render_template("dashboard/jobs.html", queue=jobs.overview(c), statuses=jobs.STATUSES,
                           running=any(w["alive"] for w in workers), workers=workers,
                           dead=jobs.dead_of_merchant(c, g.merchant["id"]))


@bp.get("/favicon.ico")
def favicon():
    # Browsers ask for /favicon.ico whatever the page says: a real icon, not the API's JSON 404.
    return current_app.send_static_file("favicon.svg")


# ---- formatting (money and time are formatted here, for the templates only) ---------------------

def duration(seconds):
    """42 -> '42 s', 125 -> '2 min 5 s', 7300 -> '2 h 1 min'."""
    if seconds is None:
        return "—"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


# ---- wiring -----------------------------------------------------------------------------------

@bp.errorhandler(CSRFError)
def _csrf_error(e):
    return render_template("dashboard/csrf_error.html", reason=e.description), 400


def init_app(app):
    """Register the blueprint, template filters and CSRF protection for its forms."""
    app.extensions["login_limits"] = tuple(ratelimit.setting(name, app.config[name])
                                           for name in ("LOGIN_ADDRESS_RATE_LIMIT", "LOGIN_RATE_LIMIT"))
    # Only this blueprint's requests are checked: it is the one that reads a session cookie (the
    # API authenticates each call with key and secret headers, the checkout posts JSON to the API).
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    from . import dashboard_endpoints, dashboard_payments, dashboard_webhooks  # noqa: F401  (routes of bp, added before bp is registered)
    app.register_blueprint(bp)
    app.add_template_filter(duration)
    app.add_template_filter(iso)
    # Every dashboard time goes through `when`: the merchant's zone, UTC on hover.
    if isinstance(app.config["DASHBOARD_TIMEZONE"], str):  # a test's config may name the zone
        app.config["DASHBOARD_TIMEZONE"] = config.time_zone(app.config["DASHBOARD_TIMEZONE"])
    app.add_template_filter(lambda dt: when(dt, app.config["DASHBOARD_TIMEZONE"]), "when")
    app.add_template_filter(dashboard_docs.inline_code)
