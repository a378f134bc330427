"""Orders: create, get, public view, lists; and bad input that must never be a 5xx nor write a row."""
import json
import re

import pytest

from helpers import TIME_RE, MerchantApi, count, create_order, headers, pay

ORDER_ID = re.compile(r"^order_[A-Za-z0-9]{16}$")


def test_create_order(client, merchant):
    r = client.post("/api/v1/orders", json={"amount": 50000, "currency": "INR", "receipt": "rcpt_1",
                                            "notes": {"customer": "Asha", "n": 2}}, headers=merchant["headers"])
    assert r.status_code == 201
    order = r.get_json()
    assert ORDER_ID.match(order["id"])
    assert {k: order[k] for k in ("merchant_id", "amount", "currency", "receipt", "notes", "status")} == {
        "merchant_id": merchant["id"], "amount": 50000, "currency": "INR", "receipt": "rcpt_1",
        "notes": {"customer": "Asha", "n": 2}, "status": "created"}
    assert TIME_RE.match(order["created_at"])


def test_create_order_defaults(client, merchant):
    order = create_order(client, merchant, 100)  # the smallest amount
    assert order["amount"] == 100 and order["currency"] == "INR"
    assert order["receipt"] is None and order["notes"] == {}


def test_currency_is_upper_cased(client, merchant):
    assert create_order(client, merchant, currency="usd")["currency"] == "USD"


def test_get_order_adds_updated_at(client, merchant):
    order = create_order(client, merchant, receipt="r-9")
    r = client.get(f"/api/v1/orders/{order['id']}", headers=merchant["headers"])
    assert r.status_code == 200
    got = r.get_json()
    assert TIME_RE.match(got["updated_at"])
    assert got == order


def test_unknown_order_is_404(api):
    for order_id in ("order_AAAAAAAAAAAAAAAA", "nope", "order_%00", "x" * 300):
        r = api.get(f"/api/v1/orders/{order_id}")
        assert r.status_code == 404, order_id
        assert r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_public_order_view(client, merchant):
    order = create_order(client, merchant, 12345)
    r = client.get(f"/api/v1/orders/{order['id']}/public")  # no credentials
    assert r.status_code == 200
    assert r.get_json() == {"id": order["id"], "amount": 12345, "currency": "INR", "status": "created",
                            "merchant_name": f"Merchant {merchant['id'][:6]}"}


@pytest.mark.parametrize("order_id", ["order_AAAAAAAAAAAAAAAA", "order_%00", "%ED%A0%80"])
def test_public_order_view_of_unknown_order_is_404(client, order_id):
    r = client.get(f"/api/v1/orders/{order_id}/public")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_order_payments(client, merchant, api, make_merchant):
    order, other = create_order(client, merchant, 900), create_order(client, merchant, 800)
    assert api.get(f"/api/v1/orders/{order['id']}/payments").get_json() == {
        "data": [], "total": 0, "limit": 10, "offset": 0}
    mine = pay(client, merchant, order["id"], "card")
    pay(client, merchant, other["id"])
    r = api.get(f"/api/v1/orders/{order['id']}/payments?count=5")
    assert r.status_code == 200
    body = r.get_json()
    assert (body["total"], body["limit"], body["offset"]) == (1, 5, 0)
    assert body["data"] == [api.get(f"/api/v1/payments/{mine['id']}").get_json()]
    # Another merchant's order, or none: 404 (and the route exists: a bad parameter is a 400 first).
    assert api.get(f"/api/v1/orders/{order['id']}/payments?nope=1").get_json()["error"]["field"] == "nope"
    for who, order_id in ((make_merchant(), order["id"]), (merchant, "order_AAAAAAAAAAAAAAAA"), (merchant, "order_%00")):
        r = client.get(f"/api/v1/orders/{order_id}/payments", headers=who["headers"])
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_order_endpoints_need_credentials(client, merchant):
    order = create_order(client, merchant)
    for method, path in [("POST", "/api/v1/orders"), ("GET", "/api/v1/orders"), ("GET", f"/api/v1/orders/{order['id']}"),
                         ("GET", f"/api/v1/orders/{order['id']}/payments")]:
        r = client.open(path, method=method, json={"amount": 500})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "AUTHENTICATION_ERROR"


# ---- lists -------------------------------------------------------------------------------------

@pytest.fixture
def twelve_orders(client, merchant):
    """Twelve orders, amounts 101..112 in creation order."""
    return [create_order(client, merchant, 100 + i) for i in range(1, 13)]


def _list(api, query=""):
    r = api.get("/api/v1/orders" + query)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_list_defaults_to_ten_newest_first(api, twelve_orders):
    body = _list(api)
    assert list(body) == ["data", "total", "limit", "offset"]
    assert body["total"] == 12 and body["limit"] == 10 and body["offset"] == 0
    assert [o["amount"] for o in body["data"]] == list(range(112, 102, -1))
    assert body["data"][0] == dict(twelve_orders[-1], updated_at=body["data"][0]["updated_at"])


def test_list_limit_and_offset(api, twelve_orders):
    body = _list(api, "?limit=5&offset=10")
    assert (body["total"], body["limit"], body["offset"]) == (12, 5, 10)
    assert [o["amount"] for o in body["data"]] == [102, 101]


def test_list_aliases_count_and_skip(api, twelve_orders):
    body = _list(api, "?count=3&skip=2")
    assert (body["limit"], body["offset"]) == (3, 2)
    assert [o["amount"] for o in body["data"]] == [110, 109, 108]


def test_list_limit_is_capped_at_100(api, twelve_orders):
    body = _list(api, "?limit=1000")
    assert body["limit"] == 100 and len(body["data"]) == 12


def test_list_past_the_end_is_empty(api, twelve_orders):
    body = _list(api, "?offset=50")
    assert body["data"] == [] and body["total"] == 12


def test_list_shows_only_own_orders(client, merchant, make_merchant):
    create_order(client, merchant)
    other = MerchantApi(client, make_merchant())
    assert _list(other) == {"data": [], "total": 0, "limit": 10, "offset": 0}


@pytest.mark.parametrize("query", ["?limit=-1", "?limit=abc", "?offset=-5", "?count=1.5", "?skip=x",
                                   "?offset=99999999999999999999", "?limit="])
def test_bad_paging_is_400(api, query):
    r = api.get("/api/v1/orders" + query)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"


# ---- bad input: a 4xx JSON envelope, never a 5xx, and nothing written --------------------------

BAD_BODIES = [
    ("{bad json", 400),
    ("", 400),
    ("   ", 400),
    ("null", 400),
    ("[]", 400),
    ("500", 400),
    ('"amount"', 400),
    ("{}", 400),                                              # amount is required
    ('{"amount": null}', 400),
    ('{"amount": "50000"}', 400),                             # a numeric string is not an integer
    ('{"amount": 500.0}', 400),                               # floats are refused, even round ones
    ('{"amount": 500.5}', 400),
    ('{"amount": 5e2}', 400),
    ('{"amount": 1e400}', 400),                               # infinity
    ('{"amount": NaN}', 400),                                 # not JSON
    ('{"amount": Infinity}', 400),
    ('{"amount": true}', 400),
    ('{"amount": -500}', 400),
    ('{"amount": 0}', 400),
    ('{"amount": 99}', 400),                                  # below the minimum of 100 paise
    ('{"amount": 1000000000000000000000000000000}', 400),     # 10**30
    ('{"amount": 2147483648}', 400),                          # beyond the column
    ('{"amount": [500]}', 400),
    ('{"amount": {"value": 500}}', 400),
    ('{"amount": 500, "colour": "red"}', 400),                # unknown field
    ('{"amount": 500, "currency": "RUPEES"}', 400),
    ('{"amount": 500, "currency": "IN1"}', 400),
    ('{"amount": 500, "currency": "INR\\n"}', 400),
    ('{"amount": 500, "currency": 356}', 400),
    ('{"amount": 500, "receipt": 123}', 400),
    ('{"amount": 500, "receipt": "' + "r" * 41 + '"}', 400),
    ('{"amount": 500, "receipt": "a\\u0000b"}', 400),         # PostgreSQL cannot store NUL
    ('{"amount": 500, "receipt": "\\ud800"}', 400),           # nor a lone surrogate
    ('{"amount": 500, "notes": []}', 400),                    # notes must be an object
    ('{"amount": 500, "notes": "text"}', 400),
    ('{"amount": 500, "notes": null}', 400),
    ('{"amount": 500, "notes": {"a": {"nested": 1}}}', 400),
    ('{"amount": 500, "notes": {"a": NaN}}', 400),
    ('{"amount": 500, "notes": {"a": 1e999}}', 400),
    ('{"amount": 500, "notes": {"a\\u0000": 1}}', 400),
    ('{"amount": 500, "notes": {"a": "\\u0000"}}', 400),
    ('{"amount": 500, "notes": {"a": "\\udfff"}}', 400),
    ('{"amount": 500, "notes": {"": 1}}', 400),
    (json.dumps({"amount": 500, "notes": {f"k{i}": i for i in range(16)}}), 400),
    ("[" * 20000 + "]" * 20000, 400),                          # nesting that exhausts the parser
    ('{"amount": 500}' + "x", 400),
    (b'{"amount": 500, "receipt": "\xff\xfe"}', 400),          # not UTF-8
]


@pytest.mark.parametrize("body,status", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_order_body_is_4xx_and_writes_nothing(client, db, merchant, body, status):
    r = client.post("/api/v1/orders", data=body, headers=headers(merchant))
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.is_json and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert r.get_json()["error"]["description"]
    assert count(db, "orders", merchant["id"]) == 0


def test_errors_name_the_field(api):
    r = api.post("/api/v1/orders", json={"amount": 50})
    assert r.get_json()["error"]["field"] == "amount"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_wrong_content_type_is_415(client, db, merchant, content_type):
    h = dict(merchant["headers"])
    if content_type:
        h["Content-Type"] = content_type
    r = client.post("/api/v1/orders", data='{"amount": 500}', headers=h)
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "orders", merchant["id"]) == 0


def test_one_megabyte_string_is_413(client, db, merchant):
    body = json.dumps({"amount": 500, "receipt": "x" * (1 << 20)})
    r = client.post("/api/v1/orders", data=body, headers=headers(merchant))
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    # the same through the idempotency path, which reads the body first
    r = client.post("/api/v1/orders", data=body, headers=headers(merchant, **{"Idempotency-Key": "big"}))
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "orders", merchant["id"]) == 0


def test_charset_parameter_is_accepted(api):
    r = api.post("/api/v1/orders", data='{"amount": 500}', headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201


def test_unknown_method_on_orders_is_405_json(api):
    r = api.delete("/api/v1/orders")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"


def test_one_megabyte_over_real_http_is_413_json(live_api, db, merchant):
    import requests

    body = json.dumps({"amount": 500, "receipt": "x" * (1 << 20)})
    r = requests.post(live_api.url + "/api/v1/orders", data=body, headers=headers(merchant), timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "orders", merchant["id"]) == 0
