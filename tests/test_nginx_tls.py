"""deploy/nginx-tls.conf, the TLS variant of deploy/nginx.conf: Debian's nginx accepts it, runs it
with a self-signed certificate in front of a real gunicorn (redirect from port 80, certificate
renewals over HTTP, HSTS, Secure session cookies with TRUST_PROXY), and it stays nginx.conf but
for its marked TLS part; the compose override docs/operations.md shows puts it in place."""
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, Process, free_port, wait_until

NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))
OPENSSL = shutil.which("openssl")
COMPOSE = shutil.which("docker-compose")
PLAIN_CONF = ROOT / "deploy" / "nginx.conf"
TLS_CONF = ROOT / "deploy" / "nginx-tls.conf"
HSTS = "max-age=31536000"


@pytest.fixture
def tools():
    # Part of the suite's contract, like tests/test_deploy.py: without the tools these fail, never skip.
    if NGINX is None:
        pytest.fail("nginx is not installed: apt-get install nginx (.ci/run does)")
    if OPENSSL is None:
        pytest.fail("openssl is not installed: apt-get install openssl")


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="gw-nginx-tls-"))
    os.chmod(path, 0o755)  # nginx's workers (nobody, when the tests run as root) read from it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def self_signed(directory):
    """A certificate for 127.0.0.1 and its key, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def render(directory, upstream, http_port, https_port):
    """deploy/nginx-tls.conf pointed at a local upstream, local ports, a self-signed certificate, a
    webroot of its own and temporary paths nginx may write without root."""
    cert, key = self_signed(directory)
    webroot = directory / "webroot"
    (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    os.chmod(webroot, 0o755)
    conf = TLS_CONF.read_text()
    temp = "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    for old, new in (("server api:8000;", f"server {upstream};"),
                     ("listen 80 default_server;", f"listen 127.0.0.1:{http_port} default_server;"),
                     ("listen 443 ssl default_server;", f"listen 127.0.0.1:{https_port} ssl default_server;"),
                     ("/etc/letsencrypt/live/pay.example.com/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/pay.example.com/privkey.pem", str(key)),
                     ("root /var/www/certbot;", f"root {webroot};"),
                     ("http {\n", "http {\n" + temp)):
        assert conf.count(old) == 1, f"deploy/nginx-tls.conf no longer has exactly one {old!r}"
        conf = conf.replace(old, new)
    path = directory / "nginx.conf"
    path.write_text(conf)
    return path, cert, webroot


def nginx_args(directory, conf, more=""):
    return [NGINX, "-p", str(directory), "-c", str(conf), "-g",
            f"pid {directory}/nginx.pid; error_log {directory}/error.log; {more}"]


def test_tls_conf_is_nginx_conf_but_for_its_tls_part():
    plain, tls = PLAIN_CONF.read_text(), TLS_CONF.read_text()
    tls_part = re.search(r"    # ---- TLS: the part that differs from nginx.conf ----\n.*?"
                         r"    # ---- end of the TLS part ----\n", tls, re.S)
    assert tls_part, "deploy/nginx-tls.conf lost its marked TLS part"
    head = "    server {\n        listen 80 default_server;\n        server_name _;\n"
    assert plain.count(head) == 1
    # The files' opening comments differ; everything from the first directive on must match.
    start = "worker_processes auto;"
    expected = plain[plain.index(start):].replace(head, tls_part.group(0))
    assert tls[tls.index(start):] == expected, (
        "deploy/nginx-tls.conf must be deploy/nginx.conf with its port-80 server head replaced by the "
        "TLS part: make the change to nginx.conf there too")


def test_debian_nginx_accepts_the_tls_conf(tools, workdir):
    conf, _, _ = render(workdir, "127.0.0.1:9", free_port(), free_port())
    run = subprocess.run([*nginx_args(workdir, conf), "-t"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "test is successful" in run.stderr


@pytest.mark.parametrize("trust_proxy, secure", [("1", True), ("0", False)])
def test_gateway_behind_tls_nginx(tools, workdir, start_api, log_dir, trust_proxy, secure):
    # PUBLIC_URL stays http:// (the test's own address), so only X-Forwarded-Proto can make the
    # cookie Secure: it does exactly when the application believes the proxy.
    api = start_api(TRUST_PROXY=trust_proxy)
    http_port, https_port = free_port(), free_port()
    conf, cert, webroot = render(workdir, f"127.0.0.1:{api.port}", http_port, https_port)
    nginx = Process(nginx_args(workdir, conf, "daemon off;"), dict(os.environ), "nginx-tls", log_dir)
    try:
        wait_until(lambda: _answers(f"https://127.0.0.1:{https_port}/health", cert, nginx),
                   timeout=10, message="nginx with TLS")
        http, https = f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"

        # Port 80 redirects, method and query kept...
        r = requests.post(http + "/api/v1/orders?x=1", json={"amount": 100}, allow_redirects=False, timeout=5)
        assert r.status_code == 308
        assert r.headers["Location"] == "https://127.0.0.1/api/v1/orders?x=1"
        # ...but still serves certificate renewals.
        (webroot / ".well-known" / "acme-challenge" / "token-1").write_text("proof-1")
        os.chmod(webroot / ".well-known" / "acme-challenge" / "token-1", 0o644)
        r = requests.get(http + "/.well-known/acme-challenge/token-1", allow_redirects=False, timeout=5)
        assert (r.status_code, r.text) == (200, "proof-1")

        r = requests.get(https + "/health", verify=str(cert), timeout=5)
        assert r.status_code == 200 and r.json()["status"] in ("healthy", "degraded")
        assert r.headers["Strict-Transport-Security"] == HSTS

        r = requests.get(https + "/login", verify=str(cert), timeout=5)
        assert r.status_code == 200
        assert r.headers["Strict-Transport-Security"] == HSTS
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("session=")
        assert ("; Secure" in cookie) is secure, cookie
    finally:
        nginx.stop()


def _answers(url, cert, nginx):
    assert nginx.alive(), nginx.output()
    try:
        return requests.get(url, verify=str(cert), timeout=2).status_code in (200, 503)
    except requests.RequestException:
        return False


def test_the_documented_override_serves_the_tls_conf_on_80_and_443(workdir):
    if COMPOSE is None:
        pytest.fail("docker-compose is not installed: apt-get install docker-compose (.ci/run does)")
    doc = (ROOT / "docs" / "operations.md").read_text()
    override = re.search(r"^( *)```yaml\n(\1services:\n.*?)^\1```", doc, re.S | re.M).group(2)
    path = workdir / "docker-compose.override.yml"
    path.write_text(textwrap.dedent(override))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    run = subprocess.run([COMPOSE, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                          "-f", str(path), "config"], env=dict(env, SECRET_KEY="x", HTTP_PORT="80",
                                                                PUBLIC_URL="https://pay.example.com"),
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    services = yaml.safe_load(run.stdout)["services"]
    nginx = services["nginx"]
    mounts = [v.split(":")[:2] for v in nginx["volumes"]]  # docker-compose v1 writes source:target:mode
    assert [source for source, target in mounts if target == "/etc/nginx/nginx.conf"] == [str(TLS_CONF)]
    mounts = dict((target, source) for source, target in mounts)
    assert {"/etc/letsencrypt", "/var/www/certbot"} <= mounts.keys()
    assert sorted((int(p["published"]), int(p["target"])) for p in nginx["ports"]) == [(80, 80), (443, 443)]
    assert {services[s]["environment"]["PUBLIC_URL"] for s in ("api", "worker")} == {"https://pay.example.com"}
    assert services["api"]["environment"]["TRUST_PROXY"] == "1"
