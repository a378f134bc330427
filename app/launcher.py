"""`make run` and `make test`: database, schema, then the processes, stopped together on Ctrl-C.

    python -m app.launcher run     API (gunicorn) + worker.py + test merchant, in the foreground
    python -m app.launcher test    pytest against a fresh database
    python -m app.launcher api|worker|test_merchant   one process (the Docker image's commands)
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


def apply_schema(env):
    """schema.sql + seed, in a child process so it sees exactly the children's environment."""
    subprocess.run([PY, "-m", "flask", "--app", "app", "init-db"], env=env, cwd=ROOT, check=True)


def gunicorn_cmd(env):
    return [PY, "-m", "gunicorn", "app:create_app()",
            "--bind", f"0.0.0.0:{env.get('PORT', '8000')}",
            "--workers", env.get("WEB_CONCURRENCY", "2"),
            "--threads", env.get("GUNICORN_THREADS", "4"),
            "--worker-class", "gthread",
            "--graceful-timeout", "10", "--no-control-socket",
            # gunicorn formats no access line at all without the flag
            *(["--access-logfile", "-"] if env.get("ACCESS_LOG") else [])]


def test_merchant_cmd(env):
    return [PY, "-m", "gunicorn", "test_merchant.app:create_app()",
            "--bind", f"0.0.0.0:{env.get('TEST_MERCHANT_PORT', '3002')}",
            "--workers", "1", "--threads", "8", "--worker-class", "gthread", "--graceful-timeout", "5", "--no-control-socket"]


def die_with_parent():
    """preexec_fn for children: SIGTERM them if their parent dies, even by SIGKILL (Linux), so a
    killed launcher or test run never leaves a gunicorn or a worker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supervise(commands, env):
    """Run the commands together; on SIGINT/SIGTERM or any child exiting, stop them all."""
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=die_with_parent) for cmd in commands]
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for p in procs:
            if p.poll() is not None:
                print(f"launcher: {p.args[2] if len(p.args) > 2 else p.args} exited with {p.returncode}; "
                      "stopping the others", file=sys.stderr)
                code = p.returncode or 1
                stopping = True
                break
        else:
            time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs:
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
        # The bundled receiver is on loopback, so the demo must allow private webhook targets.
        env.setdefault("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        env.setdefault("TEST_MERCHANT_WEBHOOK_URL", f"http://127.0.0.1:{port}/webhook")
        env.setdefault("SEED_TEST_MERCHANT", "true")  # the demo signs in as the test merchant
    if what != "test_merchant":  # the receiver needs no database
        prepare_database(env)
        apply_schema(env)
    commands = {
        "run": [gunicorn_cmd(env), [PY, "worker.py"], test_merchant_cmd(env)],
        "api": [gunicorn_cmd(env)],
        "worker": [[PY, "worker.py"]],
        "test_merchant": [test_merchant_cmd(env)],
    }[what]
    if what == "run":
        print(f"Gateway on http://localhost:{env.get('PORT', '8000')}  "
              f"(dashboard: /login, test@example.com)  test merchant on :{env['TEST_MERCHANT_PORT']}",
              flush=True)
    return supervise(commands, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
