"""The ledger port and the sink on the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

from gateway.reconcile.store_port import DayRun, StoreLedger, open_breaks, run_day, stored_breaks
from gateway.store.db import transaction
from gateway.store.tables import recon_breaks, recon_matches, recon_runs
from reconciliation.formats import STANDARD_TEXT
from reconciliation.model import BreakClass, Status, Totals
from reconciliation.ports import TempFileScratch
from reconciliation.readers import read_text
from tests.gateway.conftest import NOW_NAIVE
from tests.reconcile.helpers import BANK, CHECK_DATE, seed_ledger, spoilt_statement, true_statement, write_text

INJECTED = {
    BreakClass.MISSING_AT_BANK: 1,
    BreakClass.MISSING_IN_LEDGER: 1,
    BreakClass.AMOUNT_MISMATCH: 1,
    BreakClass.PAYEE_MISMATCH: 1,
    BreakClass.DUPLICATE: 1,
    BreakClass.SUMMARY_MISMATCH: 1,
}


def _count(engine: Engine, table: object) -> int:
    with transaction(engine, read_only=True) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_entries_in_key_order_with_returns_and_failures(db_engine: Engine) -> None:
    seed_ledger(db_engine, 12, failed=2, returned=1)
    port = StoreLedger(db_engine)
    entries = list(port.entries(BANK, CHECK_DATE))
    assert len(entries) == 13
    assert [(e.vt_code, e.voucher_no) for e in entries] == sorted((e.vt_code, e.voucher_no) for e in entries)
    assert [e.status for e in entries].count(Status.FAILED) == 2
    (ret,) = [e for e in entries if e.vt_code == "2252"]
    assert ret.status is Status.RETURNED and ret.amount_fen < 0 and ret.serial == f"{BANK}R000000"
    assert port.control_totals(BANK, CHECK_DATE) == Totals(len(entries), sum(e.amount_fen for e in entries))
    assert list(port.entries(BANK, CHECK_DATE.replace(day=22))) == []
    assert list(port.entries("ABC", CHECK_DATE)) == []


def test_a_clean_statement_links_every_paid_voucher(db_engine: Engine, tmp_path: Path) -> None:
    seed_ledger(db_engine, 8, failed=1, returned=1)
    day = run_day(
        db_engine,
        BANK,
        CHECK_DATE,
        read_text(str(write_text(tmp_path / "s.txt", true_statement(db_engine))), STANDARD_TEXT),
        scratch=TempFileScratch(str(tmp_path)),
        now=NOW_NAIVE,
    )
    assert day.result.breaks == () and day.carry.open == ()
    assert day.result.matched == 9
    assert day.linked == 8 == _count(db_engine, recon_matches)  # every voucher, the failed one too; not the return
    assert _count(db_engine, recon_breaks) == 0


def test_injected_breaks_are_found_stored_and_rerunning_replaces_the_run(db_engine: Engine, tmp_path: Path) -> None:
    seed_ledger(db_engine, 20, failed=2, returned=1)
    lines, injected = spoilt_statement(db_engine, INJECTED)
    path = write_text(tmp_path / "s.txt", lines, injected.declared(lines))
    first = run_day(
        db_engine,
        BANK,
        CHECK_DATE,
        read_text(str(path), STANDARD_TEXT),
        scratch=TempFileScratch(str(tmp_path)),
        now=NOW_NAIVE,
    )
    assert first.result.counts() == injected.counts
    stored = list(stored_breaks(db_engine, BANK, CHECK_DATE))
    assert sorted(b.identity for b in stored) == sorted(b.identity for b in first.result.breaks)
    assert {cls: sorted(b.key for b in stored if b.break_class is cls) for cls in injected.keys} == {
        cls: list(keys) for cls, keys in injected.keys.items()
    }
    links = _count(db_engine, recon_matches)

    second = run_day(
        db_engine,
        BANK,
        CHECK_DATE,
        read_text(str(path), STANDARD_TEXT),
        scratch=TempFileScratch(str(tmp_path)),
        now=NOW_NAIVE,
    )
    assert second.result.counts() == injected.counts
    assert _count(db_engine, recon_runs) == 1
    assert _count(db_engine, recon_breaks) == len(first.result.breaks)
    assert _count(db_engine, recon_matches) == links
    with transaction(db_engine, read_only=True) as conn:
        assert len(open_breaks(conn, BANK)) == len(first.result.breaks)


def test_the_next_days_statement_closes_a_timing_break_and_older_breaks_age(db_engine: Engine, tmp_path: Path) -> None:
    seed_ledger(db_engine, 10, failed=1, returned=0)
    counts = {BreakClass.CUTOFF_TIMING: 1, BreakClass.MISSING_AT_BANK: 1}
    seed = next(s for s in range(100) if spoilt_statement(db_engine, counts, seed=s)[1].next_day)
    lines, injected = spoilt_statement(db_engine, counts, seed=seed)
    day1 = _run_file(db_engine, write_text(tmp_path / "d1.txt", lines), CHECK_DATE)
    assert day1.result.counts() == injected.counts

    next_date = CHECK_DATE + timedelta(days=1)
    path2 = write_text(tmp_path / "d2.txt", list(injected.next_day), day=next_date)
    for _ in range(2):  # the second run of the date replaces the first
        day2 = _run_file(db_engine, path2, next_date)
        assert day2.result.breaks == () and day2.result.carried_in.count == 1
        assert [b.break_class for b in day2.carry.closed] == [BreakClass.CUTOFF_TIMING]
        assert [(b.break_class, b.age_days) for b in day2.carry.open] == [(BreakClass.MISSING_AT_BANK, 1)]
        with transaction(db_engine, read_only=True) as conn:
            still_open = open_breaks(conn, BANK)
            rows = conn.execute(select(recon_breaks.c.break_class, recon_breaks.c.closed_reason)).all()
        assert [b.break_class for _, b in still_open] == [BreakClass.MISSING_AT_BANK]
        assert sorted(rows) == [("cutoff_timing", "cleared"), ("missing_at_bank", None)]
    assert _count(db_engine, recon_runs) == 2


def _run_file(engine: Engine, path: Path, day: date) -> DayRun:
    return run_day(
        engine, BANK, day, read_text(str(path), STANDARD_TEXT), scratch=TempFileScratch(str(path.parent)), now=NOW_NAIVE
    )
