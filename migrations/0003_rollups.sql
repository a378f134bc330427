-- Exact list totals and dashboard figures without counting a merchant's whole history per request
-- (app/rollups.py has the reasoning; docs/decisions/006-rollups.md the numbers).

-- Per merchant, per UTC hour of created_at, per status (and currency): how many rows and their
-- amount, for every hour before the kind's sealed_until. Written by the worker when it seals an
-- hour and by the trigger below when a row of a sealed hour changes; never by payment creation.
CREATE TABLE rollups (
    merchant_id uuid NOT NULL,
    kind        text NOT NULL,               -- the table counted: payments, orders, refunds, webhook_logs
    hour        timestamptz NOT NULL,        -- date_trunc('hour', created_at, 'UTC')
    status      text NOT NULL,               -- for events: the event's name
    currency    text NOT NULL DEFAULT '',    -- '' where the table has none (refunds, webhook_logs)
    n           bigint NOT NULL,
    amount      bigint NOT NULL DEFAULT 0,   -- paise
    PRIMARY KEY (merchant_id, kind, hour, status, currency)
);

-- The same per UTC day, for every day wholly before sealed_until: the sums of its hours, so a total
-- over years reads a row a day, not 24.
CREATE TABLE rollups_daily (
    merchant_id uuid NOT NULL,
    kind        text NOT NULL,
    day         timestamptz NOT NULL,        -- date_trunc('day', created_at, 'UTC')
    status      text NOT NULL,
    currency    text NOT NULL DEFAULT '',
    n           bigint NOT NULL,
    amount      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, kind, day, status, currency)
);

-- Every row of the kind created before sealed_until is counted in rollups; newer rows are counted
-- from the table itself. NULL: nothing sealed yet.
CREATE TABLE rollups_sealed (
    kind         text PRIMARY KEY,
    sealed_until timestamptz
);
INSERT INTO rollups_sealed (kind) VALUES ('payments'), ('orders'), ('refunds'), ('webhook_logs');

-- Move a changed row's count between hours or statuses when the row is in a sealed hour.
-- Arguments: the kind counted, and the column counted as its status when not `status`. The
-- shared lock waits for a sealing in progress (it holds the exclusive one), so a change is either
-- in the sealing's snapshot or sees the new sealed_until here: never lost, never counted twice.
CREATE FUNCTION rollups_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sealed timestamptz;
    r jsonb;
    sign int;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7240003);
    SELECT sealed_until INTO sealed FROM rollups_sealed WHERE kind = TG_ARGV[0];
    FOR r, sign IN
        SELECT to_jsonb(OLD), -1 WHERE TG_OP IN ('UPDATE', 'DELETE') AND OLD.created_at < sealed
        UNION ALL
        SELECT to_jsonb(NEW), 1 WHERE TG_OP IN ('UPDATE', 'INSERT') AND NEW.created_at < sealed
    LOOP
        INSERT INTO rollups AS t (merchant_id, kind, hour, status, currency, n, amount)
        VALUES ((r ->> 'merchant_id')::uuid, TG_ARGV[0], date_trunc('hour', (r ->> 'created_at')::timestamptz, 'UTC'),
                r ->> coalesce(TG_ARGV[1], 'status'), coalesce(r ->> 'currency', ''), sign,
                sign * coalesce((r ->> 'amount')::bigint, 0))
        ON CONFLICT (merchant_id, kind, hour, status, currency)
        DO UPDATE SET n = t.n + EXCLUDED.n, amount = t.amount + EXCLUDED.amount;
        IF (r ->> 'created_at')::timestamptz < date_trunc('day', sealed, 'UTC') THEN
            INSERT INTO rollups_daily AS t (merchant_id, kind, day, status, currency, n, amount)
            VALUES ((r ->> 'merchant_id')::uuid, TG_ARGV[0], date_trunc('day', (r ->> 'created_at')::timestamptz, 'UTC'),
                    r ->> coalesce(TG_ARGV[1], 'status'), coalesce(r ->> 'currency', ''), sign,
                    sign * coalesce((r ->> 'amount')::bigint, 0))
            ON CONFLICT (merchant_id, kind, day, status, currency)
            DO UPDATE SET n = t.n + EXCLUDED.n, amount = t.amount + EXCLUDED.amount;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- The WHEN clauses keep the trigger off the hot paths: a sealed hour always ends before the start
-- of the current hour of any transaction that can still write (the sealing waits for older ones),
-- so a row created in this hour, or changed in the hour it was created, never calls the function.
-- Three triggers per counted table: <table>_rollups_insert, _change and _delete.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['payments', 'orders', 'refunds', 'webhook_logs'] LOOP
        EXECUTE format($sql$
            CREATE TRIGGER %1$I AFTER INSERT ON %4$I FOR EACH ROW
                WHEN (NEW.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow(%4$L);
            CREATE TRIGGER %2$I AFTER UPDATE OF status, created_at, merchant_id ON %4$I FOR EACH ROW
                WHEN (least(OLD.created_at, NEW.created_at) < date_trunc('hour', now(), 'UTC')
                      AND (OLD.status, OLD.created_at, OLD.merchant_id) IS DISTINCT FROM (NEW.status, NEW.created_at, NEW.merchant_id))
                EXECUTE FUNCTION rollups_follow(%4$L);
            CREATE TRIGGER %3$I AFTER DELETE ON %4$I FOR EACH ROW
                WHEN (OLD.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow(%4$L);
            $sql$, t || '_rollups_insert', t || '_rollups_change', t || '_rollups_delete', t);
    END LOOP;
END $$;
