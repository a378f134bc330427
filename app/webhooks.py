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

from . import db, jobs, outbound
from .errors import ApiError, Conflict, NotFound
from .events import CATALOG, WEBHOOK_TEST
from .ids import new_id
from .pg import text

log = logging.getLogger(__name__)

DELIVER = "webhook.deliver"
MAX_ATTEMPTS = 5


# ---- signing ----------------------------------------------------------------------------------

def sign_hex(secret, body):
    """X-Webhook-Signature: hex HMAC-SHA256 of the body (Razorpay's verify_webhook_signature scheme)."""
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def headers_for(secret, event_id, body, timestamp=None):
    """The delivery headers: the hex signature and the Standard Webhooks ones, the latter signed by
    the reference library so that its verify() accepts exactly what we send."""
    ts = int(timestamp if timestamp is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "open-gateway-webhooks/1",
        "X-Webhook-Signature": sign_hex(secret, body),
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
    }
    try:
        headers["webhook-signature"] = Webhook(secret).sign(event_id, datetime.fromtimestamp(ts, timezone.utc), body)
    except (ValueError, EmptyWebhookSecretError):
        # The library derives no key from this secret, so no receiver could verify a signature.
        log.warning("webhook %s: the secret is not a Standard Webhooks key; sent with the hex signature only",
                    event_id)
    return headers


def new_secret():
    """whsec_ + 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# ---- events -----------------------------------------------------------------------------------

def emit_events(c, events, lease=None):
    """Write one webhook_logs row and one delivery job per (merchant_id, event, data), in the
    caller's transaction, for the merchants that have a webhook URL (others get nothing). The body is
    serialised here, once; every attempt sends these exact bytes. Returns, per row written,
    (job_id, job payload, attempt): the attempt is what load_attempts() would read, so a worker
    that emits can send at once without reading it back."""
    if not events:
        return []
    now = int(time.time())
    ids, merchants, names, bodies = [], [], [], []
    for merchant_id, event, data in events:
        if event not in CATALOG:  # merchants code against the catalog's list (docs, /openapi.json)
            raise ValueError(f"{event!r} is not in app/events.py's CATALOG")
        event_id = new_id("evt_")
        body = json.dumps({"id": event_id, "event": event, "timestamp": now, "data": data},
                          separators=(",", ":"), ensure_ascii=False)
        ids.append(event_id)
        merchants.append(str(merchant_id))
        names.append(event)
        bodies.append(body)
    lease_id, lease_s = lease or (None, 0)
    # One round trip: the logs take their delivery job's id from the jobs sequence, then the jobs
    # are inserted with those ids (pending, or already leased to the calling worker).
    rows = c.execute(text(
        """
        WITH logs AS (
            INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, next_retry_at, job_id)
            SELECT t.m, t.e, t.i, t.b::jsonb, t.b, now(), nextval('jobs_id_seq')
              FROM unnest(CAST(:m AS uuid[]), CAST(:e AS text[]), CAST(:i AS text[]), CAST(:b AS text[])) AS t(m, e, i, b)
              -- no URL, no log row: decided here, inside the transaction, from the merchant row as it is now
              JOIN merchants ON merchants.id = t.m AND merchants.webhook_url IS NOT NULL
            RETURNING id, merchant_id, job_id, event_id, body),
        queued AS (
            INSERT INTO jobs (id, kind, payload, status, lease_id, locked_until, attempts)
            SELECT job_id, :kind, jsonb_build_object('log_id', id, 'merchant_id', merchant_id),
                   CASE WHEN CAST(:lease AS uuid) IS NULL THEN 'pending' ELSE 'processing' END, CAST(:lease AS uuid),
                   CASE WHEN CAST(:lease AS uuid) IS NULL THEN NULL ELSE now() + make_interval(secs => :lease_s) END,
                   CASE WHEN CAST(:lease AS uuid) IS NULL THEN 0 ELSE 1 END
              FROM logs
            RETURNING id, payload)
        SELECT queued.id AS job_id, queued.payload, logs.id, logs.event_id, logs.body, 0 AS attempts,
               merchants.webhook_url, merchants.webhook_secret
          FROM queued JOIN logs ON logs.job_id = queued.id JOIN merchants ON merchants.id = logs.merchant_id
        """), {"m": merchants, "e": names, "i": ids, "b": bodies, "kind": DELIVER,
               "lease": lease_id, "lease_s": float(lease_s)}).mappings().all()
    return [(r["job_id"], r["payload"], {k: r[k] for k in ATTEMPT_FIELDS}) for r in rows]


def emit_event(c, merchant_id, event, data):
    """One event for a merchant; nothing at all when the merchant has no webhook URL."""
    return emit_events(c, [(merchant_id, event, data)])


# ---- delivery (worker side) ---------------------------------------------------------------------

ATTEMPT_FIELDS = ("id", "event_id", "body", "attempts", "webhook_url", "webhook_secret")


def load_attempts(c, log_ids):
    """What the next attempt of each pending log needs, with the merchant's URL and secret as they
    are now (they may have changed since the event was emitted). Logs no longer pending
    (delivered, or given up) are absent."""
    rows = c.execute(text(
        """
        SELECT w.id, w.event_id, w.body, w.attempts, m.webhook_url, m.webhook_secret  -- ATTEMPT_FIELDS
          FROM webhook_logs w JOIN merchants m ON m.id = w.merchant_id
         WHERE w.id = ANY(CAST(:ids AS uuid[])) AND w.status = 'pending'
        """), {"ids": list(log_ids)}).mappings().all()
    return {str(r["id"]): dict(r) for r in rows}


def post(http, attempt, allow_private, allowed_hosts=()):
    """One HTTP attempt (http: outbound.http_pool). Returns (ok, response_code, response_body);
    never raises."""
    if not attempt["webhook_url"]:
        return False, None, "no webhook URL configured"
    headers = headers_for(attempt["webhook_secret"] or "", attempt["event_id"], attempt["body"])
    return outbound.send(http, attempt["webhook_url"], attempt["body"].encode(), headers, allow_private, allowed_hosts)


def outcome(attempts_before, ok, intervals):
    """(status, seconds until the next attempt or None) after one more attempt."""
    n = attempts_before + 1
    if ok:
        return "success", None
    if n >= MAX_ATTEMPTS:
        return "failed", None
    return "pending", float(intervals[min(n, len(intervals)) - 1])


def record_attempts(c, results):
    """Write many attempts' outcomes in one statement, each fenced on its job's lease: the job is
    completed (or rescheduled for the retry) and its log updated only while we still hold the
    lease. results: dicts with job_id, lease, log_id, status, wait, code, body. Returns the job
    ids recorded."""
    if not results:
        return []
    cols = {k: [r[k] for r in results] for k in ("job_id", "lease", "log_id", "status", "wait", "code", "body")}
    return c.execute(text(
        """
        WITH t AS (
            SELECT * FROM unnest(CAST(:job_id AS bigint[]), CAST(:lease AS uuid[]), CAST(:log_id AS uuid[]),
                                 CAST(:status AS text[]), CAST(:wait AS float8[]), CAST(:code AS int[]),
                                 CAST(:body AS text[]))
                     AS t(job_id, lease, log_id, status, wait, code, body)),
        held AS (
            UPDATE jobs j
               SET status = CASE WHEN t.wait IS NULL THEN 'completed' ELSE 'pending' END,
                   next_run_at = CASE WHEN t.wait IS NULL THEN j.next_run_at
                                      ELSE now() + make_interval(secs => t.wait) END,
                   attempts = 0, lease_id = NULL, locked_until = NULL, updated_at = now()
              FROM t WHERE j.id = t.job_id AND j.lease_id = t.lease
            RETURNING j.id),
        logged AS (
            UPDATE webhook_logs w
               SET attempts = w.attempts + 1, last_attempt_at = now(), status = t.status,
                   response_code = t.code, response_body = t.body,
                   next_retry_at = CASE WHEN t.wait IS NULL THEN NULL ELSE now() + make_interval(secs => t.wait) END
              FROM t JOIN held ON held.id = t.job_id
             WHERE w.id = t.log_id AND w.status = 'pending' AND t.status IS NOT NULL)
        SELECT id FROM held
        """), cols).scalars().all()


# ---- merchant-facing operations -------------------------------------------------------------

def list_logs(c, merchant_id, limit, offset, window=(None, None)):
    """The merchant's webhook logs, newest first."""
    return db.page(c, "webhook_logs", "id, event, status, attempts, created_at, last_attempt_at, next_retry_at, "
                       "response_code", "merchant_id = :m", {"m": merchant_id}, limit, offset, window)


def retry(c, merchant_id, log_id):
    """Reset attempts and deliver now. The log's own job is reused when it is still queued, so
    there is never more than one delivery job per log."""
    try:
        log_id = str(uuid.UUID(log_id))
    except ValueError:
        raise NotFound("Webhook log not found.") from None  # not even an id: checked here, not by a failed query
    row = c.execute(text("SELECT id, job_id FROM webhook_logs WHERE id = CAST(:id AS uuid) AND merchant_id = :m "
                         "FOR UPDATE"), {"id": log_id, "m": merchant_id}).mappings().first()
    if row is None:
        raise NotFound("Webhook log not found.")
    job = c.execute(text("SELECT status FROM jobs WHERE id = :id"), {"id": row["job_id"]}).scalar()
    if job == "processing":
        raise Conflict("A delivery attempt for this webhook is in progress; retry in a few seconds.")
    c.execute(text("UPDATE webhook_logs SET status = 'pending', attempts = 0, next_retry_at = now(), "
                   "response_code = NULL, response_body = NULL WHERE id = :id"), {"id": row["id"]})
    if job == "pending":
        c.execute(text("UPDATE jobs SET next_run_at = now(), attempts = 0, updated_at = now() WHERE id = :id"),
                  {"id": row["job_id"]})
    else:
        job_id = jobs.enqueue(c, DELIVER, {"log_id": str(row["id"]), "merchant_id": str(merchant_id)})
        c.execute(text("UPDATE webhook_logs SET job_id = :j WHERE id = :id"), {"j": job_id, "id": row["id"]})
    return {"id": str(row["id"]), "status": "pending", "message": "Webhook retry scheduled"}


def get_config(c, merchant_id):
    return dict(c.execute(text("SELECT webhook_url, webhook_secret FROM merchants WHERE id = :m"),
                          {"m": merchant_id}).mappings().one())


def set_url(c, merchant_id, url, allow_private, allowed_hosts=()):
    """Save (or clear, with null/"") the merchant's webhook URL after checking it."""
    url = (url or "").strip() or None
    if url is not None:
        outbound.check_url(url, allow_private, allowed_hosts)
    c.execute(text("UPDATE merchants SET webhook_url = :u, updated_at = now(), "
                   "webhook_secret = COALESCE(webhook_secret, :s) WHERE id = :m"),
              {"u": url, "m": merchant_id, "s": new_secret()})
    return get_config(c, merchant_id)


def regenerate_secret(c, merchant_id):
    c.execute(text("UPDATE merchants SET webhook_secret = :s, updated_at = now() WHERE id = :m"),
              {"s": new_secret(), "m": merchant_id})
    return get_config(c, merchant_id)


def send_test(c, merchant_id):
    """Queue a webhook.test event; 400 when no URL is configured. Returns the URL."""
    url = get_config(c, merchant_id)["webhook_url"]
    if not url:
        raise ApiError("Configure a webhook URL first.", field="webhook_url")
    emit_event(c, merchant_id, WEBHOOK_TEST, {"message": "This is a test webhook.", "merchant_id": str(merchant_id)})
    return url
