"""Issue 3's API benchmark: POST /api/v1/orders and POST /api/v1/payments against a bare Flask
endpoint doing one INSERT, side by side, same gunicorn settings, same PostgreSQL.

    .venv/bin/python bench/api_bench.py --rounds 3 --seconds 10

does everything and rewrites bench/results/api.md:

1. database: a fresh `bench_api` on DATABASE_URL's server, or on the embedded one (app.embedded),
   schema via `flask init-db`; a pool of orders for the payments (SQL, status "created");
2. servers: gunicorn for the gateway (LOG_LEVEL=WARNING), for the gateway with LOG_LEVEL=INFO
   (to price the request log) and for bench/bare_app.py, all from app.launcher.gunicorn_cmd, so
   workers, threads and worker class are the same;
3. checks: every target answers 201; two payments for one "created" order are both accepted
   (pending payments do not change the order), a payment for a "paid" order is refused;
4. throughput: wrk (bench/wrk/post.lua), a warm-up per target, then `--rounds` rounds of
   bare, orders, payments (and the extras) `--seconds` each, in `--slice` slices that take turns,
   for every gunicorn configuration of `--configs` (all servers up, all alternated); medians and
   ratios, with the CPU the server processes and the PostgreSQL backends used per request;
5. latency: a constant-rate generator (asyncio on raw keep-alive sockets, open loop: latency
   counts from the request's scheduled time, so a stalled server is not hidden) at half the bare
   median;
6. profile: py-spy on the gateway's workers under wrk load on POST /orders (flame graph
   bench/results/orders-profile.svg, CPU and wall-clock breakdowns) and POST /payments.

Needs wrk (Debian: apt-get install -y wrk; installed when missing and root) and py-spy
(pip; installed into this Python when missing; without it the profile is skipped).
"""
import argparse
import asyncio
import gc
import collections
import datetime
import http.client
import importlib.util
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
if VENV_PY.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and not os.environ.get("BENCH_NO_REEXEC"):
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])  # the project's venv has Flask, gunicorn, psycopg
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402  (a pgserver dependency)
import psycopg  # noqa: E402

from app import launcher  # noqa: E402
from app.config import TEST_MERCHANT  # noqa: E402
from app.db import libpq_url  # noqa: E402
from app.ids import new_id  # noqa: E402
from common import wal_bytes  # noqa: E402

PY = sys.executable
LUA = ROOT / "bench" / "wrk" / "post.lua"
RESULTS = ROOT / "bench" / "results"
DB_NAME = "bench_api"
KEY, SECRET = TEST_MERCHANT["api_key"], TEST_MERCHANT["api_secret"]
ORDER_BODY = '{"amount":50000,"currency":"INR","receipt":"bench"}'
PAYMENT_BODY = '{"order_id":"%ORDER%","method":"upi","vpa":"bench@okbank"}'
AUTH_HEADERS = {"X-Api-Key": KEY, "X-Api-Secret": SECRET}
HOOK_MERCHANT = {"id": "6f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", "api_key": "key_bench_hooks",
                 "api_secret": "secret_bench_hooks_0123456789"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---- tools ------------------------------------------------------------------------------------

def ensure_wrk():
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk missing: apt-get install -y wrk")
        if subprocess.call(["apt-get", "install", "-y", "wrk"], stdout=subprocess.DEVNULL) != 0:
            subprocess.call(["apt-get", "update"], stdout=subprocess.DEVNULL)
            subprocess.check_call(["apt-get", "install", "-y", "wrk"], stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (Debian: apt-get install -y wrk)")
    return shutil.which("wrk")


def ensure_pyspy():
    exe = Path(PY).parent / "py-spy"
    if exe.exists():
        return str(exe)
    if shutil.which("py-spy"):
        return shutil.which("py-spy")
    log("py-spy missing: pip install py-spy")
    if subprocess.call([PY, "-m", "pip", "install", "--quiet", "py-spy"]) == 0 and exe.exists():
        return str(exe)
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- database ---------------------------------------------------------------------------------

def server_url():
    if os.environ.get("DATABASE_URL"):
        return libpq_url(os.environ["DATABASE_URL"]), "DATABASE_URL"
    from app.embedded import ensure_database_url

    # Counted as a user of the embedded server: it is not stopped under us by another launcher.
    return libpq_url(ensure_database_url(stop_with_last_user=True)), "embedded (app.embedded, .data/pg)"


RUN_LOCK = 7240888  # advisory lock on the admin database: one api_bench run at a time per server


def run_lock(url):
    """Held for the whole run: a second api_bench started meanwhile would drop bench_api under this one."""
    c = psycopg.connect(url, autocommit=True)
    if not c.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK,)).fetchone()[0]:
        sys.exit("another bench/api_bench.py run is using this PostgreSQL server (advisory lock held); try later")
    return c


def fresh_database(url):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB_NAME}")
    bench_url = libpq_url(url, database=DB_NAME)
    env = base_env(bench_url, SEED_TEST_MERCHANT="true")  # the benchmarks use the test merchant
    subprocess.run([PY, "-m", "flask", "--app", "app", "init-db"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return bench_url


def pg_settings(url):
    names = ["server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method",
             "full_page_writes", "commit_delay", "max_connections", "work_mem"]
    with psycopg.connect(url) as c:
        return {n: c.execute(f"SHOW {n}").fetchone()[0] for n in names}


def make_orders(url, n, merchant_id=TEST_MERCHANT["id"]):
    ids = [new_id("order_") for _ in range(n)]
    with psycopg.connect(url) as c:
        c.execute("INSERT INTO orders (id, merchant_id, amount, currency, receipt) "
                  "SELECT unnest(%s::text[]), %s, 50000, 'INR', 'bench-pool'", (ids, merchant_id))
    return ids


class OrderPool:
    """Pre-created orders for the payments targets, each paid once: an order takes one payment in
    flight at a time and no worker settles them here, so every run gets orders not used before
    (topped up by SQL between runs when they run low)."""

    MAX_RPS = 6000  # more payments per second than this machine class serves, to size a run's share

    def __init__(self, url, path, n, merchant_id=TEST_MERCHANT["id"]):
        self.url, self.path, self.merchant_id = url, Path(path), merchant_id
        self.ids, self.next = [], 0
        self._grow(n)

    def _grow(self, n):
        self.ids += make_orders(self.url, n, self.merchant_id)

    def take(self, n):
        """n unused order ids, now used."""
        if len(self.ids) - self.next < n:
            self._grow(max(n, len(self.ids)))
        out = self.ids[self.next:self.next + n]
        self.next += n
        return out

    def for_run(self, seconds):
        """Write the file of unused orders for a wrk run of `seconds`; call used() after it."""
        need = int(seconds * self.MAX_RPS)
        if len(self.ids) - self.next < need:
            self._grow(max(need, len(self.ids)))
        self.path.write_text("\n".join(self.ids[self.next:self.next + need]) + "\n")

    def used(self, n):
        self.next += n


def make_hook_merchant(url):
    """A second merchant, with a webhook URL: its payments also write the payment.created event
    (a webhook_logs row and a delivery job) in the payment's transaction. Nothing listens there and
    no worker runs: the rows just stay pending."""
    with psycopg.connect(url) as c:
        c.execute("INSERT INTO merchants (id, name, email, api_key, api_secret, webhook_url, webhook_secret) "
                  "VALUES (%s, 'Bench hooks', 'hooks@bench.invalid', %s, %s, 'http://127.0.0.1:9/bench-hook', %s)",
                  (HOOK_MERCHANT["id"], HOOK_MERCHANT["api_key"], HOOK_MERCHANT["api_secret"],
                   "whsec_" + "A" * 43 + "="))


def settle_database(url):
    """Before the latency runs: pay off the throughput rounds' debt (autovacuum of the tables they
    filled), so that it does not land on whichever target runs first. No CHECKPOINT: right after
    one, the first change to every page writes a full-page image to the WAL, which hit the
    payments target far harder than the bare one while ids were fully random and every payment
    changed a random index page (measured then: payments p99 283-371 ms in the two rounds after
    it, 12-57 ms later; app/ids.py now puts the minute first)."""
    t0 = time.monotonic()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM (ANALYZE)")
    log(f"database settled (VACUUM ANALYZE) in {time.monotonic() - t0:.1f} s")


WAL_PREP_MB = 512  # more than the measurements of a 5-round run write (410 MB measured)


def wal_state(url):
    """(WAL position in bytes, segment files in pg_wal or None without the right to list them)."""
    with psycopg.connect(url, autocommit=True) as c:
        lsn = wal_bytes(c)
        try:
            files = c.execute("SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'").fetchone()[0]
        except psycopg.Error:
            files = None
    return lsn, files


def prepare_wal(url, mb=WAL_PREP_MB):
    """Give the server the recycled WAL segments a server that has been running has. A young
    cluster (such as the embedded one started for this run) creates each new 16 MB segment in the
    commit path: the committing backend fills it with zeros and fsyncs it while every other
    commit waits (seen here: commits waiting on WALInitWrite/WALInitSync through a 50 ms stall).
    A payment writes ~1 KB of WAL, the bare INSERT 180 B, so the payments target crosses segment
    boundaries five times as often and would take most of those stalls. A checkpoint renames used
    segments into future ones instead, as many as its estimate of the WAL per checkpoint says: so
    write `mb` MB of WAL into a throwaway table, drop it and CHECKPOINT. The warm-ups that follow
    take the full-page images of the first changes after that checkpoint."""
    t0 = time.monotonic()
    before = wal_state(url)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE bench_wal_fill (pad text)")
        while wal_bytes(c) - before[0] < mb << 20:
            c.execute("INSERT INTO bench_wal_fill SELECT repeat('x', 900) FROM generate_series(1, 20000)")
        c.execute("DROP TABLE bench_wal_fill")
        try:
            c.execute("CHECKPOINT")
            done = "CHECKPOINT"
        except psycopg.Error as e:  # needs superuser or pg_checkpoint: then the next timed checkpoint does it
            done = f"no CHECKPOINT ({e.sqlstate}: {str(e).strip()[:80]})"
    after = wal_state(url)
    log(f"WAL prepared: {(after[0] - before[0]) >> 20} MB written, {done}, segment files {before[1]} -> {after[1]}, "
        f"{time.monotonic() - t0:.1f} s")
    return {"mb": (after[0] - before[0]) >> 20, "done": done}


def db_counts(url):
    with psycopg.connect(url) as c:
        q = lambda sql: c.execute(sql).fetchone()[0]  # noqa: E731
        return {"orders": q("SELECT count(*) FROM orders"), "payments": q("SELECT count(*) FROM payments"),
                "jobs": q("SELECT count(*) FROM jobs"), "idempotency_keys": q("SELECT count(*) FROM idempotency_keys"),
                "bench_bare": q("SELECT count(*) FROM bench_bare"),
                "size": q(f"SELECT pg_size_pretty(pg_database_size('{DB_NAME}'))")}


def backend_procs():
    """The PostgreSQL backends serving bench_api (their command line names the database)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith("postgres:") and f" {DB_NAME} " in cmd[0]:
            out.append(p)
    return out


# ---- servers ----------------------------------------------------------------------------------

def base_env(database_url, **extra):
    env = dict(os.environ)
    for k in ("ACCESS_LOG", "TEST_MERCHANT_WEBHOOK_URL", "TEST_MODE"):
        env.pop(k, None)
    env.update(DATABASE_URL=database_url, PYTHONUNBUFFERED="1", SECRET_KEY="bench-secret-key")
    env.update(extra)
    return env


def gunicorn_cmd(env, root):
    """The gunicorn command of the launcher in `root` (another revision's tree may build it differently)."""
    if root == ROOT:
        return launcher.gunicorn_cmd(env)
    code = "import json, os; from app.launcher import gunicorn_cmd; print(json.dumps(gunicorn_cmd(dict(os.environ))))"
    return json.loads(subprocess.check_output([sys.executable, "-c", code], env=env, cwd=root))


class Server:
    def __init__(self, name, target, env, workers, threads, logdir, root=None):
        self.name, self.port, self.root = name, free_port(), root or ROOT
        self.env = dict(env, PORT=str(self.port), WEB_CONCURRENCY=str(workers), GUNICORN_THREADS=str(threads))
        cmd = gunicorn_cmd(self.env, self.root)
        assert cmd[3] == "app:create_app()", cmd
        cmd[3] = target
        self.cmd = cmd
        self.logfile = open(Path(logdir) / f"{name}.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.logfile.flush()
                tail = Path(self.logfile.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited:\n{tail}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/")
                c.getresponse().read()
                c.close()
                if len(self.ps.children()) >= int(self.env["WEB_CONCURRENCY"]):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready on :{self.port}")

    def procs(self):
        return [self.ps, *self.ps.children(recursive=True)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()


def cpu_seconds(procs):
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class CpuMeter:
    """CPU seconds used by a server's processes, the bench database's backends and our children (wrk)."""

    def __init__(self, server):
        self.server = server
        self.app_procs = server.procs()
        self.pg_before = {p.pid: (p, cpu_seconds([p])) for p in backend_procs()}
        self.app0 = cpu_seconds(self.app_procs)
        self.child0 = _children_cpu()

    def stop(self):
        app = cpu_seconds(self.app_procs) - self.app0
        child = _children_cpu() - self.child0
        pg = 0.0
        for p in backend_procs():
            before = self.pg_before.get(p.pid)
            pg += cpu_seconds([p]) - (before[1] if before else 0.0)
        return app, pg, child


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- targets ----------------------------------------------------------------------------------

class Target:
    def __init__(self, name, server, path, body, auth=False, orders_file=None, idem=False, note="", key=KEY,
                 secret=SECRET, reads=False):
        self.name, self.server, self.path, self.body = name, server, path, body
        self.auth, self.orders_file, self.idem, self.note, self.reads = auth, orders_file, idem, note, reads
        self.key, self.secret = key, secret

    def wrk_env(self):
        env = dict(os.environ, BENCH_PATH=self.path, BENCH_BODY=self.body, BENCH_AUTH="1" if self.auth else "0",
                   BENCH_IDEM="1" if self.idem else "0", BENCH_READS="1" if self.reads else "0", BENCH_NONCE=f"{os.getpid()}{time.time_ns()}",
                   BENCH_KEY=self.key, BENCH_SECRET=self.secret)
        if self.orders_file:
            env["BENCH_ORDERS_FILE"] = str(self.orders_file.path)
        return env


def run_wrk(wrk, target, seconds, connections, threads):
    if target.orders_file:
        target.orders_file.for_run(seconds)
    meter = CpuMeter(target.server)
    t0 = time.monotonic()
    out = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
                          "-s", str(LUA), f"http://127.0.0.1:{target.server.port}{target.path}"],
                         env=target.wrk_env(), capture_output=True, text=True)
    wall = time.monotonic() - t0
    app_cpu, pg_cpu, wrk_cpu = meter.stop()
    m = re.search(r"^BENCH_JSON (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed on {target.name}: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    if target.orders_file:  # requests still on the wire at the end may have paid an order too
        target.orders_file.used(r["requests"] + connections)
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    n = max(r["requests"], 1)
    r.update(app_cpu_ms=app_cpu * 1000 / n, pg_cpu_ms=pg_cpu * 1000 / n, wrk_cpu_ms=wrk_cpu * 1000 / n,
             wall=wall, load=os.getloadavg()[0])
    return r


def in_turns(items, slices, first=0):
    """(slice number, item): every item once per slice, their order reversed every other slice
    (numbered from `first`), so that a slow spell of the shared machine, which lasts seconds to tens
    of seconds, falls on all of them instead of on whichever one was running."""
    for k in range(first, first + slices):
        for item in items if k % 2 == 0 else items[::-1]:
            yield k, item


def slicing(args):
    """(slices, seconds each) for a round's --seconds: wrk takes whole seconds."""
    length = max(1, min(args.slice, args.seconds))
    return max(1, args.seconds // length), length


def combine(runs):
    """One round of a target from its slices: requests and CPU summed over the slices (req/s and CPU
    per request as if one run), closed-loop latency percentiles the median over the slices."""
    n = max(sum(x["requests"] for x in runs), 1)
    out = {"requests": n, "duration_us": sum(x["duration_us"] for x in runs),
           "errors": sum(x["errors"] for x in runs), "load": runs[-1]["load"]}
    out["rps"] = n / (out["duration_us"] / 1e6)
    for k in ("app_cpu_ms", "pg_cpu_ms", "wrk_cpu_ms"):
        out[k] = sum(x[k] * x["requests"] for x in runs) / n
    for k in ("lat_p50_us", "lat_p99_us"):
        out[k] = statistics.median(x[k] for x in runs)
    return out


def check(c_port, method, path, body=None, auth=True, expect=201, auth_headers=AUTH_HEADERS):
    c = http.client.HTTPConnection("127.0.0.1", c_port, timeout=10)
    headers = {"Content-Type": "application/json", **(auth_headers if auth else {})}
    c.request(method, path, body=body, headers=headers)
    resp = c.getresponse()
    data = resp.read()
    c.close()
    if resp.status != expect:
        raise RuntimeError(f"{method} {path} {body}: {resp.status} {data[:300]!r} (expected {expect})")
    return json.loads(data)


def sanity_checks(ours, bare, bench_url, orders, hook_orders):
    """Every target answers 201; a second payment of an order in flight is refused; a paid order is refused."""
    notes = []
    check(bare.port, "POST", "/bare", ORDER_BODY, auth=False)
    check(ours.port, "POST", "/api/v1/orders", ORDER_BODY)
    oid, paid = orders.take(2)
    p1 = check(ours.port, "POST", "/api/v1/payments", PAYMENT_BODY.replace("%ORDER%", oid))
    err = check(ours.port, "POST", "/api/v1/payments", PAYMENT_BODY.replace("%ORDER%", oid), expect=409)
    assert p1["status"] == "pending"
    notes.append(f"a second `POST /payments` for a pool order ({oid}) while {p1['id']} is `pending` is refused: "
                 f"409 \"{err['error']['description']}\", so every payment of the payments targets takes an "
                 "order of the pool not used before")
    with psycopg.connect(bench_url) as c:
        c.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (paid,))
    err = check(ours.port, "POST", "/api/v1/payments", PAYMENT_BODY.replace("%ORDER%", paid), expect=400)
    notes.append(f"a payment for an order set to `paid` is refused: 400 `{err['error']['code']}` "
                 f"\"{err['error']['description']}\"")
    hook_order = hook_orders.take(1)[0]
    p3 = check(ours.port, "POST", "/api/v1/payments", PAYMENT_BODY.replace("%ORDER%", hook_order),
               auth_headers={"X-Api-Key": HOOK_MERCHANT["api_key"], "X-Api-Secret": HOOK_MERCHANT["api_secret"]})
    with psycopg.connect(bench_url) as c:
        events = c.execute("SELECT event FROM webhook_logs WHERE payload->'data'->'payment'->>'id' = %s",
                           (p3["id"],)).fetchall()
    assert events == [("payment.created",)], events
    notes.append(f"a payment of the merchant with a webhook URL ({p3['id']}) wrote its payment.created event "
                 "(one webhook_logs row) in its transaction")
    return notes


# ---- constant-rate latency --------------------------------------------------------------------

GENERATOR_CONNECTIONS = 32


def constant_rate(target, rate, seconds, nconn=GENERATOR_CONNECTIONS):
    """Open loop: request i is due at t0 + i/rate; its latency runs from that moment to the end of
    the response (so queueing behind a slow request, or for a free connection, counts). Also
    reports the plain service time. asyncio on raw keep-alive sockets with the requests built
    beforehand: the generator shares the two cores with the servers, so it must cost little."""
    try:
        import uvloop
        new_loop = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    n_total = int(rate * seconds)
    order_ids = target.orders_file.take(n_total) if target.orders_file else None
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Content-Type": "application/json",
                                                 **(AUTH_HEADERS if target.auth else {})}.items())

    def request(i):
        body = target.body
        if target.orders_file:
            body = body.replace("%ORDER%", order_ids[i])
        return (f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n{body}").encode()

    requests = [request(i) for i in range(n_total)]
    samples = []

    async def connection(queue, t0):
        reader = writer = None
        while True:
            i = await queue.get()
            if i is None:
                break
            due = t0 + i / rate
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", target.server.port)
                writer.write(requests[i])
                status_line = await reader.readuntil(b"\r\n")
                headers = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", headers).group(1))
                await reader.readexactly(length)
                status = int(status_line.split()[1])
                if re.search(rb"(?i)connection:\s*close", headers):
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, AttributeError, ValueError):
                status = -1
                if writer is not None:
                    writer.close()
                reader = writer = None
            end = time.perf_counter()
            samples.append((end - due, end - start, status, start - due, end - t0))
        if writer is not None:
            writer.close()

    async def run():
        queue = asyncio.Queue()
        t0 = time.perf_counter() + 0.3
        conns = [asyncio.create_task(connection(queue, t0)) for _ in range(nconn)]
        for i in range(n_total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(i)
        for _ in conns:
            queue.put_nowait(None)
        await asyncio.gather(*conns)

    loop = new_loop()
    # No garbage collection while the clock runs: by the later rounds this process holds hundreds of
    # thousands of pooled samples, and a full collection over them stalls the event loop for tens
    # of milliseconds, which would be counted as the servers' latency. A run's own garbage waits.
    gc.collect()
    gc.disable()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
        gc.enable()
    elapsed = max(s[4] for s in samples) if samples else seconds
    return {"samples": samples, "elapsed": elapsed, "errors": sum(1 for s in samples if not 200 <= s[2] < 300)}


def latency_phase(args, targets, rates):
    """Constant-rate runs, `--latency-rounds` rounds; samples pooled per target. Within a round the
    targets take turns (in_turns) in slices of `--latency-slice` seconds."""
    samples = {t.name: [] for t in targets}
    per_round = {t.name: [] for t in targets}
    slices = max(1, round(args.latency_seconds / args.latency_slice))
    seconds = args.latency_seconds / slices
    for r in range(args.latency_rounds):
        outs = {t.name: [] for t in targets}
        for k, t in in_turns(targets, slices, first=r * slices):
            outs[t.name].append(constant_rate(t, rates[t.name], seconds))
        for t in targets:
            ss = [x for out in outs[t.name] for x in out["samples"]]
            samples[t.name] += ss
            lat = [x[0] * 1000 for x in ss]
            achieved = len(ss) / sum(out["elapsed"] for out in outs[t.name])
            errors = sum(out["errors"] for out in outs[t.name])
            # which answers the errors were (-1: the connection failed), to tell a refusal from a stall
            statuses = collections.Counter(x[2] for x in ss if not 200 <= x[2] < 300)
            per_round[t.name].append({"achieved": achieved, "errors": errors, "p50": pct(lat, 50),
                                      "p99": pct(lat, 99), "max": max(lat), "n": len(lat), "load": os.getloadavg()[0]})
            worst = max(range(slices), key=lambda i: max(x[0] for x in outs[t.name][i]["samples"]))
            log(f"latency round {r + 1} {t.name} @{rates[t.name]}/s: p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
                f"achieved {achieved:.0f}/s, errors {errors}{dict(statuses) if statuses else ''}; slowest {max(lat):.0f} ms in slice {worst + 1} of {slices}, "
                f"{sum(1 for v in lat if v > 50)} over 50 ms")
    res = {}
    for name, ss in samples.items():
        lat = [s[0] * 1000 for s in ss]
        svc = [s[1] * 1000 for s in ss]
        res[name] = {"rate": rates[name], "n": len(ss), "errors": sum(1 for s in ss if not 200 <= s[2] < 300),
                     "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": max(lat),
                     "svc_p50": pct(svc, 50), "svc_p99": pct(svc, 99), "rounds": per_round[name]}
    return res


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


# ---- profile ----------------------------------------------------------------------------------

# Buckets for a request's stack: the first bucket with a matching frame wins, so the specific ones
# come first. py-spy writes a frame as "Class.function (package/module.py:line)".
BUCKETS = [
    ("commit (COMMIT round trip)", [r"^Connection\.commit \(app/pg\.py"]),
    ("connection checkout", [r"^Pool\.connect \(app/pg\.py", r"^conn \(app/db\.py"]),
    ("teardown: rollback + return to pool", [r"^close_conn \(app/db\.py"]),
    ("auth (merchant lookup, cached or SELECT)", [r"^authenticate \(app/auth\.py"]),
    ("marshmallow load (validation)", [r"^load \(app/schemas\.py"]),
    ("orders.create (INSERT … RETURNING)", [r"^create \(app/orders\.py"]),
    ("payments.create (one statement: order check, payment, job)", [r"^create \(app/payments\.py"]),
    ("marshmallow dump (response)", [r"^Schema\.dump \(marshmallow/"]),
    ("json body parse", [r"^json_body \(app/api/"]),
    ("idempotency wrapper (response JSON, Response object)", [r"\(app/idempotency\.py"]),
    ("request log / logging", [r"\(logging/__init__\.py", r"^_log \(app/__init__\.py"]),
    ("Flask/Werkzeug: routing, request/response objects, contexts", [r"\((flask|werkzeug)/"]),
    ("gunicorn: HTTP parsing, socket I/O", [r"\(gunicorn/"]),
]
BUCKET_ORDER = [b for b, _ in BUCKETS] + ["other (in a request)", "(not in a request: gunicorn main loop, accept, pool threads)"]
_BUCKET_RE = [(b, [re.compile(p) for p in ps]) for b, ps in BUCKETS]


def parse_collapsed(path):
    stacks = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        frames = [f.strip() for f in stack.split(";")]
        stacks.append((frames, int(n)))
    return stacks


_REQUEST_FRAME = re.compile(r"^(\w+\.)?(handle|handle_request) \(gunicorn/workers/gthread\.py")


def _is_request(frames):
    """A gthread pool thread serving a connection (parsing, the app, writing the response)."""
    return any(_REQUEST_FRAME.match(f) for f in frames)


def classify(stacks):
    """Samples per bucket (the first bucket in BUCKETS with a frame in the stack), for the stacks of worker threads
    that are handling a request; the rest (main loop, idle threads) is counted apart."""
    buckets = collections.Counter()
    total = 0
    for frames, n in stacks:
        total += n
        if not _is_request(frames):
            buckets["(not in a request: gunicorn main loop, accept, pool threads)"] += n
            continue
        name = "other (in a request)"
        for bucket, patterns in _BUCKET_RE:  # in order of priority: the specific before the generic
            if any(p.search(f) for f in frames for p in patterns):
                name = bucket
                break
        buckets[name] += n
    return buckets, total


def self_by_package(stacks):
    """Samples by the package of the leaf frame (self time)."""
    c = collections.Counter()
    total = 0
    for frames, n in stacks:
        total += n
        m = re.search(r"\((.*?):\d+\)$", frames[-1] if frames else "")
        path = m.group(1) if m else "?"
        pkg = path.split("/")[0].removesuffix(".py")
        if path == "app/pg.py":
            pkg = "app/pg.py (SQL layer)"
        elif pkg == "app":
            pkg = "app (ours, rest)"
        c[pkg] += n
    return c, total


def top_functions(stacks, n=25):
    """Inclusive share of the request-thread samples per function (line numbers dropped, each
    function counted once per stack), leaving out the frames every request passes through."""
    c = collections.Counter()
    total = 0
    for frames, k in stacks:
        if not _is_request(frames):
            continue
        total += k
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames if not f.startswith("process ")}:
            c[f] += k
    skip = re.compile(r"\((threading|concurrent/futures/thread|<frozen runpy>)")
    rows = [(f, k / max(total, 1) * 100) for f, k in c.most_common() if not skip.search(f)]
    return [(f, share) for f, share in rows if share < 90][:n], total


def profile(pyspy, wrk, target, seconds, connections, wrk_threads, out, fmt, mode, rate=200):
    """wrk load on the target while py-spy samples the target's gunicorn workers."""
    if target.orders_file:
        target.orders_file.for_run(seconds + 4)
    load = subprocess.Popen([wrk, "-t", str(wrk_threads), "-c", str(connections), "-d", f"{seconds + 4}s",
                             "-s", str(LUA), f"http://127.0.0.1:{target.server.port}{target.path}"],
                            env=target.wrk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    cmd = [pyspy, "record", "--pid", str(target.server.proc.pid), "--subprocesses", "--rate", str(rate),
           "--duration", str(seconds), "--format", fmt, "--output", str(out)]
    cmd.append({"gil": "--gil", "idle": "--idle"}[mode])
    res = subprocess.run(cmd, capture_output=True, text=True)
    load.wait()
    if target.orders_file:  # wrk's count is not read here: all the orders it was given are spent
        target.orders_file.used(int((seconds + 4) * OrderPool.MAX_RPS))
    if res.returncode != 0:
        raise RuntimeError(f"py-spy failed: {res.stderr[-2000:]}")


# ---- the run ----------------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def start_config(args, bench_url, orders_file, workers, threads, tmp, headline):
    """The servers of one gunicorn configuration and the targets on them."""
    env = base_env(bench_url, LOG_LEVEL="WARNING")
    label = f"{workers}x{threads}"
    servers = {
        "bare": Server(f"bare-{label}", "bench.bare_app:create_app()", env, workers, threads, tmp),
        "ours": Server(f"ours-{label}", "app:create_app()", env, workers, threads, tmp),
    }
    extras = args.extras and headline
    if extras:
        servers["ours_info"] = Server(f"ours_info-{label}", "app:create_app()", dict(env, LOG_LEVEL="INFO"),
                                      workers, threads, tmp)
    cfg = {"workers": workers, "threads": threads, "label": label, "headline": headline, "servers": servers,
           "cmd": " ".join(servers["ours"].cmd), "rounds": [], "checks": [], "latency": {}, "profile": None}
    targets = [
        Target("bare", servers["bare"], "/bare", ORDER_BODY, note="bench/bare_app.py: JSON body, one INSERT, commit"),
        Target("orders", servers["ours"], "/api/v1/orders", ORDER_BODY, auth=True, note="POST /api/v1/orders"),
        Target("payments", servers["ours"], "/api/v1/payments", PAYMENT_BODY, auth=True, orders_file=orders_file,
               note="POST /api/v1/payments, UPI, each for a pre-created order of its own"),
    ]
    if extras:
        targets += [
            Target("orders+idem", servers["ours"], "/api/v1/orders", ORDER_BODY, auth=True, idem=True,
                   note="extra: POST /api/v1/orders with a fresh Idempotency-Key each time"),
            Target("orders@INFO", servers["ours_info"], "/api/v1/orders", ORDER_BODY, auth=True,
                   note="extra: POST /api/v1/orders, LOG_LEVEL=INFO (one log line per request, to a file)"),
            Target("payments+reads", servers["ours"], "/api/v1/payments", PAYMENT_BODY, auth=True,
                   orders_file=orders_file, reads=True,
                   note="extra: POST /api/v1/payments alternating with GET /api/v1/orders/{id} of the order just paid "
                        "(a read: its transaction ends in a ROLLBACK); req/s counts both"),
            Target("payments+hook", servers["ours"], "/api/v1/payments", PAYMENT_BODY, auth=True,
                   orders_file=args.hook_orders, key=HOOK_MERCHANT["api_key"], secret=HOOK_MERCHANT["api_secret"],
                   note="extra: POST /api/v1/payments for a merchant with a webhook URL (the payment.created event "
                        "is written in the payment's transaction)"),
        ]
    cfg["targets_obj"] = targets
    cfg["targets"] = [(t.name, t.note) for t in targets]
    return cfg


def run_configs(args, wrk, bench_url, orders_file, configs, tmp):
    """Start every configuration's servers, then alternate all targets of all configurations in each
    round (so configurations are compared under the same background load, too); then latency and
    profile on the headline configuration."""
    cfgs = []
    try:
        for i, (workers, threads) in enumerate(configs):
            cfgs.append(start_config(args, bench_url, orders_file, workers, threads, tmp, i == 0))
        for cfg in cfgs:
            for s in cfg["servers"].values():
                s.wait_ready()
            log(f"config {cfg['label']}: servers up", {k: s.port for k, s in cfg["servers"].items()})
        head = cfgs[0]
        head["checks"] = sanity_checks(head["servers"]["ours"], head["servers"]["bare"], bench_url, orders_file,
                                      args.hook_orders)
        head["wal_prep"] = prepare_wal(bench_url)
        for cfg in cfgs:
            for t in cfg["targets_obj"]:
                log(f"warm-up {cfg['label']} {t.name} {args.warmup}s")
                run_wrk(wrk, t, args.warmup, args.connections, args.wrk_threads)
        head["wal_start"] = wal_state(bench_url)
        slices, length = slicing(args)
        for r in range(args.rounds):
            parts = [{t.name: [] for t in cfg["targets_obj"]} for cfg in cfgs]
            every = [(part, t) for cfg, part in zip(cfgs, parts) for t in cfg["targets_obj"]]
            for _, (part, t) in in_turns(every, slices):
                part[t.name].append(run_wrk(wrk, t, length, args.connections, args.wrk_threads))
            for cfg, part in zip(cfgs, parts):
                row = {name: combine(runs) for name, runs in part.items()}
                for name, x in row.items():
                    log(f"round {r + 1} {cfg['label']} {name}: {x['rps']:.0f} req/s, errors {x['errors']}, "
                        f"app {x['app_cpu_ms']:.2f} ms/req, pg {x['pg_cpu_ms']:.2f} ms/req, load {x['load']:.1f}")
                cfg["rounds"].append(row)
        for cfg in cfgs:
            targets = cfg["targets_obj"]
            med = cfg["median"] = {t.name: median([row[t.name]["rps"] for row in cfg["rounds"]]) for t in targets}
            rate = cfg["latency_rate"] = args.latency_rate or max(1, round(med["bare"] / 2))
            if args.latency_seconds > 0 and (cfg["headline"] or args.alt_latency):
                settle_database(bench_url)
                lat_targets = targets[:3]
                cfg["latency"] = latency_phase(args, lat_targets, {t.name: rate for t in lat_targets})
                if cfg["headline"] and args.own_rate_latency:
                    own = {t.name: max(1, round(med[t.name] / 2)) for t in lat_targets[1:]}
                    cfg["latency_own"] = latency_phase(args, lat_targets[1:], own)
        head["wal_end"] = wal_state(bench_url)
        if args.profile_seconds > 0:
            head["profile"] = run_profiles(args, wrk, head["targets_obj"], tmp)
    finally:
        for cfg in cfgs:
            for s in cfg["servers"].values():
                s.stop()
    for cfg in cfgs:
        del cfg["servers"], cfg["targets_obj"]
    return cfgs


def run_profiles(args, wrk, targets, tmp):
    pyspy = ensure_pyspy()
    if not pyspy:
        return {"error": "py-spy not available"}
    by = {t.name: t for t in targets}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {}
    try:
        log("profile: orders flame graph (--gil)")
        profile(pyspy, wrk, by["orders"], args.profile_seconds, args.connections, args.wrk_threads,
                RESULTS / "orders-profile.svg", "flamegraph", "gil")
        for name, mode in (("orders", "gil"), ("orders", "idle"), ("payments", "gil"), ("payments", "idle")):
            log(f"profile: {name} --{mode}")
            path = Path(tmp) / f"{name}-{mode}.txt"
            profile(pyspy, wrk, by[name], args.profile_seconds, args.connections, args.wrk_threads, path, "raw", mode)
            stacks = parse_collapsed(path)
            buckets, total = classify(stacks)
            pkgs, _ = self_by_package([s for s in stacks if _is_request(s[0])])
            out[f"{name}-{mode}"] = {"buckets": buckets, "total": total, "packages": pkgs.most_common(),
                                     "top": top_functions(stacks)[0] if mode == "gil" else []}
    except RuntimeError as e:
        out["error"] = str(e)
    return out


# ---- report -----------------------------------------------------------------------------------

def machine_info():
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = psutil.virtual_memory().total / 2**30
    versions = {}
    for mod in ("flask", "werkzeug", "psycopg", "psycopg_pool", "marshmallow", "gunicorn"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception:
            pass
    wrk_v = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    head = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True, text=True).stdout
    sha, _, subject = head.partition(" ")
    git = f"commit {sha} (\"{subject[:60]}…\")" + ("; app/ has uncommitted changes" if dirty.strip() else "")
    return {"nproc": os.cpu_count(), "model": model, "mem_gb": round(mem, 1), "kernel": platform.release(),
            "python": platform.python_version(), "versions": versions, "wrk": wrk_v[0] if wrk_v else "wrk", "git": git}


def cpu_speed():
    """The machine's speed at the moment: seconds for a fixed pure-Python loop (10 M additions), the
    best of 3, and the share of time some task waited for a CPU over the last 5 minutes (Linux
    pressure stall information; on a virtual machine it includes a busy host). The same code runs
    several times slower on this machine on a bad hour; these two figures say which hour it was."""
    def loop():
        t = time.perf_counter()
        x = 0
        for i in range(10_000_000):
            x += i
        return time.perf_counter() - t

    best = min(loop() for _ in range(3))
    try:
        some = Path("/proc/pressure/cpu").read_text().split()[3]  # "avg300=…" of the "some" line
        pressure = float(some.split("=")[1])
    except (OSError, IndexError, ValueError):
        pressure = None
    return best, pressure


def f0(x):
    return f"{x:.0f}"


def f1(x):
    return f"{x:.1f}"


def f2(x):
    return f"{x:.2f}"


def report(args, info, pg, db_source, configs, counts, started, finished, load_before):
    L = []
    w = L.append
    head = configs[0]
    w("# API benchmark (issue 3): POST /orders and /payments vs a bare Flask INSERT\n")
    w(f"Generated by `python bench/api_bench.py {' '.join(args.argv)}` "
      f"({started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC). Rerun the same command to refresh this file.\n")
    bare_rps = [row["bare"]["rps"] for row in head["rounds"]]
    w(f"**The machine is shared and noisy** ({info['nproc']} cores of a virtual machine; the 1-minute load average was "
      f"{load_before:.1f} before the run, and the load at the end of each measurement, the benchmark's own processes "
      f"included, is in the raw figures): the same bare endpoint ranged from {min(bare_rps):.0f} to "
      f"{max(bare_rps):.0f} req/s across the rounds. The targets are alternated round by round so that the ratios "
      "compare like with like, and the CPU cost per request (measured from the processes' own CPU time) is the "
      "steadiest figure.\n")
    w("## Set-up\n")
    w(f"- machine: {info['nproc']} × {info['model']}, {info['mem_gb']} GiB, Linux {info['kernel']}, Python {info['python']}")
    speeds = [info[k] for k in ("speed_before", "speed_after") if k in info]
    if speeds:
        w("- the machine's speed (`cpu_speed()`: a fixed pure-Python loop of 10 M additions, best of 3; and the "
          "CPU pressure, the share of time some task waited for a CPU over the last 5 minutes): "
          + " and ".join(f"{when} the run {sec:.2f} s, pressure {'?' if p is None else f'{p:.0f} %'}"
                         for when, (sec, p) in zip(("before", "after"), speeds)))
    w("- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + f"; {info['wrk']}")
    w(f"- PostgreSQL {pg['server_version']} ({db_source}), on the same machine over a Unix socket; settings as found: "
      + ", ".join(f"`{k}={v}`" for k, v in pg.items() if k != "server_version"))
    w(f"- database `{DB_NAME}`, created fresh for the run, schema by `flask --app app init-db` (the test merchant has no "
      "webhook URL, so its payment is one statement: the payment and its settlement job; the extra target "
      "payments+hook uses a second merchant with a URL, whose payment also writes the payment.created event, in one "
      "transaction); no worker runs, so jobs stay pending")
    w(f"- gunicorn, identical for all servers, built by `app.launcher.gunicorn_cmd`: **{head['workers']} workers × "
      f"{head['threads']} threads, worker class gthread**, no access log (as the launcher runs it without "
      f"ACCESS_LOG): `{head['cmd']}` "
      "(the bare app's command differs only in the app argument `bench.bare_app:create_app()`)")
    w(f"- the gateway as in the work tree at {info['git']}, with `LOG_LEVEL=WARNING` (no per-request log line) and its "
      "own connection pool (`app/db.py` `make_pool`, `DB_POOL_SIZE`=10 per process); the reference: `bench/bare_app.py`, "
      "psycopg_pool.ConnectionPool(max_size=10) per process, parses the JSON body, one `INSERT … RETURNING`, commit, "
      "201 JSON")
    slices, length = slicing(args)
    w(f"- load: `wrk -t{args.wrk_threads} -c{args.connections} -d{length}s -s bench/wrk/post.lua` "
      f"(keep-alive), after a {args.warmup} s warm-up per target; {args.rounds} round(s) of {slices * length} s per target; "
      f"in each round every target of every gunicorn configuration ({args.configs}) runs {slices} slice(s) of "
      f"{length} s, the targets taking turns (their order reversed every other slice), so that a slow "
      "spell of the machine, which lasts tens of seconds, falls on all of them; a round's figure for a target sums "
      "its slices (closed-loop latency percentiles: the median of its slices); all servers up throughout")
    w("- bodies: orders and bare `" + ORDER_BODY + "`; payments `" + PAYMENT_BODY.replace("%ORDER%", "order_…")
      + "` with the test merchant's `X-Api-Key`/`X-Api-Secret`, each for an order of its own (an order takes one "
      f"payment in flight), from a pool of {args.orders_pool} orders inserted by SQL before the run and topped up "
      "between runs")
    prep, (lsn0, files0), (lsn1, files1) = head["wal_prep"], head["wal_start"], head["wal_end"]
    files = ("not listed (no right to pg_ls_waldir)" if files0 is None else
             f"{files0} before the measurements and {files1} after them"
             + (" (none created in the commit path)" if files1 <= files0 else
                f" ({files1 - files0} new segments were created in the commit path)"))
    w(f"- WAL: before the warm-ups, {prep['mb']} MB of WAL written to a throwaway table, then {prep['done']}, so "
      "that the run's segments are recycled ones as on a server that has been up for a while, not created (zero-filled "
      "and fsynced) in the commit path as on a young cluster, where every commit waits for that; "
      f"the throughput and latency measurements wrote {(lsn1 - lsn0) >> 20} MB of WAL; segment files in pg_wal: {files}")
    for n in head["checks"]:
        w(f"- checked before measuring: {n}")
    w("")
    for i, cfg in enumerate(configs):
        title = "Results" if i == 0 else "Alternative gunicorn configuration"
        w(f"## {title}: {cfg['workers']} workers × {cfg['threads']} threads, gthread\n")
        med = cfg["median"]
        names = [n for n, _ in cfg["targets"]]
        w("### Throughput (wrk, median of the rounds)\n")
        w("| target | what | median req/s | vs bare | app CPU ms/req | PostgreSQL CPU ms/req | wrk CPU ms/req "
          "| CPU-bound capacity vs bare | errors |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        cpu = {}
        for n, note in cfg["targets"]:
            rows = [r[n] for r in cfg["rounds"]]
            cpu[n] = [median([r[k] for r in rows]) for k in ("app_cpu_ms", "pg_cpu_ms", "wrk_cpu_ms")]
        for n, note in cfg["targets"]:
            rows = [r[n] for r in cfg["rounds"]]
            w(f"| {n} | {note} | {f0(med[n])} | {med[n] / med['bare'] * 100:.0f} % | "
              f"{f2(cpu[n][0])} | {f2(cpu[n][1])} | {f2(cpu[n][2])} | {sum(cpu['bare']) / sum(cpu[n]) * 100:.0f} % | "
              f"{sum(r['errors'] for r in rows)} |")
        w("")
        w("CPU ms/req: CPU time (user + system) of the server's gunicorn processes, of the `bench_api` PostgreSQL "
          "backends and of wrk during the measurement, divided by the requests served. *CPU-bound capacity vs bare* "
          "= (bare's app + PostgreSQL + wrk CPU per request) / (the target's): the req/s ratio to expect when the "
          "cores are the limit, as they are here; unlike req/s it hardly depends on what else the machine runs.\n")
        ro, rp = med["orders"] / med["bare"], med["payments"] / med["bare"]
        w(f"**orders/bare = {ro * 100:.0f} %, payments/bare = {rp * 100:.0f} %** (requirement: ≥ 70 %: "
          f"orders {'met' if ro >= 0.7 else 'NOT met'}, payments {'met' if rp >= 0.7 else 'NOT met'}).\n")
        if "orders@INFO" in med:
            tot = {n: sum(cpu[n]) for n in cpu}
            w(f"Request log at INFO: {f0(med['orders'])} → {f0(med['orders@INFO'])} req/s, CPU per request "
              f"{f2(tot['orders'])} → {f2(tot['orders@INFO'])} ms ({(tot['orders@INFO'] / tot['orders'] - 1) * 100:+.0f} %). "
              f"An Idempotency-Key on every order: {f0(med['orders+idem'])} req/s, CPU per request "
              f"{f2(tot['orders+idem'])} ms ({(tot['orders+idem'] / tot['orders'] - 1) * 100:+.0f} %): the key's INSERT "
              "and the stored response's UPDATE. On this machine the CPU figures are the ones to trust; req/s "
              "differences below ~20 % are within the noise of the raw rounds.\n")
        w("Raw rounds (req/s, with the 1-minute load average at the end of each measurement):\n")
        w("| round | " + " | ".join(names) + " |")
        w("|---|" + "---:|" * len(names))
        for j, r in enumerate(cfg["rounds"]):
            w(f"| {j + 1} | " + " | ".join(f"{f0(r[n]['rps'])} (load {r[n]['load']:.1f})" for n in names) + " |")
        w("")
        w("Per-round latency under full load (wrk, closed loop, "
          f"{args.connections} connections), ms p50 / p99 (each the median over the round's slices):\n")
        w("| round | " + " | ".join(names) + " |")
        w("|---|" + "---:|" * len(names))
        for j, r in enumerate(cfg["rounds"]):
            w(f"| {j + 1} | " + " | ".join(f"{r[n]['lat_p50_us'] / 1000:.1f} / {r[n]['lat_p99_us'] / 1000:.1f}"
                                           for n in names) + " |")
        w("")
        if cfg["latency"]:
            rate = cfg["latency_rate"]
            w(f"### Latency at half the bare rate: {rate} req/s, constant rate\n")
            w("Before these runs the database is settled once (`VACUUM (ANALYZE)`), so the autovacuum work left by the "
              "throughput rounds does not fall on whichever target happens to run first. ")
            w(f"Open-loop generator in api_bench.py (asyncio{' + uvloop' if importlib.util.find_spec('uvloop') else ''}, "
              f"{GENERATOR_CONNECTIONS} keep-alive connections, requests built beforehand; request i is "
              f"due at t0 + i/rate and its latency counts from then, so queueing behind a slow request is not hidden), "
              f"{args.latency_rounds} round(s) of {args.latency_seconds} s per target; within a round the targets take "
              f"turns in slices of about {args.latency_slice:g} s (their order reversed every other slice, each slice on "
              "fresh keep-alive connections), so that a slow spell of the machine falls on all of them; all samples "
              "pooled. "
              "Service time = from the actual send to the end of the response. The generator runs on the same "
              "two cores.\n")
            latency_table(w, cfg["latency"])
        if cfg.get("latency_own"):
            w("### Latency at half each endpoint's own median rate\n")
            w("The same generator at half the req/s that the endpoint itself reached above (the other reading of "
              "'half that rate', and the load at which our endpoints are not saturated).\n")
            latency_table(w, cfg["latency_own"])
        if cfg.get("profile"):
            write_profile(w, cfg["profile"], args)
    if len(configs) > 1:
        w("## Configurations compared (same rounds, alternated)\n")
        w("| target | " + " | ".join(f"{c['label']} req/s" for c in configs) + " | "
          + " | ".join(f"{c['label']} app+PG CPU ms/req" for c in configs) + " |")
        w("|---|" + "---:|" * (2 * len(configs)))
        for n in ("bare", "orders", "payments"):
            cpu = [median([r[n]["app_cpu_ms"] + r[n]["pg_cpu_ms"] for r in c["rounds"]]) for c in configs]
            w(f"| {n} | " + " | ".join(f0(c["median"][n]) for c in configs) + " | " + " | ".join(f2(x) for x in cpu) + " |")
        w("")
    w("## Database after the run\n")
    w(", ".join(f"{k}: {v}" for k, v in counts.items()) + "\n")
    return "\n".join(L) + "\n"


def latency_table(w, lat):
    w("| target | rate req/s | requests | p50 ms | p90 ms | p99 ms | max ms | service p50 / p99 ms | errors | p99 < 50 ms |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, lt in lat.items():
        w(f"| {n} | {lt['rate']} | {lt['n']} | {f1(lt['p50'])} | {f1(lt['p90'])} | {f1(lt['p99'])} | {f1(lt['max'])} | "
          f"{f1(lt['svc_p50'])} / {f1(lt['svc_p99'])} | {lt['errors']} | {'yes' if lt['p99'] < 50 else 'NO'} |")
    w("")
    w("Per round (achieved req/s, p50 / p99 / max ms, load):\n")
    for n, lt in lat.items():
        w(f"- {n}: " + "; ".join(f"{x['achieved']:.0f}/s {f1(x['p50'])} / {f1(x['p99'])} / {f1(x['max'])} "
                                 f"(load {x['load']:.1f})" for x in lt["rounds"]))
    w("")


def write_profile(w, prof, args):
    w("### Profile (py-spy)\n")
    if "error" in prof and len(prof) == 1:
        w(f"Not available: {prof['error']}\n")
        return
    w(f"py-spy {args.profile_seconds} s at 200 Hz on the gateway's gunicorn master and workers (`--subprocesses`) "
      "under the same wrk load. Two views: `--gil` samples only the thread holding the GIL, i.e. where the Python "
      "CPU time of a worker goes (each worker process can run Python on one core at a time); `--idle` samples every "
      "thread, also those waiting for PostgreSQL or a socket, i.e. where a request's wall-clock time goes. "
      "Flame graph of POST /orders (`--gil`): [orders-profile.svg](orders-profile.svg).\n")
    w("A request's stack is put in the first bucket of this list that has a frame in it (so the COMMIT issued by "
      "the idempotency wrapper counts as 'commit', the connection checkout on the first query as "
      "'checkout', the marshmallow dump inside payments.create as 'payments.create').\n")
    cols = [k for k in ("orders-gil", "orders-idle", "payments-gil", "payments-idle") if k in prof]
    heads = {"orders-gil": "orders, GIL (CPU)", "orders-idle": "orders, wall clock",
             "payments-gil": "payments, GIL (CPU)", "payments-idle": "payments, wall clock"}
    w("| where | " + " | ".join(heads[k] for k in cols) + " |")
    w("|---|" + "---:|" * len(cols))
    for b in BUCKET_ORDER:
        if not any(prof[k]["buckets"].get(b) for k in cols):
            continue
        w(f"| {b} | " + " | ".join(f"{prof[k]['buckets'].get(b, 0) / max(prof[k]['total'], 1) * 100:.1f} %" for k in cols) + " |")
    w("| samples | " + " | ".join(str(prof[k]["total"]) for k in cols) + " |")
    w("")
    for k in cols:
        if k.endswith("-gil"):
            tot = sum(n for _, n in prof[k]["packages"]) or 1
            w(f"Self time by package of the leaf frame, {heads[k]}, request threads only: "
              + ", ".join(f"{name} {n / tot * 100:.0f} %" for name, n in prof[k]["packages"][:10]) + "\n")
    for k in cols:
        if prof[k].get("top"):
            w(f"Top functions, {heads[k]}: inclusive share of the request threads' GIL samples (a function and "
              "everything it calls; the frames every request passes through, above 90 %, left out):\n")
            w("| function (file) | share |")
            w("|---|---:|")
            for f, share in prof[k]["top"]:
                w(f"| `{f}` | {share:.1f} % |")
            w("")
    if prof.get("error"):
        w(f"(profile incomplete: {prof['error']})\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="each target's wrk time per round")
    ap.add_argument("--slice", type=int, default=2,
                    help="a round's --seconds run as slices of about this length, the targets taking turns")
    ap.add_argument("--warmup", type=int, default=5, help="wrk warm-up per target")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--configs", default="2x4", help="gunicorn WORKERSxTHREADS, comma-separated; the first is the headline")
    ap.add_argument("--latency-seconds", type=int, default=None, help="per constant-rate run (default: --seconds)")
    ap.add_argument("--latency-rounds", type=int, default=None, help="default: --rounds")
    ap.add_argument("--latency-slice", type=float, default=2.0,
                    help="seconds each target runs before the next takes its turn within a latency round")
    ap.add_argument("--latency-rate", type=int, default=0, help="default: half the bare median")
    ap.add_argument("--no-own-rate-latency", dest="own_rate_latency", action="store_false",
                    help="skip the latency runs at half each endpoint's own rate")
    ap.add_argument("--alt-latency", action="store_true", help="latency runs for the alternative configs too")
    ap.add_argument("--profile-seconds", type=int, default=15, help="0: no profile")
    ap.add_argument("--orders-pool", type=int, default=20000)
    ap.add_argument("--no-extras", dest="extras", action="store_false",
                    help="skip orders with Idempotency-Key and orders at LOG_LEVEL=INFO")
    ap.add_argument("--out", default=str(RESULTS / "api.md"))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    if args.latency_seconds is None:
        args.latency_seconds = args.seconds
    if args.latency_rounds is None:
        args.latency_rounds = args.rounds
    if args.latency_rounds < 1 or args.rounds < 1:
        ap.error("--rounds and --latency-rounds must be at least 1 (the report needs both phases)")
    configs = [tuple(int(x) for x in c.lower().split("x")) for c in args.configs.split(",")]

    wrk = ensure_wrk()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    info = machine_info()
    info["speed_before"] = cpu_speed()
    url, db_source = server_url()
    log("database:", db_source)
    lock = run_lock(url)  # noqa: F841  (held until exit)
    bench_url = fresh_database(url)
    pg = pg_settings(bench_url)
    make_hook_merchant(bench_url)
    results = []
    with tempfile.TemporaryDirectory(prefix="api_bench_") as tmp:
        orders_file = OrderPool(bench_url, Path(tmp) / "orders.txt", args.orders_pool)
        args.hook_orders = OrderPool(bench_url, Path(tmp) / "hook-orders.txt", args.orders_pool, HOOK_MERCHANT["id"])
        results = run_configs(args, wrk, bench_url, orders_file, configs, tmp)
    counts = db_counts(bench_url)
    info["speed_after"] = cpu_speed()
    finished = datetime.datetime.now(datetime.timezone.utc)
    text = report(args, info, pg, db_source, results, counts, started, finished, load_before)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    log(f"wrote {args.out}")
    for cfg in results:
        med = cfg["median"]
        print(f"{cfg['workers']}x{cfg['threads']}: " + ", ".join(f"{k} {v:.0f} req/s" for k, v in med.items())
              + f"; orders/bare {med['orders'] / med['bare'] * 100:.0f} %, payments/bare {med['payments'] / med['bare'] * 100:.0f} %")
        for n, lt in [*cfg["latency"].items(), *cfg.get("latency_own", {}).items()]:
            print(f"  {n} @{lt['rate']}/s: p50 {lt['p50']:.1f} ms, p99 {lt['p99']:.1f} ms")


if __name__ == "__main__":
    main()
