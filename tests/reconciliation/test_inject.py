"""inject(): deterministic for a seed, one class per line, honest about what it did, refuses impossible asks."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import timedelta

import pytest

from reconciliation.inject import inject
from reconciliation.model import BreakClass, Totals
from tests.reconciliation.conftest import CHECK_DATE, make_lines

EVERY = {cls: 2 for cls in BreakClass} | {BreakClass.SUMMARY_MISMATCH: 1}


def test_the_same_seed_spoils_the_same_way() -> None:
    lines = make_lines(50, random.Random(1))
    first = inject(lines, random.Random(9), EVERY)
    again = inject(lines, random.Random(9), EVERY)
    other = inject(lines, random.Random(10), EVERY)
    assert first == again and first != other


def test_what_is_reported_is_what_was_done() -> None:
    lines = make_lines(60, random.Random(2))
    spoilt, injected = inject(lines, random.Random(3), EVERY)
    assert dict(injected.counts) == EVERY and injected.as_json()["summary_mismatch"] == 1
    assert all(len(injected.keys[cls]) == n for cls, n in EVERY.items())
    # 2 removed, 2 invented, 2 duplicated: the count grows by 2.
    assert len(spoilt) == len(lines) + 2
    assert injected.declared(spoilt) == Totals(len(spoilt), sum(x.amt_fen for x in spoilt)) + injected.summary_delta
    assert injected.summary_delta.count == 0 and 0 < injected.summary_delta.amount_fen <= 10_000
    by_key = {f"{x.vt_code}-{x.voucher_no}": x for x in lines}
    for key in injected.keys[BreakClass.CUTOFF_TIMING]:
        moved = next(x for x in spoilt if f"{x.vt_code}-{x.voucher_no}" == key)
        assert abs(moved.x_pay_date - by_key[key].x_pay_date) == timedelta(days=1)
    assert {f"{x.vt_code}-{x.voucher_no}" for x in injected.next_day} <= set(injected.keys[BreakClass.CUTOFF_TIMING])
    assert all(x.x_pay_date == CHECK_DATE + timedelta(days=1) for x in injected.next_day)
    for key in injected.keys[BreakClass.STATUS_MISMATCH]:
        changed = next(x for x in spoilt if f"{x.vt_code}-{x.voucher_no}" == key)
        assert {changed.pro_state, by_key[key].pro_state} == {0, 2}


def test_nothing_asked_changes_nothing() -> None:
    lines = make_lines(10, random.Random(4))
    spoilt, injected = inject(lines, random.Random(5), {})
    assert spoilt == lines and sum(injected.counts.values()) == 0 and injected.next_day == ()


def test_an_empty_statement_can_still_gain_lines() -> None:
    spoilt, _ = inject([], random.Random(1), {BreakClass.MISSING_IN_LEDGER: 2}, check_date=CHECK_DATE)
    assert len(spoilt) == 2 and all(x.x_pay_date == CHECK_DATE for x in spoilt)
    assert len({x.voucher_no for x in spoilt}) == 2


def test_dense_serials_still_get_fresh_ones() -> None:
    """Serials numbered densely leave no room in their last four digits: the fallback invents another form."""
    template = make_lines(1, random.Random(6))[0]
    lines = [dataclasses.replace(template, voucher_no=f"V{i}", x_agent_business_no=f"S{i:04d}") for i in range(10_000)]
    spoilt, _ = inject(lines, random.Random(7), {BreakClass.DUPLICATE: 1})
    [added] = {x.x_agent_business_no for x in spoilt} - {x.x_agent_business_no for x in lines}
    assert re.fullmatch(r"S\d{4}-\d{6}", added)


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ({BreakClass.DUPLICATE: -1}, "negative"),
        ({BreakClass.SUMMARY_MISMATCH: 2}, "at most one"),
        ({BreakClass.AMOUNT_MISMATCH: 11}, "not enough suitable lines"),
    ],
)
def test_impossible_asks_are_refused(counts: dict[BreakClass, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        inject(make_lines(10, random.Random(1)), random.Random(1), counts)


def test_lines_must_be_a_true_statement() -> None:
    lines = make_lines(5, random.Random(1))
    with pytest.raises(ValueError, match="once"):
        inject([*lines, lines[0]], random.Random(1), {})
    with pytest.raises(ValueError, match="voucher number"):
        inject([dataclasses.replace(lines[0], voucher_no="")], random.Random(1), {})
    with pytest.raises(ValueError, match="check_date"):
        inject([], random.Random(1), {BreakClass.MISSING_IN_LEDGER: 1})


def test_status_mismatches_only_use_paid_and_failed_lines() -> None:
    lines = [dataclasses.replace(x, pro_state=1, amt_fen=-abs(x.amt_fen)) for x in make_lines(5, random.Random(1))]
    with pytest.raises(ValueError, match="status_mismatch"):
        inject(lines, random.Random(1), {BreakClass.STATUS_MISMATCH: 1})
