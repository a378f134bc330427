"""What the dashboard reads: stats, the payments chart, a payment's webhook events, the workers.
Plain functions over parameterised SQL that never commit (all reads, but for ending sessions)."""

import uuid
from collections import Counter
from datetime import datetime, time, timedelta, timezone

from . import db, ids, rollups
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
    so a single failure never shows as 100%; None before any settled). From the rollups: flat cost however long the history."""
    count, by_currency = Counter(), Counter()
    for r in rollups.summary(c, "payments", merchant_id):
        count[r["status"]] += r["n"]
        if r["status"] == "success":
            by_currency[r["currency"]] += r["amount"]
    total, succeeded, failed = sum(count.values()), count["success"], count["failed"]
    settled = succeeded + failed
    return {
        "total_transactions": total,
        "succeeded": succeeded,
        "failed": failed,
        "in_flight": total - settled,
        "total_amount": by_currency.pop("INR", 0),
        "other_amounts": dict(sorted(by_currency.items())),
        "success_rate": (succeeded * 100 // settled) if settled else None,  # None: no settled payment yet
    }


def payments_per_day(c, merchant_id, tz, days=CHART_DAYS, now=None):
    """One row per day in time zone `tz` of the last `days` days up to `now` (default: now; today
    included, empty days as zeros): {day, total, succeeded}. From the rollups and the edges of each
    day (a local midnight is seldom on a UTC hour): flat cost however long the history."""
    today = (now or datetime.now(timezone.utc)).astimezone(tz).date()
    dates = [today - timedelta(days=days - 1 - i) for i in range(days + 1)]
    # Each midnight through zoneinfo, so a day across a DST change is its 23 or 25 hours.
    edges = [datetime.combine(d, time(), tz).astimezone(timezone.utc) for d in dates]
    counts = rollups.count_windows(c, "payments", merchant_id, edges)
    return [{"day": d, "total": sum(n.values()), "succeeded": n.get("success", 0)} for d, n in zip(dates, counts)]


def browse(c, kind, columns, merchant_id, status=None, before=None, after=None, size=20, event=None):
    """A page of the merchant's rows of `kind` (webhook_logs), newest first, by cursor: the rows
    just older than the row whose id is `before`, or just newer than `after` (see cursor). Constant
    time however deep, with the page's place in the whole list from the rollups:
    {rows, newer, older, first, last, total}. Filtered by event name there is no total and no
    place: no rollup counts logs by event, and counting would read every one of them per page."""
    where, params = "merchant_id = %(m)s", {"m": merchant_id}
    if status:
        where, params["status"] = where + " AND status = %(status)s", status
    if event:
        where, params["event"] = where + " AND event = %(event)s", event
    at = cursor(c, kind, merchant_id, after or before)
    rows, newer, older = db.keyset(c, kind, columns, where, params, size,
                                   before=at if before else None, after=at if after else None)
    if event:
        return {"rows": rows, "newer": newer, "older": older, "total": None, "first": None, "last": None}
    place = rows_before(c, kind, merchant_id, rows, newer, where, params, status)
    return {"rows": rows, "newer": newer, "older": older, "total": rollups.count(c, kind, merchant_id, status=status),
            "first": place + 1 if rows else 0, "last": place + len(rows)}


def cursor(c, kind, merchant_id, row_id):
    """(created_at, id) of the merchant's row of `kind` (payments, webhook_logs) with this id, where
    a page starts; None for no id, another merchant's, or text that is not an id of that kind (a NUL
    byte would make PostgreSQL raise), which starts the list from the newest."""
    if not row_id or not (ids.is_id("pay_", row_id) if kind == "payments" else _is_uuid(row_id)):
        return None
    row = db.one(c, f"SELECT created_at, id FROM {kind} WHERE merchant_id = %(m)s AND id = %(id)s",
                 {"m": merchant_id, "id": row_id})
    return (row["created_at"], row["id"]) if row else None


def rows_before(c, kind, merchant_id, rows, newer, where, params, status=None, until=None):
    """How many rows (matching `where`, before `until`) come before the page's first one: the newer
    seconds from the rollups, the first row's own second counted, so it costs the same however deep."""
    if not (rows and newer):
        return 0
    top = rows[0]
    place = rollups.count(c, kind, merchant_id, (top["created_at"] + timedelta(microseconds=1), until), status)
    return place + db.value(c, f"SELECT count(*) FROM {kind} WHERE {where} AND created_at = %(at)s AND id > %(id)s",
                            dict(params, at=top["created_at"], id=top["id"]))


def _is_uuid(text):
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


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
