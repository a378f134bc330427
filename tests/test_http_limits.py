"""HTTP connections against the API as shipped (the launcher's gunicorn command): keep-alive idle
time, and bodies over the 64 KB limit, declared or chunked, on a connection the client reuses."""
import http.client
import json
import time

import pytest
import requests

from helpers import count, headers

LIMIT = 64 * 1024


@pytest.fixture
def gateway(start_api):
    """An API process of this test's own (start_api)."""
    return start_api()


def test_a_keep_alive_connection_idle_for_6_seconds_still_answers(gateway, merchant):
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request("GET", "/api/v1/orders?count=1", headers=merchant["headers"])
    first = conn.getresponse()
    first.read()
    assert first.status == 200 and first.getheader("Connection") == "keep-alive"
    sock = conn.sock
    time.sleep(6)  # the idle time is what is under test: longer than Node's 4-5 s agents keep a socket
    conn.request("GET", "/api/v1/orders?count=1", headers=merchant["headers"])
    second = conn.getresponse()
    assert second.status == 200 and "data" in json.loads(second.read())
    assert conn.sock is sock  # the same connection answered, not a new one
    conn.close()


def padded_order(size):
    """An order body of exactly `size` bytes: valid JSON, then spaces (so a cut copy is valid too)."""
    head = json.dumps({"amount": 50000, "receipt": "padded"}).encode()
    return head + b" " * (size - len(head))


def chunks(body, step=8192):
    # A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length.
    for i in range(0, len(body), step):
        yield body[i:i + step]


def assert_too_large(r):
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert r.json()["error"]["description"] == "Request body is too large."


def assert_session_still_works(s, gateway, merchant):
    r = s.post(f"{gateway.url}/api/v1/orders", json={"amount": 50000, "receipt": "after"}, headers=merchant["headers"],
               timeout=10)
    assert r.status_code == 201 and r.json()["receipt"] == "after"


def test_after_a_413_for_a_1_mb_body_the_next_request_on_the_session_is_answered(gateway, merchant, db):
    s = requests.Session()
    r = s.post(f"{gateway.url}/api/v1/orders", data=padded_order(1024 * 1024), timeout=10,
               headers=headers(merchant))
    assert_too_large(r)
    assert_session_still_works(s, gateway, merchant)
    assert r.headers["Connection"] == "close"  # the body was not read: the client must not reuse it
    assert count(db, "orders", merchant["id"]) == 1


@pytest.mark.parametrize("size", [LIMIT + 1, 100 * 1024, 1024 * 1024])
def test_a_chunked_body_over_64_kb_is_a_413_not_cut_and_accepted(gateway, merchant, db, size):
    s = requests.Session()
    r = s.post(f"{gateway.url}/api/v1/orders", data=chunks(padded_order(size)), timeout=10,
               headers=headers(merchant))
    assert_too_large(r)
    assert_session_still_works(s, gateway, merchant)
    assert count(db, "orders", merchant["id"]) == 1


def test_a_chunked_body_of_exactly_64_kb_is_accepted_and_keeps_the_connection(gateway, merchant):
    s = requests.Session()
    r = s.post(f"{gateway.url}/api/v1/orders", data=chunks(padded_order(LIMIT)), timeout=10,
               headers=headers(merchant))
    assert r.status_code == 201 and r.json()["receipt"] == "padded"
    assert r.headers["Connection"] == "keep-alive"
    assert_session_still_works(s, gateway, merchant)
