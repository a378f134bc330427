"""X-Request-Id on every answer, the request's id on every log line about it (the API's and the
worker's lines about the jobs it caused), LOG_FORMAT=json, and no Server banner."""
import json
import re
import secrets

import pytest
import requests

from app import create_app
from helpers import BASE_CONFIG, CARD, wait_until

GENERATED = re.compile(r"req_[0-9a-z]{5}[0-9A-Za-z]{11}")


def new_client_id():
    return f"client-{secrets.token_hex(6)}.v1_x"


# ---- the header ---------------------------------------------------------------------------------

def test_a_valid_client_id_is_echoed(client):
    sent = "A-z_0.9" + "x" * 57  # every allowed kind of character, 64 in all
    r = client.get("/health", headers={"X-Request-Id": sent})
    assert r.headers["X-Request-Id"] == sent


def test_without_one_each_answer_gets_a_new_req_id(client):
    first, second = (client.get("/health").headers["X-Request-Id"] for _ in range(2))
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


@pytest.mark.parametrize("sent", ["x" * 65, "has space", "semi;colon", "quote\"d", "ümlaut", "a/b", "", "<script>"])
def test_an_invalid_client_id_is_replaced_by_a_new_one(client, sent):
    r = client.get("/health", headers={"X-Request-Id": sent.encode().decode("latin-1")})
    assert GENERATED.fullmatch(r.headers["X-Request-Id"]), r.headers["X-Request-Id"]


@pytest.mark.parametrize("method,path,kwargs,status", [
    ("GET", "/api/v1/no-such-thing", {}, 404),
    ("DELETE", "/api/v1/orders", {}, 405),
    ("POST", "/api/v1/orders", {"data": {"amount": "100"}}, 415),
    ("GET", "/api/v1/orders", {}, 401),
    ("GET", "/login", {}, 200),
    ("GET", "/dashboard", {}, 302),
    ("GET", "/checkout?order_id=order_0000000000000000", {}, 404),
    ("GET", "/checkout.js", {}, 200),
])
def test_errors_and_pages_carry_the_id(client, method, path, kwargs, status):
    sent = new_client_id()
    r = client.open(path, method=method, headers={"X-Request-Id": sent}, **kwargs)
    assert r.status_code == status
    assert r.headers.getlist("X-Request-Id") == [sent]
    generated = client.open(path, method=method, **kwargs)
    assert GENERATED.fullmatch(generated.headers["X-Request-Id"])


def test_a_500_carries_the_id(app):
    failing = create_app(dict(BASE_CONFIG, DATABASE_URL=app.config["DATABASE_URL"]))

    @failing.get("/api/v1/boom")
    def boom():
        raise RuntimeError("a bug")

    r = failing.test_client().get("/api/v1/boom", headers={"X-Request-Id": "bug-report-1"})
    assert r.status_code == 500 and r.headers["X-Request-Id"] == "bug-report-1"


def test_an_idempotent_replay_answers_with_its_own_id(client, merchant):
    headers = dict(merchant["headers"], **{"Idempotency-Key": secrets.token_hex(8)})
    first = client.post("/api/v1/orders", json={"amount": 50000}, headers=dict(headers, **{"X-Request-Id": "first"}))
    again = client.post("/api/v1/orders", json={"amount": 50000}, headers=dict(headers, **{"X-Request-Id": "again"}))
    assert first.get_json()["id"] == again.get_json()["id"]
    assert (first.headers["X-Request-Id"], again.headers["X-Request-Id"]) == ("first", "again")


# ---- through gunicorn, and the logs --------------------------------------------------------------

def json_lines(process):
    """The JSON objects of a process's output; any other line must be gunicorn's own ("[time] [pid] …")."""
    objects = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            objects.append(json.loads(line))
        else:
            assert line.startswith("["), f"not a JSON line: {line!r}"
    return objects


def lines_with(process, **fields):
    return [o for o in json_lines(process) if all(o.get(k) == v for k, v in fields.items())]


def pay(api, merchant, request_id):
    order = requests.post(f"{api.url}/api/v1/orders", json={"amount": 50000}, headers=merchant["headers"], timeout=10)
    r = requests.post(f"{api.url}/api/v1/payments", json={"order_id": order.json()["id"], "method": "card", "card": CARD},
                      headers=dict(merchant["headers"], **{"X-Request-Id": request_id}), timeout=10)
    assert r.status_code == 201 and r.headers["X-Request-Id"] == request_id
    return r.json()


def refused_checkout(api, order_id, request_id):
    """The checkout opened with another merchant's key: an HTML page, and a warning logged."""
    r = requests.get(f"{api.url}/checkout", params={"order_id": order_id, "key": "key_of_someone_else"},
                     headers={"X-Request-Id": request_id}, timeout=10)
    assert r.status_code == 403 and r.headers["X-Request-Id"] == request_id


def test_json_logs_one_object_per_line_with_the_request_id_and_the_route(start_api, merchant):
    api = start_api(LOG_FORMAT="json")
    sent = new_client_id()
    payment = pay(api, merchant, sent)
    got = requests.get(f"{api.url}/api/v1/payments/{payment['id']}", headers=merchant["headers"], timeout=10)
    generated = got.headers["X-Request-Id"]
    assert GENERATED.fullmatch(generated)
    page_id = new_client_id()
    refused_checkout(api, payment["order_id"], page_id)

    [created] = wait_until(lambda: lines_with(api.process, request_id=sent), message="the POST's line")
    assert created["logger"] == "app.request" and created["level"] == "INFO" and created["ts"]
    assert (created["method"], created["route"], created["status"]) == ("POST", "/api/v1/payments", 201)
    assert created["merchant"] == merchant["id"] and created["duration_ms"] >= 0
    assert created["msg"].startswith("POST /api/v1/payments 201 ")
    [read] = wait_until(lambda: lines_with(api.process, request_id=generated), message="the GET's line")
    # The URL rule, not the path: no payment id in the line.
    assert (read["route"], read["status"]) == ("/api/v1/payments/<payment_id>", 200)
    assert payment["id"] not in json.dumps(read)
    # Every line written while the page was handled names it, not only the access line.
    warning, access = wait_until(lambda: len(lines_with(api.process, request_id=page_id)) == 2
                                 and lines_with(api.process, request_id=page_id), message="the page's lines")
    assert (warning["level"], warning["logger"], warning["order_id"]) == ("WARNING", "app.checkout", payment["order_id"])
    assert warning["msg"] == "checkout refused: key does not own the order"
    assert (access["route"], access["status"]) == ("/checkout", 403) and "merchant" not in access


def test_the_worker_logs_the_jobs_a_request_caused_with_its_id(start_api, start_worker, make_merchant, receiver, db):
    hook = receiver()
    merchant = make_merchant(webhook_url=hook.url)
    db.execute("DELETE FROM jobs")  # the worker's batches hold this test's jobs only
    api = start_api(LOG_FORMAT="json")
    worker = start_worker(LOG_FORMAT="json")
    sent = new_client_id()
    pay(api, merchant, sent)
    hook.wait_for(1, event="payment.success")

    def jobs_logged():
        lines = lines_with(worker, request_id=sent)
        return len(lines) >= 3 and lines

    lines = wait_until(jobs_logged, message="the worker's lines about the payment's jobs")
    assert {(o["kind"], o["logger"]) for o in lines} == {("payment.settle", "worker"), ("webhook.deliver", "worker")}
    [settled] = [o for o in lines if o["kind"] == "payment.settle"]
    assert settled["msg"].startswith(f"job {settled['job_id']} payment.settle completed in ")
    # payment.created (queued by the request) and payment.success (queued by the settlement).
    delivered = [o for o in lines if o["kind"] == "webhook.deliver"]
    assert len(delivered) == 2 and all("delivered (HTTP 200)" in o["msg"] for o in delivered)
    assert len({o["job_id"] for o in lines}) == 3
    json_lines(worker)  # and every line of the worker is a JSON object


def test_text_lines_show_the_request_id_and_the_job_ids(start_api, start_worker, merchant, db):
    db.execute("DELETE FROM jobs")
    api = start_api()
    worker = start_worker()
    sent = new_client_id()
    payment = pay(api, merchant, sent)
    refused_checkout(api, payment["order_id"], sent)
    access = re.compile(rf"INFO app\.request POST /api/v1/payments 201 [0-9.]+ms merchant={merchant['id']} "
                        rf"request_id={re.escape(sent)}$", re.M)
    warning = re.compile(rf"WARNING app\.checkout checkout refused: key does not own the order "
                         rf"order_id={payment['order_id']} request_id={re.escape(sent)}$", re.M)
    wait_until(lambda: access.search(api.process.output()) and warning.search(api.process.output()),
               message="the API's text lines")
    job = re.compile(rf"INFO worker job (\d+) payment\.settle completed in [0-9.]+ms "
                     rf"job_id=(\d+) kind=payment\.settle request_id={re.escape(sent)}$", re.M)
    found = wait_until(lambda: job.search(worker.output()), message="the worker's text line")
    assert found[1] == found[2]


def test_no_server_banner_and_the_id_on_gunicorns_answers(start_api, merchant):
    api = start_api()
    answers = [requests.get(f"{api.url}/health", timeout=10),
               requests.get(f"{api.url}/no/such/page", timeout=10),
               requests.post(f"{api.url}/api/v1/orders", data=b"{" + b" " * 70_000 + b"}", timeout=10,
                             headers=dict(merchant["headers"], **{"Content-Type": "application/json"})),
               requests.get(f"{api.url}/login", headers={"X-Request-Id": "mine"}, timeout=10)]
    assert [r.status_code for r in answers] == [200, 404, 413, 200]
    assert [r.headers.get("Server") for r in answers] == [None] * 4
    assert [bool(GENERATED.fullmatch(r.headers["X-Request-Id"])) for r in answers[:3]] == [True] * 3
    assert answers[3].headers["X-Request-Id"] == "mine"
