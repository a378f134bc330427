"""Webhook endpoints (we_…): several per merchant, each with its URL, secret and event filter.

The merchant's first endpoint keeps its URL and secret in merchants.webhook_url and webhook_secret
(operators' SQL and /webhooks/config work on them); its row holds its other settings, and a
trigger (migration 0006) creates that row whenever the merchant gets a URL. A merchant has
endpoints exactly when it has a webhook URL: deleting the first endpoint makes the next one first.
An endpoint whose deliveries have all failed for WEBHOOK_DISABLE_AFTER is disabled by the worker
(disable_failing); webhooks.record_attempts keeps its failing_since. Plain functions over SQL that
never commit.
"""
import logging

from . import config, db, outbound
from .errors import ApiError, NotFound
from .events import CATALOG, WEBHOOK_ENDPOINT_DISABLED, check_name
from .ids import check as check_id, new_id

log = logging.getLogger(__name__)

ALL = "*"
DEFAULT_OVERLAP = 86400  # seconds a rotated-out secret keeps signing, unless the merchant says otherwise
# Every event goes to each endpoint: without a limit one merchant could fan a payment out into any
# number of deliveries, to any host it names.
MAX_ENDPOINTS = 20

# An endpoint as the API shows it, URL and secret read from the merchant for the first one.
_SELECT = """
    SELECT e.id, e.merchant_id, e.is_first, coalesce(e.url, m.webhook_url) AS url,
           coalesce(e.secret, m.webhook_secret) AS secret, e.description, e.events, e.enabled,
           CASE WHEN e.previous_expires_at > now() THEN e.previous_secret END AS previous_secret,
           CASE WHEN e.previous_expires_at > now() THEN e.previous_expires_at END AS previous_expires_at,
           e.failing_since, e.disabled_reason, e.created_at
      FROM webhook_endpoints e JOIN merchants m ON m.id = e.merchant_id
     WHERE e.merchant_id = %(m)s AND (NOT e.is_first OR m.webhook_url IS NOT NULL)
"""


def check_events(events):
    """A list of catalog event names, or ["*"]; a 400 naming the first unknown one."""
    if not events:
        raise ApiError("events must name at least one event, or be [\"*\"].", field="events")
    for name in events:
        if name != ALL:
            check_name(name, "events")
    return [ALL] if ALL in events else sorted(set(events))


def list_(c, merchant_id):
    """All the merchant's endpoints, the first one first (the dashboard's page)."""
    return db.all(c, _SELECT + " ORDER BY e.is_first DESC, e.created_at, e.id", {"m": merchant_id})


def page(c, merchant_id, limit, offset, window=(None, None)):
    """A page of the merchant's endpoints created within window, newest first, and their exact
    total: the API's list, shaped as every list (db.page over the join, since an endpoint's URL and
    secret may be its merchant's). The first endpoint is the oldest, so it comes last."""
    return db.page(c, f"({_SELECT}) AS e", "*", "true", {"m": merchant_id}, limit, offset, window)


def lock_merchant(c, merchant_id):
    """Lock the merchant's row, first of all in every change to its endpoints (create, update,
    delete, rotate, replay, /webhooks/config): one order of locks, so two concurrent changes wait
    for each other instead of deadlocking. NO KEY: the foreign-key checks of the merchant's new
    payments and deliveries are not held up. Returns whether the merchant has a webhook URL."""
    return db.value(c, "SELECT webhook_url IS NOT NULL FROM merchants WHERE id = %(m)s FOR NO KEY UPDATE",
                    {"m": merchant_id})


def get(c, merchant_id, endpoint_id, lock=False):
    check_id("we_", endpoint_id, "Webhook endpoint")  # a NUL byte would make PostgreSQL raise
    if lock:
        lock_merchant(c, merchant_id)
    row = db.one(c, _SELECT + " AND e.id = %(id)s" + (" FOR UPDATE OF e" if lock else ""),
                 {"m": merchant_id, "id": endpoint_id})
    if row is None:
        raise NotFound("Webhook endpoint not found.")
    return row


def first_id(c, merchant_id):
    """The id of the merchant's first endpoint, or None when it has no webhook URL."""
    return db.value(c, "SELECT e.id FROM webhook_endpoints e JOIN merchants m ON m.id = e.merchant_id "
                       "WHERE e.merchant_id = %(m)s AND e.is_first AND m.webhook_url IS NOT NULL", {"m": merchant_id})


def make_first(c, merchant_id, url, secret, events=(ALL,), description=None):
    """Give a merchant with no webhook URL its first endpoint, with fresh settings (a row left from
    an earlier URL, cleared by SQL, keeps none of its old ones). Returns its id."""
    with db.transaction(c):
        db.execute(c, "UPDATE merchants SET webhook_url = %(u)s, webhook_secret = %(s)s, updated_at = now() "
                      "WHERE id = %(m)s", {"u": url, "s": secret, "m": merchant_id})
        return db.value(c, "UPDATE webhook_endpoints SET events = %(ev)s, description = %(d)s, enabled = true, "
                           "previous_secret = NULL, previous_expires_at = NULL, failing_since = NULL, "
                           "disabled_reason = NULL, updated_at = now() WHERE merchant_id = %(m)s AND is_first RETURNING id",
                        {"ev": list(events), "d": description, "m": merchant_id})


def create(c, merchant_id, url, events, description, allow_private, allowed_hosts=()):
    """A new endpoint with a secret of its own (MAX_ENDPOINTS at most; counted under the merchant's
    row lock, so concurrent creates cannot pass it). A merchant with none gets it as its first one."""
    from .webhooks import new_secret

    outbound.check_url(url, allow_private, allowed_hosts, field="url")
    events = check_events(events)
    with db.transaction(c):
        if not lock_merchant(c, merchant_id):
            endpoint_id = make_first(c, merchant_id, url, new_secret(), events, description)
        else:
            n = db.value(c, "SELECT count(*) FROM webhook_endpoints WHERE merchant_id = %(m)s", {"m": merchant_id})
            if n >= MAX_ENDPOINTS:
                raise ApiError(f"A merchant may have at most {MAX_ENDPOINTS} webhook endpoints; delete one to add "
                               "another.", field="url")
            endpoint_id = db.value(c, "INSERT INTO webhook_endpoints (id, merchant_id, url, secret, events, description) "
                                      "VALUES (%(id)s, %(m)s, %(u)s, %(s)s, %(ev)s, %(d)s) RETURNING id",
                                   {"id": new_id("we_"), "m": merchant_id, "u": url, "s": new_secret(), "ev": events,
                                    "d": description})
        return get(c, merchant_id, endpoint_id)


def update(c, merchant_id, endpoint_id, changes, allow_private, allowed_hosts=()):
    """Change url, events, description and/or enabled."""
    if "url" in changes:
        outbound.check_url(changes["url"], allow_private, allowed_hosts, field="url")
    if "events" in changes:
        changes["events"] = check_events(changes["events"])
    with db.transaction(c):
        endpoint = get(c, merchant_id, endpoint_id, lock=True)
        if "url" in changes and endpoint["is_first"]:
            db.execute(c, "UPDATE merchants SET webhook_url = %(u)s, updated_at = now() WHERE id = %(m)s",
                       {"u": changes.pop("url"), "m": merchant_id})
        sets = [f"{k} = %({k})s" for k in ("url", "events", "description", "enabled") if k in changes]
        if changes.get("enabled") and not endpoint["enabled"]:
            # Re-enabled: its past failures no longer count, it gets a whole WEBHOOK_DISABLE_AFTER again.
            sets += ["failing_since = NULL", "disabled_reason = NULL"]
        db.execute(c, f"UPDATE webhook_endpoints SET {', '.join(sets + ['updated_at = now()'])} WHERE id = %(id)s",
                   dict(changes, id=endpoint_id))
        return get(c, merchant_id, endpoint_id)


def delete(c, merchant_id, endpoint_id):
    """Remove the endpoint; its pending deliveries are cancelled (marked failed). The first one's
    place goes to the next endpoint, or the merchant is left with no webhook URL. Returns the
    endpoint as it was."""
    with db.transaction(c):
        lock_merchant(c, merchant_id)  # no other change to its endpoints until we commit
        endpoint = get(c, merchant_id, endpoint_id)
        # Its pending logs are cancelled before its row is locked (by the DELETE), and the ones the
        # worker is recording an attempt of are skipped: the worker locks a batch's logs in any
        # order, then their endpoints, so waiting for one of them could deadlock. A skipped log's
        # next attempt finds no endpoint and sends nothing.
        db.execute(c, """
            UPDATE webhook_logs w SET status = 'failed', next_retry_at = NULL, response_body = 'endpoint deleted'
              FROM (SELECT id, created_at FROM webhook_logs
                     WHERE merchant_id = %(m)s AND status = 'pending'
                       AND (endpoint_id = %(id)s OR (endpoint_id IS NULL AND %(first)s))
                       FOR UPDATE SKIP LOCKED) free
             WHERE w.id = free.id AND w.created_at = free.created_at
            """, {"m": merchant_id, "id": endpoint_id, "first": endpoint["is_first"]})
        db.execute(c, "DELETE FROM webhook_endpoints WHERE id = %(id)s", {"id": endpoint_id})
        if endpoint["is_first"]:
            _promote_heir(c, merchant_id)
    return endpoint


def _promote_heir(c, merchant_id):
    """The merchant's oldest remaining endpoint becomes its first (its URL and secret move into the
    merchant's row, where the trigger finds them), or the merchant is left with no webhook URL."""
    heir = db.one(c, "SELECT id, url, secret FROM webhook_endpoints WHERE merchant_id = %(m)s "
                     "ORDER BY created_at, id LIMIT 1 FOR UPDATE", {"m": merchant_id})
    if heir is None:
        db.execute(c, "UPDATE merchants SET webhook_url = NULL, updated_at = now() WHERE id = %(m)s", {"m": merchant_id})
        return
    db.execute(c, "UPDATE webhook_endpoints SET is_first = true, url = NULL, secret = NULL WHERE id = %(id)s",
               {"id": heir["id"]})
    db.execute(c, "UPDATE merchants SET webhook_url = %(u)s, webhook_secret = %(s)s, updated_at = now() "
                  "WHERE id = %(m)s", {"u": heir["url"], "s": heir["secret"], "m": merchant_id})


def rotate(c, merchant_id, endpoint_id, expire_previous_in):
    """A new secret; the one it replaces keeps signing every delivery for expire_previous_in
    seconds (0: replaced at once). Returns the endpoint."""
    from .webhooks import new_secret

    with db.transaction(c):
        endpoint = get(c, merchant_id, endpoint_id, lock=True)
        secret = new_secret()
        db.execute(c, """
            UPDATE webhook_endpoints
               SET secret = CASE WHEN is_first THEN NULL ELSE %(s)s END,
                   previous_secret = CASE WHEN %(keep)s > 0 THEN %(old)s END,
                   previous_expires_at = CASE WHEN %(keep)s > 0 THEN now() + make_interval(secs => %(keep)s) END,
                   updated_at = now()
             WHERE id = %(id)s
            """, {"s": secret, "old": endpoint["secret"], "keep": expire_previous_in, "id": endpoint_id})
        if endpoint["is_first"]:
            db.execute(c, "UPDATE merchants SET webhook_secret = %(s)s, updated_at = now() WHERE id = %(m)s",
                       {"s": secret, "m": merchant_id})
        return get(c, merchant_id, endpoint_id)


_DISABLED = CATALOG[WEBHOOK_ENDPOINT_DISABLED].data()  # the event's `data` schema


def disable_failing(c, after):
    """Disable every enabled endpoint to which no delivery has succeeded for `after` seconds (0:
    never), and tell each merchant's other enabled endpoints with a webhook_endpoint.disabled event,
    in one transaction. Returns how many were disabled."""
    from .webhooks import emit_events

    if not after:
        return 0
    with db.transaction(c):
        # Row locks: an endpoint whose outcome is being recorded is looked at again once that commits
        # (a success clears failing_since), and one another worker just disabled is skipped (one event).
        rows = db.all(c, """
            UPDATE webhook_endpoints e
               SET enabled = false, disabled_reason = %(reason)s, updated_at = now()
              FROM merchants m
             WHERE m.id = e.merchant_id AND e.enabled AND e.failing_since < now() - make_interval(secs => %(after)s)
               AND (NOT e.is_first OR m.webhook_url IS NOT NULL)
            RETURNING e.id AS endpoint_id, e.merchant_id, coalesce(e.url, m.webhook_url) AS url, e.failing_since,
                      e.disabled_reason AS reason
            """, {"after": after, "reason": f"no delivery to it succeeded for {config.duration_text(after)}"})
        # After the UPDATE, in its transaction: the endpoints just disabled are not among the recipients.
        emit_events(c, [(r["merchant_id"], WEBHOOK_ENDPOINT_DISABLED, _DISABLED.dump(r)) for r in rows])
    for r in rows:
        log.warning("webhook endpoint disabled: every delivery failed since %s", r["failing_since"].isoformat(),
                    extra={"endpoint_id": r["endpoint_id"], "merchant_id": str(r["merchant_id"])})
    return len(rows)
