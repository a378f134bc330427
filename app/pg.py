"""A small psycopg 3 connection pool with the slice of SQLAlchemy's Connection API the project uses
(`execute(text(sql), {...})` with `:named` binds, `.mappings().first()`, `.scalar()`, `commit()`).

Why not SQLAlchemy's engine: profiling POST /api/v1/orders under load showed SQLAlchemy's
per-statement work (compiling text(), processing parameters and rows) costing 3–4× the driver's
own time per query, about a third of the request's CPU (bench/results/api.md as of commit
6338f10). The domain code kept its SQL and its calls; SQLAlchemy is no longer a dependency.
"""
import collections
import contextlib
import re
import threading

import psycopg

_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_converted = {}


def to_psycopg(sql):
    """`:name` binds -> `%(name)s` (psycopg's style), `::casts` untouched, `%` escaped. Cached."""
    out = _converted.get(sql)
    if out is None:
        out = _converted[sql] = _BIND.sub(r"%(\1)s", sql.replace("%", "%%"))
    return out


def text(sql):
    """Marks a SQL string, as sqlalchemy.text does (kept so the SQL reads the same everywhere)."""
    return sql


_row_classes = {}


def _row_class(names):
    cls = _row_classes.get(names)
    if cls is None:
        cls = _row_classes[names] = collections.namedtuple("Row", names, rename=True)
    return cls


class Result:
    """Rows fetched eagerly, viewable as tuples with attribute access, mappings or scalars."""

    def __init__(self, cursor):
        self.rowcount = cursor.rowcount
        res = cursor.pgresult
        if res is None or res.status != psycopg.pq.ExecStatus.TUPLES_OK:
            self._names, self._rows = (), []
        else:
            # The names straight from the result: cursor.description builds a Column object per
            # column on every access (measured: 6–8 % of POST /payments' CPU under cProfile).
            self._names = tuple(res.fname(i).decode() for i in range(res.nfields))
            self._rows = cursor.fetchall()

    # tuples (namedtuples: row.status, row[0], unpacking)
    def all(self):
        cls = _row_class(self._names)
        return [cls._make(r) for r in self._rows]

    def __iter__(self):
        return iter(self.all())

    def first(self):
        return _row_class(self._names)._make(self._rows[0]) if self._rows else None

    def one(self):
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self.first()

    def scalar(self):
        return self._rows[0][0] if self._rows else None

    def scalars(self):
        return _Values([r[0] for r in self._rows])

    def mappings(self):
        return _Values([dict(zip(self._names, r)) for r in self._rows])


class _Values(list):
    def all(self):
        return list(self)

    def first(self):
        return self[0] if self else None

    def one(self):
        if len(self) != 1:
            raise LookupError(f"expected one row, got {len(self)}")
        return self[0]


def _in_transaction(raw):
    return raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def _rollback(raw):
    """ROLLBACK that keeps the session's prepared statements. psycopg's rollback() also forgets
    (DEALLOCATE ALL) every statement it has prepared on the connection, in case the rollback undid
    a CREATE they depend on. This app changes no schema outside init-db, and PostgreSQL replans a
    prepared statement by itself when a table it uses changes. With psycopg's rollback, every read
    request (its transaction ends in a ROLLBACK) made the next statements on that connection parse
    and plan afresh: payments mixed with reads took 0.77 ms of PostgreSQL CPU per request instead
    of 0.41 ms (bench/ab_revisions.py e484250~1)."""
    if raw.closed or not _in_transaction(raw):
        return
    with raw.lock:
        res = raw.pgconn.exec_(b"ROLLBACK")
    if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.OperationalError(f"ROLLBACK failed: {raw.pgconn.get_error_message()}")


class Connection:
    """A pooled psycopg connection. Statements run in a transaction that commit()/rollback()
    end (or autocommit, for execution_options(isolation_level="AUTOCOMMIT")); close() returns it."""

    def __init__(self, pool, raw):
        self._pool = pool
        self._raw = raw
        self.driver_connection = raw  # the psycopg connection, for what this API does not cover

    def execute(self, sql, params=None):
        return self.exec_driver_sql(to_psycopg(sql), params or None)

    def exec_driver_sql(self, sql, params=None):
        """SQL in psycopg's own style (%s / %(name)s)."""
        try:
            with self._raw.cursor() as cur:
                cur.execute(sql, params)
                return Result(cur)
        except psycopg.OperationalError:
            # The server went away: no idle connection is worth keeping. Not for a statement
            # timeout or a lock timeout (OperationalErrors too), which leave the connection usable.
            if self._raw.broken:
                self._pool.invalidate()
            raise

    def in_transaction(self):
        return _in_transaction(self._raw)

    def execute_alone(self, sql, params=None):
        """One statement that is a transaction of its own when none is open (PostgreSQL runs a
        single statement atomically: no BEGIN and COMMIT round trips needed); inside an open
        transaction it is simply part of it."""
        if self.in_transaction() or self._raw.autocommit:
            return self.execute(sql, params)
        self._raw.autocommit = True
        try:
            return self.execute(sql, params)
        finally:
            if not self.in_transaction():  # not when the connection broke: it is discarded anyway
                self._raw.autocommit = False

    def execution_options(self, isolation_level=None):
        if isolation_level == "AUTOCOMMIT":
            self._raw.autocommit = True
        return self

    def commit(self):
        self._raw.commit()

    def rollback(self):
        _rollback(self._raw)

    def close(self):
        if self._raw is not None:
            self._pool.put(self._raw)
            self._raw = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Pool:
    """Up to `size` idle connections kept, more opened on demand (never blocks waiting). A
    connection that saw the server go away invalidates every idle one: after a database restart
    the next checkouts connect afresh instead of failing one stale connection at a time."""

    def __init__(self, conninfo, size=10, autocommit=False, **connect_kwargs):
        self.conninfo = conninfo
        self.size = size
        self.autocommit = autocommit
        self.connect_kwargs = connect_kwargs
        self._idle = []
        self._lock = threading.Lock()
        self._generation = 0

    def connect(self):
        with self._lock:
            raw = self._idle.pop() if self._idle else None
        if raw is None:
            raw = psycopg.connect(self.conninfo, **self.connect_kwargs)
            raw._gateway_generation = self._generation
        raw.autocommit = self.autocommit
        return Connection(self, raw)

    @contextlib.contextmanager
    def begin(self):
        """A connection whose transaction commits when the block ends without an error."""
        c = self.connect()
        try:
            yield c
            c.commit()
        finally:
            c.close()

    def execution_options(self, isolation_level=None):
        """A view of the same pool whose connections autocommit (reads without BEGIN/ROLLBACK)."""
        view = _AutocommitView(self)
        return view if isolation_level == "AUTOCOMMIT" else self

    def put(self, raw):
        if raw.closed or raw.broken or getattr(raw, "_gateway_generation", -1) != self._generation:
            raw.close()
            return
        try:
            _rollback(raw)
        except psycopg.Error:
            raw.close()
            return
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(raw)
                return
        raw.close()

    def invalidate(self):
        """Forget every idle connection (the server went away); busy ones close when returned."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for raw in idle:
            try:
                raw.close()
            except psycopg.Error:
                pass

    def dispose(self):
        self.invalidate()


class _AutocommitView:
    def __init__(self, pool):
        self._pool = pool

    def connect(self):
        c = self._pool.connect()
        c._raw.autocommit = True
        return c
