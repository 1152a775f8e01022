"""Quotas: granted once per 5106, spent never beyond what was granted, even by concurrent transactions."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import IntegrityError

from gateway.store import repo
from gateway.store.db import create_engine_for, transaction
from gateway.store.errors import QuotaExceeded, QuotaUnderflow
from gateway.store.tables import quotas
from protocols import samples

NOW = datetime(2026, 11, 23, 2, 30, 1)
KEY = ("450100", 2026, "101001")
JOIN_TIMEOUT_S = 30.0


def test_grant_use_release(db_engine: Engine) -> None:
    """Grants add up, use and release move `used_fen`, and the record tells what is available."""
    with transaction(db_engine) as conn:
        assert repo.get_quota(conn, *KEY) is None
        assert repo.grant_quota(conn, *KEY, 10_000, NOW).granted_fen == 10_000
        assert repo.grant_quota(conn, *KEY, 5_000, NOW).granted_fen == 15_000
        repo.use_quota(conn, *KEY, 12_000, NOW)
        repo.release_quota(conn, *KEY, 2_000, NOW)
        quota = repo.get_quota(conn, *KEY)
    assert quota is not None
    assert (quota.granted_fen, quota.used_fen, quota.available_fen) == (15_000, 10_000, 5_000)


def test_quota_is_never_overspent_or_over_released(db_engine: Engine) -> None:
    """Spending more than is left raises QuotaExceeded; releasing more than is used, QuotaUnderflow;
    neither changes anything, and an agency without quota has none to spend."""
    with transaction(db_engine) as conn:
        repo.grant_quota(conn, *KEY, 10_000, NOW)
        repo.use_quota(conn, *KEY, 6_000, NOW)
        with pytest.raises(QuotaExceeded) as info:
            repo.use_quota(conn, *KEY, 4_001, NOW)
        assert (info.value.amount_fen, info.value.available_fen) == (4_001, 4_000)
        with pytest.raises(QuotaUnderflow):
            repo.release_quota(conn, *KEY, 6_001, NOW)
        with pytest.raises(QuotaExceeded) as none:
            repo.use_quota(conn, "450100", 2026, "999999", 1, NOW)
        assert none.value.available_fen == 0
        for bad in (0, -5):
            with pytest.raises(ValueError):
                repo.use_quota(conn, *KEY, bad, NOW)
        repo.use_quota(conn, *KEY, 4_000, NOW)  # exactly what is left
        quota = repo.get_quota(conn, *KEY)
    assert quota is not None and (quota.used_fen, quota.available_fen) == (10_000, 0)


def test_the_database_refuses_overspending_by_itself(db_engine: Engine) -> None:
    """A CHECK constraint backs up the conditional update: used_fen never exceeds granted_fen."""
    with transaction(db_engine) as conn:
        repo.grant_quota(conn, *KEY, 100, NOW)
    with pytest.raises(IntegrityError), transaction(db_engine) as conn:
        conn.execute(update(quotas).values(used_fen=101))


def test_the_same_quota_notice_grants_once(db_engine: Engine) -> None:
    """Applying one 5106 twice grants its lines once; another notice number grants again."""
    notice = samples.quota_notice()
    expected: dict[str, int] = {}
    for line in notice.lines:
        expected[line.agency_code] = expected.get(line.agency_code, 0) + line.quota_amt_fen
    with transaction(db_engine) as conn:
        assert repo.apply_quota_notice(conn, notice, NOW)
        assert not repo.apply_quota_notice(conn, notice, NOW)
        assert not repo.record_quota_notice(conn, notice, NOW)
        granted = {a: q.granted_fen for a in expected if (q := repo.get_quota(conn, "450100", 2026, a))}
        assert granted == expected
        assert repo.apply_quota_notice(conn, replace(notice, voucher_no="5106-second"), NOW)
        again = {a: q.granted_fen for a in expected if (q := repo.get_quota(conn, "450100", 2026, a))}
    assert again == {a: 2 * fen for a, fen in expected.items()}


def _run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive(), "a spender hung"


def test_concurrent_spenders_never_overspend(db_url: str) -> None:
    """Four transactions on their own connections race to spend 30 of 100: three succeed, one is refused."""
    engine = create_engine_for(db_url)
    try:
        with transaction(engine) as conn:
            repo.grant_quota(conn, *KEY, 100, NOW)
        start = threading.Barrier(4, timeout=JOIN_TIMEOUT_S)
        outcomes: queue.Queue[str] = queue.Queue()

        def spend() -> None:
            start.wait()
            try:
                with transaction(engine) as conn:
                    repo.use_quota(conn, *KEY, 30, NOW)
                outcomes.put("spent")
            except QuotaExceeded:
                outcomes.put("refused")

        _run_threads([spend] * 4)
        results = sorted(outcomes.get_nowait() for _ in range(4))
        with transaction(engine, read_only=True) as conn:
            quota = repo.get_quota(conn, *KEY)
    finally:
        engine.dispose()
    assert results == ["refused", "spent", "spent", "spent"]
    assert quota is not None and quota.used_fen == 90


def test_a_waiting_spender_rechecks_after_the_first_commits(pg_db_engine: Engine, pg_database_url: str) -> None:
    """PostgreSQL: B's conditional UPDATE waits on A's row lock (observed in pg_locks, not guessed with a sleep),
    then re-evaluates its condition against A's committed spend and is refused."""
    with transaction(pg_db_engine) as conn:
        repo.grant_quota(conn, *KEY, 100, NOW)
    other = create_engine_for(pg_database_url)
    b_pid: queue.Queue[int] = queue.Queue()
    b_result: queue.Queue[str] = queue.Queue()

    def spender_b() -> None:
        try:
            with transaction(other) as conn:
                b_pid.put(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                repo.use_quota(conn, *KEY, 60, NOW)
            b_result.put("spent")
        except QuotaExceeded as exc:
            b_result.put(f"refused, {exc.available_fen} available")

    try:
        with transaction(pg_db_engine) as a:
            repo.use_quota(a, *KEY, 60, NOW)
            thread = threading.Thread(target=spender_b, daemon=True)
            thread.start()
            pid = b_pid.get(timeout=JOIN_TIMEOUT_S)
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            with transaction(pg_db_engine, read_only=True) as probe:
                blocked = text("SELECT cardinality(pg_blocking_pids(:pid)) > 0")
                while not probe.execute(blocked, {"pid": pid}).scalar_one():
                    assert time.monotonic() < deadline, "B never waited for A's row lock"
            assert b_result.empty()  # B is still waiting while A has not committed
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive()
    finally:
        other.dispose()
    assert b_result.get_nowait() == "refused, 40 available"
    with transaction(pg_db_engine, read_only=True) as conn:
        quota = repo.get_quota(conn, *KEY)
    assert quota is not None and quota.used_fen == 60
