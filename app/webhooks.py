"""Webhook events: emit (in the caller's transaction), sign (two schemes), deliver, configure."""
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import datetime, timezone

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from . import db, endpoints, jobs, outbound, rollups
from .errors import ApiError, Conflict, NotFound
from .events import CATALOG, WEBHOOK_TEST
from .ids import check as check_id, new_id

log = logging.getLogger(__name__)

DELIVER = "webhook.deliver"
MAX_ATTEMPTS = 5


# ---- signing ----------------------------------------------------------------------------------

def sign_hex(secret, body):
    """X-Webhook-Signature: hex HMAC-SHA256 of the body (Razorpay's verify_webhook_signature scheme)."""
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def headers_for(secret, event_id, body, timestamp=None, previous_secret=None):
    """The delivery headers: the hex signature and the Standard Webhooks ones, the latter signed by
    the reference library so that its verify() accepts exactly what we send. During a secret's
    rotation (previous_secret) the body is signed with both: `webhook-signature` carries both
    `v1,` signatures (a receiver with either secret verifies it) and X-Webhook-Signature-Previous
    the hex one with the old secret."""
    ts = int(timestamp if timestamp is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "open-gateway-webhooks/1",
        "X-Webhook-Signature": sign_hex(secret, body),
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
    }
    signatures = []
    for key in [secret] + ([previous_secret] if previous_secret else []):
        try:
            signatures.append(Webhook(key).sign(event_id, datetime.fromtimestamp(ts, timezone.utc), body))
        except (ValueError, EmptyWebhookSecretError):
            # The library derives no key from this secret, so no receiver could verify a signature.
            log.warning("webhook %s: a secret is not a Standard Webhooks key; not signed with it the standard way",
                        event_id)
    if signatures:
        headers["webhook-signature"] = " ".join(signatures)
    if previous_secret:
        headers["X-Webhook-Signature-Previous"] = sign_hex(previous_secret, body)
    return headers


def new_secret():
    """whsec_ + 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# ---- events -----------------------------------------------------------------------------------

def emit_events(c, events, lease=None):
    """Write, for each (merchant_id, event, data), one webhook_logs row and one delivery job per
    enabled endpoint of the merchant that subscribes to the event, in the caller's transaction.
    The body is serialised once per event (every endpoint and every attempt gets these exact bytes,
    under the one event id): its data here, its envelope by the statement (_EMIT), with the
    database's clock, the one that sets the event's created_at. With a lease (see
    jobs.enqueue_many) the jobs start leased to the calling worker. A job's payload carries its
    log's created_at, the partition key, so that the worker reads the log from one partition, and
    its endpoint, whose deliveries it caps.
    Returns, per log written, (job_id, job payload, attempt): the attempt is what load_attempts()
    would read, so a worker that emits can send at once without reading it back."""
    if not events:
        return []
    for _, event, _ in events:
        if event not in CATALOG:  # merchants code against the catalog's list (docs, /openapi.json)
            raise ValueError(f"{event!r} is not in app/events.py's CATALOG")
    raised = {"i": [], "m": [], "e": [], "d": []}
    for merchant_id, event, data in events:
        raised["i"].append(new_id("evt_"))
        raised["m"].append(str(merchant_id))
        raised["e"].append(event)
        raised["d"].append(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return _deliver(c, _EMIT, dict(raised, **jobs.lease_params(lease)))


# One round trip for all of an emit: the events, then for each enabled endpoint of the merchant
# that subscribes to the event a delivery job (leased to the calling worker when it emits) and
# its log. Returns each log with what its first attempt needs (_TARGET).
_FAN_OUT = f"""
     targets AS (
        SELECT gen_random_uuid() AS log_id, t.i, t.m, t.e, t.b, e.id AS we
          FROM t JOIN webhook_endpoints e ON e.merchant_id = t.m AND e.enabled
                                         AND (e.events @> ARRAY['{endpoints.ALL}'] OR e.events @> ARRAY[t.e])
          JOIN merchants mm ON mm.id = t.m AND (NOT e.is_first OR mm.webhook_url IS NOT NULL)),
     j AS ({jobs.leased_insert_sql(DELIVER, "jsonb_strip_nulls(jsonb_build_object('log_id', log_id, 'merchant_id', m, "
                                            "'endpoint_id', we, 'created_at', now(), 'request_id', %(request_id)s::text))",
                                   "targets")}),
     logs AS (
        INSERT INTO webhook_logs (id, merchant_id, endpoint_id, event, event_id, payload, body, next_retry_at, job_id)
        SELECT tg.log_id, tg.m, tg.we, tg.e, tg.i, tg.b::jsonb, tg.b, now(), j.id
          FROM targets tg JOIN j ON (j.payload ->> 'log_id')::uuid = tg.log_id
        RETURNING id, merchant_id, endpoint_id, event_id, body, created_at, job_id)
SELECT logs.id, logs.event_id, logs.body, 0 AS attempts, logs.created_at, logs.job_id, j.payload, TARGET
  FROM logs JOIN j ON j.id = logs.job_id JOIN merchants m ON m.id = logs.merchant_id
  LEFT JOIN webhook_endpoints e ON e.id = logs.endpoint_id
"""

# The body, compact JSON: {"id", "event", "timestamp", "data"}. Its timestamp is the second of
# now(), the events' created_at: the body, /events and a replay's `since` agree on an event's time,
# whatever the API host's clock says.
_EMIT = """
WITH t AS (SELECT i, m, e, format('{"id":%%s,"event":%%s,"timestamp":%%s,"data":%%s}', to_json(i), to_json(e),
                                  floor(extract(epoch FROM now()))::bigint, d) AS b
             FROM unnest(%(i)s::text[], %(m)s::uuid[], %(e)s::text[], %(d)s::text[]) AS t(i, m, e, d)),
     ev AS (INSERT INTO events (id, merchant_id, event, body) SELECT i, m, e, b FROM t),
""" + _FAN_OUT

# A replay: one endpoint's deliveries of the merchant's events since a time (all, or the ones
# whose delivery to it used up its attempts: FAILED), read and queued in the one statement.
_REPLAY = """
WITH t AS (SELECT ev.id AS i, ev.merchant_id AS m, ev.event AS e, ev.body AS b FROM events ev
            WHERE ev.merchant_id = %(m)s AND ev.created_at >= %(since)s FAILED),
""" + _FAN_OUT.replace("JOIN webhook_endpoints e ON e.merchant_id = t.m", "JOIN webhook_endpoints e ON e.id = %(we)s")
_FAILED = """
    AND EXISTS (SELECT 1 FROM webhook_logs l
                 WHERE l.merchant_id = ev.merchant_id AND l.event_id = ev.id AND l.status = 'failed'
                   AND l.created_at >= %(since)s
                   AND coalesce(l.endpoint_id, CASE WHEN %(first)s THEN %(we)s END) = %(we)s)"""


def _deliver(c, sql, params):
    """Run _EMIT or _REPLAY: (job_id, job payload, attempt) per log written. The deliveries go to
    enabled endpoints that subscribe to each event (a replay to a disabled endpoint queues none)."""
    with db.transaction(c):
        rows = db.all(c, sql.replace("TARGET", _TARGET), params)
    return [(r["job_id"], r["payload"], r) for r in rows]


def emit_event(c, merchant_id, event, data):
    """One event, to every endpoint of the merchant that subscribes to it."""
    return emit_events(c, [(merchant_id, event, data)])


# ---- delivery (worker side) ---------------------------------------------------------------------

def _span(times):
    """(first, last) of the logs' created_at, the bounds that let PostgreSQL read only their days'
    partitions; (None, None), every partition, when one is unknown (a job queued before its
    payload carried created_at)."""
    times = [datetime.fromisoformat(t) if isinstance(t, str) else t for t in times]
    if not times or None in times:
        return None, None
    return min(times), max(times)


# Where an attempt goes, as it is now (the endpoint's URL and secrets may have changed since the
# event): the endpoint's, the merchant's for its first endpoint (and for a log from before
# endpoints, which has none: migration 0006 gave the pending ones theirs), no URL for an endpoint
# deleted since or disabled.
_TARGET = """
    CASE WHEN e.id IS NULL AND logs.endpoint_id IS NULL THEN m.webhook_url
         WHEN e.enabled THEN coalesce(e.url, m.webhook_url) END AS webhook_url,
    coalesce(e.secret, m.webhook_secret) AS webhook_secret,
    CASE WHEN e.previous_expires_at > now() THEN e.previous_secret END AS previous_secret
"""


def load_attempts(c, payloads):
    """What the next attempt of each pending log needs (see _TARGET), by log_id from the delivery
    jobs' payloads. Logs no longer pending (delivered, or given up) are absent."""
    first, last = _span([p.get("created_at") for p in payloads])
    with db.transaction(c):
        db.generic_plans(c)  # the logs' days pruned when the statement runs, not planned at every call
        rows = db.all(c, f"""
            SELECT logs.id, logs.event_id, logs.body, logs.attempts, logs.created_at, {_TARGET}
              FROM webhook_logs logs JOIN merchants m ON m.id = logs.merchant_id
              LEFT JOIN webhook_endpoints e ON e.id = logs.endpoint_id
             WHERE logs.id = ANY(CAST(%(ids)s AS uuid[])) AND logs.status = 'pending'
               AND logs.created_at >= coalesce(%(first)s::timestamptz, '-infinity')
               AND logs.created_at <= coalesce(%(last)s::timestamptz, 'infinity')
            """, {"ids": [p["log_id"] for p in payloads], "first": first, "last": last})
    return {str(r["id"]): r for r in rows}


def post(http, attempt, allow_private, allowed_hosts=()):
    """One HTTP attempt (http: outbound.http_pool). Returns (ok, response_code, response_body);
    never raises."""
    if not attempt["webhook_url"]:
        return False, None, "no webhook URL configured"
    headers = headers_for(attempt["webhook_secret"] or "", attempt["event_id"], attempt["body"],
                          previous_secret=attempt.get("previous_secret"))
    return outbound.send(http, attempt["webhook_url"], attempt["body"].encode(), headers, allow_private, allowed_hosts)


def outcome(attempts_before, ok, intervals):
    """(status, seconds until the next attempt or None) after one more attempt."""
    n = attempts_before + 1
    if ok:
        return "success", None
    if n >= MAX_ATTEMPTS:
        return "failed", None
    return "pending", float(intervals[min(n, len(intervals)) - 1])


# Each attempt's outcome on its log, fenced on the log still pending; returns per log its endpoint
# and outcome, in the order the attempts ended (n).
_RECORD_LOGS = """
    WITH done AS (
        UPDATE webhook_logs w
           SET attempts = w.attempts + 1, last_attempt_at = now(), attempted_at = w.attempted_at || now(),
               status = t.status,
               response_code = t.code, response_body = t.body,
               next_retry_at = CASE WHEN t.wait IS NULL THEN NULL ELSE now() + make_interval(secs => t.wait) END
          FROM unnest(%(log_id)s::uuid[], %(created_at)s::timestamptz[], %(status)s::text[], %(wait)s::float8[],
                      %(code)s::int[], %(body)s::text[])
               WITH ORDINALITY AS t(log_id, created_at, status, wait, code, body, n)
         WHERE w.id = t.log_id AND (t.created_at IS NULL OR w.created_at = t.created_at) AND w.status = 'pending'
           AND w.created_at >= coalesce(%(first)s::timestamptz, '-infinity')
           AND w.created_at <= coalesce(%(last)s::timestamptz, 'infinity')
        RETURNING w.merchant_id, coalesce(w.endpoint_id, (SELECT f.id FROM webhook_endpoints f  -- a log from before
                                                          WHERE f.merchant_id = w.merchant_id AND f.is_first)) AS endpoint_id,
                  t.status = 'success' AS ok, t.n)
"""

# The usual batch, every attempt a success: failing_since cleared where it was set (an endpoint
# that recovers), which writes no endpoint at all in the common case.
_RECORD_SUCCESSES = _RECORD_LOGS + """
    UPDATE webhook_endpoints SET failing_since = NULL
     WHERE failing_since IS NOT NULL AND id IN (SELECT endpoint_id FROM done)
"""

# Any other batch: per endpoint, any success and the last outcome decide its failing_since. Only
# the endpoints whose failing_since changes are written (a healthy one costs nothing), locked in
# id order first, so that two workers recording at once cannot deadlock. An attempt with nowhere
# to go (disabled, or the merchant's URL cleared) counts for nothing.
_RECORD_OUTCOMES = _RECORD_LOGS + """
    , outcome AS (
        SELECT endpoint_id AS id, bool_or(ok) AS any_ok, (array_agg(ok ORDER BY n DESC))[1] AS last_ok
          FROM done GROUP BY 1),
    changing AS (
        SELECT e.id
          FROM webhook_endpoints e JOIN outcome o ON o.id = e.id JOIN merchants m ON m.id = e.merchant_id
         WHERE e.enabled AND (NOT e.is_first OR m.webhook_url IS NOT NULL)
           AND CASE WHEN o.last_ok THEN e.failing_since IS NOT NULL ELSE e.failing_since IS NULL OR o.any_ok END
         ORDER BY e.id FOR UPDATE OF e)
    UPDATE webhook_endpoints e
       SET failing_since = CASE WHEN o.last_ok THEN NULL
                                WHEN o.any_ok THEN now()  -- failing again since this batch
                                ELSE coalesce(e.failing_since, now()) END
      FROM changing JOIN outcome o ON o.id = changing.id
     WHERE e.id = changing.id
"""


def record_attempts(c, results):
    """Write many attempts' outcomes, each fenced on its job's lease: the job is completed (or
    rescheduled for the retry) and its log updated only while we still hold the lease. The same
    statement keeps each endpoint's failing_since (endpoints.disable_failing): cleared when its last
    attempt here succeeded, set when it failed and was not set already. results: dicts with job_id,
    lease, log_id, created_at (the attempt's), status, wait, code, body, in the order the attempts
    ended. Returns the job ids recorded."""
    with db.transaction(c):
        held = set(jobs.finish(c, [(r["job_id"], r["lease"], r["wait"]) for r in results]))
        logged = [r for r in results if r["job_id"] in held and r["status"] is not None]
        if logged:
            cols = {k: [r.get(k) for r in logged] for k in ("log_id", "created_at", "status", "wait", "code", "body")}
            first, last = _span(cols["created_at"])
            all_ok = all(r["status"] == "success" for r in logged)
            db.generic_plans(c)  # the logs' days pruned when the statement runs, not planned at every call
            db.execute(c, _RECORD_SUCCESSES if all_ok else _RECORD_OUTCOMES, dict(cols, first=first, last=last))
    return held


# ---- merchant-facing operations -------------------------------------------------------------

LOG_COLUMNS = "id, event, status, attempts, created_at, last_attempt_at, next_retry_at, response_code"


def list_logs(c, merchant_id, limit, offset, window=(None, None)):
    """The merchant's webhook logs, newest first."""
    return db.page(c, "webhook_logs", LOG_COLUMNS, "merchant_id = %(m)s", {"m": merchant_id}, limit, offset, window,
                   count=rollups.counter(c, "webhook_logs", merchant_id))


LOG_STATUSES = ("pending", "success", "failed")


def get_log(c, merchant_id, log_id, created_at=None):
    """One of the merchant's delivery logs with the body sent and the last response, or None (not
    its log, or not an id). created_at, when the caller knows it (the dashboard's link carries it),
    lets PostgreSQL read that day's partition only instead of probing every day's index."""
    try:
        log_id = str(uuid.UUID(log_id))
    except ValueError:
        return None
    day = "" if created_at is None else "AND created_at = %(at)s"
    return db.one(c, f"SELECT {LOG_COLUMNS}, event_id, endpoint_id, body, response_body, attempted_at FROM webhook_logs "
                     f"WHERE id = %(id)s::uuid AND merchant_id = %(m)s {day}",
                  {"id": log_id, "m": merchant_id, "at": created_at})


def retry(c, merchant_id, log_id):
    """Reset attempts and deliver now. The log's own job is reused when it is still queued, so
    there is never more than one delivery job per log."""
    try:
        log_id = str(uuid.UUID(log_id))
    except ValueError:
        raise NotFound("Webhook log not found.") from None  # not even an id: checked here, not by a failed query
    with db.transaction(c):
        # By id alone (the URL has no more), so every partition is read: a merchant's click, not the delivery path.
        row = db.one(c, "SELECT id, job_id, created_at FROM webhook_logs WHERE id = %(id)s::uuid AND merchant_id = %(m)s "
                        "FOR UPDATE", {"id": log_id, "m": merchant_id})
        if row is None:
            raise NotFound("Webhook log not found.")
        job = jobs.status(c, row["job_id"])
        if job == "processing":
            raise Conflict("A delivery attempt for this webhook is in progress; retry in a few seconds.")
        if job == "pending":
            jobs.run_now(c, row["job_id"])
            job_id = row["job_id"]
        else:
            job_id = jobs.enqueue(c, DELIVER, {"log_id": str(row["id"]), "merchant_id": str(merchant_id),
                                               "created_at": row["created_at"].isoformat()})
        db.execute(c, "UPDATE webhook_logs SET status = 'pending', attempts = 0, next_retry_at = now(), job_id = %(j)s, "
                      "response_code = NULL, response_body = NULL WHERE id = %(id)s AND created_at = %(at)s",
                   {"j": job_id, "id": row["id"], "at": row["created_at"]})
    return {"id": str(row["id"]), "status": "pending", "message": "Webhook retry scheduled"}


# ---- events (GET /api/v1/events) and replay ---------------------------------------------------------

EVENT_COLUMNS = "id, event, body, created_at"


def list_events(c, merchant_id, limit, offset, window=(None, None), event=None):
    """The merchant's events, newest first; optionally of one name."""
    where, params = "merchant_id = %(m)s", {"m": merchant_id}
    if event:
        where, params["event"] = where + " AND event = %(event)s", event
    return db.page(c, "events", EVENT_COLUMNS, where, params, limit, offset, window,
                   count=rollups.counter(c, "events", merchant_id, event))


def get_event(c, merchant_id, event_id):
    check_id("evt_", event_id, "Event")  # a NUL byte would make PostgreSQL raise (a 500, not a 404)
    row = db.one(c, f"SELECT {EVENT_COLUMNS} FROM events WHERE id = %(id)s AND merchant_id = %(m)s",
                 {"id": event_id, "m": merchant_id})
    if row is None:
        raise NotFound("Event not found.")
    return row


def replay(c, merchant_id, endpoint_id, since, failed_only=False):
    """Queue again, for one endpoint, the merchant's events raised since `since` (a datetime) that
    it subscribes to now; with failed_only, only those whose delivery to it used up its attempts.
    The same event id and body, signed with the endpoint's secret(s) when sent. Returns how many
    deliveries were queued."""
    with db.transaction(c):
        endpoint = endpoints.get(c, merchant_id, endpoint_id, lock=True)  # 404 for another merchant's
        sql = _REPLAY.replace("FAILED", _FAILED if failed_only else "")
        return len(_deliver(c, sql, dict(jobs.lease_params(), m=merchant_id, since=since, we=endpoint_id,
                                         first=endpoint["is_first"])))


def get_config(c, merchant_id):
    return db.one(c, "SELECT webhook_url, webhook_secret FROM merchants WHERE id = %(m)s", {"m": merchant_id})


def set_url(c, merchant_id, url, allow_private, allowed_hosts=()):
    """Save the URL of the merchant's first endpoint after checking it, or remove that endpoint
    (null/""): as endpoints.delete, the next endpoint then becomes first, so a merchant keeps a
    webhook URL exactly while it has an endpoint. The secret stays the one it had, if any."""
    url = (url or "").strip() or None
    if url is not None:
        outbound.check_url(url, allow_private, allowed_hosts)
    with db.transaction(c):
        has_url = endpoints.lock_merchant(c, merchant_id)
        if url is None:
            first = endpoints.first_id(c, merchant_id)
            if first:
                endpoints.delete(c, merchant_id, first)
        elif not has_url:
            kept = db.value(c, "SELECT webhook_secret FROM merchants WHERE id = %(m)s", {"m": merchant_id})
            endpoints.make_first(c, merchant_id, url, kept or new_secret())
        else:
            db.execute(c, "UPDATE merchants SET webhook_url = %(u)s, updated_at = now() WHERE id = %(m)s",
                       {"u": url, "m": merchant_id})
    return get_config(c, merchant_id)


def regenerate_secret(c, merchant_id, expire_previous_in=0):
    """A new secret for the first endpoint; the old one keeps signing for expire_previous_in
    seconds (0: replaced at once)."""
    with db.transaction(c):
        endpoints.lock_merchant(c, merchant_id)  # the first endpoint stays the one we rotate
        first = endpoints.first_id(c, merchant_id)
        if first:
            endpoints.rotate(c, merchant_id, first, expire_previous_in)
        else:  # no URL yet: the secret waits for one
            db.execute(c, "UPDATE merchants SET webhook_secret = %(s)s, updated_at = now() WHERE id = %(m)s",
                       {"s": new_secret(), "m": merchant_id})
        return get_config(c, merchant_id)


def send_test(c, merchant_id):
    """Queue a webhook.test event; 400 when no URL is configured. Returns the URL."""
    url = get_config(c, merchant_id)["webhook_url"]
    if not url:
        raise ApiError("Configure a webhook URL first.", field="webhook_url")
    emit_event(c, merchant_id, WEBHOOK_TEST, {"message": "This is a test webhook.", "merchant_id": str(merchant_id)})
    return url
