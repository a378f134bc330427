"""The one background process: claims due jobs from the `jobs` table and runs them.

Every job kind has an entry in HANDLERS. Database jobs (settlements, refunds) run inside one
transaction per claimed batch: state change, events and job completion commit together. Webhook
deliveries are HTTP: they run on a bounded thread pool, a few per webhook endpoint at most, so one
hanging endpoint cannot hold up the others. LISTEN/NOTIFY wakes the loop within milliseconds
(sent only while a worker sleeps: see jobs.wakeup_gate); it polls at least every second as the
fallback.
"""
import logging
import os
import queue as queue_module
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from app import (create_app, db, endpoints, idempotency, jobs, logs, metrics, migrate, outbound, partitions, payments,
                 refunds, rollups, webhooks)

log = logging.getLogger("worker")



class Batched:
    """A handler that takes all its claimed jobs at once (a few statements for the whole batch):
    fn(connection, jobs, settings, emit) -> {job_id: seconds until it runs again}; the others are done."""

    def __init__(self, fn):
        self.run = fn


class Each:
    """A handler that takes one job at a time: fn(connection, payload, settings, emit) -> None when
    done, or the seconds until it runs again. It still shares its batch's transaction."""

    def __init__(self, fn):
        self.fn = fn

    def run(self, c, batch, settings, emit):
        again = {}
        for j in batch:
            with logs.request_context(_request_id(j["payload"])):  # what it logs and enqueues names its request
                again[j["id"]] = self.fn(c, j["payload"], settings, emit)
        return {job_id: delay for job_id, delay in again.items() if delay is not None}


def _request_id(payload):
    """The request that caused a job (jobs.enqueue_many), if any."""
    return payload.get("request_id") if isinstance(payload, dict) else None


def _job_fields(job_id, kind, payload):
    """extra= of a job's log lines: its id, its kind and the request that caused it."""
    return {"job_id": job_id, "kind": kind, "request_id": _request_id(payload)}


DELIVERY = "on the delivery threads"  # webhook.deliver: HTTP, not a transaction (Worker.submit_deliveries)

# Every job kind: how it runs. emit(events) writes webhook events in the handler's transaction.
HANDLERS = {
    payments.SETTLE: Batched(payments.settle_batch),
    refunds.PROCESS: Each(refunds.process),
    webhooks.DELIVER: DELIVERY,
}
POLL_SECONDS = 1.0
GATE_WAIT_SECONDS = 1
FULL_POOL_RECHECK_SECONDS = 0.05
MAX_WAITING_PER_TARGET = 200
HEALTHCHECK_MAX_AGE = 30  # seconds; the heartbeat is every 2 s, so this tolerates a slow database


class LeaseLost(Exception):
    """Another worker took over some jobs of a batch (our lease expired): the batch is undone."""


class Worker:
    def __init__(self, app):
        self.app = app
        self.settings = app.config
        self.db = db.make_pool(app.config["DATABASE_URL"], size=app.config["WEBHOOK_THREADS"] + 4, name="worker")
        self.batch = app.config["JOB_BATCH_SIZE"]
        self.lease_s = app.config["JOB_LEASE_SECONDS"]
        self.threads = app.config["WEBHOOK_THREADS"]
        self.per_merchant = app.config["WEBHOOK_PER_MERCHANT"]
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="deliver")
        self.lock = threading.Lock()
        self.in_flight = {}          # job_id -> (lease_id, endpoint): deliveries queued or running
        self.per_target_count = Counter()     # deliveries on the pool, by endpoint (see submit_deliveries)
        self.waiting = defaultdict(deque)     # endpoint -> leased deliveries waiting for a slot
        self.room_freed = threading.Event()   # set when a delivery ends and frees its slot
        self.http = outbound.http_pool(self.threads)
        self.results = queue_module.Queue()   # delivery outcomes for the recorder thread
        self.recorder = threading.Thread(target=self.record_results, name="recorder", daemon=True)
        self.recorder.start()

    # ---- main loop ----------------------------------------------------------------------------

    def run(self):
        listener = psycopg.connect(db.libpq_url(self.settings["DATABASE_URL"]), autocommit=True)
        listener.execute("LISTEN jobs")
        scheduler = self._start_scheduler()
        log.info("worker %s started (batch=%s, lease=%ss, delivery threads=%s)", self.id, self.batch,
                 self.lease_s, self.threads)
        try:
            while not self.stopping.is_set():
                try:
                    if self.step():
                        continue
                    self._wait(listener)
                except (psycopg.OperationalError, OSError) as e:
                    log.warning("database unavailable (%s); retrying", type(e).__name__)
                    self.stopping.wait(1.0)
                    listener = self._reconnect(listener)
                except Exception:  # noqa: BLE001 - a bug in one step must not kill the loop
                    log.exception("worker step failed")
                    self.stopping.wait(1.0)
        finally:
            self._shutdown(scheduler, listener)
        return 0

    def _wait(self, listener):
        """Sleep until NOTIFY, the next scheduled job, or the poll interval, whichever is first.
        Asleep, the worker holds the wake-up gate, which tells enqueuers to send the NOTIFY
        (schema.sql, jobs_notify). Taking it waits for the transactions that enqueued without one;
        the look at the queue that follows sees their jobs."""
        if self._room() <= 0:
            # Deliveries are due but every slot is taken: not a sleep. Look again as soon as a
            # delivery ends, and for the other kinds (enqueued without a NOTIFY: no gate is held)
            # within FULL_POOL_RECHECK_SECONDS.
            self.room_freed.wait(FULL_POOL_RECHECK_SECONDS)
            return
        with db.connect(self.db) as gate, db.transaction(gate):
            if not jobs.wakeup_gate(gate, GATE_WAIT_SECONDS):
                return  # an enqueuing transaction is slow to end: look at the queue again
            # The look is its own transaction, begun after the gate was granted: the gate's
            # transaction holds no lock on jobs while the worker sleeps (a schema change would
            # queue behind it, and every INSERT into jobs behind that).
            with db.connect(self.db) as c:
                due_in = jobs.seconds_until_next(c)
            timeout = POLL_SECONDS if due_in is None else max(0.0, min(POLL_SECONDS, float(due_in)))
            if timeout > 0:
                for _ in listener.notifies(timeout=timeout, stop_after=1):
                    pass
        # The gate is released as its transaction ends.

    def _reconnect(self, listener):
        try:
            listener.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            conn = psycopg.connect(db.libpq_url(self.settings["DATABASE_URL"]), autocommit=True, connect_timeout=3)
            conn.execute("LISTEN jobs")
            return conn
        except psycopg.OperationalError:
            return listener

    def _room(self):
        """How many more deliveries the pool takes (queued on it or running, two per thread)."""
        with self.lock:
            return self.threads * 2 - sum(self.per_target_count.values())

    def step(self):
        """Claim one batch and run it; False when nothing was due."""
        self.room_freed.clear()  # before counting: a slot freed from now on wakes _wait
        room = self._room()
        lease = str(uuid.uuid4())
        # One statement in autocommit: the lease is durable before any work starts.
        with db.connect(self.db) as c:
            claimed = jobs.claim(c, lease, self.batch, self.lease_s,
                                 exclude_kinds=() if room > 0 else (webhooks.DELIVER,))
        if not claimed:
            return False
        by_kind = {}
        for j in claimed:
            by_kind.setdefault(j["kind"], []).append(j)
        # Database work first: a settlement's own webhook goes out right after it, not after the
        # HTTP of older deliveries claimed in the same batch.
        for kind, batch in by_kind.items():
            handler = HANDLERS.get(kind)
            if handler is None:
                for j in batch:
                    self._fail(j, lease, f"no handler for job kind {kind!r}", 0.0)
            elif handler is not DELIVERY:
                self.run_batch(kind, batch, lease)
        for kind, batch in by_kind.items():
            if HANDLERS.get(kind) is DELIVERY:
                self.submit_deliveries([(j["id"], j["payload"]) for j in batch], lease)
        return True

    # ---- database jobs -------------------------------------------------------------------------

    def run_batch(self, kind, batch, lease):
        """One transaction: the handler's state changes, the events it emits and the jobs' new
        status. Deliveries it emits are leased to us and start as soon as it commits."""
        t0 = time.perf_counter()
        emitted = []
        # A batch of one request's jobs (usual, but for a busy queue) runs in its context: the
        # deliveries it emits (payment.success) carry that request's id too.
        request_ids = {_request_id(j["payload"]) for j in batch}
        try:
            with logs.request_context(request_ids.pop() if len(request_ids) == 1 else None), \
                    db.connect(self.db) as c, db.transaction(c):
                def emit(events):
                    emitted.extend(webhooks.emit_events(c, events, lease=(lease, self.lease_s)))

                again = HANDLERS[kind].run(c, batch, self.settings, emit)
                kept = jobs.finish(c, [(j["id"], lease, again.get(j["id"])) for j in batch])
                if len(kept) != len(batch):
                    # Our lease ran out and another worker holds some of these jobs: undo it all.
                    raise LeaseLost(f"lease lost for {len(batch) - len(kept)} of {len(batch)} {kind} jobs; "
                                    f"left to their new owner")
        except LeaseLost as e:
            log.warning("%s", e)
            return
        except psycopg.OperationalError:
            raise  # the database is away, not the job's fault: the loop waits; the leases expire
        except Exception as e:  # noqa: BLE001
            if len(batch) > 1:
                # Find the job that fails: run each alone so the others are not held back.
                log.warning("%s batch of %d failed (%s); running its jobs one by one", kind, len(batch), e)
                for j in batch:
                    self.run_batch(kind, [j], lease)
                return
            self._fail(batch[0], lease, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
            return
        ms = (time.perf_counter() - t0) * 1000 / len(batch)
        # Just written in our transaction, URL and secret included: no need to read them back. Sent
        # before the batch's log lines are written, which would otherwise delay every webhook.
        self.submit_deliveries([(job_id, payload) for job_id, payload, _ in emitted], lease,
                               attempts={payload["log_id"]: attempt for _, payload, attempt in emitted})
        for j in batch:
            log.info("job %s %s %s in %.1fms", j["id"], kind, "rescheduled" if j["id"] in again else "completed",
                     ms, extra=_job_fields(j["id"], kind, j["payload"]))

    def _fail(self, job, lease, error, seconds):
        try:
            with db.connect(self.db) as c:
                status = jobs.fail(c, job["id"], lease, error)
        except Exception:  # noqa: BLE001 - the lease will expire and the job come back
            log.exception("could not record failure of job %s", job["id"])
            return
        log.error("job %s %s failed (%s) in %.1fms: %s", job["id"], job["kind"], status or "lease lost",
                  seconds * 1000, error, extra=_job_fields(job["id"], job["kind"], job["payload"]))

    # ---- webhook deliveries --------------------------------------------------------------------

    def submit_deliveries(self, items, lease, attempts=None):
        """Start leased delivery jobs on the pool, at most per_merchant (WEBHOOK_PER_MERCHANT) at
        once per endpoint; the next ones of that endpoint wait here (still leased) and start as
        soon as one finishes. An endpoint with a long local backlog (a hanging one) gets the excess
        back in the queue for a moment instead, so it cannot fill the worker's memory."""
        if not items:
            return
        if attempts is None:
            # One read for the whole batch: bodies, attempts, and the merchants' URL and secret now.
            with db.connect(self.db) as c:
                attempts = webhooks.load_attempts(c, [p for _, p in items])
        deferred = []
        with self.lock:
            for job_id, payload in items:
                attempt = attempts.get(payload["log_id"])
                if attempt is None:  # delivered or given up meanwhile: just finish the job
                    self.results.put({"job_id": job_id, "lease": lease, "log_id": payload["log_id"], "status": None,
                                      "wait": None, "code": None, "body": None, "ms": 0.0,
                                      "request_id": _request_id(payload)})
                    continue
                # Capped per endpoint, so a hanging endpoint delays none of the merchant's others
                # (jobs queued before endpoints existed carry only their merchant).
                task = (job_id, lease, attempt, payload.get("endpoint_id") or payload.get("merchant_id"),
                        _request_id(payload))
                if self.per_target_count[task[3]] < self.per_merchant:
                    self.per_target_count[task[3]] += 1
                    self._start(task)
                elif len(self.waiting[task[3]]) < MAX_WAITING_PER_TARGET:
                    self.waiting[task[3]].append(task)
                    self.in_flight[job_id] = (lease, task[3])
                else:
                    deferred.append(job_id)
        if deferred:
            with db.connect(self.db) as c:
                jobs.release(c, deferred, lease, delay_seconds=1.0)

    def _start(self, task):
        # Caller holds self.lock and has counted the task in per_target_count.
        self.in_flight[task[0]] = (task[1], task[3])
        self.pool.submit(self.deliver, task)

    def _finished(self, job_id):
        """A delivery ended: hand its endpoint's slot to that endpoint's next delivery, if any."""
        with self.lock:
            _, target = self.in_flight.pop(job_id, (None, None))
            queue = self.waiting.get(target)
            if queue and not self.stopping.is_set():
                self._start(queue.popleft())
            else:
                self.per_target_count[target] -= 1
                if self.per_target_count[target] <= 0:
                    del self.per_target_count[target]
                self.room_freed.set()
            if not queue:
                self.waiting.pop(target, None)

    def deliver(self, task):
        """One HTTP attempt on a pool thread; the recorder thread writes its outcome."""
        job_id, lease, attempt, _, request_id = task
        t0 = time.perf_counter()
        try:
            with logs.request_context(request_id):
                ok, code, body = webhooks.post(self.http, attempt, self.settings["WEBHOOK_ALLOW_PRIVATE_TARGETS"],
                                               self.settings["WEBHOOK_ALLOWED_HOSTS"])
            status, wait = webhooks.outcome(attempt["attempts"], ok, self.settings["WEBHOOK_RETRY_INTERVALS"])
            self.results.put({"job_id": job_id, "lease": lease, "log_id": str(attempt["id"]),
                              "created_at": attempt["created_at"], "status": status, "wait": wait, "code": code,
                              "body": body, "ms": (time.perf_counter() - t0) * 1000, "request_id": request_id})
        finally:
            self._finished(job_id)

    def record_results(self):
        """Recorder thread: write delivery outcomes in batches (one statement and one commit for
        everything that finished meanwhile), until the None sentinel."""
        while True:
            batch = [self.results.get()]
            while batch[-1] is not None and len(batch) < 500:
                try:
                    batch.append(self.results.get_nowait())
                except queue_module.Empty:
                    break
            done = batch[-1] is None
            batch = [r for r in batch if r is not None]
            if batch:
                self._record(batch)
            if done:
                return

    def _record(self, batch):
        try:
            with db.connect(self.db) as c, db.transaction(c):
                held = webhooks.record_attempts(c, batch)
        except Exception:  # noqa: BLE001 - the leases expire and the attempts run again
            log.exception("could not record %d delivery outcomes", len(batch))
            return
        metrics.count_deliveries(r["status"] for r in batch if r["job_id"] in held and r["status"] is not None)
        for r in batch:
            if r["job_id"] not in held:
                outcome = "lease lost"
            elif r["status"] is None:
                outcome = "skipped (already final)"
            elif r["status"] == "pending":
                outcome = f"failed, retry in {r['wait']:.0f}s (HTTP {r['code']})"
            else:
                outcome = f"{'delivered' if r['status'] == 'success' else 'failed, final'} (HTTP {r['code']})"
            log.info("job %s %s %s %s in %.1fms", r["job_id"], webhooks.DELIVER, r["log_id"], outcome, r["ms"],
                     extra=_job_fields(r["job_id"], webhooks.DELIVER, r))

    # ---- periodic duties (APScheduler) ---------------------------------------------------------

    def _start_scheduler(self):
        s = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
        s.add_job(self.heartbeat, "interval", seconds=2, next_run_time=_now())
        s.add_job(self._duty, "interval", seconds=max(1.0, min(5.0, self.lease_s / 3)),
                  args=["reclaim expired leases", jobs.reclaim_expired])
        s.add_job(self._duty, "interval", minutes=10, args=["delete expired idempotency keys", idempotency.delete_expired])
        s.add_job(self._duty, "interval", minutes=5, args=["trim finished jobs", jobs.trim])
        s.add_job(self._duty, "interval", minutes=1, args=["seal rollups", rollups.seal], next_run_time=_now())
        # webhook_logs' days: the expired ones dropped, the next ones created (logged by partitions).
        s.add_job(self._duty, "interval", hours=1, next_run_time=_now(), kwargs={"quiet": True}, args=[
            "webhook log partitions", lambda c: partitions.maintain(c, self.settings["WEBHOOK_LOG_RETENTION_DAYS"])])
        s.add_job(self.disable_failing_endpoints, "interval", minutes=1)
        s.add_job(self.extend_leases, "interval", seconds=max(1.0, self.lease_s / 3))
        s.start()
        return s

    def heartbeat(self):
        self._duty("heartbeat", lambda c: db.execute(c, """
            WITH gone AS (DELETE FROM worker_heartbeats WHERE beat_at < now() - interval '1 hour')
            INSERT INTO worker_heartbeats (worker_id, hostname, pid) VALUES (%(id)s, %(host)s, %(pid)s)
            ON CONFLICT (worker_id) DO UPDATE SET beat_at = now()
            """, {"id": self.id, "host": socket.gethostname(), "pid": os.getpid()}), quiet=True)

    def disable_failing_endpoints(self):
        """Disable the endpoints no delivery has reached for WEBHOOK_DISABLE_AFTER (each one logged by
        endpoints.disable_failing); the events it queues for their merchants' other endpoints are
        delivered like any other."""
        self._duty("disable failing webhook endpoints", lambda c: endpoints.disable_failing(
            c, self.settings["WEBHOOK_DISABLE_AFTER"]), quiet=True)

    def extend_leases(self):
        with self.lock:
            by_lease = {}
            for job_id, (lease, _) in self.in_flight.items():
                by_lease.setdefault(lease, []).append(job_id)
        for lease, ids in by_lease.items():
            self._duty("extend leases", lambda c: jobs.extend_lease(c, ids, lease, self.lease_s), quiet=True)

    def _duty(self, name, fn, quiet=False):
        try:
            with db.connect(self.db) as c:
                n = fn(c)
            if not quiet and n:
                log.info("%s: %s rows", name, n)
        except Exception as e:  # noqa: BLE001 - a duty failing (database down) is retried next time
            log.warning("%s failed: %s", name, type(e).__name__)

    # ---- stopping ------------------------------------------------------------------------------

    def close(self):
        """For callers that drive step() themselves (tests): finish deliveries and record them."""
        self.pool.shutdown(wait=True)
        self.close_recorder()
        self.db.close()

    def close_recorder(self):
        """Write the outcomes still queued, then end the recorder thread."""
        self.results.put(None)
        self.recorder.join(10)

    def stop(self, *_):
        self.stopping.set()

    def _shutdown(self, scheduler, listener):
        """Stop claiming; deliveries already running finish (bounded by their 5 s timeout), queued
        ones are given back to the queue; then say goodbye in worker_heartbeats."""
        scheduler.shutdown(wait=False)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.close_recorder()
        with self.lock:
            left = {}
            for job_id, (lease, _) in self.in_flight.items():
                left.setdefault(lease, []).append(job_id)
            self.in_flight.clear()
        try:
            with db.connect(self.db) as c:
                for lease, ids in left.items():
                    jobs.release(c, ids, lease)
                db.execute(c, "DELETE FROM worker_heartbeats WHERE worker_id = %(id)s", {"id": self.id})
        except Exception as e:  # noqa: BLE001 - leases expire anyway
            log.warning("could not release jobs on shutdown: %s", type(e).__name__)
        try:
            listener.close()
        except Exception:  # noqa: BLE001
            pass
        self.db.close()
        log.info("worker %s stopped", self.id)


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def main():
    # Signals first: a SIGTERM during start-up must still mean "stop cleanly".
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    app = create_app()
    logging.getLogger("worker").setLevel(app.config["LOG_LEVEL"])
    # The database may not be up yet, nor migrated (compose, a restart, an upgrade in progress):
    # wait for both rather than exit. The worker never changes the schema itself.
    while not stop.is_set():
        try:
            with app.app_context(), db.connect(db.pool()) as c:
                missing = migrate.pending(c)
                if not missing:
                    db.seed_test_merchant(c, app.config)
                    break
            log.warning("waiting for the schema migrations %s: run `python -m app.launcher migrate`",
                        ", ".join(missing))
        except psycopg.OperationalError as e:
            log.warning("database not reachable (%s); retrying", type(e).__name__)
        stop.wait(2.0)
    if stop.is_set():
        return 0
    if app.config["WORKER_METRICS_PORT"]:
        host = os.environ.get("HOST") or "127.0.0.1"
        metrics.serve_worker_metrics(host, app.config["WORKER_METRICS_PORT"], app.config["METRICS_TOKEN"])
        log.info("worker metrics on %s:%s/metrics", host, app.config["WORKER_METRICS_PORT"])
    worker = Worker(app)
    worker.stopping = stop
    return worker.run()


def healthcheck(max_age):
    """Exit status for a container healthcheck: 0 when a worker on this host beat within max_age seconds."""
    from app.config import load

    url = load()["DATABASE_URL"]
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        with psycopg.connect(db.libpq_url(url), connect_timeout=3) as c:
            # One worker per container: the container's host name picks its own heartbeats.
            age = c.execute("SELECT extract(epoch FROM now() - max(beat_at))::float FROM worker_heartbeats "
                            "WHERE hostname = %s", (socket.gethostname(),)).fetchone()[0]
    except psycopg.Error as e:
        print(f"database unreachable: {type(e).__name__}", file=sys.stderr)
        return 1
    if age is None or age > max_age:
        print(f"no heartbeat from {socket.gethostname()} in the last {max_age:g} s"
              + ("" if age is None else f" (last {age:.0f} s ago)"), file=sys.stderr)
        return 1
    print(f"worker heartbeat {age:.1f} s ago")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--healthcheck"]:
        # `python worker.py --healthcheck [SECONDS]`: the compose worker's healthcheck.
        sys.exit(healthcheck(float(sys.argv[2]) if len(sys.argv) > 2 else HEALTHCHECK_MAX_AGE))
    sys.exit(main())
