"""Dashboard sessions and sign-in, as an attacker would try them: the sign-in throttle (per email,
per client address, shared by every process), sessions that end at sign-out, Secure cookies
behind a TLS proxy, no framing or caching of pages that show secrets, snippets that never take
the Host header, and query strings that must not break the pager."""
import html
import re
import threading
import time
import uuid

import psycopg
import pytest
from werkzeug.security import generate_password_hash

from app import config as config_module, create_app, dashboard
from app.errors import ApiError
from helpers import (BASE_CONFIG, DASHBOARD_PASSWORD, csrf_token, dashboard_client, insert_payments, insert_webhook_logs,
                     new_address, post_login, wait_until)


@pytest.fixture
def hashes(monkeypatch):
    """Counts the password hashes the sign-in computes (the cost the throttle must spare)."""
    calls = []
    real = dashboard.check_password_hash

    def counting(stored, password):
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(dashboard, "check_password_hash", counting)
    return calls


@pytest.fixture
def other_app(database_url):
    """A second, independent app on the same database: another process or host."""

    made = []

    def make(**settings):
        made.append(create_app(dict(BASE_CONFIG, DATABASE_URL=database_url, **settings)))
        return made[-1]

    yield make
    for a in made:
        a.extensions["db_pool"].close()


# ---- the sign-in throttle -------------------------------------------------------------------------

def test_five_failures_lock_the_email_with_429_before_any_hash(app, dashboard_merchant, hashes):
    c = dashboard_client(app)
    for _ in range(5):
        assert post_login(c, dashboard_merchant["email"], "wrong").status_code == 401
    assert len(hashes) == 5
    # The right password too: a guesser must not learn it was right while locked out.
    r = post_login(c, dashboard_merchant["email"], DASHBOARD_PASSWORD)
    assert r.status_code == 429
    assert r.mimetype == "text/html"
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60
    page = r.get_data(as_text=True)
    assert 'data-test-id="login-form"' in page and "Too many sign-in attempts" in page
    assert len(hashes) == 5, "the locked attempt computed a password hash"
    # Another address does not unlock it (the limit is per email), and the session stays empty.
    r = post_login(dashboard_client(app), dashboard_merchant["email"].upper(), DASHBOARD_PASSWORD)
    assert r.status_code == 429
    assert c.get("/dashboard").status_code == 302


def test_an_unknown_email_is_throttled_like_a_known_one(app, hashes):
    c, email = dashboard_client(app), f"nobody-{uuid.uuid4()}@example.com"
    assert [post_login(c, email, "x").status_code for _ in range(6)] == [401] * 5 + [429]
    assert len(hashes) == 5  # the dummy hash still equalises the timing of the 5 refusals


def test_a_success_resets_the_email_count(app, dashboard_merchant):
    c = dashboard_client(app)
    for _ in range(4):
        assert post_login(c, dashboard_merchant["email"], "wrong").status_code == 401
    assert post_login(c, dashboard_merchant["email"], DASHBOARD_PASSWORD).status_code == 302
    c.post("/logout", data={"csrf_token": csrf_token(c, "/dashboard")})
    statuses = [post_login(c, dashboard_merchant["email"], "wrong").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_sign_in_opens_again_when_retry_after_says(other_app, dashboard_merchant):
    short = other_app(LOGIN_RATE_LIMIT="2/3seconds")
    c = dashboard_client(short)
    assert [post_login(c, dashboard_merchant["email"], "wrong").status_code for _ in range(2)] == [401, 401]
    r = post_login(c, dashboard_merchant["email"], DASHBOARD_PASSWORD)
    assert r.status_code == 429 and r.headers["RateLimit-Remaining"] == "0"
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 3
    refused_at = time.monotonic()
    wait_until(lambda: post_login(c, dashboard_merchant["email"], DASHBOARD_PASSWORD).status_code == 302,
               timeout=retry_after + 2, interval=0.5, message="sign-in allowed again")
    assert time.monotonic() - refused_at <= retry_after + 1


def test_thirty_failures_a_minute_lock_the_client_address(app, hashes):
    c = dashboard_client(app)
    for i in range(30):
        assert post_login(c, f"guess-{i}-{uuid.uuid4()}@example.com", "x").status_code == 401
    r = post_login(c, f"fresh-{uuid.uuid4()}@example.com", "x")
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 60
    assert len(hashes) == 30
    # Another client address is not affected.
    assert post_login(dashboard_client(app), f"fresh-{uuid.uuid4()}@example.com", "x").status_code == 401


def test_only_failures_count_against_an_address(other_app, dashboard_merchant):
    small = other_app(LOGIN_ADDRESS_RATE_LIMIT="3/minute")
    c = dashboard_client(small)
    for _ in range(6):  # twice the address limit, all successful
        r = post_login(c, dashboard_merchant["email"], DASHBOARD_PASSWORD)
        assert r.status_code == 302, r.status_code
        c.post("/logout", data={"csrf_token": csrf_token(c, "/dashboard")})
    assert [post_login(c, f"x-{uuid.uuid4()}@example.com", "x").status_code for _ in range(4)] == [401] * 3 + [429]


def test_the_limit_is_shared_by_two_app_instances(app, other_app, dashboard_merchant):
    second = other_app()
    address = new_address()
    on_first, on_second = dashboard_client(app, address), dashboard_client(second, address)
    statuses = [post_login(client, dashboard_merchant["email"], "wrong").status_code
                for client in (on_first, on_second, on_first, on_second, on_first)]
    assert statuses == [401] * 5
    assert post_login(on_second, dashboard_merchant["email"], DASHBOARD_PASSWORD).status_code == 429
    assert post_login(dashboard_client(app), dashboard_merchant["email"], DASHBOARD_PASSWORD).status_code == 429


def test_parallel_guesses_get_exactly_the_limit(app, dashboard_merchant):
    """Guessers racing each other: the count is taken atomically, so 12 at once get 5 tries."""
    statuses, start = [], threading.Barrier(12)

    def guess():
        c = dashboard_client(app)
        token = csrf_token(c, "/login")
        start.wait()
        statuses.append(c.post("/login", data={"email": dashboard_merchant["email"], "password": "wrong",
                                               "csrf_token": token}).status_code)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [401] * 5 + [429] * 7


@pytest.mark.parametrize("value,count,seconds", [
    ("5/15minutes", 5, 900), ("30/minute", 30, 60), ("100/second", 100, 1), ("10/2hours", 10, 7200),
    ("1/day", 1, 86400), (" 7 / 3 Minutes ", 7, 180), ("2/1second", 2, 1),
])
def test_rate_limit_format(value, count, seconds):
    from app import ratelimit

    limit = ratelimit.parse(value)
    assert (limit.count, limit.period) == (count, seconds)


@pytest.mark.parametrize("value", ["", "5", "0/minute", "5/0minutes", "5/fortnight", "-1/minute", "5/minute/x",
                                   "five/minute", "5/1.5minutes"])
def test_bad_rate_limits_are_refused(value):
    from app import ratelimit

    with pytest.raises(ValueError, match="N/"):
        ratelimit.parse(value)


@pytest.mark.parametrize("setting", ["LOGIN_RATE_LIMIT", "LOGIN_ADDRESS_RATE_LIMIT"])
def test_a_bad_rate_limit_stops_the_start(setting, database_url):
    with pytest.raises(ValueError, match=setting):
        create_app(dict(BASE_CONFIG, DATABASE_URL=database_url, **{setting: "5/fortnight"}))


def test_defaults():
    settings = config_module.load({})
    assert settings["LOGIN_RATE_LIMIT"] == "5/15minutes" and settings["LOGIN_ADDRESS_RATE_LIMIT"] == "30/minute"
    assert settings["PUBLIC_URL"] == "http://localhost:8000" and settings["TRUST_PROXY"] == 0
    assert settings["SESSION_COOKIE_SECURE"] is False
    assert config_module.load({"PORT": "9000"})["PUBLIC_URL"] == "http://localhost:9000"
    tls = config_module.load({"PUBLIC_URL": "https://pay.example.com/"})
    assert tls["PUBLIC_URL"] == "https://pay.example.com"
    assert tls["SESSION_COOKIE_SECURE"] is True and tls["PREFERRED_URL_SCHEME"] == "https"
    for bad in ("pay.example.com", "ftp://pay.example.com", "https://"):
        with pytest.raises(ValueError, match="PUBLIC_URL"):
            config_module.load({"PUBLIC_URL": bad})


# ---- sessions ---------------------------------------------------------------------------------------

def signed_in(app, merchant):
    c = dashboard_client(app)
    assert post_login(c, merchant["email"], DASHBOARD_PASSWORD).status_code == 302
    return c


def session_cookie(c):
    return c.get_cookie("session").value


def forge_host(c, host="attacker.example"):
    """Send this browser's requests with a forged Host header (and its cookie along with them)."""
    c.set_cookie("session", session_cookie(c), domain=host)
    return {"Host": host}


def replay(app, cookie):
    """A fresh browser presenting a captured session cookie."""
    c = dashboard_client(app)
    c.set_cookie("session", cookie)
    return c.get("/dashboard")


def test_a_cookie_captured_before_sign_out_opens_nothing_after(app, dashboard_merchant):
    c = signed_in(app, dashboard_merchant)
    captured = session_cookie(c)
    assert replay(app, captured).status_code == 200
    token = csrf_token(c, "/dashboard")
    assert c.post("/logout", data={"csrf_token": token}).status_code == 302
    r = replay(app, captured)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    # Signing in again works, with a new cookie.
    assert signed_in(app, dashboard_merchant).get("/dashboard").status_code == 200


def test_a_password_change_ends_the_sessions(app, dashboard_merchant, db):
    captured = session_cookie(signed_in(app, dashboard_merchant))
    db.execute("UPDATE merchants SET password_hash = %(h)s WHERE id = %(id)s", {"h": generate_password_hash("new-pass-2"), "id": dashboard_merchant["id"]})
    r = replay(app, captured)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_session_cookie_is_secure_over_https_behind_a_trusted_proxy(other_app, dashboard_merchant):
    proxied = other_app(TRUST_PROXY=1)
    c = dashboard_client(proxied)
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": new_address()}
    r = c.get("/login", headers=tls)
    assert "; Secure" in r.headers["Set-Cookie"]
    # Plain http (a developer on localhost) keeps working without Secure.
    assert "; Secure" not in dashboard_client(proxied).get("/login").headers["Set-Cookie"]
    # Without TRUST_PROXY the header is the client's word and is ignored.
    direct = other_app()
    assert "; Secure" not in dashboard_client(direct).get("/login", headers=tls).headers["Set-Cookie"]
    # SESSION_COOKIE_SECURE (the default when PUBLIC_URL is https) forces it.
    forced = other_app(SESSION_COOKIE_SECURE=True)
    assert "; Secure" in dashboard_client(forced).get("/login").headers["Set-Cookie"]


def test_the_throttle_counts_the_forwarded_address_only_behind_a_trusted_proxy(other_app):
    proxied, direct = other_app(TRUST_PROXY=1, LOGIN_ADDRESS_RATE_LIMIT="2/minute"), \
        other_app(LOGIN_ADDRESS_RATE_LIMIT="2/minute")
    proxy = new_address()  # every request comes from the proxy's address

    def attempt(a, client_address):
        return post_login(dashboard_client(a, proxy), f"x-{uuid.uuid4()}@example.com", "x",
                          headers={"X-Forwarded-For": client_address}).status_code

    # Behind the proxy each client has its own count …
    assert [attempt(proxied, a) for a in ("198.51.100.1", "198.51.100.1", "198.51.100.2")] == [401, 401, 401]
    assert attempt(proxied, "198.51.100.1") == 429
    # … and without TRUST_PROXY a forged X-Forwarded-For does not dodge the limit.
    proxy = new_address()
    assert [attempt(direct, f"203.0.113.{i}") for i in range(3)] == [401, 401, 429]


# ---- headers on pages that show secrets ----------------------------------------------------------

DASHBOARD_PATHS = ["/dashboard", "/dashboard/transactions", "/dashboard/webhooks", "/dashboard/webhooks/endpoints",
                   "/dashboard/docs", "/dashboard/jobs", "/dashboard/transactions/pay_0000000000000000",
                   "/dashboard/webhooks/endpoints/we_0000000000000000"]


def assert_unframeable_and_uncached(r):
    assert r.headers.get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in r.headers.get("Content-Security-Policy", "")
    assert r.headers.get("Cache-Control") == "no-store"


def test_dashboard_pages_cannot_be_framed_or_cached(app, dashboard_merchant):
    c = signed_in(app, dashboard_merchant)
    for path in DASHBOARD_PATHS:
        r = c.get(path)
        assert r.status_code in (200, 404), path
        assert_unframeable_and_uncached(r)
    assert_unframeable_and_uncached(dashboard_client(app).get("/login"))
    assert_unframeable_and_uncached(post_login(dashboard_client(app), "nobody@example.com", "x"))
    # The stylesheet the pages load is untouched, and the checkout keeps its own frame policy.
    css = c.get("/static/dashboard.css")
    assert css.status_code == 200 and "X-Frame-Options" not in css.headers
    checkout = c.get("/checkout?order_id=order_0000000000000000")
    assert "X-Frame-Options" not in checkout.headers
    assert "frame-ancestors 'none'" not in checkout.headers.get("Content-Security-Policy", "")


# ---- the pages answer their own errors as HTML -----------------------------------------------------

def _raise(error):
    def failing(*args, **kwargs):
        raise error
    return failing


@pytest.mark.parametrize("error,status,text", [
    (RuntimeError("secret internals"), 500, "Internal server error"),
    (psycopg.OperationalError("connection refused"), 503, "The database is unavailable; try again shortly."),
    # Escaped: a description can quote what was sent.
    (ApiError("Bad <b>value</b>."), 400, "Bad &lt;b&gt;value&lt;/b&gt;."),
])
def test_a_failure_inside_a_dashboard_page_is_an_html_answer(app, dashboard_merchant, monkeypatch, error, status, text):
    c = signed_in(app, dashboard_merchant)
    monkeypatch.setattr(dashboard.data, "stats", _raise(error))
    r = c.get("/dashboard")
    assert r.status_code == status and r.mimetype == "text/html"
    assert r.get_data(as_text=True) == text
    assert_unframeable_and_uncached(r)


def test_a_form_without_its_token_gets_the_dashboard_page_and_changes_nothing(app, dashboard_merchant, db):
    c = signed_in(app, dashboard_merchant)
    r = c.post("/dashboard/webhooks", data={"webhook_url": "https://evil.example/hook"})
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert 'data-test-id="csrf-error"' in r.get_data(as_text=True)
    assert db.value("SELECT webhook_url FROM merchants WHERE id = %(id)s", {"id": dashboard_merchant["id"]}) is None



def test_every_form_outside_the_api_refuses_a_post_without_its_token(app, dashboard, dashboard_merchant, db):
    """Every POST route of the app but the API's (which takes no cookies), today's and any added
    later, with no token or a forged one: the CSRF page, before the view runs."""
    [pay_id] = insert_payments(db, dashboard_merchant["id"], [(10_000, "success", "upi")])
    ids = {"payment_id": pay_id, "log_id": insert_webhook_logs(db, dashboard_merchant["id"], 1)[0]}
    forms = [re.sub(r"<([^>]+)>", lambda m: ids.get(m.group(1), "we_0000000000000000"), rule.rule)
             for rule in app.url_map.iter_rules() if "POST" in rule.methods and not rule.rule.startswith("/api/")]
    assert "/dashboard/webhooks/endpoints" in forms and "/login" in forms
    for path in forms:
        for token in ({}, {"csrf_token": "forged"}):
            r = dashboard.post(path, data=dict(token, amount="1.00", webhook_url="https://evil.example/hook"))
            assert r.status_code == 400 and 'data-test-id="csrf-error"' in r.get_data(as_text=True), path
    assert db.value("SELECT count(*) FROM refunds WHERE payment_id = %(p)s", {"p": pay_id}) == 0
    assert db.value("SELECT webhook_url FROM merchants WHERE id = %(id)s", {"id": dashboard_merchant["id"]}) is None


# ---- snippets and links never come from the Host header --------------------------------------------

def test_docs_and_overview_use_the_public_url_not_the_host_header(other_app, dashboard_merchant):
    public = other_app(PUBLIC_URL="https://pay.example.com")
    c = signed_in(public, dashboard_merchant)
    forged = forge_host(c)
    docs = c.get("/dashboard/docs", headers=forged).get_data(as_text=True)
    assert "https://pay.example.com/api/v1/orders" in docs
    assert "https://pay.example.com/checkout.js" in docs
    assert "attacker.example" not in docs
    overview = c.get("/dashboard", headers=forged).get_data(as_text=True)
    assert "https://pay.example.com/api/v1" in overview and "attacker.example" not in overview


@pytest.mark.parametrize("query", ["endpoint=x", "_method=POST", "_external=1", "_scheme=https", "_anchor=x",
                                   "status=success&_method=POST"])
@pytest.mark.parametrize("path", ["/dashboard/transactions", "/dashboard/webhooks"])
def test_unknown_query_parameters_do_not_break_the_pager(app, db, dashboard_merchant, path, query):
    c = signed_in(app, dashboard_merchant)
    if path.endswith("transactions"):
        cursor = insert_payments(db, dashboard_merchant["id"], [(10000, "success", "upi")] * 2)[-1]
    else:
        cursor = insert_webhook_logs(db, dashboard_merchant["id"], 2)[-1]
    r = c.get(f"{path}?before={cursor}&{query}", headers=forge_host(c))
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    links = [html.unescape(h) for h in re.findall(r'href="([^"]*)" data-test-id="prev-page"', page)]
    assert links, "the pager's link to the previous page is missing"
    for href in links:
        assert href.startswith(path + "?") and "attacker.example" not in href and "#" not in href
        assert "_method" not in href and "endpoint" not in href
    if "status=success" in query:  # the page's own filter is kept
        expected = f"{path}?status=success&after="
        assert len(links) == 1 and links[0].startswith(expected)
