"""Outbound webhook HTTP: the SSRF guard (which hosts and addresses a delivery may reach, checked
when the URL is saved and again by the connection itself) and the client's limits."""
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

from helpers import wait_until

from app import config, outbound, webhooks

REFUSED = "webhook_url must be a public http(s) URL."  # every refusal of a host says exactly this
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def strict(app, monkeypatch):
    """The gateway outside test mode: private targets refused unless named in WEBHOOK_ALLOWED_HOSTS."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    return app.config


class FakeDns:
    """The resolver, faked for chosen names: each lookup of a name gets its next answer (the
    last one repeats); every other name resolves as usual. `asked` lists every name looked up."""

    def __init__(self, monkeypatch):
        self.answers, self.asked, self.real = {}, [], socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)

    def getaddrinfo(self, host, port, *args, **kwargs):
        self.asked.append(host)
        if host in self.answers:
            answers = self.answers[host]
            host = answers[min(self.asked.count(host), len(answers)) - 1]
        return self.real(host, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch):
    return FakeDns(monkeypatch)


class _Endpoint:
    """A merchant endpoint answering with a chosen raw response (over TLS with a server context);
    counts the connections it saw and keeps the request heads."""

    def __init__(self, response, tls=None):
        self.response, self.connections, self.heads = response, 0, []
        endpoint = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                endpoint.connections += 1
                while True:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = self.rfile.readline()
                        if not line:
                            return
                        head += line
                    endpoint.heads.append(head)
                    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
                    self.rfile.read(length)
                    try:
                        for chunk in endpoint.response():
                            self.wfile.write(chunk)
                    except OSError:  # the client stopped reading: expected for the endless body
                        return

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        # close() waits for a poll of the shutdown flag (the default is every 0.5 s)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _attempt(url):
    return {"webhook_url": url, "webhook_secret": webhooks.new_secret(), "event_id": "evt_x", "body": '{"a":1}',
            "attempts": 0}


def _save(client, merchant, url):
    return client.put("/api/v1/webhooks/config", json={"webhook_url": url}, headers=merchant["headers"])


# ---- which addresses --------------------------------------------------------------------------

@pytest.mark.parametrize("host, public", [
    ("10.1.2.3", False), ("172.16.0.1", False), ("172.31.255.255", False), ("192.168.1.1", False),
    ("127.0.0.1", False), ("127.8.9.10", False), ("100.64.0.1", False), ("100.127.255.254", False),
    ("169.254.169.254", False), ("0.0.0.0", False), ("224.0.0.1", False), ("239.255.255.250", False),
    ("255.255.255.255", False), ("[::1]", False), ("[::]", False), ("[fc00::1]", False), ("[fd00:ec2::254]", False),
    ("[fe80::1]", False), ("[ff02::1]", False), ("[ff0e::1]", False),
    ("[::ffff:127.0.0.1]", False), ("[::ffff:10.0.0.1]", False), ("[::7f00:1]", False),
    ("[2002:7f00:1::]", False), ("[2002:c0a8:101::1]", False), ("[2002:6440:1::]", False),
    ("[64:ff9b::a00:1]", False), ("[64:ff9b::7f00:1]", False), ("[64:ff9b:1::a9fe:a9fe]", False),
    ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", False),
    ("8.8.8.8", True), ("1.1.1.1", True), ("[2606:4700::1111]", True), ("[::ffff:8.8.8.8]", True),
    ("[2002:808:808::1]", True), ("[64:ff9b::808:808]", True),
])
def test_only_public_addresses_are_accepted(client, merchant, strict, db, host, public):
    """Private, shared (100.64/10), loopback, link-local, unspecified, multicast and reserved
    addresses are refused, also inside IPv6 (mapped, IPv4-compatible, 6to4, NAT64, Teredo)."""
    url = f"http://{host}/hook"
    r = _save(client, merchant, url)
    saved = db.value("SELECT webhook_url FROM merchants WHERE id = %(m)s", {"m": merchant["id"]})
    if public:
        assert r.status_code == 200 and saved == url
    else:
        assert r.status_code == 400 and saved is None
        assert r.get_json()["error"] == {"code": "BAD_REQUEST_ERROR", "description": REFUSED, "field": "webhook_url"}


def test_every_refused_host_gets_the_same_answer(client, merchant, strict):
    """A name that does not resolve and names or addresses that are internal all get one message,
    so a merchant learns nothing about the gateway's network from it."""
    answers = {url: _save(client, merchant, url) for url in (
        "http://no-such-host.invalid/hook", "http://localhost:8080/x", "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data", "http://[::1]/")}
    assert {r.status_code for r in answers.values()} == {400}
    assert {r.get_json()["error"]["description"] for r in answers.values()} == {REFUSED}


def test_a_private_target_is_refused_again_at_delivery_time(app, make_merchant, receiver, running_worker, db,
                                                            client, monkeypatch):
    """A URL saved while allowed (or before its DNS changed) is checked again on every attempt,
    and the attempt's log says the same one message."""
    rx = receiver()
    m = make_merchant(webhook_url=rx.url)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)  # the worker's settings too
    client.post("/api/v1/webhooks/test", headers=m["headers"])
    row = wait_until(lambda: db.one("SELECT attempts, response_body FROM webhook_logs WHERE merchant_id = %(m)s "
                                             "AND attempts > 0", {"m": m["id"]}), message="an attempt")
    assert row["response_body"] == REFUSED
    assert rx.requests == []


def test_a_host_that_stops_resolving_fails_with_the_same_message():
    assert webhooks.post(outbound.http_pool(2), _attempt("http://no-such-host.invalid/hook"),
                         allow_private=True) == (False, None, REFUSED)


# ---- the connection goes to the vetted address --------------------------------------------------

def test_dns_rebinding_cannot_turn_a_delivery_to_a_local_address(dns, receiver, monkeypatch):
    """The name answers a public address, then 127.0.0.1: the delivery goes to the address that
    was vetted (it fails: nothing listens there) and never reaches the local receiver; the next
    connection looks the name up again and is refused."""
    rx = receiver()
    # 127.0.0.2 stands for a public address here (nothing listens on it, and no Internet is needed).
    blocked = outbound._blocked_ip
    monkeypatch.setattr(outbound, "_blocked_ip", lambda ip: ip != "127.0.0.2" and blocked(ip))
    dns.answers["rebind.example"] = ["127.0.0.2", "127.0.0.1"]
    http = outbound.http_pool(2)
    attempt = _attempt(f"http://rebind.example:{rx.port}/webhook")
    ok, code, body = webhooks.post(http, attempt, allow_private=False)
    assert (ok, code) == (False, None) and body.startswith(("NewConnectionError", "ConnectTimeoutError"))
    assert dns.asked.count("rebind.example") == 1  # one lookup: the one vetted is the one connected to
    assert webhooks.post(http, attempt, allow_private=False) == (False, None, REFUSED)
    assert rx.requests == []


@pytest.mark.parametrize("policy", [{"allow_private": True}, {"allow_private": False, "allowed_hosts": {"localhost"}}],
                         ids=["test mode", "allowed host"])
def test_deliveries_by_name_keep_one_connection_looked_up_once(dns, policy):
    ep = _Endpoint(lambda: iter([OK]))
    http = outbound.http_pool(2)
    try:
        results = [webhooks.post(http, _attempt(f"http://localhost:{ep.port}/hook"), **policy) for _ in range(3)]
    finally:
        ep.close()
    assert results == [(True, 200, "ok")] * 3
    assert ep.connections == 1 and dns.asked.count("localhost") == 1
    assert all(b"\r\nHost: localhost:%d\r\n" % ep.port in head for head in ep.heads)  # the name, not the address


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for the name localhost (cert.pem, key.pem)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl makes the test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", d / "key.pem", "-out", d / "cert.pem"],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_tls_sends_and_verifies_the_name_not_the_address(certificate, monkeypatch):
    """Connected to the vetted address, the client still sends the name as SNI and checks the
    certificate against it: https://localhost works, https://127.0.0.1 (same server) does not."""
    cert, key = certificate
    monkeypatch.setattr(outbound.certifi, "where", lambda: str(cert))  # the test certificate as the only CA
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    names = []
    server.sni_callback = lambda sock, name, context: names.append(name)
    ep = _Endpoint(lambda: iter([OK]), tls=server)
    http = outbound.http_pool(2)
    allowed = {"localhost", "127.0.0.1"}
    try:
        by_name = webhooks.post(http, _attempt(f"https://localhost:{ep.port}/hook"), False, allowed)
        by_address = webhooks.post(http, _attempt(f"https://127.0.0.1:{ep.port}/hook"), False, allowed)
    finally:
        ep.close()
    assert by_name == (True, 200, "ok") and names[0] == "localhost"
    assert by_address[0] is False and "SSLError" in by_address[2] and "mismatch" in by_address[2]
    assert len(ep.heads) == 1


# ---- WEBHOOK_ALLOWED_HOSTS ----------------------------------------------------------------------

def test_allowed_hosts_setting_is_a_comma_list_of_exact_names():
    assert config.load({})["WEBHOOK_ALLOWED_HOSTS"] == frozenset()
    assert config.load({"WEBHOOK_ALLOWED_HOSTS": " Test_Merchant ,localhost,, "})["WEBHOOK_ALLOWED_HOSTS"] == {
        "test_merchant", "localhost"}
    assert config.allowed_hosts("test_merchant:3002, 127.0.0.1:03002, [::1]:8080, ::1, [fd00::1]") == {
        "test_merchant:3002", "127.0.0.1:3002", "::1:8080", "::1", "fd00::1"}


def test_an_allowed_host_with_a_port_opens_that_port_only(app, client, merchant, receiver, running_worker,
                                                          strict, monkeypatch, db):
    """`localhost:<port>` lets webhooks reach the bundled receiver's port, not the database's or
    any other service on the same private host."""
    rx = receiver()
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_HOSTS", config.allowed_hosts(f"localhost:{rx.port}"))
    assert _save(client, merchant, f"http://localhost:{rx.port}/webhook").status_code == 200
    assert client.post("/api/v1/webhooks/test", headers=merchant["headers"]).status_code == 202
    assert rx.wait_for(1)
    for other in (f"http://localhost:{rx.port + 1}/webhook", "http://localhost:5432/", "http://127.0.0.1/"):
        r = _save(client, merchant, other)
        assert r.status_code == 400 and r.get_json()["error"]["description"] == REFUSED, other


def test_an_allowed_host_name_may_resolve_to_a_private_address(app, client, merchant, receiver, running_worker,
                                                               strict, monkeypatch, db):
    """Named in WEBHOOK_ALLOWED_HOSTS (any case), localhost (127.0.0.1 here) is saved and delivered
    to outside test mode; off the list, the same name is refused at saving and at delivery."""
    rx = receiver()
    url = f"http://LocalHost:{rx.port}/webhook"
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_HOSTS", config.allowed_hosts("localhost, test_merchant"))
    assert _save(client, merchant, url).status_code == 200
    assert client.post("/api/v1/webhooks/test", headers=merchant["headers"]).status_code == 202
    assert rx.wait_for(1)[0]["headers"]["Host"] == f"localhost:{rx.port}"

    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_HOSTS", config.allowed_hosts("test_merchant"))
    r = _save(client, merchant, url)
    assert r.status_code == 400 and r.get_json()["error"]["description"] == REFUSED
    client.post("/api/v1/webhooks/test", headers=merchant["headers"])
    refused = wait_until(lambda: db.one("SELECT response_body FROM webhook_logs WHERE merchant_id = %(m)s AND response_body = %(b)s", {"m": merchant["id"], "b": REFUSED}), message="a refused attempt")
    assert refused and len(rx.requests) == 1


# ---- the client's limits ------------------------------------------------------------------------

def test_delivery_keeps_only_the_start_of_a_response():
    """A merchant's huge, NUL-laden or endless answer is cut to 1,000 characters that PostgreSQL can
    store, and the attempt ends without reading the rest."""
    def huge():
        body = b"ok\x00" + b"x" * 1_000_000
        yield b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    def endless():
        yield b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        while True:
            yield b"1000\r\n" + b"y" * 4096 + b"\r\n"

    http = outbound.http_pool(2)
    for response, ok, code, start in [(huge, True, 200, "ok\ufffdxx"), (endless, False, 500, "yyy")]:
        ep = _Endpoint(response)
        try:
            got_ok, got_code, body = webhooks.post(http, _attempt(ep.url), allow_private=True)
        finally:
            ep.close()
        assert (got_ok, got_code) == (ok, code)
        assert body.startswith(start) and len(body) == outbound.RESPONSE_BODY_LIMIT and "\x00" not in body


@pytest.mark.parametrize("answer, expected", [
    (b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 2\r\n\r\nno", (False, 302, "no")),
    (b"HTTP/1.1 204 No Content\r\n\r\n", (True, 204, "")),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", (True, 200, "ok")),
], ids=["redirect", "no content", "chunked"])
def test_delivery_reuses_the_connection_and_does_not_follow_redirects(answer, expected):
    """Keep-alive to the merchant's endpoint across attempts, whatever the shape of its answer; a
    3xx is a failed attempt, not a hop to wherever it points (which the SSRF check never saw)."""
    ep = _Endpoint(lambda: iter([answer]))
    http = outbound.http_pool(2)
    try:
        results = [webhooks.post(http, _attempt(ep.url), allow_private=True) for _ in range(3)]
    finally:
        ep.close()
    assert results == [expected] * 3
    assert ep.connections == 1


def test_a_trickling_answer_ends_the_attempt_in_time(monkeypatch):
    """An endpoint that answers a byte at a time cannot hold a delivery thread: the body is read
    for ATTEMPT_SECONDS in all, then the attempt ends with what arrived."""
    def trickle():
        yield b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        while True:
            time.sleep(0.05)  # the endpoint is slow by design, not synchronisation
            yield b"z"

    monkeypatch.setattr(outbound, "ATTEMPT_SECONDS", 0.5)
    ep = _Endpoint(trickle)
    try:
        started = time.monotonic()
        ok, code, body = webhooks.post(outbound.http_pool(2), _attempt(ep.url), allow_private=True)
        took = time.monotonic() - started
    finally:
        ep.close()
    assert (ok, code) == (True, 200) and body and set(body) == {"z"}
    assert took < 3, took


def test_delivery_ignores_proxies_from_the_environment(monkeypatch):
    """The SSRF check vets the merchant's own address, so the worker connects there itself: an
    HTTP(S)_PROXY in its environment is not used (here it points nowhere)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ep = _Endpoint(lambda: iter([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]))
    try:
        assert webhooks.post(outbound.http_pool(2), _attempt(ep.url), allow_private=True) == (True, 200, "ok")
    finally:
        ep.close()
    assert ep.connections == 1
