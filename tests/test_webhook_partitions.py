"""webhook_logs by UTC day (migrations/0004, app/partitions.py): a log lands in its day's partition,
ensure() creates the days to come and moves what waited in the DEFAULT partition, drop_expired()
drops whole days past the retention (the API and the dashboard stop showing them) without
waiting long behind a delivery, deliveries find their logs with or without created_at in their
job, and a database upgraded with logs keeps them in one legacy partition."""
import re
import shutil
import threading
import time
import uuid

import pytest
from psycopg.rows import dict_row

from helpers import Db, connect, own_transaction, wait_until

from app import config, migrate, partitions, webhooks


def add_log(db, merchant_id, days_ago=0, status="success"):
    """A log written `days_ago` days before now, straight into webhook_logs; with the partition it
    landed in."""
    return db.one("""
        INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, attempts, created_at)
        VALUES (%(m)s, 'webhook.test', %(e)s, '{}', '{}', %(s)s, 1, now() - make_interval(days => %(d)s))
        RETURNING id, created_at, tableoid::regclass::text AS partition
        """, {"m": merchant_id, "e": f"evt_{uuid.uuid4().hex[:16]}", "s": status, "d": days_ago})


def partition_of(db, log):
    return db.value("SELECT tableoid::regclass::text FROM webhook_logs WHERE id = %(id)s", {"id": log["id"]})


def day_name(db, days_ago=0):
    return db.value("SELECT 'webhook_logs_p' || to_char((now() AT TIME ZONE 'UTC')::date - %(d)s, 'YYYYMMDD')",
                    {"d": days_ago})


def free_day(db, after=2):
    """Days ago of a past day with no partition yet (other tests create some)."""
    names = {p["name"] for p in partitions.partitions(db)}
    return next(d for d in range(after + 1, 29) if day_name(db, d) not in names)


def listed(client, merchant):
    return [w["id"] for w in client.get("/api/v1/webhooks?count=100", headers=merchant["headers"]).get_json()["data"]]


def test_a_log_lands_in_its_days_partition_and_its_job_carries_its_time(client, db, make_merchant):
    m = make_merchant(webhook_url="http://127.0.0.1:9/hook")
    assert client.post("/api/v1/webhooks/test", headers=m["headers"]).status_code == 202
    log = db.one("SELECT id, created_at, job_id, tableoid::regclass::text AS partition FROM webhook_logs "
                 "WHERE merchant_id = %(m)s", {"m": m["id"]})
    assert log["partition"] == day_name(db)
    payload = db.value("SELECT payload FROM jobs WHERE id = %(j)s", {"j": log["job_id"]})
    assert payload["log_id"] == str(log["id"])
    assert db.value("SELECT %(t)s::timestamptz", {"t": payload["created_at"]}) == log["created_at"]


def test_ensure_creates_the_days_ahead_once_and_moves_the_default_partitions_rows(db, merchant):
    ahead = [day_name(db, -n) for n in range(partitions.DAYS_AHEAD + 1)]
    assert set(ahead) <= {p["name"] for p in partitions.partitions(db)}  # made when the database was migrated
    day = free_day(db)
    waiting = add_log(db, merchant["id"], days_ago=day)  # a day with no partition: the worker was away
    assert waiting["partition"] == "webhook_logs_default"

    created = partitions.ensure(db)
    assert day_name(db, day) in created
    assert partition_of(db, waiting) == day_name(db, day)
    assert db.value("SELECT count(*) FROM webhook_logs_default WHERE id = %(id)s", {"id": waiting["id"]}) == 0
    assert partitions.ensure(db) == []


def test_ensure_leaves_the_work_to_a_process_already_at_it(app, db, merchant):
    day = free_day(db)
    waiting = add_log(db, merchant["id"], days_ago=day)
    with own_transaction(app) as other:
        other.execute("SELECT pg_advisory_xact_lock(%(id)s)", {"id": partitions.LOCK_ID})
        assert partitions.ensure(db) == []
        assert partition_of(db, waiting) == "webhook_logs_default"
    assert day_name(db, day) in partitions.ensure(db)


def test_drop_expired_drops_whole_days_past_the_retention_and_keeps_the_others(db, client, dashboard,
                                                                                dashboard_merchant):
    m = dashboard_merchant
    old, kept = add_log(db, m["id"], days_ago=40), add_log(db, m["id"], days_ago=10)
    partitions.ensure(db)
    assert partition_of(db, old) == day_name(db, 40)
    assert {str(old["id"]), str(kept["id"])} <= set(listed(client, m))

    dropped, _ = partitions.drop_expired(db, retention_days=30)
    assert day_name(db, 40) in dropped and day_name(db, 10) not in dropped
    names = {p["name"] for p in partitions.partitions(db)}
    assert day_name(db, 40) not in names and day_name(db, 10) in names
    assert not any(name < day_name(db, 30) for name in names if name.startswith("webhook_logs_p"))
    assert listed(client, m) == [str(kept["id"])]
    page = dashboard.get("/dashboard/webhooks").get_data(as_text=True)
    assert re.findall(r'data-webhook-id="([^"]+)"', page) == [str(kept["id"])]


def test_drop_expired_deletes_the_default_partitions_expired_rows(db, merchant):
    partitions.ensure(db)
    stale, recent = add_log(db, merchant["id"], days_ago=45), add_log(db, merchant["id"], days_ago=5)
    assert stale["partition"] == "webhook_logs_default"
    _, deleted = partitions.drop_expired(db, retention_days=30)
    assert deleted >= 1
    assert db.values("SELECT id FROM webhook_logs WHERE merchant_id = %(m)s", {"m": merchant["id"]}) == [recent["id"]]


def test_a_drop_behind_an_open_delivery_gives_up_after_its_lock_timeout_and_is_done_later(app, db, merchant):
    """A delivery's transaction holds a log row: the drop waits its lock_timeout, no longer, and
    leaves the day for the next run; once the delivery has committed the day goes."""
    old, today = add_log(db, merchant["id"], days_ago=50), add_log(db, merchant["id"], status="pending")
    partitions.ensure(db)
    with own_transaction(app) as delivery:
        delivery.execute("UPDATE webhook_logs SET attempts = attempts + 1 WHERE id = %(id)s AND created_at = %(at)s",
                         {"id": today["id"], "at": today["created_at"]})
        t0 = time.monotonic()
        dropped, deleted = partitions.drop_expired(db, retention_days=30, attempts=2, lock_timeout="50ms")
        waited = time.monotonic() - t0
        assert dropped == [] and deleted is None
        assert waited < 3  # two waits of 50 ms and one pause of 1 s between them, not the delivery's length
        delivery.commit()
    assert partition_of(db, old) == day_name(db, 50)
    dropped, _ = partitions.drop_expired(db, retention_days=30)
    assert day_name(db, 50) in dropped


def test_a_delivery_job_queued_before_partitioning_still_delivers(client, db, make_merchant, receiver, worker,
                                                                  clean_queue):
    """Jobs queued by the release before carry no created_at: the worker reads their log from
    every partition."""
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    log = db.one("SELECT id, job_id FROM webhook_logs WHERE merchant_id = %(m)s", {"m": m["id"]})
    db.execute("UPDATE jobs SET payload = payload - 'created_at' WHERE id = %(j)s", {"j": log["job_id"]})
    assert worker.step()
    assert rx.wait_for(1)[0]["json"]["event"] == "webhook.test"
    wait_until(lambda: db.value("SELECT status FROM webhook_logs WHERE id = %(id)s", {"id": log["id"]}) == "success",
               message="the delivery recorded")


def test_load_attempts_reads_logs_with_and_without_their_time(db, merchant):
    a, b = add_log(db, merchant["id"], status="pending"), add_log(db, merchant["id"], days_ago=2, status="pending")
    with_time = [{"log_id": str(x["id"]), "created_at": x["created_at"].isoformat()} for x in (a, b)]
    assert set(webhooks.load_attempts(db, with_time)) == {str(a["id"]), str(b["id"])}
    assert set(webhooks.load_attempts(db, [{"log_id": str(a["id"])}, with_time[1]])) == {str(a["id"]), str(b["id"])}


def plans_of(db, fragment):
    """How often PostgreSQL planned the connection's prepared statement that contains `fragment`:
    {generic_plans, custom_plans}."""
    return db.one("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %(s)s",
                  {"s": f"%{fragment}%"})


def test_the_worker_plans_its_delivery_log_statements_once_not_at_every_call(db, merchant):
    """Reading a queued delivery and recording an attempt run on the partitioned logs table, where
    PostgreSQL, left to choose, plans the statement again at every call (a custom plan prunes the
    days while planning): that planning cost more than running them (docs/decisions/009)."""
    log = add_log(db, merchant["id"], status="pending")
    queued = [{"log_id": str(log["id"]), "created_at": log["created_at"].isoformat()}]
    lease = str(uuid.uuid4())
    job = db.value("INSERT INTO jobs (kind, status, lease_id, locked_until) "
                   "VALUES ('webhook.deliver', 'processing', %(l)s, now() + interval '1 minute') RETURNING id", {"l": lease})
    for _ in range(12):  # past psycopg's five runs before it prepares and PostgreSQL's five custom plans before it may choose
        assert str(log["id"]) in webhooks.load_attempts(db, queued)
        db.execute("UPDATE jobs SET status = 'processing', lease_id = %(l)s, locked_until = now() + interval '1 minute' "
                   "WHERE id = %(j)s", {"l": lease, "j": job})
        assert webhooks.record_attempts(db, [{"job_id": job, "lease": lease, "log_id": str(log["id"]),
                                              "created_at": log["created_at"], "status": "pending", "wait": 60.0,
                                              "code": 500, "body": "down"}]) == {job}
    for fragment in ("FROM webhook_logs logs", "WITH done AS"):
        plans = plans_of(db, fragment)
        assert plans["generic_plans"] >= 2 and plans["custom_plans"] == 0, (fragment, plans)
    assert db.value("SELECT attempts FROM webhook_logs WHERE id = %(id)s", {"id": log["id"]}) == 1 + 12  # every attempt recorded


@pytest.mark.parametrize("raw, days", [(None, 30), ("", 30), ("0", 30), (" 7 ", 7), ("365", 365)])
def test_the_retention_setting(raw, days):
    env = {} if raw is None else {"WEBHOOK_LOG_RETENTION_DAYS": raw}
    assert config.load(env)["WEBHOOK_LOG_RETENTION_DAYS"] == days


@pytest.mark.parametrize("raw", ["-1", "1.5", "thirty", "30d"])
def test_a_malformed_retention_stops_the_start(raw):
    with pytest.raises(ValueError, match="WEBHOOK_LOG_RETENTION_DAYS"):
        config.load({"WEBHOOK_LOG_RETENTION_DAYS": raw})


def migrated_with_logs(url, tmp_path, days_ago, prebuilt=False):
    """A database of the release before 0004 with one log per entry of days_ago, then migrated;
    with prebuilt, after its unique indexes with created_at were built as docs/operations.md
    says. Returns the ids of those indexes before the migration."""
    before = tmp_path / "before"
    before.mkdir(parents=True)
    for version, _, path in migrate.files():
        if version < "0004":
            shutil.copy(path, before)
    migrate.migrate(url, before)
    with Db.connect(url, autocommit=True, row_factory=dict_row) as c:
        m = c.value("INSERT INTO merchants (name, email, api_key, api_secret) "
                    "VALUES ('Old', 'old@example.com', 'key_old', 's') RETURNING id")
        for days in days_ago:
            c.execute("INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, created_at) VALUES "
                      "(%(m)s, 'webhook.test', %(e)s, '{}', '{}', now() - make_interval(days => %(d)s))",
                      {"m": m, "e": f"evt_{uuid.uuid4().hex[:16]}", "d": days})
        if prebuilt:
            c.execute("CREATE UNIQUE INDEX CONCURRENTLY webhook_logs_id_created_at ON webhook_logs (id, created_at)")
            c.execute("CREATE INDEX CONCURRENTLY webhook_logs_payment_id "
                      "ON webhook_logs ((payload -> 'data' -> 'payment' ->> 'id'))")
        indexes = c.values("SELECT to_regclass(n)::oid FROM unnest(ARRAY['webhook_logs_id_created_at', "
                           "'webhook_logs_payment_id']) n")
    migrate.migrate(url)
    return indexes


def test_an_upgraded_databases_logs_stay_in_a_legacy_partition_dropped_whole_when_expired(new_database, tmp_path):
    url = new_database()
    migrated_with_logs(url, tmp_path / "a", [40, 0])
    with Db.connect(url, autocommit=True, row_factory=dict_row) as c:
        assert c.all("SELECT tableoid::regclass::text AS p, count(*) FROM webhook_logs GROUP BY 1") == [
            {"p": "webhook_logs_legacy", "count": 2}]
        created = partitions.ensure(c)
        assert day_name(c, 0) not in created and day_name(c, -1) in created  # today is the legacy partition's
        assert partitions.drop_expired(c, retention_days=30) == ([], 0)  # it holds today's logs: all kept
        assert c.value("SELECT count(*) FROM webhook_logs") == 2

    url = new_database()
    prebuilt = migrated_with_logs(url, tmp_path / "b", [40, 35], prebuilt=True)
    with Db.connect(url, autocommit=True, row_factory=dict_row) as c:
        # The indexes built beforehand became the legacy partition's keys instead of new ones.
        assert c.values("SELECT to_regclass(n)::oid FROM unnest(ARRAY['webhook_logs_legacy_pkey', "
                        "'webhook_logs_payment_id']) n") == prebuilt
        assert c.value("SELECT count(*) FROM webhook_logs WHERE tableoid = 'webhook_logs_legacy'::regclass") == 2
        partitions.ensure(c)
        assert partitions.drop_expired(c, retention_days=30)[0] == ["webhook_logs_legacy"]
        assert c.value("SELECT count(*) FROM webhook_logs") == 0


def test_two_processes_ensuring_at_once_create_each_day_once(app, db, merchant):
    """Two workers starting together: each day is created by one of them, and neither fails."""
    waiting = [add_log(db, merchant["id"], days_ago=d) for d in (6, 7)]
    start, created = threading.Barrier(2), []

    def run():
        with connect(app) as c:
            start.wait()
            created.append(partitions.ensure(c))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 2 and not set(created[0]) & set(created[1])
    assert {partition_of(db, w) for w in waiting} == {day_name(db, 6), day_name(db, 7)}
    assert partitions.ensure(db) == []
