"""The finance-side feeder: deterministic, valid, realistic vouchers, quota notices and card spending."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import date, timedelta
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.messages import CardSpending
from simulators import names
from simulators.feeder import (
    MAX_VOUCHER_FEN,
    Feeder,
    FeederError,
    draw_amount_fen,
    split_amount_fen,
)
from simulators.ledger import EXTERNAL_CLEARING, Ledger
from tests.simulators.wire import assert_valid

DAY = date(2026, 11, 23)
BANKS = ("ICBC", "CCB", "BOCOM")


def funded(seed: int, banks: tuple[str, ...] = BANKS) -> Feeder:
    """A feeder whose agencies have quota at every bank."""
    feeder = Feeder(Random(seed), banks=banks)
    for bank in banks:
        feeder.quota_notice(bank, DAY)
    return feeder


def test_same_seed_same_sequence() -> None:
    """Two feeders with the same seed produce the same vouchers, notices and spending; another seed differs."""

    def run(seed: int) -> tuple[object, ...]:
        feeder = Feeder(Random(seed))
        notice = feeder.quota_notice("CCB", DAY)
        vouchers = feeder.vouchers(DAY, 50)
        spending = feeder.card_spending("CCB", DAY, 10)
        return notice, vouchers, spending, feeder.card_repayments("CCB", spending, DAY)

    assert run(42) == run(42)
    assert run(42) != run(43)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), banks=st.sampled_from([BANKS, ("ICBC",), ("ABC", "BOC", "TESTBANK1")]))
def test_every_feeder_message_is_valid(seed: int, banks: tuple[str, ...]) -> None:
    """Vouchers, quota notices, spending reports and repayments pass the business rules and the XML codec."""
    feeder = Feeder(Random(seed), banks=banks)
    for bank in banks:
        assert_valid(feeder.quota_notice(bank, DAY), "gateway")
    seen = set()
    for bank, v in feeder.vouchers(DAY, 40):
        assert bank in banks
        assert_valid(v, "gateway")
        assert v.key not in seen
        seen.add(v.key)
        assert 1 <= len(v.details) <= 5
        if v.vt_code == "5201":
            assert (v.pay_type_code, v.pay_acct_no) == ("11", names.TREASURY_ACCT_NO)
        else:
            assert (v.pay_type_code, v.pay_acct_no) == ("12", names.zero_balance_account(v.agency_code, bank))
            assert v.pay_acct_bank_name.startswith(names.bank_profile(bank).name)
    spending = feeder.card_spending(banks[0], DAY, 8)
    assert_valid(CardSpending(records=spending), "bank")
    for v in feeder.card_repayments(banks[0], spending, DAY):
        assert_valid(v, "gateway")
        assert v.key not in seen
        seen.add(v.key)


def test_amount_distribution_over_ten_thousand_vouchers() -> None:
    """Most amounts are between a hundred and a hundred thousand yuan, the median some thousands, and a long
    tail reaches the millions without passing the cap; some are round figures."""
    amounts_fen = [v.pay_amt_fen for _, v in funded(2026).vouchers(DAY, 10_000)]
    median_yuan = statistics.median(amounts_fen) / 100
    assert 2_000 <= median_yuan <= 30_000
    assert sum(10_000 <= a <= 10_000_000 for a in amounts_fen) / len(amounts_fen) >= 0.85
    millions = sum(a >= 100_000_000 for a in amounts_fen) / len(amounts_fen)
    assert 0.002 <= millions <= 0.05
    assert max(amounts_fen) <= MAX_VOUCHER_FEN and min(amounts_fen) >= 100
    assert sum(a % 100_000 == 0 for a in amounts_fen) / len(amounts_fen) >= 0.05  # whole thousands of yuan


def test_draw_amount_is_log_normal_around_its_median() -> None:
    """Over 10 000 draws the median is within 5 % of the one asked and a tenth lie above median·e^(1.28σ)."""
    rng = Random(7)
    amounts_fen = [draw_amount_fen(rng, 5_000, 1.0) for _ in range(10_000)]
    assert all(isinstance(a, int) and a > 0 for a in amounts_fen)
    assert abs(statistics.median(amounts_fen) - 500_000) <= 25_000
    above = sum(a > 500_000 * math.exp(1.2816) for a in amounts_fen) / len(amounts_fen)
    assert 0.08 <= above <= 0.12


def test_round_amounts_have_two_significant_digits() -> None:
    """A round amount is whole yuan with at most two significant digits."""
    rng = Random(3)
    for _ in range(200):
        fen = draw_amount_fen(rng, 123_456, 1.0, round_prob=1.0)
        assert fen % 100 == 0 and len(str(fen // 100).rstrip("0")) <= 2


@given(rng_seed=st.integers(0, 2**32 - 1), total_fen=st.integers(1, 10**12), parts=st.integers(1, 5))
def test_split_adds_up_exactly(rng_seed: int, total_fen: int, parts: int) -> None:
    """A split gives positive amounts that add up exactly to the total, never more parts than asked."""
    amounts = split_amount_fen(Random(rng_seed), total_fen, parts)
    assert sum(amounts) == total_fen and all(a > 0 for a in amounts) and 1 <= len(amounts) <= parts


def test_no_authorized_voucher_without_quota() -> None:
    """Without a quota notice every voucher is a direct payment (5201)."""
    assert {v.vt_code for _, v in Feeder(Random(1)).vouchers(DAY, 300)} == {"5201"}


def test_authorized_vouchers_stay_within_quota() -> None:
    """8202s to a bank never add up to more than the quota granted per agency and functional code."""
    feeder = Feeder(Random(5), banks=("ICBC",))
    notice = feeder.quota_notice("ICBC", DAY, quota_fen=2_000_000)
    granted = {(line.agency_code, line.exp_func_code): line.quota_amt_fen for line in notice.lines}
    used: Counter[tuple[str, str]] = Counter()
    for _, v in feeder.vouchers(DAY, 3_000):
        if v.vt_code == "8202":
            used[(v.agency_code, v.exp_func_code)] += v.pay_amt_fen
    assert used and all(used[k] <= granted[k] for k in used)
    assert any(used[k] > granted[k] // 2 for k in used)  # the quota was actually drawn on


def test_quota_notice_covers_every_agency_account() -> None:
    """A quota notice has a line per agency and functional code, naming the agency's account at that bank."""
    notice = Feeder(Random(1)).quota_notice("BOCOM", DAY, quota_fen=123)
    assert len(notice.lines) == sum(len(a.exp_func_codes) for a in names.AGENCIES)
    assert all(line.pay_acct_no == names.zero_balance_account(line.agency_code, "BOCOM") for line in notice.lines)
    assert {line.quota_amt_fen for line in notice.lines} == {123}


def test_card_spending_is_realistic() -> None:
    """Spending records: unique ids, Luhn-valid cards of that bank, deadlines 30–60 days on, plausible amounts."""
    feeder = Feeder(Random(9))
    records = feeder.card_spending("ICBC", DAY, 500) + feeder.card_spending("ICBC", DAY, 10)
    assert len({r.spend_id for r in records}) == len(records)
    assert all(r.spend_id.startswith("ICBC20261123") for r in records)
    assert all(names.luhn_ok(r.card_no) and r.card_no.startswith(names.BANKS["ICBC"].card_bin) for r in records)
    assert all(timedelta(days=30) <= r.limit_date - r.txn_date <= timedelta(days=60) for r in records)
    assert 100 <= statistics.median(r.amt_fen for r in records) / 100 <= 2_000
    holders = {c.card_no: c for c in feeder.cards}
    assert all(holders[r.card_no].holder == r.card_holder for r in records)


def test_card_repayments_one_voucher_per_card() -> None:
    """Repayments group records by card, repay each record as a detail, and pay into the card."""
    feeder = funded(11)
    records = feeder.card_spending("CCB", DAY, 30)
    vouchers = feeder.card_repayments("CCB", records, DAY)
    assert len(vouchers) == len({r.card_no for r in records})
    for v in vouchers:
        assert v.business_type_code == "2" and v.vt_code == "8202"
        assert {d.card_no for d in v.details} == {v.payee_acct_no}
    assert sorted(d.spend_id or "" for v in vouchers for d in v.details) == sorted(r.spend_id for r in records)


def test_card_repayment_refusals() -> None:
    """Repaying without quota, or another bank's card, is refused by the feeder itself."""
    feeder = Feeder(Random(2))
    records = feeder.card_spending("ICBC", DAY, 3)
    with pytest.raises(FeederError, match="quota"):
        feeder.card_repayments("ICBC", records, DAY)
    feeder.quota_notice("CCB", DAY)
    with pytest.raises(FeederError, match="not a card of CCB"):
        feeder.card_repayments("CCB", records, DAY)


@pytest.mark.parametrize(
    "kwargs",
    [{"adm_div_code": "4501"}, {"st_year": 1999}, {"banks": ()}, {"banks": ("ICBC", "ICBC")}, {"banks": ("工行",)}],
)
def test_feeder_refuses_bad_settings(kwargs: dict[str, object]) -> None:
    """A malformed division, year or bank list is refused when the feeder is built."""
    with pytest.raises(FeederError):
        Feeder(Random(0), **kwargs)  # type: ignore[arg-type]


def test_unknown_bank_is_refused_for_quota_and_spending() -> None:
    """Only the feeder's own banks get quota notices and spending."""
    feeder = Feeder(Random(0), banks=("ICBC",))
    with pytest.raises(FeederError):
        feeder.quota_notice("CCB", DAY)
    with pytest.raises(FeederError):
        feeder.card_spending("CCB", DAY, 1)


def test_simulated_banks_pay_every_feeder_voucher() -> None:
    """Each bank's ledger pays all the vouchers the feeder sends it, to own and other banks' payees alike."""
    feeder = funded(77)
    ledgers = {bank: Ledger(bank) for bank in BANKS}
    for bank, v in feeder.vouchers(DAY, 500):
        outcome = ledgers[bank].pay(v, DAY)
        assert outcome.paid_fen == v.pay_amt_fen
    for ledger in ledgers.values():
        assert ledger.total_fen() == 0
        assert ledger.account(EXTERNAL_CLEARING).balance_fen > 0
        assert any(not a.external and a.balance_fen > 0 for a in ledger.accounts())
