-- Several webhook endpoints per merchant, each with its own URL, secret and event filter
-- (app/endpoints.py). The merchant's first endpoint keeps its URL and secret where they always
-- were, merchants.webhook_url and webhook_secret, so that operators' SQL on them keeps working: its
-- row here holds only its settings (events, enabled, the secret being rotated out).
CREATE TABLE webhook_endpoints (
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
    CHECK (is_first = (url IS NULL) AND is_first = (secret IS NULL)),
    CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);
CREATE UNIQUE INDEX webhook_endpoints_first ON webhook_endpoints (merchant_id) WHERE is_first;
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at, id);

-- A merchant that has (or is given, by the API or by SQL) a webhook URL has its first endpoint.
CREATE FUNCTION webhook_endpoints_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_endpoints (id, merchant_id, is_first)
    VALUES ('we_' || substr(md5(random()::text || NEW.id::text), 1, 16), NEW.id, true)
    ON CONFLICT (merchant_id) WHERE is_first DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER merchants_first_endpoint AFTER INSERT OR UPDATE OF webhook_url ON merchants FOR EACH ROW
    WHEN (NEW.webhook_url IS NOT NULL) EXECUTE FUNCTION webhook_endpoints_first();
INSERT INTO webhook_endpoints (id, merchant_id, is_first, created_at)
SELECT 'we_' || substr(md5(random()::text || id::text), 1, 16), id, true, updated_at
  FROM merchants WHERE webhook_url IS NOT NULL;

-- Each delivery log is for one endpoint; NULL on logs from before endpoints: the first one's.
ALTER TABLE webhook_logs ADD COLUMN endpoint_id text;
-- The logs still to be delivered go to the first endpoint (the rest keep NULL, which means it too).
UPDATE webhook_logs l SET endpoint_id = e.id
  FROM webhook_endpoints e
 WHERE e.merchant_id = l.merchant_id AND e.is_first AND l.status = 'pending';
