"""The deployment path: deploy/nginx.conf run by Debian's nginx in front of a real gunicorn (slow
clients, the errors nginx answers itself, the sign-in flood guard), the compose file as
docker-compose v1 resolves it, and the image's build context."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import requests
import yaml

from helpers import ROOT, Api, Process, api_headers, free_port, wait_until

NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))
COMPOSE = shutil.which("docker-compose")


@pytest.fixture
def nginx_installed():
    if NGINX is None:
        pytest.fail("nginx is not installed: apt-get install nginx (.ci/run does)")


@pytest.fixture
def compose_installed():
    if COMPOSE is None:
        pytest.fail("docker-compose is not installed: apt-get install docker-compose (.ci/run does)")


# These checks are part of the suite's contract: without the tool they fail, never skip.
needs_nginx = pytest.mark.usefixtures("nginx_installed")
needs_compose = pytest.mark.usefixtures("compose_installed")


# ---- nginx ---------------------------------------------------------------------------------------

def render_nginx_conf(directory, upstream, port):
    """deploy/nginx.conf as compose runs it, but pointed at a local upstream and port, with nginx's
    temporary files in `directory` (its compiled-in paths need root)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    temp = "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    for old, new in (("server api:8000;", f"server {upstream};"),
                     ("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;"),
                     ("http {\n", "http {\n" + temp)):
        assert conf.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        conf = conf.replace(old, new)
    path = Path(directory) / "nginx.conf"
    path.write_text(conf)
    return path


class Nginx:
    """Debian's nginx running deploy/nginx.conf in the foreground, in front of `upstream`."""

    def __init__(self, upstream, log_dir):
        self.dir = tempfile.mkdtemp(prefix="gw-nginx-")
        os.chmod(self.dir, 0o755)  # nginx's workers (nobody, when the tests run as root) use it
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = render_nginx_conf(self.dir, upstream, self.port)
        self.process = Process([NGINX, "-p", self.dir, "-c", str(conf), "-g",
                                f"daemon off; pid {self.dir}/nginx.pid; error_log {self.dir}/error.log;"],
                               dict(os.environ), "nginx", log_dir)
        wait_until(self._up, timeout=10, message=f"nginx on {self.url}")

    def _up(self):
        assert self.process.alive(), self.process.output()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def api_2x4(process_env, log_dir, app):
    """The API as `make run` starts it: gunicorn, 2 processes of 4 threads."""
    api = Api(process_env, log_dir, workers=2, threads=4)
    yield api
    api.stop()


@pytest.fixture(scope="module")
def nginx(api_2x4, log_dir):
    if NGINX is None:
        pytest.fail("nginx is not installed: apt-get install nginx (.ci/run does)")
    proxy = Nginx(f"127.0.0.1:{api_2x4.port}", log_dir)
    yield proxy
    proxy.stop()


class SlowClients:
    """Slowloris: n connections that each dribble a request line and headers, a few bytes a
    second, never finishing it."""

    REQUEST = b"POST /api/v1/orders HTTP/1.1\r\nHost: gateway\r\n" + b"X-Slow: 1\r\n" * 10_000

    def __init__(self, port, n=50):
        self.port = port
        self.socks = []
        self.sent = 10
        self.lock = threading.Lock()
        self.add(n)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def add(self, n):
        """Open n more, each at the point the others have reached."""
        with self.lock:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.settimeout(None)  # blocking, so that still_open's MSG_DONTWAIT peek answers at once
                s.sendall(self.REQUEST[:self.sent])  # at first "POST /api/": a partial request line
                self.socks.append(s)

    def _dribble(self):
        while not self.stop.wait(0.5):  # the slow client's pace, not a synchronisation
            with self.lock:
                chunk = self.REQUEST[self.sent:self.sent + 4]
                self.sent += 4
                socks = list(self.socks)
            for s in socks:
                try:
                    s.sendall(chunk)
                except OSError:
                    pass

    def still_open(self):
        """How many the server has not closed yet."""
        n = 0
        for s in self.socks:
            try:
                n += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def held_by_each_process(api):
    """Open connections each gunicorn worker process has accepted on the API's port."""
    workers = psutil.Process(api.process.proc.pid).children()
    return [sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == api.port for c in w.net_connections("tcp"))
            for w in workers] or [0]


def answers_promptly(base, timeout=3.0):
    """A merchant's normal traffic: create an order and check /health, each within `timeout`."""
    t0 = time.monotonic()
    r = requests.post(base + "/api/v1/orders", json={"amount": 50000}, headers=api_headers(), timeout=timeout)
    assert r.status_code == 201, r.text
    h = requests.get(base + "/health", timeout=timeout)
    assert h.status_code == 200 and h.json()["database"] == "connected"
    return time.monotonic() - t0


@pytest.mark.slow
def test_slow_clients_stop_gunicorn_but_not_nginx_in_front_of_it(api_2x4, nginx):
    # Straight to gunicorn (2 processes x 4 threads): 50 slow connections hold every thread.
    slow = SlowClients(api_2x4.port)
    try:
        # Every process must hold its share (a process still booting takes none; nginx spares
        # the API this either way): add slow clients until each has one per thread.
        wait_until(lambda: min(held_by_each_process(api_2x4)) >= 4 or slow.add(5), timeout=30, interval=0.2,
                   message="slow connections held by both gunicorn processes")
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(api_2x4.url + "/health", timeout=3)
    finally:
        slow.close()
    wait_until(lambda: requests.get(api_2x4.url + "/health", timeout=5).status_code == 200, timeout=15,
               message="gunicorn answering again once the slow clients left")

    # Through nginx: 50 slow connections, and normal requests are answered at once.
    slow = SlowClients(nginx.port)
    try:
        durations = [answers_promptly(nginx.url) for _ in range(10)]
        assert max(durations) < 2.0, durations
        assert slow.still_open() == 50  # they were all still pending while the API answered
        # nginx's header deadline (client_header_timeout 10 s) then drops them, dribbling or not.
        wait_until(lambda: slow.still_open() == 0, timeout=20, interval=0.5, message="nginx dropping slow clients")
        answers_promptly(nginx.url)
    finally:
        slow.close()


MANY_HEADERS = {f"X-Extra-{i}": "1" for i in range(120)}  # nginx passes them; gunicorn allows 100


@needs_nginx
@pytest.mark.parametrize("make_request, status, description", [
    (lambda base: requests.get(base + "/api/v1/orders?q=" + "a" * 9000, timeout=5), 414,
     "The request URL is too long."),
    (lambda base: requests.get(base + "/api/v1/orders?q=" + "a" * 4500, timeout=5), 414,  # over gunicorn's 4094
     "The request URL is too long."),
    (lambda base: requests.get(base + "/api/v1/orders", headers={"X-Big": "a" * 9000}, timeout=5), 431,
     "The request headers are too large."),
    (lambda base: requests.get(base + "/api/v1/orders", headers=MANY_HEADERS, timeout=5), 431,
     "The request headers are too large."),
    (lambda base: requests.post(base + "/api/v1/orders", data=b"{" + b" " * 70_000 + b"}",
                                headers=api_headers(**{"Content-Type": "application/json"}), timeout=5), 413,
     "Request body is too large."),
], ids=["url-9k", "url-4.5k", "header-9k", "120-headers", "body-70k"])
def test_errors_nginx_answers_under_api_are_the_json_envelope(nginx, make_request, status, description):
    r = make_request(nginx.url)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": {"code": "BAD_REQUEST_ERROR", "description": description}}


@needs_nginx
def test_the_apps_own_errors_pass_through_nginx_unchanged(nginx, api_2x4):
    bad = {"amount": -5}
    direct = requests.post(api_2x4.url + "/api/v1/orders", json=bad, headers=api_headers(), timeout=5)
    proxied = requests.post(nginx.url + "/api/v1/orders", json=bad, headers=api_headers(), timeout=5)
    assert direct.status_code == proxied.status_code == 400
    assert proxied.json() == direct.json() and "amount" in proxied.json()["error"]["description"]


@needs_nginx
def test_malformed_request_through_nginx_is_a_json_400(nginx):
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=5) as s:
        s.sendall(b"GET /api/v1/orders HTTP/1.1\r\nHost: gateway\r\nNo colon here\r\n\r\n")
        raw = b""
        while chunk := s.recv(4096):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head
    assert json.loads(body)["error"]["code"] == "BAD_REQUEST_ERROR"


@needs_nginx
def test_api_down_behind_nginx_is_a_json_502_and_pages_get_html(log_dir):
    proxy = Nginx(f"127.0.0.1:{free_port()}", log_dir)  # nothing listens there
    try:
        r = requests.get(proxy.url + "/api/v1/orders", headers=api_headers(), timeout=10)
        assert r.status_code == 502 and r.headers["Content-Type"] == "application/json"
        assert r.json()["error"] == {"code": "SERVER_ERROR",
                                     "description": "The gateway is unavailable; try again shortly."}
        page = requests.get(proxy.url + "/dashboard", timeout=10)
        assert page.status_code == 502 and page.headers["Content-Type"].startswith("text/html")
        assert "unavailable" in page.text
    finally:
        proxy.stop()


@needs_nginx
def test_sign_in_flood_is_refused_by_nginx_with_retry_after(nginx):
    answers = [requests.post(nginx.url + "/login", data={"email": "x@example.com", "password": "guess"},
                             allow_redirects=False, timeout=10) for _ in range(15)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    assert refused[0].headers["Retry-After"] == "1" and refused[0].headers["Content-Type"].startswith("text/html")
    assert requests.get(nginx.url + "/login", timeout=10).status_code == 200  # the page itself is not limited


@needs_nginx
def test_nginx_passes_normal_api_traffic_with_keepalive(nginx):
    with requests.Session() as s:
        for _ in range(5):
            r = s.post(nginx.url + "/api/v1/orders", json={"amount": 100}, headers=api_headers(), timeout=10)
            assert r.status_code == 201 and r.json()["amount"] == 100


# ---- docker-compose --------------------------------------------------------------------------------

# Every profile the file declares, and none: each combination must need SECRET_KEY.
DECLARED_PROFILES = sorted({p for s in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].values()
                            for p in s.get("profiles", [])})
PROFILES = [[]] + [["--profile", p] for p in DECLARED_PROFILES]


def compose_config(*profile, **env):
    """`docker-compose config` on the repository's file with exactly `env` (no SECRET_KEY unless given)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([COMPOSE, "-f", str(ROOT / "docker-compose.yml"), *profile, "config"],
                          env=dict(base, **env), cwd=ROOT, capture_output=True, text=True, timeout=60)


@needs_compose
@pytest.mark.parametrize("profile", PROFILES, ids=["default"] + DECLARED_PROFILES)
def test_compose_requires_secret_key(profile):
    missing = compose_config(*profile)
    assert missing.returncode != 0 and "SECRET_KEY" in missing.stderr
    empty = compose_config(*profile, SECRET_KEY="")
    assert empty.returncode != 0
    ok = compose_config(*profile, SECRET_KEY="a-long-random-value")
    assert ok.returncode == 0, ok.stderr
    services = yaml.safe_load(ok.stdout)["services"]
    assert {s["environment"]["SECRET_KEY"] for s in services.values() if "SECRET_KEY" in s.get("environment", {})} \
        == {"a-long-random-value"}


@pytest.fixture(scope="module")
def compose_services():
    if COMPOSE is None:
        pytest.fail("docker-compose is not installed: apt-get install docker-compose (.ci/run does)")
    r = compose_config(*[arg for p in DECLARED_PROFILES for arg in ("--profile", p)], SECRET_KEY="x")
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["services"]


def test_no_compose_service_allows_private_webhook_targets(compose_services):
    for name, service in compose_services.items():
        env = service.get("environment") or {}
        assert str(env.get("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")).lower() not in ("1", "true", "yes", "on"), name
    app_services = [s for s in compose_services.values() if s.get("image") == "payment-gateway:local"]
    assert {s["environment"]["WEBHOOK_ALLOWED_HOSTS"] for s in app_services} == {"test_merchant:3002"}
    # empty: seeded only with TEST_MODE=true (default false) or SEED_TEST_MERCHANT=true
    assert {s["environment"]["SEED_TEST_MERCHANT"] for s in app_services} == {""}
    assert {s["environment"]["TEST_MODE"] for s in app_services} == {"false"}


def test_compose_migrates_once_before_api_and_worker_start(compose_services):
    """The schema changes in one one-shot service; api and worker start only after it succeeded
    (and never run migrations themselves)."""
    migrate = compose_services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert migrate["image"] == "payment-gateway:local"
    for name in ("api", "worker"):
        assert compose_services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert compose_services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name


def test_compose_runs_one_image_behind_nginx(compose_services):
    app_services = {n: s for n, s in compose_services.items() if n in ("migrate", "api", "worker", "test_merchant")}
    assert {s["image"] for s in app_services.values()} == {"payment-gateway:local"}
    for name, s in app_services.items():
        assert s["init"] is True and s["build"]["context"] == str(ROOT), name
        seconds = int(s["stop_grace_period"].rstrip("s"))
        assert seconds > 15, f"{name}: the launcher waits 15 s for its children"
    assert compose_services["test_merchant"]["profiles"] == ["demo"]
    # Only nginx is reachable from outside; the demo receiver only from this machine.
    published = {n: s.get("ports", []) for n, s in compose_services.items() if s.get("ports")}
    assert set(published) == {"nginx", "test_merchant"}, published
    assert [p["target"] for p in published["nginx"]] == [80]
    assert all(str(p).startswith("127.0.0.1:") for p in published["test_merchant"])
    assert compose_services["nginx"]["volumes"] == [f"{ROOT}/deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert compose_services["worker"]["healthcheck"]["test"][:3] == ["CMD", "python", "worker.py"]


# ---- seeding ------------------------------------------------------------------------------------------

def init_db(url, **env):
    """What a deployment runs before its processes (migrate), then what the worker does at start
    (`flask seed`: the test merchant if asked, deactivated if not)."""
    base = {k: v for k, v in os.environ.items() if k not in ("TEST_MODE", "SEED_TEST_MERCHANT")}
    for cmd in (["-m", "app.launcher", "migrate"], ["-m", "flask", "--app", "app", "seed"]):
        r = subprocess.run([sys.executable, *cmd], cwd=ROOT, timeout=120,
                           env=dict(base, DATABASE_URL=url, SECRET_KEY="x", **env), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM merchants WHERE api_key = 'key_test_abc123' AND is_active").fetchone()[0]


def test_test_merchant_with_public_credentials_is_seeded_only_when_asked(empty_database):
    assert init_db(empty_database, TEST_MODE="false") == 0          # a production start
    assert init_db(empty_database, TEST_MODE="false", SEED_TEST_MERCHANT="false") == 0
    assert init_db(empty_database, TEST_MODE="true") == 1           # test mode seeds by default
    assert init_db(empty_database, TEST_MODE="false", SEED_TEST_MERCHANT="true") == 1   # make run, the demo
    # A database that has it (every earlier release seeded it) keeps its data but not its public
    # credentials' access after a start that does not ask for it, until one asks again.
    assert init_db(empty_database, TEST_MODE="false", SEED_TEST_MERCHANT="") == 0
    with psycopg.connect(empty_database) as c:
        assert c.execute("SELECT count(*) FROM merchants WHERE api_key = 'key_test_abc123'").fetchone()[0] == 1
    assert init_db(empty_database, SEED_TEST_MERCHANT="true") == 1


# ---- the image --------------------------------------------------------------------------------------

def build_context(root):
    """The files docker-compose v1 sends to the engine for `build: .` (its own .dockerignore code)."""
    code = ("import sys; from docker.utils.build import exclude_paths; "
            "root = sys.argv[1]; patterns = open(root + '/.dockerignore').read().splitlines(); "
            "print('\\n'.join(sorted(exclude_paths(root, [p for p in patterns if p and not p.startswith('#')]))))")
    r = subprocess.run(["/usr/bin/python3", "-c", code, str(root)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


@needs_compose
def test_build_context_leaves_out_local_state(tmp_path):
    """The copied .data/secret_key once crashed the app in its container; .venv and .git bloat it."""
    if not (ROOT / ".dockerignore").exists():
        pytest.fail("no .dockerignore: .data, .venv and .git go into the image")
    for f in ("app/__init__.py", "app/__pycache__/db.cpython-311.pyc", ".data/secret_key", ".data/pg/PG_VERSION",
              ".venv/bin/python", ".git/HEAD", "tests/test_x.py", "bench/api_bench.py", "migrations/0001_initial.sql",
              "worker.py", "requirements.txt", "templates/a.html", "static/a.css", "sdk/checkout.js",
              "test_merchant/app.py", ".env"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    shutil.copy(ROOT / ".dockerignore", tmp_path / ".dockerignore")
    context = build_context(tmp_path)
    for needed in ("app/__init__.py", "migrations/0001_initial.sql", "worker.py", "requirements.txt", "templates/a.html",
                   "static/a.css", "sdk/checkout.js", "test_merchant/app.py"):
        assert needed in context, needed
    leaked = [p for p in context if p.split("/")[0] in (".data", ".venv", ".git", "tests", "bench", ".env")
              or "__pycache__" in p]
    assert not leaked, leaked
    assert "app/__init__.py" in build_context(ROOT)  # and the real tree still builds


def test_image_listens_on_all_interfaces():
    """gunicorn binds HOST (default 127.0.0.1); in a container it must take nginx's connections."""
    env_lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")]
    assert any("HOST=0.0.0.0" in line.split() for line in env_lines), env_lines
