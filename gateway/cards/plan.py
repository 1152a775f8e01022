"""The pure core of official-card repayment: card numbers, grouping, the repayment voucher, per-detail results.

Nothing here touches the store, the network or the clock, so the rules that decide money (what goes into which
voucher, what a receipt means for each record) are tested by themselves, with Hypothesis.

- Card numbers are shown masked (first six, last four: `622828*********4567`) and grouped by a keyed hash
  (HMAC-SHA256 under a per-instance key), never by the number: the number itself stays only in the signed
  7101 of the message archive, and in the repayment voucher built from it.
- :func:`plan_repayments` groups approved records per bank, agency and card, in record order, at most
  `max_details` to a voucher (PROTOCOL.md §5.1; one payee per voucher: the card).
- :func:`settle` reads a receipt (PROTOCOL.md §5.2) detail by detail, and refuses one whose details and amounts
  do not add up: the sum repaid is always the sum of the succeeded details.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from protocols.messages import Receipt, Voucher, VoucherDetail

#: `PaySummaryName` of a repayment voucher.
REPAYMENT_SUMMARY: Final = "公务卡还款"
#: `BusinessTypeCode` of an official-card repayment (PROTOCOL.md §5.1).
CARD_REPAYMENT: Final = "2"
#: Digits kept in clear at each end of a masked card number.
MASK_HEAD: Final = 6
MASK_TAIL: Final = 4
#: Hex digits of the card hash shown as the card's reference in lists (enough to tell an agency's cards apart).
CARD_REF_HEX: Final = 12


def mask_card(card_no: str) -> str:
    """`6228281234567894567` → `622828*********4567`; anything too short to keep both ends is all stars."""
    if len(card_no) <= MASK_HEAD + MASK_TAIL:
        return "*" * len(card_no)
    return card_no[:MASK_HEAD] + "*" * (len(card_no) - MASK_HEAD - MASK_TAIL) + card_no[-MASK_TAIL:]


def card_hash(key: bytes, card_no: str) -> str:
    """The keyed hash that groups a card's records (HMAC-SHA256, hex): equal numbers, equal hashes."""
    return hmac.new(key, card_no.encode("ascii"), hashlib.sha256).hexdigest()


def mask_digits_in(text: str) -> str:
    """`text` with every run of 12–19 digits (a card number, PROTOCOL.md `CardNo`) masked."""
    out: list[str] = []
    run: list[str] = []
    for ch in [*text, ""]:
        if ch.isascii() and ch.isdigit():
            run.append(ch)
            continue
        digits = "".join(run)
        out.append(mask_card(digits) if 12 <= len(digits) <= 19 else digits)
        run = []
        out.append(ch)
    return "".join(out)


def masked_voucher_document(data: dict[str, Any]) -> dict[str, Any]:
    """A voucher's JSON form (:mod:`protocols.jsonform`) with the card numbers of a card repayment masked:
    `PayeeAcctNo` and every detail's `CardNo` (what the voucher read side shows)."""
    if data.get("BusinessTypeCode") != CARD_REPAYMENT:
        return data
    out = dict(data)
    if isinstance(out.get("PayeeAcctNo"), str):
        out["PayeeAcctNo"] = mask_card(out["PayeeAcctNo"])
    out["DetailList"] = [
        {**d, "CardNo": mask_card(d["CardNo"])} if isinstance(d, dict) and isinstance(d.get("CardNo"), str) else d
        for d in out.get("DetailList", [])
    ]
    return out


# --- grouping ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Approved:
    """An approved record as the planner needs it."""

    id: int
    bank_code: str
    agency_code: str
    card_hash: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class Group:
    """The records of one repayment voucher: one bank, one agency, one card."""

    bank_code: str
    agency_code: str
    card_hash: str
    records: tuple[Approved, ...]

    @property
    def amount_fen(self) -> int:
        return sum(r.amount_fen for r in self.records)


def plan_repayments(records: Iterable[Approved], max_details: int) -> list[Group]:
    """Group approved records into repayment vouchers: per bank, agency and card, by ascending record id,
    at most `max_details` records each. Every record is in exactly one group.

    Raises:
        ValueError: `max_details` is not positive.
    """
    if max_details < 1:
        raise ValueError(f"max_details must be positive, not {max_details}")
    by_key: dict[tuple[str, str, str], list[Approved]] = {}
    for record in sorted(records, key=lambda r: r.id):
        by_key.setdefault((record.bank_code, record.agency_code, record.card_hash), []).append(record)
    groups = []
    for (bank, agency, card), members in sorted(by_key.items(), key=lambda kv: kv[1][0].id):
        for start in range(0, len(members), max_details):
            groups.append(Group(bank, agency, card, tuple(members[start : start + max_details])))
    return groups


# --- the repayment voucher -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgencyAccount:
    """An agency's zero-balance account (零余额账户) and classification, as its quota notice (5106) gave them."""

    agency_code: str
    agency_name: str
    pay_acct_no: str
    pay_acct_name: str
    pay_acct_bank_name: str
    fund_type_code: str
    exp_func_code: str


@dataclass(frozen=True, slots=True)
class Line:
    """One record to repay: its spending id, amount, and the card number read back from the archive."""

    spend_id: str
    amount_fen: int
    card_no: str


def repayment_voucher_no(vou_date: date, first_record_id: int, attempt: int) -> str:
    """`CR<YYYYMMDD><first record id, 10 digits>R<attempt>`: unique, because a record is in at most one voucher
    per repayment attempt, and the same on every retry of the transaction that makes it."""
    return f"CR{vou_date:%Y%m%d}{first_record_id:010d}R{attempt}"


def repayment_voucher(
    *,
    adm_div_code: str,
    st_year: int,
    vou_date: date,
    voucher_no: str,
    account: AgencyAccount,
    card_holder: str,
    card_bank_name: str,
    lines: Sequence[Line],
) -> Voucher:
    """The 8202 with `BusinessTypeCode` 2 repaying `lines` of one card (PROTOCOL.md §5.1; docs/protocol.md's
    8202-card-repayment sample): from the agency's zero-balance account to the card, one detail per record,
    each naming its `CardNo` and `SpendId`.

    Raises:
        ValueError: no lines, or lines of more than one card.
    """
    if not lines:
        raise ValueError("a repayment voucher repays at least one record")
    cards = {line.card_no for line in lines}
    if len(cards) != 1:
        raise ValueError("a repayment voucher repays one card")
    (card_no,) = cards
    return Voucher(
        adm_div_code=adm_div_code,
        st_year=st_year,
        vt_code="8202",
        vou_date=vou_date,
        voucher_no=voucher_no,
        agency_code=account.agency_code,
        agency_name=account.agency_name,
        fund_type_code=account.fund_type_code,
        pay_type_code="12",
        business_type_code=CARD_REPAYMENT,
        exp_func_code=account.exp_func_code,
        pay_acct_no=account.pay_acct_no,
        pay_acct_name=account.pay_acct_name,
        pay_acct_bank_name=account.pay_acct_bank_name,
        payee_acct_no=card_no,
        payee_acct_name=card_holder,
        payee_acct_bank_name=card_bank_name,
        pay_amt_fen=sum(line.amount_fen for line in lines),
        pay_summary_name=REPAYMENT_SUMMARY,
        details=tuple(
            VoucherDetail(
                id=str(n),
                pay_amt_fen=line.amount_fen,
                exp_func_code=account.exp_func_code,
                card_no=line.card_no,
                spend_id=line.spend_id,
            )
            for n, line in enumerate(lines, 1)
        ),
    )


# --- the result ----------------------------------------------------------------------------------------------------


class SettlementError(ValueError):
    """A receipt whose per-detail results do not fit its voucher (answered 91006, nothing applied)."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a receipt says for each detail of a repayment voucher: paid ones, and failed ones with the reason."""

    paid: frozenset[str]
    failed: Mapping[str, str]


def settle(details: Mapping[str, int], receipt: Receipt) -> Settlement:
    """Per-detail results of a repayment receipt (PROTOCOL.md §5.2).

    A receipt without details settles every detail alike (`S`: all paid, which the rules only allow for the full
    amount; `F`: all failed with `XAddWord`). With details, each voucher detail must be answered exactly once,
    a refused receipt (`F`) may not pay any detail, and `XPayAmt` must be the sum of the paid details.

    Args:
        details: the voucher's detail `Id` → amount in fen.
        receipt: the bank's receipt for that voucher.

    Raises:
        SettlementError: the receipt does not fit the voucher.
    """
    default_reason = receipt.x_add_word or "还款失败"
    if not receipt.details:
        if receipt.x_result == "S":
            paid_fen = sum(details.values())
            if receipt.x_pay_amt_fen != paid_fen:
                raise SettlementError(f"XPayAmt {receipt.x_pay_amt_fen} fen is not the {paid_fen} fen of the details")
            return Settlement(frozenset(details), {})
        return Settlement(frozenset(), dict.fromkeys(details, default_reason))
    answered = [d.id for d in receipt.details]
    unknown = sorted(set(answered) - set(details))
    if unknown:
        raise SettlementError(f"receipt answers details the voucher does not have: {', '.join(unknown)}")
    missing = sorted(set(details) - set(answered), key=_detail_order)
    if missing:
        raise SettlementError(f"receipt gives no result for details {', '.join(missing)}")
    if len(answered) != len(set(answered)):
        raise SettlementError("receipt answers a detail twice")
    paid = frozenset(d.id for d in receipt.details if d.x_result == "S")
    failed = {d.id: d.x_add_word or default_reason for d in receipt.details if d.x_result != "S"}
    if receipt.x_result != "S" and paid:
        raise SettlementError("a refused receipt (XResult F) pays no detail")
    paid_fen = sum(details[i] for i in paid)
    if receipt.x_pay_amt_fen != paid_fen:
        raise SettlementError(f"XPayAmt {receipt.x_pay_amt_fen} fen is not the {paid_fen} fen of the paid details")
    return Settlement(paid, failed)


def _detail_order(detail_id: str) -> tuple[int, str]:
    return (int(detail_id), "") if detail_id.isdigit() else (1 << 62, detail_id)


# --- deadlines -------------------------------------------------------------------------------------------------


def deadline_status(limit_date: date, today: date, lead_days: int) -> str | None:
    """`overdue` after the `LimitDate`, `due` within `lead_days` of it (the day itself included), else None."""
    if limit_date < today:
        return "overdue"
    if (limit_date - today).days <= lead_days:
        return "due"
    return None
