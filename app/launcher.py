"""`make run` and `make test`: database, schema migrations, then the processes, stopped together on Ctrl-C.

    python -m app.launcher run       migrate, then API (gunicorn) + worker.py + test merchant in the
                                     foreground; a child that exits is restarted with backoff
    python -m app.launcher migrate   apply the pending schema migrations, create webhook_logs' and
                                     events' first days' partitions, and exit
    python -m app.launcher test      pytest against a fresh database
    python -m app.launcher api|worker|test_merchant   one process (the Docker image's commands);
                                     they never change the schema (but for the worker's
                                     webhook_logs partitions): run `migrate` first
"""
import os
import signal
import subprocess
import sys
import time

from .config import DATA_DIR, ROOT

PY = sys.executable


def prepare_database(env):
    """Set DATABASE_URL, starting the embedded server when it is unset. The embedded server stops
    when the last launcher using it exits (pgserver counts its users)."""
    if not env.get("DATABASE_URL"):
        from .embedded import ensure_database_url

        env["DATABASE_URL"] = ensure_database_url(stop_with_last_user=True)


def check_settings(env):
    """Read the settings as the API and the worker will, before anything starts: a bad value stops
    the start here, once, with its message, instead of failing every child at each restart."""
    from . import ratelimit
    from .config import load

    try:
        settings = load(env)
        for name in ratelimit.SETTINGS:
            if settings[name]:
                ratelimit.setting(name, settings[name])
    except ValueError as e:
        print(f"launcher: {e}", file=sys.stderr, flush=True)
        return False
    return True


def migrate(env):
    """Apply the pending schema migrations (app/migrate.py) to DATABASE_URL's database."""
    import psycopg
    from psycopg.rows import dict_row

    from .db import libpq_url
    from .migrate import migrate as run_migrations
    from .partitions import ensure as ensure_partitions

    applied = run_migrations(libpq_url(env["DATABASE_URL"]))
    print(f"migrations applied: {', '.join(applied)}" if applied else "migrations: the database is up to date",
          flush=True)
    # webhook_logs' and events' first days, so that a new database has them before any worker ran (the
    # worker creates the next ones; without them rows wait in the DEFAULT partition).
    with psycopg.connect(libpq_url(env["DATABASE_URL"]), autocommit=True, row_factory=dict_row) as c:
        created = ensure_partitions(c)
    if created:
        print(f"partitions created: {', '.join(created)}", flush=True)


def metrics_dir(env, what):
    """PROMETHEUS_MULTIPROC_DIR, emptied: the counters of an earlier run would otherwise be added
    to this one's. `run` shares one directory (default .data/metrics) between the API and the
    worker, so the API's /metrics carries the worker's counters; `api` and `worker` empty only a
    directory the operator gave them (each its own: docs/metrics.md), and gunicorn makes one of
    its own when none is given (app/gunicorn_conf.py)."""
    if what == "run":
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics"))
    path = env.get("PROMETHEUS_MULTIPROC_DIR")
    if what in ("run", "api", "worker") and path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))


def bind(env, port):
    """host:port to listen on: loopback unless HOST says otherwise (the receiver's /logs holds webhook bodies)."""
    host = env.get("HOST") or "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_cmd(env):
    return [PY, "-m", "gunicorn", "app:create_app()",
            "--bind", bind(env, env.get("PORT", "8000")),
            "--workers", env.get("WEB_CONCURRENCY", "2"),
            "--threads", env.get("GUNICORN_THREADS", "4"),
            "--worker-class", "gthread",
            # Idle keep-alive connections wait in gthread's selector, not on a thread, so keeping them
            # longer than clients' pools (Node 4-5 s) costs nothing and avoids reusing a closed one.
            "--keep-alive", env.get("GUNICORN_KEEPALIVE", "75"),
            "--config", "python:app.gunicorn_conf",
            "--graceful-timeout", "10", "--no-control-socket",
            # gunicorn itself would believe X-Forwarded-Proto from 127.0.0.1: TRUST_PROXY alone decides.
            "--forwarded-allow-ips", "",
            # gunicorn formats no access line at all without the flag
            *(["--access-logfile", "-"] if env.get("ACCESS_LOG") else [])]


def test_merchant_cmd(env):
    return [PY, "-m", "gunicorn", "test_merchant.app:create_app()",
            "--bind", bind(env, env.get("TEST_MERCHANT_PORT", "3002")),
            "--workers", "1", "--threads", "8", "--worker-class", "gthread", "--graceful-timeout", "5", "--no-control-socket"]


def die_with_parent():
    """preexec_fn for children: SIGTERM them if their parent dies, even by SIGKILL (Linux), so a
    killed launcher or test run never leaves a gunicorn or a worker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


FIRST_BACKOFF, MAX_BACKOFF = 0.5, 30.0
STABLE_SECONDS = 60.0  # a child up this long has recovered: its next crash restarts it quickly again
STOP_SECONDS = 15  # how long children get to stop after SIGTERM (compose's stop_grace_period is above it)


class Child:
    """One supervised command and its current process."""

    def __init__(self, name, cmd, env):
        self.name, self.cmd, self.env = name, cmd, env
        self.backoff = FIRST_BACKOFF
        self.proc = None
        self.restart_at = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=ROOT, preexec_fn=die_with_parent)
        self.started = time.monotonic()
        self.restart_at = None

    def exited(self, now):
        """Schedule the restart of a child that exited; returns the delay."""
        if now - self.started >= STABLE_SECONDS:
            self.backoff = FIRST_BACKOFF
        delay, self.backoff = self.backoff, min(self.backoff * 2, MAX_BACKOFF)
        self.restart_at = now + delay
        return delay


def supervise(commands, env, restart):
    """Run the commands together until SIGINT/SIGTERM, then stop them all. A child that exits is
    restarted with backoff when `restart`, else the others are stopped and its code returned."""
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = [Child(name, cmd, env) for name, cmd in commands.items()]
    code = 0
    while not stopping:
        now = time.monotonic()
        for c in children:
            if c.restart_at is not None:
                if now >= c.restart_at:
                    c.start()
                    print(f"launcher: {c.name} restarted (pid {c.proc.pid})", file=sys.stderr, flush=True)
            elif c.proc.poll() is not None:
                if not restart:
                    print(f"launcher: {c.name} exited with {c.proc.returncode}; stopping the others",
                          file=sys.stderr, flush=True)
                    code = c.proc.returncode or 1
                    stopping = True
                    break
                delay = c.exited(now)
                print(f"launcher: {c.name} exited with {c.proc.returncode}; restarting it in {delay:g} s",
                      file=sys.stderr, flush=True)
        else:
            time.sleep(0.1)
    running = [c.proc for c in children if c.proc.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return code


def main(argv):
    what = argv[0] if argv else "run"
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if what == "test":
        prepare_database(env)
        env.setdefault("SECRET_KEY", "test-secret-key")
        return subprocess.call([PY, "-m", "pytest", *argv[1:]], env=env, cwd=ROOT, preexec_fn=die_with_parent)
    if what == "run":
        port = env.setdefault("TEST_MERCHANT_PORT", "3002")
        # The bundled receiver is on loopback: allowed by name and port, while other private
        # addresses and ports (the database, the LAN, a cloud's metadata service) stay refused.
        env.setdefault("WEBHOOK_ALLOWED_HOSTS", f"127.0.0.1:{port},localhost:{port}")
        env.setdefault("TEST_MERCHANT_WEBHOOK_URL", f"http://127.0.0.1:{port}/webhook")
        env.setdefault("SEED_TEST_MERCHANT", "true")  # the demo signs in as the test merchant
    if what in ("run", "api", "worker") and not check_settings(env):
        return 2
    if what != "test_merchant":  # the receiver needs no database
        prepare_database(env)
    if what in ("migrate", "run"):
        migrate(env)  # `make run` migrates first; a deployment runs `migrate` before api and worker
        if what == "migrate":
            return 0
    metrics_dir(env, what)
    commands = {
        "run": {"api": gunicorn_cmd(env), "worker.py": [PY, "worker.py"], "test merchant": test_merchant_cmd(env)},
        "api": {"api": gunicorn_cmd(env)},
        "worker": {"worker.py": [PY, "worker.py"]},
        "test_merchant": {"test merchant": test_merchant_cmd(env)},
    }[what]
    if what == "run":
        print(f"Gateway on http://localhost:{env.get('PORT', '8000')}  "
              f"(dashboard: /login, test@example.com)  test merchant on :{env['TEST_MERCHANT_PORT']}",
              flush=True)
    # One service per container restarts by the container's policy; `make run` supervises its own.
    return supervise(commands, env, restart=what == "run")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
