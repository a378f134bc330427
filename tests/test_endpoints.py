"""Webhook endpoints (app/endpoints.py): several per merchant, each getting exactly the events it
subscribes to, signed with its own secret; rotation with both signatures until the old secret
expires; /webhooks/config as the first endpoint; removal; one endpoint hanging delays no other."""
import hashlib
import hmac
import threading
import time
import types
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from helpers import add_endpoint, create_payment, own_transaction, paid_payment, pump, wait_until

from app import webhooks

BASE = "/api/v1/webhooks/endpoints"


def header(delivery, name):
    return {k.lower(): v for k, v in delivery["headers"].items()}.get(name.lower())


def hex_ok(secret, delivery):
    expected = hmac.new(secret.encode(), delivery["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header(delivery, "X-Webhook-Signature"))


def standard_ok(secret, delivery):
    try:
        Webhook(secret).verify(delivery["body"], delivery["headers"])
    except WebhookVerificationError:
        return False
    return True


def events_of(receiver):
    return sorted(r["json"]["event"] for r in receiver.requests)


def test_two_endpoints_get_exactly_their_events_signed_with_their_own_secrets(client, db, worker, make_merchant,
                                                                             receiver):
    all_rx, refunds_rx = receiver(), receiver()
    m = make_merchant()
    first = add_endpoint(client, m, all_rx.url)  # the merchant's first: /webhooks/config's URL and secret
    assert client.get("/api/v1/webhooks/config", headers=m["headers"]).get_json() == {
        "webhook_url": all_rx.url, "webhook_secret": first["secret"]}
    second = add_endpoint(client, m, refunds_rx.url, ["refund.created", "refund.processed"], description="accounting")
    assert first["secret"] != second["secret"]

    _, payment = paid_payment(client, db, worker, m)
    client.post(f"/api/v1/payments/{payment['id']}/refunds", headers=m["headers"], json={"amount": 100})
    pump(worker, lambda: len(all_rx.requests) >= 4 and len(refunds_rx.requests) >= 2)
    assert events_of(all_rx) == ["payment.created", "payment.success", "refund.created", "refund.processed"]
    assert events_of(refunds_rx) == ["refund.created", "refund.processed"]
    assert all(hex_ok(first["secret"], d) and standard_ok(first["secret"], d) for d in all_rx.requests)
    assert all(hex_ok(second["secret"], d) and standard_ok(second["secret"], d) for d in refunds_rx.requests)
    assert not any(standard_ok(first["secret"], d) for d in refunds_rx.requests)
    # One event, one id, whichever endpoints it goes to.
    ids = {d["json"]["event"]: header(d, "webhook-id") for d in all_rx.requests}
    assert {header(d, "webhook-id") for d in refunds_rx.requests} == {ids["refund.created"], ids["refund.processed"]}
    logs = db.all("SELECT endpoint_id, event FROM webhook_logs WHERE merchant_id = %(m)s", {"m": m["id"]})
    assert sorted((r["endpoint_id"] == second["id"], r["event"]) for r in logs if r["event"].startswith("refund")) == [
        (False, "refund.created"), (False, "refund.processed"), (True, "refund.created"), (True, "refund.processed")]


@pytest.mark.parametrize("how", ["endpoint", "config"])
def test_a_rotation_signs_with_both_secrets_until_the_old_one_expires(client, db, worker, make_merchant, receiver,
                                                                    how):
    rx = receiver()
    m = make_merchant()
    endpoint = add_endpoint(client, m, rx.url)
    old = endpoint["secret"]
    path = f"{BASE}/{endpoint['id']}/secret" if how == "endpoint" else "/api/v1/webhooks/config/secret"
    r = client.post(path, headers=m["headers"], json={"expire_previous_in": 3600})
    assert r.status_code == 200
    new = client.get(f"{BASE}/{endpoint['id']}", headers=m["headers"]).get_json()["secret"]
    assert new != old

    client.post("/api/v1/webhooks/test", headers=m["headers"])
    worker.step()
    during = rx.wait_for(1)[0]
    assert standard_ok(new, during) and standard_ok(old, during)  # a receiver with either secret accepts it
    assert header(during, "webhook-signature").count("v1,") == 2
    assert hex_ok(new, during)
    assert header(during, "X-Webhook-Signature-Previous") == hmac.new(old.encode(), during["body"],
                                                                         hashlib.sha256).hexdigest()

    db.execute("UPDATE webhook_endpoints SET previous_expires_at = now() - interval '1 second' WHERE id = %(id)s",
               {"id": endpoint["id"]})
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    worker.step()
    after = rx.wait_for(2)[1]
    assert standard_ok(new, after) and not standard_ok(old, after) and hex_ok(new, after)
    assert header(after, "X-Webhook-Signature-Previous") is None


def test_the_config_secret_without_a_body_is_replaced_at_once(client, worker, make_merchant, receiver):
    rx = receiver()
    m = make_merchant()
    old = add_endpoint(client, m, rx.url)["secret"]
    new = client.post("/api/v1/webhooks/config/secret", headers=m["headers"]).get_json()["webhook_secret"]
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    worker.step()
    got = rx.wait_for(1)[0]
    assert standard_ok(new, got) and not standard_ok(old, got)


def test_the_config_url_is_the_first_endpoint_and_sql_on_it_takes_effect(client, db, worker, make_merchant, receiver):
    before, after = receiver(), receiver()
    m = make_merchant()
    r = client.put("/api/v1/webhooks/config", headers=m["headers"], json={"webhook_url": before.url})
    assert r.status_code == 200
    [first] = client.get(BASE, headers=m["headers"]).get_json()["data"]
    assert (first["url"], first["events"], first["enabled"]) == (before.url, ["*"], True)
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(m)s", {"u": after.url, "m": m["id"]})
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    worker.step()
    after.wait_for(1)
    assert before.requests == []


def test_a_disabled_endpoint_gets_nothing_new_and_a_removed_one_loses_its_queue(client, db, worker, make_merchant,
                                                                               receiver):
    first_rx, other_rx = receiver(), receiver()
    m = make_merchant()
    first = add_endpoint(client, m, first_rx.url)
    other = add_endpoint(client, m, other_rx.url)
    r = client.patch(f"{BASE}/{other['id']}", headers=m["headers"], json={"enabled": False})
    assert r.get_json()["enabled"] is False
    create_payment(client, m)
    assert db.value("SELECT count(*) FROM webhook_logs WHERE endpoint_id = %(e)s", {"e": other["id"]}) == 0

    client.patch(f"{BASE}/{other['id']}", headers=m["headers"], json={"enabled": True})
    create_payment(client, m)  # queued for both; the other is removed before the worker runs
    assert client.delete(f"{BASE}/{other['id']}", headers=m["headers"]).status_code == 204
    assert db.value("SELECT status FROM webhook_logs WHERE endpoint_id = %(e)s", {"e": other["id"]}) == "failed"
    pump(worker, lambda: len(first_rx.requests) >= 2)
    assert other_rx.requests == []
    assert client.get(f"{BASE}/{other['id']}", headers=m["headers"]).status_code == 404

    # Removing the first endpoint hands its place to the next one.
    third = add_endpoint(client, m, other_rx.url, ["webhook.test"])
    assert client.delete(f"{BASE}/{first['id']}", headers=m["headers"]).status_code == 204
    config = client.get("/api/v1/webhooks/config", headers=m["headers"]).get_json()
    assert config == {"webhook_url": other_rx.url, "webhook_secret": third["secret"]}
    assert [e["id"] for e in client.get(BASE, headers=m["headers"]).get_json()["data"]] == [third["id"]]
    assert client.delete(f"{BASE}/{third['id']}", headers=m["headers"]).status_code == 204
    assert client.get("/api/v1/webhooks/config", headers=m["headers"]).get_json()["webhook_url"] is None


def test_the_endpoint_list_is_newest_first_like_every_list_and_leaves_the_secrets_out(client, db, make_merchant,
                                                                                     receiver):
    m = make_merchant()
    made = [add_endpoint(client, m, receiver().url) for _ in range(3)]  # the first one is /webhooks/config's
    for i, endpoint in enumerate(made):
        db.execute("UPDATE webhook_endpoints SET created_at = now() - make_interval(secs => %(s)s) WHERE id = %(id)s",
                   {"s": 10 - i, "id": endpoint["id"]})
    body = client.get(BASE, headers=m["headers"]).get_json()
    assert [e["id"] for e in body["data"]] == [e["id"] for e in reversed(made)] and body["total"] == 3
    assert not any("secret" in e or "previous_secret" in e for e in body["data"])
    page = client.get(f"{BASE}?count=1&skip=2", headers=m["headers"]).get_json()
    assert [e["id"] for e in page["data"]] == [made[0]["id"]] and (page["total"], page["limit"]) == (3, 1)


def test_another_merchants_endpoint_is_not_found(client, make_merchant, receiver):
    owner, stranger = make_merchant(), make_merchant()
    endpoint = add_endpoint(client, owner, receiver().url)
    for method in ("get", "patch", "delete"):
        r = client.open(f"{BASE}/{endpoint['id']}", method=method.upper(), headers=stranger["headers"],
                        json={} if method == "patch" else None)
        assert r.status_code == 404, method
    assert client.post(f"{BASE}/{endpoint['id']}/secret", headers=stranger["headers"]).status_code == 404


def test_a_hanging_endpoint_does_not_delay_the_merchants_other_endpoint(client, make_merchant, receiver,
                                                                        running_worker):
    slow, fast = receiver(hang=3), receiver()
    m = make_merchant()
    add_endpoint(client, m, slow.url)
    add_endpoint(client, m, fast.url)
    for _ in range(8):
        client.post("/api/v1/webhooks/test", headers=m["headers"])
    got = fast.wait_for(8, timeout=2.5)  # every one while the slow endpoint still hangs
    assert len(got) == 8


def test_events_are_listed_once_each_whatever_the_endpoints(client, db, worker, make_merchant, receiver):
    m = make_merchant()
    add_endpoint(client, m, receiver().url, ["refund.processed"])  # the first endpoint takes none of these events
    add_endpoint(client, m, receiver().url)
    payments = [create_payment(client, m) for _ in range(3)]
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    body = client.get("/api/v1/events?count=100", headers=m["headers"]).get_json()
    assert body["total"] == 4 and [e["event"] for e in body["data"]] == ["webhook.test"] + ["payment.created"] * 3
    assert [e["data"]["payment"]["id"] for e in body["data"][1:]] == [p["id"] for p in reversed(payments)]
    only = client.get("/api/v1/events?event=payment.created&count=1", headers=m["headers"]).get_json()
    assert (only["total"], len(only["data"])) == (3, 1)
    one = client.get(f"/api/v1/events/{body['data'][0]['id']}", headers=m["headers"]).get_json()
    assert one == body["data"][0] and set(one) == {"id", "event", "created_at", "data"}
    assert client.get("/api/v1/events/evt_0000000000000000", headers=m["headers"]).status_code == 404
    r = client.get("/api/v1/events?event=payment.captured", headers=m["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "event"
    # Each delivery carries its event's id; the events to an endpoint that wants none of them: none.
    logs = db.all("SELECT event_id FROM webhook_logs WHERE merchant_id = %(m)s", {"m": m["id"]})
    assert sorted(r["event_id"] for r in logs) == sorted(e["id"] for e in body["data"])


def test_replay_sends_again_exactly_the_events_since_a_time(client, db, worker, make_merchant, receiver):
    rx = receiver()
    m = make_merchant()
    endpoint = add_endpoint(client, m, rx.url, ["payment.created", "webhook.test"])
    old = create_payment(client, m)
    db.execute("UPDATE events SET created_at = now() - interval '2 hours' WHERE merchant_id = %(m)s", {"m": m["id"]})
    client.patch(f"{BASE}/{endpoint['id']}", headers=m["headers"], json={"enabled": False})
    missed = [create_payment(client, m) for _ in range(2)]  # raised while it was disabled: not queued for it
    client.patch(f"{BASE}/{endpoint['id']}", headers=m["headers"], json={"enabled": True})
    pump(worker, lambda: len(rx.requests) >= 1)
    assert [d["json"]["data"]["payment"]["id"] for d in rx.requests] == [old["id"]]

    since = int(db.value("SELECT extract(epoch FROM now() - interval '1 hour')"))
    r = client.post(f"{BASE}/{endpoint['id']}/replay", headers=m["headers"], json={"since": since})
    assert r.status_code == 202 and r.get_json() == {"queued": 2}
    pump(worker, lambda: len(rx.requests) >= 3)
    replayed = rx.requests[1:]
    assert sorted(d["json"]["data"]["payment"]["id"] for d in replayed) == sorted(p["id"] for p in missed)
    events = {e["id"]: e for e in client.get("/api/v1/events?count=100", headers=m["headers"]).get_json()["data"]}
    assert all(header(d, "webhook-id") in events and standard_ok(endpoint["secret"], d) for d in replayed)

    # status=failed: only the deliveries to this endpoint that used up their attempts.
    db.execute("UPDATE webhook_logs SET status = 'failed' WHERE endpoint_id = %(e)s AND event_id = %(i)s",
               {"e": endpoint["id"], "i": header(replayed[0], "webhook-id")})
    r = client.post(f"{BASE}/{endpoint['id']}/replay", headers=m["headers"], json={"since": 0, "status": "failed"})
    assert r.get_json() == {"queued": 1}
    pump(worker, lambda: len(rx.requests) >= 4)
    assert header(rx.requests[3], "webhook-id") == header(replayed[0], "webhook-id")
    assert rx.requests[3]["body"] == replayed[0]["body"]


def test_an_events_timestamp_is_its_time_on_the_database_clock(client, worker, make_merchant, receiver, monkeypatch):
    """With the API host's clock 5 s ahead of the database's, the body still says the second that
    /events shows, and a replay since that timestamp includes the event."""
    real = time.time
    monkeypatch.setattr(webhooks, "time", types.SimpleNamespace(time=lambda: real() + 5))  # this module's clock only
    rx = receiver()
    m = make_merchant()
    endpoint = add_endpoint(client, m, rx.url)
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    pump(worker, lambda: rx.requests)
    sent = rx.requests[0]["json"]
    [event] = client.get("/api/v1/events", headers=m["headers"]).get_json()["data"]
    assert event["id"] == sent["id"]
    assert datetime.fromtimestamp(sent["timestamp"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") == event["created_at"]
    r = client.post(f"{BASE}/{endpoint['id']}/replay", headers=m["headers"], json={"since": sent["timestamp"]})
    assert r.get_json() == {"queued": 1}


def test_clearing_the_config_url_removes_the_first_endpoint_and_a_new_url_starts_afresh(client, db, make_merchant,
                                                                                     receiver):
    first_rx, other_rx = receiver(), receiver()
    m = make_merchant()
    client.put("/api/v1/webhooks/config", headers=m["headers"], json={"webhook_url": first_rx.url})
    [first] = client.get(BASE, headers=m["headers"]).get_json()["data"]
    client.patch(f"{BASE}/{first['id']}", headers=m["headers"], json={"enabled": False, "events": ["refund.created"]})
    other = add_endpoint(client, m, other_rx.url)

    # The other endpoint becomes first, so the merchant still has a URL and its payments still
    # raise events for it.
    cleared = client.put("/api/v1/webhooks/config", headers=m["headers"], json={"webhook_url": None}).get_json()
    assert cleared == {"webhook_url": other_rx.url, "webhook_secret": other["secret"]}
    payment = create_payment(client, m)
    assert db.value("SELECT count(*) FROM webhook_logs WHERE endpoint_id = %(e)s AND payload -> 'data' -> 'payment' "
                    "->> 'id' = %(p)s", {"e": other["id"], "p": payment["id"]}) == 1

    # Cleared again (no endpoint left), then a new URL: a first endpoint with fresh settings.
    client.put("/api/v1/webhooks/config", headers=m["headers"], json={"webhook_url": None})
    assert client.get(BASE, headers=m["headers"]).get_json()["data"] == []
    client.put("/api/v1/webhooks/config", headers=m["headers"], json={"webhook_url": first_rx.url})
    [fresh] = client.get(BASE, headers=m["headers"]).get_json()["data"]
    assert (fresh["url"], fresh["events"], fresh["enabled"]) == (first_rx.url, ["*"], True)


def test_a_refused_url_names_the_field_sent(client, make_merchant):
    m = make_merchant()
    for method, path, body in (("post", BASE, {"url": "ftp://example.com/x"}),
                               ("put", "/api/v1/webhooks/config", {"webhook_url": "ftp://example.com/x"})):
        r = client.open(path, method=method.upper(), headers=m["headers"], json=body)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == next(iter(body)), r.get_json()


def _lock_waiters(db):
    """The sessions of this database waiting on a lock in a change to a merchant's endpoints (on
    its merchant's row or an endpoint's), whatever else (a worker, autovacuum) waits meanwhile."""
    return db.value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND (query ILIKE '%FOR NO KEY UPDATE%' "
                    "OR query ILIKE '%webhook_endpoints%')")


def test_clearing_the_config_url_while_its_endpoint_is_deleted_is_no_deadlock(app, client, db, make_merchant,
                                                                             receiver):
    """DELETE of the first endpoint and PUT /webhooks/config {"webhook_url": null} at once: each
    locks the merchant and the endpoint, so in opposite orders one of them failed with a deadlock
    (a 503). The DELETE is held on the endpoint's row, the PUT then comes."""
    m = make_merchant()
    endpoint = add_endpoint(client, m, receiver().url)
    answers = {}

    def call(name, method, path, **kwargs):
        answers[name] = app.test_client().open(path, method=method, headers=m["headers"], **kwargs).status_code

    with own_transaction(app) as hold:
        hold.execute("SELECT 1 FROM webhook_endpoints WHERE id = %(e)s FOR UPDATE", {"e": endpoint["id"]})
        calls = [threading.Thread(target=call, args=("delete", "DELETE", f"{BASE}/{endpoint['id']}")),
                 threading.Thread(target=call, args=("clear", "PUT", "/api/v1/webhooks/config"),
                                  kwargs={"json": {"webhook_url": None}})]
        calls[0].start()
        wait_until(lambda: _lock_waiters(db) == 1, message="the DELETE waiting on the endpoint's row")
        calls[1].start()
        wait_until(lambda: _lock_waiters(db) == 2, message="the PUT waiting too")
        hold.commit()
    for t in calls:
        t.join(10)
    assert answers == {"delete": 204, "clear": 200}
    assert client.get("/api/v1/webhooks/config", headers=m["headers"]).get_json()["webhook_url"] is None
    assert client.get(BASE, headers=m["headers"]).get_json()["data"] == []


def test_deleting_an_endpoint_while_the_worker_records_its_deliveries_neither_waits_nor_deadlocks(
        app, client, db, make_merchant, receiver):
    """The worker records a batch of attempts by updating their logs, in no set order, then their
    endpoints' failing_since. A DELETE of the endpoint that waited for one of those logs could
    deadlock with it (the DELETE's 503, or the worker's batch undone): it skips the logs being
    recorded, and cancels the others."""
    m = make_merchant()
    endpoint = add_endpoint(client, m, receiver().url)
    for _ in range(2):
        client.post("/api/v1/webhooks/test", headers=m["headers"])  # two pending deliveries to it
    recorded, cancelled = db.values("SELECT id FROM webhook_logs WHERE endpoint_id = %(e)s ORDER BY id",
                                    {"e": endpoint["id"]})
    answers = {}

    def delete():
        answers["delete"] = app.test_client().delete(f"{BASE}/{endpoint['id']}", headers=m["headers"]).status_code

    with own_transaction(app) as recorder:
        # The recorder's first step, on one of the two logs: updated, held until it commits.
        recorder.execute("UPDATE webhook_logs SET attempts = attempts + 1 WHERE id = %(l)s", {"l": recorded})
        call = threading.Thread(target=delete)
        call.start()
        call.join(10)
        assert answers == {"delete": 204}  # while the recorder still holds its log
        # Its second step, the endpoint's row as _RECORD_OUTCOMES locks it: gone, nothing to wait for.
        recorder.execute("SET LOCAL lock_timeout = '5s'")
        assert recorder.execute("SELECT 1 FROM webhook_endpoints WHERE id = %(e)s FOR UPDATE",
                                {"e": endpoint["id"]}).fetchall() == []
        recorder.commit()
    status = {str(r["id"]): r["status"] for r in db.all("SELECT id, status FROM webhook_logs WHERE id = ANY(%(l)s)",
                                                         {"l": [recorded, cancelled]})}
    assert status == {str(cancelled): "failed", str(recorded): "pending"}  # the recorder decides that one
    assert client.get(f"{BASE}/{endpoint['id']}", headers=m["headers"]).status_code == 404


def test_the_config_secret_rotated_while_the_first_endpoint_is_deleted_is_no_404(app, client, db, make_merchant,
                                                                                   receiver):
    """POST /webhooks/config/secret found the first endpoint, then waited for the merchant's lock
    while a DELETE removed it, and answered 404 for an endpoint the merchant never named."""
    m = make_merchant()
    first = client.put("/api/v1/webhooks/config", json={"webhook_url": receiver().url}, headers=m["headers"])
    assert first.status_code == 200
    [endpoint_id] = db.values("SELECT id FROM webhook_endpoints WHERE merchant_id = %(m)s", {"m": m["id"]})
    answers = {}

    def rotate():
        r = app.test_client().post("/api/v1/webhooks/config/secret", headers=m["headers"])
        answers["rotate"] = (r.status_code, r.get_json())

    with own_transaction(app) as deleting:  # a DELETE of the first, and only, endpoint
        deleting.execute("SELECT 1 FROM merchants WHERE id = %(m)s FOR NO KEY UPDATE", {"m": m["id"]})
        call = threading.Thread(target=rotate)
        call.start()
        wait_until(lambda: _lock_waiters(db) == 1, message="the rotation waiting on the merchant")
        deleting.execute("DELETE FROM webhook_endpoints WHERE id = %(e)s", {"e": endpoint_id})
        deleting.execute("UPDATE merchants SET webhook_url = NULL WHERE id = %(m)s", {"m": m["id"]})
        deleting.commit()
    call.join(10)
    status, body = answers["rotate"]
    assert status == 200 and body["webhook_url"] is None, body  # the new secret waits for a URL


@pytest.mark.parametrize("event_id", ["evt_%00", "%00", "evt_000000000000000%00", "evt_%C3%A9", "x" * 300])
def test_an_event_id_that_cannot_exist_is_a_404_never_a_500(client, merchant, event_id):
    r = client.get(f"/api/v1/events/{event_id}", headers=merchant["headers"])
    assert r.status_code == 404
    assert r.get_json()["error"] == {"code": "NOT_FOUND_ERROR", "description": "Event not found."}


@pytest.mark.parametrize("enabled", [1, 0, "true", "false", None])
def test_enabled_takes_true_or_false_only(client, make_merchant, receiver, enabled):
    m = make_merchant()
    endpoint = add_endpoint(client, m, receiver().url)
    client.patch(f"{BASE}/{endpoint['id']}", headers=m["headers"], json={"enabled": False})
    r = client.patch(f"{BASE}/{endpoint['id']}", headers=m["headers"], json={"enabled": enabled})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "enabled", r.get_json()
    assert client.get(f"{BASE}/{endpoint['id']}", headers=m["headers"]).get_json()["enabled"] is False
