-- The whole current schema, for readers: what migrations/0001… build, step by step, on a new
-- database or one of an earlier release (`python -m app.launcher migrate`; a test holds the two
-- equal). Change the schema with a new migration and the same change here.
-- Money is integer paise; times are timestamptz; statuses are CHECKed here, transitions are
-- guarded UPDATEs in the domain modules. Needs PostgreSQL 13+ (gen_random_uuid).


CREATE TABLE IF NOT EXISTS merchants (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL,
    email          text NOT NULL UNIQUE,
    api_key        text NOT NULL UNIQUE,
    api_secret     text NOT NULL,
    webhook_url    text,
    webhook_secret text,
    password_hash  text,                      -- dashboard login (werkzeug scrypt hash)
    is_active      boolean NOT NULL DEFAULT true,
    -- A dashboard session carries the version it started under; signing out bumps it, which ends
    -- every session of the merchant (a captured cookie included).
    session_version integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id          text PRIMARY KEY CHECK (id ~ '^order_[A-Za-z0-9]{16}$'),
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    amount      integer NOT NULL CHECK (amount >= 100),
    currency    text NOT NULL DEFAULT 'INR' CHECK (currency ~ '^[A-Z]{3}$'),
    receipt     text,
    notes       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- created: awaiting payment; paid: a payment of it succeeded (set by settlement)
    status      text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'paid')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_merchant_created ON orders (merchant_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS payments (
    id                text PRIMARY KEY CHECK (id ~ '^pay_[A-Za-z0-9]{16}$'),
    order_id          text NOT NULL REFERENCES orders (id),
    merchant_id       uuid NOT NULL REFERENCES merchants (id),
    amount            integer NOT NULL CHECK (amount >= 100),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method            text NOT NULL CHECK (method IN ('upi', 'card')),
    -- pending: accepted, not yet picked up; processing: with the (simulated) bank;
    -- success / failed: final, set once by settlement
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'success', 'failed')),
    vpa               text,
    card_network      text CHECK (card_network IN ('visa', 'mastercard', 'amex', 'rupay', 'unknown')),
    card_last4        text CHECK (card_last4 ~ '^[0-9]{4}$'),  -- never more of the card than this
    error_code        text,
    error_description text,
    captured          boolean NOT NULL DEFAULT false,
    notes             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    single_flight     boolean DEFAULT true,    -- see payments_one_in_flight_per_order
    CHECK ((method = 'upi') = (vpa IS NOT NULL)),
    CHECK ((method = 'card') = (card_last4 IS NOT NULL AND card_network IS NOT NULL)),
    CHECK (captured = false OR status = 'success')
);
CREATE INDEX IF NOT EXISTS payments_order_id ON payments (order_id);
CREATE INDEX IF NOT EXISTS payments_merchant_created ON payments (merchant_id, created_at DESC, id DESC);
-- An order is paid at most once: a second successful settlement is refused by the database.
CREATE UNIQUE INDEX IF NOT EXISTS payments_one_success_per_order ON payments (order_id) WHERE status = 'success';
CREATE TABLE IF NOT EXISTS refunds (
    id           text PRIMARY KEY CHECK (id ~ '^rfnd_[A-Za-z0-9]{16}$'),
    payment_id   text NOT NULL REFERENCES payments (id),
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    amount       integer NOT NULL CHECK (amount > 0),
    reason       text,
    -- pending: accepted, counted against the payment; processed: money returned
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    receipt      text,                                   -- the merchant's own reference, at most 40 characters
    notes        jsonb NOT NULL DEFAULT '{}'::jsonb,     -- free-form, as orders' notes
    CHECK ((status = 'processed') = (processed_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS refunds_payment_id ON refunds (payment_id);

-- One partition per UTC day of created_at, webhook_logs_pYYYYMMDD, created ahead by
-- app/partitions.py (`migrate` and the worker) and dropped whole once past the retention
-- (WEBHOOK_LOG_RETENTION_DAYS); the DEFAULT partition takes the rows of a day that has none yet,
-- so an insert never fails, and they move to their day's partition when it is created. A database
-- upgraded with logs also has webhook_logs_legacy: its rows from before, up to the end of the day of
-- the newest (migrations/0004).
CREATE TABLE IF NOT EXISTS webhook_logs (
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
    endpoint_id     text,                     -- its endpoint (webhook_endpoints); NULL on logs from before endpoints: the first
    attempted_at    timestamptz[] NOT NULL DEFAULT '{}',  -- each attempt's time, in order (a Retry keeps them)
    -- The ids are random (uuid4, evt_ + 16 random characters): unique with their time is unique.
    -- A unique index of a partitioned table must hold the partition key.
    CONSTRAINT webhook_logs_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX IF NOT EXISTS webhook_logs_merchant_id ON webhook_logs (merchant_id, created_at DESC);
CREATE INDEX IF NOT EXISTS webhook_logs_status ON webhook_logs (status);
CREATE INDEX IF NOT EXISTS webhook_logs_next_retry ON webhook_logs (next_retry_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS webhook_logs_default PARTITION OF webhook_logs DEFAULT;
-- A payment's page lists the events that carry it.
CREATE INDEX IF NOT EXISTS webhook_logs_payment ON webhook_logs ((payload -> 'data' -> 'payment' ->> 'id'));

-- Several webhook endpoints per merchant, each with its own URL, secret and event filter
-- (app/endpoints.py). The merchant's first endpoint keeps its URL and secret where they always
-- were, merchants.webhook_url and webhook_secret, so that operators' SQL on them keeps working: its
-- row here holds only its settings (events, enabled, the secret being rotated out).
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id                  text PRIMARY KEY CHECK (id ~ '^we_[A-Za-z0-9]{16}$'),
    merchant_id         uuid NOT NULL REFERENCES merchants (id),
    is_first            boolean NOT NULL DEFAULT false,
    url                 text,                -- NULL on the first endpoint: merchants.webhook_url
    secret              text,                -- NULL on the first endpoint: merchants.webhook_secret
    description         text,
    events              text[] NOT NULL DEFAULT '{*}',   -- event names, or {*} for all
    enabled             boolean NOT NULL DEFAULT true,
    -- During a rotation: the secret before, still signing every delivery until it expires.
    previous_secret     text,
    previous_expires_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Since when every delivery attempt has failed (NULL: the last one succeeded, or none failed
    -- since it was enabled); the worker disables it once this is WEBHOOK_DISABLE_AFTER old.
    failing_since       timestamptz,
    disabled_reason     text,                -- set when the gateway disabled it, cleared on re-enabling
    CHECK (is_first = (url IS NULL) AND is_first = (secret IS NULL)),
    CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL)),
    CONSTRAINT webhook_endpoints_disabled_reason CHECK (disabled_reason IS NULL OR NOT enabled)
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_endpoints_first ON webhook_endpoints (merchant_id) WHERE is_first;
CREATE INDEX IF NOT EXISTS webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at, id);

-- A merchant that has (or is given, by the API or by SQL) a webhook URL has its first endpoint.
CREATE OR REPLACE FUNCTION webhook_endpoints_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_endpoints (id, merchant_id, is_first)
    VALUES ('we_' || substr(md5(random()::text || NEW.id::text), 1, 16), NEW.id, true)
    ON CONFLICT (merchant_id) WHERE is_first DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER merchants_first_endpoint AFTER INSERT OR UPDATE OF webhook_url ON merchants FOR EACH ROW
    WHEN (NEW.webhook_url IS NOT NULL) EXECUTE FUNCTION webhook_endpoints_first();

-- Every event raised for a merchant, once, whatever the number of endpoints it went to (none
-- included): GET /api/v1/events, and what a replay sends again. Kept, like the delivery logs, by
-- UTC day partitions dropped whole after WEBHOOK_LOG_RETENTION_DAYS (app/partitions.py creates them).
CREATE TABLE IF NOT EXISTS events (
    id          text NOT NULL CHECK (id ~ '^evt_[A-Za-z0-9]{16}$'),
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    event       text NOT NULL,
    body        text NOT NULL,     -- the exact bytes every delivery of it sends: {id, event, timestamp, data}
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX IF NOT EXISTS events_merchant_created ON events (merchant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_merchant_event_created ON events (merchant_id, event, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS events_default PARTITION OF events DEFAULT;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key          text NOT NULL,
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    request_hash text NOT NULL,               -- method, path and body: same key + other body = 409
    response     jsonb,                       -- {"status": 201, "body": "<exact bytes>"}; NULL while in flight
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires ON idempotency_keys (expires_at);

-- The job queue. Rows are claimed with FOR UPDATE SKIP LOCKED and leased (lease_id, locked_until)
-- before any work runs; finishing is fenced on lease_id so a reclaimed job cannot be finished twice.
CREATE TABLE IF NOT EXISTS jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- pending: waiting for next_run_at; processing: leased to a worker until locked_until;
    -- completed: done (trimmed after a while); dead: gave up after max_attempts, last_error kept
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'processing', 'completed', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 10,
    next_run_at  timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    lease_id     uuid,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'processing') = (lease_id IS NOT NULL AND locked_until IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (next_run_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (locked_until) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (updated_at) WHERE status IN ('completed', 'dead');
-- Dead jobs by kind for /metrics, without reading the finished ones.
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (kind) WHERE status = 'dead';

-- Wake the worker (LISTEN jobs) when a job becomes due now, but only when a worker is asleep:
-- NOTIFY serialises committing transactions on one database-wide lock, through their WAL flush
-- (measured with 8 connections creating payments: about 600 µs of PostgreSQL CPU per payment with
-- a NOTIFY, 470 µs with no trigger at all, 535 µs with this gate, and 17 % more payments per
-- second than with the NOTIFY). A worker about to sleep takes jobs_wakeup_gate in SHARE mode,
-- looks at the queue once more, then waits for a NOTIFY; it releases the gate when it wakes.
-- An enqueuing transaction takes the gate in ROW EXCLUSIVE mode without waiting:
--   * refused: a worker is asleep (or about to be), so it sends the NOTIFY;
--   * granted: no worker is asleep, and any worker going to sleep waits for this transaction to
--     end before its last look, which then sees the job. No NOTIFY is needed.
-- Once per transaction (a transaction-local setting remembers it), so a batch insert does not
-- open a subtransaction per row; the gate lock, like a NOTIFY, holds until commit.
CREATE TABLE IF NOT EXISTS jobs_wakeup_gate ();

CREATE OR REPLACE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('gateway.jobs_gate_checked', true) IS DISTINCT FROM 'on' THEN
        PERFORM set_config('gateway.jobs_gate_checked', 'on', true);
        BEGIN
            LOCK TABLE jobs_wakeup_gate IN ROW EXCLUSIVE MODE NOWAIT;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_notify('jobs', '');
        END;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS jobs_notify ON jobs;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, next_run_at ON jobs
    FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.next_run_at <= now())
    EXECUTE FUNCTION jobs_notify();

-- One row per worker process: its heartbeat feeds worker_status in /health and the job status.
CREATE TABLE IF NOT EXISTS worker_heartbeats (
    worker_id  text PRIMARY KEY,
    hostname   text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    beat_at    timestamptz NOT NULL DEFAULT now()
);

-- Rate limits shared by every process and host (app/ratelimit.py): one row per limited key (a
-- sign-in email's keyed digest, a client address) counting the hits of its current window, which
-- ends at reset_at; a row whose window has ended means the same as no row and may be deleted at
-- any time. UNLOGGED: no WAL on a hot path, and a crash only forgives the counts of open windows.
-- The fillfactor leaves room in each page for the updates to stay HOT.
CREATE UNLOGGED TABLE IF NOT EXISTS rate_limits (
    key      text PRIMARY KEY,
    hits     integer NOT NULL CHECK (hits >= 0),
    reset_at timestamptz NOT NULL
) WITH (fillfactor = 70);


-- An order has at most one payment in flight (pending or processing): of two concurrent INSERTs
-- the second fails on this index, which payments.create answers as a 409. single_flight is true
-- on every payment created since the index exists (its default) and NULL on older rows: the index
-- leaves those out, so building it cannot fail on a database where an order already has several
-- in flight (the worker settles them; a second success is refused by payments_one_success_per_order).
CREATE UNIQUE INDEX IF NOT EXISTS payments_one_in_flight_per_order ON payments (order_id)
    WHERE status IN ('pending', 'processing') AND single_flight;
-- GET /refunds lists a merchant's refunds newest first, with from/to on created_at.
CREATE INDEX IF NOT EXISTS refunds_merchant_created ON refunds (merchant_id, created_at DESC, id DESC);

-- Per merchant, per UTC hour of created_at, per status (and currency): how many rows and their
-- amount, for every hour before the kind's sealed_until. Written by the worker when it seals an
-- hour and by the trigger below when a row of a sealed hour changes; never by payment creation.
CREATE TABLE IF NOT EXISTS rollups (
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
CREATE TABLE IF NOT EXISTS rollups_daily (
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
CREATE TABLE IF NOT EXISTS rollups_sealed (
    kind         text PRIMARY KEY,
    sealed_until timestamptz
);
INSERT INTO rollups_sealed (kind) VALUES ('payments'), ('orders'), ('refunds'), ('webhook_logs'), ('events')
    ON CONFLICT DO NOTHING;

-- Move a changed row's count between hours or statuses when the row is in a sealed hour.
-- Arguments: the kind counted, and the column counted as its status when not `status`. The
-- shared lock waits for a sealing in progress (it holds the exclusive one), so a change is either
-- in the sealing's snapshot or sees the new sealed_until here: never lost, never counted twice.
CREATE OR REPLACE FUNCTION rollups_follow() RETURNS trigger LANGUAGE plpgsql AS $$
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

-- The sealing reads an hour of every merchant's rows by created_at: a BRIN index serves that for a
-- few pages of index and next to no cost on insert (rows arrive in created_at order).
CREATE INDEX IF NOT EXISTS payments_created_brin ON payments USING brin (created_at);
CREATE INDEX IF NOT EXISTS orders_created_brin ON orders USING brin (created_at);
CREATE INDEX IF NOT EXISTS refunds_created_brin ON refunds USING brin (created_at);

-- A status filter (GET /payments?status=, the dashboard's) reads only that status's rows, newest
-- first, however rare the status.
CREATE INDEX IF NOT EXISTS payments_merchant_status_created ON payments (merchant_id, status, created_at DESC, id DESC);

-- events (its table is above): counted by the rollups by event name.
CREATE TRIGGER events_rollups_insert AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow('events', 'event');
CREATE TRIGGER events_rollups_change AFTER UPDATE OF event, created_at, merchant_id ON events FOR EACH ROW
    WHEN (least(OLD.created_at, NEW.created_at) < date_trunc('hour', now(), 'UTC')
          AND (OLD.event, OLD.created_at, OLD.merchant_id) IS DISTINCT FROM (NEW.event, NEW.created_at, NEW.merchant_id))
    EXECUTE FUNCTION rollups_follow('events', 'event');
CREATE TRIGGER events_rollups_delete AFTER DELETE ON events FOR EACH ROW
    WHEN (OLD.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow('events', 'event');

-- The dashboard's search box (app/payment_search.py): a VPA or a card's last four digits, one
-- expression for both (a VPA always has an @, so it never equals four digits), newest first; and an
-- order's receipt, whose orders' payments are then read by payments_order_id.
CREATE INDEX IF NOT EXISTS payments_merchant_customer ON payments (merchant_id, lower(coalesce(vpa, card_last4)), created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_merchant_receipt ON orders (merchant_id, receipt) WHERE receipt IS NOT NULL;
