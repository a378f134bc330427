"""Fixtures: one fresh PostgreSQL database per test session (embedded pgserver, or DATABASE_URL's
server), the app, a test client, a db connection, merchants, real processes and a real receiver."""
import os
import secrets
import shutil
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py

from helpers import BASE_CONFIG, Api, Process, Receiver, api_headers, connect, log_leaks  # noqa: E402

from app import create_app, db as app_db, embedded as embedded_pg, migrate, webhooks  # noqa: E402


@pytest.fixture(scope="session")
def server_url():
    """The PostgreSQL server: DATABASE_URL when set, else the embedded one under .data/."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        from app.embedded import ensure_database_url

        url = ensure_database_url()
    return url


def scratch_database(server_url, prefix):
    """A new, empty database on the server, dropped when the generator is closed."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = app_db.libpq_url(server_url)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield app_db.libpq_url(server_url, database=name)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(server_url):
    """A fresh database for this test session, dropped at the end."""
    yield from scratch_database(server_url, "gateway_test")


@pytest.fixture
def empty_database(server_url):
    """A database of this test's own, without the schema, dropped after it."""
    yield from scratch_database(server_url, "gateway_scratch")


@pytest.fixture
def new_database(server_url):
    """Makes empty databases of this test's own, one per call, all dropped after it."""
    made = []

    def make():
        made.append(scratch_database(server_url, "gateway_scratch"))
        return next(made[-1])

    yield make
    for database in made:
        next(database, None)


@pytest.fixture(scope="session")
def app(database_url):
    application = create_app(dict(BASE_CONFIG, DATABASE_URL=database_url))
    migrate.migrate(database_url)
    with application.app_context(), app_db.connect(app_db.pool()) as c:
        app_db.seed_test_merchant(c, application.config)
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    """A connection for assertions and set-up; each statement commits."""
    with connect(app) as c:
        yield c


@pytest.fixture
def make_merchant(db):
    """Create an isolated merchant (own key, secret, webhook URL); returns its row + auth headers."""

    def make(webhook_url=None, webhook_secret=None):
        webhook_secret = webhook_secret or webhooks.new_secret()
        mid = str(uuid.uuid4())
        key, secret = "key_" + secrets.token_hex(8), "secret_" + secrets.token_hex(12)
        db.execute("INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret) "
            "VALUES (%(id)s, %(name)s, %(email)s, %(key)s, %(secret)s, %(url)s, %(ws)s)", {"id": mid, "name": f"Merchant {mid[:6]}", "email": f"{mid}@example.com", "key": key,
             "secret": secret, "url": webhook_url, "ws": webhook_secret})
        return {"id": mid, "api_key": key, "api_secret": secret, "webhook_url": webhook_url,
                "webhook_secret": webhook_secret, "headers": api_headers(key, secret)}

    return make


@pytest.fixture
def merchant(make_merchant):
    return make_merchant()


LOG_DIR = pytest.StashKey()
@pytest.fixture(scope="session", autouse=True)
def log_dir(tmp_path_factory, request):
    """Where every log of the run goes: child processes' output, and this process's records
    (pytest_sessionfinish reads them all for card data and secrets)."""
    import logging

    path = tmp_path_factory.mktemp("process-logs")
    request.config.stash[LOG_DIR] = path
    handler = logging.FileHandler(path / "in-process.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    yield path
    logging.getLogger().removeHandler(handler)


def pytest_sessionfinish(session, exitstatus):
    """After every test and every process of the run has stopped (their logs complete), the run
    fails if any log holds card data or a secret, whichever tests were selected."""
    path = session.config.stash.get(LOG_DIR, None)
    if path is None:
        return
    leaks = log_leaks(path)
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line("card data or secrets in the logs:\n" + "\n".join(leaks[:20]), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def process_env(database_url):
    """Environment for child processes (gunicorn, worker.py) on the test database."""
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "TEST_MODE": "true", "TEST_PROCESSING_DELAY": "0",
                "TEST_PAYMENT_SUCCESS": "true", "WEBHOOK_RETRY_INTERVALS_TEST": "1,1,1,1",
                "SECRET_KEY": "test-secret-key", "PYTHONUNBUFFERED": "1", "JOB_LEASE_SECONDS": "5"})
    return env


@pytest.fixture
def start_api(process_env, log_dir, app):
    """Start the API under gunicorn with extra environment; stopped after the test."""
    started = []

    def start(**overrides):
        api = Api(dict(process_env, **{k: str(v) for k, v in overrides.items()}), log_dir)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture(scope="session")
def live_api(process_env, log_dir, app):
    """One API process shared by the tests that only need 'a running gateway'."""
    api = Api(process_env, log_dir, workers=2, threads=8)
    yield api
    api.stop()


@pytest.fixture
def start_worker(process_env, log_dir, app):
    """Start worker.py as a real process; stopped (SIGTERM) after the test."""
    started = []

    def start(**overrides):
        p = Process([sys.executable, "worker.py"], dict(process_env, **{k: str(v) for k, v in overrides.items()}),
                    "worker", log_dir)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def worker_threads(app, db):
    """Start worker.Worker running its real loop (NOTIFY wake-ups, delivery pool) in threads of
    this process; stopped after the test, and woken by a NOTIFY to see the stop at once, so that
    a test may make the poll fallback long."""
    import worker as worker_module

    started = []

    def start(n=1):
        workers = [worker_module.Worker(app) for _ in range(n)]
        for w in workers:
            t = threading.Thread(target=w.run, daemon=True)
            t.start()
            started.append((w, t))
        return workers

    yield start
    for w, _ in started:
        w.stop()
    db.execute("NOTIFY jobs")
    for _, t in started:
        t.join(15)
    assert not any(t.is_alive() for _, t in started)


@pytest.fixture
def receiver():
    """A real HTTP webhook receiver on a free local port."""
    made = []

    def make(**kwargs):
        r = Receiver(**kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def clean_queue(db):
    """Start from an empty jobs table (for tests that count jobs)."""
    db.execute("DELETE FROM jobs")
    yield


@pytest.fixture
def private_server():
    """An embedded PostgreSQL of this test's own, which it may stop and start (whatever
    DATABASE_URL the suite runs on), with the schema applied. Its own short directory: socket
    paths are limited in length, and pytest prunes old tmp_path trees of other runs."""
    tmp_path = Path(tempfile.mkdtemp(prefix="gw-pg-"))
    url = embedded_pg.ensure_database_url(tmp_path)
    private = create_app({"DATABASE_URL": url, "SECRET_KEY": "x", "SEED_TEST_MERCHANT": True})
    migrate.migrate(url)
    with private.app_context(), app_db.connect(app_db.pool()) as c:
        app_db.seed_test_merchant(c, private.config)
    private.extensions["db_pool"].close()
    yield tmp_path, url
    embedded_pg.stop(tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)
