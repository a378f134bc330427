"""Query strings, ids and form fields a merchant (or a mangled link) can send the dashboard: whatever
the values, each answers with a page or a message, never a server error."""
import pytest

from helpers import csrf_token, insert_payments

GARBAGE = ["", " ", "x", "\x00", "a\x00b", "pay_\x00", "9" * 5000, "é" * 3000, "'; DROP TABLE payments; --",
           "%", "_", "\\", "0000-00-00", "9999-12-31", "0001-01-01", "2026-02-30", "2026-13-01", "-1", "1e309",
           "2026-01-15T10:31:00Z", "🙂", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "null",
           "[]", "{}", "1234", "a@b", "order_x", "pay_" + "a" * 200]
PAGES = {
    "/dashboard/transactions": ["before", "after", "q", "from", "to", "status"],
    "/dashboard/transactions.csv": ["q", "from", "to", "status"],
    "/dashboard/webhooks": ["before", "after", "status", "event"],
}


@pytest.mark.parametrize("path", PAGES)
def test_garbage_query_values_never_fail_the_page(dashboard, dashboard_merchant, db, path):
    insert_payments(db, dashboard_merchant["id"], [(10_000, "success", "upi")])
    failures = []
    for name in PAGES[path]:
        for value in GARBAGE:
            for query in ({name: value}, {name: [value, value]}, {name: value, "from": "9999-12-31", "to": "9999-12-31"}):
                try:
                    r = dashboard.get(path, query_string=query)
                    body = r.get_data()  # a streamed CSV fails, if at all, while it is read
                except Exception as e:  # the test app lets a view's exception through instead of a 500
                    failures.append((name, value[:20], repr(e)[:80]))
                    continue
                if r.status_code >= 500 or (path.endswith(".csv") and not body.startswith(b"payment_id,")):
                    failures.append((name, value[:20], r.status_code))
    assert not failures


@pytest.mark.parametrize("path", ["/dashboard/transactions/{}", "/dashboard/webhooks/deliveries/{}",
                                  "/dashboard/webhooks/deliveries/{}?at=%00", "/dashboard/webhooks/endpoints/{}"])
def test_an_id_that_is_not_one_is_a_not_found_page(dashboard, path):
    for value in ("pay_%00", "%00", "x" * 5000, "%F0%9F%99%82", "pay_0000000000000000", "' OR 1=1 --"):
        r = dashboard.get(path.format(value))
        assert r.status_code == 404 and "not found" in r.get_data(as_text=True), (path, value)


def test_garbage_form_values_never_fail_a_form(dashboard, dashboard_merchant, db):
    [pay_id] = insert_payments(db, dashboard_merchant["id"], [(10_000, "success", "upi")])
    made = dashboard.post("/api/v1/webhooks/endpoints", json={"url": "https://shop.example/hooks/x"},
                          headers={"X-Api-Key": dashboard_merchant["api_key"], "X-Api-Secret": dashboard_merchant["api_secret"]})
    endpoint = f"/dashboard/webhooks/endpoints/{made.get_json()['id']}"
    # Each field in turn garbage, the others as the form sends them (the endpoint's last: a blank
    # webhook URL removes it).
    forms = {
        f"/dashboard/transactions/{pay_id}/refund": ["amount", "idempotency_key"],
        "/dashboard/webhooks/endpoints": ["url", "events", "description"],
        endpoint: ["url", "events", "description"],
        f"{endpoint}/enabled": ["enabled"],
        f"{endpoint}/secret": ["overlap"],
        f"{endpoint}/replay": ["window", "failed"],
        "/dashboard/webhooks/00000000-0000-4000-8000-000000000000/retry": ["next"],
        "/dashboard/webhooks/secret": ["confirm"],
        "/dashboard/webhooks": ["webhook_url"],
    }
    sent = {"amount": "1.00", "url": "https://shop.example/hooks/y", "events": "*", "description": "shop",
            "enabled": "true", "overlap": "3600", "window": "3600", "confirm": "yes"}
    token = csrf_token(dashboard, "/dashboard/webhooks")
    failures = []
    for path, names in forms.items():
        for name in names:
            for value in GARBAGE:
                try:
                    r = dashboard.post(path, data=dict(sent, csrf_token=token, **{name: value}))
                except Exception as e:  # the test app lets a view's exception through instead of a 500
                    failures.append((path, name, value[:20], repr(e)[:80]))
                    continue
                if r.status_code >= 500:
                    failures.append((path, name, value[:20], r.status_code))
    assert not failures
