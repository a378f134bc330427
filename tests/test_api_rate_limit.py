"""API_RATE_LIMIT: authenticated API calls per API key, counted in PostgreSQL so that every process
and host shares the count; over it a 429 TOO_MANY_REQUESTS that changes nothing, and every answer
to a limited key says where it stands (RateLimit-* headers)."""
import base64
import http.client
import json

import psutil
import pytest

from app import config as config_module, create_app
from app.openapi import spec_dict
from helpers import BASE_CONFIG, Api, api_headers, wait_until

RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
ORDER = {"amount": 50000, "currency": "INR"}


@pytest.fixture
def limited(app):
    """Another app on the same database with API_RATE_LIMIT set: another process or host."""
    made = []

    def make(limit="3/minute"):
        made.append(create_app(dict(BASE_CONFIG, DATABASE_URL=app.config["DATABASE_URL"], API_RATE_LIMIT=limit)))
        return made[-1].test_client()

    yield make
    for a in made:
        a.extensions["db_pool"].close()


def test_the_fourth_call_of_a_key_is_a_429_and_other_keys_go_on(limited, make_merchant):
    c, a, b = limited(), make_merchant(), make_merchant()
    for remaining in ("2", "1", "0"):
        r = c.get("/api/v1/orders", headers=a["headers"])
        assert r.status_code == 200
        assert r.headers["RateLimit-Limit"] == "3" and r.headers["RateLimit-Remaining"] == remaining
        assert 1 <= int(r.headers["RateLimit-Reset"]) <= 60 and "Retry-After" not in r.headers
    r = c.get("/api/v1/orders", headers=a["headers"])
    assert r.status_code == 429
    assert r.get_json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert "3/minute" in r.get_json()["error"]["description"]
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert r.headers["RateLimit-Limit"] == "3" and r.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(r.headers["RateLimit-Reset"]) <= 60
    # The same key over HTTP Basic (as the Razorpay SDKs send it) is the same key.
    basic = base64.b64encode(f"{a['api_key']}:{a['api_secret']}".encode()).decode()
    assert c.get("/api/v1/orders", headers={"Authorization": f"Basic {basic}"}).status_code == 429
    r = c.get("/api/v1/orders", headers=b["headers"])
    assert r.status_code == 200 and r.headers["RateLimit-Remaining"] == "2"


def test_a_refused_call_changes_nothing(limited, merchant, db):
    c = limited()
    for _ in range(3):
        assert c.post("/api/v1/orders", json=ORDER, headers=merchant["headers"]).status_code == 201
    r = c.post("/api/v1/orders", json=ORDER, headers=dict(merchant["headers"], **{"Idempotency-Key": "refused-1"}))
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert db.value("SELECT count(*) FROM orders WHERE merchant_id = %(m)s", {"m": merchant["id"]}) == 3
    assert db.value("SELECT count(*) FROM idempotency_keys WHERE merchant_id = %(m)s", {"m": merchant["id"]}) == 0
    # Refused before the body is read: a malformed one is not even a 400.
    r = c.post("/api/v1/orders", data="{not json", content_type="application/json", headers=merchant["headers"])
    assert r.status_code == 429


def test_errors_after_authentication_count_and_carry_the_headers(limited, merchant):
    c = limited()
    r = c.get("/api/v1/orders/order_doesnotexist00", headers=merchant["headers"])
    assert r.status_code == 404 and r.headers["RateLimit-Remaining"] == "2"
    r = c.post("/api/v1/orders", json={"amount": -1}, headers=merchant["headers"])
    assert r.status_code == 400 and r.headers["RateLimit-Remaining"] == "1"
    r = c.get("/api/v1/orders?bogus=1", headers=merchant["headers"])
    assert r.status_code == 400 and r.headers["RateLimit-Remaining"] == "0"
    assert c.get("/api/v1/orders", headers=merchant["headers"]).status_code == 429


def test_failed_and_unauthenticated_calls_do_not_count(limited, merchant):
    c = limited()
    wrong = api_headers(merchant["api_key"], "secret_" + "0" * 24)
    for _ in range(5):
        r = c.get("/api/v1/orders", headers=wrong)
        assert r.status_code == 401 and not any(h in r.headers for h in RATE_HEADERS)
    order = c.post("/api/v1/orders", json=ORDER, headers=merchant["headers"]).get_json()
    for _ in range(5):  # the checkout's public view, with the key in the headers for good measure
        r = c.get(f"/api/v1/orders/{order['id']}/public", headers={"X-Api-Key": merchant["api_key"]})
        assert r.status_code == 200 and not any(h in r.headers for h in RATE_HEADERS)
    statuses = [c.get("/api/v1/orders", headers=merchant["headers"]).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_the_window_opens_again_when_retry_after_says(limited, merchant):
    c = limited("2/2seconds")
    assert [c.get("/api/v1/orders", headers=merchant["headers"]).status_code for _ in range(3)] == [200, 200, 429]
    retry_after = int(c.get("/api/v1/orders", headers=merchant["headers"]).headers["Retry-After"])
    assert 1 <= retry_after <= 2
    answers = []
    wait_until(lambda: answers.append(c.get("/api/v1/orders", headers=merchant["headers"])) or
               answers[-1].status_code == 200, timeout=retry_after + 2, interval=0.2, message="the next window")
    assert answers[-1].headers["RateLimit-Remaining"] == "1"  # a new window, this call its first hit


def test_unset_means_no_limit_and_no_headers(client, merchant):
    for _ in range(10):
        r = client.get("/api/v1/orders", headers=merchant["headers"])
        assert r.status_code == 200 and not any(h in r.headers for h in (*RATE_HEADERS, "Retry-After"))


@pytest.mark.parametrize("value", ["5/fortnight", "0/minute", "fast"])
def test_a_bad_limit_stops_the_start(app, value):
    with pytest.raises(ValueError, match="API_RATE_LIMIT.*N/"):
        create_app(dict(BASE_CONFIG, DATABASE_URL=app.config["DATABASE_URL"], API_RATE_LIMIT=value))


def test_the_setting():
    assert config_module.load({})["API_RATE_LIMIT"] is None
    assert config_module.load({"API_RATE_LIMIT": " "})["API_RATE_LIMIT"] is None
    assert config_module.load({"API_RATE_LIMIT": "100/second"})["API_RATE_LIMIT"] == "100/second"


def test_the_api_description_documents_the_429():
    doc = spec_dict()
    assert "TOO_MANY_REQUESTS" in doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    operations = [op for item in doc["paths"].values() for op in item.values()]
    assert all(("429" in op["responses"]) == bool(op["security"]) for op in operations)
    assert any(op["security"] for op in operations)


# ---- two gunicorn processes ---------------------------------------------------------------------

def _served_by(api, conn):
    """The gunicorn worker process holding this client connection."""
    port = conn.sock.getsockname()[1]
    for worker in psutil.Process(api.process.proc.pid).children():
        if any(s.raddr and s.raddr.port == port for s in worker.net_connections(kind="tcp")):
            return worker.pid
    return None


def _call(conn, method, path, headers, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=dict(headers, **({"Content-Type": "application/json"} if body is not None else {})))
    r = conn.getresponse()
    return r.status, r.headers, r.read()


def test_the_limit_is_shared_by_two_gunicorn_processes(process_env, log_dir, app, make_merchant, db):
    api = Api(dict(process_env, API_RATE_LIMIT="3/minute"), log_dir, workers=2)
    conns = []
    try:
        by_worker = {}  # one keep-alive connection on each worker process
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
            conns.append(conn)
            assert _call(conn, "GET", "/health", {})[0] == 200
            by_worker.setdefault(wait_until(lambda: _served_by(api, conn), message="the connection's worker"), conn)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, "every connection went to one gunicorn process"
        first, second = by_worker.values()
        m, other = make_merchant(), make_merchant()
        calls = [_call(conn, "POST", "/api/v1/orders", m["headers"], ORDER)
                 for conn in (first, second, first, second, first)]
        assert [status for status, _, _ in calls] == [201, 201, 201, 429, 429]
        assert [h["RateLimit-Remaining"] for _, h, _ in calls] == ["2", "1", "0", "0", "0"]
        assert json.loads(calls[3][2])["error"]["code"] == "TOO_MANY_REQUESTS"
        assert all(int(h["Retry-After"]) > 0 for _, h, _ in calls[3:])
        assert db.value("SELECT count(*) FROM orders WHERE merchant_id = %(m)s", {"m": m["id"]}) == 3
        status, headers, _ = _call(second, "GET", "/api/v1/orders", other["headers"])
        assert status == 200 and headers["RateLimit-Remaining"] == "2"
    finally:
        for conn in conns:
            conn.close()
        api.stop()


def test_a_large_limit_is_reserved_in_blocks_and_never_exceeded(app, db, monkeypatch):
    """1000/hour: a process reserves 10 calls per statement and serves them from memory; two
    processes together still get exactly 1000, then refusals that cost no statement."""
    from app import db as app_db, ratelimit

    limit, key = ratelimit.parse("1000/hour"), "api:test-blocks"
    db.execute("DELETE FROM rate_limits WHERE key = %(k)s", {"k": key})
    statements = []
    real_hit = ratelimit.hit

    def counted(*args, **kwargs):
        statements.append(kwargs.get("n", 1))
        return real_hit(*args, **kwargs)

    monkeypatch.setattr(ratelimit, "hit", counted)
    monkeypatch.setattr(ratelimit, "_held", {})
    with app_db.connect(app.extensions["db_pool"]) as c:
        first = [ratelimit.take(c, key, limit) for _ in range(10)]
        assert all(d.allowed for d in first) and statements == [10]  # one statement for ten calls
        assert db.value("SELECT hits FROM rate_limits WHERE key = %(k)s", {"k": key}) == 10
        assert first[-1].remaining == 990
        allowed = 10
        for _ in range(2):  # two processes, each with its own memory
            monkeypatch.setattr(ratelimit, "_held", {})
            allowed += sum(ratelimit.take(c, key, limit).allowed for _ in range(700))
        assert allowed == 1000
        assert db.value("SELECT hits FROM rate_limits WHERE key = %(k)s", {"k": key}) == 1000
        before = len(statements)
        refused = [ratelimit.take(c, key, limit) for _ in range(50)]
        assert not any(d.allowed for d in refused) and refused[-1].headers()["Retry-After"]
        assert len(statements) == before  # remembered: no statement for a refused key until the window ends
    assert len(statements) < 150  # about 100 blocks and the refusals' last single tries
