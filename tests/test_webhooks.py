"""Webhooks end to end: events, both signatures, retries, logs, config, concurrency."""
import hashlib
import hmac
import json

import pytest
import razorpay
from standardwebhooks import Webhook, WebhookVerificationError

from helpers import create_payment, wait_until

from app import webhooks


def log_row(db, event_id):
    return db.one("SELECT * FROM webhook_logs WHERE event_id = %(e)s", {"e": event_id})


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
    p = create_payment(client, m)
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
    create_payment(client, m)
    verify_both(rx.wait_for(1, event="payment.success")[0], "whsec_test_abc123")


def test_failed_payment_and_refund_events(app, client, make_merchant, receiver, running_worker, monkeypatch):
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    with monkeypatch.context() as declining:
        declining.setitem(app.config, "TEST_PAYMENT_SUCCESS", False)
        failed = create_payment(client, m)
        d = rx.wait_for(1, event="payment.failed")[0]
    assert d["json"]["data"]["payment"]["id"] == failed["id"]
    assert d["json"]["data"]["payment"]["error_code"] == "PAYMENT_FAILED"
    ok = create_payment(client, m)
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
    assert db.value("SELECT status FROM jobs WHERE id = %(j)s", {"j": row["job_id"]}) == "completed"
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
    create_payment(client, m)
    rx.wait_for(1, event="payment.success")
    logs = wait_until(lambda: (b := client.get("/api/v1/webhooks", headers=m["headers"]).get_json())["total"] == 2
                      and all(x["status"] == "success" for x in b["data"]) and b, message="two successful logs")
    assert [x["event"] for x in logs["data"]] == ["payment.success", "payment.created"]  # newest first
    first = logs["data"][0]
    assert set(first) == {"id", "event", "status", "attempts", "created_at", "last_attempt_at", "next_retry_at",
                          "response_code"}
    assert first["attempts"] == 1 and first["response_code"] == 200 and first["last_attempt_at"].endswith("Z")


def test_no_url_no_log_row(client, merchant, db, running_worker):
    p = create_payment(client, merchant)
    wait_until(lambda: client.get(f"/api/v1/payments/{p['id']}/public").get_json()["status"] == "success")
    assert db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s", {"m": merchant["id"]}) == 0
    r = client.post("/api/v1/webhooks/test", headers=merchant["headers"])
    assert r.status_code == 400


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "javascript:alert(1)", "not a url", "http://",
                                 "http://user:pass@example.com/hook", "file:///etc/passwd",
                                 "https://exa mple.com/hook", "https://example.com/ho ok", "https://example.com/\thook"])
def test_bad_config_urls_are_400(client, merchant, url, db):
    r = client.put("/api/v1/webhooks/config", json={"webhook_url": url}, headers=merchant["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "webhook_url"
    assert db.value("SELECT webhook_url FROM merchants WHERE id = %(m)s", {"m": merchant["id"]}) is None


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


def test_secret_and_url_are_read_at_send_time(client, make_merchant, receiver, db, worker, clean_queue):
    rx = receiver()
    m = make_merchant(webhook_url="http://127.0.0.1:9/old")
    client.post("/api/v1/webhooks/test", headers=m["headers"])  # queued, not yet sent (the worker is stepped)
    db.execute("UPDATE merchants SET webhook_url = %(u)s, webhook_secret = 'whsec_rotated' WHERE id = %(m)s",
               {"u": rx.url, "m": m["id"]})
    worker.step()
    verify_both(rx.wait_for(1)[0], "whsec_rotated")


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


@pytest.mark.parametrize("secret", [webhooks.new_secret(), "whsec_test_abc123"], ids=["generated", "seeded"])
def test_signatures_verify_with_the_reference_libraries_and_break_when_the_body_changes(secret):
    body = '{"id":"evt_1","event":"webhook.test"}'
    headers = webhooks.headers_for(secret, "evt_1", body)
    assert Webhook(secret).verify(body, headers)["id"] == "evt_1"
    razorpay.Client(auth=("k", "s")).utility.verify_webhook_signature(body, headers["X-Webhook-Signature"], secret)
    tampered = body.replace("webhook.test", "payment.success")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)
    assert webhooks.headers_for(secret, "evt_1", tampered)["X-Webhook-Signature"] != headers["X-Webhook-Signature"]


@pytest.mark.parametrize("secret", ["whsec_a", "whsec_"])
def test_a_secret_the_reference_library_cannot_read_gets_the_hex_signature_only(secret):
    """No Standard Webhooks receiver could verify a signature made with such a secret, so none is sent."""
    body = '{"id":"evt_1","event":"webhook.test"}'
    headers = webhooks.headers_for(secret, "evt_1", body)
    assert "webhook-signature" not in headers and headers["webhook-id"] == "evt_1"
    assert headers["X-Webhook-Signature"] == hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def test_url_set_a_moment_ago_gets_the_very_next_event(client, merchant, receiver, running_worker):
    """Whether an event gets a log row is decided in the event's own transaction, not from
    anything cached at authentication."""
    assert client.get("/api/v1/orders", headers=merchant["headers"]).status_code == 200  # auth cached now
    rx = receiver()
    assert client.put("/api/v1/webhooks/config", json={"webhook_url": rx.url},
                      headers=merchant["headers"]).status_code == 200
    create_payment(client, merchant)
    rx.wait_for(1, event="payment.created")


@pytest.mark.parametrize("log_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_retry_of_an_unknown_or_malformed_log_id_is_404(client, merchant, log_id):
    r = client.post(f"/api/v1/webhooks/{log_id}/retry", headers=merchant["headers"])
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"
