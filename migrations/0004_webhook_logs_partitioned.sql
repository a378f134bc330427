-- 0004: webhook_logs partitioned by range of created_at, one partition per UTC day, so that logs
-- past the retention (WEBHOOK_LOG_RETENTION_DAYS) go as whole tables dropped, not as rows deleted
-- (docs/decisions/006-webhook-log-partitions.md). app/partitions.py creates the days as they come
-- (`migrate` and the worker) and drops the expired ones; this file builds the parent and its
-- DEFAULT partition, which takes any row whose day has no partition yet, so an insert (and the
-- payment that writes it) never fails for want of one.
--
-- A database that has logs keeps them: the table as it was becomes the partition
-- webhook_logs_legacy, holding every time up to the end of the UTC day of its newest row, and is
-- dropped whole once that day is past the retention. Attaching it builds its two unique indexes
-- with created_at and reads it once to check the bound, under the lock this migration holds on it
-- (payments that write a log wait meanwhile): about 4-6 s per million logs, most of it the index
-- builds. Built beforehand with CREATE UNIQUE INDEX CONCURRENTLY under the names below, they are
-- used instead (docs/operations.md, "Webhook log retention"). Copying the rows into daily
-- partitions would hold the lock about six times as long. A new database has no logs, so no legacy
-- partition: what this builds there is exactly schema.sql.

ALTER TABLE webhook_logs RENAME TO webhook_logs_legacy;
-- Its (id) unique index gives way to (id, created_at): a unique index of a partitioned table must
-- hold the partition key. event_id is no longer unique: one event goes to each endpoint that
-- subscribes to it (migration 0006), and a replay sends it again, under the same id.
ALTER TABLE webhook_logs_legacy DROP CONSTRAINT webhook_logs_pkey, DROP CONSTRAINT webhook_logs_event_id_key,
    ALTER COLUMN id SET NOT NULL;  -- kept by the primary key's drop, but the parent's key requires it
-- The other indexes are the parent's as they were: attaching adopts them instead of building anew.
ALTER INDEX webhook_logs_merchant_id RENAME TO webhook_logs_legacy_merchant_id;
ALTER INDEX webhook_logs_status RENAME TO webhook_logs_legacy_status;
ALTER INDEX webhook_logs_next_retry RENAME TO webhook_logs_legacy_next_retry;
-- The rollup triggers (0003) move to the new parent, which gives them to every partition it has.
DROP TRIGGER webhook_logs_rollups_insert ON webhook_logs_legacy;
DROP TRIGGER webhook_logs_rollups_change ON webhook_logs_legacy;
DROP TRIGGER webhook_logs_rollups_delete ON webhook_logs_legacy;

-- The constraints are named as the old table's are: attaching matches CHECK constraints by name,
-- and the names PostgreSQL would choose here must avoid the old table's (…_check1).
CREATE TABLE webhook_logs (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    merchant_id     uuid NOT NULL CONSTRAINT webhook_logs_merchant_id_fkey REFERENCES merchants (id),
    event           text NOT NULL,
    event_id        text NOT NULL,            -- evt_…, the webhook-id header, stable across retries
    payload         jsonb NOT NULL,
    body            text NOT NULL,            -- the exact bytes signed and sent on every attempt
    -- pending: to be (re)delivered; success: a 2xx came back; failed: all attempts used up
    status          text NOT NULL DEFAULT 'pending'
                    CONSTRAINT webhook_logs_status_check CHECK (status IN ('pending', 'success', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CONSTRAINT webhook_logs_attempts_check CHECK (attempts >= 0),
    last_attempt_at timestamptz,
    next_retry_at   timestamptz,
    response_code   integer,
    response_body   text,
    job_id          bigint,                   -- its delivery job (one at a time), reused by a manual retry
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The ids are random (uuid4, evt_ + 16 random characters): unique with their time is unique.
    CONSTRAINT webhook_logs_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX webhook_logs_merchant_id ON webhook_logs (merchant_id, created_at DESC);
CREATE INDEX webhook_logs_status ON webhook_logs (status);
CREATE INDEX webhook_logs_next_retry ON webhook_logs (next_retry_at) WHERE status = 'pending';
CREATE TABLE webhook_logs_default PARTITION OF webhook_logs DEFAULT;
-- A payment's page lists the events that carry it.
CREATE INDEX webhook_logs_payment ON webhook_logs ((payload -> 'data' -> 'payment' ->> 'id'));
CREATE TRIGGER webhook_logs_rollups_insert AFTER INSERT ON webhook_logs FOR EACH ROW
    WHEN (NEW.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow('webhook_logs');
CREATE TRIGGER webhook_logs_rollups_change AFTER UPDATE OF status, created_at, merchant_id ON webhook_logs FOR EACH ROW
    WHEN (least(OLD.created_at, NEW.created_at) < date_trunc('hour', now(), 'UTC')
          AND (OLD.status, OLD.created_at, OLD.merchant_id) IS DISTINCT FROM (NEW.status, NEW.created_at, NEW.merchant_id))
    EXECUTE FUNCTION rollups_follow('webhook_logs');
CREATE TRIGGER webhook_logs_rollups_delete AFTER DELETE ON webhook_logs FOR EACH ROW
    WHEN (OLD.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow('webhook_logs');

DO $$
DECLARE
    upper timestamptz;
BEGIN
    -- The newest log through each merchant's newest (the (merchant_id, created_at) index), not a
    -- read of the whole table.
    SELECT (date_trunc('day', max(newest.created_at) AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC'
      INTO upper
      FROM merchants m
     CROSS JOIN LATERAL (SELECT created_at FROM webhook_logs_legacy w WHERE w.merchant_id = m.id
                          ORDER BY created_at DESC LIMIT 1) newest;
    IF upper IS NULL THEN
        DROP TABLE webhook_logs_legacy;
        RETURN;
    END IF;
    -- A unique index built beforehand becomes the partition's key, so attaching builds none.
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('webhook_logs_id_created_at') AND indisvalid
                  AND indrelid = 'webhook_logs_legacy'::regclass) THEN
        ALTER TABLE webhook_logs_legacy ADD CONSTRAINT webhook_logs_legacy_pkey PRIMARY KEY
            USING INDEX webhook_logs_id_created_at;
    END IF;
    EXECUTE format('ALTER TABLE webhook_logs ATTACH PARTITION webhook_logs_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                   upper);
END $$;
