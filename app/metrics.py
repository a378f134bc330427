"""Prometheus metrics (docs/metrics.md): counters the API and the worker keep as things happen,
and queue gauges read from PostgreSQL only when /metrics is scraped.

Under gunicorn every process counts into its own files in PROMETHEUS_MULTIPROC_DIR and a scrape
sums them all (prometheus_client's multiprocess mode); `make run` gives the worker the same
directory, so the API's /metrics carries the worker's counters too. A worker elsewhere (its own
container) serves its counters on WORKER_METRICS_PORT (serve_worker_metrics). Without the
directory (the in-process tests) the counters live in this process and /metrics reads them there.
"""
import hmac
import logging
import os
import socket
import socketserver
import threading
import time
from collections import Counter as Tally
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from flask import Blueprint, current_app, g, request
from prometheus_client import (CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram, generate_latest,
                               multiprocess)
from prometheus_client.core import GaugeMetricFamily

from . import db
from .errors import AuthenticationError
from .schemas import PAYMENT_METHODS, PAYMENT_STATUSES

log = logging.getLogger(__name__)

# Multiprocess files have no _created series; the in-process registry then shows the same families.
prometheus_client.disable_created_metrics()

UNMATCHED = "<unmatched>"  # the route of a request no URL rule matched: a raw path would be unbounded
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
DELIVERY_OUTCOMES = ("success", "retry", "failed")
QUEUE_STATUSES = ("pending", "processing", "dead")  # jobs.queue_depth's statuses

# registry=None: never in the global registry; a scrape builds its own (scrape_registry).
HTTP_REQUESTS = Counter("gateway_http_requests", "HTTP requests answered, by method, URL rule and status.",
                        ["method", "route", "status"], registry=None)
HTTP_DURATION = Histogram("gateway_http_request_duration_seconds", "Time to answer an HTTP request, by URL rule.",
                          ["route"], registry=None,
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
WEBHOOK_DELIVERIES = Counter("gateway_webhook_deliveries", "Webhook delivery attempts recorded, by outcome: success, "
                             "retry (failed, another attempt is scheduled), failed (attempts used up).",
                             ["outcome"], registry=None)
PAYMENTS = Counter("gateway_payments", "Payments reaching each status (counted when the change commits).",
                   ["method", "status"], registry=None)
OWN = (HTTP_REQUESTS, HTTP_DURATION, WEBHOOK_DELIVERIES, PAYMENTS)

# Every outcome and status from the start: a rate over a series that appears late misses its first count.
for _outcome in DELIVERY_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)
for _method in PAYMENT_METHODS:
    for _status in PAYMENT_STATUSES:
        PAYMENTS.labels(_method, _status)


# ---- counting ---------------------------------------------------------------------------------

def count_payments(c, payments):
    """gateway_payments_total: payments (dicts with method and status) that reached their status
    in c's current work, counted once it commits."""
    tally = Tally((p["method"], p["status"]) for p in payments)
    if tally:
        db.after_commit(c, lambda: [PAYMENTS.labels(m, s).inc(n) for (m, s), n in tally.items()])


def count_deliveries(statuses):
    """gateway_webhook_deliveries_total for recorded attempts, by the status each left its log in
    (webhooks.outcome): success, pending (a retry is scheduled) or failed (attempts used up)."""
    for status, n in Tally(statuses).items():
        WEBHOOK_DELIVERIES.labels("retry" if status == "pending" else status).inc(n)


def init_app(app):
    """Count and time every request (from the start time the request log sets first: g.t0); serve
    /metrics."""

    @app.after_request
    def _count(resp):
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "OTHER"
        HTTP_REQUESTS.labels(method, route, str(resp.status_code)).inc()
        t0 = g.get("t0")
        if t0 is not None:
            HTTP_DURATION.labels(route).observe(time.perf_counter() - t0)
        return resp

    app.register_blueprint(bp)


# ---- scraping -------------------------------------------------------------------------------------

class _Own:
    """This process's counters (no multiprocess directory)."""

    def collect(self):
        for metric in OWN:
            yield from metric.collect()


class _Queue:
    """The gauges read from PostgreSQL at scrape time (cheap: see jobs.queue_depth)."""

    def __init__(self, connect):
        self.connect = connect

    def collect(self):
        from . import health, jobs, payments, refunds, webhooks

        try:
            c = self.connect()
            counts, oldest = jobs.queue_depth(c)
            alive = health.workers_alive(c)
        except Exception as e:  # noqa: BLE001 - the counters are still worth serving without the database
            log.warning("metrics: the queue gauges are left out: %s", type(e).__name__)
            return
        depth = GaugeMetricFamily("gateway_jobs", "Jobs in the queue by kind and status (pending, processing, dead).",
                                  labels=["kind", "status"])
        # Every known kind with zeros, so a dashboard line is at 0 rather than missing.
        values = {(kind, status): 0 for kind in (payments.SETTLE, refunds.PROCESS, webhooks.DELIVER)
                  for status in QUEUE_STATUSES}
        values.update({(r["kind"], r["status"]): r["n"] for r in counts})
        for (kind, status), n in sorted(values.items()):
            depth.add_metric([kind, status], n)
        yield depth
        yield GaugeMetricFamily("gateway_job_oldest_pending_seconds",
                                "Seconds the oldest due pending job has waited since it became due (0: none waits).",
                                value=oldest)
        yield GaugeMetricFamily("gateway_workers_alive",
                                f"Workers whose heartbeat is under {health.HEARTBEAT_FRESH_SECONDS} s old.",
                                value=alive)


def multiprocess_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def own_registry():
    """The counters of every process sharing PROMETHEUS_MULTIPROC_DIR, else of this process."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(_Own())
    return registry


def authorized(header, token):
    """Whether an Authorization header carries the bearer token; compared in constant time."""
    return hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    token = current_app.config.get("METRICS_TOKEN")
    if token and not authorized(request.headers.get("Authorization"), token):
        raise AuthenticationError("Send Authorization: Bearer <METRICS_TOKEN> to read the metrics.")
    registry = own_registry()
    registry.register(_Queue(db.conn))
    # The classic text format (0.0.4), which every Prometheus version reads; the names need no escaping.
    resp = current_app.response_class(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---- the worker's own endpoint ----------------------------------------------------------------

class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per scrape would drown the worker's log
        pass


def serve_worker_metrics(host, port, token=None):
    """Serve this process's counters at http://host:port/metrics on a daemon thread (the worker,
    when Prometheus cannot read them through the API's directory). Returns the server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Own())
    exposition = prometheus_client.make_wsgi_app(registry)

    def app(environ, start_response):
        if token and not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            body = b'{"error":{"code":"AUTHENTICATION_ERROR","description":"Send Authorization: Bearer ' \
                   b'<METRICS_TOKEN> to read the metrics."}}'
            start_response("401 Unauthorized", [("Content-Type", "application/json"),
                                                ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"metrics are at /metrics\n"]
        return exposition(environ, start_response)

    server_class = _ThreadingServer
    if ":" in host:
        server_class = type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
