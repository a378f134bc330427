"""Exact totals without counting a merchant's history on every request.

The `rollups` table holds, per merchant, UTC hour of created_at, status and currency, how many rows
a table has and their amount, for every hour before that table's `sealed_until`. A total over any
window is then the rollups of the whole sealed hours inside it plus a count of the few rows outside
them (the partial hours at its edges and the hours not sealed yet): a few hundred rows at most,
whatever the history.

- Payment creation never touches a rollup (a counter row per merchant would serialise its
  payments): the worker seals hours once they are over (`seal`, every minute).
- A row of a sealed hour that changes status (a payment settled an hour after it was made, a
  refund processed late, an operator's UPDATE or DELETE) moves its count in the same transaction,
  by the trigger of migration 0003; a row changed in the hour it was made, the usual case, does
  not even call it.
- Sealing waits for every transaction that started before the hours it seals: a payment inserted
  by a transaction that began at 10:59:59.9 and commits at 11:00:01 carries created_at 10:59:59.9,
  so hour 10 is sealed only once that transaction is over.
"""
from datetime import datetime, timedelta, timezone

import click

from . import db

KINDS = {  # kind (the table counted) -> what its rollup sums; currency '' where there is none
    "payments": "currency, amount",
    "orders": "currency, amount",
    "refunds": "'' AS currency, amount",
    "webhook_logs": "'' AS currency, 0 AS amount",
}
LOCK = 7240002  # exclusive while sealing; the trigger takes it shared
HOUR = timedelta(hours=1)


def _floor(t):
    return t.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _ceil(t):
    f = _floor(t)
    if f == t:
        return f
    try:
        return f + HOUR
    except OverflowError:  # the last hour of year 9999: nothing can be later
        return None


def horizon(c):
    """Now, or the start of the oldest transaction still running if earlier: no row can appear
    later with a created_at before it (created_at is its transaction's start). Read before the
    data's snapshot, so any transaction not seen running here has committed by then or starts
    after now(). Sessions of other database roles hide their start: writers share the gateway's."""
    return db.value(c, """
        SELECT least(now(), min(xact_start)) FROM pg_stat_activity
         WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
           AND xact_start IS NOT NULL
        """)


def seal(c, recount_from=None):
    """Count every hour that is over and that no running transaction can still add rows to;
    with recount_from, count again every hour from then (all when it is the epoch), in the same
    transaction, so a reader never sees the rollups go back. Returns the rollup rows written."""
    until = _floor(horizon(c))
    written = 0
    with db.transaction(c):
        db.execute(c, "SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": LOCK})
        if recount_from is not None:
            recount_from = _floor(recount_from)
            db.execute(c, "DELETE FROM rollups WHERE hour >= %(t)s", {"t": recount_from})
        for row in db.all(c, "SELECT kind, sealed_until FROM rollups_sealed"):
            kind, since = row["kind"], row["sealed_until"]
            if kind not in KINDS:
                continue
            end = max(until, since) if since else until  # an hour once sealed stays sealed
            if recount_from is not None and since:
                since = min(since, recount_from)
            if since is not None and since >= end:
                continue
            written += db.execute(c, f"""
                INSERT INTO rollups AS t (merchant_id, kind, hour, status, currency, n, amount)
                SELECT merchant_id, %(kind)s, date_trunc('hour', created_at, 'UTC'), status, currency, count(*), sum(amount)
                  FROM (SELECT merchant_id, created_at, status, {KINDS[kind]} FROM {kind}
                         WHERE created_at < %(end)s{' AND created_at >= %(since)s' if since else ''}) AS rows
                 GROUP BY 1, 3, 4, 5
                ON CONFLICT (merchant_id, kind, hour, status, currency)
                DO UPDATE SET n = t.n + EXCLUDED.n, amount = t.amount + EXCLUDED.amount
                """, {"kind": kind, "since": since, "end": end})
            db.execute(c, "UPDATE rollups_sealed SET sealed_until = %(end)s WHERE kind = %(kind)s", {"kind": kind, "end": end})
    return written


def sealed_until(c, kind):
    """Where the kind's rollups end (None: nothing sealed yet). It only ever moves forward, so a
    value read a moment ago is still a correct bound: the hours before it stay sealed."""
    return db.value(c, "SELECT sealed_until FROM rollups_sealed WHERE kind = %(kind)s", {"kind": kind})


def count(c, kind, merchant_id, window=(None, None), status=None):
    """The exact number of the merchant's rows of `kind` with created_at in window ((from, to) as
    datetimes, to exclusive, None for open) and, optionally, this status."""
    lo, hi = window
    if lo and hi and lo >= hi:
        return 0
    sealed = sealed_until(c, kind)
    first = _ceil(lo) if lo else None  # the whole sealed hours inside the window: [first, last)
    last = min(_floor(hi), sealed) if hi and sealed else sealed
    if lo and first is None:  # the window starts in the last hour there is
        last = None
    params = {"m": merchant_id, "kind": kind, "status": status}
    match = "merchant_id = %(m)s" + (" AND status = %(status)s" if status else "")
    if last is None or (first is not None and first >= last):
        hours, ranges = None, [(lo, hi)]
    else:  # the rollups cover [first, last); the rows around them are counted
        hours, ranges = (first, last), ([(lo, first)] if lo else []) + [(last, hi)]
    parts = []
    for i, (start, end) in enumerate(ranges):
        if start is not None and end is not None and start >= end:
            continue
        bounds = ""
        if start is not None:
            bounds, params[f"s{i}"] = bounds + f" AND created_at >= %(s{i})s", start
        if end is not None:
            bounds, params[f"e{i}"] = bounds + f" AND created_at < %(e{i})s", end
        parts.append(f"(SELECT count(*) FROM {kind} WHERE {match}{bounds})")
    if hours:
        params["first"], params["last"] = hours
        parts.append(f"(SELECT coalesce(sum(n), 0)::bigint FROM rollups WHERE kind = %(kind)s AND {match}"
                     + (" AND hour >= %(first)s" if hours[0] else "") + " AND hour < %(last)s)")
    return db.value(c, "SELECT " + " + ".join(parts or ["0"]), params)


def summary(c, kind, merchant_id, since=None, by_day=False):
    """The merchant's rows of `kind` created since `since` (a UTC hour; None for all) by status and
    currency, with their amount; per UTC day too with by_day: rows of {day?, status, currency, n,
    amount}. The sealed hours from the rollups, the rest counted."""
    sealed = sealed_until(c, kind)
    day, group = ("date_trunc('day', at, 'UTC') AS day, ", "1, 2, 3") if by_day else ("", "1, 2")
    return db.all(c, f"""
        SELECT {day}status, currency, sum(n)::bigint AS n, sum(amount)::bigint AS amount FROM (
            SELECT hour AS at, status, currency, n, amount FROM rollups
             WHERE merchant_id = %(m)s AND kind = %(kind)s AND hour < %(sealed)s::timestamptz
               AND hour >= coalesce(%(since)s::timestamptz, '-infinity')
            UNION ALL
            SELECT created_at, status, currency, 1, amount FROM (
                SELECT created_at, status, {KINDS[kind]} FROM {kind}
                 WHERE merchant_id = %(m)s AND created_at >= greatest(coalesce(%(sealed)s::timestamptz, '-infinity'),
                                                                      coalesce(%(since)s::timestamptz, '-infinity'))
            ) AS live
        ) AS t GROUP BY {group} ORDER BY 1
        """, {"m": merchant_id, "kind": kind, "sealed": sealed, "since": since})


def counter(c, kind, merchant_id, status=None):
    """count() as db.page takes it: the total of the merchant's list for a window."""
    return lambda start, end: count(c, kind, merchant_id, (start, end), status)


@click.command("recount-rollups")
@click.option("--since", default="2000-01-01", show_default=True, help="Count again every hour from this date (UTC).")
def recount_command(since):
    """Count the rollups again (after rows were written with triggers off, e.g. a data-only restore)."""
    start = datetime.fromisoformat(since).replace(tzinfo=timezone.utc)
    with db.connect(db.pool()) as c:
        click.echo(f"{seal(c, recount_from=start)} rollup rows written.")
