"""The dashboard's webhook endpoint pages over the Flask test client: adding an endpoint (and the
form kept with its error when the URL is refused), editing, disabling, rotating the secret and
deleting one, each checked through the JSON API the merchant's code would use; another merchant's
endpoint and a form without its token change nothing. browser/test_dashboard.py adds one in Chromium."""
import html
from datetime import datetime, timedelta, timezone

import pytest

from helpers import LOCAL_TIME_RE, MerchantApi, csrf_token, page

from app.events import CATALOG

LIST = "/dashboard/webhooks/endpoints"
API = "/api/v1/webhooks/endpoints"
REFUSED = "url must be a public http(s) URL."


@pytest.fixture
def merchant_api(client, dashboard_merchant):
    """The signed-in merchant's JSON API: what its code sees of the changes made on the pages."""
    return MerchantApi(client, dashboard_merchant)


@pytest.fixture
def form(dashboard):
    """Post a dashboard form as the browser would, with the page's token unless told otherwise."""
    token = csrf_token(dashboard, LIST)

    def post(path, with_token=True, **data):
        return dashboard.post(path, data=dict(data, **({"csrf_token": token} if with_token else {})))

    return post


def add(dashboard, form, url, events=("*",), description=""):
    """Add an endpoint with the list page's form; the message the page then shows."""
    r = form(LIST, url=url, events=list(events), description=description)
    assert r.status_code == 302 and r.headers["Location"] == LIST, r.get_data(as_text=True)
    return flash(dashboard, LIST)


def endpoint_of(merchant_api, url):
    [found] = [e for e in merchant_api.get(API).get_json()["data"] if e["url"] == url]
    return merchant_api.get(f"{API}/{found['id']}").get_json()


def flash(dashboard, path):
    return page(dashboard.get(path)).one("flash-message").text


def checked(element):
    return [box.attrs["value"] for box in element.all("event-checkbox") if "checked" in box.attrs]


def test_added_endpoints_are_listed_with_their_events_and_the_first_one_marked(dashboard, form, merchant_api):
    add(dashboard, form, "https://shop.example/hooks/all")
    shown = add(dashboard, form, "https://shop.example/hooks/money", ["refund.processed", "payment.success"],
                "<b>accounting</b>")
    assert shown == "Endpoint added: https://shop.example/hooks/money"

    first = endpoint_of(merchant_api, "https://shop.example/hooks/all")
    money = endpoint_of(merchant_api, "https://shop.example/hooks/money")
    assert (money["events"], money["description"], money["enabled"]) == (
        ["payment.success", "refund.processed"], "<b>accounting</b>", True)
    # The first one is the Webhooks page's URL and /webhooks/config's.
    assert merchant_api.get("/api/v1/webhooks/config").get_json()["webhook_url"] == "https://shop.example/hooks/all"
    assert page(dashboard.get("/dashboard/webhooks")).one("webhook-url-input").attrs["value"] == first["url"]

    response = dashboard.get(LIST)
    assert "&lt;b&gt;accounting&lt;/b&gt;" in response.get_data(as_text=True)  # escaped, not markup
    listing = page(response)
    assert [row.attrs["data-endpoint-id"] for row in listing.all("endpoint-row")] == [first["id"], money["id"]]
    row = listing.one("endpoint-row", data_endpoint_id=money["id"])
    assert row.one("endpoint-url").text == "https://shop.example/hooks/money"
    assert row.one("endpoint-events").text == "payment.success, refund.processed"
    assert row.one("endpoint-description").text == "<b>accounting</b>"
    assert row.one("endpoint-status").text == "enabled"
    assert LOCAL_TIME_RE.match(row.one("endpoint-created-at").text)
    assert not row.all("first-endpoint-badge")
    first_row = listing.one("endpoint-row", data_endpoint_id=first["id"])
    assert first_row.one("endpoint-events").text == "All events"
    assert first_row.one("first-endpoint-badge").text == "first"
    # The add form starts empty again, on All events.
    assert listing.one("endpoint-url-input").attrs["value"] == "" and checked(listing) == ["*"]


@pytest.mark.parametrize("url,events,field,message", [
    ("http://127.0.0.1:9/hook", ["payment.success"], "endpoint-url-error", REFUSED),  # the SSRF guard
    ("ftp://shop.example/hook", ["payment.success"], "endpoint-url-error",
     "url must be an http(s) URL with a host."),
    ("", ["payment.success"], "endpoint-url-error", "Enter the URL to send events to."),
    ("https://shop.example/hook", [], "endpoint-events-error", "Choose the events to send, or All events."),
    ("https://shop.example/hook", ["payment.refunded"], "endpoint-events-error", "Unknown event 'payment.refunded'"),
])
def test_a_refused_form_comes_back_with_its_error_and_what_was_typed(dashboard, form, merchant_api, app, monkeypatch,
                                                                     url, events, field, message):
    if message == REFUSED:
        monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)  # the gateway outside test mode
    r = form(LIST, url=url, events=events, description="orders desk")
    shown = page(r, status=400)
    assert shown.one(field).text.startswith(message)
    assert shown.one("endpoint-url-input").attrs["value"] == url
    assert shown.one("endpoint-description-input").attrs["value"] == "orders desk"
    assert checked(shown) == [e for e in events if e in CATALOG]  # a name with no checkbox is not shown
    assert merchant_api.get(API).get_json()["data"] == []


def test_a_description_longer_than_the_api_allows_is_refused(dashboard, form, merchant_api):
    shown = page(form(LIST, url="https://shop.example/hook", events=["*"], description="x" * 256), status=400)
    assert shown.one("endpoint-description-error").text.startswith("description:")
    assert merchant_api.get(API).get_json()["data"] == []


def test_editing_changes_the_events_description_and_url(dashboard, form, merchant_api):
    add(dashboard, form, "https://shop.example/hooks/a")
    endpoint = endpoint_of(merchant_api, "https://shop.example/hooks/a")
    path = f"{LIST}/{endpoint['id']}"
    edit = page(dashboard.get(path)).one("edit-endpoint-form")
    assert edit.one("endpoint-url-input").attrs["value"] == "https://shop.example/hooks/a" and checked(edit) == ["*"]

    r = form(path, url="https://shop.example/hooks/a", events=["refund.created", "refund.processed"],
             description="refunds")
    assert r.status_code == 302 and r.headers["Location"] == path
    assert flash(dashboard, path) == "Endpoint saved."
    after = merchant_api.get(f"{API}/{endpoint['id']}").get_json()
    assert (after["events"], after["description"], after["secret"]) == (
        ["refund.created", "refund.processed"], "refunds", endpoint["secret"])
    assert checked(page(dashboard.get(path)).one("edit-endpoint-form")) == ["refund.created", "refund.processed"]

    # The URL of the first endpoint is /webhooks/config's too.
    form(path, url="https://shop.example/hooks/b", events=["refund.created"], description="")
    assert merchant_api.get("/api/v1/webhooks/config").get_json()["webhook_url"] == "https://shop.example/hooks/b"
    assert merchant_api.get(f"{API}/{endpoint['id']}").get_json()["description"] is None

    # A refused edit keeps what was typed and changes nothing.
    shown = page(form(path, url="ftp://shop.example/x", events=["payment.failed"], description="typed"), status=400)
    assert shown.one("endpoint-url-error").text == "url must be an http(s) URL with a host."
    assert shown.one("endpoint-url-input").attrs["value"] == "ftp://shop.example/x"
    assert checked(shown.one("edit-endpoint-form")) == ["payment.failed"]
    unchanged = merchant_api.get(f"{API}/{endpoint['id']}").get_json()
    assert (unchanged["url"], unchanged["events"]) == ("https://shop.example/hooks/b", ["refund.created"])


def test_disable_and_enable(dashboard, form, merchant_api):
    add(dashboard, form, "https://shop.example/hooks/a")
    endpoint = endpoint_of(merchant_api, "https://shop.example/hooks/a")
    path = f"{LIST}/{endpoint['id']}"
    assert page(dashboard.get(path)).all("disable-endpoint-button")

    r = form(f"{path}/enabled", enabled="false")
    assert r.status_code == 302 and r.headers["Location"] == path
    assert merchant_api.get(f"{API}/{endpoint['id']}").get_json()["enabled"] is False
    shown = page(dashboard.get(path))
    assert shown.one("flash-message").text.startswith("Endpoint disabled")
    assert shown.one("endpoint-status").text == "disabled" and shown.all("enable-endpoint-button")
    row = page(dashboard.get(LIST)).one("endpoint-row", data_endpoint_id=endpoint["id"])
    assert row.one("endpoint-status").text == "disabled"

    form(f"{path}/enabled", enabled="true")
    assert merchant_api.get(f"{API}/{endpoint['id']}").get_json()["enabled"] is True
    shown = page(dashboard.get(path))
    assert shown.one("flash-message").text == "Endpoint enabled: it gets new events again."
    assert shown.one("endpoint-status").text == "enabled"


def test_rotating_the_secret_with_an_overlap_then_at_once(dashboard, form, merchant_api):
    add(dashboard, form, "https://shop.example/hooks/a")
    add(dashboard, form, "https://shop.example/hooks/b")
    endpoint = endpoint_of(merchant_api, "https://shop.example/hooks/b")
    path = f"{LIST}/{endpoint['id']}"
    shown = page(dashboard.get(path))
    assert shown.one("endpoint-secret").text == endpoint["secret"]  # in the page, behind the Reveal button
    assert shown.one("reveal-secret-button").text.startswith("whsec_••••")
    # The overlap is chosen inside the confirmation; 24 hours unless the merchant picks another.
    overlaps = shown.one("rotate-secret").one("rotate-overlap-select")
    assert overlaps.text == "none: replace it at once 1 hour 24 hours 7 days"
    assert '<option value="86400" selected>' in dashboard.get(path).get_data(as_text=True)
    assert not shown.all("previous-secret-expiry")

    r = form(f"{path}/secret", overlap="86400")
    assert r.status_code == 302 and r.headers["Location"] == path
    rotated = merchant_api.get(f"{API}/{endpoint['id']}").get_json()
    assert rotated["secret"] != endpoint["secret"] and rotated["secret"].startswith("whsec_")
    expires = datetime.fromisoformat(rotated["previous_expires_at"].replace("Z", "+00:00"))
    assert abs(expires - datetime.now(timezone.utc) - timedelta(hours=24)) < timedelta(minutes=1)
    shown = page(dashboard.get(path))
    # The time as every other dashboard time: in the dashboard's zone (Asia/Kolkata, +5:30).
    ist = (expires + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S IST")
    assert shown.one("flash-message").text == (f"A new secret was generated. The previous one also signs every "
                                               f"delivery until {ist}.")
    assert shown.one("endpoint-secret").text == rotated["secret"]
    [expiry] = [c for c in shown.one("previous-secret-expiry").children if not isinstance(c, str)]
    assert expiry.attrs["datetime"] == rotated["previous_expires_at"]  # shown in the dashboard's zone, UTC in datetime=

    form(f"{path}/secret", overlap="0")
    at_once = merchant_api.get(f"{API}/{endpoint['id']}").get_json()
    assert at_once["secret"] not in (rotated["secret"], endpoint["secret"]) and at_once["previous_expires_at"] is None
    assert not page(dashboard.get(path)).all("previous-secret-expiry")

    # An overlap the page does not offer changes nothing.
    form(f"{path}/secret", overlap="999999999")
    assert merchant_api.get(f"{API}/{endpoint['id']}").get_json()["secret"] == at_once["secret"]
    assert flash(dashboard, path) == "Choose how long the current secret keeps signing."
    # The other endpoint's secret was never touched.
    assert endpoint_of(merchant_api, "https://shop.example/hooks/a")["previous_expires_at"] is None


def test_delete_after_its_confirmation_and_the_next_endpoint_becomes_first(dashboard, form, merchant_api):
    add(dashboard, form, "https://shop.example/hooks/a")
    add(dashboard, form, "https://shop.example/hooks/b")
    first = endpoint_of(merchant_api, "https://shop.example/hooks/a")
    second = endpoint_of(merchant_api, "https://shop.example/hooks/b")
    path = f"{LIST}/{first['id']}"
    confirm = page(dashboard.get(path)).one("delete-endpoint")  # a <details>: its button shows only once opened
    assert confirm.tag == "details" and confirm.one("confirm-delete-button").tag == "button"
    assert "next endpoint becomes the first" in confirm.text

    r = form(f"{path}/delete")
    assert r.status_code == 302 and r.headers["Location"] == LIST
    assert flash(dashboard, LIST) == "Endpoint deleted: https://shop.example/hooks/a"
    assert merchant_api.get(f"{API}/{first['id']}").status_code == 404
    assert dashboard.get(path).status_code == 404
    [row] = page(dashboard.get(LIST)).all("endpoint-row")
    assert row.attrs["data-endpoint-id"] == second["id"] and row.one("first-endpoint-badge")
    assert merchant_api.get("/api/v1/webhooks/config").get_json() == {"webhook_url": "https://shop.example/hooks/b",
                                                            "webhook_secret": second["secret"]}

    form(f"{LIST}/{second['id']}/delete")
    assert page(dashboard.get(LIST)).one("endpoints-empty")
    assert merchant_api.get("/api/v1/webhooks/config").get_json()["webhook_url"] is None


def test_another_merchants_endpoint_is_a_not_found_page(dashboard, form, client, make_merchant):
    owner = MerchantApi(client, make_merchant())
    r = owner.post(API, json={"url": "https://other.example/hook", "events": ["payment.success"]})
    theirs = r.get_json()
    path = f"{LIST}/{theirs['id']}"
    for r in (dashboard.get(path), form(path, url="https://evil.example/x", events=["*"], description="mine"),
              form(f"{path}/enabled", enabled="false"), form(f"{path}/secret", overlap="0"),
              form(f"{path}/replay", window="3600"), form(f"{path}/delete")):
        assert r.status_code == 404 and r.mimetype == "text/html"
        assert "Webhook endpoint not found" in r.get_data(as_text=True)
    assert owner.get(f"{API}/{theirs['id']}").get_json() == theirs  # nothing changed
    assert dashboard.get(f"{LIST}/we_doesnotexist00000").status_code == 404


def test_forms_without_their_token_are_refused(dashboard, form, merchant_api):
    r = form(LIST, with_token=False, url="https://shop.example/hooks/a", events=["*"])
    assert r.status_code == 400 and 'data-test-id="csrf-error"' in r.get_data(as_text=True)
    assert merchant_api.get(API).get_json()["data"] == []

    add(dashboard, form, "https://shop.example/hooks/a")
    endpoint = endpoint_of(merchant_api, "https://shop.example/hooks/a")
    path = f"{LIST}/{endpoint['id']}"
    for action, data in [("", {"url": "https://evil.example/x", "events": ["*"]}), ("/enabled", {"enabled": "false"}),
                         ("/secret", {"overlap": "0"}), ("/replay", {"window": "3600"}), ("/delete", {})]:
        r = form(path + action, with_token=False, **data)
        assert r.status_code == 400 and "could not be accepted" in html.unescape(r.get_data(as_text=True)), action
    assert merchant_api.get(f"{API}/{endpoint['id']}").get_json() == endpoint


def test_replay_queues_the_events_of_the_chosen_time_again(dashboard, form, merchant_api, db, dashboard_merchant):
    add(dashboard, form, "https://shop.example/hooks/a", events=("webhook.test",))
    endpoint = endpoint_of(merchant_api, "https://shop.example/hooks/a")
    path = f"{LIST}/{endpoint['id']}"
    for _ in range(2):
        assert merchant_api.post("/api/v1/webhooks/test").status_code == 202
    db.execute("UPDATE events SET created_at = now() - interval '2 hours' WHERE id = (SELECT id FROM events "
               "WHERE merchant_id = %(m)s ORDER BY created_at LIMIT 1)", {"m": dashboard_merchant["id"]})
    before = db.value("SELECT count(*) FROM webhook_logs WHERE endpoint_id = %(e)s", {"e": endpoint["id"]})

    r = form(f"{path}/replay", window="3600")
    assert r.status_code == 302 and r.headers["Location"] == path
    assert flash(dashboard, path) == "1 delivery queued to this endpoint."
    r = form(f"{path}/replay", window=str(6 * 3600), failed="on")
    assert flash(dashboard, path) == "0 deliveries queued to this endpoint."
    assert db.value("SELECT count(*) FROM webhook_logs WHERE endpoint_id = %(e)s", {"e": endpoint["id"]}) == before + 1
    form(f"{path}/replay", window="12345")
    assert flash(dashboard, path) == "Choose how far back to send the events again."
    # A window the page does not offer queues nothing.
    assert db.value("SELECT count(*) FROM webhook_logs WHERE endpoint_id = %(e)s", {"e": endpoint["id"]}) == before + 1
