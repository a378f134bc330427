"""GET /health and the public test endpoints that need no merchant."""
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify

from . import db
from .config import TEST_MERCHANT
from .timefmt import iso

bp = Blueprint("health", __name__)

HEARTBEAT_FRESH_SECONDS = 10


def worker_running(c):
    """A worker is running when some heartbeat is younger than ~10 s (it beats every 2 s)."""
    return db.value(c, "SELECT EXISTS (SELECT 1 FROM worker_heartbeats "
                       "WHERE beat_at > now() - make_interval(secs => %(s)s))", {"s": HEARTBEAT_FRESH_SECONDS})


def workers_alive(c):
    """How many workers beat within HEARTBEAT_FRESH_SECONDS (gateway_workers_alive)."""
    return db.value(c, "SELECT count(*) FROM worker_heartbeats "
                       "WHERE beat_at > now() - make_interval(secs => %(s)s)", {"s": HEARTBEAT_FRESH_SECONDS})


@bp.get("/health")
def health():
    now = iso(datetime.now(timezone.utc))
    try:
        # The pool tests its idle connections first and replaces the dead (a database restart):
        # the answer is about the database now, not about a connection from before.
        db.pool().check()
        running = worker_running(db.conn())
    except Exception:  # noqa: BLE001 - any failure to reach the database is "disconnected"
        current_app.logger.warning("health: database unreachable")
        body = {"status": "unhealthy", "database": "disconnected", "worker": "unknown", "timestamp": now}
        return jsonify(body), 503
    # Payments are still accepted without a worker, but nothing settles and no webhook leaves.
    return jsonify(status="healthy" if running else "degraded", database="connected",
                   worker="running" if running else "stopped", timestamp=now), 200


@bp.get("/api/v1/test/merchant")
def test_merchant():
    row = db.one(db.conn(), "SELECT id, email, api_key FROM merchants WHERE id = %(id)s", {"id": TEST_MERCHANT["id"]})
    if row is None:
        from .errors import NotFound

        raise NotFound("The test merchant is not seeded.")
    return jsonify(id=str(row["id"]), email=row["email"], api_key=row["api_key"], seeded=True)
