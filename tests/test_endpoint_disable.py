"""Auto-disable of failing webhook endpoints: an endpoint to which every delivery has failed for
WEBHOOK_DISABLE_AFTER is disabled by the worker, the merchant's other endpoints are told with a
webhook_endpoint.disabled event, a success resets the clock, and re-enabling starts it afresh.
Failures are made real (a receiver answering 503); only their age is moved back with SQL."""
import pytest

from helpers import TIME_RE, add_endpoint, pump, wait_until

from app import config
from app.events import WEBHOOK_ENDPOINT_DISABLED, WEBHOOK_TEST

BASE = "/api/v1/webhooks/endpoints"


def endpoint(client, m, endpoint_id):
    r = client.get(f"{BASE}/{endpoint_id}", headers=m["headers"])
    assert r.status_code == 200
    return r.get_json()


def send_test_event(client, m):
    assert client.post("/api/v1/webhooks/test", headers=m["headers"]).status_code == 202


def count(rx, event):
    """Deliveries of this event the receiver got."""
    return sum(r["json"]["event"] == event for r in rx.requests)


def wait_failing(client, m, endpoint_id):
    """The endpoint's failing_since once the worker has recorded a failed attempt to it."""
    return wait_until(lambda: endpoint(client, m, endpoint_id)["failing_since"], message="failing_since set")


def age(db, endpoint_id, seconds):
    """Make the endpoint's failures `seconds` older, as if it had been failing that much longer."""
    db.execute("UPDATE webhook_endpoints SET failing_since = failing_since - make_interval(secs => %(s)s) "
               "WHERE id = %(e)s", {"s": seconds, "e": endpoint_id})


def test_a_failing_endpoint_is_disabled_the_other_is_told_and_re_enabling_starts_afresh(app, client, db, worker,
                                                                                     make_merchant, receiver):
    good_rx, bad_rx = receiver(), receiver(responses=[503] * 20)
    m = make_merchant()
    good = add_endpoint(client, m, good_rx.url)
    bad = add_endpoint(client, m, bad_rx.url)
    send_test_event(client, m)
    pump(worker, lambda: good_rx.requests and bad_rx.requests)
    first_event = bad_rx.requests[0]["json"]["id"]
    since = wait_failing(client, m, bad["id"])
    assert TIME_RE.match(since)
    wait_until(lambda: db.value("SELECT status FROM webhook_logs WHERE event_id = %(e)s AND endpoint_id = %(we)s",
                                {"e": first_event, "we": good["id"]}) == "success", message="good one recorded")
    assert endpoint(client, m, good["id"])["failing_since"] is None

    # Failing for a moment only: kept.
    worker.disable_failing_endpoints()
    assert endpoint(client, m, bad["id"])["enabled"] is True

    age(db, bad["id"], app.config["WEBHOOK_DISABLE_AFTER"])
    worker.disable_failing_endpoints()
    disabled = endpoint(client, m, bad["id"])
    assert disabled["enabled"] is False and disabled["disabled_reason"] == "no delivery to it succeeded for 5 days"
    assert disabled["failing_since"] < since  # the time moved back, kept for the merchant to see

    pump(worker, lambda: count(good_rx, WEBHOOK_ENDPOINT_DISABLED))
    [told] = good_rx.wait_for(1, event=WEBHOOK_ENDPOINT_DISABLED)
    assert told["json"]["data"] == {"endpoint_id": bad["id"], "url": bad_rx.url,
                                    "failing_since": disabled["failing_since"],
                                    "reason": "no delivery to it succeeded for 5 days"}
    # Running again (or on another worker) disables nothing twice and tells nobody twice.
    worker.disable_failing_endpoints()
    assert db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND event = %(e)s",
                    {"m": m["id"], "e": WEBHOOK_ENDPOINT_DISABLED}) == 1

    # Disabled: new events are not queued for it, and its retries still due are not sent.
    send_test_event(client, m)
    pump(worker, lambda: count(good_rx, WEBHOOK_TEST) == 2)
    assert db.value("SELECT count(*) FROM webhook_logs WHERE endpoint_id = %(e)s", {"e": bad["id"]}) == 1
    assert {r["json"]["id"] for r in bad_rx.requests} == {first_event}

    # Re-enabled: the clock starts afresh, and events reach it again.
    r = client.patch(f"{BASE}/{bad['id']}", headers=m["headers"], json={"enabled": True})
    assert r.status_code == 200
    again = r.get_json()
    assert (again["enabled"], again["failing_since"], again["disabled_reason"]) == (True, None, None)
    worker.disable_failing_endpoints()
    assert endpoint(client, m, bad["id"])["enabled"] is True
    bad_rx.responses[:] = []
    send_test_event(client, m)
    pump(worker, lambda: any(r["json"]["id"] != first_event for r in bad_rx.requests))
    [new] = [r for r in bad_rx.requests if r["json"]["id"] != first_event]
    assert (new["json"]["event"], new["status"]) == (WEBHOOK_TEST, 200)


def test_a_success_in_between_resets_the_clock(app, client, db, worker, make_merchant, receiver):
    rx = receiver(responses=[503])  # the first attempt fails, the retry a second later succeeds
    m = make_merchant()
    one = add_endpoint(client, m, rx.url)
    send_test_event(client, m)
    pump(worker, lambda: rx.requests)
    wait_failing(client, m, one["id"])
    age(db, one["id"], app.config["WEBHOOK_DISABLE_AFTER"])  # long enough, were it not for the success below

    pump(worker, lambda: len(rx.requests) == 2)
    wait_until(lambda: endpoint(client, m, one["id"])["failing_since"] is None, message="failing_since cleared")
    worker.disable_failing_endpoints()
    assert endpoint(client, m, one["id"])["enabled"] is True

    # The next failure starts a new clock, from now.
    rx.responses[:] = [503] * 10
    send_test_event(client, m)
    pump(worker, lambda: len(rx.requests) == 3)
    since = wait_failing(client, m, one["id"])
    assert db.value("SELECT failing_since > now() - interval '1 minute' FROM webhook_endpoints WHERE id = %(e)s",
                    {"e": one["id"]})
    worker.disable_failing_endpoints()
    now = endpoint(client, m, one["id"])
    assert (now["enabled"], now["failing_since"]) == (True, since)


def test_a_merchants_only_endpoint_is_disabled_with_no_event_sent_anywhere(app, client, db, worker, make_merchant,
                                                                           receiver, monkeypatch):
    rx = receiver(responses=[503] * 20)
    m = make_merchant(webhook_url=rx.url)  # its first and only endpoint, the /webhooks/config one
    [only] = client.get(BASE, headers=m["headers"]).get_json()["data"]
    send_test_event(client, m)
    # As a log queued before endpoints existed, which belongs to the merchant's first endpoint.
    db.execute("UPDATE webhook_logs SET endpoint_id = NULL WHERE merchant_id = %(m)s", {"m": m["id"]})
    pump(worker, lambda: rx.requests)
    wait_failing(client, m, only["id"])
    age(db, only["id"], 30 * 86400)

    with monkeypatch.context() as never:
        never.setitem(app.config, "WEBHOOK_DISABLE_AFTER", 0)
        worker.disable_failing_endpoints()
        assert endpoint(client, m, only["id"])["enabled"] is True

    worker.disable_failing_endpoints()
    assert endpoint(client, m, only["id"])["enabled"] is False
    assert client.get("/api/v1/webhooks/config", headers=m["headers"]).get_json()["webhook_url"] == rx.url
    assert db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND event = %(e)s",
                    {"m": m["id"], "e": WEBHOOK_ENDPOINT_DISABLED}) == 0
    send_test_event(client, m)  # accepted, but there is no enabled endpoint to queue it for
    assert db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s", {"m": m["id"]}) == 1
    assert all(r["json"]["event"] == WEBHOOK_TEST for r in rx.requests)


@pytest.mark.parametrize("raw, seconds", [
    (None, 5 * 86400), ("", 5 * 86400), ("3600", 3600), ("30m", 1800), ("12h", 43200), ("5d", 432000),
    (" 2D ", 172800), ("45s", 45), ("0", 0),
])
def test_the_setting_takes_seconds_or_a_duration(raw, seconds):
    env = {} if raw is None else {"WEBHOOK_DISABLE_AFTER": raw}
    assert config.load(env)["WEBHOOK_DISABLE_AFTER"] == seconds


@pytest.mark.parametrize("seconds, text", [(432000, "5 days"), (86400, "1 day"), (43200, "12 hours"),
                                           (1800, "30 minutes"), (90, "90 seconds"), (1, "1 second")])
def test_the_reason_says_the_setting_in_words(seconds, text):
    assert config.duration_text(seconds) == text


@pytest.mark.parametrize("raw", ["5 days", "-1", "1.5h", "5w", "h", "5dd", "1h30m"])
def test_a_malformed_setting_stops_the_start(raw):
    with pytest.raises(ValueError, match="WEBHOOK_DISABLE_AFTER"):
        config.load({"WEBHOOK_DISABLE_AFTER": raw})
