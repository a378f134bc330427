"""EXPLAIN (ANALYZE, BUFFERS) of every statement the list and dashboard pages run, for one
merchant: run by scale_bench.py --explain in a process of its own, with the gateway's settings.

Unlike the other scripts here it imports the gateway: it calls the very functions the pages call
(payments.list_, dashboard_data.stats, …) through a connection that explains each statement
before running it, so the plans shown are those of the code as it is. Exit status 1 when a plan
reads a whole table (a Seq Scan on orders, payments, refunds or webhook_logs).
"""
import sys
import time

from app import create_app, dashboard_data, db, orders, payments, refunds, webhooks

BIG = ("orders", "payments", "refunds", "webhook_logs")
OLD_DAYS = 80


class Explain:
    """A connection that explains each statement (printed), then runs it."""

    def __init__(self, c):
        self.c, self.seq_scans = c, []

    def execute(self, sql, params=None):
        plan = [r["QUERY PLAN"] for r in self.c.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()]
        print("    " + " ".join(sql.split())[:400])
        for line in plan:
            print("      " + line)
        print()
        self.seq_scans += [line for line in plan if "Seq Scan on" in line and any(f" {t} " in line + " " for t in BIG)]
        return self.c.execute(sql, params)


def main(merchant_id):
    app = create_app()
    old = int(time.time()) - OLD_DAYS * 86400
    with app.app_context(), db.connect(db.pool()) as c:
        x = Explain(c)
        refunded = db.value(c, "SELECT payment_id FROM refunds WHERE merchant_id = %(m)s ORDER BY created_at DESC LIMIT 1",
                            {"m": merchant_id})
        before = db.value(c, "SELECT id FROM payments WHERE merchant_id = %(m)s AND created_at < to_timestamp(%(t)s) "
                             "ORDER BY created_at DESC, id DESC LIMIT 1", {"m": merchant_id, "t": old})
        pages = [
            ("GET /api/v1/payments", lambda: payments.list_(x, merchant_id, 10, 0)),
            ("GET /api/v1/payments?status=failed", lambda: payments.list_(x, merchant_id, 10, 0, "failed")),
            (f"GET /api/v1/payments?to=<now-{OLD_DAYS}d>", lambda: payments.list_(x, merchant_id, 10, 0, window=(None, old))),
            ("GET /api/v1/orders", lambda: orders.list_(x, merchant_id, 10, 0)),
            ("GET /api/v1/refunds", lambda: refunds.list_(x, merchant_id, 10, 0)),
            ("GET /api/v1/webhooks", lambda: webhooks.list_logs(x, merchant_id, 10, 0)),
            ("/dashboard: stats", lambda: dashboard_data.stats(x, merchant_id)),
            ("/dashboard: payments per day",
             lambda: dashboard_data.payments_per_day(x, merchant_id, app.config["DASHBOARD_TIMEZONE"])),
            ("/dashboard/transactions?status=failed",
             lambda: dashboard_data.browse(x, "payments", payments.COLUMNS, merchant_id, "failed")),
            (f"/dashboard/transactions?before=<a payment {OLD_DAYS}d back>",
             lambda: dashboard_data.browse(x, "payments", payments.COLUMNS, merchant_id, before=before)),
            ("/dashboard/transactions/<a refunded payment>: its webhook events",
             lambda: dashboard_data.webhook_events_for_payment(x, merchant_id, refunded)),
        ]
        for title, run in pages:
            print(f"### {title}\n")
            run()
    if x.seq_scans:
        print("A page reads a whole table:\n  " + "\n  ".join(x.seq_scans))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
