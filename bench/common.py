"""What the benchmarks share: the PostgreSQL server, a fresh database, real processes, medians.

Nothing here imports the gateway: the scripts talk to PostgreSQL with psycopg, to the gateway over
HTTP, and start it with the launcher's own gunicorn command.
"""
import contextlib
import ctypes
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TEST_MERCHANT_ID = "550e8400-e29b-41d4-a716-446655440000"  # seeded by `flask seed` with SEED_TEST_MERCHANT
AUTH = {"X-Api-Key": "key_test_abc123", "X-Api-Secret": "secret_test_xyz789"}


def server_url():
    """DATABASE_URL's server, else the embedded one of `make run` (.data/pg), which stops when its last user exits."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)
    import pgserver

    (ROOT / ".data" / "pg").mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(ROOT / ".data" / "pg", cleanup_mode="stop").get_uri()


def database_url(url, name):
    """The same server and role, database `name` (a socket path stays in ?host=)."""
    return urlsplit(url)._replace(path="/" + quote(name)).geturl()


def drop_databases(names):
    """DROP the benchmark's databases (gigabytes at the large sizes) once it is done with them."""
    with psycopg.connect(server_url(), autocommit=True) as c:
        for name in names:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(name, root=ROOT):
    """DROP and CREATE database `name`, apply the gateway's schema (the migrations of the tree at
    `root`) with its test merchant; its URL."""
    url = server_url()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = database_url(url, name)
    env = app_env(db_url, SEED_TEST_MERCHANT="true")
    for cmd in (["-m", "app.launcher", "migrate"], ["-m", "flask", "--app", "app", "seed"]):
        subprocess.run([PY, *cmd], env=env, cwd=root, check=True, stdout=subprocess.DEVNULL)
    return db_url


@contextlib.contextmanager
def revision_tree(rev, parent):
    """Git revision `rev` checked out in a temporary worktree, `parent`/old, for the block and
    removed after; None when rev is None."""
    if rev is None:
        yield None
        return
    tree = Path(parent) / "old"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), rev], cwd=ROOT, check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def pg_settings(url):
    """The server settings that bear on the figures, as one line to print beside them."""
    with psycopg.connect(url) as c:
        show = {n: c.execute(f"SHOW {n}").fetchone()[0]
                for n in ("server_version", "shared_buffers", "synchronous_commit", "fsync")}
    return (f"PostgreSQL {show['server_version'].split()[0]} (shared_buffers {show['shared_buffers']}, "
            f"synchronous_commit {show['synchronous_commit']}, fsync {show['fsync']})")


def app_env(db_url, **extra):
    """The environment of the gateway's processes: no request log, no per-request access log."""
    env = {k: v for k, v in os.environ.items() if k not in ("ACCESS_LOG", "TEST_MERCHANT_WEBHOOK_URL", "TEST_MODE")}
    env.update(DATABASE_URL=db_url, SECRET_KEY="bench-secret-key", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def test_mode_env(db_url, **extra):
    """app_env with instant test-mode processing and webhooks allowed to a local receiver."""
    return app_env(db_url, TEST_MODE="true", TEST_PROCESSING_DELAY="0", WEBHOOK_ALLOW_PRIVATE_TARGETS="true", **extra)


def _die_with_parent():
    # SIGTERM the child if the benchmark dies, even by SIGKILL (Linux PR_SET_PDEATHSIG), so no server is left behind.
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Process:
    """A child process in its own process group, its output in log_dir/<name>.log."""

    def __init__(self, args, env, name, log_dir, cwd=ROOT):
        self.name, self.log = name, Path(log_dir) / f"{name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    def check_alive(self):
        if self.proc.poll() is not None:
            sys.exit(f"{self.name} exited:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def gunicorn_cmd(env, app="app:create_app()", root=ROOT):
    """The launcher's gunicorn command as the tree at `root` builds it, serving `app` instead of the gateway."""
    code = "import json, os; from app.launcher import gunicorn_cmd; print(json.dumps(gunicorn_cmd(dict(os.environ))))"
    cmd = json.loads(subprocess.check_output([PY, "-c", code], env=env, cwd=root))
    return [app if arg == "app:create_app()" else arg for arg in cmd]


class Server(Process):
    """gunicorn on a free port with WORKERS × THREADS (gthread), up once it answers HTTP."""

    def __init__(self, name, env, log_dir, workers=2, threads=4, app="app:create_app()", root=ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(env, PORT=str(self.port), HOST="127.0.0.1", WEB_CONCURRENCY=str(workers),
                   GUNICORN_THREADS=str(threads))
        self.cmd = gunicorn_cmd(env, app, root)
        super().__init__(self.cmd, env, name, log_dir, cwd=root)
        self.ps = psutil.Process(self.proc.pid)
        wait_until(lambda: self._up() and len(self.ps.children()) >= workers, timeout=60, message=f"{name} up")

    def _up(self):
        self.check_alive()
        try:
            return requests.get(self.url + "/", timeout=2) is not None
        except requests.ConnectionError:
            return False

    def procs(self):
        return [self.ps, *self.ps.children(recursive=True)]


def start_worker(env, log_dir, noop=False, root=ROOT):
    """worker.py of the tree at `root`; with noop=True it also knows a 'bench.noop' job kind that does nothing."""
    code = ("import sys, worker; worker.HANDLERS['bench.noop'] = worker.Batched(lambda c, batch, settings, emit: {}); "
            "sys.exit(worker.main())")
    worker = Process([PY, "-c", code] if noop else [PY, "worker.py"], env, "worker", log_dir, cwd=root)
    url = env["DATABASE_URL"]

    def beating():
        worker.check_alive()
        with psycopg.connect(url) as c:
            return c.execute("SELECT 1 FROM worker_heartbeats WHERE pid = %(pid)s", {"pid": worker.proc.pid}).fetchone()

    wait_until(beating, timeout=30, interval=0.05, message="worker heartbeat")
    return worker


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)  # polling an observable condition
    return value


def new_id(prefix):
    """An id of the gateway's shape (app/ids.py): the minute in 5 base-36 digits, then 11 random base-62 ones."""
    minute, digits = int((time.time() - 1735689600) // 60), ""
    for _ in range(5):
        minute, r = divmod(minute, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return prefix + digits + "".join(random.choices("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", k=11))


def machine():
    """The machine, to print beside the figures: cores, CPU model, the 1-minute load average."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return f"{os.cpu_count()} × {model}, load {os.getloadavg()[0]:.1f}"


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))] if s else float("nan")


def runs(values, fmt=".0f"):
    """'median (run, run, …)' for a table cell."""
    return f"{median(values):{fmt}} ({', '.join(f'{v:{fmt}}' for v in values)})"
