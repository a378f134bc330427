"""webhook_logs partitioned by day (migrations/0004, app/partitions.py) at --rows logs: what dropping
a day and a month of logs costs beside deleting them, what a delivery waits while a drop waits for
its lock, what a lookup by id costs across the partitions with and without created_at, and how
long migration 0004 holds the table of a database it upgrades.

    .venv/bin/python bench/partitions_bench.py --rows 1000000 --days 36

Two databases, each with --rows logs written through webhook_logs by SQL (generate_series; bodies
of about 600 bytes, the payload the same JSON; 10 merchants; spread evenly over --days days):
  bench_partitions_old  migrations 0001 to 0003 only: the table before partitioning;
  bench_partitions      every migration, then one partition per UTC day for --days days back and
                        7 ahead as app/partitions.py names them (44 daily partitions and the
                        DEFAULT one at --days 36).
Lookups are the delivery path's statements run as the worker runs them (psycopg, prepared after
5 runs), timed one by one. Results in docs/decisions/006-webhook-log-partitions.md.
"""
import argparse
import random
import re
import statistics
import threading
import time
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

import common

OLD, NEW = "bench_partitions_old", "bench_partitions"
AHEAD = 7

SEED = """
INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, attempts, last_attempt_at,
                          response_code, created_at)
SELECT (%(merchants)s::uuid[])[1 + i %% 10], 'payment.success', 'evt_' || substr(md5(i::text), 1, 16), b::jsonb, b,
       CASE WHEN i %% 100 = 0 THEN 'pending' ELSE 'success' END, 1, at, 200, at
  FROM generate_series(%(first)s::int, %(last)s::int) i,
       LATERAL (SELECT now() - (i::float8 / %(rows)s::int) * %(days)s::int * interval '1 day' AS at) t,
       LATERAL (SELECT json_build_object('id', 'evt_' || substr(md5(i::text), 1, 16), 'event', 'payment.success',
                                         'timestamp', extract(epoch FROM at)::bigint,
                                         'data', json_build_object('payment', json_build_object(
                                             'id', 'pay_' || substr(md5(i::text), 17, 16), 'amount', 50000,
                                             'currency', 'INR', 'status', 'success', 'method', 'upi',
                                             'vpa', 'shopper@bank', 'notes', repeat(md5(i::text), 12))))::text AS b) j
"""

# webhooks.load_attempts: by id alone (jobs queued before created_at was in their payload), and
# by id within the created_at bounds of the batch (what the worker sends now).
BY_ID = """
SELECT w.id, w.event_id, w.body, w.attempts, w.created_at, m.webhook_url, m.webhook_secret
  FROM webhook_logs w JOIN merchants m ON m.id = w.merchant_id
 WHERE w.id = ANY(CAST(%(ids)s AS uuid[])) AND w.status = 'pending'
"""
BY_ID_AND_TIME = BY_ID + """
   AND w.created_at >= coalesce(%(first)s::timestamptz, '-infinity')
   AND w.created_at <= coalesce(%(last)s::timestamptz, 'infinity')
"""

# webhooks.record_attempts: the outcomes of a batch, by id alone as before, and by id and
# created_at within the batch's bounds.
RECORD = """
UPDATE webhook_logs w
   SET attempts = w.attempts + 1, last_attempt_at = now(), response_code = 200
  FROM unnest(CAST(%(ids)s AS uuid[]), CAST(%(ats)s AS timestamptz[])) AS t(log_id, created_at)
 WHERE w.id = t.log_id
"""
RECORD_WITH_TIME = RECORD + """
   AND w.created_at = t.created_at
   AND w.created_at >= coalesce(%(first)s::timestamptz, '-infinity')
   AND w.created_at <= coalesce(%(last)s::timestamptz, 'infinity')
"""


def connect(url, **kw):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, options="-c timezone=UTC", **kw)


def make_database(name, migrations):
    url = common.server_url()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = common.database_url(url, name)
    with connect(db_url) as c:
        for path in sorted((common.ROOT / "migrations").glob("[0-9]*.sql")):
            if path.name[:4] in migrations:
                c.execute(path.read_text())
    return db_url


def seed(url, rows, days):
    with connect(url) as c:
        merchants = [str(r["id"]) for r in c.execute(
            "INSERT INTO merchants (name, email, api_key, api_secret, webhook_url, webhook_secret) "
            "SELECT 'Bench ' || i, 'bench' || i || '@example.com', 'key_bench_' || i, 's', 'http://127.0.0.1:9/', "
            "'whsec_x' FROM generate_series(1, 10) i RETURNING id")]
        t0 = time.perf_counter()
        step = 100_000
        for first in range(1, rows + 1, step):
            c.execute(SEED, {"merchants": merchants, "first": first, "last": min(rows, first + step - 1), "rows": rows,
                             "days": days})
        c.execute("VACUUM ANALYZE webhook_logs")
        size = c.execute("SELECT pg_size_pretty(sum(pg_total_relation_size(relid))) AS s FROM pg_partition_tree("
                         "'webhook_logs') UNION ALL SELECT pg_size_pretty(pg_total_relation_size('webhook_logs'))"
                         ).fetchall()
        size = next(r["s"] for r in size if r["s"] is not None)
        print(f"  seeded {rows:,} logs in {time.perf_counter() - t0:.0f} s: {size} with indexes", flush=True)


def make_days(url, days):
    """A partition per UTC day from `days` days back to AHEAD ahead, before any row is written."""
    with connect(url) as c:
        today = c.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
        for n in range(-days, AHEAD + 1):
            day = today + timedelta(days=n)
            c.execute(f"CREATE TABLE webhook_logs_p{day:%Y%m%d} PARTITION OF webhook_logs "
                      f"FOR VALUES FROM ('{day} 00:00+00') TO ('{day + timedelta(days=1)} 00:00+00')")
        return c.execute("SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'webhook_logs'::regclass"
                         ).fetchone()["n"]


def sample(url, rows, n=5000):
    with connect(url) as c:
        return [(str(r["id"]), r["created_at"]) for r in c.execute(
            "SELECT id, created_at FROM webhook_logs WHERE random() < %(p)s ORDER BY created_at",
            {"p": min(1.0, 1.5 * n / rows)})]


def lookups(url, logs, statement, batch, rounds, with_time):
    """Microseconds per call of `statement` for `batch` logs, `rounds` calls (after 20 to warm up);
    an UPDATE is rolled back after each call."""
    times = []
    with connect(url) as c:
        for i in range(rounds + 20):
            # A claimed batch is of logs close in time (new events, and retries of the last hours):
            # consecutive ones of the sample, which is sorted by created_at.
            start = random.randrange(len(logs) - batch + 1)
            chosen = logs[start:start + batch]
            params = {"ids": [x[0] for x in chosen]}
            if with_time:
                params.update(first=min(x[1] for x in chosen), last=max(x[1] for x in chosen))
            params["ats"] = [x[1] for x in chosen]
            update = statement.lstrip().startswith("UPDATE")
            if update:
                c.execute("BEGIN")
            t0 = time.perf_counter()
            c.execute(statement, params)
            if i >= 20:
                times.append((time.perf_counter() - t0) * 1e6)
            if update:
                c.execute("ROLLBACK")
        c.execute("BEGIN")
        plan = c.execute("EXPLAIN (ANALYZE, SUMMARY) " + statement, params).fetchall()
        c.execute("ROLLBACK")
        lines = [r["QUERY PLAN"] for r in plan]
        names = list({m for line in lines for m in re.findall(r" on (webhook_logs\w*)", line)})
        scans = c.execute("SELECT count(*) AS n FROM pg_class WHERE relname = ANY(%(n)s) AND relkind = 'r'",
                          {"n": names}).fetchone()["n"]  # tables, not their indexes
    summary = " ".join(line.strip() for line in lines if line.strip().startswith(("Planning Time", "Execution Time")))
    return statistics.median(times), common.percentile(times, 99), scans, summary


def report_lookups(label, url, logs, rounds):
    for batch, statement, with_time, name in ((1, BY_ID, False, "load_attempts by id"),
                                              (1, BY_ID_AND_TIME, True, "load_attempts by id and created_at"),
                                              (200, BY_ID, False, "load_attempts by id"),
                                              (200, BY_ID_AND_TIME, True, "load_attempts by id and created_at"),
                                              (200, RECORD, False, "record_attempts by id"),
                                              (200, RECORD_WITH_TIME, True, "record_attempts by id and created_at")):
        if label == "old" and with_time:
            continue
        med, p99, scans, summary = lookups(url, logs, statement, batch, rounds if batch == 1 else rounds // 10,
                                           with_time)
        print(f"| {label}: {name}, {batch} log(s) | median {med:.0f} µs, p99 {p99:.0f} µs | "
              f"{scans} of its tables read; EXPLAIN ANALYZE: {summary} |", flush=True)


def timed(c, sql, params=None):
    t0 = time.perf_counter()
    c.execute(sql, params)
    return (time.perf_counter() - t0) * 1000


def retention_by_delete(url):
    """The old table: DELETE a day, then a month, of the oldest logs (each rolled back)."""
    with connect(url) as c:
        oldest = c.execute("SELECT min(created_at) AS t FROM webhook_logs").fetchone()["t"]
        for span, label in ((1, "a day"), (30, "a month")):
            c.execute("CHECKPOINT")
            c.execute("BEGIN")
            before = c.execute("SELECT pg_current_wal_insert_lsn() AS l").fetchone()["l"]
            ms = timed(c, "DELETE FROM webhook_logs WHERE created_at < %(t)s", {"t": oldest + timedelta(days=span)})
            wal = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %(l)s) AS b", {"l": before}
                            ).fetchone()["b"]
            c.execute("ROLLBACK")
            print(f"| old table: DELETE {label} of logs | {ms:,.0f} ms, {wal / 2**20:.0f} MB of WAL (rolled back) | "
                  f"then VACUUM's work |", flush=True)


def migration_times(url, days):
    """0004 on the old database (attach as webhook_logs_legacy), after the copy it chose against (rolled back)."""
    with connect(url) as c:
        c.execute("CHECKPOINT")
        c.execute("BEGIN")
        t0 = time.perf_counter()
        c.execute("""
            CREATE TABLE webhook_logs_copy (LIKE webhook_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                                           PRIMARY KEY (id, created_at))
                PARTITION BY RANGE (created_at);
            CREATE INDEX ON webhook_logs_copy (merchant_id, created_at DESC);
            CREATE INDEX ON webhook_logs_copy (status);
            CREATE INDEX ON webhook_logs_copy (next_retry_at) WHERE status = 'pending';
            CREATE TABLE webhook_logs_copy_default PARTITION OF webhook_logs_copy DEFAULT;""")
        today = c.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
        for n in range(-days - 1, 1):
            day = today + timedelta(days=n)
            c.execute(f"CREATE TABLE webhook_logs_copy_p{day:%Y%m%d} PARTITION OF webhook_logs_copy "
                      f"FOR VALUES FROM ('{day} 00:00+00') TO ('{day + timedelta(days=1)} 00:00+00')")
        c.execute("INSERT INTO webhook_logs_copy SELECT * FROM webhook_logs")
        copy_s = time.perf_counter() - t0
        c.execute("ROLLBACK")
        print(f"| upgrade by copying into daily partitions | {copy_s:.1f} s under the table's lock (rolled back) | |",
              flush=True)
        sql = (common.ROOT / "migrations" / "0004_webhook_logs_partitioned.sql").read_text()
        c.execute("CHECKPOINT")
        c.execute("BEGIN")
        ms = timed(c, sql)
        c.execute("ROLLBACK")
        print(f"| migration 0004: the old table attached as webhook_logs_legacy | {ms / 1000:.1f} s under the "
              f"table's lock (rolled back) | |", flush=True)
        t0 = time.perf_counter()
        c.execute("CREATE UNIQUE INDEX CONCURRENTLY webhook_logs_id_created_at ON webhook_logs (id, created_at)")
        c.execute("CREATE INDEX CONCURRENTLY webhook_logs_payment_id "
                  "ON webhook_logs ((payload -> 'data' -> 'payment' ->> 'id'))")
        built = time.perf_counter() - t0
        c.execute("CHECKPOINT")
        c.execute("BEGIN")
        ms = timed(c, sql)
        c.execute("COMMIT")
        print(f"| … with its two indexes built beforehand (CONCURRENTLY: {built:.1f} s, writes go on) | "
              f"{ms / 1000:.1f} s under the table's lock | |", flush=True)


def drop_times(url):
    """DROP TABLE of the oldest partition, then of the next 30 (a month), each as partitions.drop_expired does."""
    with connect(url) as c:
        names = [r["relname"] for r in c.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'webhook_logs'::regclass AND c.relname LIKE 'webhook_logs_p%%' ORDER BY c.relname")]
        rows = c.execute(f"SELECT count(*) AS n FROM {names[1]}").fetchone()["n"]

        def drop(name):
            c.execute("BEGIN")
            c.execute("SET LOCAL lock_timeout = '100ms'")
            ms = timed(c, f"DROP TABLE {name}")
            c.execute("COMMIT")
            return ms

        drop(names[0])  # the oldest day is only partly seeded
        c.execute("CHECKPOINT")
        day = drop(names[1])
        print(f"| DROP TABLE of a day's partition ({rows:,} logs) | {day:.1f} ms | |", flush=True)
        month = [drop(n) for n in names[2:32]]
        print(f"| … of 30 days, one transaction each | {sum(month):.0f} ms in all, each {min(month):.1f}–"
              f"{max(month):.1f} ms | |", flush=True)
        return names[32]


def move_time(url, rows):
    """A day's logs written while it had no partition (they went to the DEFAULT one), then moved
    into the day's new partition as partitions.ensure() does, in one transaction."""
    with connect(url) as c:
        day = c.execute("SELECT (now() AT TIME ZONE 'UTC')::date + %(n)s AS d", {"n": AHEAD + 3}).fetchone()["d"]
        merchants = [str(r["id"]) for r in c.execute("SELECT id FROM merchants")]
        c.execute(SEED.replace("now() - (i::float8", "%(day)s::timestamptz + interval '1 day' - (i::float8"),
                  {"merchants": merchants, "first": 1, "last": rows, "rows": rows, "days": 1,
                   "day": f"{day} 00:00+00"})
        c.execute("VACUUM ANALYZE webhook_logs_default")
        c.execute("CHECKPOINT")
        name, lower, upper = f"webhook_logs_p{day:%Y%m%d}", f"{day} 00:00+00", f"{day + timedelta(days=1)} 00:00+00"
        c.execute("BEGIN")
        t0 = time.perf_counter()
        c.execute(f"CREATE TABLE {name} (LIKE webhook_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        c.execute("LOCK TABLE webhook_logs IN SHARE UPDATE EXCLUSIVE MODE")
        c.execute("LOCK TABLE webhook_logs_default IN ACCESS EXCLUSIVE MODE")
        locked = time.perf_counter()
        moved = c.execute(f"WITH moved AS (DELETE FROM webhook_logs_default WHERE created_at >= %(l)s "
                          f"AND created_at < %(u)s RETURNING *) INSERT INTO {name} SELECT * FROM moved",
                          {"l": lower, "u": upper}).rowcount
        c.execute(f"ALTER TABLE webhook_logs ATTACH PARTITION {name} FOR VALUES FROM ('{lower}') TO ('{upper}')")
        c.execute("COMMIT")
        done = time.perf_counter()
        print(f"| moving a day's {moved:,} logs out of the DEFAULT partition into the day's new one | "
              f"{(done - t0) * 1000:,.0f} ms, the DEFAULT partition locked {(done - locked) * 1000:,.0f} ms of it | |",
              flush=True)


def blocking(url, victim):
    """A delivery's transaction holds a log row (UPDATE, not committed) while a drop wants
    ACCESS EXCLUSIVE on webhook_logs with lock_timeout 100ms: how long the drop waits, how long a
    new log's INSERT and another delivery's UPDATE wait behind it, and whether the open delivery's
    next statement is held up. Then the same drop with no transaction open."""
    with connect(url) as c:
        recent = c.execute("SELECT id, created_at FROM webhook_logs WHERE created_at > now() - interval '1 hour' "
                           "ORDER BY created_at DESC LIMIT 2").fetchall()
        merchant = c.execute("SELECT id FROM merchants LIMIT 1").fetchone()["id"]
    insert = ("INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body) "
              "VALUES (%(m)s, 'webhook.test', 'evt_' || md5(random()::text), '{}', '{}')")
    update = "UPDATE webhook_logs SET attempts = attempts + 1 WHERE id = %(id)s AND created_at = %(at)s"
    row = [{"id": r["id"], "at": r["created_at"]} for r in recent]

    def attempt(label, open_delivery):
        results = {}
        delivery, dropper = connect(url), connect(url)
        others = {"insert": (connect(url), insert, {"m": merchant}), "update": (connect(url), update, row[1])}
        if open_delivery:
            delivery.execute("BEGIN")
            delivery.execute(update, row[0])
            others["the open delivery's next UPDATE"] = (delivery, update, row[0])
        go = threading.Event()

        def run(name, conn, sql, params):
            go.wait()
            if open_delivery:
                time.sleep(0.02)  # after the drop has asked for its lock
            results[name] = timed(conn, sql, params)

        threads = [threading.Thread(target=run, args=(name, *what)) for name, what in others.items()]
        for t in threads:
            t.start()
        dropper.execute("BEGIN")
        dropper.execute("SET LOCAL lock_timeout = '100ms'")
        go.set()
        t0 = time.perf_counter()
        try:
            dropper.execute(f"DROP TABLE {victim}")
            dropper.execute("COMMIT")
            outcome = "dropped"
        except psycopg.errors.LockNotAvailable:
            dropper.execute("ROLLBACK")
            outcome = "gave up (lock_timeout 100ms)"
        drop_ms = (time.perf_counter() - t0) * 1000
        for t in threads:
            t.join()
        if open_delivery:
            delivery.execute("COMMIT")
        for conn in (delivery, dropper, others["insert"][0], others["update"][0]):
            conn.close()
        waits = "; ".join(f"{name} {ms:.1f} ms" for name, ms in results.items())
        print(f"| {label} | DROP TABLE {outcome} after {drop_ms:.0f} ms | statements sent "
              f"{'20 ms after it' if open_delivery else 'with it'}: {waits} |", flush=True)

    attempt("a drop while a delivery's transaction (one UPDATE of a log) is open", True)
    attempt("the same drop with no transaction open", False)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=36)
    p.add_argument("--lookups", type=int, default=2000)
    args = p.parse_args()
    print(f"# {common.machine()}; {common.pg_settings(common.server_url())}", flush=True)
    print("| what | figure | notes |\n|---|---|---|")
    old = make_database(OLD, {"0001", "0002", "0003"})
    seed(old, args.rows, args.days)
    new = make_database(NEW, {"0001", "0002", "0003", "0004"})
    parts = make_days(new, args.days)
    print(f"  {parts} partitions", flush=True)
    seed(new, args.rows, args.days)
    report_lookups("old", old, sample(old, args.rows), args.lookups)
    report_lookups(f"{parts} partitions", new, sample(new, args.rows), args.lookups)
    retention_by_delete(old)
    migration_times(old, args.days)
    victim = drop_times(new)
    blocking(new, victim)
    move_time(new, args.rows // args.days)
    common.drop_databases((OLD, NEW))  # 3.5 GB between them


if __name__ == "__main__":
    main()
