"""The dashboard's transactions: its filters (status, one search box, a date range in the merchant's
time zone), a page of the filtered payments by cursor, and all of them as CSV in keyset batches.
Every filter reads through an index (schema.sql), so a page costs the same at a million payments."""
import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from . import dashboard_data, db, ids, payments, rollups
from .errors import NotFound
from .money import plain
from .schemas import PAYMENT_STATUSES
from .timefmt import iso

# What the list and the CSV show beside the payment: its order's receipt and what was refunded of it.
COLUMNS = (payments.COLUMNS
           + ", (SELECT o.receipt FROM orders o WHERE o.id = payments.order_id) AS receipt"
           + ", (SELECT coalesce(sum(r.amount), 0) FROM refunds r WHERE r.payment_id = payments.id)::bigint AS refunded")
# A receipt search reads at most this many of the merchant's orders with that receipt (newest first).
RECEIPT_ORDERS = 1000
# A search shows how many payments match, counted up to this many ("1,000+").
MATCH_CAP = 1000
EXPORT_BATCH = 1000
MAX_QUERY = 100
# The dates a filter takes: a day either side still fits a datetime in any time zone.
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(9998, 12, 31)


@dataclass
class Filters:
    """What the transactions page was asked for; `errors` are shown above the list (the filter
    they name is left out, the others still apply)."""
    status: str = ""
    q: str = ""
    start: date | None = None
    end: date | None = None
    errors: list = field(default_factory=list)

    def args(self):
        """The query string that asks for these filters again (pager and export links)."""
        values = {"status": self.status, "q": self.q, "from": self.start and self.start.isoformat(),
                  "to": self.end and self.end.isoformat()}
        return {k: v for k, v in values.items() if v}

    def window(self, tz):
        """[from, to) as aware datetimes: whole days in `tz`, both dates inclusive (None: open)."""
        return (datetime.combine(self.start, time(), tz) if self.start else None,
                datetime.combine(self.end + timedelta(days=1), time(), tz) if self.end else None)


def _date(args, name, label, errors):
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        errors.append(f"{label} date {raw[:20]!r} is not a date: pick one, or type it as YYYY-MM-DD.")
        return None
    if not FIRST_DATE <= day <= LAST_DATE:
        errors.append(f"{label} date {raw} is out of range: pick one between {FIRST_DATE} and {LAST_DATE}.")
        return None
    return day


def parse(args):
    """The filters in a request's query string; an unknown status is no filter, as before."""
    f = Filters(status=args.get("status", "") if args.get("status") in PAYMENT_STATUSES else "",
                q=(args.get("q") or "").replace("\x00", "").strip()[:MAX_QUERY])  # PostgreSQL text holds no NUL
    f.start, f.end = _date(args, "from", "From", f.errors), _date(args, "to", "To", f.errors)
    if f.start and f.end and f.start > f.end:
        f.errors.append("The From date is after the To date: no payment can be in between.")
        f.start = f.end = None
    return f


def search_kind(q):
    """What the search box holds, by its shape: a payment id, an order id, a card's last four
    digits, a VPA (has an @), otherwise an order receipt."""
    if not q:
        return None
    if q.startswith("pay_"):
        return "payment"
    if q.startswith("order_"):
        return "order"
    if re.fullmatch(r"\d{4}", q):
        return "last4"
    return "vpa" if "@" in q else "receipt"


def _where(c, merchant_id, f, tz):
    """The filters as SQL over payments, with their parameters."""
    where, params = ["merchant_id = %(m)s"], {"m": merchant_id}
    if f.status:
        where.append("status = %(status)s")
        params["status"] = f.status
    since, until = f.window(tz)
    if since:
        where.append("created_at >= %(since)s")
        params["since"] = since
    if until:
        where.append("created_at < %(until)s")
        params["until"] = until
    kind = search_kind(f.q)
    params["q"] = f.q
    if kind == "payment":
        where.append("id = %(q)s")
    elif kind == "order":
        where.append("order_id = %(q)s")
    elif kind in ("last4", "vpa"):
        # payments_merchant_customer's expression: a VPA always has an @, so it never equals 4 digits.
        where.append("lower(coalesce(vpa, card_last4)) = lower(%(q)s)")
    elif kind == "receipt":
        orders = db.all(c, "SELECT id FROM orders WHERE merchant_id = %(m)s AND receipt = %(q)s "
                           "ORDER BY created_at DESC LIMIT %(n)s", dict(params, n=RECEIPT_ORDERS))
        where.append("order_id = ANY(%(orders)s)")
        params["orders"] = [r["id"] for r in orders]
    return " AND ".join(where), params


def _cursor(c, merchant_id, payment_id):
    """(created_at, id) of the merchant's payment with this id; None for any other text, which
    starts the list from the newest."""
    try:
        ids.check("pay_", payment_id, "Payment")
    except NotFound:
        return None
    return dashboard_data.cursor_of(c, "payments", merchant_id, payment_id)


def browse(c, merchant_id, f, tz, before=None, after=None, size=20):
    """A page of the filtered payments, newest first, by cursor (as dashboard_data.browse). Without
    a search, the page's place and the total come from the rollups (exact, constant cost); with one,
    `matches` counts the matching payments up to MATCH_CAP instead."""
    where, params = _where(c, merchant_id, f, tz)
    cursor = _cursor(c, merchant_id, after or before) if after or before else None
    rows, newer, older = db.keyset(c, "payments", COLUMNS, where, params, size,
                                   before=cursor if before else None, after=cursor if after else None)
    paging = {"rows": rows, "newer": newer, "older": older}
    if f.q:
        n = db.value(c, f"SELECT count(*) FROM (SELECT 1 FROM payments WHERE {where} LIMIT %(cap)s) t",
                     dict(params, cap=MATCH_CAP + 1))
        paging["matches"] = (f"{MATCH_CAP:,}+" if n > MATCH_CAP else str(n)) + f" matching payment{'' if n == 1 else 's'}"
        return paging
    since, until = f.window(tz)
    status = f.status or None
    place = dashboard_data.rows_before(c, "payments", merchant_id, rows, newer, where, params, status, until)
    return dict(paging, total=rollups.count(c, "payments", merchant_id, (since, until), status),
                first=place + 1 if rows else 0, last=place + len(rows))


def refund_state(p):
    if p["refunded"] <= 0:
        return ""
    return "Refunded" if p["refunded"] >= p["amount"] else "Partly refunded"


# ---- CSV ----------------------------------------------------------------------------------------

CSV_HEADER = ["payment_id", "order_id", "receipt", "status", "amount", "amount_paise", "currency", "refunded",
              "refunded_paise", "refund_state", "method", "vpa", "card_network", "card_last4", "captured",
              "error_code", "error_description", "notes", "created_at_utc", "created_at_local"]
# A cell a spreadsheet would read as a formula: =, +, -, @ (and a tab or carriage return before one).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_row(p, tz):
    notes = json.dumps(p["notes"], ensure_ascii=False, separators=(",", ":")) if p["notes"] else ""
    return [_cell(v) for v in (
        p["id"], p["order_id"], p["receipt"], p["status"], plain(p["amount"], p["currency"]), p["amount"], p["currency"],
        plain(p["refunded"], p["currency"]), p["refunded"], refund_state(p), p["method"], p["vpa"], p["card_network"],
        p["card_last4"], "true" if p["captured"] else "false", p["error_code"], p["error_description"], notes,
        iso(p["created_at"]), p["created_at"].astimezone(tz).isoformat(timespec="seconds"))]


def export(c, merchant_id, f, tz):
    """The filtered payments as CSV text, a header then a batch of EXPORT_BATCH rows at a time, newest
    first: each batch is one keyset query, so memory and each query's cost stay flat however many."""
    where, params = _where(c, merchant_id, f, tz)
    out = io.StringIO()
    writer = csv.writer(out)

    def flush():
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        return text

    writer.writerow(CSV_HEADER)
    yield flush()
    cursor, more = None, True
    while more:
        rows, _, more = db.keyset(c, "payments", COLUMNS, where, params, EXPORT_BATCH, before=cursor)
        if not rows:
            break
        writer.writerows(csv_row(p, tz) for p in rows)
        cursor = (rows[-1]["created_at"], rows[-1]["id"])
        yield flush()
