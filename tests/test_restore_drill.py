"""The restore drill of docs/operations.md, run for real: a gateway takes orders, payments and a
refund through its API, `pg_dump -Fc` backs its database up while it runs, `pg_restore` puts the
backup into an empty database, and a gateway started on that database serves the same objects,
replays a stored idempotent answer, takes new payments and signs their webhooks with the restored
secret. A dashboard session survives only with the same SECRET_KEY: the one setting to back up
besides the database."""
import hashlib
import hmac
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pgserver
import psycopg
import requests
from werkzeug.security import generate_password_hash

from helpers import CARD, ROOT, api_headers, wait_until

from app import migrate

PG_BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"
PASSWORD = "drill-password"


def make_merchant(url, webhook_url):
    """A merchant of the drill's own, written as an operator would (there is no API for it)."""
    m = {"id": str(uuid.uuid4()), "email": f"drill-{secrets.token_hex(4)}@example.com",
         "api_key": "key_" + secrets.token_hex(8), "api_secret": "secret_" + secrets.token_hex(12),
         "webhook_secret": "whsec_" + secrets.token_hex(16)}
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret, "
                  "password_hash) VALUES (%s, 'Drill shop', %s, %s, %s, %s, %s, %s)",
                  (m["id"], m["email"], m["api_key"], m["api_secret"], webhook_url, m["webhook_secret"],
                   generate_password_hash(PASSWORD)))
    m["headers"] = api_headers(m["api_key"], m["api_secret"])
    return m


class Gateway:
    """The JSON API of one running gateway, for one merchant."""

    def __init__(self, api, merchant):
        self.url, self.headers = api.url, merchant["headers"]

    def post(self, path, body, **headers):
        r = requests.post(self.url + "/api/v1" + path, json=body, headers={**self.headers, **headers}, timeout=10)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return r

    def get(self, path):
        r = requests.get(self.url + "/api/v1" + path, headers=self.headers, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def settled(self, path, status):
        return wait_until(lambda: self.get(path)["status"] == status, timeout=20, message=f"{path} {status}")

    def everything(self):
        """What a merchant sees: every order, payment and refund, and each payment on its own."""
        seen = {kind: self.get(f"/{kind}?count=100") for kind in ("orders", "payments", "refunds")}
        seen["each payment"] = [self.get(f"/payments/{p['id']}") for p in seen["payments"]["data"]]
        return seen


def sign_in(base, email):
    """The dashboard's session cookie after a real sign-in (CSRF token from the page)."""
    s = requests.Session()
    page = s.get(base + "/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = s.post(base + "/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
               allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    return r.cookies["session"]


def dashboard(base, cookie):
    return requests.get(base + "/dashboard", cookies={"session": cookie}, allow_redirects=False, timeout=10)


def test_a_pg_dump_restores_into_a_working_gateway(new_database, start_api, start_worker, receiver, process_env,
                                                   tmp_path):
    source = new_database()
    migrate.migrate(source)
    hooks = receiver()
    merchant = make_merchant(source, hooks.url)
    api, worker = start_api(DATABASE_URL=source), start_worker(DATABASE_URL=source)
    old = Gateway(api, merchant)

    # A day of business: three orders, a card and a UPI payment, a partial refund.
    orders = [old.post("/orders", {"amount": amount, "receipt": f"drill-{n}", "notes": {"n": str(n)}}).json()
              for n, amount in enumerate((50000, 120000, 99900))]
    card_body = {"order_id": orders[0]["id"], "method": "card", "card": CARD}
    card = old.post("/payments", card_body, **{"Idempotency-Key": "drill-card"})
    upi = old.post("/payments", {"order_id": orders[1]["id"], "method": "upi", "vpa": "asha@okhdfc"}).json()
    for p in (card.json(), upi):
        old.settled(f"/payments/{p['id']}", "success")
    refund = old.post(f"/payments/{card.json()['id']}/refunds", {"amount": 10000}).json()
    old.settled(f"/refunds/{refund['id']}", "processed")
    cookie = sign_in(api.url, merchant["email"])
    assert dashboard(api.url, cookie).status_code == 200
    before = old.everything()
    assert [len(before[k]["data"]) for k in ("orders", "payments", "refunds")] == [3, 2, 1]

    # The backup, taken while the API and the worker run.
    dump = tmp_path / "gateway.dump"
    subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), "-d", source],
                   check=True, capture_output=True, timeout=120)
    api.stop()  # the old gateway is gone
    worker.stop()

    restored = new_database()
    run = subprocess.run([str(PG_BIN / "pg_restore"), "--no-owner", "--exit-on-error", "-d", restored, str(dump)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "app.launcher", "migrate"], cwd=ROOT,
                         env=dict(process_env, DATABASE_URL=restored),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "migrations: the database is up to date" in run.stdout

    api, worker = start_api(DATABASE_URL=restored), start_worker(DATABASE_URL=restored)
    new = Gateway(api, merchant)
    assert new.everything() == before
    # The stored answer of an idempotent request came back with the rest: no second payment.
    replay = new.post("/payments", card_body, **{"Idempotency-Key": "drill-card"})
    assert replay.content == card.content
    assert new.get("/payments?count=100")["total"] == 2

    # New business on the restored database, its webhook signed with the restored secret.
    order = new.post("/orders", {"amount": 7500}).json()
    payment = new.post("/payments", {"order_id": order["id"], "method": "upi", "vpa": "ravi@okicici"}).json()
    new.settled(f"/payments/{payment['id']}", "success")
    delivery = wait_until(lambda: next((d for d in hooks.wait_for(1, event="payment.success")
                                        if d["json"]["data"]["payment"]["id"] == payment["id"]), None),
                          timeout=20, message="the new payment's payment.success webhook")
    expected = hmac.new(merchant["webhook_secret"].encode(), delivery["body"], hashlib.sha256).hexdigest()
    assert delivery["headers"]["X-Webhook-Signature"] == expected

    # The dashboard session from before the backup still opens the dashboard with the same
    # SECRET_KEY, and not with another one.
    assert dashboard(api.url, cookie).status_code == 200
    other_key = start_api(DATABASE_URL=restored, SECRET_KEY="a-key-that-was-not-backed-up")
    r = dashboard(other_key.url, cookie)
    assert r.status_code == 302 and "/login" in r.headers["Location"]

