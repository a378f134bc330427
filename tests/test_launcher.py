"""`make run` (python -m app.launcher run) as a user runs it: what it listens on, and a worker
SIGKILLed under load while the API keeps taking payments."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import Process, free_port, wait_until

LEASE_SECONDS = 3
PROCESSING_DELAY_MS = 500


def children(pid):
    """Child pids of a process (Linux /proc)."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []


def descendants(pid):
    found = children(pid)
    return found + [d for c in found for d in descendants(c)]


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return []


def running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening(port):
    """IPv4 addresses with a listening TCP socket on `port`."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, lport = local.split(":")
        if state == "0A" and int(lport, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return found


def start_launcher(what, env, log_dir):
    return Process([sys.executable, "-m", "app.launcher", what], env, f"launcher-{what}", log_dir)


@pytest.mark.parametrize("host, expected", [(None, {"127.0.0.1"}), ("0.0.0.0", {"0.0.0.0"})])
def test_the_receiver_listens_on_loopback_unless_host_says_otherwise(process_env, log_dir, host, expected):
    port = free_port()
    env = {k: v for k, v in dict(process_env, TEST_MERCHANT_PORT=str(port)).items() if k != "HOST"}
    if host:
        env["HOST"] = host
    launcher = start_launcher("test_merchant", env, log_dir)
    try:
        wait_until(lambda: listening(port), timeout=30, message=f"the receiver listening on :{port}")
        assert listening(port) == expected
    finally:
        assert launcher.stop() == 0, launcher.output()


@pytest.mark.parametrize("what", ["run", "api", "worker"])
@pytest.mark.parametrize("setting, value", [("WEBHOOK_DISABLE_AFTER", "5days"), ("DASHBOARD_TIMEZONE", "Mars/Base"),
                                            ("TRUST_PROXY", "yes"), ("LOG_FORMAT", "yaml"),
                                            ("LOG_LEVEL", "verbose")])
def test_a_bad_setting_stops_the_start_with_a_message_naming_it(process_env, log_dir, what, setting, value):
    env = dict(process_env, PORT=str(free_port()), TEST_MERCHANT_PORT=str(free_port()), **{setting: value})
    launcher = start_launcher(what, env, log_dir)
    try:
        wait_until(lambda: not launcher.alive(), timeout=30, message=f"`launcher {what}` to give up on {setting}")
        out = launcher.output()
        assert launcher.proc.returncode == 2, out
        assert f"{setting} {value!r}" in out
        assert "restart" not in out and "Traceback" not in out, out  # nothing started, nothing retried
    finally:
        launcher.stop()


def test_log_level_is_taken_in_any_case(process_env, log_dir, db):
    """LOG_LEVEL=debug, as operators write it, starts the worker (it made logging raise at start)."""
    launcher = start_launcher("worker", dict(process_env, LOG_LEVEL="debug"), log_dir)
    try:
        wait_until(lambda: " started (batch=" in launcher.output() or not launcher.alive(), timeout=30,
                   message="the worker started")
        assert launcher.alive(), launcher.output()
    finally:
        assert launcher.stop() == 0, launcher.output()


def test_migrate_names_the_partitions_it_creates_by_their_tables(process_env, new_database):
    """`migrate` on a new database: today's and the next days' partitions of webhook_logs and of events."""
    run = subprocess.run([sys.executable, "-m", "app.launcher", "migrate"], env=dict(process_env, DATABASE_URL=new_database()),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    line = next(l for l in run.stdout.splitlines() if "partitions created" in l)
    assert line.startswith("partitions created: webhook_logs_p") and "events_p" in line, line


def try_payment(s, base):
    """An order and its UPI payment through the API, recording the answers instead of asserting
    them (the test checks them all at the end): (payment id or None, the status codes)."""
    r = s.post(f"{base}/api/v1/orders", json={"amount": 50000}, timeout=10)
    answers = [r.status_code]
    if r.status_code != 201:
        return None, answers
    r = s.post(f"{base}/api/v1/payments", json={"order_id": r.json()["id"], "method": "upi", "vpa": "shopper@okbank"},
               timeout=10)
    answers.append(r.status_code)
    return (r.json()["id"] if r.status_code == 201 else None), answers


def worker_pids(launcher):
    return [p for p in children(launcher.proc.pid) if b"worker.py" in cmdline(p)]


@pytest.mark.slow
def test_run_restarts_a_sigkilled_worker_while_the_api_takes_payments_settled_exactly_once(
        process_env, log_dir, make_merchant, receiver, db):
    rx = receiver(hang=0.1)  # deliveries take a moment: the killed worker holds leases on some
    m = make_merchant(webhook_url=rx.url)
    port, tm_port = free_port(), free_port()
    env = {k: v for k, v in process_env.items() if k != "HOST"}
    env.update(PORT=str(port), TEST_MERCHANT_PORT=str(tm_port), JOB_LEASE_SECONDS=str(LEASE_SECONDS),
               TEST_PROCESSING_DELAY=str(PROCESSING_DELAY_MS),
               TEST_MERCHANT_WEBHOOK_URL="")  # leave the shared test merchant's webhook URL alone
    base = f"http://127.0.0.1:{port}"
    launcher = start_launcher("run", env, log_dir)
    try:
        s = requests.Session()
        s.headers.update(m["headers"])

        def api_up():
            try:
                return s.get(f"{base}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(api_up, timeout=60, message="the API of make run")
        first_worker = wait_until(lambda: worker_pids(launcher), timeout=30, message="worker.py")[0]

        paid, answers = [], []
        for _ in range(10):
            pid, got = try_payment(s, base)
            paid.append(pid)
            answers += got
        # Kill it with work in flight: payments at the (simulated) bank, and jobs leased to it.
        def in_flight():
            counts = tuple(db.one(
                "SELECT (SELECT count(*) FROM payments WHERE merchant_id = %(m)s AND status = 'processing') AS p, "
                "(SELECT count(*) FROM jobs WHERE status = 'processing' AND payload->>'merchant_id' = %(m)s::text) AS j",
                {"m": m["id"]}).values())
            return counts if all(counts) else None

        processing, leased = wait_until(in_flight, timeout=15, message="payments in processing and jobs leased")
        os.kill(first_worker, signal.SIGKILL)
        killed = time.monotonic()
        during = 0
        # Keep paying while it is down, until a new worker.py is up, and a few more after.
        while not [p for p in worker_pids(launcher) if p != first_worker and running(p)]:
            pid, got = try_payment(s, base)
            paid.append(pid)
            answers += got
            during += 1
            assert time.monotonic() - killed < 30, "no new worker.py within 30 s"
        restarted = time.monotonic() - killed
        for _ in range(5):
            pid, got = try_payment(s, base)
            paid.append(pid)
            answers += got
        assert set(answers) == {201}, answers
        assert during >= 1, "the worker was back before a payment could be made without it"

        def settled_and_delivered():
            return db.value("SELECT (SELECT count(*) FROM payments WHERE merchant_id = %(m)s AND status = 'success') = %(n)s "
                "AND (SELECT count(*) FROM webhook_logs WHERE merchant_id = %(m)s AND event = 'payment.success' "
                "AND status = 'success') = %(n)s", {"m": m["id"], "n": len(paid)})

        # A job leased to the killed worker comes back when its lease ends (checked every second).
        wait_until(settled_and_delivered, timeout=restarted + LEASE_SECONDS + 1 + PROCESSING_DELAY_MS / 1000 + 10,
                   interval=0.1, message=f"all {len(paid)} payments settled and their events delivered")
        all_settled = time.monotonic() - killed
        events = {r["pid"]: r["n"] for r in db.all(
            "SELECT payload->'data'->'payment'->>'id' AS pid, count(*) AS n FROM webhook_logs WHERE merchant_id = %(m)s "
            "AND event IN ('payment.success', 'payment.failed') GROUP BY 1", {"m": m["id"]})}
        assert events == {pid: 1 for pid in paid}  # each payment reached success once: one event each
        delivered = rx.wait_for(len(paid), timeout=30, event="payment.success")
        assert {d["json"]["data"]["payment"]["id"] for d in delivered} == set(paid)
        assert "launcher: worker.py exited with -9; restarting it in 0.5 s" in launcher.output()
        print(f"\nSIGKILL with {processing} payments processing and {leased} jobs leased; worker back "
              f"{restarted:.2f} s after, {during} payments made meanwhile; all {len(paid)} settled and delivered "
              f"{all_settled:.2f} s after the kill (lease {LEASE_SECONDS} s, bank delay {PROCESSING_DELAY_MS} ms)")

        assert listening(port) == {"127.0.0.1"} and listening(tm_port) == {"127.0.0.1"}

        tree = descendants(launcher.proc.pid)
        assert len(tree) >= 5  # gunicorn and its worker, worker.py, the receiver and its worker
        t0 = time.monotonic()
        assert launcher.stop(signal.SIGTERM, timeout=20) == 0, launcher.output()[-3000:]
        print(f"stopped in {time.monotonic() - t0:.2f} s")
        assert not [p for p in tree if running(p)]
    finally:
        launcher.stop()
