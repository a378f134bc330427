"""Shared pieces of the benchmarks: a fresh database, real processes, the machine's description."""
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from app import db as app_db  # noqa: E402
from helpers import Process, Receiver, free_port, wait_until  # noqa: E402,F401

RESULTS = ROOT / "bench" / "results"


def server_url():
    """DATABASE_URL's server, else the embedded one (started if needed)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from app.embedded import ensure_database_url

    return ensure_database_url()


def fresh_database(name, url=None):
    """DROP + CREATE a database for one benchmark; returns its libpq URL with the schema applied."""
    admin = app_db.libpq_url(url or server_url())
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = app_db.libpq_url(url or server_url(), database=name)
    env = dict(os.environ, DATABASE_URL=db_url, SEED_TEST_MERCHANT="true")  # the benchmarks use the test merchant
    subprocess.run([sys.executable, "-m", "flask", "--app", "app", "init-db"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return db_url


def pg_settings(url):
    with psycopg.connect(url) as c:
        names = ["server_version", "shared_buffers", "synchronous_commit", "fsync", "max_connections", "work_mem"]
        return {n: c.execute(f"SHOW {n}").fetchone()[0] for n in names}


def wal_bytes(c):
    """The server's WAL insert position in bytes: the difference of two is the WAL written between."""
    return int(c.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0])


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def worker_env(db_url, **extra):
    env = dict(os.environ, DATABASE_URL=db_url, TEST_MODE="true", TEST_PROCESSING_DELAY="0",
               LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", WEBHOOK_ALLOW_PRIVATE_TARGETS="true")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_worker(env, log_dir, noop=False, name="worker"):
    """worker.py as a real process; with noop=True it also knows a 'bench.noop' kind that does nothing."""
    if noop:
        code = ("import sys, worker; worker.HANDLERS['bench.noop'] = lambda c, batch, settings, emit: {}; "
                "sys.exit(worker.main())")
        args = [sys.executable, "-c", code]
    else:
        args = [sys.executable, "worker.py"]
    p = Process(args, env, name, log_dir)
    return p


def wait_for_heartbeat(url, pid, timeout=30):
    def beating():
        with psycopg.connect(url) as c:
            return c.execute("SELECT 1 FROM worker_heartbeats WHERE pid = %s", (pid,)).fetchone()

    wait_until(beating, timeout=timeout, interval=0.05, message="worker heartbeat")


def write_result(name, text):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(text)


def now():
    return time.perf_counter()
