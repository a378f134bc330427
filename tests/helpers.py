"""The tests' one support module (the fixtures are in conftest.py): constants, waiting on
observable conditions, real processes and a real webhook receiver, the database handle, the
merchant's steps through the API (create an order, pay it, settle it with the real worker), the
dashboard's sign-in, and the log scan. Tests import it as `from helpers import ...`."""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import requests
from psycopg.rows import dict_row
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from app import db as app_db, webhooks
from app.launcher import die_with_parent, gunicorn_cmd
from app.ids import new_id

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY, TEST_SECRET = "key_test_abc123", "secret_test_xyz789"
TEST_MERCHANT_ID = "550e8400-e29b-41d4-a716-446655440000"
CARD = {"number": "4111111111111111", "expiry_month": 12, "expiry_year": 2030, "cvv": "123", "holder_name": "Asha"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # 2026-01-15T10:31:00Z
# The dashboard's times, in DASHBOARD_TIMEZONE (Asia/Kolkata unless a test sets it): 2026-01-15 16:01:00 IST
LOCAL_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (IST|UTC|[+-]\d\d(\d\d)?)$")
JSON = {"Content-Type": "application/json"}

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


# ---- waiting, processes, the webhook receiver ----------------------------------------------------

NODE_DIR = ROOT / "tests" / "node"


def node_modules():
    """tests/node with its locked npm packages (the Razorpay Node SDK, axe-core) installed, once."""
    if not (shutil.which("node") and shutil.which("npm")):
        raise RuntimeError("Node.js and npm are needed: apt-get install nodejs npm (.ci/run does)")
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    if not all((NODE_DIR / "node_modules" / name / "package.json").exists() for name in wanted):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       timeout=300)
    return NODE_DIR / "node_modules"


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
        # close() waits for the server's next look at its shutdown flag: every 10 ms, not the
        # default 0.5 s, which was most of the time of a test with a receiver.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
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


# ---- the database --------------------------------------------------------------------------------

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


# ---- merchants -----------------------------------------------------------------------------------

def api_headers(key=TEST_KEY, secret=TEST_SECRET, **extra):
    return {"X-Api-Key": key, "X-Api-Secret": secret, **extra}


# The seeded test merchant, in the shape new_merchant returns (its webhook settings are left out:
# tests change them).
TEST_MERCHANT = {"id": TEST_MERCHANT_ID, "api_key": TEST_KEY, "api_secret": TEST_SECRET, "headers": api_headers()}


def new_merchant(db, webhook_url=None, webhook_secret=None):
    """A merchant of its own (own key, secret, webhook URL and secret): its fields and API headers."""
    webhook_secret = webhook_secret or webhooks.new_secret()
    mid = str(uuid.uuid4())
    key, secret = "key_" + secrets.token_hex(8), "secret_" + secrets.token_hex(12)
    db.execute("INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret) "
               "VALUES (%(id)s, %(name)s, %(email)s, %(key)s, %(secret)s, %(url)s, %(ws)s)",
               {"id": mid, "name": f"Merchant {mid[:6]}", "email": f"{mid}@example.com", "key": key,
                "secret": secret, "url": webhook_url, "ws": webhook_secret})
    return {"id": mid, "api_key": key, "api_secret": secret, "webhook_url": webhook_url,
            "webhook_secret": webhook_secret, "headers": api_headers(key, secret)}


def headers(merchant, **extra):
    """The merchant's API headers with a JSON content type (for bodies sent as data=)."""
    return dict(merchant["headers"], **JSON, **extra)


class MerchantApi:
    """A merchant's authenticated view of the JSON API over the Flask test client: get, post, put,
    delete and open send the merchant's headers (and any others given); .merchant is the merchant."""

    def __init__(self, client, merchant):
        self.client, self.merchant = client, merchant

    def open(self, path, method="GET", headers=None, **kwargs):
        return self.client.open(path, method=method, headers=dict(self.merchant["headers"], **(headers or {})),
                                **kwargs)

    def get(self, path, **kwargs):
        return self.open(path, "GET", **kwargs)

    def post(self, path, **kwargs):
        return self.open(path, "POST", **kwargs)

    def put(self, path, **kwargs):
        return self.open(path, "PUT", **kwargs)

    def delete(self, path, **kwargs):
        return self.open(path, "DELETE", **kwargs)


# ---- create, pay and settle: over the Flask test client ------------------------------------------
# In this process, the fast default. The *_over_http ones further down take the same steps against
# a running gateway: two sets, because a test client and a real HTTP connection are two things.

def payment_body(order_id, method="upi", **fields):
    """A payment request: UPI with a VPA, or a card payment with CARD; `fields` add or override."""
    body = {"order_id": order_id, "method": method}
    if method == "upi":
        body["vpa"] = "shopper@okbank"
    elif method == "card":
        body["card"] = dict(CARD)
    body.update(fields)
    return body


def create_order(client, merchant, amount=50000, **fields):
    """An order of the merchant, created over the Flask test client (201 asserted)."""
    r = client.post("/api/v1/orders", json=dict(fields, amount=amount), headers=merchant["headers"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def pay(client, merchant, order_id, method="upi", **fields):
    """A payment of an existing order over the Flask test client: accepted (201), still pending."""
    r = client.post("/api/v1/payments", json=payment_body(order_id, method, **fields), headers=merchant["headers"])
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def create_payment(client, merchant, amount=50000, method="upi", **fields):
    """A new order and its pending payment, over the Flask test client."""
    return pay(client, merchant, create_order(client, merchant, amount)["id"], method, **fields)


def payment_status(db, payment_id):
    return db.value("SELECT status FROM payments WHERE id = %(id)s", {"id": payment_id})


def settle(worker, db, payment_id):
    """Run the real worker's steps (the `worker` fixture) until the payment is final; its status.
    In test mode the bank answers at once, with success unless TEST_PAYMENT_SUCCESS is off."""
    def final():
        worker.step()
        return payment_status(db, payment_id) in ("success", "failed")

    wait_until(final, timeout=15, message=f"{payment_id} settled")
    return payment_status(db, payment_id)


def paid_payment(client, db, worker, merchant, amount=50000, method="upi"):
    """An order and a successful payment of it (over the Flask test client, settled by `worker`)."""
    order = create_order(client, merchant, amount)
    payment = pay(client, merchant, order["id"], method)
    assert settle(worker, db, payment["id"]) == "success"
    return order, payment


def insert_payments(db, merchant_id, payments):
    """Orders and payments as settlement leaves them, one second apart, the last one newest:
    `payments` is a list of (amount, status, method). Returns their ids in that order."""
    ids = []
    for i, (amount, status, method) in enumerate(payments):
        order_id, pay_id = new_id("order_"), new_id("pay_")
        age = {"s": len(payments) - i}
        db.execute("INSERT INTO orders (id, merchant_id, amount, status, created_at) VALUES "
                   "(%(o)s, %(m)s, %(a)s, %(os)s, now() - make_interval(secs => %(s)s))",
                   dict(age, o=order_id, m=merchant_id, a=amount, os="paid" if status == "success" else "created"))
        db.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, "
                   "card_last4, status, error_code, error_description, created_at, updated_at) VALUES "
                   "(%(p)s, %(o)s, %(m)s, %(a)s, 'INR', %(method)s, %(vpa)s, %(net)s, %(last4)s, %(status)s, %(err)s, "
                   "%(desc)s, now() - make_interval(secs => %(s)s), now() - make_interval(secs => %(s)s))",
                   dict(age, p=pay_id, o=order_id, m=merchant_id, a=amount, method=method, status=status,
                        vpa="shopper@okbank" if method == "upi" else None,
                        net="visa" if method == "card" else None, last4="1111" if method == "card" else None,
                        err="PAYMENT_FAILED" if status == "failed" else None,
                        desc="declined" if status == "failed" else None))
        ids.append(pay_id)
    return ids


def insert_payment(db, merchant_id, at, amount=12345, status="success", method="upi", vpa="shopper@okbank", last4="1111",
                   receipt=None, error=None, captured=False, notes=None):
    """One order (with its receipt) and its payment, created at `at` (aware), as settlement leaves
    it; the payment's id. For the dashboard's search, date and CSV tests."""
    order_id, pay_id = new_id("order_"), new_id("pay_")
    db.execute("INSERT INTO orders (id, merchant_id, amount, receipt, status, created_at) "
               "VALUES (%(o)s, %(m)s, %(a)s, %(r)s, 'created', %(at)s)",
               {"o": order_id, "m": merchant_id, "a": amount, "r": receipt, "at": at})
    db.execute("INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4, "
               "status, error_code, error_description, captured, notes, created_at, updated_at) VALUES "
               "(%(p)s, %(o)s, %(m)s, %(a)s, 'INR', %(method)s, %(vpa)s, %(net)s, %(last4)s, %(status)s, %(code)s, "
               "%(error)s, %(captured)s, %(notes)s::jsonb, %(at)s, %(at)s)",
               {"p": pay_id, "o": order_id, "m": merchant_id, "a": amount, "method": method,
                "vpa": vpa if method == "upi" else None, "net": "visa" if method == "card" else None,
                "last4": last4 if method == "card" else None, "status": status, "error": error,
                "code": "PAYMENT_FAILED" if error else None, "captured": captured, "notes": json.dumps(notes or {}),
                "at": at})
    return pay_id


def insert_webhook_logs(db, merchant_id, n):
    """n delivered webhook logs, one second apart, the last one newest. Returns their ids in that order."""
    return [str(db.value("INSERT INTO webhook_logs (merchant_id, event, event_id, payload, body, status, created_at) "
                         "VALUES (%(m)s, 'payment.success', %(e)s, '{}', '{}', 'success', now() - make_interval(secs => %(s)s)) "
                         "RETURNING id", {"m": merchant_id, "e": new_id("evt_"), "s": n - i})) for i in range(n)]


def count(db, table, merchant_id):
    return db.value(f"SELECT count(*) FROM {table} WHERE merchant_id = %(m)s", {"m": merchant_id})


def add_endpoint(client, merchant, url, events=None, **fields):
    """A webhook endpoint of the merchant, created over the Flask test client (201 asserted): its
    JSON, secret included."""
    body = dict(fields, url=url) | ({"events": events} if events is not None else {})
    r = client.post("/api/v1/webhooks/endpoints", headers=merchant["headers"], json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def pump(worker, done, timeout=15):
    """Run the `worker` fixture's steps until done() (its deliveries run on its own threads)."""
    wait_until(lambda: (worker.step(), done())[1], timeout=timeout, message="deliveries")


# ---- create and pay: over real HTTP --------------------------------------------------------------
# The same steps against a running gateway (live_api, start_api) through requests: for tests whose
# subject is the real server or a client library, where the Flask test client would not do.

def create_order_over_http(base_url, merchant, amount=50000, **fields):
    """An order of the merchant, created over real HTTP (requests) at base_url (201 asserted)."""
    r = requests.post(f"{base_url}/api/v1/orders", json=dict(fields, amount=amount), headers=merchant["headers"],
                      timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def pay_over_http(base_url, merchant, order_id, method="upi", **fields):
    """A payment of an existing order over real HTTP (requests): accepted (201), still pending."""
    r = requests.post(f"{base_url}/api/v1/payments", json=payment_body(order_id, method, **fields),
                      headers=merchant["headers"], timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def create_payment_over_http(base_url, merchant, amount=50000, method="upi", **fields):
    """A new order and its pending payment, over real HTTP (requests)."""
    return pay_over_http(base_url, merchant, create_order_over_http(base_url, merchant, amount)["id"], method,
                         **fields)


# ---- the dashboard over the Flask test client ----------------------------------------------------

DASHBOARD_PASSWORD = "shop-pass-1"  # the dashboard_merchant fixture's
CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def new_address():
    """A client address of its own, so no test (nor any other file's) shares a sign-in throttle count."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def dashboard_client(app, address=None):
    """A test client standing for one browser at one client address."""
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = address or new_address()
    return c


def csrf_token(c, path):
    """The form token of the page at `path`, as this client sees it."""
    return CSRF_TOKEN.search(c.get(path).get_data(as_text=True)).group(1)


def post_login(c, email, password, **kwargs):
    """The sign-in form, posted with its token."""
    return c.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(c, "/login")},
                  **kwargs)


class Element:
    """An element of a parsed page: its tag, attributes and children (elements and text)."""

    def __init__(self, tag, attrs):
        self.tag, self.attrs, self.children = tag, dict(attrs), []

    @property
    def text(self):
        """Its text, descendants' included, with runs of white space as one space."""
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return " ".join("".join(parts).split())

    def all(self, test_id, **attrs):
        """Descendants with this data-test-id (and these attributes: data_payment_id=… for
        data-payment-id), in document order."""
        want = dict({k.replace("_", "-"): v for k, v in attrs.items()}, **{"data-test-id": test_id})
        found = []
        for c in self.children:
            if isinstance(c, Element):
                if all(c.attrs.get(k) == v for k, v in want.items()):
                    found.append(c)
                found += c.all(test_id, **attrs)
        return found

    def one(self, test_id, **attrs):
        [found] = self.all(test_id, **attrs)
        return found


class _PageParser(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack = [Element("document", {})]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs)
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):  # close up to the matching tag
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def page(response, status=200):
    """A dashboard page (a test client response with this status) parsed, to look its elements up
    by data-test-id."""
    assert response.status_code == status, response.status_code
    parser = _PageParser()
    parser.feed(response.get_data(as_text=True))
    parser.close()
    return parser.stack[0]


# ---- the log scan (conftest.pytest_sessionfinish) ------------------------------------------------

# Never in any log of a run: the test cards' numbers, CVVs, API secrets, webhook secrets.
FORBIDDEN_IN_LOGS = [
    re.compile(r"4111[ -]?1111[ -]?1111[ -]?1111"),
    re.compile(r"5555[ -]?5555[ -]?5555[ -]?4444"),
    re.compile(r"3782[ -]?822463[ -]?10005"),
    re.compile(r"6011[ -]?1111[ -]?1111[ -]?1117"),
    re.compile(r"cvv\W{1,6}\d{3,4}", re.IGNORECASE),
    re.compile(re.escape(TEST_SECRET)),
    re.compile(r"secret_[0-9a-f]{24}"),            # new_merchant's API secrets
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
