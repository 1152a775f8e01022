"""The pure core of card repayment, with Hypothesis: masking, grouping, per-detail results, deadlines."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cards import plan
from gateway.cards.plan import Approved, SettlementError
from protocols.messages import Receipt, ReceiptDetail

cards = st.from_regex(r"[0-9]{12,19}", fullmatch=True)


@given(cards)
def test_a_masked_card_keeps_six_and_four_and_hides_the_rest(number: str) -> None:
    masked = plan.mask_card(number)
    assert len(masked) == len(number)
    assert masked[:6] == number[:6] and masked[-4:] == number[-4:]
    assert set(masked[6:-4]) <= {"*"} and len(masked[6:-4]) >= 2


@given(cards, cards)
def test_the_hash_groups_equal_numbers_and_depends_on_the_key(a: str, b: str) -> None:
    key = b"k" * 32
    assert plan.card_hash(key, a) == plan.card_hash(key, a)
    assert (plan.card_hash(key, a) == plan.card_hash(key, b)) == (a == b)
    assert plan.card_hash(key, a) != plan.card_hash(b"other key", a)


def test_card_numbers_in_free_text_are_masked() -> None:
    text = "卡号6228280000000000017已销户, ref 12345, account 622828000000000001700 is too long"
    assert (
        plan.mask_digits_in(text)
        == "卡号622828*********0017已销户, ref 12345, account 622828000000000001700 is too long"
    )


records = st.lists(
    st.builds(
        lambda bank, agency, card, amount: (bank, agency, card, amount),
        st.sampled_from(["ICBC", "CCB"]),
        st.sampled_from(["101001", "102003", "103001"]),
        st.sampled_from(["c1", "c2", "c3", "c4"]),
        st.integers(1, 5_000_000),
    ),
    max_size=60,
)


@given(records, st.integers(1, 7))
def test_grouping_puts_every_record_in_one_voucher_of_one_bank_agency_and_card(
    drawn: list[tuple[str, str, str, int]], max_details: int
) -> None:
    approved = [Approved(n, bank, agency, card, amount) for n, (bank, agency, card, amount) in enumerate(drawn, 1)]
    groups = plan.plan_repayments(reversed(approved), max_details)
    placed = [r.id for g in groups for r in g.records]
    assert sorted(placed) == [r.id for r in approved]  # each exactly once
    for g in groups:
        assert 1 <= len(g.records) <= max_details
        assert {(r.bank_code, r.agency_code, r.card_hash) for r in g.records} == {
            (g.bank_code, g.agency_code, g.card_hash)
        }
        assert [r.id for r in g.records] == sorted(r.id for r in g.records)
        assert g.amount_fen == sum(r.amount_fen for r in g.records)
    assert sum(g.amount_fen for g in groups) == sum(r.amount_fen for r in approved)
    # a card's records fill its vouchers before another is started: at most one partly filled voucher per card
    by_card: dict[tuple[str, str, str], list[int]] = {}
    for g in groups:
        by_card.setdefault((g.bank_code, g.agency_code, g.card_hash), []).append(len(g.records))
    assert all(sizes.count(max_details) >= len(sizes) - 1 for sizes in by_card.values())


def test_grouping_refuses_a_voucher_size_below_one() -> None:
    with pytest.raises(ValueError):
        plan.plan_repayments([], 0)


def _receipt(details: dict[str, int], failed: set[str], *, x_pay_amt_fen: int | None = None) -> Receipt:
    paid = sum(a for i, a in details.items() if i not in failed)
    return Receipt(
        adm_div_code="450100",
        st_year=2026,
        vt_code="8202",
        voucher_no="CR1",
        pay_amt_fen=sum(details.values()),
        x_pay_date=date(2026, 11, 23),
        x_agent_business_no="S1",
        x_pay_amt_fen=paid if x_pay_amt_fen is None else x_pay_amt_fen,
        x_payee_acct_no="6228280000000000017",
        x_payee_acct_name="李明",
        x_result="S" if paid else "F",
        x_add_word="部分成功" if failed else None,
        details=tuple(
            ReceiptDetail(id=i, x_result="F" if i in failed else "S", x_add_word="卡片已销户" if i in failed else None)
            for i in details
        ),
    )


voucher_details = st.lists(st.integers(1, 10_000_000), min_size=1, max_size=30).map(
    lambda amounts: {str(n): a for n, a in enumerate(amounts, 1)}
)


@given(voucher_details, st.data())
def test_what_is_repaid_is_exactly_the_sum_of_the_succeeded_details(
    details: dict[str, int], data: st.DataObject
) -> None:
    failed = data.draw(st.sets(st.sampled_from(sorted(details))))
    settlement = plan.settle(details, _receipt(details, failed))
    assert settlement.paid | set(settlement.failed) == set(details)
    assert not settlement.paid & set(settlement.failed)
    assert set(settlement.failed) == failed
    assert sum(details[i] for i in settlement.paid) == _receipt(details, failed).x_pay_amt_fen
    assert all(reason == "卡片已销户" for reason in settlement.failed.values())


@given(voucher_details, st.data())
def test_a_receipt_whose_amount_is_not_the_paid_details_is_refused(
    details: dict[str, int], data: st.DataObject
) -> None:
    failed = data.draw(st.sets(st.sampled_from(sorted(details))))
    right = sum(a for i, a in details.items() if i not in failed)
    wrong = data.draw(st.integers(0, sum(details.values())).filter(lambda x: x != right))
    with pytest.raises(SettlementError):
        plan.settle(details, _receipt(details, failed, x_pay_amt_fen=wrong))


def test_receipts_that_do_not_fit_the_voucher_are_refused() -> None:
    details = {"1": 100, "2": 200}
    good = _receipt(details, {"2"})
    for bad, words in (
        (replace(good, details=good.details[:1]), "no result for details 2"),
        (replace(good, details=(*good.details, ReceiptDetail(id="9", x_result="S"))), "9"),
        (replace(good, details=(*good.details, good.details[0])), "twice"),
        (replace(good, x_result="F"), "pays no detail"),
    ):
        with pytest.raises(SettlementError, match=words):
            plan.settle(details, bad)


def test_a_receipt_without_details_settles_all_alike() -> None:
    details = {"1": 100, "2": 200}
    paid = replace(_receipt(details, set()), details=())
    assert plan.settle(details, paid).paid == {"1", "2"}
    refused = replace(paid, x_result="F", x_pay_amt_fen=0, x_add_word="付款账户已冻结")
    assert dict(plan.settle(details, refused).failed) == {"1": "付款账户已冻结", "2": "付款账户已冻结"}
    with pytest.raises(SettlementError):
        plan.settle(details, replace(paid, x_pay_amt_fen=100))


@given(st.dates(), st.integers(-100, 100), st.integers(0, 30))
def test_deadline_status(today: date, offset: int, lead_days: int) -> None:
    try:
        limit = today + timedelta(days=offset)
    except OverflowError:
        return
    status = plan.deadline_status(limit, today, lead_days)
    if offset < 0:
        assert status == "overdue"
    elif offset <= lead_days:
        assert status == "due"
    else:
        assert status is None


def test_the_voucher_number_is_unique_per_record_and_attempt() -> None:
    day = date(2026, 11, 23)
    numbers = {plan.repayment_voucher_no(day, first, attempt) for first in range(1, 50) for attempt in range(1, 5)}
    assert len(numbers) == 49 * 4 and all(len(n) <= 42 for n in numbers)
