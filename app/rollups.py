"""Exact totals without counting a merchant's history on every request.

The `rollups` table holds, per merchant, UTC hour of created_at, status and currency, how many rows
a table has and their amount, for every hour before that table's `sealed_until`; `rollups_daily`
the same per UTC day, for every day wholly before it. A total over any
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

KINDS = {  # kind (the table counted) -> what its rollups count by: '' and 0 where it has none
    "payments": {"status": "status", "currency": "currency", "amount": "amount"},
    "orders": {"status": "status", "currency": "currency", "amount": "amount"},
    "refunds": {"status": "status", "currency": "''", "amount": "amount"},
    "webhook_logs": {"status": "status", "currency": "''", "amount": "0"},
    "events": {"status": "event", "currency": "''", "amount": "0"},  # by event name, for ?event=
}
LOCK = 7240003  # advisory lock, exclusive while sealing; the trigger takes it shared (migration 0003)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _floor(t, unit=None):
    t = t.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if unit == DAY else t


def _ceil(t, unit=None):
    f = _floor(t, unit)
    if f == t:
        return f
    try:
        return f + (unit or HOUR)
    except OverflowError:  # the last hour or day of year 9999: nothing can be later
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
    """Count every hour that is over and that no running transaction can still add rows to, and
    the days they complete; with recount_from, count again every hour from then, in the same
    transaction, so a reader never sees the rollups go back. Returns the rollup rows written."""
    until = _floor(horizon(c))
    written = 0
    with db.transaction(c):
        db.execute(c, "SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": LOCK})
        if recount_from is not None:
            recount_from = _floor(recount_from)
            db.execute(c, "DELETE FROM rollups WHERE hour >= %(t)s", {"t": recount_from})
            db.execute(c, "DELETE FROM rollups_daily WHERE day >= %(t)s", {"t": _floor(recount_from, DAY)})
        for row in db.all(c, "SELECT kind, sealed_until FROM rollups_sealed"):
            kind, since = row["kind"], row["sealed_until"]
            if kind not in KINDS:
                continue
            end = max(until, since) if since else until  # an hour once sealed stays sealed
            if recount_from is not None and since:
                since = min(since, recount_from)
            if since is not None and since >= end:
                continue
            written += _count_rows(c, kind, kind, "hour", "created_at < %(end)s"
                                   + (" AND created_at >= %(since)s" if since else ""), {"since": since, "end": end})
            # The days that are now whole: the sums of their hours (a day left half counted by a
            # recount starts over from its hours, which are all there).
            day_from = _floor(since, DAY) if since else None
            if day_from:
                db.execute(c, "DELETE FROM rollups_daily WHERE kind = %(kind)s AND day >= %(from)s",
                           {"kind": kind, "from": day_from})
            written += db.execute(c, f"""
                INSERT INTO rollups_daily (merchant_id, kind, day, status, currency, n, amount)
                SELECT merchant_id, kind, date_trunc('day', hour, 'UTC'), status, currency, sum(n), sum(amount)
                  FROM rollups WHERE kind = %(kind)s AND hour < %(to)s{' AND hour >= %(from)s' if day_from else ''}
                 GROUP BY 1, 2, 3, 4, 5
                """, {"kind": kind, "from": day_from, "to": _floor(end, DAY)})
            db.execute(c, "UPDATE rollups_sealed SET sealed_until = %(end)s WHERE kind = %(kind)s", {"kind": kind, "end": end})
    return written


def count_in(c, kind, table):
    """Count in the rows of `table` (attached to `kind` as a partition, so no INSERT trigger saw
    them) where they fall in sealed hours and days, as the trigger would have: in the caller's
    transaction, after the attach."""
    db.execute(c, "SELECT pg_advisory_xact_lock_shared(%(lock)s)", {"lock": LOCK})
    sealed = sealed_until(c, kind)
    if sealed is None:
        return
    for at, bound in (("hour", sealed), ("day", _floor(sealed, DAY))):
        _count_rows(c, kind, table, at, "created_at < %(bound)s", {"bound": bound})


def _count_rows(c, kind, table, at, where, params):
    """Add the rows of `table` (kind's table or one of its partitions) matching `where` to the
    rollups by `at` (hour or day); returns the rollup rows written."""
    rollup = {"hour": "rollups", "day": "rollups_daily"}[at]
    k = KINDS[kind]
    return db.execute(c, f"""
        INSERT INTO {rollup} AS t (merchant_id, kind, {at}, status, currency, n, amount)
        SELECT merchant_id, %(kind)s, date_trunc('{at}', created_at, 'UTC'), {k["status"]}, {k["currency"]},
               count(*), sum({k["amount"]})
          FROM {table} WHERE {where} GROUP BY 1, 3, 4, 5
        ON CONFLICT (merchant_id, kind, {at}, status, currency)
        DO UPDATE SET n = t.n + EXCLUDED.n, amount = t.amount + EXCLUDED.amount
        """, dict(params, kind=kind))


def forget(c, kind, start, end):
    """Delete the rollups of [start, end) (whole UTC days; start None: from the first), in the transaction that dropped every
    row of `kind` in that time, after the drop (which waited for any change to them)."""
    for rollup, at in (("rollups", "hour"), ("rollups_daily", "day")):
        db.execute(c, f"DELETE FROM {rollup} WHERE kind = %(kind)s AND {at} < %(e)s "
                      f"AND {at} >= coalesce(%(s)s::timestamptz, '-infinity')", {"kind": kind, "s": start, "e": end})


def sealed_until(c, kind):
    """Where the kind's rollups end (None: nothing sealed yet). It only ever moves forward, so a
    value read a moment ago is still a correct bound: the hours before it stay sealed."""
    return db.value(c, "SELECT sealed_until FROM rollups_sealed WHERE kind = %(kind)s", {"kind": kind})


def _pieces(lo, hi, sealed):
    """A window [lo, hi) (None: open) cut into what counts it cheapest: ("days", start, end) of
    rollups_daily, ("hours", …) of rollups, ("rows", …) of the table itself, in that order of
    preference; every piece non-empty, together exactly the window."""
    first = _ceil(lo) if lo else None  # the whole sealed hours: [first, last)
    last = min(_floor(hi), sealed) if hi and sealed else sealed
    if last is None or (lo and first is None) or (first is not None and first >= last):
        return [("rows", lo, hi)]
    day_first = _ceil(first, DAY) if first else None  # the whole days among them: [day_first, day_last)
    day_last = _floor(last, DAY)
    if first and (day_first is None or day_first >= day_last):
        middle = [("hours", first, last)]
    else:
        middle = ([("hours", first, day_first)] if first else []) + [("days", day_first, day_last), ("hours", day_last, last)]
    pieces = ([("rows", lo, first)] if lo else []) + middle + [("rows", last, hi)]
    return [p for p in pieces if p[1] is None or p[2] is None or p[1] < p[2]]


def _select(kind, pieces, columns, params, status=None, name=""):
    """One SELECT per piece of the merchant's rows (of this status, if given), `columns` a dict of
    (rollup, row) expressions; `name` prefixes the pieces' parameters, unique per window when several
    windows' SELECTs share one statement."""
    selects = []
    for j, (source, start, end) in enumerate(pieces):
        i = f"{name}{j}"
        table, at = {"days": ("rollups_daily", "day"), "hours": ("rollups", "hour"), "rows": (kind, "created_at")}[source]
        where = "merchant_id = %(m)s" + ("" if source == "rows" else " AND kind = %(kind)s")
        if status:
            where, params["status"] = where + f" AND {KINDS[kind]['status'] if source == 'rows' else 'status'} = %(status)s", status
        if start is not None:
            where, params[f"s{i}"] = where + f" AND {at} >= %(s{i})s", start
        if end is not None:
            where, params[f"e{i}"] = where + f" AND {at} < %(e{i})s", end
        pick = ", ".join(expr[source == "rows"] for expr in columns.values())
        selects.append(f"SELECT {pick} FROM {table} WHERE {where}")
    return selects


def count(c, kind, merchant_id, window=(None, None), status=None):
    """The exact number of the merchant's rows of `kind` with created_at in window ((from, to) as
    datetimes, to exclusive, None for open) and, optionally, this status."""
    lo, hi = window
    if lo and hi and lo >= hi:
        return 0
    params = {"m": merchant_id, "kind": kind}
    parts = _select(kind, _pieces(lo, hi, sealed_until(c, kind)), {"n": ("coalesce(sum(n), 0)::bigint", "count(*)")},
                    params, status)
    return db.value(c, "SELECT " + " + ".join(f"({p})" for p in parts), params)


def count_windows(c, kind, merchant_id, edges):
    """The exact number of the merchant's rows of `kind` per status in each window between
    consecutive `edges` (ascending aware datetimes, e.g. local midnights, on no particular hour):
    a list of {status: n}, one per window, from one statement, each window cut into pieces as count()
    cuts it."""
    params = {"m": merchant_id, "kind": kind}
    sealed = sealed_until(c, kind)
    selects = []
    for w, (lo, hi) in enumerate(zip(edges, edges[1:])):
        columns = {"w": (str(w), str(w)), "status": ("status", KINDS[kind]["status"]), "n": ("n", "1")}
        selects += _select(kind, _pieces(lo, hi, sealed), columns, params, name=f"w{w}_")
    counts = [{} for _ in edges[1:]]
    if selects:
        for r in db.all(c, f"""
                SELECT w, status, sum(n)::bigint AS n FROM ({" UNION ALL ".join(selects)}) AS t (w, status, n)
                 GROUP BY 1, 2
                """, params):
            counts[r["w"]][r["status"]] = r["n"]
    return counts


def summary(c, kind, merchant_id, since=None):
    """The merchant's rows of `kind` created since `since` (None for all) by status and currency,
    with their amount: rows of {status, currency, n, amount}."""
    params = {"m": merchant_id, "kind": kind}
    columns = {"status": ("status", KINDS[kind]["status"]), "currency": ("currency", KINDS[kind]["currency"]),
               "n": ("n", "1"), "amount": ("amount", KINDS[kind]["amount"])}
    rows = _select(kind, _pieces(since, None, sealed_until(c, kind)), columns, params)
    return db.all(c, f"""
        SELECT status, currency, sum(n)::bigint AS n, sum(amount)::bigint AS amount
          FROM ({" UNION ALL ".join(rows)}) AS t (status, currency, n, amount)
         GROUP BY 1, 2 ORDER BY 1
        """, params)


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
