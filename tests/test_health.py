"""/health tells a stopped worker and a database outage apart, survives a database restart, and
the compose worker's healthcheck (`python worker.py --healthcheck`) follows its heartbeat."""
import signal
import socket
import subprocess
import sys

import pytest
import requests

from helpers import ROOT, Api, wait_until

from app import embedded


@pytest.fixture
def no_heartbeats(db):
    """Start without any worker's heartbeat (workers of earlier tests may have left theirs)."""
    db.execute("DELETE FROM worker_heartbeats")


def beat(db, seconds_ago):
    db.execute("INSERT INTO worker_heartbeats (worker_id, hostname, pid, beat_at) "
                    "VALUES ('w-test', 'elsewhere', 1, now() - make_interval(secs => %(s)s)) "
                    "ON CONFLICT (worker_id) DO UPDATE SET beat_at = EXCLUDED.beat_at", {"s": seconds_ago})


def test_health_is_degraded_when_no_worker_beat_for_10_seconds(client, db, no_heartbeats):
    def assert_degraded():
        r = client.get("/health")
        body = r.get_json()
        assert r.status_code == 200 and body["database"] == "connected" and body["timestamp"].endswith("Z")
        assert body["status"] == "degraded" and body["worker"] == "stopped"

    assert_degraded()          # no worker ever beat
    beat(db, 11)
    assert_degraded()          # the last beat is 11 s old
    beat(db, 3)
    r = client.get("/health")
    assert r.status_code == 200
    assert r.get_json()["status"] == "healthy" and r.get_json()["worker"] == "running"


def test_health_follows_a_real_worker(client, no_heartbeats, start_worker):
    worker = start_worker()
    wait_until(lambda: client.get("/health").get_json()["status"] == "healthy", timeout=30,
               message="healthy with the worker running")
    worker.stop()  # a clean stop says goodbye in worker_heartbeats
    r = client.get("/health")
    assert r.status_code == 200
    assert r.get_json()["status"] == "degraded" and r.get_json()["worker"] == "stopped"


@pytest.mark.slow
def test_first_health_after_a_database_restart_is_connected(private_server, process_env, log_dir):
    """The API's pool holds a connection from before the restart; /health must not report it."""
    path, url = private_server
    api = Api(dict(process_env, DATABASE_URL=url), log_dir, workers=1, threads=4)
    try:
        assert requests.get(api.url + "/health", timeout=5).json()["database"] == "connected"  # warm pool
        embedded.stop(path)
        embedded.start(path)
        r = requests.get(api.url + "/health", timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["database"] == "connected" and r.json()["status"] in ("healthy", "degraded")
    finally:
        api.stop()


def healthcheck(env, max_age):
    return subprocess.run([sys.executable, "worker.py", "--healthcheck", str(max_age)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_worker_healthcheck_follows_the_heartbeat(no_heartbeats, start_worker, process_env, db):
    none = healthcheck(process_env, 3)
    assert none.returncode != 0 and socket.gethostname() in none.stderr
    worker = start_worker()
    wait_until(lambda: healthcheck(process_env, 3).returncode == 0, timeout=30, interval=0.2,
               message="healthcheck passing with the worker running")
    # A hung worker (stopped, not dead) keeps its process but beats no more.
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        hung = wait_until(lambda: (lambda r: r if r.returncode != 0 else None)(healthcheck(process_env, 3)),
                          timeout=30, interval=0.2, message="healthcheck failing with the worker hung")
        assert "no heartbeat" in hung.stderr
    finally:
        worker.proc.send_signal(signal.SIGCONT)
