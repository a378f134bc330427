-- migrate: no-transaction
-- Dead jobs by kind for /metrics (gateway_jobs): without it counting them reads every finished job.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_dead ON jobs (kind) WHERE status = 'dead';
