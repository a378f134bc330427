"""/api/v1/test/jobs/status: queue counts and the worker's heartbeat, for operators and tests."""
from .. import db, jobs
from ..health import worker_running
from . import bp


@bp.get("/test/jobs/status")
def jobs_status():
    c = db.conn()
    n = jobs.overview(c)["totals"]
    return {"pending": n["pending"], "processing": n["processing"], "completed": n["completed"],
            "failed": n["dead"], "worker_status": "running" if worker_running(c) else "stopped"}
