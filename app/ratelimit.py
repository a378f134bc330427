"""Rate limits shared by every process and host: one PostgreSQL row per limited key, one statement
per hit (no Redis).

A limit of N per period P is a window that opens at a key's first hit and lasts P: at most N hits
in it, then refusals until it ends (Retry-After says when), and the next hit opens a new window.
A row whose window has ended means the same as no row, so spent rows may be deleted at any time.
"""
import dataclasses
import math
import random
import re
import threading
import time

from . import db

FORMAT = "N/[k]second|minute|hour|day[s], e.g. 5/15minutes or 30/minute"
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
PURGE_CHANCE = 1 / 200  # a hit now and then deletes spent rows, so keys never seen again go away


@dataclasses.dataclass(frozen=True)
class Limit:
    """At most `count` hits per `period` seconds."""

    count: int
    period: int


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer to one hit: allowed or not, and what the RateLimit-* headers say."""

    allowed: bool
    limit: Limit
    remaining: int
    reset: float  # seconds until the window ends
    retry_after: float  # seconds until a hit would be allowed (0 when this one was)

    def headers(self):
        """Retry-After (when refused) and the RateLimit-* headers, in whole seconds."""
        out = {"RateLimit-Limit": str(self.limit.count), "RateLimit-Remaining": str(self.remaining),
               "RateLimit-Reset": str(math.ceil(self.reset))}
        if not self.allowed:
            out["Retry-After"] = str(max(math.ceil(self.retry_after), 1))
        return out


def parse(value):
    """'5/15minutes' -> Limit(5, 900); a ValueError naming the format for anything else."""
    m = _LIMIT.match(value or "")
    count, multiple = (int(m.group(1)), int(m.group(2) or 1)) if m else (0, 0)
    if count < 1 or multiple < 1:
        raise ValueError(f"rate limit {value!r}: expected {FORMAT}")
    return Limit(count, multiple * _UNIT_SECONDS[m.group(3).lower()])


SETTINGS = ("LOGIN_RATE_LIMIT", "LOGIN_ADDRESS_RATE_LIMIT", "API_RATE_LIMIT")


def setting(name, value):
    """parse() of the setting `name`: its ValueError names the setting, and stops the start."""
    try:
        return parse(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


# The upsert counts the hit only when it fits (its WHERE); `before` comes from the statement's
# snapshot, so a refused hit learns when its window ends without a second round trip.
_HIT = """
    WITH t AS (SELECT statement_timestamp() AS now),
    before AS (SELECT reset_at FROM rate_limits WHERE key = %(key)s),
    hit AS (
        INSERT INTO rate_limits AS r (key, hits, reset_at)
        SELECT %(key)s, %(n)s, t.now + make_interval(secs => %(period)s) FROM t
        ON CONFLICT (key) DO UPDATE
           SET hits = CASE WHEN r.reset_at <= statement_timestamp() THEN %(n)s ELSE r.hits + %(n)s END,
               reset_at = CASE WHEN r.reset_at <= statement_timestamp() THEN EXCLUDED.reset_at
                               ELSE r.reset_at END
         WHERE r.reset_at <= statement_timestamp() OR r.hits + %(n)s <= %(count)s
        RETURNING hits, reset_at)
    SELECT (SELECT hits FROM hit) AS hits,
           extract(epoch FROM coalesce((SELECT reset_at FROM hit), (SELECT reset_at FROM before)) - t.now)::float8
               AS reset
      FROM t
    """


def hit(c, key, limit, n=1):
    """Count n hits on `key` if they fit in `limit`; refused hits are not counted. One statement,
    committed by itself unless the caller holds a transaction open (then the key's row stays
    locked until it ends)."""
    if random.random() < PURGE_CHANCE:
        purge(c)
    row = db.one(c, _HIT, {"key": key, "count": limit.count, "period": limit.period, "n": n})
    # A refused hit whose row a concurrent first hit inserted after this statement's snapshot has
    # no `reset` of its own: that window has just opened, so the whole period is the wait.
    reset = limit.period if row["reset"] is None else max(row["reset"], 0.0)
    if row["hits"] is not None:
        return Decision(True, limit, limit.count - row["hits"], reset, 0.0)
    return Decision(False, limit, 0, reset, reset)


# take(): what this process holds per key, so that most calls need no statement: key ->
# [monotonic time the window ends, calls reserved and not used yet, shared remaining at the take,
# refused]. A refusal is remembered until the window ends (a full window stays full: hits are
# never given back on these keys).
RESERVE_FRACTION = 100  # a process reserves a 1/100th of a limit at a time
_held = {}
_held_lock = threading.Lock()


def take(c, key, limit):
    """One call against `limit` on `key`, shared by every process and host. A limit under
    2 × RESERVE_FRACTION per period costs a statement per call and is exact. A larger one is
    taken a block of limit/RESERVE_FRACTION calls at a time, each block one statement, and served
    from this process's memory: a window never admits more than the limit, but it may admit up to
    a block per process less, and RateLimit-Remaining counts only this process's unused block.
    A refused key is refused from memory until its window ends (a runaway script costs the
    database nothing). Measured: one statement per call cost 20 % of POST /orders' throughput
    with a limit set high; a block per 1 % of the limit, within the noise (docs/decisions/005-api-rate-limit.md)."""
    now = time.monotonic()
    with _held_lock:
        held = _held.get(key)
        if held is not None and held[0] > now:
            if held[3]:
                return Decision(False, limit, 0, held[0] - now, held[0] - now)
            if held[1] > 0:
                held[1] -= 1
                return Decision(True, limit, held[2] + held[1], held[0] - now, 0.0)
    block = limit.count // RESERVE_FRACTION
    decision = hit(c, key, limit, n=block) if block >= 2 else None
    if decision is None or not decision.allowed:
        decision = hit(c, key, limit)  # the last calls of a window go one at a time
        block = 1
    if block > 1 or not decision.allowed:
        with _held_lock:
            if len(_held) >= 10_000:
                _held.clear()
            _held[key] = [now + decision.reset, block - 1, decision.remaining, not decision.allowed]
    if decision.allowed:
        return Decision(True, limit, decision.remaining + block - 1, decision.reset, 0.0)
    return decision


def give_back(c, key):
    """Undo one counted hit (it turned out not to be one the limit is about)."""
    db.execute(c, "UPDATE rate_limits SET hits = hits - 1 WHERE key = %(key)s AND hits > 0", {"key": key})


def clear(c, key):
    """Forget every hit on `key`."""
    db.execute(c, "DELETE FROM rate_limits WHERE key = %(key)s", {"key": key})


def purge(c, batch=1000):
    """Delete spent rows (their window has ended), skipping rows a concurrent hit holds."""
    db.execute(c, "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits "
                  "WHERE reset_at < statement_timestamp() LIMIT %(batch)s FOR UPDATE SKIP LOCKED)", {"batch": batch})
