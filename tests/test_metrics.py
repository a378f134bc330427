"""GET /metrics: the families operators scrape, counted where things happen (API, worker), added up
across gunicorn's processes and the worker, behind METRICS_TOKEN, and kept off nginx's public side."""
import glob
import json
import os
import re
import shutil
import tempfile
import uuid

import psutil
import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from helpers import ROOT, Api, api_headers, free_port, wait_until

from app import db as app_db, payments

FAMILIES = ("gateway_http_requests_total", "gateway_http_request_duration_seconds_bucket", "gateway_jobs",
            "gateway_job_oldest_pending_seconds", "gateway_webhook_deliveries_total", "gateway_payments_total",
            "gateway_workers_alive")
UPI = {"method": "upi", "vpa": "asha@okhdfc"}


def parse(text):
    """{(sample name, frozenset of labels): value} of a Prometheus text page."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_client(client, **headers):
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return parse(r.get_data(as_text=True))


def scrape(url, **headers):
    r = requests.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return parse(r.text)


def pay(base_or_client, headers, amount=50000):
    """An order and a UPI payment for it, through the API; returns the payment."""
    if isinstance(base_or_client, str):
        order = requests.post(base_or_client + "/api/v1/orders", json={"amount": amount}, headers=headers, timeout=10)
        assert order.status_code == 201, order.text
        p = requests.post(base_or_client + "/api/v1/payments", json={"order_id": order.json()["id"], **UPI},
                          headers=headers, timeout=10)
        assert p.status_code == 201, p.text
        return p.json()
    order = base_or_client.post("/api/v1/orders", json={"amount": amount}, headers=headers)
    assert order.status_code == 201, order.get_json()
    p = base_or_client.post("/api/v1/payments", json={"order_id": order.get_json()["id"], **UPI}, headers=headers)
    assert p.status_code == 201, p.get_json()
    return p.get_json()


# ---- the page ---------------------------------------------------------------------------------------

def test_every_family_is_served_with_the_queue_read_from_the_database(client, db):
    client.get("/health")
    db.execute("DELETE FROM worker_heartbeats")  # no worker runs now: only the rows below
    kind = f"metrics.probe.{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO jobs (kind, status, next_run_at, created_at) VALUES "
               "(%(k)s, 'pending', now() - interval '90 seconds', now() - interval '90 seconds'), "
               "(%(k)s, 'pending', now() + interval '1 hour', now()), (%(k)s, 'dead', now(), now())", {"k": kind})
    db.execute("INSERT INTO worker_heartbeats (worker_id, hostname, pid, beat_at) VALUES "
               "('fresh', 'h', 1, now()), ('gone', 'h', 2, now() - interval '1 minute')")
    try:
        r = client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = parse(r.get_data(as_text=True))
    finally:
        db.execute("DELETE FROM jobs WHERE kind = %(k)s", {"k": kind})
        db.execute("DELETE FROM worker_heartbeats")
    names = {name for name, _ in samples}
    assert set(FAMILIES) <= names, set(FAMILIES) - names
    assert value(samples, "gateway_jobs", kind=kind, status="pending") == 2  # due or scheduled
    assert value(samples, "gateway_jobs", kind=kind, status="dead") == 1
    assert value(samples, "gateway_jobs", kind=payments.SETTLE, status="processing") == 0  # known kinds at 0
    assert value(samples, "gateway_job_oldest_pending_seconds") >= 90  # due for 90 s; the scheduled one is not late
    assert value(samples, "gateway_workers_alive") == 1  # the stale heartbeat is not a live worker
    for outcome in ("success", "retry", "failed"):
        assert ("gateway_webhook_deliveries_total", frozenset({"outcome": outcome}.items())) in samples


def test_the_grafana_dashboard_reads_only_series_the_gateway_serves(client):
    client.get("/health")
    served = {name for name, _ in scrape_client(client)}
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency", "jobs", "oldest", "webhook", "payments", "workers alive"):
        assert topic in titles, topic
    used = {name for e in exprs for name in re.findall(r"\bgateway_\w+", e)}
    assert used and used <= served, used - served


def test_requests_are_counted_by_url_rule_never_by_raw_path(client, merchant):
    before = scrape_client(client)
    for payment_id in ("pay_0000000000000000", "pay_1111111111111111"):
        assert client.get(f"/api/v1/payments/{payment_id}", headers=merchant["headers"]).status_code == 404
    assert client.get("/no/such/page/x9").status_code == 404
    assert client.open("/api/v1/orders", method="BREW").status_code == 405
    after = scrape_client(client)
    route = "/api/v1/payments/<payment_id>"

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gateway_http_requests_total", method="GET", route=route, status="404") == 2
    assert delta("gateway_http_request_duration_seconds_count", route=route) == 2
    assert delta("gateway_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert delta("gateway_http_requests_total", method="OTHER", route="<unmatched>", status="405") == 1
    labels = {v for _, pairs in after for _, v in pairs}
    assert not [v for v in labels if "pay_0000" in v or "x9" in v or "BREW" in v]


def test_metrics_token_is_required_when_set(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "t0ken-for-metrics")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer t0ken-for-metric"},
                    {"Authorization": "Basic dDBrZW4tZm9yLW1ldHJpY3M="}, {"X-Api-Key": "t0ken-for-metrics"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.get_json()["error"]["code"] == "AUTHENTICATION_ERROR"
        assert b"gateway_" not in r.data
    assert "gateway_payments_total" in {n for n, _ in scrape_client(client, Authorization="Bearer t0ken-for-metrics")}


# ---- payments -----------------------------------------------------------------------------------------

def test_a_settlement_is_counted_only_once_it_commits(app, client, merchant, db):
    p = pay(client, merchant["headers"])
    job = db.one("SELECT id, payload FROM jobs WHERE payload ->> 'payment_id' = %(p)s", {"p": p["id"]})
    before = scrape_client(client)
    settings = dict(app.config, TEST_PROCESSING_DELAY=0)
    with app.app_context(), app_db.connect(app_db.pool()) as c:
        with pytest.raises(RuntimeError), app_db.transaction(c):
            payments.settle_batch(c, [job], settings, lambda events: None)
            raise RuntimeError("the batch is undone (a lease lost, a crash)")
        assert value(scrape_client(client), "gateway_payments_total", method="upi", status="success") \
            == value(before, "gateway_payments_total", method="upi", status="success")
        with app_db.transaction(c):
            payments.settle_batch(c, [job], settings, lambda events: None)
    assert db.value("SELECT status FROM payments WHERE id = %(p)s", {"p": p["id"]}) == "success"
    after = scrape_client(client)
    assert value(after, "gateway_payments_total", method="upi", status="success") \
        == value(before, "gateway_payments_total", method="upi", status="success") + 1


def test_a_payment_counts_pending_then_processing_then_success_settled_by_a_real_worker(
        start_api, start_worker, merchant, db, tmp_path):
    """`make run`: the API and the worker share PROMETHEUS_MULTIPROC_DIR, so the API's /metrics
    carries what the worker counted."""
    db.execute("DELETE FROM jobs")  # only this test's payment for the worker to settle
    shared = str(tmp_path / "metrics")
    os.makedirs(shared)
    api = start_api(PROMETHEUS_MULTIPROC_DIR=shared)
    payment = pay(api.url, merchant["headers"])
    samples = scrape(api.url + "/metrics")
    assert value(samples, "gateway_payments_total", method="upi", status="pending") == 1
    assert value(samples, "gateway_payments_total", method="upi", status="success") == 0

    start_worker(PROMETHEUS_MULTIPROC_DIR=shared, TEST_PROCESSING_DELAY=200)
    wait_until(lambda: value(scrape(api.url + "/metrics"), "gateway_payments_total", method="upi",
                             status="success") == 1, timeout=30, interval=0.1, message="the settlement counted")
    samples = scrape(api.url + "/metrics")
    assert value(samples, "gateway_payments_total", method="upi", status="processing") == 1
    assert value(samples, "gateway_payments_total", method="upi", status="pending") == 1
    assert value(samples, "gateway_payments_total", method="upi", status="failed") == 0
    assert value(samples, "gateway_workers_alive") >= 1
    status = requests.get(f"{api.url}/api/v1/payments/{payment['id']}", headers=merchant["headers"], timeout=10)
    assert status.json()["status"] == "success"


# ---- webhooks and the worker's own port ------------------------------------------------------------

def test_failing_webhooks_count_retries_then_failed_on_the_workers_own_port(
        client, make_merchant, receiver, start_worker, db):
    """A worker in a container of its own (compose) serves its counters on WORKER_METRICS_PORT."""
    db.execute("DELETE FROM jobs")  # nothing else for the worker to deliver
    down = receiver(responses=[500] * 20)
    m = make_merchant(webhook_url=down.url)
    port = free_port()
    start_worker(WORKER_METRICS_PORT=port, METRICS_TOKEN="w-token")
    url = f"http://127.0.0.1:{port}/metrics"

    def up():
        try:
            return requests.get(url, timeout=2).status_code == 401
        except requests.ConnectionError:
            return False

    wait_until(up, timeout=30, message="the worker's metrics port")
    refused = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "AUTHENTICATION_ERROR"

    pay(client, m["headers"])  # payment.created and payment.success: two webhooks, 5 attempts each
    auth = {"Authorization": "Bearer w-token"}
    wait_until(lambda: value(scrape(url, **auth), "gateway_webhook_deliveries_total", outcome="failed") == 2,
               timeout=40, interval=0.2, message="both webhooks given up")
    samples = scrape(url, **auth)
    assert value(samples, "gateway_webhook_deliveries_total", outcome="retry") == 8
    assert value(samples, "gateway_webhook_deliveries_total", outcome="success") == 0
    assert value(samples, "gateway_payments_total", method="upi", status="success") == 1
    assert len(down.requests) == 10
    assert db.values("SELECT status FROM webhook_logs WHERE merchant_id = %(m)s", {"m": m["id"]}) == ["failed"] * 2


# ---- gunicorn's processes ---------------------------------------------------------------------------

def per_process(directory, route):
    """Requests counted for `route` by each process's own file in the multiprocess directory."""
    counts = {}
    for name in os.listdir(directory):
        if not name.startswith("counter_"):
            continue
        alone = tempfile.mkdtemp(prefix="gw-metrics-file-")
        shutil.copy(os.path.join(directory, name), alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=alone)
        counts[name] = sum(s.value for s in parse_registry(registry)
                           if s.name == "gateway_http_requests_total" and s.labels.get("route") == route)
        shutil.rmtree(alone)
    return counts


def parse_registry(registry):
    return [s for family in registry.collect() for s in family.samples]


def test_two_gunicorn_processes_add_up_without_any_setting(process_env, log_dir):
    """A bare gunicorn run (no PROMETHEUS_MULTIPROC_DIR): every scrape, whichever process answers
    it, shows the requests both processes served."""
    env = {k: v for k, v in process_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    api = Api(env, log_dir, workers=2, threads=2)
    try:
        children = psutil.Process(api.process.proc.pid).children()
        assert len(children) == 2
        # The directory the master made (its processes' environment changed after exec: /proc does not show it).
        made = os.path.join(tempfile.gettempdir(), "gateway-metrics-*")
        directories = {os.path.dirname(f) for c in children for f in glob.glob(os.path.join(made, f"counter_{c.pid}.db"))}
        assert len(directories) == 1, directories
        directory = directories.pop()
        route = "/api/v1/orders/<order_id>"
        start = value(scrape(api.url + "/metrics"), "gateway_http_requests_total", method="GET", route=route,
                      status="404")
        sent = 0

        def both_served():
            nonlocal sent
            for _ in range(10):  # a new connection each: the kernel hands them to either process
                r = requests.get(api.url + "/api/v1/orders/order_0000000000000000", headers=api_headers(), timeout=5)
                assert r.status_code == 404
                sent += 1
            counts = per_process(directory, route)
            return len([n for n in counts.values() if n > 0]) == 2

        wait_until(both_served, timeout=60, interval=0, message="requests served by both processes")
        for _ in range(10):
            samples = scrape(api.url + "/metrics")
            assert value(samples, "gateway_http_requests_total", method="GET", route=route, status="404") \
                == start + sent
    finally:
        api.stop()
    assert not os.path.exists(directory)  # the master removes the directory it made


def test_a_restart_does_not_add_the_previous_runs_counts(tmp_path):
    """The launcher empties the directory it is given before it starts the processes."""
    from app.launcher import metrics_dir

    (tmp_path / "counter_4242.db").write_bytes(b"an earlier run")
    (tmp_path / "notes.txt").write_text("not ours")
    metrics_dir({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, "test_merchant")  # uses no metrics: left alone
    assert (tmp_path / "counter_4242.db").exists()
    for what in ("api", "worker", "run"):
        (tmp_path / "counter_4242.db").write_bytes(b"an earlier run")
        env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        metrics_dir(env, what)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], what
        assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


# ---- deployment -------------------------------------------------------------------------------------

def test_nginx_keeps_metrics_off_the_public_entrance(live_api, log_dir):
    from test_deploy import NGINX, Nginx

    if NGINX is None:
        pytest.fail("nginx is not installed: apt-get install nginx (.ci/run does)")
    proxy = Nginx(f"127.0.0.1:{live_api.port}", log_dir)
    try:
        for path in ("/metrics", "//metrics", "/%6Detrics", "/metrics?x=1"):
            r = requests.get(proxy.url + path, timeout=10)
            assert r.status_code == 404, path
            assert r.json() == {"error": {"code": "NOT_FOUND_ERROR", "description": "The requested URL was not found."}}
        assert requests.get(proxy.url + "/health", timeout=10).status_code == 200
    finally:
        proxy.stop()
    assert requests.get(live_api.url + "/metrics", timeout=10).status_code == 200  # on the private side


def test_compose_passes_the_metrics_token_and_scrapes_the_worker_inside():
    from test_deploy import COMPOSE, compose_config

    if COMPOSE is None:
        pytest.fail("docker-compose is not installed: apt-get install docker-compose (.ci/run does)")
    for token in ("", "a-metrics-token"):
        r = compose_config(SECRET_KEY="x", **({"METRICS_TOKEN": token} if token else {}))
        assert r.returncode == 0, r.stderr
        services = yaml.safe_load(r.stdout)["services"]
        assert services["api"]["environment"]["METRICS_TOKEN"] == token
        assert services["worker"]["environment"]["METRICS_TOKEN"] == token
    worker = services["worker"]
    assert worker["environment"]["WORKER_METRICS_PORT"] == "9101" and "9101" in worker["expose"]
    assert not worker.get("ports")  # reached by Prometheus inside the network only
    assert worker["environment"]["DATABASE_URL"] == services["api"]["environment"]["DATABASE_URL"]
