-- migrate: no-transaction
-- Built without blocking payments (CONCURRENTLY: one statement at a time, no transaction).

-- The dashboard's search box (app/payment_search.py): a VPA or a card's last four digits, one
-- expression for both (a VPA always has an @, so it never equals four digits), newest first; and an
-- order's receipt, whose orders' payments are then read by payments_order_id.
CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_merchant_customer ON payments (merchant_id, lower(coalesce(vpa, card_last4)), created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_merchant_receipt ON orders (merchant_id, receipt) WHERE receipt IS NOT NULL;
