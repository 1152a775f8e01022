"""Engines and transactions for the store: SQLite (WAL, `BEGIN IMMEDIATE`) by default, PostgreSQL in production.

SQLite is configured so that concurrent writers *wait* for each other instead of failing half-way: every
connection gets `busy_timeout`, WAL (readers never block the writer), `synchronous=NORMAL` (durable at each
checkpoint, safe against application crashes; the WAL default recommended by SQLite) and `foreign_keys=ON`;
and pysqlite's own transaction handling is switched off so that SQLAlchemy emits the `BEGIN` itself
(the recipe of SQLAlchemy's pysqlite documentation). A write transaction starts with `BEGIN IMMEDIATE`, which
takes the write lock up front: a second writer waits at `BEGIN` (up to `busy_timeout`) rather than reading
stale data and then failing at its first write with "database is locked". Read-only transactions
(:func:`transaction` with ``read_only=True``) start with a deferred `BEGIN` and never wait for a writer.

PostgreSQL URLs (`postgresql://…`) run on psycopg 3 with a bounded pool, pre-ping, and READ COMMITTED; the
repository functions are written for that level (conditional updates, row locks, `SKIP LOCKED`).

Failures that mean "try again later" surface as one exception, :class:`StoreUnavailable`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry

from gateway.store.errors import StoreUnavailable, TransientConflict, is_transient

__all__ = [
    "BUSY_TIMEOUT_MS_DEFAULT",
    "DEFAULT_SQLITE_FILE",
    "StoreUnavailable",
    "create_engine_for",
    "is_sqlite",
    "sqlite_url_for",
    "transaction",
    "unavailable_on_failure",
]

#: The embedded database's file name inside the instance directory.
DEFAULT_SQLITE_FILE: Final = "gateway.db"
#: How long an SQLite writer waits for the write lock before the store reports itself unavailable.
BUSY_TIMEOUT_MS_DEFAULT: Final = 5_000
#: PostgreSQL pool: connections kept, extra connections allowed under load, wait for a free one.
POOL_SIZE_DEFAULT: Final = 10
POOL_OVERFLOW_MAX: Final = 10
POOL_TIMEOUT_S_DEFAULT: Final = 10.0
POOL_RECYCLE_S: Final = 1_800
CONNECT_TIMEOUT_S_DEFAULT: Final = 5

#: Execution option marking a connection's transactions read-only (deferred `BEGIN` on SQLite).
_READ_ONLY: Final = "tgw_read_only"


def sqlite_url_for(instance_dir: Path) -> str:
    """The URL of the embedded default database, `gateway.db` in the instance directory."""
    return URL.create("sqlite", database=str(Path(instance_dir) / DEFAULT_SQLITE_FILE)).render_as_string()


def create_engine_for(
    url: str | URL,
    *,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS_DEFAULT,
    pool_size: int = POOL_SIZE_DEFAULT,
    pool_overflow_max: int = POOL_OVERFLOW_MAX,
    pool_timeout_s: float = POOL_TIMEOUT_S_DEFAULT,
    connect_timeout_s: int = CONNECT_TIMEOUT_S_DEFAULT,
    echo: bool = False,
) -> Engine:
    """An engine configured for the gateway: SQLite pragmas and `BEGIN IMMEDIATE`, or a PostgreSQL pool.

    Args:
        url: `sqlite:///path/gateway.db` or `postgresql://user@host/db` (any `postgresql` URL without a driver
            gets psycopg 3; an explicit driver is kept).
        busy_timeout_ms: SQLite only: how long a writer waits for the write lock; 0 fails at once.
        pool_size: PostgreSQL only: connections kept open.
        pool_overflow_max: PostgreSQL only: extra connections opened under load.
        pool_timeout_s: PostgreSQL only: wait for a free connection before :class:`StoreUnavailable`.
        connect_timeout_s: PostgreSQL only: TCP connect timeout.
        echo: log every statement (debugging).

    Returns:
        The engine; nothing is connected until first use.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms=busy_timeout_ms, echo=echo)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args: dict[str, object] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": connect_timeout_s, "application_name": "tgw"}
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_overflow_max,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        pool_recycle=POOL_RECYCLE_S,
        connect_args=connect_args,
        echo=echo,
    )


def _sqlite_engine(url: URL, *, busy_timeout_ms: int, echo: bool) -> Engine:
    if busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be >= 0, not {busy_timeout_ms}")
    engine = create_engine(url, echo=echo)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from pysqlite (it would BEGIN lazily, skip SELECTs and DDL, and break
        # SAVEPOINT); SQLAlchemy's "begin" event below emits our own BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL may itself have to wait for another connection's lock.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock now, so concurrent writers queue at BEGIN instead of failing later.
        # A read-only transaction starts deferred (it takes no lock a writer would wait for) and is made
        # query_only, so that a write in it fails instead of silently taking the write lock after all.
        info = conn.connection.info
        read_only = bool(conn.get_execution_options().get(_READ_ONLY))
        if read_only != info.get(_READ_ONLY, False):
            conn.exec_driver_sql(f"PRAGMA query_only = {'ON' if read_only else 'OFF'}")
            info[_READ_ONLY] = read_only
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


def is_sqlite(engine: Engine | Connection) -> bool:
    """Whether the engine (or connection) talks to SQLite."""
    return engine.dialect.name == "sqlite"


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Connection]:
    """A connection inside one transaction: committed when the block ends, rolled back if it raises.

    Args:
        engine: from :func:`create_engine_for`.
        read_only: a reading transaction (dashboard, reports): on SQLite a deferred `BEGIN` that never waits
            for a writer; on PostgreSQL `READ ONLY`. Writing in it fails.

    Yields:
        The connection; pass it to the `gateway.store.repo` functions.

    Raises:
        StoreUnavailable: the database could not be reached, stayed locked beyond its busy timeout, ran out of
            pooled connections, or failed mid-transaction or at commit; the transaction was rolled back.
            Other database errors (an integrity violation, a bug in SQL) propagate unchanged.
    """
    with unavailable_on_failure(), engine.connect() as conn:
        if read_only:
            if is_sqlite(engine):
                conn.execution_options(**{_READ_ONLY: True})
            else:
                conn.execution_options(postgresql_readonly=True)
        with conn.begin():
            yield conn


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Turn the database errors that mean "try again later" into :class:`StoreUnavailable`.

    Those are: `OperationalError` and `InterfaceError` (cannot connect, connection lost, locked beyond the busy
    timeout, serialization failure, deadlock), any error that invalidated the connection, and a pool with no
    free connection. Everything else (an integrity violation, an SQL bug) propagates unchanged.

    Raises:
        StoreUnavailable: chained to the original error.
    """
    try:
        yield
    except PoolTimeoutError as exc:
        raise StoreUnavailable(f"no free database connection: {exc}") from exc
    except DBAPIError as exc:
        if isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated:
            kind = TransientConflict if is_transient(exc.orig) else StoreUnavailable
            raise kind(f"database unavailable: {type(exc.orig).__name__}: {exc.orig}") from exc
        raise
