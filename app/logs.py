"""Log lines: the id of the request being handled on every record (X-Request-Id), and their format
(LOG_FORMAT: `text`, or `json`, one object per line).

The id lives in a context variable: each gunicorn thread, and each worker thread running a job,
has its own. Jobs a request enqueues carry it in their payload (jobs.enqueue_many), so the
worker's lines about them name the request that caused them.
"""
import contextlib
import contextvars
import logging
import re

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from .ids import new_id

HEADER = "X-Request-Id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_current = contextvars.ContextVar("request_id", default=None)
FORMATS = ("text", "json")


def request_id_for(sent):
    """The client's own id when it is a safe token (it is echoed in a header and written to logs),
    else a new req_ id."""
    return sent if sent and _CLIENT_ID.fullmatch(sent) else new_id("req_")


def current_request_id():
    """The id of the request (or the job of a request) this thread is handling, or None."""
    return _current.get()


def bind(request_id):
    """Make request_id this context's until unbind(token)."""
    return _current.set(request_id)


def unbind(token):
    try:
        _current.reset(token)
    except ValueError:  # a server that closes the response in another context than it called the app in
        _current.set(None)


@contextlib.contextmanager
def request_context(request_id):
    token = bind(request_id)
    try:
        yield
    finally:
        unbind(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (unless the line names its own, as the worker's
    job lines do); a record without one gets no request_id attribute at all."""

    def filter(self, record):
        request_id = record.__dict__.get("request_id") or _current.get()
        if request_id:
            record.request_id = request_id
        else:
            record.__dict__.pop("request_id", None)
        return True


_NOT_EXTRA = frozenset(RESERVED_ATTRS) | {"message", "asctime"}


def _extras(record):
    """The fields a line was given with extra= (and its request_id)."""
    return {k: v for k, v in record.__dict__.items() if k not in _NOT_EXTRA and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message`, then ` name=value` for each extra field (request_id, job_id, …)."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record):
        # Before any traceback, which logging.Formatter.format appends after the message.
        return super().formatMessage(record) + "".join(f" {k}={v}" for k, v in _extras(record).items())


class JsonLineFormatter(JsonFormatter):
    """{"ts", "level", "logger", "msg", …}: the extra fields and a message's named arguments (a line
    logged with one dict of arguments, as the access line is) become keys of their own."""

    def __init__(self):
        super().__init__("{levelname}{name}{message}", style="{", timestamp="ts",
                         rename_fields={"levelname": "level", "name": "logger", "message": "msg"})

    def add_fields(self, log_data, record, message_dict):
        if isinstance(record.args, dict):
            message_dict = {**record.args, **message_dict}
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data):
        return {"ts": log_data.pop("ts"), **log_data}  # the time first, as in the text lines


def configure(level, fmt):
    """One handler on the root logger, to stderr, in the chosen format, with the request id filter.
    A process whose logging someone else set up already (a test runner) keeps its handlers."""
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT {fmt!r}: expected one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None and not root.handlers:
        handler = _Handler()
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    if handler is not None:
        handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    logging.getLogger("app").setLevel(level)


class _Handler(logging.StreamHandler):
    """The gateway's own handler (told apart from others so create_app can be called again)."""
