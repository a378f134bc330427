-- Every event raised for a merchant, once, whatever the number of endpoints it went to (none
-- included): GET /api/v1/events, and what a replay sends again. Kept, like the delivery logs, by
-- UTC day partitions dropped whole after WEBHOOK_LOG_RETENTION_DAYS (app/partitions.py creates them).
CREATE TABLE events (
    id          text NOT NULL CHECK (id ~ '^evt_[A-Za-z0-9]{16}$'),
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    event       text NOT NULL,
    body        text NOT NULL,     -- the exact bytes every delivery of it sends: {id, event, timestamp, data}
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX events_merchant_created ON events (merchant_id, created_at DESC, id DESC);
CREATE INDEX events_merchant_event_created ON events (merchant_id, event, created_at DESC, id DESC);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Counted by the rollups like the other lists (by event name, for ?event=).
INSERT INTO rollups_sealed (kind) VALUES ('events');
CREATE TRIGGER events_rollups_insert AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow('events', 'event');
CREATE TRIGGER events_rollups_change AFTER UPDATE OF event, created_at, merchant_id ON events FOR EACH ROW
    WHEN (least(OLD.created_at, NEW.created_at) < date_trunc('hour', now(), 'UTC')
          AND (OLD.event, OLD.created_at, OLD.merchant_id) IS DISTINCT FROM (NEW.event, NEW.created_at, NEW.merchant_id))
    EXECUTE FUNCTION rollups_follow('events', 'event');
CREATE TRIGGER events_rollups_delete AFTER DELETE ON events FOR EACH ROW
    WHEN (OLD.created_at < date_trunc('hour', now(), 'UTC')) EXECUTE FUNCTION rollups_follow('events', 'event');
