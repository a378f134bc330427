"""Every list (orders, payments, an order's payments, refunds, a payment's refunds, webhook logs,
webhook endpoints, events):
count/limit, skip/offset, Razorpay's from/to (unix seconds, inclusive at whole seconds), the
filters it documents and nothing else (any other parameter is a 400 naming it), an exact total."""
from datetime import datetime, timezone

import pytest

from helpers import create_payment, paid_payment

from app import db as app_db

T = 1_700_000_000  # 2023-11-14T22:13:20Z: far from now, so a window around it holds one object


@pytest.fixture
def world(client, db, worker, make_merchant, receiver):
    """A merchant with two orders, a successful payment of the first, three refunds of it, a
    pending payment of the second, and the webhook logs all that raised."""
    m = make_merchant(webhook_url=receiver().url)
    order, paid = paid_payment(client, db, worker, m, 50000)
    refunds = [client.post(f"/api/v1/payments/{paid['id']}/refunds", json={"amount": 100 + i},
                           headers=m["headers"]).get_json() for i in range(3)]
    pending = create_payment(client, m, 700)
    log = db.value("SELECT id FROM webhook_logs WHERE merchant_id = %(m)s ORDER BY created_at LIMIT 1", {"m": m["id"]})
    endpoint = client.post("/api/v1/webhooks/endpoints", json={"url": receiver().url}, headers=m["headers"]).get_json()
    event = db.value("SELECT id FROM events WHERE merchant_id = %(m)s ORDER BY created_at LIMIT 1", {"m": m["id"]})
    return {"merchant": m, "order": order, "paid": paid, "pending": pending, "refunds": refunds, "log": str(log),
            "endpoint": endpoint["id"], "event": event}


# (list path, table, the object whose created_at the window test moves) for each list
LISTS = {
    "orders": ("/api/v1/orders", "orders", lambda w: w["order"]["id"]),
    "payments": ("/api/v1/payments", "payments", lambda w: w["paid"]["id"]),
    "order_payments": (lambda w: f"/api/v1/orders/{w['order']['id']}/payments", "payments", lambda w: w["paid"]["id"]),
    "refunds": ("/api/v1/refunds", "refunds", lambda w: w["refunds"][1]["id"]),
    "payment_refunds": (lambda w: f"/api/v1/payments/{w['paid']['id']}/refunds", "refunds",
                        lambda w: w["refunds"][1]["id"]),
    "webhooks": ("/api/v1/webhooks", "webhook_logs", lambda w: w["log"]),
    "endpoints": ("/api/v1/webhooks/endpoints", "webhook_endpoints", lambda w: w["endpoint"]),
    "events": ("/api/v1/events", "events", lambda w: w["event"]),
}


def _path(name, w):
    path = LISTS[name][0]
    return path(w) if callable(path) else path


def _get(client, w, url):
    r = client.get(url, headers=w["merchant"]["headers"])
    assert r.status_code == 200, (url, r.get_json())
    return r.get_json()


@pytest.mark.parametrize("name", list(LISTS))
def test_from_and_to_are_inclusive_at_whole_seconds(client, db, world, name):
    _, table, pick = LISTS[name]
    path, target = _path(name, world), pick(world)
    everything = _get(client, world, path + "?count=100")
    # The object was made at T + 0.7 s: the API shows it at second T.
    db.execute(f"UPDATE {table} SET created_at = to_timestamp(%(t)s) WHERE id::text = %(id)s", {"t": T + 0.7, "id": target})
    shown = [x for x in _get(client, world, path + "?count=100")["data"] if x["id"] == target][0]
    assert shown["created_at"] == datetime.fromtimestamp(T, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def ids(query):
        body = _get(client, world, path + query)
        assert body["total"] == len(body["data"]), body  # exact, and every match fits in the page
        return [x["id"] for x in body["data"]]

    assert ids(f"?from={T}&to={T}") == [target]
    assert ids(f"?to={T}") == [target]
    assert ids(f"?from={T - 5}&to={T + 5}") == [target]
    assert ids(f"?from={T + 1}&to={T + 1}") == []
    assert ids(f"?to={T - 1}") == []
    assert sorted(ids(f"?from={T}&count=100")) == sorted(x["id"] for x in everything["data"])
    assert target not in ids(f"?from={T + 1}&count=100")
    assert ids(f"?from={T}&to={T - 1}") == []  # an empty window, not an error


@pytest.mark.parametrize("name", list(LISTS))
def test_a_parameter_the_list_does_not_document_is_a_400_naming_it(client, world, name):
    for param in ("order_id", "status_code", "expand[]", "Limit"):
        r = client.get(_path(name, world) + f"?count=5&{param}=1", headers=world["merchant"]["headers"])
        assert r.status_code == 400, (param, r.get_json())
        error = r.get_json()["error"]
        assert error["code"] == "BAD_REQUEST_ERROR" and error["field"] == param and param in error["description"]


def test_order_id_on_payments_is_refused_not_ignored(client, world):
    """It used to be ignored: the merchant got every payment and took it for the order's."""
    r = client.get(f"/api/v1/payments?order_id={world['order']['id']}", headers=world["merchant"]["headers"])
    assert r.status_code == 400 and r.get_json()["error"]["description"] == "order_id: Unknown query parameter."
    body = _get(client, world, f"/api/v1/orders/{world['order']['id']}/payments")
    assert [p["id"] for p in body["data"]] == [world["paid"]["id"]] and body["total"] == 1


@pytest.mark.parametrize("name", list(LISTS))
def test_bad_window_is_400(client, world, name):
    for query in ("?from=-1", "?to=abc", "?from=1.5", "?to=", "?from=99999999999999", "?to=1e20", "?from=%00"):
        r = client.get(_path(name, world) + query, headers=world["merchant"]["headers"])
        assert r.status_code == 400, (query, r.get_json())
        assert r.get_json()["error"]["field"] == query[1:].split("=")[0]


@pytest.mark.parametrize("name", list(LISTS))
def test_paging_on_every_list(client, world, name):
    path = _path(name, world)
    everything = _get(client, world, path + "?count=100")
    assert everything["total"] >= 1 and everything["total"] == len(everything["data"])
    body = _get(client, world, path + "?count=1&skip=0")
    assert (body["limit"], body["offset"], body["total"]) == (1, 0, everything["total"])
    assert body["data"] == everything["data"][:1]
    body = _get(client, world, path + f"?limit=1000&offset={everything['total']}")
    assert (body["limit"], body["data"], body["total"]) == (100, [], everything["total"])


def test_status_filter_keeps_working_with_the_window(client, db, world):
    paid, pending = world["paid"]["id"], world["pending"]["id"]
    db.execute("UPDATE payments SET created_at = to_timestamp(%(t)s) WHERE id = ANY(%(ids)s)", {"t": T + 0.2, "ids": [paid, pending]})
    body = _get(client, world, f"/api/v1/payments?status=success&from={T}&to={T}")
    assert ([p["id"] for p in body["data"]], body["total"]) == ([paid], 1)
    body = _get(client, world, f"/api/v1/payments?status=pending&to={T}&count=1")
    assert ([p["id"] for p in body["data"]], body["total"]) == ([pending], 1)
    assert _get(client, world, f"/api/v1/payments?status=failed&from={T}")["total"] == 0


def test_refunds_list_shows_only_the_merchants_refunds(client, world, make_merchant):
    body = _get(client, world, "/api/v1/refunds")
    assert [x["id"] for x in body["data"]] == [x["id"] for x in reversed(world["refunds"])]
    assert body["data"][0] == world["refunds"][-1] and body["data"][0]["currency"] == "INR"
    other = make_merchant()
    assert client.get("/api/v1/refunds", headers=other["headers"]).get_json() == {
        "data": [], "total": 0, "limit": 10, "offset": 0}


class Explain:
    """A connection that runs every statement twice: EXPLAIN first (plans kept), then for real."""

    def __init__(self, c):
        self.c, self.plans = c, []

    def execute(self, sql, params=None):
        self.plans.append(app_db.value(self.c, "EXPLAIN (FORMAT JSON) " + sql, params)[0]["Plan"])
        return self.c.execute(sql, params)


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


@pytest.mark.parametrize("name", ["orders", "payments", "refunds", "webhooks"])
def test_from_and_to_are_served_by_a_merchant_and_created_at_index(app, world, name):
    """With sequential scans priced out, the merchant-wide lists' queries (count and page) bound
    created_at inside an index scan: no table-wide scan, whatever the table's size."""
    from app import orders, payments, refunds, webhooks

    run = {"orders": orders.list_, "payments": payments.list_, "refunds": refunds.list_,
           "webhooks": webhooks.list_logs}[name]
    with app_db.connect(app.extensions["db_pool"]) as c, app_db.transaction(c):
        c.execute("SET LOCAL enable_seqscan = off")
        explain = Explain(c)
        run(explain, world["merchant"]["id"], 10, 0, window=(T, T + 60))
    on_table = [p for p in explain.plans if any(n.get("Relation Name", "").startswith(LISTS[name][1]) for n in _nodes(p))]
    assert len(on_table) == 2  # the total and the page
    for plan in explain.plans:
        nodes = list(_nodes(plan))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], plan
    for plan in on_table:
        # webhook_logs is read through its partitions (webhook_logs_p…, webhook_logs_default)
        conds = [n.get("Index Cond", "") for n in _nodes(plan) if n.get("Relation Name", "").startswith(LISTS[name][1])]
        assert any("merchant_id =" in x and "created_at >=" in x and "created_at <" in x for x in conds), [(n.get("Relation Name"), n.get("Index Name"), n.get("Index Cond"), n.get("Filter")) for n in _nodes(plan)]


@pytest.mark.parametrize("name", list(LISTS))
def test_windows_at_the_edge_of_time_are_empty_lists(client, world, name):
    """The last hour of year 9999 has no next hour to count the rollups from: still an empty list."""
    for query in ("?from=253402300797&to=0", "?from=253402300797", "?from=253402300000&to=253402300798"):
        body = _get(client, world, _path(name, world) + query)
        assert (body["data"], body["total"]) == ([], 0), query
