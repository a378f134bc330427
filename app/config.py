"""Configuration: defaults + environment, read in one place (create_app calls load())."""
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("GATEWAY_DATA_DIR", ROOT / ".data"))

TEST_MERCHANT = {
    "id": "550e8400-e29b-41d4-a716-446655440000",
    "name": "Test Merchant",
    "email": "test@example.com",
    "api_key": "key_test_abc123",
    "api_secret": "secret_test_xyz789",
    "webhook_secret": "whsec_test_abc123",
}


def _bool(value, default=False):
    if value is None or value == "":
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def number(env, name, default, kind=int):
    """A numeric setting (whole unless kind is float); unset or empty: default. Anything else stops
    the start, naming the setting."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r}: expected {'a whole number' if kind is int else 'a number'}") from None


def retry_intervals(test_mode, raw):
    """Webhook retry delays in seconds after attempts 1..4: 1 min, 5 min, 30 min, 2 h (test mode 5-20 s)."""
    raw = (raw or "").strip().lower()
    if raw == "true":
        return [5, 10, 15, 20]
    if raw not in ("", "false"):
        try:
            values = [int(x) for x in raw.split(",") if x.strip()]
        except ValueError:
            values = []
        if not values or any(v < 0 for v in values):
            raise ValueError(f"WEBHOOK_RETRY_INTERVALS_TEST {raw!r}: expected 'true' or a comma list of "
                             f"whole seconds (e.g. 5,10,15,20)")
        return values
    return [5, 10, 15, 20] if test_mode else [60, 300, 1800, 7200]


def retention_days(raw, default=30):
    """WEBHOOK_LOG_RETENTION_DAYS: whole days a webhook log is kept (at least); unset or 0: 30."""
    raw = (raw or "").strip()
    if not raw.isdigit():
        if raw:
            raise ValueError(f"WEBHOOK_LOG_RETENTION_DAYS {raw!r}: expected a whole number of days "
                             f"(0 or unset: {default})")
        return default
    return int(raw) or default


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(name, raw, default):
    """A length of time in seconds, written as whole seconds (`3600`) or a whole number with a unit
    (`30m`, `12h`, `5d`); unset: default. Anything else stops the start, naming the setting."""
    raw = (raw or "").strip().lower()
    if not raw:
        return default
    match = re.fullmatch(r"(\d+)([smhd]?)", raw)
    if not match:
        raise ValueError(f"{name} {raw!r}: expected whole seconds or a whole number with s, m, h or d "
                         f"(e.g. 3600, 30m, 12h, 5d)")
    return int(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


def duration_text(seconds):
    """Seconds in words, in the largest unit that divides them (432000 -> "5 days")."""
    for unit, name in (("d", "day"), ("h", "hour"), ("m", "minute")):
        if seconds and seconds % DURATION_UNITS[unit] == 0:
            seconds, word = seconds // DURATION_UNITS[unit], name
            break
    else:
        word = "second"
    return f"{seconds} {word}{'' if seconds == 1 else 's'}"


def time_zone(raw, default="Asia/Kolkata"):
    """DASHBOARD_TIMEZONE: an IANA zone name (`Asia/Kolkata`, `Europe/London`, `UTC`); an unknown
    one stops the start, naming the setting."""
    name = (raw or "").strip() or default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"DASHBOARD_TIMEZONE {name!r}: not a known IANA time zone "
                         f"(e.g. Asia/Kolkata, Europe/London, UTC)") from None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(raw):
    """LOG_LEVEL: a logging level name in any case (`INFO` when unset); anything else stops the start."""
    level = (raw or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL {raw!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def log_format(raw):
    """LOG_FORMAT: `text` (unset) or `json`; anything else stops the start, naming the setting."""
    fmt = (raw or "text").strip().lower()
    if fmt not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT {raw!r}: expected text or json")
    return fmt


def allowed_hosts(raw):
    """Where webhooks may go although it is a private address: a comma list of exact host names, any
    case, each alone (every port) or with a port (`test_merchant:3002`, `[::1]:3002`). Returns the
    set of "host" and "host:port" strings, IPv6 brackets removed from the host."""
    out = set()
    for entry in (e.strip().lower() for e in (raw or "").split(",")):
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or (":" in host and not host.startswith("[")):
            host, port = entry, ""  # no port (an IPv6 address with a port needs its brackets)
        host = host.strip("[]")
        if host:
            out.add(f"{host}:{int(port)}" if port else host)
    return frozenset(out)


def public_url(raw, port):
    """The address merchants reach the gateway at (snippets, links): PUBLIC_URL, else localhost."""
    url = (raw or f"http://localhost:{port}").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"PUBLIC_URL {raw!r}: expected an http(s) URL such as https://pay.example.com")
    return url


def secret_key():
    """SECRET_KEY from the environment, else one generated once into .data/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        # O_EXCL: two processes starting together agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


def load(env=None):
    """Every setting (README "Configuration") from the environment."""
    env = os.environ if env is None else env
    test_mode = _bool(env.get("TEST_MODE"))
    port = number(env, "PORT", 8000)
    public = public_url(env.get("PUBLIC_URL"), port)
    return {
        "DATABASE_URL": env.get("DATABASE_URL"),
        "PORT": port,
        "PUBLIC_URL": public,
        # Behind TLS: Secure cookies and https links (docs/security.md).
        "PREFERRED_URL_SCHEME": env.get("PREFERRED_URL_SCHEME") or urlsplit(public).scheme,
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), public.startswith("https://")),
        # How many proxies in front set X-Forwarded-For/-Proto/-Host; 0 = the headers are ignored.
        "TRUST_PROXY": number(env, "TRUST_PROXY", 0),
        # Failed dashboard sign-ins (app/ratelimit.py format), per email and per client address.
        "LOGIN_RATE_LIMIT": env.get("LOGIN_RATE_LIMIT", "5/15minutes"),
        "LOGIN_ADDRESS_RATE_LIMIT": env.get("LOGIN_ADDRESS_RATE_LIMIT", "30/minute"),
        # Authenticated API calls per API key (same format), shared by every process; unset = no limit.
        "API_RATE_LIMIT": (env.get("API_RATE_LIMIT") or "").strip() or None,
        "TEST_MERCHANT_PORT": number(env, "TEST_MERCHANT_PORT", 3002),
        "TEST_MODE": test_mode,
        "TEST_PAYMENT_SUCCESS": _bool(env.get("TEST_PAYMENT_SUCCESS"), True),
        "TEST_PROCESSING_DELAY": number(env, "TEST_PROCESSING_DELAY", 1000),
        "WEBHOOK_RETRY_INTERVALS": retry_intervals(test_mode, env.get("WEBHOOK_RETRY_INTERVALS_TEST")),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": test_mode or _bool(env.get("WEBHOOK_ALLOW_PRIVATE_TARGETS")),
        "WEBHOOK_ALLOWED_HOSTS": allowed_hosts(env.get("WEBHOOK_ALLOWED_HOSTS")),
        "TEST_MERCHANT_PASSWORD": env.get("TEST_MERCHANT_PASSWORD", "password"),
        "TEST_MERCHANT_WEBHOOK_URL": env.get("TEST_MERCHANT_WEBHOOK_URL") or None,
        # None: seed when TEST_MODE is on (decided in db.seed_test_merchant, after a test config's overrides)
        "SEED_TEST_MERCHANT": _bool(env.get("SEED_TEST_MERCHANT")) if env.get("SEED_TEST_MERCHANT") else None,
        "CHECKOUT_FRAME_ANCESTORS": env.get("CHECKOUT_FRAME_ANCESTORS", "*"),
        # Seconds the checkout polls a payment before it shows "still processing" and stops asking
        "CHECKOUT_POLL_TIMEOUT": number(env, "CHECKOUT_POLL_TIMEOUT", 600),
        "DB_POOL_SIZE": number(env, "DB_POOL_SIZE", 10),
        # worker.py
        "JOB_BATCH_SIZE": number(env, "JOB_BATCH_SIZE", 200),
        "JOB_LEASE_SECONDS": number(env, "JOB_LEASE_SECONDS", 30.0, float),
        "WEBHOOK_THREADS": number(env, "WEBHOOK_THREADS", 16),
        "WEBHOOK_PER_MERCHANT": number(env, "WEBHOOK_PER_MERCHANT", 4),
        # webhook_logs' days older than this are dropped (app/partitions.py)
        "WEBHOOK_LOG_RETENTION_DAYS": retention_days(env.get("WEBHOOK_LOG_RETENTION_DAYS")),
        # An endpoint with no successful delivery for this many seconds is disabled; 0: never
        "WEBHOOK_DISABLE_AFTER": duration("WEBHOOK_DISABLE_AFTER", env.get("WEBHOOK_DISABLE_AFTER"), 5 * 86400),
        # /metrics: when set, only with `Authorization: Bearer <token>` (docs/metrics.md)
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "WORKER_METRICS_PORT": number(env, "WORKER_METRICS_PORT", None),
        # The dashboard shows times and takes dates in this zone (the API stays in UTC)
        "DASHBOARD_TIMEZONE": time_zone(env.get("DASHBOARD_TIMEZONE")),
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "LOG_LEVEL": log_level(env.get("LOG_LEVEL")),
        "LOG_FORMAT": log_format(env.get("LOG_FORMAT")),  # text, or json: one object per line
    }
