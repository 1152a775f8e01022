"""The store's transaction runner: one transaction per call, committed on return, rolled back on raise, and a store
that cannot be reached (or is busy, or drops the connection) reported as StoreUnavailable — never anything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from twisted.internet import defer
from twisted.python.failure import Failure

from gateway.dbthread import Database, InlineDatabase, in_transaction
from gateway.store import repo
from gateway.store.db import create_engine_for, transaction
from gateway.store.errors import StoreUnavailable
from gateway.store.tables import meta
from tests.gateway.conftest import emptied

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/tgw"


@pytest.fixture
def pg_db_engine(pg_engine: Engine) -> Engine:
    """The session's PostgreSQL database, emptied quickly for this module (see tests.gateway.conftest.emptied)."""
    return emptied(pg_engine)


def stored(engine: Engine, key: str) -> str | None:
    with transaction(engine, read_only=True) as conn:
        return repo.get_meta(conn, key)


def outcome(d: defer.Deferred[Any]) -> Any:
    """What an already-fired Deferred holds: its result, or the Failure (consumed)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


def test_a_call_that_returns_is_committed(db_engine: Engine) -> None:
    assert in_transaction(db_engine, lambda conn, v: repo.set_meta(conn, "k", v) or "done", "v1") == "done"
    assert stored(db_engine, "k") == "v1"


def test_a_call_that_raises_is_rolled_back_and_its_error_propagates(db_engine: Engine) -> None:
    def half_done(conn: Connection) -> None:
        repo.set_meta(conn, "k", "half")
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        in_transaction(db_engine, half_done)
    assert stored(db_engine, "k") is None


def test_an_integrity_error_is_not_store_unavailable(db_engine: Engine) -> None:
    """A constraint violation is a definite answer (a bug or a duplicate), not a temporary failure."""
    in_transaction(db_engine, lambda conn: repo.set_meta(conn, "k", "first"))

    def duplicate(conn: Connection) -> None:
        repo.set_meta(conn, "other", "x")
        conn.execute(insert(meta).values(key="k", value="second"))

    with pytest.raises(IntegrityError):
        in_transaction(db_engine, duplicate)
    assert (stored(db_engine, "k"), stored(db_engine, "other")) == ("first", None)


def test_an_unreachable_postgresql_is_store_unavailable() -> None:
    engine = create_engine_for(UNREACHABLE, connect_timeout_s=2)
    try:
        with pytest.raises(StoreUnavailable):
            in_transaction(engine, lambda conn: conn.execute(text("SELECT 1")))
    finally:
        engine.dispose()


def test_a_busy_sqlite_is_store_unavailable(sqlite_db_url: str) -> None:
    """Another writer holds the lock beyond the busy timeout: StoreUnavailable, and nothing was written."""
    holder = create_engine_for(sqlite_db_url)
    impatient = create_engine_for(sqlite_db_url, busy_timeout_ms=0)
    try:
        with transaction(holder) as locked:
            repo.set_meta(locked, "held", "yes")
            with pytest.raises(StoreUnavailable):
                in_transaction(impatient, lambda conn: repo.set_meta(conn, "k", "v"))
        assert stored(holder, "k") is None and stored(holder, "held") == "yes"
    finally:
        holder.dispose()
        impatient.dispose()


def test_a_connection_lost_mid_transaction_is_store_unavailable_and_records_nothing(pg_db_engine: Engine) -> None:
    def dies(conn: Connection) -> None:
        repo.set_meta(conn, "k", "v")
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(StoreUnavailable):
        in_transaction(pg_db_engine, dies)
    assert stored(pg_db_engine, "k") is None


# --- InlineDatabase and Database -------------------------------------------------------------------------------------


def test_inline_database_fires_with_the_result(db_engine: Engine) -> None:
    db = InlineDatabase(db_engine)
    db.start()
    assert outcome(db.run(lambda conn, a, b: (repo.set_meta(conn, "k", a), a + b)[1], "x", "y")) == "xy"
    assert stored(db_engine, "k") == "x"
    db.stop()


def test_inline_database_fails_with_store_unavailable() -> None:
    engine = create_engine_for(UNREACHABLE, connect_timeout_s=2)
    try:
        failure = outcome(InlineDatabase(engine).run(lambda conn: 1))
        assert isinstance(failure, Failure) and failure.check(StoreUnavailable)
    finally:
        engine.dispose()


class _InlinePool:
    """A stand-in for the store's ThreadPool that runs the work at once on the calling thread."""

    def __init__(self) -> None:
        self.calls = 0

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], fn: Callable[..., Any], *args: Any
    ) -> None:
        self.calls += 1
        try:
            result = fn(*args)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class _Reactor:
    """Delivers results "from the thread" at once."""

    def callFromThread(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)


def test_database_runs_each_call_as_one_transaction_on_its_pool(db_engine: Engine) -> None:
    db = Database(db_engine, _Reactor())  # type: ignore[arg-type]
    pool = _InlinePool()
    db.pool = pool  # type: ignore[assignment]
    assert outcome(db.run(lambda conn: repo.set_meta(conn, "k", "v") or 7)) == 7
    failure = outcome(db.run(lambda conn: (repo.set_meta(conn, "k", "w"), 1 / 0)))
    assert isinstance(failure, Failure) and failure.check(ZeroDivisionError)
    assert pool.calls == 2 and stored(db_engine, "k") == "v"


def test_database_sizes_its_pool_by_backend(sqlite_db_url: str, pg_db_engine: Engine) -> None:
    """SQLite gets one store thread (its writes serialize anyway), PostgreSQL several, unless told otherwise."""
    sqlite = create_engine_for(sqlite_db_url)
    try:
        assert Database(sqlite, _Reactor()).pool.max == 1  # type: ignore[arg-type]
        assert Database(pg_db_engine, _Reactor()).pool.max == 4  # type: ignore[arg-type]
        assert Database(pg_db_engine, _Reactor(), threads_max=2).pool.max == 2  # type: ignore[arg-type]
    finally:
        sqlite.dispose()
