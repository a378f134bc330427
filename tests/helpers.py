"""Test helpers: real processes, a real HTTP receiver, and waiting on observable conditions."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import requests
from psycopg.rows import dict_row
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from app import db as app_db
from app.launcher import die_with_parent, gunicorn_cmd

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY, TEST_SECRET = "key_test_abc123", "secret_test_xyz789"
TEST_MERCHANT_ID = "550e8400-e29b-41d4-a716-446655440000"
CARD = {"number": "4111111111111111", "expiry_month": 12, "expiry_year": 2030, "cvv": "123", "holder_name": "Asha"}

# The app settings of the in-process tests (deterministic, instant processing, quick retries).
BASE_CONFIG = {
    "TESTING": True,
    "TEST_MODE": True,
    "TEST_PAYMENT_SUCCESS": True,
    "TEST_PROCESSING_DELAY": 0,
    "WEBHOOK_RETRY_INTERVALS": [1, 1, 1, 1],
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": True,
    "SECRET_KEY": "test-secret-key",
    "LOG_LEVEL": "INFO",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Poll an observable condition until it holds (never a fixed sleep standing in for it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class Process:
    """A child process (gunicorn, worker.py) with its output captured to a file."""

    def __init__(self, args, env, name, log_dir, cwd=ROOT):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}-{int(time.time() * 1000)}.log"
        self.log_file = open(self.log_path, "wb")
        # Own process group (a signal to it reaches gunicorn's workers too), and SIGTERM when the
        # test run dies, so a killed run leaves no server behind.
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)

    def output(self):
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)


class Api:
    """The real app under gunicorn on a free port."""

    def __init__(self, env, log_dir, workers=1, threads=8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The launcher's own command, so the tests run the shipped gunicorn settings; PUBLIC_URL is
        # the address the docs snippets show.
        env = dict(env, PORT=str(self.port), HOST="127.0.0.1", WEB_CONCURRENCY=str(workers),
                   GUNICORN_THREADS=str(threads), PUBLIC_URL=env.get("PUBLIC_URL") or self.url)
        self.process = Process(gunicorn_cmd(env), env, "api", log_dir)
        try:
            wait_until(self._up, timeout=60, message=f"API on {self.url}")
        except AssertionError:
            self.process.stop()
            raise AssertionError(f"API did not come up on {self.url}:\n{self.process.output()[-3000:]}") from None

    def _up(self):
        assert self.process.alive(), self.process.output()
        try:
            return requests.get(self.url + "/health", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    def stop(self):
        self.process.stop()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class Receiver:
    """A real local HTTP server that records webhook deliveries. `responses` is a list of status
    codes answered in turn (then 200); `hang` makes it wait that many seconds before answering."""

    def __init__(self, responses=(), hang=0.0, port=None):
        self.responses = list(responses)
        self.hang = hang
        self.requests = []
        self.cond = threading.Condition()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhook"
        self.server = make_server("127.0.0.1", self.port, self._app, threaded=True, request_handler=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @Request.application
    def _app(self, request):
        body = request.get_data()
        if self.hang:
            time.sleep(self.hang)  # the endpoint under test is slow by design, not synchronisation
        with self.cond:
            status = self.responses.pop(0) if self.responses else 200
            self.requests.append({"headers": dict(request.headers), "body": body, "status": status,
                                  "at": time.monotonic(), "json": json.loads(body) if body else None})
            self.cond.notify_all()
        return Response(json.dumps({"ok": status == 200}), status=status, mimetype="application/json")

    def wait_for(self, n, timeout=15.0, event=None):
        """Block until n deliveries (of `event`, if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if event is None or r["json"]["event"] == event]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} deliveries of {event or 'any event'}, got {len(got)}")
                self.cond.wait(left)

    def close(self):
        self.server.shutdown()


def api_headers(key=TEST_KEY, secret=TEST_SECRET, **extra):
    return {"X-Api-Key": key, "X-Api-Secret": secret, **extra}


# Never in any log of a run: the test cards' numbers, CVVs, API secrets, webhook secrets.
FORBIDDEN_IN_LOGS = [
    re.compile(r"4111[ -]?1111[ -]?1111[ -]?1111"),
    re.compile(r"5555[ -]?5555[ -]?5555[ -]?4444"),
    re.compile(r"3782[ -]?822463[ -]?10005"),
    re.compile(r"6011[ -]?1111[ -]?1111[ -]?1117"),
    re.compile(r"cvv\W{1,6}\d{3,4}", re.IGNORECASE),
    re.compile(re.escape(TEST_SECRET)),
    re.compile(r"secret_[0-9a-f]{24}"),            # make_merchant's API secrets
    re.compile(r"whsec_test_abc123"),
    re.compile(r"whsec_[A-Za-z0-9+/]{40,}={0,2}"),  # generated webhook secrets
]


def log_leaks(path):
    """Lines of the run's logs that hold card data or a secret, as 'file:line: pattern'."""
    leaks = []
    for log_file in sorted(p for p in path.iterdir() if p.is_file()):
        for n, line in enumerate(log_file.read_text(errors="replace").splitlines(), 1):
            leaks += [f"{log_file.name}:{n}: {p.pattern}" for p in FORBIDDEN_IN_LOGS if p.search(line)]
    return leaks


class Db(psycopg.Connection):
    """The tests' handle on the database: a psycopg connection with app.db's helpers as methods
    (db.value(sql, params), …); execute() is psycopg's own."""

    def one(self, sql, params=None):
        return app_db.one(self, sql, params)

    def all(self, sql, params=None):
        return app_db.all(self, sql, params)

    def value(self, sql, params=None):
        return app_db.value(self, sql, params)

    def values(self, sql, params=None):
        return app_db.values(self, sql, params)


def connect(app, autocommit=True):
    """A connection of its own, outside the app's pool. autocommit=False is psycopg's default
    mode, for tests that hold a transaction open: statements stay in one transaction until
    commit() or rollback()."""
    return Db.connect(app_db.libpq_url(app.config["DATABASE_URL"]), autocommit=autocommit, row_factory=dict_row)


def own_transaction(app):
    return connect(app, autocommit=False)
