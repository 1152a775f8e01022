"""The simulated bank's ledger: payments, refusals, card repayments, returns, status, statements, conservation."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import samples
from protocols.messages import Voucher, VoucherDetail, VoucherKey
from simulators.feeder import Feeder
from simulators.ledger import (
    CARD_CLOSED,
    EXTERNAL_CLEARING,
    INSUFFICIENT_FUNDS,
    PARTLY_PAID,
    PAYEE_CLOSED,
    PAYEE_FROZEN,
    PAYER_CLOSED,
    PAYER_FROZEN,
    QUOTA_EXCEEDED,
    EntryKind,
    Ledger,
    ReturnRefused,
)
from tests.simulators.wire import assert_valid

DAY = date(2026, 11, 23)
NEXT_DAY = date(2026, 11, 24)
PAYEE = "6222020000000000123"  # the sample's payee, at 中国工商银行南宁分行
TREASURY = "4501000000000001"
CARDS = ("6282880000000000011", "6282880000000000029", "6282880000000000037")


def direct(voucher_no: str = "5201450100000123", *amounts_fen: int, bank_name: str | None = None) -> Voucher:
    """The sample 5201 with another number, amounts and (optionally) payee bank."""
    v = samples.direct_voucher(voucher_no, amounts_fen or (10_000_000, 2_500_000))
    return v if bank_name is None else dataclasses.replace(v, payee_acct_bank_name=bank_name)


def card_repayment(
    voucher_no: str = "8202450100000046", amounts_fen: tuple[int, ...] = (86_000, 42_800, 10_000)
) -> Voucher:
    """An official-card repayment with one detail per card of :data:`CARDS`."""
    details = tuple(
        VoucherDetail(
            id=str(n), pay_amt_fen=amt, exp_func_code="2100201", card_no=card, spend_id=f"ICBC2026112000{n:04d}"
        )
        for n, (card, amt) in enumerate(zip(CARDS, amounts_fen, strict=False), 1)
    )
    return dataclasses.replace(
        samples.card_repayment(),
        voucher_no=voucher_no,
        details=details,
        pay_amt_fen=sum(d.pay_amt_fen for d in details),
    )


def test_direct_payment_debits_treasury_and_credits_own_payee() -> None:
    """A 5201 to a payee at this bank moves the amount from the treasury account to the payee and says S."""
    ledger = Ledger("ICBC")
    v = direct()
    outcome = ledger.pay(v, DAY)
    assert outcome.paid and outcome.paid_fen == v.pay_amt_fen and outcome.reason is None
    assert ledger.account(PAYEE).balance_fen == v.pay_amt_fen
    assert ledger.account(TREASURY).balance_fen == -v.pay_amt_fen
    assert outcome.serial == "ICBC2026112300000001"
    receipt = ledger.make_receipt(v, outcome)
    assert (receipt.x_result, receipt.x_pay_amt_fen, receipt.x_add_word) == ("S", v.pay_amt_fen, None)
    assert receipt == ledger.receipt(v.key)
    assert_valid(receipt, "bank")


def test_payee_at_another_bank_goes_through_external_clearing() -> None:
    """At CCB the sample's ICBC payee is external: external clearing gets the money, the payee record nothing."""
    ledger = Ledger("CCB")
    v = direct()
    ledger.pay(v, DAY)
    assert ledger.account(EXTERNAL_CLEARING).balance_fen == v.pay_amt_fen
    assert ledger.account(PAYEE).balance_fen == 0 and ledger.account(PAYEE).external


def test_serials_are_per_bank_and_day_and_restart_each_day() -> None:
    """Serials read <BANKCODE><YYYYMMDD><8 digits>, count up within a day and restart the next."""
    ledger = Ledger("BOCOM")
    first = ledger.pay(direct("A1"), DAY).serial
    second = ledger.pay(direct("A2"), DAY).serial
    third = ledger.pay(direct("A3"), NEXT_DAY).serial
    assert (first, second, third) == ("BOCOM2026112300000001", "BOCOM2026112300000002", "BOCOM2026112400000001")
    assert all(re.fullmatch(r"BOCOM\d{16}", s) for s in (first, second, third))


def test_paying_the_same_voucher_twice_pays_once() -> None:
    """A second pay of the same key returns the first outcome and moves no money, even with other content."""
    ledger = Ledger("ICBC")
    v = direct()
    first = ledger.pay(v, DAY)
    balances, journal = ledger.balances(), ledger.journal
    again = ledger.pay(dataclasses.replace(v, pay_amt_fen=1, details=v.details[:1]), NEXT_DAY, refuse_reason="x")
    assert again is first
    assert ledger.balances() == balances and ledger.journal == journal


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda ledger: ledger.freeze(PAYEE), PAYEE_FROZEN),
        (lambda ledger: ledger.close(PAYEE), PAYEE_CLOSED),
        (lambda ledger: ledger.freeze(TREASURY), PAYER_FROZEN),
        (lambda ledger: ledger.close(TREASURY), PAYER_CLOSED),
    ],
)
def test_refusals_for_frozen_and_closed_accounts(setup: object, reason: str) -> None:
    """A frozen or closed payer or payee account refuses the voucher with its reason; no money moves."""
    ledger = Ledger("ICBC")
    setup(ledger)  # type: ignore[operator]
    v = direct()
    outcome = ledger.pay(v, DAY)
    assert not outcome.paid and outcome.reason == reason
    assert set(ledger.balances().values()) == {0}
    receipt = ledger.make_receipt(v, outcome)
    assert (receipt.x_result, receipt.x_pay_amt_fen, receipt.x_add_word) == ("F", 0, reason)
    assert_valid(receipt, "bank")
    assert [e.kind for e in ledger.journal] == [EntryKind.REFUSAL]


def test_unfrozen_account_pays_again() -> None:
    """Unfreezing an account lets the next voucher through."""
    ledger = Ledger("ICBC")
    ledger.freeze(PAYEE)
    assert not ledger.pay(direct("A1"), DAY).paid
    ledger.freeze(PAYEE, frozen=False)
    assert ledger.pay(direct("A2"), DAY).paid


def test_refusal_asked_by_a_rule() -> None:
    """`refuse_reason` refuses a voucher the books would have paid."""
    ledger = Ledger("ICBC")
    outcome = ledger.pay(direct(), DAY, refuse_reason="收款人名称与账号不符")
    assert (outcome.paid_fen, outcome.reason) == (0, "收款人名称与账号不符")


def test_overdraft_limit_refuses_beyond_it() -> None:
    """A paying account goes negative down to the overdraft limit and no further."""
    ledger = Ledger("ICBC", payer_overdraft_fen=12_500_000)
    assert ledger.pay(direct("A1"), DAY).paid  # exactly the limit
    outcome = ledger.pay(direct("A2", 1), DAY)
    assert outcome.reason == INSUFFICIENT_FUNDS
    assert ledger.account(TREASURY).balance_fen == -12_500_000


def test_card_repayment_fails_a_closed_card_alone() -> None:
    """A closed card fails its detail; the others are paid; the receipt lists each detail and is valid."""
    ledger = Ledger("ICBC")
    ledger.close(CARDS[1])
    v = card_repayment()
    outcome = ledger.pay(v, DAY)
    assert [(d.id, d.paid, d.reason) for d in outcome.details] == [
        ("1", True, None),
        ("2", False, CARD_CLOSED),
        ("3", True, None),
    ]
    assert outcome.paid_fen == 96_000 and outcome.reason == PARTLY_PAID
    assert ledger.account(CARDS[0]).balance_fen == 86_000 and ledger.account(CARDS[1]).balance_fen == 0
    receipt = ledger.make_receipt(v, outcome)
    assert (receipt.x_result, receipt.x_pay_amt_fen) == ("S", 96_000)
    assert [(d.x_result, d.x_add_word) for d in receipt.details] == [("S", None), ("F", CARD_CLOSED), ("S", None)]
    assert_valid(receipt, "bank")


def test_card_repayment_failed_details_from_a_rule_and_all_failed() -> None:
    """Details named by the caller fail with its reason; when all fail the receipt is F with 0.00 paid."""
    ledger = Ledger("ICBC")
    v = card_repayment()
    outcome = ledger.pay(v, DAY, failed_details={"1": "卡片已挂失", "2": "卡片已挂失", "3": "卡片已挂失"})
    assert (outcome.paid_fen, outcome.reason) == (0, "卡片已挂失")
    receipt = ledger.make_receipt(v, outcome)
    assert (receipt.x_result, receipt.x_pay_amt_fen) == ("F", 0)
    assert_valid(receipt, "bank")
    assert ledger.status_of(v.key).x_status == 3


def test_partial_returns_never_exceed_what_was_paid() -> None:
    """Returns come back to the payer, are negative on the 2252, and cannot add up to more than was paid."""
    ledger = Ledger("ICBC")
    v = direct()
    ledger.pay(v, DAY)
    first = ledger.return_payment(v.key, 2_500_000, NEXT_DAY, "收款人账户已销户")
    assert first.pay_amt_fen == -2_500_000 and first.original_key == v.key
    assert first.x_agent_business_no == "ICBC2026112400000001" and first.voucher_no == "2252ICBC2026112400000001"
    assert_valid(first, "bank")
    with pytest.raises(ReturnRefused):
        ledger.return_payment(v.key, 10_000_001, NEXT_DAY, "再退")
    ledger.return_payment(v.key, 10_000_000, NEXT_DAY, "再退")
    assert ledger.returned_fen(v.key) == v.pay_amt_fen
    assert ledger.account(TREASURY).balance_fen == 0 and ledger.account(PAYEE).balance_fen == 0
    with pytest.raises(ReturnRefused):
        ledger.return_payment(v.key, 1, NEXT_DAY, "再退")
    assert ledger.status_of(v.key).x_status == 2  # a return is its own message; the payment stays paid


@pytest.mark.parametrize("amount_fen", [0, -5])
def test_return_of_non_positive_amount_is_refused(amount_fen: int) -> None:
    """A return takes back a positive amount."""
    ledger = Ledger("ICBC")
    ledger.pay(direct(), DAY)
    with pytest.raises(ReturnRefused):
        ledger.return_payment(direct().key, amount_fen, DAY, "退")


def test_returns_of_unknown_or_refused_vouchers_are_refused() -> None:
    """Only a paid voucher can come back."""
    ledger = Ledger("ICBC")
    ledger.close(PAYEE)
    ledger.pay(direct(), DAY)
    with pytest.raises(ReturnRefused):
        ledger.return_payment(direct().key, 1, DAY, "退")
    with pytest.raises(ReturnRefused):
        ledger.return_payment(VoucherKey("450100", 2026, "5201", "nope"), 1, DAY, "退")


def test_return_of_a_partly_paid_card_repayment_takes_back_only_paid_details() -> None:
    """A card repayment's return draws on the cards that were paid, up to what they got."""
    ledger = Ledger("ICBC")
    ledger.close(CARDS[0])
    v = card_repayment()
    ledger.pay(v, DAY)
    ledger.return_payment(v.key, 52_800, DAY, "持卡人已还款")
    assert ledger.account(CARDS[1]).balance_fen == 0 and ledger.account(CARDS[2]).balance_fen == 0
    with pytest.raises(ReturnRefused):
        ledger.return_payment(v.key, 1, DAY, "再退")


def test_status_of_every_state() -> None:
    """Status: 0 never received, 1 received not final, 2 paid (with serial and amount), 3 refused (with reason)."""
    ledger = Ledger("ICBC")
    paid, pending, refused = direct("A1"), direct("A2"), direct("A3")
    ledger.pay(paid, DAY)
    assert ledger.receive(pending) == 1 and ledger.receive(pending) == 2
    ledger.pay(refused, DAY, refuse_reason="账户已销户")
    unknown = ledger.status_of(direct("A4").key)
    assert (unknown.x_status, unknown.x_agent_business_no) == (0, None)
    assert ledger.status_of(pending.key).x_status == 1
    status = ledger.status_of(paid.key)
    assert (status.x_status, status.x_pay_amt_fen, status.x_agent_business_no) == (
        2,
        paid.pay_amt_fen,
        "ICBC2026112300000001",
    )
    status = ledger.status_of(refused.key)
    assert (status.x_status, status.x_pay_amt_fen, status.x_add_word) == (3, 0, "账户已销户")
    for key in (paid.key, pending.key, refused.key, direct("A4").key):
        assert_valid(ledger.status_of(key), "bank")


def test_statement_lines_paid_returned_failed() -> None:
    """A day's lines: paid 0, failed 2 (amount asked), returns 1 negative; other days stay out."""
    ledger = Ledger("ICBC")
    ledger.pay(direct("A1", 500), DAY)
    ledger.pay(direct("A2", 700), DAY, refuse_reason="收款账户已冻结")
    ledger.return_payment(direct("A1").key, 200, DAY, "退")
    ledger.pay(direct("A3", 900), NEXT_DAY)
    lines = ledger.statement_lines(DAY)
    assert [(x.voucher_no, x.pro_state, x.amt_fen) for x in lines] == [
        ("A1", 0, 500),
        ("A2", 2, 700),
        ("2252ICBC2026112300000003", 1, -200),
    ]
    assert [x.voucher_no for x in ledger.statement_lines(NEXT_DAY)] == ["A3"]


@given(page_size=st.integers(1, 12), count=st.integers(0, 30))
def test_statement_pages_add_up(page_size: int, count: int) -> None:
    """Pages carry the whole statement's AllNum/AllAmt, which their details add up to; every page is valid."""
    ledger = Ledger("ICBC")
    for n in range(count):
        ledger.pay(direct(f"B{n}", 100 + n), DAY, refuse_reason="退" if n % 5 == 4 else None)
        if n % 3 == 0 and n % 5 != 4:
            ledger.return_payment(direct(f"B{n}").key, 50, DAY, "退")
    pages = ledger.statement_pages(DAY, page_size)
    details = [d for p in pages for d in p.details]
    assert details == ledger.statement_lines(DAY)
    assert all(p.all_num == len(details) and p.all_amt_fen == sum(d.amt_fen for d in details) for p in pages)
    assert [p.cur_pack_no for p in pages] == list(range(1, len(pages) + 1))
    assert all(p.child_pack_num == len(pages) and len(p.details) <= page_size for p in pages)
    assert len(pages) == max(1, -(-len(details) // page_size))
    for page in pages:
        assert_valid(page, "bank")


@pytest.mark.parametrize("page_size", [0, 5001])
def test_statement_page_size_is_bounded(page_size: int) -> None:
    """A page holds between 1 and MAX_STATEMENT_DETAILS lines."""
    with pytest.raises(ValueError):
        Ledger("ICBC").statement_pages(DAY, page_size)


def test_quota_is_enforced_when_asked_and_restored_by_returns() -> None:
    """With enforce_quota an 8202 beyond its account's quota is refused; a return gives quota back."""
    ledger = Ledger("ICBC", enforce_quota=True)
    ledger.apply_quota(samples.quota_notice())  # 102003's account gets 500,000.00
    v = samples.authorized_voucher()  # 38,600.50 from that account
    big = dataclasses.replace(
        v,
        voucher_no="big",
        pay_amt_fen=50_000_000,
        details=(dataclasses.replace(v.details[0], pay_amt_fen=50_000_000),),
    )
    assert ledger.pay(v, DAY).paid
    assert ledger.quota_fen(v.pay_acct_no) == 50_000_000 - v.pay_amt_fen
    assert ledger.pay(big, DAY).reason == QUOTA_EXCEEDED
    ledger.return_payment(v.key, v.pay_amt_fen, DAY, "退")
    assert ledger.quota_fen(v.pay_acct_no) == 50_000_000


def test_quota_is_not_enforced_by_default() -> None:
    """Without enforce_quota an 8202 is paid even with no quota granted (the gateway checks quota)."""
    assert Ledger("ICBC").pay(samples.authorized_voucher(), DAY).paid


def test_opening_an_account_twice_is_an_error() -> None:
    """Account numbers are unique in the books."""
    ledger = Ledger("ICBC")
    ledger.open_account("1", "甲", balance_fen=100)
    with pytest.raises(Exception, match="already exists"):
        ledger.open_account("1")


# --- conservation: any sequence of operations ----------------------------------------------------------------

_FEEDER = Feeder(Random(20261123), banks=("ICBC", "CCB"))
for _bank in ("ICBC", "CCB"):
    _FEEDER.quota_notice(_bank, DAY)
_POOL: list[Voucher] = [v for _, v in _FEEDER.vouchers(DAY, 12)]
_POOL += _FEEDER.card_repayments("ICBC", _FEEDER.card_spending("ICBC", DAY, 6), DAY)
_POOL += [card_repayment(), direct("C1"), direct("C2", 60_000_000, bank_name="中国建设银行南宁分行")]
_ACCOUNTS = sorted(
    {v.payee_acct_no for v in _POOL}
    | {d.card_no for v in _POOL for d in v.details if d.card_no}
    | {v.pay_acct_no for v in _POOL}
)

_pays = st.tuples(st.just("pay"), st.integers(0, len(_POOL) - 1), st.booleans())
_ops = st.one_of(
    _pays,
    _pays,
    _pays,
    st.tuples(st.just("return"), st.integers(0, len(_POOL) - 1), st.integers(1, 20_000_000)),
    st.tuples(st.just("freeze"), st.integers(0, len(_ACCOUNTS) - 1), st.booleans()),
    st.tuples(st.just("close"), st.integers(0, len(_ACCOUNTS) - 1), st.booleans()),
)


@given(
    ops=st.lists(_ops, max_size=40),
    bank=st.sampled_from(["ICBC", "CCB"]),
    overdraft_fen=st.sampled_from([10**12, 10**12, 8_000_000]),
)
def test_money_is_conserved_and_returns_never_exceed_payments(
    ops: list[tuple[str, int, object]], bank: str, overdraft_fen: int
) -> None:
    """Whatever happens, the balances add up to the opening total, the journal explains every balance, and
    no voucher gets more back than it paid."""
    ledger = Ledger(bank, payer_overdraft_fen=overdraft_fen)
    ledger.open_account("STAFF", "职工", balance_fen=12_345)
    opening = ledger.balances()
    total = ledger.total_fen()
    for op, index, arg in ops:
        if op == "pay":
            v = _POOL[index]
            outcome = ledger.pay(v, DAY, refuse_reason="拒付" if arg and index % 4 == 0 else None)
            assert 0 <= outcome.paid_fen <= v.pay_amt_fen
        elif op == "return":
            key = _POOL[index].key
            outcome_or_none = ledger.outcome(key)
            left = 0 if outcome_or_none is None else outcome_or_none.paid_fen - ledger.returned_fen(key)
            amount_fen = int(arg)  # type: ignore[call-overload]
            if 0 < amount_fen <= left:
                assert ledger.return_payment(key, amount_fen, DAY, "退").pay_amt_fen == -amount_fen
            else:
                with pytest.raises(ReturnRefused):
                    ledger.return_payment(key, amount_fen, DAY, "退")
        elif op == "freeze":
            ledger.freeze(_ACCOUNTS[index], bool(arg))
        else:
            ledger.close(_ACCOUNTS[index])
        assert ledger.total_fen() == total
    assert ledger.replay_balances(opening) == ledger.balances()
    for outcome in ledger.outcomes():
        assert 0 <= ledger.returned_fen(outcome.key) <= outcome.paid_fen
        assert_valid(ledger.receipt(outcome.key), "bank")
