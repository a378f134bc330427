"""Every fixture of the suite (the browser's own are in browser/conftest.py; helpers are in
helpers.py). One fresh PostgreSQL database per test session (embedded pgserver, or DATABASE_URL's
server), and on it:

    app, client, db            the app, its test client, a connection for set-up and assertions
    merchant, make_merchant    merchants of their own (key, secret, webhook URL and secret)
    api                        `merchant`'s authenticated view of the JSON API over the test client
    worker                     the real worker.Worker in this process, stepped by the test
    running_worker             the real worker loop in a thread of this process (worker_threads: more)
    start_worker, live_worker  worker.py as a real process
    start_api, live_api        the app under gunicorn as a real process
    receiver                   a real HTTP webhook receiver
    dashboard_merchant, dashboard   a merchant who can sign in, and a test client signed in as them

The run fails when any log holds card data or a secret (pytest_sessionfinish)."""
import os
import secrets
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest
from werkzeug.security import generate_password_hash

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py

from helpers import (BASE_CONFIG, DASHBOARD_PASSWORD, Api, MerchantApi, Process, Receiver,  # noqa: E402
                     connect, dashboard_client, log_leaks, new_merchant, post_login)

import worker as worker_module  # noqa: E402
from app import create_app, db as app_db, embedded as embedded_pg, migrate, partitions  # noqa: E402


# ---- the database and the app --------------------------------------------------------------------

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
        partitions.ensure(c)  # as `python -m app.launcher migrate` does
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
def clean_queue(db):
    """Start from an empty jobs table (for tests that count jobs)."""
    db.execute("DELETE FROM jobs")
    yield


# ---- merchants -----------------------------------------------------------------------------------

@pytest.fixture
def make_merchant(db):
    """Make merchants of their own (own key, secret, webhook URL): each one's fields + API headers."""

    def make(webhook_url=None, webhook_secret=None):
        return new_merchant(db, webhook_url, webhook_secret)

    return make


@pytest.fixture
def merchant(make_merchant):
    return make_merchant()


@pytest.fixture
def api(client, merchant):
    """`merchant`'s authenticated view of the JSON API over the test client: api.get(path),
    api.post(path, json=...) etc. send its headers; api.merchant is `merchant`, api.client `client`."""
    return MerchantApi(client, merchant)


@pytest.fixture
def dashboard_merchant(make_merchant, db):
    """A merchant of its own who can sign in to the dashboard: m["email"], m["password"]."""
    m = make_merchant()
    db.execute("UPDATE merchants SET password_hash = %(h)s WHERE id = %(id)s",
               {"h": generate_password_hash(DASHBOARD_PASSWORD), "id": m["id"]})
    m["email"], m["password"] = f"{m['id']}@example.com", DASHBOARD_PASSWORD
    return m


@pytest.fixture
def dashboard(app, dashboard_merchant):
    """A test client signed in to the dashboard as dashboard_merchant, from a client address of its
    own (so no sign-in throttle count is shared)."""
    c = dashboard_client(app)
    r = post_login(c, dashboard_merchant["email"], dashboard_merchant["password"])
    assert r.status_code == 302, r.get_data(as_text=True)
    return c


# ---- the worker: stepped in this process, looping in a thread, or a real process -----------------

@pytest.fixture(scope="module")
def worker(app):
    """The real worker (worker.Worker) in this process, driven by the test: worker.step() claims
    and runs one batch (False when nothing is due); deliveries it starts run on its own threads.
    One per test module (each holds a connection pool and threads); a test that counts or claims
    jobs asks for clean_queue as well."""
    w = worker_module.Worker(app)
    yield w
    w.close()


@pytest.fixture
def worker_threads(app, db):
    """Start worker.Worker running its real loop (NOTIFY wake-ups, delivery pool) in threads of
    this process; stopped after the test, and woken by a NOTIFY to see the stop at once, so that
    a test may make the poll fallback long."""
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
def running_worker(worker_threads, clean_queue):
    """The real worker loop in a thread of this process, from an empty queue; stopped after the test."""
    return worker_threads()[0]


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


@pytest.fixture(scope="module")
def live_worker(process_env, log_dir, app):
    """One worker.py process for a test module that needs 'a running worker' beside live_api
    (payments settle at once in test mode); stopped after the module."""
    p = Process([sys.executable, "worker.py"], process_env, "live-worker", log_dir)
    yield p
    p.stop()


# ---- the API as a real process, a real webhook receiver ------------------------------------------

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


# ---- the logs of the run -------------------------------------------------------------------------

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
