"""What an attacker's tools send the API and the checkout: ids that are not ids on every route that
takes one, and values built to slip past validation. Each answer is a clear 4xx that changes
nothing, never a 5xx."""
import re
import threading

import pytest

from helpers import add_endpoint, count, csrf_token, own_transaction, wait_until

from app import endpoints


def _api_routes(app):
    """(method, path template) of every API and checkout route that takes an id in its path."""
    for rule in app.url_map.iter_rules():
        if rule.arguments and (rule.rule.startswith("/api/") or rule.rule.startswith("/checkout")):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule.rule


@pytest.mark.parametrize("value", ["%00", "evt_%00aaaaaaaaaaaaaaa", "pay_%00", "x" * 3000, "%F0%9F%99%82"])
def test_an_id_that_is_not_one_is_a_4xx_on_every_route(app, client, merchant, value):
    routes, failures = list(_api_routes(app)), []
    assert ("GET", "/api/v1/events/<event_id>") in routes and ("GET", "/checkout/orders/<order_id>/payments/<payment_id>") in routes
    for method, template in routes:
        path = re.sub(r"<[^>]+>", value, template)
        r = client.open(path, method=method, json={}, headers=merchant["headers"])
        if r.status_code >= 500 or r.status_code < 400:
            failures.append((method, template, r.status_code))
    assert not failures


def test_a_merchant_cannot_add_endpoints_without_end(client, db, dashboard, dashboard_merchant):
    """Each event goes to every endpoint: without a limit one merchant could make every payment
    fan out into thousands of deliveries (to any host it names)."""
    base, merchant = "/api/v1/webhooks/endpoints", dashboard_merchant
    for n in range(endpoints.MAX_ENDPOINTS):
        add_endpoint(client, merchant, f"https://shop.example/hooks/{n}")
    r = client.post(base, json={"url": "https://shop.example/hooks/more"}, headers=merchant["headers"])
    assert r.status_code == 400
    assert r.get_json()["error"] == {"code": "BAD_REQUEST_ERROR", "field": "url", "description":
                                     f"A merchant may have at most {endpoints.MAX_ENDPOINTS} webhook endpoints; "
                                     "delete one to add another."}
    page = dashboard.post(base.replace("/api/v1", "/dashboard"), data={
        "url": "https://shop.example/hooks/form", "events": "*", "csrf_token": csrf_token(dashboard, "/dashboard/webhooks/endpoints")})
    assert page.status_code == 400 and f"at most {endpoints.MAX_ENDPOINTS} webhook endpoints" in page.get_data(as_text=True)
    assert count(db, "webhook_endpoints", merchant["id"]) == endpoints.MAX_ENDPOINTS
    # one removed, one may be added again
    first = client.get(f"{base}?count=100", headers=merchant["headers"]).get_json()["data"][-1]["id"]  # the oldest
    assert client.delete(f"{base}/{first}", headers=merchant["headers"]).status_code == 204
    add_endpoint(client, merchant, "https://shop.example/hooks/again")


def test_two_endpoints_created_at_once_cannot_pass_the_limit(app, client, db, make_merchant):
    """With one place left, two creates that count at the same moment: each counts under the
    merchant's row lock, so the second sees the first's endpoint and is refused."""
    m = make_merchant()
    for n in range(endpoints.MAX_ENDPOINTS - 1):
        add_endpoint(client, m, f"https://shop.example/hooks/{n}")
    answers = []

    def create(n):
        r = app.test_client().post("/api/v1/webhooks/endpoints", headers=m["headers"],
                                   json={"url": f"https://shop.example/hooks/race{n}"})
        answers.append(r.status_code)

    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' " \
              "AND query ILIKE '%FOR NO KEY UPDATE%'"
    with own_transaction(app) as hold:
        hold.execute("SELECT 1 FROM merchants WHERE id = %(m)s FOR NO KEY UPDATE", {"m": m["id"]})
        calls = [threading.Thread(target=create, args=(n,)) for n in range(2)]
        for t in calls:
            t.start()
        wait_until(lambda: db.value(waiting) == 2, message="both creates waiting on the merchant's row")
        hold.commit()
    for t in calls:
        t.join(10)
    assert sorted(answers) == [201, 400]
    assert count(db, "webhook_endpoints", m["id"]) == endpoints.MAX_ENDPOINTS
