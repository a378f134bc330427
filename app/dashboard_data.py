"""What the dashboard reads: stats, the payments chart, a payment's webhook events, the workers.
Plain functions over parameterised SQL that never commit (all reads, but for ending sessions)."""

from . import db
from .health import HEARTBEAT_FRESH_SECONDS

CHART_DAYS = 14


def find_login(c, email):
    """The active merchant with this email (case-insensitive), with its password hash and session
    version, or None."""
    row = db.one(c, "SELECT id, password_hash, session_version FROM merchants WHERE lower(email) = lower(%(e)s) AND is_active", {"e": email})
    return dict(row) if row else None


def end_sessions(c, merchant_id):
    """Sign the merchant out everywhere: every session cookie issued so far stops opening pages."""
    db.execute(c, "UPDATE merchants SET session_version = session_version + 1 WHERE id = %(m)s", {"m": merchant_id})


def stats(c, merchant_id):
    """Totals over the merchant's payments: count of all, amount of the successful ones (per
    currency, INR first) and the success rate among settled payments (whole percent, rounded down
    so a single failure never shows as 100%)."""
    row = db.one(c, """
        SELECT count(*) AS total,
               count(*) FILTER (WHERE status = 'success') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed
          FROM payments WHERE merchant_id = %(m)s
        """, {"m": merchant_id})
    amounts = db.all(c, "SELECT currency, sum(amount) AS amount FROM payments WHERE merchant_id = %(m)s AND status = 'success' "
        "GROUP BY currency ORDER BY currency <> 'INR', currency", {"m": merchant_id})
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
    rows = db.all(c, """
        SELECT d::date AS day,
               count(p.id) AS total,
               count(p.id) FILTER (WHERE p.status = 'success') AS succeeded
          FROM generate_series((now() AT TIME ZONE 'UTC')::date - (%(days)s - 1), (now() AT TIME ZONE 'UTC')::date,
                               interval '1 day') AS d
          LEFT JOIN payments p
                 ON p.merchant_id = %(m)s
                AND p.created_at >= d AT TIME ZONE 'UTC'
                AND p.created_at < (d + interval '1 day') AT TIME ZONE 'UTC'
         GROUP BY d ORDER BY d
        """, {"m": merchant_id, "days": days})
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
    rows = db.all(c, """
        SELECT id, event, status, attempts, created_at, last_attempt_at, next_retry_at, response_code
          FROM webhook_logs
         WHERE merchant_id = %(m)s AND payload -> 'data' -> 'payment' ->> 'id' = %(p)s
         ORDER BY created_at, id
        """, {"m": merchant_id, "p": payment_id})
    return [dict(r) for r in rows]


# ---- workers ----------------------------------------------------------------------------------

def workers(c):
    """Recent worker heartbeats, newest first; `alive` as /health decides it."""
    rows = db.all(c, """
        SELECT worker_id, hostname, pid, started_at, beat_at,
               beat_at > now() - make_interval(secs => %(fresh)s) AS alive,
               extract(epoch FROM now() - beat_at) AS beat_age
          FROM worker_heartbeats ORDER BY beat_at DESC LIMIT 10
        """, {"fresh": HEARTBEAT_FRESH_SECONDS})
    return [dict(r, beat_age=float(r["beat_age"])) for r in rows]
