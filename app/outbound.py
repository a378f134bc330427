"""Outbound webhook HTTP: the SSRF guard and the client that connects only to addresses it vetted."""
import ipaddress
import re
import socket
import time
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .errors import ApiError

TIMEOUT_SECONDS = 5   # to connect, and for each read
ATTEMPT_SECONDS = 10  # reading the answer's body, in all
RESPONSE_BODY_LIMIT = 1000  # characters of an answer stored
RESPONSE_READ_LIMIT = 4 * RESPONSE_BODY_LIMIT  # bytes of it read (UTF-8: at most 4 bytes a character)

# Every refusal of a host says the same, so that a merchant cannot tell an internal name that does
# not resolve from one that resolves to a private address.
REFUSED = "{field} must be a public http(s) URL."

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


# ---- SSRF guard -------------------------------------------------------------------------------

def _embedded_ipv4(ip):
    """The IPv4 address an IPv6 address carries to an IPv4 host (mapped, 6to4, NAT64), else None."""
    for embedded in (ip.ipv4_mapped, ip.sixtofour):
        if embedded is not None:
            return embedded
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _blocked_ip(ip):
    """True unless the address is on the public internet (judged by the IPv4 address it embeds, if any)."""
    ip = ipaddress.ip_address(ip)
    if ip.version == 6:
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _blocked_ip(embedded)
        if ip.teredo or ip in _IPV4_COMPATIBLE:
            return True  # a tunnel through a relay to some IPv4 host: refused outright rather than trusted
    return not ip.is_global or ip.is_multicast


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def _target(url, field="webhook_url"):
    """(scheme, host, port) of an http(s) URL without credentials; ApiError(400) naming field otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ApiError(f"{field} is not a valid URL.", field=field) from None
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(f"{field} must be an http(s) URL with a host.", field=field)
    if parts.username or parts.password:
        raise ApiError(f"{field} must not contain credentials.", field=field)
    return parts.scheme, host, port


def _private_ok(host, port, allow_private, allowed_hosts):
    """Private addresses allowed: all of them, or this host on every port or on this one."""
    host = host.lower()
    return bool(allow_private) or host in allowed_hosts or f"{host}:{port}" in allowed_hosts


def _resolve(host, port, private_ok, field="webhook_url"):
    """getaddrinfo's TCP answers for host; ApiError(REFUSED) when it does not resolve or, unless
    private_ok, when any answer is not a public address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ApiError(REFUSED.format(field=field), field=field) from None
    if not private_ok and any(_blocked_ip(info[4][0]) for info in infos):
        raise ApiError(REFUSED.format(field=field), field=field)
    return infos


def check_url(url, allow_private, allowed_hosts=(), field="webhook_url"):
    """Refuse non-http(s) URLs and, unless private targets are allowed (all of them, or this host
    by name), hosts that do not resolve or resolve to any non-public address. Raises ApiError(400)
    naming `field`, the request's name for the URL."""
    if _SPACE_OR_CONTROL.search(url):  # urlsplit keeps them, though no valid URL (nor resolvable host) has one
        raise ApiError(f"{field} is not a valid URL.", field=field)
    _, host, port = _target(url, field)
    if not _private_ok(host, port, allow_private, allowed_hosts):
        _resolve(host, port, False, field)


# ---- the client ---------------------------------------------------------------------------------

class _Vetted:
    """A connection that resolves its host once, vets every answer and connects to a vetted
    address itself, so no second lookup can swap in another; the Host header, TLS SNI and the
    certificate check still use the name (the parent class does them with self.host)."""

    def __init__(self, *args, private_ok=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.private_ok = private_ok

    def _new_conn(self):
        error = None
        for family, kind, proto, _, address in _resolve(self.host.strip("[]"), self.port, self.private_ok):
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(self.timeout)
                sock.connect(address)
                return sock
            except TimeoutError as e:
                sock.close()
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                f"(connect timeout={self.timeout})") from e
            except OSError as e:
                sock.close()
                error = e
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class VettedHTTPConnection(_Vetted, HTTPConnection):
    """HTTP to a vetted address (named so in a failed attempt's message)."""


class VettedHTTPSConnection(_Vetted, HTTPSConnection):
    """HTTPS to a vetted address, TLS on the name."""


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = VettedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = VettedHTTPSConnection


def _pool_key(context):
    # Every other pool setting is the manager's own, the same for all requests.
    return context["scheme"].lower(), context["host"].lower(), context["port"], context.get("private_ok")


def http_pool(connections_per_host):
    """The worker's HTTP client, shared by its delivery threads: keep-alive connections per
    endpoint and policy (size it to the delivery threads: many merchants may share one receiving
    host), each connected to an address vetted when it was opened, no retries or redirects of its
    own (a retry is a new attempt, on our schedule), certifi's CA bundle (as requests uses), and
    no proxy from the environment: the guard vets the address we actually connect to."""
    http = urllib3.PoolManager(num_pools=256, maxsize=connections_per_host, block=False, retries=False,
                               ca_certs=certifi.where())
    http.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    http.key_fn_by_scheme = {"http": _pool_key, "https": _pool_key}
    return http


def send(http, url, body, headers, allow_private, allowed_hosts=()):
    """POST body to url. Returns (ok, response_code, response_body); never raises."""
    try:
        _, host, port = _target(url)
    except ApiError as e:
        return False, None, e.description
    try:
        # Connected to as urllib3 parses it, and the connection vets the host it was given. The
        # allow-list was judged on the host as check_url parses it: where the two parsers disagree
        # the URL is refused, so what is allowed is what is connected to.
        u = urllib3.util.parse_url(url)
        if (u.host or "").strip("[]").lower() != host.lower() or (u.port or port) != port:
            return False, None, REFUSED.format(field="webhook_url")
        pool = http.connection_from_host(u.host, u.port, u.scheme,
                                         pool_kwargs={"private_ok": _private_ok(host, port, allow_private, allowed_hosts)})
        r = pool.urlopen("POST", u.request_uri, body=body, headers=headers, redirect=False, assert_same_host=False,
                         timeout=urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS),
                         preload_content=False)
        try:
            # Only the start of the answer is kept, read for ATTEMPT_SECONDS at most: a huge,
            # endless or trickling body costs us nothing more (read1: one socket read at a time).
            raw, deadline = b"", time.monotonic() + ATTEMPT_SECONDS
            while len(raw) < RESPONSE_READ_LIMIT and time.monotonic() < deadline:
                chunk = r.read1(RESPONSE_READ_LIMIT - len(raw))
                if not chunk:
                    break
                raw += chunk
        finally:
            if r.length_remaining == 0:
                r.release_conn()  # read to the end: the connection is reusable
            else:
                r.close()
        text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:RESPONSE_BODY_LIMIT]
        return 200 <= r.status < 300, r.status, text
    except ApiError as e:  # the host was refused when the connection was opened
        return False, None, e.description
    except Exception as e:  # noqa: BLE001 - timeouts, refused connections, TLS errors: all a failed attempt
        return False, None, f"{type(e).__name__}: {str(e)[:200]}"
