"""Foundation: health, the seeded merchant, auth, and the one JSON error path."""
import base64
import re
import time

import pytest
import requests

from helpers import TEST_KEY, TEST_MERCHANT_ID, TEST_SECRET, Api, api_headers, wait_until

from app import create_app, db as app_db, jobs, orders, schemas


def test_health_reports_database_and_time(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.get_json()
    assert body["database"] == "connected" and body["worker"] in ("running", "stopped")
    assert body["status"] == ("healthy" if body["worker"] == "running" else "degraded")
    assert body["timestamp"].endswith("Z") and "." not in body["timestamp"]


def test_test_merchant_is_seeded(client, db):
    r = client.get("/api/v1/test/merchant")
    assert r.status_code == 200
    assert r.get_json() == {"id": TEST_MERCHANT_ID, "email": "test@example.com", "api_key": TEST_KEY, "seeded": True}
    row = db.one("SELECT name, api_secret, webhook_secret, password_hash FROM merchants WHERE id = %(id)s",
                 {"id": TEST_MERCHANT_ID})
    assert row["name"] == "Test Merchant" and row["api_secret"] == TEST_SECRET
    assert row["webhook_secret"] == "whsec_test_abc123"
    assert row["password_hash"] and "password" not in row["password_hash"]  # hashed, not stored in clear


def test_seeding_twice_keeps_one_merchant(app, db):
    with app.app_context():
        with app_db.connect(app_db.pool()) as c:
            app_db.seed_test_merchant(c, app.config)
            app_db.seed_test_merchant(c, app.config)
    assert db.value("SELECT count(*) FROM merchants WHERE email = 'test@example.com'") == 1


@pytest.mark.parametrize("headers", [
    {},
    {"X-Api-Key": TEST_KEY},
    {"X-Api-Key": TEST_KEY, "X-Api-Secret": "wrong"},
    {"X-Api-Key": "key_unknown", "X-Api-Secret": TEST_SECRET},
    {"Authorization": "Basic " + base64.b64encode(f"{TEST_KEY}:nope".encode()).decode()},
    {"Authorization": "Bearer something"},
])
def test_bad_credentials_are_401_json(client, headers):
    r = client.get("/api/v1/orders", headers=headers)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "AUTHENTICATION_ERROR"


def test_basic_auth_works_like_razorpay_clients(client):
    token = base64.b64encode(f"{TEST_KEY}:{TEST_SECRET}".encode()).decode()
    assert client.get("/api/v1/orders", headers={"Authorization": f"Basic {token}"}).status_code == 200
    assert client.get("/api/v1/orders", headers=api_headers()).status_code == 200


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/no/such/page", 404, "NOT_FOUND_ERROR"),
    ("GET", "/api/v1/nothing-here", 404, "NOT_FOUND_ERROR"),
    # Under the HTML pages' prefixes too: no page serves these, so no page answers them.
    ("GET", "/dashboard/no-such-page", 404, "NOT_FOUND_ERROR"),
    ("GET", "/checkout/no-such-page", 404, "NOT_FOUND_ERROR"),
    ("DELETE", "/health", 405, "BAD_REQUEST_ERROR"),
    ("PATCH", "/api/v1/orders", 405, "BAD_REQUEST_ERROR"),
])
def test_unknown_routes_and_methods_are_json(client, method, path, status, code):
    r = client.open(path, method=method, headers=api_headers())
    assert r.status_code == status
    assert r.is_json and r.get_json()["error"]["code"] == code
    assert r.get_json()["error"]["description"]


@pytest.mark.parametrize("body,content_type,status", [
    ("{bad json", "application/json", 400),
    ("", "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ('"just a string"', "application/json", 400),
    ("amount=500", "application/x-www-form-urlencoded", 415),
    ('{"amount": 500}', "text/plain", 415),
])
def test_malformed_bodies_are_4xx_json(client, body, content_type, status):
    r = client.post("/api/v1/orders", data=body, headers=api_headers(**{"Content-Type": content_type}))
    assert r.status_code == status
    assert r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"


def test_oversized_body_is_413_json(client):
    r = client.post("/api/v1/orders", data='{"receipt": "' + "x" * 70_000 + '"}',
                    headers=api_headers(**{"Content-Type": "application/json"}))
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"


def test_forced_exception_is_500_json_without_details(database_url):
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "x"})

    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("secret internals")

    r = app.test_client().get("/api/v1/boom")
    assert r.status_code == 500
    body = r.get_json()
    assert body["error"]["code"] == "SERVER_ERROR"
    assert "secret internals" not in r.get_data(as_text=True)


def test_a_failure_inside_an_api_view_is_the_500_envelope(client, merchant, monkeypatch):
    def failing(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(orders, "list_", failing)
    r = client.get("/api/v1/orders", headers=merchant["headers"])
    assert r.status_code == 500 and r.is_json
    assert r.get_json()["error"]["code"] == "SERVER_ERROR"
    assert "secret internals" not in r.get_data(as_text=True)


@pytest.mark.parametrize("method,path", [("GET", "/logout"), ("POST", "/dashboard"), ("DELETE", "/login"),
                                         ("PUT", "/checkout"), ("POST", "/checkout.js")])
def test_a_wrong_method_on_a_page_is_an_html_405(client, method, path):
    """Flask names no blueprint for a routing error; the URL is still a page's, read by a person."""
    r = client.open(path, method=method)
    assert r.status_code == 405 and r.mimetype == "text/html"
    assert "Method Not Allowed" in r.get_data(as_text=True) and r.headers["Allow"]


def test_a_failure_inside_the_checkout_is_an_html_page_with_its_policy(client, monkeypatch):
    def failing(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(orders, "get_public", failing)
    r = client.get("/checkout?order_id=order_0000000000000000")
    assert r.status_code == 500 and r.mimetype == "text/html"
    assert "secret internals" not in r.get_data(as_text=True)
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert r.headers["Cache-Control"] == "no-store"


def test_the_checkout_pages_and_scripts_are_not_type_sniffed(client):
    for path in ("/checkout?order_id=order_0000000000000000", "/checkout.js", "/static/checkout.js",
                 "/static/checkout.css"):
        assert client.get(path).headers.get("X-Content-Type-Options") == "nosniff", path


@pytest.mark.slow
def test_health_is_503_while_database_is_down_and_recovers(private_server, process_env, log_dir):
    """A private embedded server we can stop and start under a running gunicorn API."""
    from app import embedded

    tmp_path, url = private_server
    api = Api(dict(process_env, DATABASE_URL=url), log_dir)
    try:
        assert requests.get(api.url + "/health").status_code == 200
        embedded.stop(tmp_path, mode="immediate")
        r = requests.get(api.url + "/health", timeout=10)
        assert r.status_code == 503
        assert r.json()["database"] == "disconnected" and r.json()["status"] == "unhealthy"
        r = requests.get(api.url + "/api/v1/test/merchant", timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "SERVER_ERROR"
        embedded.start(tmp_path)
        back = time.monotonic()
        wait_until(lambda: requests.get(api.url + "/health", timeout=5).status_code == 200, timeout=5,
                   message="API healthy again")
        assert time.monotonic() - back < 5
    finally:
        api.stop()


def test_deactivated_merchant_is_refused_once_the_auth_cache_expires(client, merchant, db, monkeypatch):
    from app import auth

    monkeypatch.setattr(auth, "AUTH_CACHE_SECONDS", 0.3)
    assert client.get("/api/v1/orders", headers=merchant["headers"]).status_code == 200
    db.execute("UPDATE merchants SET is_active = false WHERE id = %(m)s", {"m": merchant["id"]})
    wait_until(lambda: client.get("/api/v1/orders", headers=merchant["headers"]).status_code == 401, timeout=3,
               message="401 after deactivation")


@pytest.mark.parametrize("table,column,values", [
    ("orders", "status", schemas.ORDER_STATUSES),
    ("payments", "method", schemas.PAYMENT_METHODS),
    ("payments", "status", schemas.PAYMENT_STATUSES),
    ("refunds", "status", schemas.REFUND_STATUSES),
    ("webhook_logs", "status", schemas.WEBHOOK_STATUSES),
    ("jobs", "status", jobs.STATUSES),
])
def test_the_named_values_are_exactly_what_the_database_allows(db, table, column, values):
    """The API validates, documents and lists the values the schema's CHECK constraints allow, so
    a value added on one side only shows up here instead of as a 500 or a missing filter."""
    allowed = [re.findall(r"'([^']*)'::text", d) for d in db.values("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = CAST(%(t)s AS regclass) AND contype = 'c'", {"t": table}) if d.startswith(f"CHECK (({column} = ANY")]
    assert allowed == [list(values)]
