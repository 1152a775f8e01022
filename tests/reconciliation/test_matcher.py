"""The matcher: every break class, key groups, the serial fallback, summary checks, carry-over, and the oracle."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.messages import StatementDetail
from reconciliation.errors import LedgerError, StatementError, TooManyBreaks
from reconciliation.inject import inject
from reconciliation.matcher import MatchLimits, carry_over, reconcile, reconcile_day
from reconciliation.model import Break, BreakClass, LedgerEntry, RunResult, Totals
from reconciliation.ports import InMemoryLedger, InMemorySink, TempFileScratch
from reconciliation.readers.base import StatementStream, SummaryFinding
from tests.reconciliation.conftest import BANK, CHECK_DATE, entry_of, ledger_of, make_lines, statement_of

NEXT_DAY = CHECK_DATE + timedelta(days=1)


def run(
    ledger: list[LedgerEntry],
    statement: StatementStream,
    *,
    check_date: date = CHECK_DATE,
    carried: list[Break] | None = None,
    control: Totals | None = None,
    limits: MatchLimits | None = None,
    run_records: int = 65_536,
    sink: InMemorySink | None = None,
) -> RunResult:
    return reconcile(
        ledger,
        statement,
        bank=BANK,
        check_date=check_date,
        scratch=TempFileScratch(run_records=run_records),
        sink=sink,
        carried=carried or (),
        ledger_control=control,
        limits=limits or MatchLimits(),
    )


def only(result: RunResult) -> Break:
    assert len(result.breaks) == 1, result.breaks
    return result.breaks[0]


@pytest.fixture
def lines() -> list[StatementDetail]:
    return make_lines(40, random.Random(7))


# --- agreement --------------------------------------------------------------------------------------------------


def test_a_true_statement_matches_every_entry(lines: list[StatementDetail]) -> None:
    """No break, every entry matched and handed to the sink, totals on both sides equal."""
    sink = InMemorySink()
    result = run(ledger_of(lines), statement_of(lines), sink=sink, limits=MatchLimits(batch_entries=7))
    assert result.balanced and result.matched == len(lines)
    assert result.ledger == result.statement == result.declared == Totals(len(lines), sum(x.amt_fen for x in lines))
    assert sorted(sink.reconciled_entries) == sorted(ledger_of(lines))
    assert sink.batches == 6 and sink.results == [result]


def test_an_empty_day_is_balanced() -> None:
    result = run([], statement_of([]))
    assert result.balanced and result.matched == 0 and result.statement == Totals()


# --- each class ---------------------------------------------------------------------------------------------------


def test_missing_at_bank(lines: list[StatementDetail]) -> None:
    """平台单边: on the ledger, not on the statement."""
    b = only(run(ledger_of(lines), statement_of(lines[1:])))
    assert (b.break_class, b.key, b.bank) == (
        BreakClass.MISSING_AT_BANK,
        f"{lines[0].vt_code}-{lines[0].voucher_no}",
        None,
    )
    assert b.ledger is not None and b.ledger.amount_fen == lines[0].amt_fen and b.ledger.ref == "450100-2026-" + b.key
    assert b.difference_fen == lines[0].amt_fen and b.age_days == 0 and b.since == CHECK_DATE


def test_missing_in_ledger(lines: list[StatementDetail]) -> None:
    """银行单边: on the statement, not on the ledger; the bank side says where the line is."""
    b = only(run(ledger_of(lines[1:]), statement_of(lines)))
    assert (b.break_class, b.ledger) == (BreakClass.MISSING_IN_LEDGER, None)
    assert (
        b.bank is not None and b.bank.ref == "4006 pages page 1, Detail[1]" and b.serial == lines[0].x_agent_business_no
    )


@pytest.mark.parametrize(
    ("change", "cls", "words"),
    [
        ({"amt_fen": 1}, BreakClass.AMOUNT_MISMATCH, "amount"),
        ({"payee_acct_no": "6222999"}, BreakClass.PAYEE_MISMATCH, "payee account"),
        ({"x_pay_date": NEXT_DAY}, BreakClass.CUTOFF_TIMING, "pay date 20261123 ≠ 20261124"),
        ({"x_pay_date": CHECK_DATE - timedelta(days=1)}, BreakClass.CUTOFF_TIMING, "pay date"),
        ({"x_pay_date": CHECK_DATE + timedelta(days=2)}, BreakClass.STATUS_MISMATCH, "pay date"),
    ],
)
def test_one_field_differs(
    lines: list[StatementDetail], change: dict[str, object], cls: BreakClass, words: str
) -> None:
    paid = next(i for i, x in enumerate(lines) if x.pro_state == 0)
    spoilt = list(lines)
    spoilt[paid] = dataclasses.replace(lines[paid], **change)  # type: ignore[arg-type]
    b = only(run(ledger_of(lines), statement_of(spoilt)))
    assert b.break_class is cls and words in b.detail
    assert b.ledger is not None and b.bank is not None


def test_status_mismatch_takes_precedence_and_every_difference_is_named(lines: list[StatementDetail]) -> None:
    paid = next(i for i, x in enumerate(lines) if x.pro_state == 0)
    spoilt = list(lines)
    spoilt[paid] = dataclasses.replace(lines[paid], pro_state=2, amt_fen=5, payee_acct_no="1", x_pay_date=NEXT_DAY)
    b = only(run(ledger_of(lines), statement_of(spoilt)))
    assert b.break_class is BreakClass.STATUS_MISMATCH
    for words in ("status 已支付 paid ≠ 失败 failed", "amount", "payee account", "pay date"):
        assert words in b.detail


def test_a_ledger_entry_dated_the_next_day_is_a_timing_break_not_missing(lines: list[StatementDetail]) -> None:
    """The bank's receipt dated it D+1, so it belongs on D+1's statement: cut-off timing, not 平台单边."""
    ledger = [*ledger_of(lines[1:]), entry_of(lines[0], pay_date=NEXT_DAY)]
    ledger.sort(key=lambda e: (e.vt_code, e.voucher_no))
    b = only(run(ledger, statement_of(lines[1:])))
    assert b.break_class is BreakClass.CUTOFF_TIMING and b.bank is None and "20261124" in b.detail


def test_a_repeated_line_is_a_duplicate(lines: list[StatementDetail]) -> None:
    """The bank paid a voucher twice (a second serial): one duplicate, the first line matches."""
    again = dataclasses.replace(lines[3], x_agent_business_no="ICBC-AGAIN")
    b = only(run(ledger_of(lines), statement_of([again, *lines])))
    assert b.break_class is BreakClass.DUPLICATE and b.serial == "ICBC-AGAIN"
    assert b.ledger is not None and b.bank is not None and b.bank.serial == "ICBC-AGAIN"


def test_a_line_listed_twice_with_its_serial_is_one_duplicate(lines: list[StatementDetail]) -> None:
    result = run(ledger_of(lines), statement_of([*lines, lines[5]]))
    assert [b.break_class for b in result.breaks] == [BreakClass.DUPLICATE]
    assert result.matched == len(lines)


def test_a_key_only_the_bank_lists_twice_is_missing_once_and_duplicate_once(lines: list[StatementDetail]) -> None:
    copy = dataclasses.replace(lines[0], x_agent_business_no="X2")
    result = run(ledger_of(lines[1:]), statement_of([*lines, copy]))
    assert sorted(b.break_class.value for b in result.breaks) == ["duplicate", "missing_in_ledger"]


def test_a_ledger_holding_a_voucher_twice_reports_the_second_as_duplicate(lines: list[StatementDetail]) -> None:
    ledger = ledger_of(lines)
    ledger.insert(5, ledger[5])
    b = only(run(ledger, statement_of(lines)))
    assert b.break_class is BreakClass.DUPLICATE and b.bank is None and b.ledger is not None


def test_a_ledger_only_key_held_twice_is_missing_once_and_duplicate_once(lines: list[StatementDetail]) -> None:
    ledger = ledger_of(lines)
    ledger.insert(5, ledger[5])
    result = run(ledger, statement_of(lines[:5] + lines[6:]))
    assert sorted(b.break_class.value for b in result.breaks) == ["duplicate", "missing_at_bank"]


def test_two_vouchers_sharing_vtcode_and_number_pair_by_serial(lines: list[StatementDetail]) -> None:
    """Same VtCode+VoucherNo in two years: the serials tell them apart, whatever the order."""
    first = entry_of(lines[0])
    second = entry_of(lines[0], st_year=2025, adm_div_code="450100", serial="OLD", amount_fen=7)
    other_year_line = dataclasses.replace(lines[0], x_agent_business_no="OLD", amt_fen=7)
    ledger = sorted([first, second, *ledger_of(lines[1:])], key=lambda e: (e.vt_code, e.voucher_no))
    result = run(ledger, statement_of([other_year_line, *lines]))
    assert result.balanced and result.matched == len(lines) + 1


def test_a_key_group_with_fewer_lines_than_entries_leaves_the_distinct_entry_missing(
    lines: list[StatementDetail],
) -> None:
    other_year = entry_of(lines[0], st_year=2025, serial="OLD")
    ledger = sorted([other_year, *ledger_of(lines)], key=lambda e: (e.vt_code, e.voucher_no))
    b = only(run(ledger, statement_of(lines)))
    assert b.break_class is BreakClass.MISSING_AT_BANK and b.serial == "OLD"


def test_a_group_pairs_by_serial_first_then_in_order(lines: list[StatementDetail]) -> None:
    """Two entries and two lines under one key: the serials that agree pair up, the rest pair in order."""
    ledger = ledger_of(lines)
    first = next(i for i, e in enumerate(ledger) if e.voucher_no == lines[0].voucher_no)
    other_year = ledger[first]._replace(st_year=2025, serial="A", amount_fen=ledger[first].amount_fen * 3)
    ledger.insert(first, other_year)
    second_line = dataclasses.replace(lines[0], x_agent_business_no="B", amt_fen=other_year.amount_fen)
    result = run(ledger, statement_of([*lines, second_line]))
    assert result.balanced and result.matched == len(lines) + 1


# --- the serial fallback ----------------------------------------------------------------------------------------


def test_a_line_without_a_voucher_number_is_matched_by_serial(lines: list[StatementDetail]) -> None:
    spoilt = [dataclasses.replace(lines[0], voucher_no=""), *lines[1:]]
    result = run(ledger_of(lines), statement_of(spoilt))
    assert result.balanced and result.matched == len(lines) and result.matched_by_serial == 1


def test_a_line_with_a_wrong_voucher_number_is_matched_by_serial_and_compared(lines: list[StatementDetail]) -> None:
    paid = next(i for i, x in enumerate(lines) if x.pro_state == 0)
    spoilt = list(lines)
    spoilt[paid] = dataclasses.replace(lines[paid], voucher_no="TYPO", amt_fen=lines[paid].amt_fen + 1)
    b = only(run(ledger_of(lines), statement_of(spoilt)))
    assert b.break_class is BreakClass.AMOUNT_MISMATCH and "matched by serial" in b.detail


def test_serial_leftovers_that_meet_no_partner_stay_one_sided(lines: list[StatementDetail]) -> None:
    """Without a voucher number and with an unknown serial: missing in ledger; the lone entry is missing."""
    stranger = dataclasses.replace(lines[0], voucher_no="", x_agent_business_no="ZZZ-UNKNOWN")
    result = run(ledger_of(lines), statement_of([stranger, *lines[1:]]))
    assert sorted(b.break_class.value for b in result.breaks) == ["missing_at_bank", "missing_in_ledger"]
    keyless = next(b for b in result.breaks if b.break_class is BreakClass.MISSING_IN_LEDGER)
    assert keyless.key == "ZZZ-UNKNOWN" and keyless.vt_code == lines[0].vt_code


def test_a_serial_listed_twice_without_voucher_numbers_is_a_duplicate(lines: list[StatementDetail]) -> None:
    keyless = dataclasses.replace(lines[0], voucher_no="")
    result = run(ledger_of(lines), statement_of([keyless, keyless, *lines[1:]]))
    assert [b.break_class for b in result.breaks] == [BreakClass.DUPLICATE]
    unknown = dataclasses.replace(keyless, x_agent_business_no="NOBODY")
    result = run(ledger_of(lines[1:]), statement_of([unknown, unknown, *lines[1:]]))
    assert sorted(b.break_class.value for b in result.breaks) == ["duplicate", "missing_in_ledger"]


def test_a_serial_shared_by_two_ledger_entries_leaves_the_second_missing(lines: list[StatementDetail]) -> None:
    """Two entries the statement does not list by key share a serial; its one line pairs with the first."""
    ledger = ledger_of(lines)
    ledger[3] = ledger[3]._replace(serial=ledger[2].serial)
    listed = [x for x in lines if x.voucher_no not in (ledger[2].voucher_no, ledger[3].voucher_no)]
    keyless = next(dataclasses.replace(x, voucher_no="") for x in lines if x.voucher_no == ledger[2].voucher_no)
    b = only(run(ledger, statement_of([keyless, *listed])))
    assert b.break_class is BreakClass.MISSING_AT_BANK and b.voucher_no == ledger[3].voucher_no


def test_entries_and_lines_without_serial_skip_the_serial_step(lines: list[StatementDetail]) -> None:
    ledger = ledger_of(lines)
    ledger[0] = ledger[0]._replace(serial="")
    stranger = dataclasses.replace(lines[1], voucher_no="NEW", x_agent_business_no="")
    listed = [x for x in lines if x.voucher_no != ledger[0].voucher_no]
    result = run(ledger, statement_of([stranger, *listed]))
    assert sorted((b.break_class.value, b.key) for b in result.breaks) == [
        ("missing_at_bank", f"{ledger[0].vt_code}-{ledger[0].voucher_no}"),
        ("missing_in_ledger", f"{stranger.vt_code}-NEW"),
    ]


# --- summary checks ---------------------------------------------------------------------------------------------


def test_a_statement_whose_totals_disagree_with_its_details_is_a_summary_mismatch(lines: list[StatementDetail]) -> None:
    true = Totals(len(lines), sum(x.amt_fen for x in lines))
    b = only(run(ledger_of(lines), statement_of(lines, declared=true + Totals(1, 0))))
    assert b.break_class is BreakClass.SUMMARY_MISMATCH and b.key == "statement"
    assert b.declared == Totals(len(lines) + 1, sum(x.amt_fen for x in lines)) and b.computed is not None
    assert b.difference_fen == 0


def test_ledger_control_totals_that_disagree_with_the_stream_are_a_summary_mismatch(
    lines: list[StatementDetail],
) -> None:
    b = only(run(ledger_of(lines), statement_of(lines), control=Totals(1, 2)))
    assert (b.break_class, b.scope, b.declared) == (BreakClass.SUMMARY_MISMATCH, "ledger", Totals(1, 2))
    assert run(
        ledger_of(lines), statement_of(lines), control=Totals(len(lines), sum(x.amt_fen for x in lines))
    ).balanced


def test_reader_findings_become_summary_mismatches(lines: list[StatementDetail]) -> None:
    statement = statement_of(lines)
    statement.findings.append(SummaryFinding("balance S1", Totals(1, 5), Totals(1, 6), "balance S1: off"))
    b = only(run(ledger_of(lines), statement))
    assert (b.break_class, b.key, b.detail) == (BreakClass.SUMMARY_MISMATCH, "balance S1", "balance S1: off")


def test_a_statement_for_another_date_is_refused(lines: list[StatementDetail]) -> None:
    with pytest.raises(StatementError, match="is for 20261124, not 20261123"):
        run(ledger_of(lines), statement_of(lines, check_date=NEXT_DAY))


# --- the ledger's contract and the caps -------------------------------------------------------------------------


def test_a_ledger_out_of_key_order_is_refused(lines: list[StatementDetail]) -> None:
    ledger = ledger_of(lines)
    ledger[3], ledger[4] = ledger[4], ledger[3]
    with pytest.raises(LedgerError, match="not in key order"):
        run(ledger, statement_of(lines))


@pytest.mark.parametrize("chunk", [1, 4, 256])
def test_a_ledger_out_of_order_across_chunks_and_groups_is_refused(lines: list[StatementDetail], chunk: int) -> None:
    ledger = ledger_of(lines)
    ledger.append(ledger[0])
    with pytest.raises(LedgerError):
        run(ledger, statement_of(lines), limits=MatchLimits(chunk_records=chunk))
    ledger = ledger_of(lines)
    ledger.insert(2, ledger[5])
    with pytest.raises(LedgerError):
        run(ledger, statement_of(lines), limits=MatchLimits(chunk_records=chunk))


def test_a_ledger_only_group_out_of_order_is_refused(lines: list[StatementDetail]) -> None:
    ledger = ledger_of(lines)
    ledger.insert(1, ledger[0]._replace(voucher_no=ledger[0].voucher_no + "Z"))
    ledger.insert(2, ledger[0])
    with pytest.raises(LedgerError):
        run(ledger, statement_of(lines))


def test_a_ledger_entry_without_voucher_number_is_refused(lines: list[StatementDetail]) -> None:
    ledger = ledger_of(lines)
    ledger[5] = ledger[5]._replace(voucher_no="")
    with pytest.raises(LedgerError, match="no voucher number"):
        run(ledger, statement_of(lines))
    with pytest.raises(LedgerError, match="no voucher number"):
        run([ledger[5]], statement_of([]))


def test_a_key_beyond_every_statement_key_is_refused() -> None:
    entry = entry_of(make_lines(1, random.Random(1))[0], vt_code="\U0010ffff")
    with pytest.raises(LedgerError):
        run([entry], statement_of([]))


def test_more_breaks_than_the_cap_stop_the_run(lines: list[StatementDetail]) -> None:
    with pytest.raises(TooManyBreaks):
        run(ledger_of(lines), statement_of([]), limits=MatchLimits(max_breaks=10))


def test_match_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MatchLimits(chunk_records=0)


def test_reconcile_day_reads_the_port(lines: list[StatementDetail]) -> None:
    port = InMemoryLedger()
    port.add(BANK, CHECK_DATE, reversed([entry_of(x) for x in lines]))
    result = reconcile_day(port, statement_of(lines), bank=BANK, check_date=CHECK_DATE, scratch=TempFileScratch())
    assert result.balanced and result.matched == len(lines)
    port.set_control_totals(BANK, CHECK_DATE, Totals())
    result = reconcile_day(port, statement_of(lines), bank=BANK, check_date=CHECK_DATE, scratch=TempFileScratch())
    assert [b.scope for b in result.breaks] == ["ledger"]


# --- carrying breaks over ---------------------------------------------------------------------------------------


def test_a_timing_break_cleared_by_the_next_statement_is_closed(lines: list[StatementDetail]) -> None:
    """Day D: the bank dated a payment D+1. Day D+1: its statement lists it; the break closes by itself."""
    paid = next(i for i, x in enumerate(lines) if x.pro_state == 0)
    moved = dataclasses.replace(lines[paid], x_pay_date=NEXT_DAY)
    day1 = run(ledger_of(lines), statement_of([moved if i == paid else x for i, x in enumerate(lines)]))
    timing = only(day1)
    assert timing.break_class is BreakClass.CUTOFF_TIMING
    carry1 = carry_over([], day1)
    assert carry1.open == (timing,) and carry1.closed == ()

    tomorrow = make_lines(10, random.Random(99), NEXT_DAY)
    day2 = run(
        ledger_of(tomorrow),
        statement_of([*tomorrow, moved], check_date=NEXT_DAY),
        check_date=NEXT_DAY,
        carried=list(carry1.open),
    )
    assert day2.balanced and day2.cleared == (timing,) and day2.carried_in == Totals(1, moved.amt_fen)
    carry2 = carry_over(carry1.open, day2)
    assert carry2.open == () and carry2.closed == (timing,)


def test_a_timing_break_closes_when_the_next_ledger_and_statement_both_hold_it(lines: list[StatementDetail]) -> None:
    entry = entry_of(lines[0], pay_date=NEXT_DAY)
    day1 = run([entry], statement_of([]))
    timing = only(day1)
    line = dataclasses.replace(lines[0], x_pay_date=NEXT_DAY)
    day2 = run([entry], statement_of([line], check_date=NEXT_DAY), check_date=NEXT_DAY, carried=[timing])
    assert day2.balanced and day2.cleared == (timing,) and day2.carried_in == Totals()


def test_a_timing_break_stays_open_when_the_next_statement_disagrees(lines: list[StatementDetail]) -> None:
    entry = entry_of(lines[0], pay_date=NEXT_DAY)
    timing = only(run([entry], statement_of([])))
    line = dataclasses.replace(lines[0], x_pay_date=NEXT_DAY, amt_fen=lines[0].amt_fen * 2)
    day2 = run([], statement_of([line], check_date=NEXT_DAY), check_date=NEXT_DAY, carried=[timing])
    assert day2.cleared == () and [b.break_class for b in day2.breaks] == [BreakClass.MISSING_IN_LEDGER]
    later = dataclasses.replace(line, amt_fen=lines[0].amt_fen)
    mismatched = run(
        [entry_of(later, amount_fen=1 if later.amt_fen > 0 else -1)],
        statement_of([later], check_date=NEXT_DAY),
        check_date=NEXT_DAY,
        carried=[timing],
    )
    assert mismatched.cleared == (timing,) and len(mismatched.breaks) == 1


def test_only_timing_breaks_with_a_voucher_are_carried_into_a_run(lines: list[StatementDetail]) -> None:
    missing = only(run(ledger_of(lines[:1]), statement_of([])))
    day2 = run([], statement_of(lines[:1], check_date=NEXT_DAY), check_date=NEXT_DAY, carried=[missing])
    assert day2.cleared == () and len(day2.breaks) == 1


def test_carry_over_ages_open_breaks_and_keeps_each_once(lines: list[StatementDetail]) -> None:
    old = only(run(ledger_of(lines[:1]), statement_of([])))
    later = CHECK_DATE + timedelta(days=3)
    again = dataclasses.replace(old, check_date=later)
    result = RunResult(BANK, later, "x", Totals(), Totals(), None, 0, 0, breaks=(again,))
    carried = carry_over([old], result)
    assert len(carried.open) == 1
    assert carried.open[0].age_days == 3 and carried.open[0].first_check_date == CHECK_DATE


# --- the oracle -------------------------------------------------------------------------------------------------

CLASSES = st.fixed_dictionaries(
    {cls: st.integers(0, 3) for cls in BreakClass if cls is not BreakClass.SUMMARY_MISMATCH}
    | {BreakClass.SUMMARY_MISMATCH: st.integers(0, 1)}
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(25, 160),
    counts=CLASSES,
    seed=st.integers(0, 2**32 - 1),
    chunk=st.sampled_from([1, 2, 5, 64, 256]),
    run_records=st.sampled_from([3, 17, 100_000]),
    page_size=st.sampled_from([7, 5000]),
)
def test_the_matcher_reports_exactly_what_was_injected(
    n: int, counts: dict[BreakClass, int], seed: int, chunk: int, run_records: int, page_size: int
) -> None:
    """Oracle: a true ledger, a statement spoilt by inject(); the breaks are exactly the injected ones."""
    rng = random.Random(seed)
    lines = make_lines(n, rng)
    spoilt, injected = inject(lines, rng, counts)
    result = run(
        ledger_of(lines),
        statement_of(spoilt, injected, page_size=page_size),
        limits=MatchLimits(chunk_records=chunk),
        run_records=run_records,
    )
    assert result.counts() == dict(injected.counts)
    assert {cls: tuple(sorted(b.key for b in result.breaks if b.break_class is cls)) for cls in BreakClass} == dict(
        injected.keys
    )
    spoiling = sum(
        injected.counts[c]
        for c in (
            BreakClass.MISSING_AT_BANK,
            BreakClass.AMOUNT_MISMATCH,
            BreakClass.STATUS_MISMATCH,
            BreakClass.PAYEE_MISMATCH,
            BreakClass.CUTOFF_TIMING,
        )
    )
    assert result.matched == n - spoiling
    # The totals' difference is exactly what the breaks explain.
    assert (result.ledger - result.statement).amount_fen == sum(b.difference_fen for b in result.breaks)
    # The timing breaks carried to the next day are cleared by the lines the bank lists again.
    timing = [b for b in result.breaks if b.break_class is BreakClass.CUTOFF_TIMING]
    tomorrow = run([], statement_of(list(injected.next_day), check_date=NEXT_DAY), check_date=NEXT_DAY, carried=timing)
    assert len(tomorrow.cleared) == len(injected.next_day) and tomorrow.balanced


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 60))
def test_the_result_does_not_depend_on_chunk_or_run_sizes(seed: int, n: int) -> None:
    rng = random.Random(seed)
    lines = make_lines(n, rng)
    counts = {cls: rng.randrange(0, 3) for cls in BreakClass if cls is not BreakClass.SUMMARY_MISMATCH}
    if n < 20:
        counts = {}
    spoilt, injected = inject(lines, rng, counts, check_date=CHECK_DATE)
    results = {
        (chunk, records): run(
            ledger_of(lines),
            statement_of(spoilt, injected),
            limits=MatchLimits(chunk_records=chunk),
            run_records=records,
        )
        for chunk in (1, 3, 256)
        for records in (2, 1000)
    }
    assert len({(r.breaks, r.matched, r.ledger, r.statement) for r in results.values()}) == 1


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 6, 7, 256])
def test_key_groups_across_chunk_boundaries(lines: list[StatementDetail], chunk: int) -> None:
    """A voucher held twice on both sides (two years) pairs up wherever the chunks of the merge are cut."""
    ledger = ledger_of(lines)
    for at in (3, 9):
        ledger.insert(at, ledger[at]._replace(st_year=2025, serial=f"OLD{at}"))
    extra = [
        dataclasses.replace(x, x_agent_business_no=e.serial)
        for e in ledger
        if e.st_year == 2025
        for x in lines
        if x.voucher_no == e.voucher_no
    ]
    sink = InMemorySink()
    result = run(
        ledger, statement_of([*lines, *extra]), limits=MatchLimits(chunk_records=chunk, batch_entries=3), sink=sink
    )
    assert result.balanced and result.matched == len(ledger) == len(sink.reconciled_entries)


def test_pairs_found_by_serial_clear_carried_timing_breaks(lines: list[StatementDetail]) -> None:
    """The next day's line names the voucher wrongly but carries its serial: matched by serial, break cleared."""
    entry = entry_of(lines[0], pay_date=NEXT_DAY)
    timing = only(run([entry], statement_of([])))
    typo = dataclasses.replace(lines[0], voucher_no="TYPO", x_pay_date=NEXT_DAY)
    day2 = run(
        [entry],
        statement_of([typo], check_date=NEXT_DAY),
        check_date=NEXT_DAY,
        carried=[timing],
        limits=MatchLimits(batch_entries=1),
    )
    assert day2.balanced and day2.matched_by_serial == 1 and day2.cleared == (timing,)


def test_two_carried_breaks_of_one_voucher_are_cleared_one_by_one(lines: list[StatementDetail]) -> None:
    entry = entry_of(lines[0], pay_date=NEXT_DAY)
    timing = only(run([entry], statement_of([])))
    earlier = dataclasses.replace(timing, check_date=CHECK_DATE - timedelta(days=1))
    line = dataclasses.replace(lines[0], x_pay_date=NEXT_DAY)
    day2 = run([], statement_of([line], check_date=NEXT_DAY), check_date=NEXT_DAY, carried=[timing, earlier])
    assert day2.cleared == (timing,) and day2.balanced
    closed = carry_over([timing, earlier], day2)
    assert closed.closed == (timing,) and [b.since for b in closed.open] == [earlier.check_date]
