"""One list of webhook events, app/events.py's CATALOG: what the gateway delivers, the `webhooks` of
/openapi.json, the table of docs/webhooks.md and the dashboard's list are that list, so an event
added in one place only fails here. Also the other lists the dashboard shows: job statuses and the
status badges (the job statuses' agreement with the database is in test_foundation.py)."""
import ast
import html
import importlib
import re
import uuid
from pathlib import Path

import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker

import worker as worker_module
from app import events, jobs, schemas, webhooks
from app.events import CATALOG
from app.openapi import spec_dict

from helpers import create_payment

ROOT = Path(__file__).resolve().parent.parent
# What an event name looks like: a resource of the API, a dot, what happened to it (file names such
# as the dashboard's webhook.py snippet are not events).
EVENT_SHAPE = re.compile(r"^(order|payment|refund|webhook|webhook_endpoint)\.(?!(py|js|sh|txt|html)$)[a-z_]+$")


@pytest.fixture(scope="module")
def doc():
    return spec_dict()


# ---- the code ------------------------------------------------------------------------------------

def _literals(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_event_name_is_spelled_outside_the_catalog():
    """An emitter names its event by the catalog's constant: a new event spelled where it is
    emitted (and nowhere else) fails here, before any merchant receives an undocumented event."""
    job_kinds = set(worker_module.HANDLERS) | {webhooks.DELIVER}  # shaped like events, but queue jobs
    sources = [p for p in sorted((ROOT / "app").rglob("*.py")) if p.name != "events.py"] + [ROOT / "worker.py"]
    spelled = [f"{p.relative_to(ROOT)}:{line}: {value!r}" for p in sources for line, value in _literals(p)
               if EVENT_SHAPE.match(value) and value not in job_kinds]
    assert not spelled, "name these in app/events.py and import the constant:\n" + "\n".join(spelled)
    catalog_source = {value for _, value in _literals(ROOT / "app" / "events.py")}
    assert set(CATALOG) <= catalog_source  # the names are greppable literals there
    named = {value for key, value in vars(events).items() if key.isupper() and isinstance(value, str)}
    assert named == set(CATALOG), "every event constant of app/events.py has its CATALOG entry"


def test_an_event_outside_the_catalog_is_refused_before_anything_is_written():
    with pytest.raises(ValueError, match="payment.captured.*CATALOG"):
        webhooks.emit_events(None, [(uuid.uuid4(), "payment.captured", {})])  # raises before using the connection


def test_each_event_names_a_real_emitter():
    for event in CATALOG.values():
        module, function = event.emitted_by.split(".")
        assert callable(getattr(importlib.import_module(f"app.{module}"), function)), event


def _validate(doc, schema, instance):
    schema = dict(schema, components=doc["components"])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in OAS31Validator(schema, format_checker=oas31_format_checker).iter_errors(instance)]


def test_every_event_is_delivered_as_openapi_describes_it(app, client, db, make_merchant, receiver, running_worker,
                                                         doc, monkeypatch):
    """Drive each catalog event for real: a failed and a successful payment, a refund, the test
    event, another endpoint of the merchant disabled. The events delivered are exactly the
    catalog's, and each delivery (body and headers) conforms to its entry in /openapi.json's webhooks."""
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    with monkeypatch.context() as declining:
        declining.setitem(app.config, "TEST_PAYMENT_SUCCESS", False)
        create_payment(client, m, method="card")
        rx.wait_for(1, event=events.PAYMENT_FAILED)
    paid = create_payment(client, m, method="upi")
    rx.wait_for(1, event=events.PAYMENT_SUCCESS)
    r = client.post(f"/api/v1/payments/{paid['id']}/refunds", json={"amount": 1000}, headers=m["headers"])
    assert r.status_code == 201
    rx.wait_for(1, event=events.REFUND_PROCESSED)
    assert client.post("/api/v1/webhooks/test", headers=m["headers"]).status_code == 202
    rx.wait_for(1, event=events.WEBHOOK_TEST)
    other = client.post("/api/v1/webhooks/endpoints", headers=m["headers"],
                        json={"url": "http://127.0.0.1:9/down", "events": [events.PAYMENT_CREATED]}).get_json()
    db.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '30 days' WHERE id = %(e)s",
               {"e": other["id"]})
    running_worker.disable_failing_endpoints()
    rx.wait_for(1, event=events.WEBHOOK_ENDPOINT_DISABLED)

    for name in CATALOG:
        rx.wait_for(1, event=name)
    delivered = list(rx.requests)
    assert sorted({d["json"]["event"] for d in delivered}) == sorted(CATALOG)
    for d in delivered:
        hook = doc["webhooks"][d["json"]["event"]]["post"]
        body = hook["requestBody"]["content"]["application/json"]["schema"]
        assert not _validate(doc, body, d["json"]), (d["json"]["event"], _validate(doc, body, d["json"]))
        sent = {k.lower(): v for k, v in d["headers"].items()}
        for header in hook["parameters"]:
            assert header["name"].lower() in sent or not header["required"], (d["json"]["event"], header["name"])
        assert sent["webhook-id"] == d["json"]["id"]


# ---- /openapi.json ----------------------------------------------------------------------------------

def test_openapi_webhooks_are_the_catalog(doc):
    assert list(doc["webhooks"]) == list(CATALOG)
    schemas_ = doc["components"]["schemas"]
    for name, event in CATALOG.items():
        hook = doc["webhooks"][name]["post"]
        envelope = schemas_[hook["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert envelope["properties"]["event"]["enum"] == [name]
        assert set(envelope["required"]) == {"id", "event", "timestamp", "data"}
        data = schemas_[envelope["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
        assert tuple(data["properties"]) == event.data_keys == tuple(data["required"])
        assert {p["name"] for p in hook["parameters"]} == {"X-Webhook-Signature", "webhook-id", "webhook-timestamp",
                                                           "webhook-signature"}
    assert len({h["post"]["operationId"] for h in doc["webhooks"].values()}) == len(CATALOG)


# ---- docs/webhooks.md -------------------------------------------------------------------------------

def test_the_docs_table_is_the_catalog():
    """docs/webhooks.md's table is `python -m app.events`'s output, row for row."""
    text_ = (ROOT / "docs" / "webhooks.md").read_text()
    rows = [line for line in text_.splitlines() if re.match(r"^\| `[a-z_]+\.[a-z_]+` \|", line)]
    expected = events.markdown_table().splitlines()[2:]
    assert rows == expected, "paste `python -m app.events` into docs/webhooks.md:\n" + events.markdown_table()


# ---- the dashboard ----------------------------------------------------------------------------------

def test_the_webhooks_page_lists_the_catalog(dashboard):
    page = dashboard.get("/dashboard/webhooks").get_data(as_text=True)
    assert re.findall(r'data-test-id="webhook-event-type" data-event="([^"]+)"', page) == list(CATALOG)
    assert f"Queues a <code>{events.WEBHOOK_TEST}</code> event" in page
    refund = page[page.index(f'data-event="{events.REFUND_CREATED}"'):]
    assert "a refund was accepted (status <code>pending</code>)" in refund.split("</tr>")[0]


def test_the_jobs_page_shows_every_job_status(dashboard):
    page = html.unescape(dashboard.get("/dashboard/jobs").get_data(as_text=True))
    table = page[page.index('data-test-id="job-counts-table"'):]
    header = re.findall(r'<th class="num">([^<]+)</th>', table.split("</thead>")[0])
    assert header == [s.capitalize() for s in jobs.STATUSES]
    cards = re.findall(r'class="stat-value" data-test-id="jobs-([a-z]+)"', page)
    assert cards == [s for s in jobs.STATUSES if s != "completed"]


@pytest.mark.parametrize("status", sorted(set(schemas.PAYMENT_STATUSES + schemas.REFUND_STATUSES
                                              + schemas.WEBHOOK_STATUSES)))
def test_every_status_has_a_badge_colour(status):
    """The dashboard shows each status as `badge badge-<status>`: one without a rule is grey."""
    css = (ROOT / "static" / "dashboard.css").read_text()
    assert re.search(rf"\.badge-{status}\b[^{{]*{{", css), status
