"""Timing-safe comparisons of secrets (the other security properties have their own files:
isolation in test_isolation.py, SSRF in test_ssrf.py, CSRF in browser/test_dashboard.py,
card data and secrets in logs in test_zz_log_scan.py, card data in the database in test_payments.py)."""
import hmac

import pytest

from helpers import TEST_KEY, TEST_SECRET, api_headers

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

