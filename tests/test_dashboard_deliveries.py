"""The dashboard's webhook deliveries over the Flask test client: a page per delivery (the body
sent, the response, the attempts), the log's filters, Retry and Resend back to the page they were
pressed on, secrets behind Reveal, the confirmation before a new webhook secret, the test-mode
banner, the favicon, and the overview's and lists' empty states. browser/test_dashboard.py drives
the same pages in Chromium."""
import html
import json
import re
from zoneinfo import ZoneInfo

import pytest
from requests.structures import CaseInsensitiveDict

from helpers import (LOCAL_TIME_RE, csrf_token, dashboard_client, insert_payments, insert_webhook_logs, page, post_login,
                     wait_until)

from app.ids import new_id
from app.timefmt import local

HOOKS = "/dashboard/webhooks"


def log_row(db, log_id):
    return db.one("SELECT * FROM webhook_logs WHERE id = %(id)s", {"id": log_id})


def insert_logs(db, merchant_id, rows):
    """Logs as deliveries leave them, one second apart, the last one newest: rows of (event,
    status). Returns their ids in that order."""
    ids = []
    for i, (event, status) in enumerate(rows):
        body = json.dumps({"id": new_id("evt_"), "event": event, "data": {}})
        ids.append(str(db.value(
            "INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, attempts, response_code, "
            "created_at) VALUES (%(m)s, %(e)s, %(i)s, %(b)s::jsonb, %(b)s::text, %(s)s, %(n)s, %(code)s, "
            "now() - make_interval(secs => %(age)s)) RETURNING id",
            {"m": merchant_id, "e": event, "i": json.loads(body)["id"], "b": body, "s": status,
             "n": 0 if status == "pending" else 5 if status == "failed" else 1,
             "code": {"success": 200, "failed": 500}.get(status), "age": len(rows) - i})))
    return ids


def links(element):
    """The hrefs of the links inside an element of a parsed page."""
    found = []
    for c in element.children:
        if not isinstance(c, str):
            found += ([c.attrs["href"]] if c.tag == "a" else []) + links(c)
    return found


def shown(listing):
    return [r.attrs["data-webhook-id"] for r in listing.all("webhook-log-item")]


@pytest.fixture
def post_form(dashboard):
    """Post a dashboard form as the browser would, with the Webhooks page's token."""
    token = csrf_token(dashboard, HOOKS)
    return lambda path, **data: dashboard.post(path, data=dict(data, csrf_token=token))


def test_a_delivery_page_shows_the_body_sent_the_response_and_the_attempt(dashboard, db, worker, receiver,
                                                                         post_form, dashboard_merchant, app):
    rx = receiver(responses=[503])  # the first attempt fails; no step runs the second one
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": rx.url, "id": dashboard_merchant["id"]})
    assert post_form(f"{HOOKS}/test").status_code == 302
    log_id = str(db.value("SELECT id FROM webhook_logs WHERE merchant_id = %(m)s", {"m": dashboard_merchant["id"]}))

    def attempted():
        worker.step()
        return log_row(db, log_id)["attempts"] == 1

    wait_until(attempted, message="first attempt recorded")
    [sent] = rx.wait_for(1)

    listing = page(dashboard.get(HOOKS))
    link = listing.one("webhook-log-item", data_webhook_id=log_id).one("webhook-log-link")
    assert link.text == "webhook.test"
    href = html.unescape(link.attrs["href"])
    assert href.startswith(f"{HOOKS}/deliveries/{log_id}?at=")

    detail = page(dashboard.get(href))
    assert detail.one("webhook-delivery").attrs["data-webhook-id"] == log_id
    # The body sent: the same JSON, and, byte for byte, what the receiver got.
    assert json.loads(detail.one("webhook-request-body").text) == sent["json"]
    assert detail.one("webhook-request-raw").text == sent["body"].decode()
    assert detail.one("webhook-event-id").text == CaseInsensitiveDict(sent["headers"])["webhook-id"]
    assert detail.one("webhook-response-code").text == "503"
    assert json.loads(detail.one("webhook-response-body").text) == {"ok": False}
    assert detail.one("webhook-status").text == "pending"
    assert detail.one("webhook-attempts").text == "1 of 5"
    row = log_row(db, log_id)
    assert detail.one("webhook-last-attempt").text == local(row["last_attempt_at"], ZoneInfo("Asia/Kolkata"))
    [attempt] = detail.one("webhook-attempt-times").all("webhook-attempt-time")
    assert attempt.text == local(row["last_attempt_at"], ZoneInfo("Asia/Kolkata"))
    assert LOCAL_TIME_RE.match(detail.one("webhook-next-retry").text) and LOCAL_TIME_RE.match(detail.one("webhook-created-at").text)
    assert detail.one("retry-webhook-button").text == "Retry"
    # The same page without the partition hint (a link typed by hand) still finds it.
    assert page(dashboard.get(f"{HOOKS}/deliveries/{log_id}")).one("webhook-response-code").text == "503"


def test_another_merchants_delivery_and_bad_ids_are_a_not_found_page(app, db, dashboard, dashboard_merchant,
                                                                     make_merchant):
    [mine] = insert_webhook_logs(db, dashboard_merchant["id"], 1)
    [theirs] = insert_webhook_logs(db, make_merchant()["id"], 1)
    assert page(dashboard.get(f"{HOOKS}/deliveries/{mine}")).one("webhook-delivery")
    for path in (f"{HOOKS}/deliveries/{theirs}", f"{HOOKS}/deliveries/not-an-id",
                 f"{HOOKS}/deliveries/{mine}?at=2001-01-01T00:00:00%2B00:00"):
        r = dashboard.get(path)
        assert r.status_code == 404 and "Webhook delivery not found" in r.get_data(as_text=True), path
    # A malformed hint is ignored, not a 500.
    assert page(dashboard.get(f"{HOOKS}/deliveries/{mine}?at=yesterday")).one("webhook-delivery")


def test_the_log_filters_by_status_and_event_and_its_pages_keep_them(db, dashboard, dashboard_merchant):
    ids = insert_logs(db, dashboard_merchant["id"], [("payment.success", "success"), ("payment.failed", "failed"),
                                                     ("refund.created", "failed"), ("payment.success", "pending")]
                      + [("payment.success", "failed")] * 21)
    everything = page(dashboard.get(HOOKS))
    assert everything.one("page-info").text == "1–20 of 25"

    failed = page(dashboard.get(f"{HOOKS}?status=failed"))
    assert shown(failed) == ids[::-1][:20] and failed.one("page-info").text == "1–20 of 23"
    assert {i.one("webhook-status").text for i in failed.all("webhook-log-item")} == {"failed"}
    older = html.unescape(failed.one("next-page").attrs["href"])
    assert older == f"{HOOKS}?status=failed&before={ids[5]}"
    assert shown(page(dashboard.get(older))) == [ids[4], ids[2], ids[1]]

    refunds = page(dashboard.get(f"{HOOKS}?event=refund.created"))
    assert shown(refunds) == [ids[2]] and refunds.one("page-info").text == "1 on this page"
    both = page(dashboard.get(f"{HOOKS}?event=payment.success&status=failed"))
    assert shown(both) == ids[::-1][:20]
    assert html.unescape(both.one("next-page").attrs["href"]) == f"{HOOKS}?status=failed&event=payment.success&before={ids[5]}"
    assert shown(page(dashboard.get(f"{HOOKS}?event=payment.success&status=failed&before={ids[5]}"))) == [ids[4]]
    assert shown(page(dashboard.get(f"{HOOKS}?event=payment.success&status=success"))) == [ids[0]]
    # The filter form shows what is chosen; unknown values are dropped, not an error.
    chosen = dashboard.get(f"{HOOKS}?event=payment.success&status=failed").get_data(as_text=True)
    assert re.search(r'<option value="failed" selected>', chosen)
    assert re.search(r'<option value="payment.success" selected>', chosen)
    assert page(dashboard.get(f"{HOOKS}?status=nope&event=no.such")).one("page-info").text == "1–20 of 25"
    none = page(dashboard.get(f"{HOOKS}?event=refund.processed"))
    assert not shown(none) and "No deliveries match these filters." in none.one("webhook-logs-empty").text


def test_retry_comes_back_to_the_page_it_was_pressed_on(db, dashboard, dashboard_merchant, post_form):
    ids = insert_logs(db, dashboard_merchant["id"], [("payment.success", "failed")] * 22)
    where = f"{HOOKS}?status=failed&before={ids[2]}"
    second = page(dashboard.get(where))
    item = second.one("webhook-log-item", data_webhook_id=ids[0])
    assert item.one("retry-webhook-button").text == "Retry"
    back = html.unescape(item.one("webhook-retry-next").attrs["value"])
    assert back == where
    r = post_form(f"{HOOKS}/{ids[0]}/retry", next=back)
    assert r.status_code == 302 and r.headers["Location"] == where
    assert page(dashboard.get(where)).one("flash-message").text == f"Webhook retry scheduled ({ids[0]})."
    row = log_row(db, ids[0])
    assert (row["status"], row["attempts"]) == ("pending", 0)
    # From a delivery's own page, back to it.
    detail = f"{HOOKS}/deliveries/{ids[1]}"
    assert post_form(f"{HOOKS}/{ids[1]}/retry", next=detail).headers["Location"] == detail
    # Never off the dashboard.
    assert post_form(f"{HOOKS}/{ids[1]}/retry", next="https://evil.example/").headers["Location"] == "/dashboard"


def test_a_delivered_row_says_resend_and_sends_the_same_delivery_again(db, dashboard, worker, receiver, post_form,
                                                                       dashboard_merchant):
    rx = receiver()
    db.execute("UPDATE merchants SET webhook_url = %(u)s WHERE id = %(id)s", {"u": rx.url, "id": dashboard_merchant["id"]})
    post_form(f"{HOOKS}/test")
    log_id = str(db.value("SELECT id FROM webhook_logs WHERE merchant_id = %(m)s", {"m": dashboard_merchant["id"]}))

    def reached(status, attempts):
        def check():
            worker.step()
            row = log_row(db, log_id)
            return (row["status"], row["attempts"]) == (status, attempts)
        return check

    wait_until(reached("success", 1), message="delivered")
    listing = page(dashboard.get(HOOKS))
    assert listing.one("webhook-log-item", data_webhook_id=log_id).one("retry-webhook-button").text == "Resend"
    assert post_form(f"{HOOKS}/{log_id}/retry", next=HOOKS).headers["Location"] == HOOKS
    assert log_row(db, log_id)["status"] == "pending"
    wait_until(reached("success", 1), message="delivered again")
    first, again = rx.wait_for(2)
    assert again["body"] == first["body"]
    assert CaseInsensitiveDict(again["headers"])["webhook-id"] == CaseInsensitiveDict(first["headers"])["webhook-id"]
    assert db.value("SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s", {"m": dashboard_merchant["id"]}) == 1


def test_secrets_are_masked_until_revealed(dashboard, dashboard_merchant):
    for path, name, secret in [(HOOKS, "webhook-secret-reveal", dashboard_merchant["webhook_secret"]),
                               ("/dashboard", "api-secret-reveal", dashboard_merchant["api_secret"])]:
        shown_page = page(dashboard.get(path))
        reveal = shown_page.one(name)
        assert reveal.tag == "details" and "open" not in reveal.attrs  # closed: only the mask shows
        button = reveal.one("reveal-secret-button")
        assert button.tag == "summary" and secret not in button.text and "Reveal" in button.text
        assert reveal.one("webhook-secret" if path == HOOKS else "api-secret").text == secret
        assert shown_page.text.count(secret) == 1, path  # nowhere else on the page


def test_the_integration_guide_masks_its_secrets_until_revealed(dashboard, dashboard_merchant):
    m = dashboard_merchant
    docs = page(dashboard.get("/dashboard/docs"))
    for reveal_id, masked_id, revealed_ids, secret in [
            ("create-order-secrets-reveal", "code-snippet-create-order", ["code-snippet-create-order-revealed"],
             m["api_secret"]),
            ("webhook-secrets-reveal", "code-snippet-webhook",
             ["code-snippet-webhook-python-revealed", "code-snippet-webhook-node-revealed"], m["webhook_secret"])]:
        reveal = docs.one(reveal_id)
        assert reveal.tag == "details" and "open" not in reveal.attrs  # closed: the masked code shows
        assert "Reveal" in reveal.one("reveal-secret-button").text
        masked = docs.one(masked_id).text
        assert secret not in masked and ("secret_••••" in masked or "whsec_••••" in masked)
        for name in revealed_ids:
            assert secret in reveal.one(name).text
    # The real secrets are nowhere but inside the closed disclosures.
    shown = docs.text
    for reveal_id in ("create-order-secrets-reveal", "webhook-secrets-reveal"):
        shown = shown.replace(docs.one(reveal_id).text, "")
    assert m["api_secret"] not in shown and m["webhook_secret"] not in shown
    assert m["api_key"] in docs.one("code-snippet-sdk").text  # the public key needs no mask


def test_regenerating_the_webhook_secret_needs_its_confirmation(db, dashboard, dashboard_merchant, post_form):
    m = dashboard_merchant

    def secret():
        return db.value("SELECT webhook_secret FROM merchants WHERE id = %(id)s", {"id": m["id"]})

    step = page(dashboard.get(HOOKS)).one("regenerate-secret")
    assert step.tag == "details" and step.one("regenerate-secret-button").tag == "summary"
    assert step.one("confirm-regenerate-button").attrs["type"] == "submit"
    # A post without the confirmation changes nothing.
    assert post_form(f"{HOOKS}/secret").headers["Location"] == HOOKS
    assert secret() == m["webhook_secret"]
    assert page(dashboard.get(HOOKS)).one("flash-message").text == ("The secret was not changed: confirm the "
                                                                    "regeneration first.")
    post_form(f"{HOOKS}/secret", confirm="yes")
    assert secret() != m["webhook_secret"] and secret().startswith("whsec_")
    assert page(dashboard.get(HOOKS)).one("webhook-secret").text == secret()


@pytest.mark.parametrize("path", ["/login", "/dashboard", "/dashboard/transactions", HOOKS, "/dashboard/docs",
                                  "/dashboard/jobs", f"{HOOKS}/endpoints"])
def test_the_test_mode_banner_shows_only_in_test_mode(app, dashboard, path, monkeypatch):
    banner = page(dashboard.get(path) if path != "/login" else dashboard_client(app).get(path)).one("test-mode-banner")
    assert banner.text.startswith("Test mode")
    monkeypatch.setitem(app.config, "TEST_MODE", False)
    assert not page(dashboard.get(path) if path != "/login" else dashboard_client(app).get(path)).all("test-mode-banner")


def test_favicon_is_a_real_icon(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert r.get_data(as_text=True).startswith("<svg")
    assert 'rel="icon"' in client.get("/login").get_data(as_text=True)


def test_success_rate_is_a_dash_until_a_payment_settles(db, dashboard, dashboard_merchant):
    assert page(dashboard.get("/dashboard")).one("success-rate").text == "—"
    insert_payments(db, dashboard_merchant["id"], [(10000, "pending", "upi")])
    assert page(dashboard.get("/dashboard")).one("success-rate").text == "—"
    insert_payments(db, dashboard_merchant["id"], [(10000, "failed", "upi")])
    assert page(dashboard.get("/dashboard")).one("success-rate").text == "0%"


def test_empty_lists_say_what_to_do_next(db, dashboard, dashboard_merchant):
    overview = page(dashboard.get("/dashboard"))
    assert "/dashboard/docs" in links(overview.one("overview-empty"))
    transactions = page(dashboard.get("/dashboard/transactions")).one("transactions-empty")
    assert "integration guide" in transactions.text and "/dashboard/docs" in links(transactions)
    filtered = page(dashboard.get("/dashboard/transactions?status=failed")).one("transactions-empty")
    assert "Clear filters" in filtered.text and links(filtered) == ["/dashboard/transactions"]
    # No URL yet: save one first; with a URL: send a test webhook.
    db.execute("UPDATE merchants SET webhook_url = NULL WHERE id = %(id)s", {"id": dashboard_merchant["id"]})
    no_url = page(dashboard.get(HOOKS)).one("webhook-logs-empty")
    assert "Save your server's URL" in no_url.text and "#webhook_url" in links(no_url)
    db.execute("UPDATE merchants SET webhook_url = 'https://shop.example/hook' WHERE id = %(id)s",
               {"id": dashboard_merchant["id"]})
    assert "Send test webhook" in page(dashboard.get(HOOKS)).one("webhook-logs-empty").text
    insert_payments(db, dashboard_merchant["id"], [(10000, "success", "upi")])
    assert not page(dashboard.get("/dashboard")).all("overview-empty")


def test_the_retry_column_has_a_header_a_screen_reader_reads(db, dashboard, dashboard_merchant):
    insert_webhook_logs(db, dashboard_merchant["id"], 1)
    body = dashboard.get(HOOKS).get_data(as_text=True)
    headers = re.findall(r"<th[^>]*>(.*?)</th>", body[body.index('data-test-id="webhook-logs-table"'):], re.S)
    assert all(re.sub(r"<[^>]+>", "", h).strip() for h in headers[:8])
    assert "Retry or resend" in headers[7]


def test_a_delivery_page_needs_a_sign_in(app, db, dashboard_merchant):
    [log_id] = insert_webhook_logs(db, dashboard_merchant["id"], 1)
    c = dashboard_client(app)
    r = c.get(f"{HOOKS}/deliveries/{log_id}")
    assert r.status_code == 302 and "/login?next=" in r.headers["Location"]
    post_login(c, dashboard_merchant["email"], dashboard_merchant["password"])
    assert page(c.get(f"{HOOKS}/deliveries/{log_id}")).one("webhook-delivery")


def test_a_payments_webhook_events_open_their_deliveries(db, dashboard, dashboard_merchant):
    [pay_id] = insert_payments(db, dashboard_merchant["id"], [(10000, "success", "upi")])
    body = json.dumps({"id": new_id("evt_"), "event": "payment.success", "data": {"payment": {"id": pay_id}}})
    log_id = str(db.value(
        "INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, attempts, response_code) "
        "VALUES (%(m)s, 'payment.success', %(e)s, %(b)s::jsonb, %(b)s::text, 'success', 1, 200) RETURNING id",
        {"m": dashboard_merchant["id"], "e": json.loads(body)["id"], "b": body}))
    item = page(dashboard.get(f"/dashboard/transactions/{pay_id}")).one("payment-webhook-item", data_webhook_id=log_id)
    assert item.one("retry-webhook-button").text == "Resend"
    detail = page(dashboard.get(html.unescape(item.one("webhook-log-link").attrs["href"])))
    assert json.loads(detail.one("webhook-request-body").text)["data"]["payment"]["id"] == pay_id
