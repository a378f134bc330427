"""Webhooks end to end: events, both signatures, retries, logs, config, concurrency."""
import hashlib
import hmac
import json
import threading

import pytest
import razorpay
from app.pg import text
from standardwebhooks import Webhook

from helpers import wait_until

import worker as worker_module
from app import webhooks


@pytest.fixture
def running_worker(worker_threads, clean_queue):
    return worker_threads()[0]


def pay(client, merchant, amount=50000):
    order = client.post("/api/v1/orders", json={"amount": amount}, headers=merchant["headers"]).get_json()
    r = client.post("/api/v1/payments", json={"order_id": order["id"], "method": "upi", "vpa": "a@okbank"},
                    headers=merchant["headers"])
    assert r.status_code == 201
    return r.get_json()


def log_row(db, event_id):
    return db.execute(text("SELECT * FROM webhook_logs WHERE event_id = :e"), {"e": event_id}).mappings().one()


def verify_both(delivery, secret):
    body = delivery["body"]
    headers = delivery["headers"]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Webhook-Signature"], expected)
    # The Standard Webhooks reference library verifies with the secret string as merchants hold it.
    assert Webhook(secret).verify(body, headers)["id"] == headers["Webhook-Id"]
    # Razorpay's own client verifies the hex scheme (raises on mismatch).
    razorpay.Client(auth=("k", "s")).utility.verify_webhook_signature(body.decode(), headers["X-Webhook-Signature"],
                                                                       secret)


def test_payment_events_are_delivered_and_verify_with_both_schemes(client, make_merchant, receiver, running_worker):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    p = pay(client, m)
    created, success = rx.wait_for(1, event="payment.created")[0], rx.wait_for(1, event="payment.success")[0]
    for d in (created, success):
        verify_both(d, m["webhook_secret"])
        assert d["headers"]["Content-Type"] == "application/json"
    body = success["json"]
    assert body["id"].startswith("evt_") and isinstance(body["timestamp"], int)
    assert body["data"]["payment"]["id"] == p["id"] and body["data"]["payment"]["status"] == "success"
    assert success["body"] == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()  # compact


def test_seeded_secret_verifies_with_standardwebhooks(client, make_merchant, receiver, running_worker):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url, webhook_secret="whsec_test_abc123")
    pay(client, m)
    verify_both(rx.wait_for(1, event="payment.success")[0], "whsec_test_abc123")


def test_failed_payment_and_refund_events(app, client, make_merchant, receiver, running_worker):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    app.config["TEST_PAYMENT_SUCCESS"] = False
    try:
        failed = pay(client, m)
        d = rx.wait_for(1, event="payment.failed")[0]
    finally:
        app.config["TEST_PAYMENT_SUCCESS"] = True
    assert d["json"]["data"]["payment"]["id"] == failed["id"]
    assert d["json"]["data"]["payment"]["error_code"] == "PAYMENT_FAILED"
    ok = pay(client, m)
    rx.wait_for(1, event="payment.success")
    r = client.post(f"/api/v1/payments/{ok['id']}/refunds", json={"amount": 1000}, headers=m["headers"])
    assert r.status_code == 201
    created = rx.wait_for(1, event="refund.created")[0]["json"]["data"]
    processed = rx.wait_for(1, event="refund.processed")[0]
    verify_both(processed, m["webhook_secret"])
    data = processed["json"]["data"]
    assert data["refund"]["id"] == r.get_json()["id"] == created["refund"]["id"]
    assert data["refund"]["status"] == "processed" and data["payment"]["id"] == ok["id"]


def test_500_twice_then_success_sends_identical_bytes_three_times(client, make_merchant, receiver, running_worker,
                                                                   db):
    rx = receiver(responses=[500, 500])
    m = make_merchant(webhook_url=rx.url)
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    got = rx.wait_for(3, timeout=20)
    assert [d["status"] for d in got] == [500, 500, 200]
    assert len({d["headers"]["Webhook-Id"] for d in got}) == 1
    assert len({d["body"] for d in got}) == 1
    event_id = got[0]["headers"]["Webhook-Id"]
    row = wait_until(lambda: (r := log_row(db, event_id))["status"] == "success" and r, message="log success")
    assert row["attempts"] == 3 and row["response_code"] == 200 and row["next_retry_at"] is None


def test_five_failures_end_failed_with_exactly_five_deliveries(client, make_merchant, receiver, running_worker, db):
    rx = receiver(responses=[503] * 10)
    m = make_merchant(webhook_url=rx.url)
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    got = rx.wait_for(5, timeout=30)
    event_id = got[0]["headers"]["Webhook-Id"]
    row = wait_until(lambda: (r := log_row(db, event_id))["status"] == "failed" and r, timeout=10,
                     message="log failed")
    assert row["attempts"] == 5 and row["response_code"] == 503 and row["next_retry_at"] is None
    # Nothing more is sent: the delivery job is finished.
    assert db.execute(text("SELECT status FROM jobs WHERE id = :j"), {"j": row["job_id"]}).scalar() == "completed"
    assert len(rx.requests) == 5

    # A manual retry resets attempts and delivers again.
    rx.responses[:] = []
    r = client.post(f"/api/v1/webhooks/{row['id']}/retry", headers=m["headers"])
    assert r.status_code == 200
    assert r.get_json() == {"id": str(row["id"]), "status": "pending", "message": "Webhook retry scheduled"}
    rx.wait_for(6)
    row = wait_until(lambda: (r := log_row(db, event_id))["status"] == "success" and r, message="retried")
    assert row["attempts"] == 1


def test_attempts_are_visible_in_the_logs_api(client, make_merchant, receiver, running_worker):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    pay(client, m)
    rx.wait_for(1, event="payment.success")
    logs = wait_until(lambda: (b := client.get("/api/v1/webhooks", headers=m["headers"]).get_json())["total"] == 2
                      and all(x["status"] == "success" for x in b["data"]) and b, message="two successful logs")
    assert [x["event"] for x in logs["data"]] == ["payment.success", "payment.created"]  # newest first
    first = logs["data"][0]
    assert set(first) == {"id", "event", "status", "attempts", "created_at", "last_attempt_at", "next_retry_at",
                          "response_code"}
    assert first["attempts"] == 1 and first["response_code"] == 200 and first["last_attempt_at"].endswith("Z")


def test_no_url_no_log_row(client, merchant, db, running_worker):
    p = pay(client, merchant)
    wait_until(lambda: client.get(f"/api/v1/payments/{p['id']}/public").get_json()["status"] == "success")
    assert db.execute(text("SELECT count(*) FROM webhook_logs WHERE merchant_id = :m"),
                      {"m": merchant["id"]}).scalar() == 0
    r = client.post("/api/v1/webhooks/test", headers=merchant["headers"])
    assert r.status_code == 400


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "javascript:alert(1)", "not a url", "http://",
                                 "http://user:pass@example.com/hook", "file:///etc/passwd"])
def test_bad_config_urls_are_400(client, merchant, url, db):
    r = client.put("/api/v1/webhooks/config", json={"webhook_url": url}, headers=merchant["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "webhook_url"
    assert db.execute(text("SELECT webhook_url FROM merchants WHERE id = :m"), {"m": merchant["id"]}).scalar() is None


@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "http://localhost:8080/x", "http://10.0.0.5/",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://192.168.1.1/"])
def test_private_targets_refused_outside_test_mode(app, client, merchant, url):
    app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = False
    try:
        r = client.put("/api/v1/webhooks/config", json={"webhook_url": url}, headers=merchant["headers"])
    finally:
        app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = True
    assert r.status_code == 400 and "private" in r.get_json()["error"]["description"]


def test_private_target_refused_again_at_delivery_time(app, make_merchant, receiver, running_worker, db, client):
    """A URL saved while allowed (or before its DNS changed) is checked again on every attempt."""
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    running_worker.settings = dict(app.config, WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    row = wait_until(lambda: db.execute(text("SELECT attempts, response_body FROM webhook_logs WHERE merchant_id = :m "
                                             "AND attempts > 0"), {"m": m["id"]}).first(), message="an attempt")
    assert "private" in row.response_body
    assert rx.requests == []


def test_config_read_set_clear_and_regenerate(client, merchant):
    h = merchant["headers"]
    assert client.get("/api/v1/webhooks/config", headers=h).get_json()["webhook_secret"] == merchant["webhook_secret"]
    r = client.put("/api/v1/webhooks/config", json={"webhook_url": "https://merchant.example/hooks"}, headers=h)
    assert r.status_code == 200 and r.get_json()["webhook_url"] == "https://merchant.example/hooks"
    new = client.post("/api/v1/webhooks/config/secret", headers=h).get_json()["webhook_secret"]
    assert new.startswith("whsec_") and new != merchant["webhook_secret"]
    import base64

    assert len(base64.b64decode(new[len("whsec_"):])) == 32
    assert client.get("/api/v1/webhooks/config", headers=h).get_json()["webhook_secret"] == new
    assert client.put("/api/v1/webhooks/config", json={"webhook_url": ""}, headers=h).get_json()["webhook_url"] is None
    assert client.put("/api/v1/webhooks/config", json={"webhook_url": None}, headers=h).status_code == 200


def test_secret_and_url_are_read_at_send_time(client, make_merchant, receiver, db, app, clean_queue):
    rx = receiver()
    m = make_merchant(webhook_url="http://127.0.0.1:9/old")
    client.post("/api/v1/webhooks/test", headers=m["headers"])  # queued, not yet sent (no worker running)
    db.execute(text("UPDATE merchants SET webhook_url = :u, webhook_secret = 'whsec_rotated' WHERE id = :m"),
               {"u": rx.url, "m": m["id"]})
    w = worker_module.Worker(app)
    try:
        w.step()
        d = rx.wait_for(1)[0]
    finally:
        w.close()
    verify_both(d, "whsec_rotated")


def test_a_hanging_merchant_does_not_delay_another(client, make_merchant, receiver, running_worker):
    slow = receiver(hang=3)
    fast = receiver()
    slow_m, fast_m = make_merchant(webhook_url=slow.url), make_merchant(webhook_url=fast.url)
    for _ in range(10):
        client.post("/api/v1/webhooks/test", headers=slow_m["headers"])
    for _ in range(5):
        client.post("/api/v1/webhooks/test", headers=fast_m["headers"])
    got = fast.wait_for(5, timeout=2.5)  # all five while the slow endpoint still hangs
    assert len(got) == 5


def test_sign_functions_match_reference_implementations():
    body = '{"id":"evt_1","event":"webhook.test"}'
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = webhooks.headers_for(secret, "evt_1", body)
    Webhook(secret).verify(body, headers)
    assert headers["X-Webhook-Signature"] == hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def test_url_set_a_moment_ago_gets_the_very_next_event(client, merchant, receiver, running_worker):
    """Whether an event gets a log row is decided in the event's own transaction, not from
    anything cached at authentication."""
    assert client.get("/api/v1/orders", headers=merchant["headers"]).status_code == 200  # auth cached now
    rx = receiver()
    assert client.put("/api/v1/webhooks/config", json={"webhook_url": rx.url},
                      headers=merchant["headers"]).status_code == 200
    pay(client, merchant)
    rx.wait_for(1, event="payment.created")


@pytest.mark.parametrize("log_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_retry_of_an_unknown_or_malformed_log_id_is_404(client, merchant, log_id):
    r = client.post(f"/api/v1/webhooks/{log_id}/retry", headers=merchant["headers"])
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


class _Endpoint:
    """A merchant endpoint answering with a chosen raw response; counts the connections it saw."""

    def __init__(self, response):
        import socketserver

        self.response, self.connections = response, 0
        endpoint = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                endpoint.connections += 1
                while True:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = self.rfile.readline()
                        if not line:
                            return
                        head += line
                    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
                    self.rfile.read(length)
                    try:
                        for chunk in endpoint.response():
                            self.wfile.write(chunk)
                    except OSError:  # the client stopped reading: expected for the endless body
                        return

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _attempt(url):
    return {"webhook_url": url, "webhook_secret": webhooks.new_secret(), "event_id": "evt_x", "body": '{"a":1}',
            "attempts": 0}


def test_delivery_keeps_only_the_start_of_a_response():
    """A merchant's huge, NUL-laden or endless answer is cut to 1,000 characters that PostgreSQL can
    store, and the attempt ends without reading the rest."""
    def huge():
        body = b"ok\x00" + b"x" * 1_000_000
        yield b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    def endless():
        yield b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        while True:
            yield b"1000\r\n" + b"y" * 4096 + b"\r\n"

    http = webhooks.http_pool(2)
    for response, ok, code, start in [(huge, True, 200, "ok\ufffdxx"), (endless, False, 500, "yyy")]:
        ep = _Endpoint(response)
        try:
            got_ok, got_code, body = webhooks.post(http, _attempt(ep.url), allow_private=True)
        finally:
            ep.close()
        assert (got_ok, got_code) == (ok, code)
        assert body.startswith(start) and len(body) == webhooks.RESPONSE_BODY_LIMIT and "\x00" not in body


@pytest.mark.parametrize("answer, expected", [
    (b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 2\r\n\r\nno", (False, 302, "no")),
    (b"HTTP/1.1 204 No Content\r\n\r\n", (True, 204, "")),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", (True, 200, "ok")),
], ids=["redirect", "no content", "chunked"])
def test_delivery_reuses_the_connection_and_does_not_follow_redirects(answer, expected):
    """Keep-alive to the merchant's endpoint across attempts, whatever the shape of its answer; a
    3xx is a failed attempt, not a hop to wherever it points (which the SSRF check never saw)."""
    ep = _Endpoint(lambda: iter([answer]))
    http = webhooks.http_pool(2)
    try:
        results = [webhooks.post(http, _attempt(ep.url), allow_private=True) for _ in range(3)]
    finally:
        ep.close()
    assert results == [expected] * 3
    assert ep.connections == 1


def test_a_trickling_answer_ends_the_attempt_in_time(monkeypatch):
    """An endpoint that answers a byte at a time cannot hold a delivery thread: the body is read
    for ATTEMPT_SECONDS in all, then the attempt ends with what arrived."""
    import time

    def trickle():
        yield b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        while True:
            time.sleep(0.05)  # the endpoint is slow by design, not synchronisation
            yield b"z"

    monkeypatch.setattr(webhooks, "ATTEMPT_SECONDS", 0.5)
    ep = _Endpoint(trickle)
    try:
        started = time.monotonic()
        ok, code, body = webhooks.post(webhooks.http_pool(2), _attempt(ep.url), allow_private=True)
        took = time.monotonic() - started
    finally:
        ep.close()
    assert (ok, code) == (True, 200) and body and set(body) == {"z"}
    assert took < 3, took


def test_delivery_ignores_proxies_from_the_environment(monkeypatch):
    """The SSRF check vets the merchant's own address, so the worker connects there itself: an
    HTTP(S)_PROXY in its environment is not used (here it points nowhere)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ep = _Endpoint(lambda: iter([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]))
    try:
        assert webhooks.post(webhooks.http_pool(2), _attempt(ep.url), allow_private=True) == (True, 200, "ok")
    finally:
        ep.close()
    assert ep.connections == 1
