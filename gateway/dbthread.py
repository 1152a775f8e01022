"""Runs store work off the reactor: each call is one transaction on the store's own thread pool.

The reactor thread never blocks on the database. SQLite gets one thread (its writes serialize anyway, and one
writer avoids lock contention); PostgreSQL a few. A function given to :meth:`Database.run` receives an open
:class:`~sqlalchemy.engine.Connection` inside a transaction that commits when it returns and rolls back when
it raises; a database that cannot be reached or fails to commit raises
:class:`~gateway.store.db.StoreUnavailable` (the gateway answers 91099 and has recorded nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool

from gateway.store.db import StoreUnavailable
from gateway.store.errors import TransientConflict, is_transient

T = TypeVar("T")


def in_transaction(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(conn, *args)` in one transaction (the caller's thread)."""
    try:
        with engine.begin() as conn:
            return fn(conn, *args)
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError) and not exc.connection_invalidated:
            raise
        kind = TransientConflict if is_transient(exc.orig) else StoreUnavailable
        raise kind(str(exc.orig) if exc.orig is not None else str(exc)) from exc


class Database:
    """The store's thread pool and engine."""

    def __init__(self, engine: Engine, reactor: IReactorFromThreads, threads_max: int | None = None) -> None:
        self.engine = engine
        self.reactor = reactor
        size = threads_max or (1 if engine.dialect.name == "sqlite" else 4)
        self.pool = ThreadPool(minthreads=1, maxthreads=size, name="store")
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.pool.stop()
            self._started = False

    def run(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Run `fn(conn, *args)` in one transaction on the store thread; the Deferred fires on the reactor."""
        return threads.deferToThreadPool(self.reactor, self.pool, in_transaction, self.engine, fn, *args)  # type: ignore[arg-type]


class InlineDatabase(Database):
    """Runs store work synchronously on the calling thread: for unit tests driven by a fake clock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        try:
            return defer.succeed(in_transaction(self.engine, fn, *args))
        except Exception:
            return defer.fail()


_ = Connection
