"""The embedded PostgreSQL (PyPI pgserver) used when DATABASE_URL is unset: data under .data/pg."""
import logging
import subprocess
from pathlib import Path

from .config import DATA_DIR

log = logging.getLogger(__name__)


def pgdata(data_dir=None):
    return Path(data_dir or DATA_DIR) / "pg"


def ensure_database_url(data_dir=None, stop_with_last_user=False):
    """Start (or reuse) the embedded server and return its URL. With stop_with_last_user, this
    process counts as a user of the server (pgserver keeps the list in the data directory) and
    the server stops when the last such process exits: `make run` and `make test` side by side
    share one server without one stopping it under the other."""
    import pgserver

    path = pgdata(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(path, cleanup_mode="stop" if stop_with_last_user else None)
    # get_server caches its handle per directory; make sure the server behind it is (still) up.
    with server._lock:
        server.ensure_postgres_running()
    return server.get_uri()


def _pg_ctl(path, *args):
    import os

    from pgserver._commands import pg_ctl

    # pgserver runs postgres as the "pgserver" user when we are root (postgres refuses root).
    user = "pgserver" if os.geteuid() == 0 else None
    return pg_ctl(list(args), pgdata=Path(path), user=user)


def stop(data_dir=None, mode="fast"):
    """Stop the embedded server (no-op when it is not running)."""
    path = pgdata(data_dir)
    if not (path / "postmaster.pid").exists():
        return
    try:
        _pg_ctl(path, "-w", "-m", mode, "stop")
    except subprocess.CalledProcessError as e:
        log.warning("pg_ctl stop: %s", e)


def start(data_dir=None):
    """Start a stopped embedded server again (used by outage tests)."""
    return ensure_database_url(data_dir)
