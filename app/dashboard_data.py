"""What the dashboard reads: stats, the payments chart, a payment's webhook events, the queue.
Plain functions over parameterised SQL that never commit (all reads, but for ending sessions)."""

from .health import HEARTBEAT_FRESH_SECONDS
from .pg import text

CHART_DAYS = 14
JOB_STATUSES = ("pending", "processing", "completed", "dead")


def find_login(c, email):
    """The active merchant with this email (case-insensitive), with its password hash and session
    version, or None."""
    row = c.execute(text(
        "SELECT id, password_hash, session_version FROM merchants WHERE lower(email) = lower(:e) AND is_active"),
        {"e": email}).mappings().first()
    return dict(row) if row else None


def end_sessions(c, merchant_id):
    """Sign the merchant out everywhere: every session cookie issued so far stops opening pages."""
    c.execute(text("UPDATE merchants SET session_version = session_version + 1 WHERE id = :m"),
              {"m": merchant_id})


def stats(c, merchant_id):
    """Totals over the merchant's payments: count of all, amount of the successful ones (per
    currency, INR first) and the success rate among settled payments (whole percent, rounded down
    so a single failure never shows as 100%)."""
    row = c.execute(text(
        """
        SELECT count(*) AS total,
               count(*) FILTER (WHERE status = 'success') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed
          FROM payments WHERE merchant_id = :m
        """), {"m": merchant_id}).mappings().one()
    amounts = c.execute(text(
        "SELECT currency, sum(amount) AS amount FROM payments WHERE merchant_id = :m AND status = 'success' "
        "GROUP BY currency ORDER BY currency <> 'INR', currency"), {"m": merchant_id}).mappings().all()
    settled = row["succeeded"] + row["failed"]
    by_currency = {a["currency"]: int(a["amount"]) for a in amounts}
    return {
        "total_transactions": row["total"],
        "succeeded": row["succeeded"],
        "failed": row["failed"],
        "in_flight": row["total"] - settled,
        "total_amount": by_currency.pop("INR", 0),
        "other_amounts": by_currency,
        "success_rate": (row["succeeded"] * 100 // settled) if settled else 0,
    }


def payments_per_day(c, merchant_id, days=CHART_DAYS):
    """One row per UTC day of the last `days` days (today included, empty days as zeros)."""
    rows = c.execute(text(
        """
        SELECT d::date AS day,
               count(p.id) AS total,
               count(p.id) FILTER (WHERE p.status = 'success') AS succeeded
          FROM generate_series((now() AT TIME ZONE 'UTC')::date - (:days - 1), (now() AT TIME ZONE 'UTC')::date,
                               interval '1 day') AS d
          LEFT JOIN payments p
                 ON p.merchant_id = :m
                AND p.created_at >= d AT TIME ZONE 'UTC'
                AND p.created_at < (d + interval '1 day') AT TIME ZONE 'UTC'
         GROUP BY d ORDER BY d
        """), {"m": merchant_id, "days": days}).mappings().all()
    return [dict(r) for r in rows]


def chart(days_rows, width=560, height=170, top=16, label_height=18):
    """Geometry of a bar chart (in SVG user units) for the template: no JavaScript, no library.
    `top` leaves room for the count above the tallest bar."""
    peak = max([r["total"] for r in days_rows] + [1])
    slot = width / max(len(days_rows), 1)
    plot = height - label_height  # the baseline
    scale = (plot - top) / peak
    bars = []
    for i, r in enumerate(days_rows):
        h, hs = round(r["total"] * scale, 1), round(r["succeeded"] * scale, 1)
        bars.append({"x": round(i * slot + slot * 0.15, 1), "w": round(slot * 0.7, 1),
                     "y": round(plot - h, 1), "h": h, "ys": round(plot - hs, 1), "hs": hs,
                     "cx": round(i * slot + slot / 2, 1), "day": r["day"], "total": r["total"],
                     "succeeded": r["succeeded"]})
    return {"width": width, "height": height, "plot": plot, "top": top, "peak": peak, "bars": bars}


def webhook_events_for_payment(c, merchant_id, payment_id):
    """The webhook events that carry this payment (payment.* and refund.* events)."""
    rows = c.execute(text(
        """
        SELECT id, event, status, attempts, created_at, last_attempt_at, next_retry_at, response_code
          FROM webhook_logs
         WHERE merchant_id = :m AND payload -> 'data' -> 'payment' ->> 'id' = :p
         ORDER BY created_at, id
        """), {"m": merchant_id, "p": payment_id}).mappings().all()
    return [dict(r) for r in rows]


# ---- the job queue ----------------------------------------------------------------------------

def queue_overview(c):
    """Counts by kind and status, and how long the oldest pending job has waited."""
    by_kind = {}
    for kind, status, n in c.execute(text("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status ORDER BY kind")):
        by_kind.setdefault(kind, dict.fromkeys(JOB_STATUSES, 0))[status] = n
    totals = {s: sum(k[s] for k in by_kind.values()) for s in JOB_STATUSES}
    ages = c.execute(text(
        """
        SELECT extract(epoch FROM now() - min(created_at)) AS oldest_pending,
               extract(epoch FROM now() - min(next_run_at) FILTER (WHERE next_run_at <= now())) AS oldest_due,
               count(*) FILTER (WHERE next_run_at <= now()) AS due
          FROM jobs WHERE status = 'pending'
        """)).mappings().one()
    return {"by_kind": by_kind, "totals": totals, "due": ages["due"],
            "oldest_pending_seconds": None if ages["oldest_pending"] is None else float(ages["oldest_pending"]),
            "oldest_due_seconds": None if ages["oldest_due"] is None else float(ages["oldest_due"])}


def workers(c):
    """Recent worker heartbeats, newest first; `alive` as /health decides it."""
    rows = c.execute(text(
        """
        SELECT worker_id, hostname, pid, started_at, beat_at,
               beat_at > now() - make_interval(secs => :fresh) AS alive,
               extract(epoch FROM now() - beat_at) AS beat_age
          FROM worker_heartbeats ORDER BY beat_at DESC LIMIT 10
        """), {"fresh": HEARTBEAT_FRESH_SECONDS}).mappings().all()
    return [dict(r, beat_age=float(r["beat_age"])) for r in rows]


def dead_jobs(c, merchant_id, limit=20):
    """The most recent dead jobs that concern this merchant's payments, refunds or webhooks.
    The queue is shared by all merchants: a job's last_error may name another merchant's objects,
    so only this merchant's own are listed (the counts above are public anyway)."""
    rows = c.execute(text(
        """
        SELECT j.id, j.kind, j.attempts, j.max_attempts, j.last_error, j.created_at, j.updated_at,
               coalesce(j.payload ->> 'payment_id', j.payload ->> 'refund_id', j.payload ->> 'log_id') AS subject
          FROM jobs j
         WHERE j.status = 'dead'
           AND (j.payload ->> 'merchant_id' = CAST(:m AS text)
                OR EXISTS (SELECT 1 FROM payments p WHERE p.id = j.payload ->> 'payment_id' AND p.merchant_id = :m)
                OR EXISTS (SELECT 1 FROM refunds r WHERE r.id = j.payload ->> 'refund_id' AND r.merchant_id = :m))
         ORDER BY j.updated_at DESC, j.id DESC
         LIMIT :limit
        """), {"m": merchant_id, "limit": limit}).mappings().all()
    return [dict(r) for r in rows]
