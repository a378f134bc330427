-- Auto-disable of failing webhook endpoints (app/endpoints.py, disable_failing): since when every
-- delivery to an endpoint has failed, and why the gateway disabled it. Both NULL on existing rows:
-- catalog-only changes, and the table holds a row or two per merchant, so the CHECK's scan is short.
ALTER TABLE webhook_endpoints
    ADD COLUMN failing_since   timestamptz,
    ADD COLUMN disabled_reason text,
    ADD CONSTRAINT webhook_endpoints_disabled_reason CHECK (disabled_reason IS NULL OR NOT enabled);
