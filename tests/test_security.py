"""Timing-safe comparisons of secrets, cross-site forms against the API, 500s that must be 400s
(the other security properties have their own files:
isolation in test_isolation.py, SSRF in test_ssrf.py, CSRF in browser/test_dashboard.py, card
data and secrets in logs in the end-of-run scan (conftest.py, test_log_scan.py), card data in the
database in test_payments.py)."""
import base64
import hmac

import pytest

from helpers import CARD, TEST_KEY, TEST_SECRET, api_headers, count, create_order, paid_payment

from app import auth


@pytest.fixture
def comparisons(monkeypatch):
    """Record every hmac.compare_digest the auth module makes."""
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    auth._auth_cache.clear()
    return calls


@pytest.mark.parametrize("key,secret,status", [
    (TEST_KEY, TEST_SECRET, 200),
    (TEST_KEY, "secret_wrong_but_same_length", 401),
    ("key_that_does_not_exist", TEST_SECRET, 401),
])
def test_api_secret_is_compared_in_constant_time_known_key_or_not(client, comparisons, key, secret, status):
    assert client.get("/api/v1/orders", headers=api_headers(key, secret)).status_code == status
    # Exactly one constant-time comparison, also for an unknown key (against a dummy secret), so
    # the response time does not tell whether a key exists.
    assert len(comparisons) == 1
    assert comparisons[0][1] == secret.encode()



# ---- cross-site forms against the API --------------------------------------------------------------

def test_a_401_does_not_invite_the_browser_to_cache_basic_credentials(client):
    """With WWW-Authenticate: Basic a browser prompts, then sends the typed key:secret with every
    later request to the API, cross-site forms included."""
    for r in (client.get("/api/v1/orders"), client.post("/api/v1/webhooks/config/secret"),
              client.get("/api/v1/orders", headers=api_headers(TEST_KEY, "secret_wrong"))):
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "AUTHENTICATION_ERROR"
        assert "WWW-Authenticate" not in r.headers


def test_no_api_answer_may_be_cached(client, merchant):
    """A proxy or browser cache between the merchant and us must not keep a webhook secret."""
    headers = merchant["headers"]
    for r in (client.get("/api/v1/webhooks/config", headers=headers),
              client.post("/api/v1/webhooks/config/secret", headers=headers),
              client.get("/api/v1/orders", headers=headers), client.get("/api/v1/orders"),
              client.get("/api/v1/test/merchant"), client.get("/api/v1/nothing-here", headers=headers),
              client.delete("/api/v1/orders", headers=headers)):
        assert r.status_code in (200, 401, 404, 405) and r.headers["Cache-Control"] == "no-store", r.status_code


FORM_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=----x", "text/plain",
              "text/plain;charset=UTF-8", "Application/X-WWW-Form-Urlencoded ; charset=utf-8", "TEXT/PLAIN"]


def _basic(merchant):
    token = base64.b64encode(f"{merchant['api_key']}:{merchant['api_secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_a_cross_site_form_cannot_refund_a_payment(client, db, worker, merchant, content_type):
    """What another site's <form method=post> sends with the browser's cached Basic credentials:
    no body (or form fields), a form content type. It refunded the payment in full."""
    _, payment = paid_payment(client, db, worker, merchant)
    for path in (f"/api/v1/payments/{payment['id']}/refund", f"/api/v1/payments/{payment['id']}/refunds"):
        for data in (b"", b"amount=100"):
            r = client.post(path, data=data, headers=dict(_basic(merchant), **{"Content-Type": content_type}))
            assert r.status_code == 415, r.get_json()
            assert r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "refunds", merchant["id"]) == 0


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_cross_site_fetch_without_a_content_type_cannot_refund_a_payment(client, db, worker, merchant, site):
    """fetch(url, {method: "POST", mode: "no-cors", credentials: "include"}) from another site sends
    no content type and no body; the browser marks it Sec-Fetch-Site: cross-site, or same-site from
    a page of another subdomain (blog.shop.example beside pay.shop.example), another origin all the same."""
    _, payment = paid_payment(client, db, worker, merchant)
    for path in (f"/api/v1/payments/{payment['id']}/refund", "/api/v1/webhooks/config/secret"):
        r = client.post(path, headers=dict(_basic(merchant), **{"Sec-Fetch-Site": site}))
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR", r.get_json()
    assert count(db, "refunds", merchant["id"]) == 0
    assert db.value("SELECT webhook_secret FROM merchants WHERE id = %(m)s", {"m": merchant["id"]}) == merchant["webhook_secret"]
    # the checkout's own calls (same origin) and servers (no header) are unaffected
    r = client.post(f"/api/v1/payments/{payment['id']}/refund", json={"amount": 100},
                    headers=dict(_basic(merchant), **{"Sec-Fetch-Site": "same-origin"}))
    assert r.status_code == 201


@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_a_cross_site_form_cannot_rotate_the_webhook_secret(client, db, merchant, content_type):
    r = client.post("/api/v1/webhooks/config/secret", data=b"",
                    headers=dict(_basic(merchant), **{"Content-Type": content_type}))
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert db.value("SELECT webhook_secret FROM merchants WHERE id = %(m)s", {"m": merchant["id"]}) == merchant["webhook_secret"]


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/payments/pay_AAAAAAAAAAAAAAAA/capture"),
    ("POST", "/api/v1/webhooks/test"),
    ("POST", "/api/v1/webhooks/00000000-0000-0000-0000-000000000000/retry"),
    ("POST", "/api/v1/orders"),
    ("POST", "/api/v1/payments/public"),
    ("PUT", "/api/v1/webhooks/config"),
    ("PATCH", "/api/v1/orders/order_AAAAAAAAAAAAAAAA"),
    ("DELETE", "/api/v1/orders/order_AAAAAAAAAAAAAAAA"),
])
def test_a_form_content_type_is_415_on_every_api_write_before_authentication(client, method, path):
    for h in ({}, api_headers(TEST_KEY, TEST_SECRET)):
        r = client.open(path, method=method, data=b"", headers=dict(h, **{"Content-Type": "text/plain"}))
        assert r.status_code == 415, (method, path, r.get_json())
        assert r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR" and "WWW-Authenticate" not in r.headers


def test_an_empty_post_without_a_content_type_still_works(client, db, worker, merchant):
    """What Razorpay's client sends for a body-less call: no Content-Type, no body."""
    _, payment = paid_payment(client, db, worker, merchant)
    r = client.post(f"/api/v1/payments/{payment['id']}/refund", headers=_basic(merchant))
    assert r.status_code == 201 and r.get_json()["amount"] == payment["amount"]
    r = client.post("/api/v1/webhooks/config/secret", headers=merchant["headers"])
    assert r.status_code == 200 and r.get_json()["webhook_secret"] != merchant["webhook_secret"]


# ---- 500s that are 400s -------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["expiry_year", "expiry_month"])
@pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/payments/public"])
def test_a_huge_expiry_is_a_400(client, db, merchant, field, path):
    """int() of a string over 4,300 digits raises: that was a 500."""
    order = create_order(client, merchant)
    card = dict(CARD, **{field: "1" * 5000})
    r = client.post(path, json={"order_id": order["id"], "method": "card", "card": card}, headers=merchant["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "EXPIRED_CARD"
    assert count(db, "payments", merchant["id"]) == 0


@pytest.mark.parametrize("origin", ["https://shop.example\n", "https://shop.example:8443\n", "http://a.b\n"])
def test_a_parent_origin_with_a_final_newline_is_a_400(client, merchant, origin):
    """The origin pattern's "$" matched before a final newline, which then went into the CSP header (a 500)."""
    order = create_order(client, merchant)
    r = client.get("/checkout", query_string={"order_id": order["id"], "embedded": "true", "parent_origin": origin})
    assert r.status_code == 400 and "parent_origin" in r.get_data(as_text=True)


GARBAGE = ["", " ", "\x00", "order_\x00\x00", "%00", "\u202e\ufeff", "😀" * 50, "a" * 10_000, "'; DROP TABLE orders; --",
           "<script>alert(1)</script>", "javascript:alert(1)", "data:text/html,hi", "http://[::1", "http://a\r\nb",
           "http://例え.jp/cb", "http://shop.example:99999/"]


def test_garbage_in_the_checkout_and_its_status_view_is_never_a_5xx(client, db, merchant):
    """Every query parameter of /checkout and both ids of the status view, filled with garbage:
    a page or a 4xx JSON answer, never a 500, and nothing is created."""
    order = create_order(client, merchant)
    for value in GARBAGE:
        for name in ["order_id", "callback_url", "key", "name", "description", "prefill[vpa]", "parent_origin",
                     "embedded"]:
            for embedded in ("false", "true"):
                params = {"order_id": order["id"], "embedded": embedded, name: value}
                r = client.get("/checkout", query_string=params)
                assert r.status_code < 500, (name, value, r.status_code)
                assert "\x00" not in r.get_data(as_text=True)  # a NUL byte never reaches the page
        for path in [f"/checkout/orders/{value}/payments/pay_0000000000000000",
                     f"/checkout/orders/{order['id']}/payments/{value}"]:
            r = client.get(path.replace("%", "%25"))
            assert r.status_code in (404, 405, 308), (path, r.status_code)
            if r.status_code == 404 and r.is_json:
                assert r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"
    # Bytes that are not UTF-8 at all, as a raw query and path.
    for raw in [f"/checkout?order_id={order['id']}&name=%ff%fe&callback_url=http://%ed%a0%80/&prefill[vpa]=%c0",
                "/checkout?order_id=%ed%a0%80", "/checkout/orders/%ff/payments/%ed%a0%80"]:
        assert client.get(raw).status_code < 500, raw
    assert count(db, "payments", merchant["id"]) == 0
