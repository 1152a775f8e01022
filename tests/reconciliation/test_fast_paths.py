"""The matcher's fast paths give exactly what its general paths give, and leave the process as they found it.

The fast paths (docs/performance.md, "Reconciliation"): the merge accepting whole stretches that agree
(`_Run._agreeing`), the external sorter's own lists (`sorted_blocks`), input already in key order staged as one
run, and fewer garbage collections while a run streams.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.messages import StatementDetail
from reconciliation import matcher
from reconciliation.errors import StatementError
from reconciliation.extsort import ExternalSorter, Record
from reconciliation.formats import STANDARD_TEXT
from reconciliation.inject import inject
from reconciliation.matcher import GC_YOUNG_THRESHOLD, MatchLimits, reconcile
from reconciliation.model import Break, BreakClass, LedgerEntry, RunResult
from reconciliation.ports import InMemorySink, TempFileScratch
from reconciliation.readers import StatementStream, read_text
from tests.reconciliation.conftest import BANK, CHECK_DATE, ledger_of, make_lines, statement_of


class ListSorter:
    """A sorter that is not the external one: the matcher reads it record by record, in chunks."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, record: Record) -> None:
        self.records.append(record)

    def extend(self, records: object) -> None:
        self.records.extend(records)  # type: ignore[call-overload]

    def sorted(self) -> Iterator[Record]:
        return iter(sorted(self.records, key=lambda r: r[0]))

    def close(self) -> None:
        self.records = []

    def __enter__(self) -> ListSorter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ListScratch:
    def sorter(self) -> ListSorter:
        return ListSorter()


def _run(
    ledger: list[LedgerEntry], statement: StatementStream, scratch: object, limits: MatchLimits
) -> tuple[RunResult, list[LedgerEntry], int]:
    sink = InMemorySink()
    result = reconcile(
        ledger,
        statement,
        bank=BANK,
        check_date=CHECK_DATE,
        scratch=scratch,  # type: ignore[arg-type]
        sink=sink,
        limits=limits,
    )
    return result, sink.reconciled_entries, sink.batches


def _spoilt(seed: int, n: int, twice: list[int]) -> tuple[list[LedgerEntry], list[StatementDetail]]:
    """A ledger and a statement with breaks of every class, and some vouchers held twice (two years)."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    lines = make_lines(n, rng)
    counts = {cls: rng.randrange(0, 3) for cls in BreakClass if cls is not BreakClass.SUMMARY_MISMATCH}
    spoilt, _injected = inject(lines, rng, counts if n >= 20 else {}, check_date=CHECK_DATE)
    ledger = ledger_of(lines)
    for at in sorted({t % len(ledger) for t in twice} if ledger else (), reverse=True):
        ledger.insert(at, ledger[at]._replace(st_year=2025, serial=f"OLD{at}"))
    return ledger, spoilt


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 80),
    twice=st.lists(st.integers(0, 79), max_size=3),
    chunk=st.sampled_from([1, 2, 5, 256]),
)
def test_the_stretch_path_of_the_merge_agrees_with_the_key_by_key_path(
    seed: int, n: int, twice: list[int], chunk: int
) -> None:
    """Breaks, matches and the sink's entries (in order and batches) are the same with the fast path off."""
    ledger, spoilt = _spoilt(seed, n, twice)
    limits = MatchLimits(chunk_records=chunk, batch_entries=7)
    fast = _run(ledger, statement_of(spoilt), TempFileScratch(run_records=9), limits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matcher._Run, "_agreeing", lambda *args: 0)
        careful = _run(ledger, statement_of(spoilt), TempFileScratch(run_records=9), limits)
    generic = _run(ledger, statement_of(spoilt), ListScratch(), limits)
    assert fast == careful == generic


@pytest.mark.parametrize("at", [0, 5, 39])
def test_a_separator_inside_a_ledger_voucher_number_is_no_match_on_either_path(at: int) -> None:
    """The stretch path compares keys joined by the separator; a ledger field holding it must not fool it."""
    lines = make_lines(40, random.Random(11))
    ledger = ledger_of(lines)
    ledger[at] = ledger[at]._replace(voucher_no=ledger[at].voucher_no + "\x00")  # still in key order
    limits = MatchLimits(chunk_records=8)
    fast = _run(ledger, statement_of(lines), TempFileScratch(), limits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matcher._Run, "_agreeing", lambda *args: 0)
        careful = _run(ledger, statement_of(lines), TempFileScratch(), limits)
    assert fast == careful
    assert fast[0].matched == 40 and fast[0].matched_by_serial == 1  # found by its serial, as a broken key


def _text_statement(lines: list[StatementDetail]) -> bytes:
    rows = [
        f"{x.vt_code}|{x.voucher_no}|{x.x_agent_business_no}|{x.x_pay_date:%Y%m%d}|"
        f"{'-' if x.amt_fen < 0 else ''}{abs(x.amt_fen) // 100}.{abs(x.amt_fen) % 100:02d}|{x.pro_state}|"
        f"{x.payee_acct_no}\n"
        for x in lines
    ]
    total = sum(x.amt_fen for x in lines)
    sign = "-" if total < 0 else ""
    header = f"H|{CHECK_DATE:%Y%m%d}|{len(lines)}|{sign}{abs(total) // 100}.{abs(total) % 100:02d}\n"
    return (header + "".join(rows)).encode()


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 200))
def test_a_statement_in_key_order_gives_what_the_same_lines_shuffled_give(seed: int, n: int) -> None:
    """In key order the statement is staged as one run and read back unmerged; the result is the same."""
    ledger, spoilt = _spoilt(seed, n, [])
    in_order = sorted(spoilt, key=lambda x: (x.vt_code, x.voucher_no))
    shuffled = list(spoilt)
    random.Random(seed).shuffle(shuffled)
    limits = MatchLimits(chunk_records=16)
    results = [
        _run(
            ledger, read_text(io.BytesIO(_text_statement(lines)), STANDARD_TEXT), TempFileScratch(run_records=8), limits
        )
        for lines in (in_order, shuffled)
    ]
    # The same breaks, except where the bank's line is in the file.
    assert _unplaced(results[0][0]) == _unplaced(results[1][0])
    assert results[0][0].matched == results[1][0].matched
    assert sorted(results[0][1]) == sorted(results[1][1])


def _unplaced(result: RunResult) -> list[Break]:
    return [
        b if b.bank is None else dataclasses.replace(b, bank=dataclasses.replace(b.bank, ref="")) for b in result.breaks
    ]


def test_a_statement_in_key_order_is_staged_as_one_run() -> None:
    lines = sorted(make_lines(100, random.Random(3)), key=lambda x: (x.vt_code, x.voucher_no))
    sorter = ExternalSorter(run_records=8)
    sorter.extend(read_text(io.BytesIO(_text_statement(lines)), STANDARD_TEXT).records())
    assert sorter.spilled_runs == 1
    assert [r[0] for r in sorter.sorted()] == [f"{x.vt_code}\x00{x.voucher_no}" for x in lines]
    sorter.close()


# --- the garbage collector --------------------------------------------------------------------------------------


class WatchingSink(InMemorySink):
    """Notes the collector's first threshold whenever a batch arrives (that is, during the run)."""

    def __init__(self) -> None:
        super().__init__()
        self.thresholds: set[int] = set()

    def reconciled(self, entries: object) -> None:
        self.thresholds.add(gc.get_threshold()[0])
        super().reconciled(entries)  # type: ignore[arg-type]


@pytest.fixture
def threshold() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_collections_are_fewer_during_a_run_and_the_threshold_is_restored(threshold: tuple[int, int, int]) -> None:
    lines = make_lines(50, random.Random(5))
    sink = WatchingSink()
    reconcile(
        ledger_of(lines),
        statement_of(lines),
        bank=BANK,
        check_date=CHECK_DATE,
        scratch=TempFileScratch(),
        sink=sink,
        limits=MatchLimits(batch_entries=10),
    )
    assert sink.thresholds == {GC_YOUNG_THRESHOLD}
    assert gc.get_threshold() == threshold


def test_the_threshold_is_restored_when_a_run_fails(threshold: tuple[int, int, int]) -> None:
    lines = make_lines(5, random.Random(5))
    with pytest.raises(StatementError):
        reconcile(
            ledger_of(lines),
            statement_of(lines, check_date=CHECK_DATE.replace(day=22)),
            bank=BANK,
            check_date=CHECK_DATE,
            scratch=TempFileScratch(),
        )
    assert gc.get_threshold() == threshold


@pytest.mark.parametrize("first", [0, GC_YOUNG_THRESHOLD * 2])
def test_a_collector_switched_off_or_set_higher_is_left_alone(first: int) -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(first, 10, 10)
        with matcher._fewer_collections():
            assert gc.get_threshold()[0] == first
        assert gc.get_threshold() == (first, 10, 10)
    finally:
        gc.set_threshold(*saved)


def test_overlapping_runs_restore_the_threshold_once_the_last_one_ends(threshold: tuple[int, int, int]) -> None:
    first = matcher._fewer_collections()
    second = matcher._fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first run ends while the second still streams
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    second.__exit__(None, None, None)
    assert gc.get_threshold() == threshold
