"""The finance-side feeder: realistic, valid vouchers, quota notices and official-card spending, from a seed.

It plays the finance bureau and its budget units: direct payments (5201, paid from the treasury single
account) and authorized payments (8202, from an agency's zero-balance account at the agent bank, against the
quota it granted with a 5106), each for a believable purpose, to a believable payee, for a believable amount.
It also plays the card side: official-card spending records (what a bank reports in a 7101) and the
repayment vouchers (8202, `BusinessTypeCode` 2) that pay them back.

Everything is drawn from the `random.Random` passed in, and every date is an argument: the same seed and the
same calls give the same vouchers, byte for byte. The payees, staff and cards are drawn once, when the feeder
is built, so that the same payees recur over a run as they do in life.

Amounts are log-normal around a median that depends on the purpose (a few thousand yuan for travel and
supplies, hundreds of thousands for works), so most vouchers are between a few hundred and a few tens of
thousands of yuan with a long tail into the millions; some are round contract sums. The sampling uses floats;
an amount is integer fen from the moment it exists, and the details always add up to it exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from random import Random
from typing import Final

from protocols.messages import QuotaLine, QuotaNotice, SpendRecord, Voucher, VoucherDetail
from protocols.money import format_date8
from simulators.names import (
    AGENCIES,
    AGENCY_BY_CODE,
    BANKS,
    COMMON_PURPOSES,
    COMPANY_REGIONS,
    COMPANY_TRADE_NAMES,
    FUND_TYPE_CODE,
    GIVEN_NAME_CHARS,
    INDUSTRIES,
    MERCHANTS,
    PURPOSES,
    SURNAMES,
    TREASURY_ACCT_NAME,
    TREASURY_ACCT_NO,
    TREASURY_BANK_NAME,
    Agency,
    Bank,
    bank_profile,
    luhn_digit,
    zero_balance_account,
    zero_balance_account_name,
)

#: The smallest voucher amount: one yuan.
MIN_VOUCHER_FEN: Final = 100
#: The largest voucher amount the feeder issues: fifty million yuan.
MAX_VOUCHER_FEN: Final = 5_000_000_000
#: The largest official-card spending: fifty thousand yuan.
MAX_SPEND_FEN: Final = 5_000_000
#: Quota granted per agency, functional code and bank by :meth:`Feeder.quota_notice`: five million yuan.
DEFAULT_QUOTA_FEN: Final = 500_000_000
#: Spending records repaid by one card-repayment voucher at most.
MAX_REPAYMENT_DETAILS: Final = 50
#: How many details a voucher has, with what weight (1 to 5).
DETAIL_COUNT_WEIGHTS: Final = (60, 20, 10, 6, 4)
#: Payees drawn per company industry, and individuals.
COMPANIES_PER_INDUSTRY: Final = 6
PEOPLE: Final = 60
#: Official cards per agency and agent bank.
CARDS_PER_AGENCY: Final = 3
#: The repayment deadline is this many days after the spending (公务卡免息期).
LIMIT_DAYS: Final = (30, 60)

_ADM_DIV_RE: Final = re.compile(r"[0-9]{6,12}")


class FeederError(ValueError):
    """The feeder was asked for something it cannot make validly (unknown bank or card, no quota)."""


@dataclass(frozen=True, slots=True)
class Payee:
    """A payee the feeder pays: a company or an individual, with an account at some bank.

    Attributes:
        acct_no: the account number (a company account, or a person's debit card).
        name: the account name.
        bank_code: the bank holding the account.
        branch: the index of the Nanning branch (:meth:`simulators.names.Bank.branch_name`).
        kind: an industry of :data:`simulators.names.INDUSTRIES`, or `"person"`.
    """

    acct_no: str
    name: str
    bank_code: str
    branch: int
    kind: str

    @property
    def bank(self) -> Bank:
        """The payee's bank."""
        return bank_profile(self.bank_code)

    @property
    def bank_name(self) -> str:
        """`PayeeAcctBankName`: the branch's full name."""
        return self.bank.branch_name(self.branch)

    @property
    def cnaps_no(self) -> str:
        """`PayeeAcctBankNo`: the branch's CNAPS code."""
        return self.bank.cnaps_no(self.branch)


@dataclass(frozen=True, slots=True)
class Card:
    """An official card (公务卡): issued by an agent bank to a member of an agency's staff."""

    card_no: str
    holder: str
    agency_code: str
    bank_code: str
    branch: int


def draw_amount_fen(
    rng: Random,
    median_yuan: float,
    sigma: float,
    *,
    round_prob: float = 0.0,
    min_fen: int = MIN_VOUCHER_FEN,
    max_fen: int = MAX_VOUCHER_FEN,
) -> int:
    """A log-normal amount in integer fen, clamped to [`min_fen`, `max_fen`].

    With probability `round_prob` it is a round figure: two significant digits of whole yuan (12,345.67 →
    12,000.00). Always draws exactly two numbers from `rng`.

    Args:
        rng: the seeded source of randomness.
        median_yuan: the median of the distribution, in yuan.
        sigma: its spread, in natural-log units (1.0: a tenth of amounts are 3.6 times the median or more).
        round_prob: the probability of a round figure.
        min_fen: the smallest amount.
        max_fen: the largest amount.
    """
    yuan = rng.lognormvariate(math.log(median_yuan), sigma)
    rounded = rng.random() < round_prob
    fen = int(yuan * 100)  # the only float-to-money step: truncation to whole fen
    if rounded:
        whole_yuan = max(1, fen // 100)
        unit = 10 ** max(0, len(str(whole_yuan)) - 2)
        fen = ((whole_yuan + unit // 2) // unit) * unit * 100
    return max(min_fen, min(max_fen, fen))


def split_amount_fen(rng: Random, total_fen: int, parts: int) -> list[int]:
    """Split `total_fen` into `parts` positive amounts that add up to it exactly (integer arithmetic).

    Fewer parts come back when the total is too small to split (under one yuan per part).
    """
    if parts < 1 or total_fen < 1:
        raise ValueError("a split needs a positive total and at least one part")
    if total_fen < 100 * parts:
        parts = 1
    weights = [rng.randint(1, 100) for _ in range(parts)]
    whole = sum(weights)
    amounts = [total_fen * w // whole for w in weights[:-1]]  # each ≥ total/(100·parts) ≥ 1 fen
    amounts.append(total_fen - sum(amounts))
    return amounts


def _digits(rng: Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _card_number(rng: Random, bin_: str, length: int = 19) -> str:
    body = bin_ + _digits(rng, length - len(bin_) - 1)
    return body + luhn_digit(body)


def _person_name(rng: Random) -> str:
    given = "".join(rng.choice(GIVEN_NAME_CHARS) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(SURNAMES) + given


class Feeder:
    """The finance side of a simulation: vouchers for the agent banks, quota, card spending.

    Args:
        rng: the seeded source of randomness; the feeder draws from nothing else.
        adm_div_code: the administrative division (`AdmDivCode`), 6–12 digits; Nanning is 450100.
        st_year: the budget year (`StYear`).
        banks: the agent banks vouchers go to (codes; unknown codes get a stable made-up profile).
        first_seq: the first voucher sequence number, so that runs against the same store do not reuse
            `VoucherNo`s.

    Raises:
        FeederError: a malformed division code or year, no banks, or a bank named twice.
    """

    def __init__(
        self,
        rng: Random,
        adm_div_code: str = "450100",
        st_year: int = 2026,
        banks: Sequence[str] = ("ICBC", "CCB", "BOCOM"),
        *,
        first_seq: int = 1,
    ) -> None:
        if not _ADM_DIV_RE.fullmatch(adm_div_code):
            raise FeederError(f"AdmDivCode is 6–12 digits, not {adm_div_code!r}")
        if not 2000 <= st_year <= 2099:
            raise FeederError(f"StYear {st_year} is outside 2000–2099")
        if not banks or len(set(banks)) != len(banks):
            raise FeederError(f"at least one agent bank, each named once: {list(banks)}")
        if first_seq < 1:
            raise FeederError(f"first_seq starts at 1, not {first_seq}")
        try:
            self.banks: tuple[Bank, ...] = tuple(bank_profile(code) for code in banks)
        except ValueError as exc:
            raise FeederError(str(exc)) from None
        self.rng = rng
        self.adm_div_code = adm_div_code
        self.st_year = st_year
        self._bank_by_code = {b.code: b for b in self.banks}
        self._seq = {"5201": first_seq - 1, "8202": first_seq - 1, "5106": first_seq - 1}
        self._spend_seq: dict[tuple[str, date], int] = {}
        self._quota_left: dict[tuple[str, str, str], int] = {}  # (bank, agency, exp func) -> fen
        self.payees = self._draw_payees()
        self._payees_by_kind: dict[str, list[Payee]] = {}
        for p in self.payees:
            self._payees_by_kind.setdefault(p.kind, []).append(p)
        self.cards = self._draw_cards()
        self._card_by_no = {c.card_no: c for c in self.cards}

    # --- the populations, drawn once --------------------------------------------------------------------------

    def _draw_payees(self) -> tuple[Payee, ...]:
        rng = self.rng
        all_banks = list(BANKS.values())
        weights = [4 if b.agent else 1 for b in all_banks]  # most companies bank with the big five
        seen_names: set[str] = set()
        seen_accts: set[str] = set()
        payees: list[Payee] = []
        for industry, suffixes in INDUSTRIES.items():
            count = 1 if industry in ("power", "water") else COMPANIES_PER_INDUSTRY
            while sum(p.kind == industry for p in payees) < count:
                name = rng.choice(COMPANY_REGIONS) + rng.choice(COMPANY_TRADE_NAMES) + rng.choice(suffixes)
                bank = rng.choices(all_banks, weights)[0]
                acct_no = bank.acct_prefix + "5" + _digits(rng, bank.acct_len - len(bank.acct_prefix) - 1)
                if name in seen_names or acct_no in seen_accts:
                    continue
                seen_names.add(name)
                seen_accts.add(acct_no)
                payees.append(Payee(acct_no, name, bank.code, rng.randrange(len(bank.branches)), industry))
        while sum(p.kind == "person" for p in payees) < PEOPLE:
            bank = rng.choices(all_banks, weights)[0]
            acct_no = _card_number(rng, bank.debit_bin)
            if acct_no in seen_accts:
                continue
            seen_accts.add(acct_no)
            payees.append(Payee(acct_no, _person_name(rng), bank.code, rng.randrange(len(bank.branches)), "person"))
        return tuple(payees)

    def _draw_cards(self) -> tuple[Card, ...]:
        cards: list[Card] = []
        seen: set[str] = set()
        for agency in AGENCIES:
            for bank in self.banks:
                while sum(c.agency_code == agency.code and c.bank_code == bank.code for c in cards) < CARDS_PER_AGENCY:
                    card_no = _card_number(self.rng, bank.card_bin)
                    if card_no in seen:
                        continue
                    seen.add(card_no)
                    branch = self.rng.randrange(len(bank.branches))
                    cards.append(Card(card_no, _person_name(self.rng), agency.code, bank.code, branch))
        return tuple(cards)

    # --- vouchers ---------------------------------------------------------------------------------------------

    def _bank(self, bank_code: str) -> Bank:
        bank = self._bank_by_code.get(bank_code)
        if bank is None:
            raise FeederError(f"{bank_code} is not one of this feeder's banks ({', '.join(self._bank_by_code)})")
        return bank

    def _voucher_no(self, vt_code: str) -> str:
        self._seq[vt_code] += 1
        return f"{vt_code}{self.adm_div_code}{self._seq[vt_code]:08d}"

    def quota_left_fen(self, bank_code: str, agency_code: str, exp_func_code: str) -> int:
        """Quota granted and not yet used by this feeder's 8202s, for one agency and functional code at a bank."""
        return self._quota_left.get((bank_code, agency_code, exp_func_code), 0)

    def next_voucher(self, vou_date: date) -> tuple[str, Voucher]:
        """The next payment voucher and the agent bank it goes to.

        The purpose decides the voucher type: projects and large procurement are direct payments (5201), running
        costs authorized ones (8202). An 8202 is only issued within quota granted by :meth:`quota_notice`; when
        the quota left is too small, the payment is made as a 5201 instead, so the feeder never produces a
        voucher the gateway must refuse for quota.

        Args:
            vou_date: the voucher date (`VouDate`).

        Returns:
            (bank code, voucher).
        """
        rng = self.rng
        bank = rng.choice(self.banks)
        agency = rng.choice(AGENCIES)
        purpose = PURPOSES[rng.choice(COMMON_PURPOSES + agency.purposes)]
        vt_code = rng.choice(purpose.vt_codes)
        exp_func_code = rng.choice(agency.exp_func_codes)
        amount_fen = draw_amount_fen(rng, purpose.median_yuan, purpose.sigma, round_prob=purpose.round_prob)
        quota_key = (bank.code, agency.code, exp_func_code)
        if vt_code == "8202" and self._quota_left.get(quota_key, 0) < amount_fen:
            vt_code = "5201"
        if vt_code == "8202":
            self._quota_left[quota_key] -= amount_fen
        payee = rng.choice(self._payees_by_kind[purpose.payee_kind])
        parts = rng.choices(range(1, len(DETAIL_COUNT_WEIGHTS) + 1), DETAIL_COUNT_WEIGHTS)[0]
        details = tuple(
            VoucherDetail(id=str(n), pay_amt_fen=amt, exp_func_code=exp_func_code)
            for n, amt in enumerate(split_amount_fen(rng, amount_fen, parts), 1)
        )
        company = payee.kind != "person"
        remark = None
        if company and rng.random() < 0.3:
            remark = f"合同号NN-{self.st_year}-{rng.randint(1, 9999):04d}"
        with_cnaps = rng.random() < (0.8 if company else 0.5)
        if vt_code == "5201":
            pay = (TREASURY_ACCT_NO, TREASURY_ACCT_NAME, TREASURY_BANK_NAME)
        else:
            zba = zero_balance_account(agency.code, bank.code)
            pay = (zba, zero_balance_account_name(agency.name), bank.branch_name(self._agency_branch(agency, bank)))
        voucher = Voucher(
            adm_div_code=self.adm_div_code,
            st_year=self.st_year,
            vt_code=vt_code,
            vou_date=vou_date,
            voucher_no=self._voucher_no(vt_code),
            agency_code=agency.code,
            agency_name=agency.name,
            fund_type_code=FUND_TYPE_CODE,
            pay_type_code="11" if vt_code == "5201" else "12",
            business_type_code="1",
            exp_func_code=exp_func_code,
            pay_acct_no=pay[0],
            pay_acct_name=pay[1],
            pay_acct_bank_name=pay[2],
            payee_acct_no=payee.acct_no,
            payee_acct_name=payee.name,
            payee_acct_bank_name=payee.bank_name,
            pay_amt_fen=amount_fen,
            pay_summary_name=purpose.name,
            payee_acct_bank_no=payee.cnaps_no if with_cnaps else None,
            exp_eco_code=purpose.exp_eco_code,
            remark=remark,
            details=details,
        )
        return bank.code, voucher

    def vouchers(self, vou_date: date, count: int) -> list[tuple[str, Voucher]]:
        """`count` calls of :meth:`next_voucher`."""
        return [self.next_voucher(vou_date) for _ in range(count)]

    @staticmethod
    def _agency_branch(agency: Agency, bank: Bank) -> int:
        """The branch holding an agency's zero-balance account at a bank (fixed per agency)."""
        return int(agency.code) % len(bank.branches)

    def quota_notice(self, bank_code: str, vou_date: date, *, quota_fen: int = DEFAULT_QUOTA_FEN) -> QuotaNotice:
        """A 5106 granting `quota_fen` to every agency and functional code at a bank.

        The feeder remembers the grant and issues 8202s to that bank only within it (see :meth:`next_voucher`).

        Raises:
            FeederError: not one of this feeder's banks, or a quota that is not positive.
        """
        bank = self._bank(bank_code)
        if quota_fen <= 0:
            raise FeederError(f"a quota is positive, not {quota_fen} fen")
        lines: list[QuotaLine] = []
        for agency in AGENCIES:
            for exp_func_code in agency.exp_func_codes:
                key = (bank.code, agency.code, exp_func_code)
                self._quota_left[key] = self._quota_left.get(key, 0) + quota_fen
                lines.append(
                    QuotaLine(
                        id=str(len(lines) + 1),
                        agency_code=agency.code,
                        agency_name=agency.name,
                        pay_acct_no=zero_balance_account(agency.code, bank.code),
                        fund_type_code=FUND_TYPE_CODE,
                        exp_func_code=exp_func_code,
                        quota_amt_fen=quota_fen,
                    )
                )
        return QuotaNotice(
            adm_div_code=self.adm_div_code,
            st_year=self.st_year,
            vt_code="5106",
            vou_date=vou_date,
            voucher_no=self._voucher_no("5106"),
            lines=tuple(lines),
        )

    # --- official cards ---------------------------------------------------------------------------------------

    def card_spending(self, bank_code: str, txn_date: date, count: int) -> tuple[SpendRecord, ...]:
        """`count` official-card spending records of a day at a bank (what it reports in a 7101).

        Cards, holders and agencies come from the feeder's card population; merchants, times and amounts from
        :data:`simulators.names.MERCHANTS`; the repayment deadline is 30–60 days after the spending.
        `SpendId` is `<BANKCODE><YYYYMMDD><6-digit sequence>`, unique per bank.

        Raises:
            FeederError: not one of this feeder's banks.
        """
        bank = self._bank(bank_code)
        if count < 0:
            raise FeederError(f"a count is not negative: {count}")
        rng = self.rng
        cards = [c for c in self.cards if c.bank_code == bank.code]
        records = []
        for _ in range(count):
            card = rng.choice(cards)
            kind = rng.choice(MERCHANTS)
            seq = self._spend_seq.get((bank.code, txn_date), 0) + 1
            self._spend_seq[(bank.code, txn_date)] = seq
            records.append(
                SpendRecord(
                    spend_id=f"{bank.code}{format_date8(txn_date)}{seq:06d}",
                    card_no=card.card_no,
                    card_holder=card.holder,
                    agency_code=card.agency_code,
                    txn_date=txn_date,
                    txn_time=time(rng.randint(*kind.hours), rng.randrange(60), rng.randrange(60)),
                    merchant_name=rng.choice(kind.names),
                    amt_fen=draw_amount_fen(rng, kind.median_yuan, kind.sigma, max_fen=MAX_SPEND_FEN),
                    auth_code=rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + _digits(rng, 5),
                    limit_date=txn_date + timedelta(days=rng.randint(*LIMIT_DAYS)),
                )
            )
        return tuple(records)

    def card_repayments(self, bank_code: str, records: Sequence[SpendRecord], vou_date: date) -> list[Voucher]:
        """Repayment vouchers (8202, `BusinessTypeCode` 2) for spending records: one per card, at most
        :data:`MAX_REPAYMENT_DETAILS` records each, paid from the agency's zero-balance account to the card.

        They use quota like any 8202, so :meth:`quota_notice` must have granted enough.

        Raises:
            FeederError: a record's card is not one of the feeder's cards at this bank, or the quota is short.
        """
        bank = self._bank(bank_code)
        by_card: dict[str, list[SpendRecord]] = {}
        for r in records:
            card = self._card_by_no.get(r.card_no)
            if card is None or card.bank_code != bank.code:
                raise FeederError(f"{r.spend_id}: card {r.card_no[:6]}… is not a card of {bank.code}")
            by_card.setdefault(r.card_no, []).append(r)
        vouchers = []
        for card_no, spent in by_card.items():
            card = self._card_by_no[card_no]
            agency = AGENCY_BY_CODE[card.agency_code]
            exp_func_code = agency.exp_func_codes[0]
            for start in range(0, len(spent), MAX_REPAYMENT_DETAILS):
                chunk = spent[start : start + MAX_REPAYMENT_DETAILS]
                amount_fen = sum(r.amt_fen for r in chunk)
                key = (bank.code, agency.code, exp_func_code)
                if self._quota_left.get(key, 0) < amount_fen:
                    raise FeederError(f"{agency.name} {exp_func_code} at {bank.code}: quota short of {amount_fen} fen")
                self._quota_left[key] -= amount_fen
                vouchers.append(
                    Voucher(
                        adm_div_code=self.adm_div_code,
                        st_year=self.st_year,
                        vt_code="8202",
                        vou_date=vou_date,
                        voucher_no=self._voucher_no("8202"),
                        agency_code=agency.code,
                        agency_name=agency.name,
                        fund_type_code=FUND_TYPE_CODE,
                        pay_type_code="12",
                        business_type_code="2",
                        exp_func_code=exp_func_code,
                        pay_acct_no=zero_balance_account(agency.code, bank.code),
                        pay_acct_name=zero_balance_account_name(agency.name),
                        pay_acct_bank_name=bank.branch_name(self._agency_branch(agency, bank)),
                        payee_acct_no=card.card_no,
                        payee_acct_name=card.holder,
                        payee_acct_bank_name=bank.branch_name(card.branch),
                        pay_amt_fen=amount_fen,
                        pay_summary_name="公务卡还款",
                        details=tuple(
                            VoucherDetail(
                                id=str(n),
                                pay_amt_fen=r.amt_fen,
                                exp_func_code=exp_func_code,
                                card_no=r.card_no,
                                spend_id=r.spend_id,
                            )
                            for n, r in enumerate(chunk, 1)
                        ),
                    )
                )
        return vouchers
