"""A PostgreSQL deadlock victim is a TransientConflict (run again at once), not an outage; on the hub it is retried."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from gateway.store.db import StoreUnavailable, transaction
from gateway.store.errors import TransientConflict, is_transient


@pytest.fixture
def two_rows(pg_engine: Engine) -> Iterator[str]:
    name = "transient_probe"
    with pg_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(text(f"CREATE TABLE {name} (id integer PRIMARY KEY, n integer NOT NULL)"))
        conn.execute(text(f"INSERT INTO {name} VALUES (1, 0), (2, 0)"))
    yield name
    with pg_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {name}"))


def test_a_deadlock_victim_is_a_transient_conflict(pg_engine: Engine, two_rows: str) -> None:
    """Two transactions lock two rows in opposite orders: PostgreSQL fails exactly one with 40P01, which the store
    reports as TransientConflict (a StoreUnavailable, so every existing handler still answers 91099 when retries
    run out); the other commits."""
    both_hold_one = threading.Barrier(2, timeout=60)
    outcomes: dict[int, BaseException | None] = {}

    def worker(first: int, second: int) -> None:
        try:
            with transaction(pg_engine) as conn:
                conn.execute(text(f"UPDATE {two_rows} SET n = n + 1 WHERE id = :id"), {"id": first})
                both_hold_one.wait()
                conn.execute(text(f"UPDATE {two_rows} SET n = n + 1 WHERE id = :id"), {"id": second})
            outcomes[first] = None
        except BaseException as exc:  # recorded and asserted below
            outcomes[first] = exc

    threads = [threading.Thread(target=worker, args=(1, 2)), threading.Thread(target=worker, args=(2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == 2, outcomes
    failed = [exc for exc in outcomes.values() if exc is not None]
    assert len(failed) == 1, outcomes
    assert isinstance(failed[0], TransientConflict) and isinstance(failed[0], StoreUnavailable)
    assert "deadlock" in str(failed[0]).lower()
    with pg_engine.connect() as conn:
        assert conn.execute(text(f"SELECT sum(n) FROM {two_rows}")).scalar_one() == 2  # one committed both rows


def test_only_deadlocks_and_serialization_failures_are_transient() -> None:
    import psycopg.errors as pg

    assert is_transient(pg.DeadlockDetected("x")) and is_transient(pg.SerializationFailure("x"))
    assert not is_transient(pg.OperationalError("x")) and not is_transient(pg.UniqueViolation("x"))
    assert not is_transient(ValueError("no sqlstate at all"))
