"""/openapi.json: a valid OpenAPI 3.1 document that covers every route, and the real responses of
every operation, successes and errors, conform to the schemas it declares."""
import json
import uuid

import pytest
import requests
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec

from helpers import CARD, JSON, TEST_KEY, wait_until

from app.openapi import OPERATIONS, spec_dict

BIG = "x" * (70 * 1024)  # over the 64 KB body limit

# Documented responses no test here can provoke deterministically, and where they are proven instead.
NOT_EXERCISED = {
    ("get", "/health", "503"): "database outage: the fault tests stop PostgreSQL",
    ("get", "/api/v1/test/merchant", "404"): "the test merchant is always seeded",
    ("post", "/api/v1/webhooks/{log_id}/retry", "409"): "needs a delivery caught in flight",
}


class Conformance:
    """Validates real responses against the document and remembers which (operation, status) it saw."""

    def __init__(self, doc):
        self.doc = doc
        self.seen = set()

    def check(self, method, template, response):
        op = self.doc["paths"][template][method]
        status = str(response.status_code)
        body = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
        where = f"{method.upper()} {template} -> {status}: {body[:500]}"
        assert status in op["responses"], f"undocumented status: {where}"
        if "content" not in op["responses"][status]:  # 204
            assert not body, f"a body where none is documented: {where}"
            self.seen.add((method, template, status))
            return None
        content = op["responses"][status]["content"]
        mimetype = response.mimetype if hasattr(response, "mimetype") else response.headers["Content-Type"].split(";")[0]
        assert mimetype in content, f"undocumented content type {mimetype}: {where}"
        # The schema's $refs point into #/components: validate with the components alongside.
        schema = dict(content[mimetype]["schema"], components=self.doc["components"])
        errors = sorted(OAS31Validator(schema, format_checker=oas31_format_checker).iter_errors(json.loads(body)),
                        key=lambda e: list(e.absolute_path))
        assert not errors, f"{where}\n" + "\n".join(
            f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)
        self.seen.add((method, template, status))
        return json.loads(body)

    def documented(self, predicate):
        return {(m, p, s) for p, item in self.doc["paths"].items() for m, op in item.items()
                for s in op["responses"] if predicate(m, p, int(s))}

    def assert_covered(self, predicate):
        missing = self.documented(predicate) - self.seen - set(NOT_EXERCISED)
        assert not missing, f"documented but never exercised: {sorted(missing)}"


@pytest.fixture(scope="module")
def doc():
    return spec_dict()


@pytest.fixture
def conform(doc):
    return Conformance(doc)


def _status(db, table, id_):
    return db.value(f"SELECT status FROM {table} WHERE id = %(id)s", {"id": id_})


def _run_until(worker, predicate, message):
    """Run worker steps until an observable condition holds."""
    def step_then_check():
        worker.step()
        return predicate()

    return wait_until(step_then_check, timeout=15, message=message)


# ---- the document itself -------------------------------------------------------------------------

def test_document_is_valid_openapi_31(doc):
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")


def test_served_without_auth_and_equal_to_spec_dict(client, doc):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.get_json() == doc


def test_live_server_serves_the_same_document(live_api, doc):
    r = requests.get(live_api.url + "/openapi.json", timeout=5)
    assert r.status_code == 200 and r.json() == doc


def test_every_route_is_documented_and_nothing_else(app, doc):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule == "/health":
            path = rule.rule.replace("<", "{").replace(">", "}")
            routes |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert routes == documented


def test_table_rows_are_unique_and_have_operation_ids(doc):
    ids = [op["id"] for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert len({(op["method"], op["path"]) for op in OPERATIONS}) == len(OPERATIONS)


def test_security_schemes_and_auth_requirements(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == dict(schemes["ApiKey"], type="apiKey", **{"in": "header", "name": "X-Api-Key"})
    assert schemes["ApiSecret"]["name"] == "X-Api-Secret" and schemes["ApiSecret"]["in"] == "header"
    assert schemes["BasicAuth"]["type"] == "http" and schemes["BasicAuth"]["scheme"] == "basic"
    public = {("get", "/health"), ("get", "/api/v1/test/merchant"), ("get", "/api/v1/test/jobs/status"),
              ("get", "/api/v1/orders/{order_id}/public"), ("post", "/api/v1/payments/public"),
              ("get", "/api/v1/payments/{payment_id}/public")}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if (method, path) in public:
                assert op["security"] == [] and "401" not in op["responses"]
            else:
                assert op["security"] == [{"ApiKey": [], "ApiSecret": []}, {"BasicAuth": []}]
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"}


def test_links_point_at_real_operations_and_parameters(doc):
    ops = {op["operationId"]: op for item in doc["paths"].values() for op in item.values()}
    links = [link for item in doc["paths"].values() for op in item.values()
             for resp in op["responses"].values() for link in resp.get("links", {}).values()]
    assert len(links) >= 10
    for link in links:
        target = ops[link["operationId"]]
        assert set(link.get("parameters", {})) <= {p["name"] for p in target.get("parameters", [])}, link
        if "requestBody" in link:
            schema_ref = target["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            props = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]["properties"]
            assert set(link["requestBody"]) <= set(props), link


def _request_schemas(doc):
    names = {op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
             for item in doc["paths"].values() for op in item.values() if "requestBody" in op}
    return names | {"CardIn"}


def test_request_bodies_refuse_unknown_fields(doc):
    schemas = doc["components"]["schemas"]
    assert _request_schemas(doc) == {"OrderCreate", "PaymentCreate", "CardIn", "CaptureIn", "RefundCreate",
                                     "RefundCreateForPayment", "WebhookConfigIn", "EndpointCreate", "EndpointUpdate",
                                     "SecretRotation", "Replay"}
    for name in _request_schemas(doc):
        assert schemas[name]["additionalProperties"] is False, name


LISTS = ("/api/v1/orders", "/api/v1/payments", "/api/v1/orders/{order_id}/payments", "/api/v1/refunds",
         "/api/v1/payments/{payment_id}/refunds", "/api/v1/webhooks", "/api/v1/events")


def test_list_operations_document_paging(doc):
    for path in LISTS:
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "query"}
        expected = {"limit", "offset", "count", "skip", "from", "to"} | {"/api/v1/payments": {"status"},
                                                                          "/api/v1/events": {"event"}}.get(path, set())
        assert set(params) == expected, path  # any other parameter is a 400
        assert all(params[n]["schema"]["type"] == "integer" and params[n]["schema"]["minimum"] == 0
                   for n in ("limit", "offset", "count", "skip", "from", "to"))
        assert "unix seconds" in params["from"]["description"]


def test_nullable_fields_and_enums(doc):
    schemas = doc["components"]["schemas"]
    for name, prop in [("OrderOut", "receipt"), ("PaymentOut", "vpa"), ("PaymentOut", "card_network"),
                       ("PaymentOut", "card_last4"), ("PaymentOut", "error_code"), ("PaymentOut", "error_description"),
                       ("RefundOut", "reason"), ("RefundOut", "processed_at"), ("WebhookLogOut", "last_attempt_at"),
                       ("WebhookLogOut", "next_retry_at"), ("WebhookLogOut", "response_code"),
                       ("WebhookConfigOut", "webhook_url"), ("WebhookConfigIn", "webhook_url")]:
        assert "null" in schemas[name]["properties"][prop]["type"], (name, prop)
    for name, prop in [("OrderOut", "id"), ("OrderOut", "amount"), ("PaymentOut", "status"), ("RefundOut", "amount")]:
        assert "null" not in schemas[name]["properties"][prop]["type"], (name, prop)
    assert schemas["PaymentOut"]["properties"]["status"]["enum"] == ["pending", "processing", "success", "failed"]
    assert schemas["PaymentCreate"]["properties"]["method"]["enum"] == ["upi", "card"]
    assert schemas["RefundOut"]["properties"]["status"]["enum"] == ["pending", "processed"]
    assert schemas["JobsStatusOut"]["properties"]["worker_status"]["enum"] == ["running", "stopped"]
    assert schemas["OrderCreate"]["properties"]["amount"]["minimum"] == 100


# ---- real responses against the document ---------------------------------------------------------

def test_every_success_response_conforms(client, conform, make_merchant, receiver, worker, db):
    hook = receiver()
    m = make_merchant(webhook_url=hook.url)
    h = m["headers"]
    c = conform.check

    health = c("get", "/health", client.get("/health"))
    assert health["database"] == "connected"
    assert c("get", "/api/v1/test/merchant", client.get("/api/v1/test/merchant"))["api_key"] == TEST_KEY
    c("get", "/api/v1/test/jobs/status", client.get("/api/v1/test/jobs/status"))

    # Orders: one with every optional field, one with a null receipt (nullable in the document).
    order = c("post", "/api/v1/orders", client.post("/api/v1/orders", headers=h, json={
        "amount": 50000, "currency": "INR", "receipt": "rcpt_1", "notes": {"k": "v", "n": 1, "b": True, "z": None}}))
    bare = c("post", "/api/v1/orders", client.post("/api/v1/orders", headers=h, json={"amount": 100, "receipt": None}))
    assert bare["receipt"] is None
    c("get", "/api/v1/orders", client.get("/api/v1/orders?limit=2", headers=h))
    c("get", "/api/v1/orders/{order_id}", client.get(f"/api/v1/orders/{order['id']}", headers=h))
    c("get", "/api/v1/orders/{order_id}/public", client.get(f"/api/v1/orders/{order['id']}/public"))

    # Payments: UPI (vpa set, card fields null), card (network and last4), and the checkout's.
    upi = c("post", "/api/v1/payments", client.post("/api/v1/payments", headers=h, json={
        "order_id": order["id"], "method": "upi", "vpa": "shopper@okbank"}))
    assert upi["status"] == "pending" and upi["card_network"] is None
    card_order = c("post", "/api/v1/orders", client.post("/api/v1/orders", headers=h, json={"amount": 2500}))
    card = c("post", "/api/v1/payments", client.post("/api/v1/payments", headers=h, json={
        "order_id": card_order["id"], "method": "card", "card": CARD}))
    assert card["card_network"] == "visa" and card["card_last4"] == "1111" and card["vpa"] is None
    public = c("post", "/api/v1/payments/public", client.post("/api/v1/payments/public", json={
        "order_id": bare["id"], "method": "upi", "vpa": "a.b-c_d@bank"}))
    c("get", "/api/v1/payments", client.get("/api/v1/payments?count=5&skip=0", headers=h))
    c("get", "/api/v1/payments", client.get("/api/v1/payments?status=pending", headers=h))
    c("get", "/api/v1/payments/{payment_id}", client.get(f"/api/v1/payments/{card['id']}", headers=h))
    in_order = c("get", "/api/v1/orders/{order_id}/payments",
                 client.get(f"/api/v1/orders/{order['id']}/payments?count=5&from=0", headers=h))
    assert [p["id"] for p in in_order["data"]] == [upi["id"]]
    c("get", "/api/v1/payments/{payment_id}/public", client.get(f"/api/v1/payments/{public['id']}/public"))

    # Settle in-process, then capture and refund (the alias with an empty body refunds the rest).
    _run_until(worker, lambda: all(_status(db, "payments", p["id"]) == "success" for p in (upi, card, public)),
               "payments settled")
    settled = c("get", "/api/v1/payments/{payment_id}", client.get(f"/api/v1/payments/{upi['id']}", headers=h))
    assert settled["status"] == "success"
    captured = c("post", "/api/v1/payments/{payment_id}/capture", client.post(
        f"/api/v1/payments/{upi['id']}/capture", headers=h, json={"amount": 50000}))
    assert captured["captured"] is True
    partial = c("post", "/api/v1/payments/{payment_id}/refunds", client.post(
        f"/api/v1/payments/{upi['id']}/refunds", headers=h, json={"amount": 10000, "reason": "damaged"}))
    by_body = c("post", "/api/v1/refunds", client.post("/api/v1/refunds", headers=h, json={
        "payment_id": upi["id"], "amount": 5000, "receipt": "rf_1", "notes": {"ticket": 7}}))
    assert (by_body["receipt"], by_body["notes"]) == ("rf_1", {"ticket": 7})
    rest = c("post", "/api/v1/payments/{payment_id}/refund", client.post(
        f"/api/v1/payments/{upi['id']}/refund", headers=h))
    assert (partial["amount"], rest["amount"], rest["reason"], rest["receipt"]) == (10000, 35000, None, None)
    assert partial["processed_at"] is None
    refunds = c("get", "/api/v1/payments/{payment_id}/refunds",
                client.get(f"/api/v1/payments/{upi['id']}/refunds", headers=h))
    assert refunds["total"] == 3
    everywhere = c("get", "/api/v1/refunds", client.get("/api/v1/refunds?skip=1&to=99999999999", headers=h))
    assert everywhere["total"] == 3 and len(everywhere["data"]) == 2
    one = c("get", "/api/v1/payments/{payment_id}/refunds/{refund_id}",
            client.get(f"/api/v1/payments/{upi['id']}/refunds/{by_body['id']}", headers=h))
    assert one == by_body
    _run_until(worker, lambda: _status(db, "refunds", partial["id"]) == "processed", "refund processed")
    processed = c("get", "/api/v1/refunds/{refund_id}", client.get(f"/api/v1/refunds/{partial['id']}", headers=h))
    assert processed["status"] == "processed" and processed["processed_at"]

    # Webhooks: logs (delivered to the receiver by the worker), retry, config, secret, test event.
    hook.wait_for(1, event="payment.success")
    logs = c("get", "/api/v1/webhooks", client.get("/api/v1/webhooks?limit=100", headers=h))
    delivered = next(log for log in logs["data"] if log["event"] == "payment.success")
    wait_until(lambda: _status(db, "webhook_logs", delivered["id"]) == "success", message="delivery recorded")
    c("get", "/api/v1/webhooks", client.get("/api/v1/webhooks", headers=h))  # now with a response_code
    retried = c("post", "/api/v1/webhooks/{log_id}/retry",
                client.post(f"/api/v1/webhooks/{delivered['id']}/retry", headers=h))
    assert retried == {"id": delivered["id"], "status": "pending", "message": "Webhook retry scheduled"}
    c("get", "/api/v1/webhooks/config", client.get("/api/v1/webhooks/config", headers=h))
    c("post", "/api/v1/webhooks/test", client.post("/api/v1/webhooks/test", headers=h))
    c("post", "/api/v1/webhooks/config/secret", client.post("/api/v1/webhooks/config/secret", headers=h))
    c("post", "/api/v1/webhooks/config", client.post("/api/v1/webhooks/config", headers=h,
                                                     json={"webhook_url": hook.url}))

    # Endpoints: the first one (the config's URL) and one more, changed, rotated, removed.
    base = "/api/v1/webhooks/endpoints"
    one = base + "/{endpoint_id}"
    made = c("post", base, client.post(base, headers=h, json={
        "url": hook.url, "events": ["payment.success", "refund.processed"], "description": "ops"}))
    listed = c("get", base, client.get(base, headers=h))
    assert [e["id"] for e in listed["data"]][:-1] == [made["id"]] and "secret" not in listed["data"][-1]  # newest first
    assert c("get", one, client.get(f"{base}/{made['id']}", headers=h))["secret"] == made["secret"]
    changed = c("patch", one, client.patch(f"{base}/{made['id']}", headers=h, json={"enabled": False,
                                                                                     "description": None}))
    assert (changed["enabled"], changed["description"]) == (False, None)
    rotated = c("post", one + "/secret", client.post(f"{base}/{made['id']}/secret", headers=h,
                                                      json={"expire_previous_in": 60}))
    assert rotated["secret"] != made["secret"] and rotated["previous_expires_at"]
    replayed = c("post", one + "/replay", client.post(f"{base}/{listed['data'][-1]['id']}/replay", headers=h,
                                                       json={"since": 0}))
    assert replayed["queued"] >= 1
    assert c("post", one + "/replay", client.post(f"{base}/{made['id']}/replay", headers=h,
                                                   json={"since": 0, "status": "failed"}))["queued"] == 0
    assert c("delete", one, client.delete(f"{base}/{made['id']}", headers=h)) is None
    events_page = c("get", "/api/v1/events", client.get("/api/v1/events?event=payment.success&count=1", headers=h))
    assert events_page["total"] >= 1 and events_page["data"][0]["event"] == "payment.success"
    c("get", "/api/v1/events/{event_id}", client.get(f"/api/v1/events/{events_page['data'][0]['id']}", headers=h))

    cleared = c("put", "/api/v1/webhooks/config", client.put("/api/v1/webhooks/config", headers=h,
                                                             json={"webhook_url": None}))
    assert cleared["webhook_url"] is None

    conform.assert_covered(lambda m, p, s: s < 300)


def _fill(path):
    return path.replace("{order_id}", "order_0000000000000000").replace("{payment_id}", "pay_0000000000000000") \
        .replace("{refund_id}", "rfnd_0000000000000000").replace("{log_id}", str(uuid.uuid4())) \
        .replace("{endpoint_id}", "we_0000000000000000").replace("{event_id}", "evt_0000000000000000")


def _send(client, method, path, **kwargs):
    return client.open(path, method=method.upper(), **kwargs)


def test_every_error_response_conforms(client, conform, doc, make_merchant, worker, db):
    m = make_merchant()  # no webhook URL: the test event is refused
    h = m["headers"]
    c = conform.check
    with_body = {(op["method"], op["path"]) for op in OPERATIONS if op.get("body")}

    for path, item in doc["paths"].items():
        for method, op in item.items():
            url = _fill(path)
            if "401" in op["responses"]:
                r = _send(client, method, url, json={})
                assert c(method, path, r)["error"]["code"] == "AUTHENTICATION_ERROR"
            if "415" in op["responses"] and (method, path) not in with_body:  # a body-less write refuses forms too
                r = _send(client, method, url, headers=h, data="", content_type="text/plain")
                assert r.status_code == 415, (method, path)
                c(method, path, r)
            if (method, path) in with_body:
                r = _send(client, method, url, headers=h, data="amount=100",
                          content_type="application/x-www-form-urlencoded")
                assert r.status_code == 415, (method, path)
                c(method, path, r)
                r = _send(client, method, url, headers=dict(h, **JSON), data=json.dumps({"pad": BIG}))
                assert r.status_code == 413, (method, path)
                c(method, path, r)
                r = _send(client, method, url, headers=dict(h, **JSON), data="{not json")
                assert r.status_code == 400, (method, path)
                c(method, path, r)
            if "{" in path and "404" in op["responses"]:
                body = ({"amount": 100} if path.endswith("/capture") else {"since": 0} if path.endswith("/replay")
                        else {} if method == "patch" else None)
                r = _send(client, method, url, headers=h, json=body)
                assert r.status_code == 404, (method, path, r.get_json())
                assert c(method, path, r)["error"]["code"] == "NOT_FOUND_ERROR"

    # 400s of the list parameters, the bodies and the payment rules.
    for path in ("/api/v1/orders", "/api/v1/payments", "/api/v1/webhooks", "/api/v1/refunds", "/api/v1/events",
                 "/api/v1/webhooks/endpoints"):
        c("get", path, client.get(path + "?limit=ten", headers=h))
        assert c("get", path, client.get(path + "?order_id=x", headers=h))["error"]["field"] == "order_id"
    order = c("post", "/api/v1/orders", client.post("/api/v1/orders", headers=h, json={"amount": 1000}))
    for bad in ({"amount": 99.5}, {"amount": 50}, {"amount": 500, "surprise": 1}, {"amount": "500"}):
        assert c("post", "/api/v1/orders", client.post("/api/v1/orders", headers=h, json=bad))["error"]["code"] == \
            "BAD_REQUEST_ERROR"
    codes = {}
    for bad in ({"method": "upi", "vpa": "no-at-sign"},
                {"method": "card", "card": dict(CARD, number="1234567890123456")},
                {"method": "card", "card": dict(CARD, expiry_year=2001)},
                {"method": "bitcoin"}):
        for path in ("/api/v1/payments", "/api/v1/payments/public"):
            r = client.post(path, headers=h, json=dict(bad, order_id=order["id"]))
            codes[c("post", path, r)["error"]["code"]] = r.status_code
    assert codes == {"INVALID_VPA": 400, "INVALID_CARD": 400, "EXPIRED_CARD": 400, "BAD_REQUEST_ERROR": 400}
    pending = c("post", "/api/v1/payments", client.post("/api/v1/payments", headers=h, json={
        "order_id": order["id"], "method": "upi", "vpa": "a@b"}))
    r = client.post(f"/api/v1/payments/{pending['id']}/capture", headers=h, json={"amount": 1000})
    assert c("post", "/api/v1/payments/{payment_id}/capture", r)["error"]["description"] == \
        "Payment not in capturable state"
    for path in ("/api/v1/payments/{payment_id}/refunds", "/api/v1/payments/{payment_id}/refund"):
        r = client.post(path.replace("{payment_id}", pending["id"]), headers=h, json={"amount": 100})
        assert r.status_code == 400
        c("post", path, r)
    c("get", "/api/v1/payments/{payment_id}/refunds",
      client.get(f"/api/v1/payments/{pending['id']}/refunds?offset=-1", headers=h))
    c("get", "/api/v1/orders/{order_id}/payments", client.get(f"/api/v1/orders/{order['id']}/payments?to=x", headers=h))
    r = client.post("/api/v1/refunds", headers=h, json={"payment_id": pending["id"], "amount": 100})
    assert r.status_code == 400
    c("post", "/api/v1/refunds", r)
    r = client.post("/api/v1/refunds", headers=h, json={"payment_id": "pay_0000000000000000"})
    assert r.status_code == 404
    c("post", "/api/v1/refunds", r)
    for method in ("put", "post"):
        r = _send(client, method, "/api/v1/webhooks/config", headers=h, json={"webhook_url": "ftp://example.com/x"})
        assert c(method, "/api/v1/webhooks/config", r)["error"]["field"] == "webhook_url"
    r = client.post("/api/v1/webhooks/test", headers=h)
    assert r.status_code == 400
    c("post", "/api/v1/webhooks/test", r)
    for bad in ({"url": "ftp://example.com/x"}, {"url": "https://example.com/h", "events": ["payment.captured"]},
                {"url": "https://example.com/h", "events": []}, {"events": ["*"]}):
        r = client.post("/api/v1/webhooks/endpoints", headers=h, json=bad)
        assert r.status_code == 400, (bad, r.get_json())
        c("post", "/api/v1/webhooks/endpoints", r)
    made = client.post("/api/v1/webhooks/endpoints", headers=h, json={"url": "https://example.com/h"}).get_json()
    one = "/api/v1/webhooks/endpoints/{endpoint_id}"
    for bad in ({"enabled": "yes"}, {"events": ["nope"]}, {"secret": "x"}):
        r = client.patch(one.replace("{endpoint_id}", made["id"]), headers=h, json=bad)
        assert r.status_code == 400, (bad, r.get_json())
        c("patch", one, r)
    for bad in ({}, {"since": -1}, {"since": 0, "status": "success"}):
        r = client.post(f"/api/v1/webhooks/endpoints/{made['id']}/replay", headers=h, json=bad)
        assert r.status_code == 400, bad
        c("post", "/api/v1/webhooks/endpoints/{endpoint_id}/replay", r)
    c("get", "/api/v1/events", client.get("/api/v1/events?event=payment.captured", headers=h))
    for path in ("/api/v1/webhooks/endpoints/{endpoint_id}/secret", "/api/v1/webhooks/config/secret"):
        r = client.post(path.replace("{endpoint_id}", made["id"]), headers=h, json={"expire_previous_in": -1})
        assert r.status_code == 400
        c("post", path, r)

    for path in ("/api/v1/payments", "/api/v1/payments/public"):
        r = client.post(path, headers=h, json={"order_id": "order_0000000000000000", "method": "upi", "vpa": "a@b"})
        assert r.status_code == 404
        c("post", path, r)

    # 409: an idempotency key reused with a different body, on each creating POST.
    _run_until(worker, lambda: _status(db, "payments", pending["id"]) == "success", "payment settled")
    unpaid = c("post", "/api/v1/orders", client.post("/api/v1/orders", headers=h, json={"amount": 1000}))
    unpaid_too = client.post("/api/v1/orders", headers=h, json={"amount": 1000}).get_json()  # one payment in flight each
    for path, first, second in [
        ("/api/v1/orders", {"amount": 100}, {"amount": 200}),
        ("/api/v1/payments", {"order_id": unpaid["id"], "method": "upi", "vpa": "a@b"},
         {"order_id": unpaid["id"], "method": "upi", "vpa": "c@d"}),
        ("/api/v1/payments/public", {"order_id": unpaid_too["id"], "method": "upi", "vpa": "e@f"},
         {"order_id": unpaid_too["id"], "method": "upi", "vpa": "g@h"}),
        ("/api/v1/payments/{payment_id}/refunds", {"amount": 100}, {"amount": 200}),
        ("/api/v1/payments/{payment_id}/refund", {"amount": 100}, {"amount": 200}),
        ("/api/v1/refunds", {"payment_id": pending["id"], "amount": 100}, {"payment_id": pending["id"], "amount": 200}),
    ]:
        url = path.replace("{payment_id}", pending["id"])
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert client.post(url, headers=dict(h, **key), json=first).status_code == 201
        r = client.post(url, headers=dict(h, **key), json=second)
        assert r.status_code == 409, (path, r.get_json())
        c("post", path, r)

    # 429 needs API_RATE_LIMIT set, which this app has not: test_api_rate_limit.py provokes it.
    conform.assert_covered(lambda m, p, s: s >= 400 and s not in (429, 503))


def test_live_responses_conform(live_api, doc):
    """The same document describes the app as deployed (gunicorn), Basic auth included."""
    conform = Conformance(doc)
    s = requests.Session()
    s.auth = (TEST_KEY, "secret_test_xyz789")
    base = live_api.url

    class R:  # requests' response with the two attributes Conformance reads from Flask's
        def __init__(self, r):
            self.status_code, self.text, self.headers = r.status_code, r.text, r.headers

    order = conform.check("post", "/api/v1/orders", R(s.post(base + "/api/v1/orders", json={"amount": 1234})))
    conform.check("get", "/api/v1/orders/{order_id}", R(s.get(f"{base}/api/v1/orders/{order['id']}")))
    conform.check("get", "/api/v1/orders", R(s.get(base + "/api/v1/orders?limit=1000")))
    conform.check("get", "/health", R(requests.get(base + "/health", timeout=5)))
    r = R(requests.get(base + "/api/v1/orders", timeout=5))
    assert r.status_code == 401
    conform.check("get", "/api/v1/orders", r)


class _Fake:
    def __init__(self, status, body):
        self.status_code, self.text, self.headers = status, json.dumps(body), {"Content-Type": "application/json"}


@pytest.mark.parametrize("mutate", [
    lambda o: o.pop("updated_at"),                                # a documented field missing
    lambda o: o.update(extra=1),                                  # an undocumented field
    lambda o: o.update(created_at="2026-01-15T10:31:00.123456Z"),  # fractional seconds
    lambda o: o.update(amount=100.5),                              # a float amount
    lambda o: o.update(status="refunded"),                         # outside the enum
    lambda o: o.update(id=None),                                   # null where not nullable
])
def test_the_checker_catches_drift(doc, client, merchant, mutate):
    """The conformance check above is not vacuous: each kind of drift fails it."""
    r = client.post("/api/v1/orders", headers=merchant["headers"], json={"amount": 500})
    body = r.get_json()
    Conformance(doc).check("post", "/api/v1/orders", _Fake(201, body))
    mutate(body)
    with pytest.raises(AssertionError):
        Conformance(doc).check("post", "/api/v1/orders", _Fake(201, body))
    with pytest.raises(AssertionError, match="undocumented status"):
        Conformance(doc).check("post", "/api/v1/orders", _Fake(200, r.get_json()))
