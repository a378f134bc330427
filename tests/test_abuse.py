"""What an attacker's tools send the API and the checkout: ids that are not ids on every route that
takes one, and values built to slip past validation. Each answer is a clear 4xx that changes
nothing, never a 5xx."""
import re

import pytest

from helpers import add_endpoint, count, csrf_token

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
