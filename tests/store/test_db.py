"""Engines and transactions: SQLite pragmas and BEGIN IMMEDIATE in effect, read-only transactions, and
StoreUnavailable for exactly the failures that mean "try again later"."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.store import repo
from gateway.store.db import create_engine_for, sqlite_url_for, transaction
from gateway.store.errors import StoreUnavailable
from gateway.store.tables import meta

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/tgw_test_nowhere"


def test_sqlite_pragmas_are_in_effect_on_every_connection(tmp_path: Path) -> None:
    """WAL, foreign keys on, synchronous NORMAL and the busy timeout, on each pooled connection."""
    engine = create_engine_for(sqlite_url_for(tmp_path), busy_timeout_ms=1234)
    try:
        with transaction(engine, read_only=True) as first, transaction(engine, read_only=True) as second:
            assert first.connection.driver_connection is not second.connection.driver_connection
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        engine.dispose()
    assert (tmp_path / "gateway.db").is_file()


def test_foreign_keys_are_enforced(db_engine: Engine) -> None:
    """A history entry for a voucher that does not exist is refused by the database itself."""
    with pytest.raises(IntegrityError), transaction(db_engine) as conn:
        conn.execute(
            text(
                "INSERT INTO voucher_history (voucher_id, seq, at, event, to_state, actor, detail, prev_hash, hash)"
                " VALUES (999, 1, '2026-11-23 00:00:00', 'x', 'ACCEPTED', 'test', '{}', 'p', 'h')"
            )
        )


def test_sqlite_write_transactions_begin_immediate(sqlite_db_url: str) -> None:
    """An open write transaction holds the write lock from BEGIN on, even before it writes: a second writer
    waits (here: busy_timeout 0, so it fails at once with StoreUnavailable) instead of failing mid-way."""
    holder = create_engine_for(sqlite_db_url)
    impatient = create_engine_for(sqlite_db_url, busy_timeout_ms=0)
    try:
        with transaction(holder) as conn:
            assert repo.get_meta(conn, "node") is None  # only a read, yet the write lock is held
            with pytest.raises(StoreUnavailable, match="locked"), transaction(impatient) as other:
                repo.set_meta(other, "node", "450100000000")
        with transaction(impatient) as other:  # once the first commits, the second gets through
            repo.set_meta(other, "node", "450100000000")
        with transaction(holder, read_only=True) as conn:
            assert repo.get_meta(conn, "node") == "450100000000"
    finally:
        holder.dispose()
        impatient.dispose()


def test_read_only_transaction_does_not_block_a_writer(db_url: str) -> None:
    """A dashboard's read-only transaction never makes a writer wait (WAL + deferred BEGIN on SQLite)."""
    reader = create_engine_for(db_url)
    writer = create_engine_for(db_url, busy_timeout_ms=0)
    try:
        with transaction(reader, read_only=True) as conn:
            assert repo.get_meta(conn, "k") is None
            with transaction(writer) as other:
                repo.set_meta(other, "k", "v")
        with transaction(reader, read_only=True) as conn:
            assert repo.get_meta(conn, "k") == "v"
    finally:
        reader.dispose()
        writer.dispose()


def test_read_only_transaction_refuses_writes_and_does_not_leak(db_engine: Engine) -> None:
    """Writing in a read-only transaction fails, and the pooled connection is writable again afterwards."""
    refused = pytest.raises((StoreUnavailable, DBAPIError), match=r"(?i)read.?only")
    with refused, transaction(db_engine, read_only=True) as conn:
        conn.execute(meta.insert().values(key="k", value="v"))
    for _ in range(3):  # whichever pooled connection comes back, it writes
        with transaction(db_engine) as conn:
            repo.set_meta(conn, "k", "v")
    with transaction(db_engine, read_only=True) as conn:
        assert repo.get_meta(conn, "k") == "v"


def test_unreachable_postgresql_is_store_unavailable() -> None:
    """Nothing listens on 127.0.0.1:1: connecting raises StoreUnavailable (the gateway answers 91099)."""
    engine = create_engine_for(UNREACHABLE_PG, connect_timeout_s=2)
    try:
        with pytest.raises(StoreUnavailable, match="database unavailable") as info, transaction(engine):
            pass
        assert info.value.result_code == 91099
        assert info.value.__cause__ is not None
    finally:
        engine.dispose()


def test_integrity_errors_are_not_store_unavailable(db_engine: Engine) -> None:
    """A constraint violation is a definite answer, not a temporary failure: it propagates unchanged."""
    with transaction(db_engine) as conn:
        repo.set_meta(conn, "k", "v")
    with pytest.raises(IntegrityError), transaction(db_engine) as conn:
        conn.execute(meta.insert().values(key="k", value="again"))


def test_a_failed_transaction_records_nothing(db_engine: Engine) -> None:
    """An exception inside the block rolls everything in it back."""
    with pytest.raises(RuntimeError), transaction(db_engine) as conn:
        repo.set_meta(conn, "k", "v")
        raise RuntimeError("boom")
    with transaction(db_engine, read_only=True) as conn:
        assert repo.get_meta(conn, "k") is None


def test_postgresql_urls_get_psycopg3() -> None:
    """A plain postgresql:// URL runs on psycopg 3; SQLite's default lives in the instance directory."""
    engine = create_engine_for(UNREACHABLE_PG)
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()
    assert sqlite_url_for(Path("/srv/tgw")) == "sqlite:////srv/tgw/gateway.db"
