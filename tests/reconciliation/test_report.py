"""Reports: the morning HTML page (escaped, bilingual, yuan with separators), CSV and JSON round trips, the 2507."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, rules
from protocols.messages import MAX_RECONCILE_DETAILS, Message, ReconcileResult
from reconciliation.inject import inject
from reconciliation.matcher import CarryOver, MatchLimits, carry_over, reconcile
from reconciliation.model import Break, BreakClass, RunResult, Side, Status, Totals
from reconciliation.ports import TempFileScratch
from reconciliation.report import (
    CSV_COLUMNS,
    breaks_from_csv,
    format_yuan,
    from_json,
    reconcile_result,
    to_csv,
    to_html,
    to_json,
)
from tests.reconciliation.conftest import BANK, CHECK_DATE, ledger_of, make_lines, statement_of

EVERY = {cls: 2 for cls in BreakClass} | {BreakClass.SUMMARY_MISMATCH: 1}


def spoilt_run(seed: int = 1, counts: dict[BreakClass, int] | None = None, n: int = 60) -> RunResult:
    rng = random.Random(seed)
    lines = make_lines(n, rng)
    spoilt, injected = inject(lines, rng, EVERY if counts is None else counts)
    return reconcile(
        ledger_of(lines),
        statement_of(spoilt, injected),
        bank=BANK,
        check_date=CHECK_DATE,
        scratch=TempFileScratch(),
        limits=MatchLimits(max_breaks=10_000),
    )


def test_yuan_with_thousands_separators() -> None:
    assert [format_yuan(x) for x in (0, 5, -5, 123_456_789, -100_000_000_000)] == [
        "0.00",
        "0.05",
        "-0.05",
        "1,234,567.89",
        "-1,000,000,000.00",
    ]


def test_the_html_report_has_totals_classes_and_the_oldest_breaks() -> None:
    result = spoilt_run()
    old = dataclasses.replace(result.breaks[0], first_check_date=CHECK_DATE - timedelta(days=9), age_days=9)
    page = to_html(result, open_breaks=[*result.breaks, old], oldest=3)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "不平 Not balanced: 15 breaks" in page
    for cls in BreakClass:
        assert f"<td>{cls.label}</td><td class=num>{result.counts()[cls]:,}</td>" in page
    assert "最久未决差异 Oldest open breaks (of 16 open)" in page
    oldest = page.split("Oldest open breaks")[1].split("</table>")[0]
    assert oldest.count("<tr>") == 4 and "<td class=num>9</td>" in oldest  # a header and three rows, oldest first
    assert format_yuan(result.ledger.amount_fen) in page
    assert "http" not in page.replace("http-equiv", "") and "<script" not in page  # self-contained, no script


def test_a_balanced_run_says_so() -> None:
    page = to_html(spoilt_run(counts={}))
    assert "平 Balanced: no break" in page and "无 None." in page and "Oldest" not in page


def test_everything_from_a_statement_is_escaped() -> None:
    """A bank can put anything in a voucher number; the page shows it as text."""
    result = spoilt_run(counts={})
    evil = Break(
        BreakClass.MISSING_IN_LEDGER,
        CHECK_DATE,
        "5201",
        '<script>alert("x")</script>',
        "S&1",
        None,
        Side("S&1", 100, Status.PAID, "<b>", CHECK_DATE, "file <x> line 1"),
        'detail "<i>"',
    )
    page = to_html(dataclasses.replace(result, bank="<B>", source="<img src=x>", breaks=(evil,)))
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img" not in page and "&lt;B&gt;" in page and "S&amp;1" in page and "&lt;i&gt;" in page


def test_long_runs_are_cut_in_the_page_and_cleared_breaks_shown() -> None:
    result = spoilt_run()
    cleared = dataclasses.replace(result, cleared=result.breaks[:1], carried_in=Totals(1, 5))
    page = to_html(cleared, max_rows=2)
    assert "The first 2 of 15" in page and "Closed automatically" in page and "cleared earlier timing breaks" in page


def test_csv_round_trip() -> None:
    result = spoilt_run()
    aged = [dataclasses.replace(b, first_check_date=CHECK_DATE - timedelta(days=2), age_days=2) for b in result.breaks]
    text = to_csv([*result.breaks, *aged])
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert breaks_from_csv(text) == [*result.breaks, *aged]


@settings(max_examples=30)
@given(detail=st.text(), ref=st.text(), payee=st.text())
def test_csv_round_trip_of_any_text(detail: str, ref: str, payee: str) -> None:
    side = Side("S", -1, Status.RETURNED, payee, CHECK_DATE, ref)
    b = Break(BreakClass.AMOUNT_MISMATCH, CHECK_DATE, "2252", "V", "S", side, side, detail)
    assert breaks_from_csv(to_csv([b])) == [b]


def test_bad_csv_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected header"):
        breaks_from_csv("a,b\n")
    with pytest.raises(ValueError, match="unexpected header"):
        breaks_from_csv("")
    with pytest.raises(ValueError, match="a row of 2 cells"):
        breaks_from_csv(",".join(CSV_COLUMNS) + "\na,b\n")


def test_json_round_trip_with_and_without_carry_over() -> None:
    result = spoilt_run()
    result = dataclasses.replace(result, cleared=result.breaks[:2], carried_in=Totals(2, 7))
    assert from_json(to_json(result)) == (result, None)
    carry = carry_over([dataclasses.replace(result.breaks[0], check_date=CHECK_DATE - timedelta(days=1))], result)
    assert from_json(to_json(result, carry, indent=None)) == (result, carry)
    document = to_json(result)
    assert '"amount_mismatch": 2' in document and "金额不符" in document


def test_json_of_a_run_without_declared_totals() -> None:
    result = dataclasses.replace(spoilt_run(counts={}), declared=None)
    assert from_json(to_json(result, CarryOver((), ()))) == (result, CarryOver((), ()))


@pytest.mark.parametrize("text", ["[]", "{}", '{"bank": 1}', "not json"])
def test_bad_json_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        from_json(text)


def test_the_2507_names_every_voucher_that_differs() -> None:
    result = spoilt_run()
    message = reconcile_result(result)
    assert (message.check_date, message.x_check_result, message.x_diff_num) == (CHECK_DATE, 1, 15)
    keyed = {(b.vt_code, b.voucher_no) for b in result.breaks if b.voucher_no}
    assert {(d.vt_code, d.voucher_no) for d in message.details} == keyed
    assert all(d.x_check_result == 1 and d.x_check_reason for d in message.details)
    head = codec.make_head(
        message, msg_id="R1", src="450100000000", des=BANK, work_date=CHECK_DATE, send_time=datetime(2026, 11, 24, 6)
    )
    assert rules.check(Message(head, message)) == []
    assert codec.from_tree(codec.to_tree(Message(head, message))).body == message


def test_a_balanced_run_gives_a_zero_2507_and_reasons_are_joined() -> None:
    assert reconcile_result(spoilt_run(counts={})) == ReconcileResult(
        check_date=CHECK_DATE, x_check_result=0, x_diff_num=0, details=()
    )
    b = next(b for b in spoilt_run().breaks if b.break_class is BreakClass.AMOUNT_MISMATCH)
    two = dataclasses.replace(
        spoilt_run(counts={}),
        breaks=(
            b,
            dataclasses.replace(b, break_class=BreakClass.DUPLICATE),
            dataclasses.replace(b, break_class=BreakClass.DUPLICATE),
        ),
    )
    [detail] = reconcile_result(two).details
    assert detail.x_check_reason == f"{b.break_class.zh};重复记录"


def test_the_2507_lists_at_most_the_cap() -> None:
    b = spoilt_run().breaks[0]
    many = tuple(dataclasses.replace(b, voucher_no=f"V{i:05d}") for i in range(MAX_RECONCILE_DETAILS + 3))
    message = reconcile_result(dataclasses.replace(spoilt_run(counts={}), breaks=many))
    assert len(message.details) == MAX_RECONCILE_DETAILS and message.x_diff_num == MAX_RECONCILE_DETAILS + 3
    assert message.details[0].voucher_no == "V00000"


def test_labels_are_bilingual() -> None:
    assert BreakClass.MISSING_AT_BANK.label == "平台单边 missing at bank"
    assert BreakClass.MISSING_IN_LEDGER.zh == "银行单边" and BreakClass.AMOUNT_MISMATCH.zh == "金额不符"
    assert Status.FAILED.label == "失败 failed"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date(2026, 1, 2).isoformat())


def test_a_statement_that_declares_no_totals_has_no_declared_row() -> None:
    page = to_html(dataclasses.replace(spoilt_run(counts={}), declared=None))
    assert "Statement declares" not in page and "Statement details" in page
