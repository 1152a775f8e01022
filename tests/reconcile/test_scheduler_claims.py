"""The nightly run's claims in `recon_schedule` (gateway.reconcile.scheduler), on SQLite and PostgreSQL.

Exactly one of any number of racing processes claims a bank's date; a claim whose lease ran out unfinished is
taken over by exactly one, attempts + 1, up to max_attempts; a finished one is never taken again.
"""

from __future__ import annotations

import queue
import threading
import time as monotonic_time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine, select, text

from gateway.reconcile.scheduler import (
    DONE,
    FAILED,
    ScheduleRow,
    claim,
    fail,
    finish,
    recent_rows,
    renew,
    schedule_rows,
)
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import recon_schedule

BANK: Final = "ICBC"
DAY: Final = date(2026, 11, 23)
T0: Final = datetime(2026, 11, 23, 18, 0)  # 02:00 on 2026-11-24 in Shanghai, naive UTC as stored
LEASE: Final = timedelta(seconds=600)
RETRY: Final = timedelta(seconds=900)
RACERS: Final = 6
JOIN_TIMEOUT_S: Final = 60.0


def _in(engine: Engine, fn: Callable[..., Any], *args: Any) -> Any:
    with transaction(engine) as conn:
        return fn(conn, *args)


def _row(engine: Engine, bank: str = BANK, day: date = DAY) -> ScheduleRow:
    with transaction(engine, read_only=True) as conn:
        return schedule_rows(conn, day)[bank]


def _race(db_url: str, now: datetime) -> list[str]:
    """RACERS processes (each its own engine, as separate gateways have) claim at once; returns the winners."""
    engines = [create_engine_for(db_url) for _ in range(RACERS)]
    start = threading.Barrier(RACERS, timeout=JOIN_TIMEOUT_S)
    won: queue.Queue[str] = queue.Queue()
    errors: queue.Queue[BaseException] = queue.Queue()

    def racer(n: int) -> None:
        try:
            start.wait()
            if _in(engines[n], claim, BANK, DAY, f"node-{n}", now, LEASE, 3):
                won.put(f"node-{n}")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.put(exc)

    threads = [threading.Thread(target=racer, args=(n,), daemon=True) for n in range(RACERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
            assert not thread.is_alive(), "a claimant hung"
    finally:
        for engine in engines:
            engine.dispose()
    assert errors.empty(), errors.get_nowait()
    return [won.get_nowait() for _ in range(won.qsize())]


def test_racing_processes_one_wins_the_first_claim(db_url: str, db_engine: Engine) -> None:
    winners = _race(db_url, T0)
    assert len(winners) == 1
    row = _row(db_engine)
    assert (row.claimed_by, row.attempts, row.finished_at, row.outcome) == (winners[0], 1, None, None)
    assert (row.claimed_at, row.lease_until) == (T0, T0 + LEASE)


def test_racing_processes_one_takes_over_an_expired_claim(db_url: str, db_engine: Engine) -> None:
    assert _in(db_engine, claim, BANK, DAY, "dead-node", T0, LEASE, 3)
    assert _race(db_url, T0 + LEASE - timedelta(microseconds=1)) == []  # the lease still holds
    winners = _race(db_url, T0 + LEASE)
    assert len(winners) == 1
    row = _row(db_engine)
    assert (row.claimed_by, row.attempts, row.lease_until) == (winners[0], 2, T0 + 2 * LEASE)


def test_a_finished_run_is_never_claimed_again(db_engine: Engine) -> None:
    assert _in(db_engine, claim, BANK, DAY, "a", T0, LEASE, 3)
    assert _in(db_engine, finish, BANK, DAY, "a", DONE, '{"breaks":0}', T0 + timedelta(minutes=5))
    for later in (T0 + LEASE, T0 + timedelta(days=30)):
        for node in ("a", "b"):
            assert not _in(db_engine, claim, BANK, DAY, node, later, LEASE, 3)
    row = _row(db_engine)
    assert (row.outcome, row.detail, row.attempts, row.claimed_by) == (DONE, '{"breaks":0}', 1, "a")
    assert row.finished_at == T0 + timedelta(minutes=5)


def test_only_the_claimant_renews_or_finishes(db_engine: Engine) -> None:
    assert _in(db_engine, claim, BANK, DAY, "a", T0, LEASE, 3)
    later = T0 + timedelta(minutes=7)
    assert not _in(db_engine, renew, BANK, DAY, "b", later, LEASE)
    assert not _in(db_engine, finish, BANK, DAY, "b", DONE, "", later)
    assert _row(db_engine).lease_until == T0 + LEASE
    assert _in(db_engine, renew, BANK, DAY, "a", later, LEASE)
    assert _row(db_engine).lease_until == later + LEASE
    assert not _in(db_engine, claim, BANK, DAY, "b", T0 + LEASE, LEASE, 3)  # renewed: not expired yet
    assert _in(db_engine, claim, BANK, DAY, "b", later + LEASE, LEASE, 3)  # a run that stopped renewing
    assert not _in(db_engine, renew, BANK, DAY, "a", later + LEASE, LEASE)  # "a" learns it lost the claim
    assert not _in(db_engine, finish, BANK, DAY, "a", DONE, "", later + LEASE)
    assert _in(db_engine, finish, BANK, DAY, "b", DONE, "", later + LEASE)


def test_a_failure_waits_retry_after_then_any_process_tries_again_up_to_max_attempts(db_engine: Engine) -> None:
    now = T0
    assert _in(db_engine, claim, BANK, DAY, "a", now, LEASE, 3)
    for attempt in (1, 2):
        assert _in(db_engine, fail, BANK, DAY, "a" if attempt == 1 else "b", f"err {attempt}", now, RETRY, 3) == "retry"
        row = _row(db_engine)
        assert (row.outcome, row.detail, row.finished_at, row.lease_until) == (
            FAILED,
            f"err {attempt}",
            None,
            now + RETRY,
        )
        assert not _in(db_engine, claim, BANK, DAY, "b", now + RETRY - timedelta(seconds=1), LEASE, 3)
        now = now + RETRY
        assert _in(db_engine, claim, BANK, DAY, "b", now, LEASE, 3)
        assert _row(db_engine).attempts == attempt + 1
    assert _in(db_engine, fail, BANK, DAY, "b", "err 3", now, RETRY, 3) == "gave_up"
    row = _row(db_engine)
    assert (row.outcome, row.detail, row.finished_at, row.attempts) == (FAILED, "err 3", now, 3)
    assert not _in(db_engine, claim, BANK, DAY, "c", now + timedelta(days=1), LEASE, 3)
    assert _in(db_engine, fail, BANK, DAY, "b", "late", now, RETRY, 3) == "lost"


def test_a_last_attempt_whose_process_died_is_closed_as_failed(db_engine: Engine) -> None:
    assert _in(db_engine, claim, BANK, DAY, "a", T0, LEASE, 1)  # one attempt allowed; "a" dies running it
    assert not _in(db_engine, claim, BANK, DAY, "b", T0 + LEASE - timedelta(seconds=1), LEASE, 1)
    assert _row(db_engine).finished_at is None
    assert not _in(db_engine, claim, BANK, DAY, "b", T0 + LEASE, LEASE, 1)
    row = _row(db_engine)
    assert (row.outcome, row.finished_at, row.attempts, row.claimed_by) == (FAILED, T0 + LEASE, 1, "a")
    assert row.detail == "the last attempt, by a, did not finish within its lease"


def test_claims_are_per_bank_and_date(db_engine: Engine) -> None:
    assert _in(db_engine, claim, "ICBC", DAY, "a", T0, LEASE, 3)
    assert _in(db_engine, claim, "CCB", DAY, "b", T0, LEASE, 3)
    assert _in(db_engine, claim, "ICBC", DAY + timedelta(days=1), "b", T0, LEASE, 3)
    assert not _in(db_engine, claim, "CCB", DAY, "a", T0, LEASE, 3)
    with transaction(db_engine, read_only=True) as conn:
        assert sorted(schedule_rows(conn, DAY)) == ["CCB", "ICBC"]
        assert [(r.check_date, r.bank_code) for r in recent_rows(conn, DAY)] == [
            (DAY + timedelta(days=1), "ICBC"),
            (DAY, "CCB"),
            (DAY, "ICBC"),
        ]


def test_a_long_node_name_is_cut_to_the_column(db_engine: Engine) -> None:
    node = "host-" + "x" * 100
    assert _in(db_engine, claim, BANK, DAY, node, T0, LEASE, 3)
    assert _row(db_engine).claimed_by == node[:64]
    assert _in(db_engine, finish, BANK, DAY, node, DONE, "", T0)


def _wait_blocked(engine: Engine, pid: int) -> None:
    """Until PostgreSQL backend `pid` waits for a lock (observed in pg_locks, not guessed with a sleep)."""
    deadline = monotonic_time.monotonic() + JOIN_TIMEOUT_S
    with transaction(engine, read_only=True) as probe:
        blocked = text("SELECT cardinality(pg_blocking_pids(:pid)) > 0")
        while not probe.execute(blocked, {"pid": pid}).scalar_one():
            assert monotonic_time.monotonic() < deadline, "the second claimant never waited for the first"


def _second_claimant(url: str, now: datetime, pid: queue.Queue[int], result: queue.Queue[bool]) -> threading.Thread:
    def run() -> None:
        engine = create_engine_for(url)
        try:
            with transaction(engine) as conn:
                pid.put(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                result.put(claim(conn, BANK, DAY, "b", now, LEASE, 3))
        finally:
            engine.dispose()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_postgresql_a_claim_waits_for_the_uncommitted_first_and_then_loses(
    pg_db_engine: Engine, pg_database_url: str
) -> None:
    """B's INSERT waits on A's uncommitted row (ON CONFLICT must know A's outcome), then does nothing; B's
    takeover UPDATE then finds A's live lease: B loses. Interleaving forced, not hoped for."""
    pid: queue.Queue[int] = queue.Queue()
    result: queue.Queue[bool] = queue.Queue()
    with transaction(pg_db_engine) as a:
        assert claim(a, BANK, DAY, "a", T0, LEASE, 3)
        thread = _second_claimant(pg_database_url, T0, pid, result)
        _wait_blocked(pg_db_engine, pid.get(timeout=JOIN_TIMEOUT_S))
        assert result.empty()
    thread.join(JOIN_TIMEOUT_S)
    assert not thread.is_alive()
    assert result.get_nowait() is False
    assert _row(pg_db_engine).claimed_by == "a"


def test_postgresql_a_takeover_waits_for_the_other_takeover_and_rechecks(
    pg_db_engine: Engine, pg_database_url: str
) -> None:
    """Both see an expired claim; B's UPDATE waits on A's row lock, re-evaluates its WHERE against A's committed
    fresh lease, and takes nothing."""
    assert _in(pg_db_engine, claim, BANK, DAY, "dead", T0, LEASE, 3)
    pid: queue.Queue[int] = queue.Queue()
    result: queue.Queue[bool] = queue.Queue()
    with transaction(pg_db_engine) as a:
        assert claim(a, BANK, DAY, "a", T0 + LEASE, LEASE, 3)
        thread = _second_claimant(pg_database_url, T0 + LEASE, pid, result)
        _wait_blocked(pg_db_engine, pid.get(timeout=JOIN_TIMEOUT_S))
    thread.join(JOIN_TIMEOUT_S)
    assert not thread.is_alive()
    assert result.get_nowait() is False
    row = _row(pg_db_engine)
    assert (row.claimed_by, row.attempts) == ("a", 2)


def test_rows_are_stored_as_given(db_engine: Engine) -> None:
    assert _in(db_engine, claim, BANK, DAY, "a", T0, LEASE, 3)
    with transaction(db_engine, read_only=True) as conn:
        (raw,) = conn.execute(select(recon_schedule)).mappings()
    assert raw["check_date"] == DAY and raw["claimed_at"] == T0 and raw["lease_until"] == T0 + LEASE
