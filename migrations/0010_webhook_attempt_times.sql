-- When each delivery attempt of a webhook log was made, in order (the dashboard's delivery page
-- lists them). A constant default on a new column is a catalog-only change: no row is rewritten,
-- existing logs read as no recorded times.
ALTER TABLE webhook_logs ADD COLUMN attempted_at timestamptz[] NOT NULL DEFAULT '{}';
