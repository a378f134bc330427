"""Refunds: create (/refunds and the /refund alias), the amount rules, get, list; the concurrent race."""
import re
import threading

import pytest
import requests

from helpers import JSON, TIME_RE, MerchantApi, count, create_payment, paid_payment, wait_until

RFND_ID = re.compile(r"^rfnd_[A-Za-z0-9]{16}$")


def refund(api, payment_id, body=None, alias=False, **extra):
    """POST a refund of the payment as api's merchant (no body at all when body is None)."""
    path = f"/api/v1/payments/{payment_id}/{'refund' if alias else 'refunds'}"
    if body is None:
        return api.post(path, headers=extra)
    return api.post(path, json=body, headers=extra)


def refunded(db, payment_id):
    return db.value("SELECT COALESCE(sum(amount), 0) FROM refunds WHERE payment_id = %(p)s", {"p": payment_id})


@pytest.mark.parametrize("alias", [False, True], ids=["refunds", "refund"])
def test_create_refund(client, api, db, worker, merchant, alias):
    _, p = paid_payment(client, db, worker, merchant, 50000)
    r = refund(api, p["id"], {"amount": 20000, "reason": "damaged"}, alias=alias)
    assert r.status_code == 201
    body = r.get_json()
    assert RFND_ID.match(body["id"])
    assert {k: body[k] for k in ("payment_id", "amount", "reason", "status")} == {
        "payment_id": p["id"], "amount": 20000, "reason": "damaged", "status": "pending"}
    assert TIME_RE.match(body["created_at"])


def test_amount_defaults_to_what_is_left(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 50000)
    assert refund(api, p["id"], {"amount": 15000}).status_code == 201
    r = refund(api, p["id"], {"reason": "rest"})
    assert r.status_code == 201 and r.get_json()["amount"] == 35000
    r = refund(api, p["id"])  # empty body, as Razorpay's client may send it: nothing is left
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert refunded(db, p["id"]) == 50000


def test_empty_body_refunds_everything(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 7000)
    r = refund(api, p["id"], alias=True)
    assert r.status_code == 201 and r.get_json()["amount"] == 7000 and r.get_json()["reason"] is None


def test_refund_exceeding_available_amount_is_400(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 10000)
    r = refund(api, p["id"], {"amount": 10001})
    assert r.status_code == 400
    assert r.get_json()["error"]["description"] == "Refund amount exceeds available amount"
    assert refund(api, p["id"], {"amount": 6000}).status_code == 201
    # pending refunds count against the payment too
    r = refund(api, p["id"], {"amount": 4001})
    assert r.status_code == 400 and r.get_json()["error"]["description"] == "Refund amount exceeds available amount"
    # ... and so do processed ones
    for _ in range(5):
        if not worker.step():
            break
    assert db.value("SELECT status FROM refunds WHERE payment_id = %(p)s", {"p": p["id"]}) == "processed"
    r = refund(api, p["id"], {"amount": 4001})
    assert r.status_code == 400 and r.get_json()["error"]["description"] == "Refund amount exceeds available amount"
    assert refund(api, p["id"], {"amount": 4000}).status_code == 201
    assert refunded(db, p["id"]) == 10000


@pytest.mark.parametrize("status", ["pending", "processing", "failed"])
def test_refund_of_unsuccessful_payment_is_400(client, api, db, merchant, status):
    p = create_payment(client, merchant, 5000)
    db.execute("UPDATE payments SET status = %(s)s WHERE id = %(id)s", {"s": status, "id": p["id"]})
    r = refund(api, p["id"], {"amount": 100})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "refunds", merchant["id"]) == 0


def test_refund_of_unknown_payment_is_404(api):
    for pid in ("pay_AAAAAAAAAAAAAAAA", "pay_%00"):
        r = refund(api, pid, {"amount": 100})
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


@pytest.mark.parametrize("body,content_type,status", [
    ('{"amount": 0}', "application/json", 400),
    ('{"amount": -100}', "application/json", 400),
    ('{"amount": 100.0}', "application/json", 400),
    ('{"amount": "100"}', "application/json", 400),
    ('{"amount": true}', "application/json", 400),
    ('{"amount": 1000000000000000000000000000000}', "application/json", 400),
    ('{"amount": 100, "why": "x"}', "application/json", 400),
    ('{"reason": 5}', "application/json", 400),
    ('{"reason": "a\\u0000b"}', "application/json", 400),
    ('{"notes": "x"}', "application/json", 400),
    ("{nope", "application/json", 400),
    ("[100]", "application/json", 400),
    ('{"amount": NaN}', "application/json", 400),
    ('{"amount": 100}', "text/plain", 415),
])
def test_bad_refund_body_is_4xx_and_writes_nothing(client, api, db, worker, merchant, body, content_type, status):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    r = api.post(f"/api/v1/payments/{p['id']}/refunds", data=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.get_json()
    assert r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "refunds", merchant["id"]) == 0


def test_huge_refund_body_is_413(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    r = api.post(f"/api/v1/payments/{p['id']}/refunds", data='{"reason": "' + "x" * (1 << 20) + '"}', headers=JSON)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    assert count(db, "refunds", merchant["id"]) == 0


def test_get_refund_until_processed(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    created = refund(api, p["id"], {"amount": 1000}).get_json()
    r = api.get(f"/api/v1/refunds/{created['id']}")
    assert r.status_code == 200
    got = r.get_json()
    assert got["processed_at"] is None and {k: got[k] for k in created} == created

    def processed():
        worker.step()
        return api.get(f"/api/v1/refunds/{created['id']}").get_json()["status"] == "processed"

    wait_until(processed, timeout=10, message="refund processed")
    got = api.get(f"/api/v1/refunds/{created['id']}").get_json()
    assert TIME_RE.match(got["processed_at"]) and got["amount"] == 1000 and got["payment_id"] == p["id"]


def test_unknown_refund_is_404(api):
    for rid in ("rfnd_AAAAAAAAAAAAAAAA", "rfnd_%00", "x"):
        r = api.get(f"/api/v1/refunds/{rid}")
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR"


def test_list_refunds_of_a_payment(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 50000)
    _, other = paid_payment(client, db, worker, merchant, 50000)
    made = [refund(api, p["id"], {"amount": 100 + i}).get_json() for i in range(12)]
    refund(api, other["id"], {"amount": 100})
    body = api.get(f"/api/v1/payments/{p['id']}/refunds").get_json()
    assert list(body) == ["data", "total", "limit", "offset"]
    assert (body["total"], body["limit"], body["offset"]) == (12, 10, 0)
    assert [x["id"] for x in body["data"]] == [x["id"] for x in reversed(made)][:10]
    body = api.get(f"/api/v1/payments/{p['id']}/refunds?limit=5&offset=10").get_json()
    assert [x["amount"] for x in body["data"]] == [101, 100]
    body = api.get(f"/api/v1/payments/{p['id']}/refunds?count=2&skip=1").get_json()
    assert (body["limit"], body["offset"], [x["amount"] for x in body["data"]]) == (2, 1, [110, 109])
    assert api.get(f"/api/v1/payments/{p['id']}/refunds?limit=101").get_json()["limit"] == 100


def test_refund_endpoints_need_credentials(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    rid = refund(api, p["id"], {"amount": 100}).get_json()["id"]
    for method, path in [("POST", f"/api/v1/payments/{p['id']}/refunds"), ("POST", f"/api/v1/payments/{p['id']}/refund"),
                         ("GET", f"/api/v1/payments/{p['id']}/refunds"), ("GET", f"/api/v1/refunds/{rid}"),
                         ("POST", "/api/v1/refunds"), ("GET", "/api/v1/refunds"),
                         ("GET", f"/api/v1/payments/{p['id']}/refunds/{rid}")]:
        r = client.open(path, method=method, json={"amount": 100})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "AUTHENTICATION_ERROR"
    assert refunded(db, p["id"]) == 100


def test_concurrent_refunds_never_exceed_the_amount(client, api, db, worker, merchant, live_api):
    """20 refunds of 30 % each at once over real HTTP: exactly 3 succeed, and the total stays within
    the payment (the payment row is locked while the available amount is computed)."""
    _, p = paid_payment(client, db, worker, merchant, 10000)
    url = f"{live_api.url}/api/v1/payments/{p['id']}/refunds"
    start = threading.Barrier(20)
    results = [None] * 20

    def one(i):
        with requests.Session() as s:
            start.wait()
            r = s.post(url, json={"amount": 3000}, headers=merchant["headers"], timeout=30)
            results[i] = (r.status_code, r.json())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(code for code, _ in results)
    assert statuses == [201] * 3 + [400] * 17, statuses
    for code, body in results:
        if code == 400:
            assert body["error"]["description"] == "Refund amount exceeds available amount"
    assert refunded(db, p["id"]) == 9000
    assert db.value("SELECT count(*) FROM refunds WHERE payment_id = %(p)s", {"p": p["id"]}) == 3


# ---- notes and receipt, the over-refund message, POST /refunds, a payment's refund by id ---------

def test_notes_and_receipt_are_stored_and_returned_everywhere(client, db, worker, make_merchant, receiver):
    hook = receiver()
    m = make_merchant(webhook_url=hook.url)
    api = MerchantApi(client, m)
    _, p = paid_payment(client, db, worker, m, 5000)
    notes = {"ticket": "T-42", "n": 3, "ok": True, "none": None}
    created = refund(api, p["id"], {"amount": 1000, "notes": notes, "receipt": "rfnd_rcpt_1"}).get_json()
    assert (created["notes"], created["receipt"]) == (notes, "rfnd_rcpt_1")
    assert api.get(f"/api/v1/refunds/{created['id']}").get_json()["notes"] == notes
    listed = api.get(f"/api/v1/payments/{p['id']}/refunds").get_json()["data"][0]
    assert (listed["notes"], listed["receipt"]) == (notes, "rfnd_rcpt_1")
    bare = refund(api, p["id"], {"amount": 100}).get_json()
    assert (bare["notes"], bare["receipt"]) == ({}, None)
    for bad in ({"receipt": "r" * 41}, {"receipt": 7}, {"notes": ["a"]}, {"notes": {str(i): i for i in range(16)}}):
        r = refund(api, p["id"], dict(bad, amount=100))
        assert r.status_code == 400 and r.get_json()["error"]["field"] == next(iter(bad))
    assert len(api.get(f"/api/v1/payments/{p['id']}/refunds").get_json()["data"]) == 2

    def sent(event):
        return {r["json"]["data"]["refund"]["id"]: r["json"]["data"]["refund"] for r in list(hook.requests)
                if r["json"]["event"] == event}

    def delivered():
        worker.step()
        return created["id"] in sent("refund.processed") and len(sent("refund.created")) == 2

    wait_until(delivered, timeout=15, message="refund.created twice and refund.processed delivered")
    processed = sent("refund.processed")[created["id"]]
    assert (processed["notes"], processed["receipt"], processed["status"]) == (notes, "rfnd_rcpt_1", "processed")
    accepted = sent("refund.created")
    assert (accepted[created["id"]]["notes"], accepted[created["id"]]["receipt"]) == (notes, "rfnd_rcpt_1")
    assert (accepted[bare["id"]]["notes"], accepted[bare["id"]]["receipt"]) == ({}, None)


def test_fully_refunded_payment_says_amount_exceeds_available(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    assert refund(api, p["id"]).status_code == 201
    for body in (None, {}, {"amount": 1}, {"reason": "again"}):
        r = refund(api, p["id"], body)
        assert r.status_code == 400
        assert r.get_json()["error"] == {"code": "BAD_REQUEST_ERROR", "field": "amount",
                                         "description": "Refund amount exceeds available amount"}
    assert refunded(db, p["id"]) == 5000


def _post_refund(api, body, **extra):
    return api.post("/api/v1/refunds", json=body, headers=extra)


def test_post_refunds_names_the_payment_in_the_body(client, api, db, worker, merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    r = _post_refund(api, {"payment_id": p["id"], "amount": 1500, "reason": "late", "notes": {"a": "b"},
                           "receipt": "R1"})
    assert r.status_code == 201
    body = r.get_json()
    assert RFND_ID.match(body["id"]) and {k: body[k] for k in ("payment_id", "amount", "reason", "status", "notes",
                                                                 "receipt")} == {
        "payment_id": p["id"], "amount": 1500, "reason": "late", "status": "pending", "notes": {"a": "b"},
        "receipt": "R1"}
    rest = _post_refund(api, {"payment_id": p["id"]}).get_json()  # no amount: the rest
    assert rest["amount"] == 3500
    r = _post_refund(api, {"payment_id": p["id"], "amount": 1})
    assert r.status_code == 400 and r.get_json()["error"]["description"] == "Refund amount exceeds available amount"
    assert refunded(db, p["id"]) == 5000


def test_post_refunds_refusals(client, api, db, worker, merchant, make_merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    other = make_merchant()
    assert _post_refund(MerchantApi(client, other), {"payment_id": p["id"], "amount": 100}).status_code == 404
    assert _post_refund(api, {"payment_id": "pay_AAAAAAAAAAAAAAAA"}).status_code == 404
    for body, field in (({"amount": 100}, "payment_id"), ({"payment_id": 5}, "payment_id"),
                        ({"payment_id": p["id"], "amount": 1.5}, "amount"),
                        ({"payment_id": p["id"], "extra": 1}, "extra")):
        r = _post_refund(api, body)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, r.get_json()
    r = api.post("/api/v1/refunds")  # no body: the payment is unknown
    assert r.status_code in (400, 415) and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
    pending = create_payment(client, merchant, 900)
    r = _post_refund(api, {"payment_id": pending["id"]})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "payment_id"
    assert count(db, "refunds", merchant["id"]) == 0
    r = client.post("/api/v1/refunds", json={"payment_id": p["id"]})
    assert r.status_code == 401


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Refund-Idempotency"])
def test_post_refunds_is_idempotent(client, api, db, worker, merchant, header):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    body = {"payment_id": p["id"], "amount": 700}
    first = _post_refund(api, body, **{header: "refund-once"})
    again = _post_refund(api, body, **{header: "refund-once"})
    assert (first.status_code, again.status_code) == (201, 201) and again.data == first.data
    r = _post_refund(api, dict(body, amount=800), **{header: "refund-once"})
    assert r.status_code == 409
    assert refunded(db, p["id"]) == 700


def test_a_payments_refund_by_id(client, api, db, worker, merchant, make_merchant):
    _, p = paid_payment(client, db, worker, merchant, 5000)
    _, q = paid_payment(client, db, worker, merchant, 5000)
    mine = refund(api, p["id"], {"amount": 100, "receipt": "x"}).get_json()
    theirs = refund(api, q["id"], {"amount": 100}).get_json()
    r = api.get(f"/api/v1/payments/{p['id']}/refunds/{mine['id']}")
    assert r.status_code == 200 and r.get_json() == api.get(f"/api/v1/refunds/{mine['id']}").get_json()
    for pid, rid, who in ((p["id"], theirs["id"], merchant), (q["id"], mine["id"], merchant),
                          (p["id"], mine["id"], make_merchant()), (p["id"], "rfnd_%00", merchant),
                          ("pay_AAAAAAAAAAAAAAAA", mine["id"], merchant)):
        r = client.get(f"/api/v1/payments/{pid}/refunds/{rid}", headers=who["headers"])
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND_ERROR", (pid, rid)
