"""gunicorn hooks for the API (`--config python:app.gunicorn_conf`, set by app.launcher).

The app refuses a body over MAX_CONTENT_LENGTH without reading it, and gunicorn drops an
application's `Connection: close` header: it would announce keep-alive, then close the connection
when it cannot drain the rest of the body, and the client's next request on it would get no answer.
So the request itself is marked to close once its body is known to be over the limit: the 413 then
says `Connection: close` and the client opens a new connection.
"""
import os
import shutil
import tempfile

from gunicorn.http import wsgi

from app.config import load

LIMIT = load()["MAX_CONTENT_LENGTH"]


def _without_server_banner(default_headers):
    """gunicorn names itself in a `Server` header on every answer and has no setting to drop it (its
    maintainers declined one), so its response class is patched here, in the config module the
    master loads before forking workers: the header tells a scanner what to try, and nobody else."""

    def headers(self):
        return [line for line in default_headers(self) if not line.startswith("Server:")]

    return headers


wsgi.Response.default_headers = _without_server_banner(wsgi.Response.default_headers)


class _CountingBody:
    """The request body as gunicorn reads it, closing the connection once more than LIMIT bytes
    were read (a chunked body declares no length up front)."""

    def __init__(self, req):
        self._req, self._body, self._left = req, req.body, LIMIT

    def read(self, size=None):
        data = self._body.read(size)
        self._count(data)
        return data

    def readline(self, size=None):
        data = self._body.readline(size)
        self._count(data)
        return data

    def _count(self, data):
        self._left -= len(data)
        if self._left < 0:
            self._req.force_close()

    def __getattr__(self, name):  # failed, readlines, ...: as gunicorn's own body
        return getattr(self._body, name)


def pre_request(worker, req):
    """Close the connection after a body over the limit instead of announcing keep-alive. A request
    without a body (most of them) is left as it is."""
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            if int(value) > LIMIT:  # gunicorn has checked it is one non-negative integer
                req.force_close()
            return
        if name == "TRANSFER-ENCODING":  # chunked: counted as it is read
            req.body = _CountingBody(req)
            return


# ---- Prometheus multiprocess mode (app/metrics.py) ------------------------------------------------

_own_metrics_dir = None


def on_starting(server):
    """Without PROMETHEUS_MULTIPROC_DIR (a bare gunicorn run) each worker process would count
    alone and a scrape would show one process's share: make a fresh directory for this server.
    Set here, in the master before any worker forks, it reaches every worker before the app (and
    prometheus_client) is imported there."""
    global _own_metrics_dir
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _own_metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def child_exit(server, worker):
    """A worker process ended: drop its live gauge files (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
