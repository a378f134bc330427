-- migrate: no-transaction
-- Built without blocking payments (CONCURRENTLY: one statement at a time, no transaction).

-- The sealing reads an hour of every merchant's rows by created_at: a BRIN index serves that for a
-- few pages of index and next to no cost on insert (rows arrive in created_at order).
CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_created_brin ON payments USING brin (created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_created_brin ON orders USING brin (created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS refunds_created_brin ON refunds USING brin (created_at);

-- A status filter (GET /payments?status=, the dashboard's) reads only that status's rows, newest
-- first, however rare the status; the index on status alone served no query.
CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_merchant_status_created ON payments (merchant_id, status, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS payments_status;
