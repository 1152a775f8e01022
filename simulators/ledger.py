"""A small core-banking ledger for one simulated agent bank: accounts, payments, returns, statements.

The ledger is the bank's side of the story, kept independently of the gateway so that a test can compare the
two (`journal`, `statement_lines`). It is pure: no clock, no randomness, no I/O. Every date is passed in, and
what to refuse or fail is decided by the caller (usually :mod:`simulators.rules`), so the same calls always
give the same serials, balances and messages.

Money is integer fen. Every posting moves one amount from one account to another, so the sum of all balances
never changes (the property the tests check), and the journal holds every posting and every refusal.

Decisions written down here:

* **Paying accounts may go negative.** A direct voucher (5201) names the treasury single account, held at the
  PBOC, and an authorized one (8202) an agency's zero-balance account (零余额账户), whose balance is zero by
  design. In both cases the agent bank advances the money and claims it back from the treasury at the end of
  the day (2301 clearing claims), so in the bank's books the paying account goes negative by what it is owed.
  Such accounts are opened on first use with `payer_overdraft_fen` (default 10 billion yuan) as their limit;
  beyond it the bank refuses with "付款账户余额不足". The limit exists so that a runaway simulation fails
  loudly; it is not a business rule. Clearing against the treasury is not simulated.
* **Other banks' payees go through external clearing.** A payee whose `PayeeAcctBankName` does not start with
  this bank's name is at another bank: the money goes to the :data:`EXTERNAL_CLEARING` account (跨行清算往来,
  sent on through CNAPS), and the payee gets an account record only so that tests can mark it frozen or closed
  (standing for the bank's account-verification check). A payee at this bank is credited directly. Unknown
  accounts are opened on demand with a zero balance.
* **One serial per voucher, one per return.** `XAgentBusinessNo` is `<BANKCODE><YYYYMMDD><8-digit sequence>`,
  the sequence restarting every day. A refused voucher gets one too: the receipt carries it.
* **Idempotent.** A voucher key is executed at most once; paying it again returns the first outcome, whatever
  the second voucher says (PROTOCOL.md §7).
* **Official-card repayments** (8202, `BusinessTypeCode` 2) are paid detail by detail to each detail's card;
  a closed or frozen card, or a failure the caller asks for, fails that detail alone. The voucher is paid
  (`S`) if any detail is, with `XPayAmt` the sum of the paid ones; refused (`F`) if none is.
* **Statements** (PROTOCOL.md §5.5) list, for a check date, one line per voucher executed that day (ProState 0
  with the amount paid; 2 with the amount asked when nothing was paid) and one per return (ProState 1, negative).
  A partly paid card repayment is one line with what was paid, so the line matches its receipt.
* **Quota** (5106) is tracked per zero-balance account: notices add to it, 8202 payments use it, returns give it
  back. It is only enforced (refusal "授权支付额度不足") with `enforce_quota=True`, since the gateway checks quota
  before it sends a voucher and a simulated bank should not second-guess it by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Final

from protocols.messages import (
    MAX_STATEMENT_DETAILS,
    QuotaNotice,
    Receipt,
    ReceiptDetail,
    ReturnNotice,
    Statement,
    StatementDetail,
    StatusReply,
    Voucher,
    VoucherKey,
)
from protocols.money import format_date8
from simulators.names import bank_profile

#: The account through which payments to and returns from other banks pass.
EXTERNAL_CLEARING: Final = "CLEARING-EXTERNAL"
EXTERNAL_CLEARING_NAME: Final = "跨行清算往来户"
#: Default limit below zero for paying (treasury and zero-balance) accounts: 10 billion yuan.
DEFAULT_PAYER_OVERDRAFT_FEN: Final = 1_000_000_000_000
#: `VtCode` of an authorized payment voucher, paid against quota.
AUTHORIZED: Final = "8202"
#: `BusinessTypeCode` of an official-card repayment.
CARD_REPAYMENT: Final = "2"

# Reasons, as a bank writes them in `XAddWord` / `Remark`.
PAYER_CLOSED: Final = "付款账户已销户"
PAYER_FROZEN: Final = "付款账户已冻结"
PAYEE_CLOSED: Final = "收款账户已销户"
PAYEE_FROZEN: Final = "收款账户已冻结"
CARD_CLOSED: Final = "卡片已销户"
CARD_FROZEN: Final = "卡片已冻结"
INSUFFICIENT_FUNDS: Final = "付款账户余额不足"
QUOTA_EXCEEDED: Final = "授权支付额度不足"
PARTLY_PAID: Final = "部分成功"
ALL_DETAILS_FAILED: Final = "还款明细全部失败"


class LedgerError(Exception):
    """Base of the ledger's errors: the caller asked for something the bank would not do."""


class ReturnRefused(LedgerError):
    """A return that cannot happen: unknown or unpaid voucher, non-positive amount, more than is left."""


@dataclass(frozen=True, slots=True)
class Account:
    """One account as the bank sees it (a snapshot: the ledger replaces it on every change).

    Attributes:
        acct_no: the account number.
        name: the holder's name (empty when opened on demand from a bare number).
        balance_fen: the balance; negative for a paying account the bank has advanced money for.
        overdraft_fen: how far below zero the balance may go.
        frozen: payments to or from it are refused.
        closed: payments to or from it are refused.
        external: an account at another bank; money for it goes through :data:`EXTERNAL_CLEARING`.
    """

    acct_no: str
    name: str = ""
    balance_fen: int = 0
    overdraft_fen: int = 0
    frozen: bool = False
    closed: bool = False
    external: bool = False


class EntryKind(Enum):
    """What a journal entry records."""

    PAYMENT = "payment"  # money moved for a voucher (or one detail of a card repayment)
    REFUSAL = "refusal"  # a voucher or detail was refused: nothing moved
    RETURN = "return"  # money came back (2252)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One line of the bank's journal.

    Attributes:
        seq: position in the journal, from 1.
        kind: payment, refusal or return.
        serial: the bank serial (`XAgentBusinessNo`) of the voucher or the return.
        posted_on: the business date.
        key: the voucher concerned (for a return: the original voucher).
        detail_id: the detail, for official-card repayments; None for a whole voucher.
        debit_acct_no: the account debited (would have been, for a refusal).
        credit_acct_no: the account credited (would have been, for a refusal).
        amount_fen: the amount moved (asked, for a refusal); always positive.
        reason: why it was refused, or the return's reason.
    """

    seq: int
    kind: EntryKind
    serial: str
    posted_on: date
    key: VoucherKey
    detail_id: str | None
    debit_acct_no: str
    credit_acct_no: str
    amount_fen: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DetailResult:
    """The result of one detail of an official-card repayment."""

    id: str
    amount_fen: int
    paid: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What the bank did with a voucher.

    Attributes:
        key: the voucher key.
        serial: the bank serial (`XAgentBusinessNo`).
        pay_date: the business date it was executed on (`XPayDate`).
        requested_fen: the voucher's `PayAmt`.
        paid_fen: what was actually paid (`XPayAmt`); 0 when refused.
        reason: why it was refused or only partly paid; None when paid in full.
        payee_acct_no: the payee account, as the bank executed it.
        payee_acct_name: the payee name, as the bank executed it.
        details: per-detail results of an official-card repayment; empty otherwise.
    """

    key: VoucherKey
    serial: str
    pay_date: date
    requested_fen: int
    paid_fen: int
    reason: str | None
    payee_acct_no: str
    payee_acct_name: str
    details: tuple[DetailResult, ...] = ()

    @property
    def paid(self) -> bool:
        """Whether anything was paid (the receipt says `S`)."""
        return self.paid_fen > 0


@dataclass(slots=True)
class _Payment:
    """Ledger-internal record of an executed voucher: what was credited where, and what has come back."""

    voucher: Voucher
    outcome: PaymentOutcome
    payer_acct_no: str
    credits: list[tuple[str, int]]  # (account credited, amount) in posting order
    returned_fen: int = 0


@dataclass(frozen=True, slots=True)
class _Return:
    notice: ReturnNotice
    payee_acct_no: str


class Ledger:
    """The books of one simulated bank. See the module docstring for the decisions behind it.

    Args:
        bank_code: this bank's code; it starts every serial.
        bank_name: payees whose bank name starts with this are this bank's own; by default the known name
            of `bank_code` (:func:`simulators.names.bank_profile`).
        payer_overdraft_fen: the limit below zero of paying accounts opened on demand.
        enforce_quota: refuse an 8202 that exceeds the quota applied with :meth:`apply_quota`.
    """

    def __init__(
        self,
        bank_code: str,
        *,
        bank_name: str | None = None,
        payer_overdraft_fen: int = DEFAULT_PAYER_OVERDRAFT_FEN,
        enforce_quota: bool = False,
    ) -> None:
        if payer_overdraft_fen < 0:
            raise ValueError("payer_overdraft_fen is a limit below zero: it cannot be negative")
        self.bank_code = bank_code
        self.bank_name = bank_profile(bank_code).name if bank_name is None else bank_name
        self.payer_overdraft_fen = payer_overdraft_fen
        self.enforce_quota = enforce_quota
        self._accounts: dict[str, Account] = {
            EXTERNAL_CLEARING: Account(EXTERNAL_CLEARING, EXTERNAL_CLEARING_NAME, overdraft_fen=payer_overdraft_fen)
        }
        self._quota_fen: dict[str, int] = {}
        self._received: dict[VoucherKey, int] = {}
        self._payments: dict[VoucherKey, _Payment] = {}
        self._returns: list[_Return] = []
        self._journal: list[JournalEntry] = []
        self._serials: dict[date, int] = {}

    # --- accounts -------------------------------------------------------------------------------------------

    def open_account(
        self,
        acct_no: str,
        name: str = "",
        *,
        balance_fen: int = 0,
        overdraft_fen: int = 0,
        frozen: bool = False,
        closed: bool = False,
        external: bool = False,
    ) -> Account:
        """Open an account (an opening balance is a deposit from outside the books).

        Raises:
            LedgerError: the account already exists.
        """
        if acct_no in self._accounts:
            raise LedgerError(f"account {acct_no} already exists")
        account = Account(acct_no, name, balance_fen, overdraft_fen, frozen, closed, external)
        self._accounts[acct_no] = account
        return account

    def account(self, acct_no: str) -> Account:
        """The account's current state.

        Raises:
            KeyError: no such account.
        """
        return self._accounts[acct_no]

    def accounts(self) -> tuple[Account, ...]:
        """Every account, in the order they were opened."""
        return tuple(self._accounts.values())

    def balances(self) -> dict[str, int]:
        """Account number → balance in fen."""
        return {no: a.balance_fen for no, a in self._accounts.items()}

    def total_fen(self) -> int:
        """The sum of all balances: changed only by opening balances, never by payments or returns."""
        return sum(a.balance_fen for a in self._accounts.values())

    def freeze(self, acct_no: str, frozen: bool = True) -> None:
        """Freeze (or with `frozen=False` unfreeze) an account, opening it on demand."""
        self._set(self._get(acct_no), frozen=frozen)

    def close(self, acct_no: str) -> None:
        """Close an account, opening it on demand (payments to or from it are refused from now on)."""
        self._set(self._get(acct_no), closed=True)

    def _get(self, acct_no: str, name: str = "", *, external: bool = False, overdraft_fen: int = 0) -> Account:
        account = self._accounts.get(acct_no)
        if account is None:
            account = self._accounts[acct_no] = Account(acct_no, name, overdraft_fen=overdraft_fen, external=external)
        return account

    def _set(self, account: Account, **changes: object) -> Account:
        account = dataclasses.replace(account, **changes)  # type: ignore[arg-type]
        self._accounts[account.acct_no] = account
        return account

    def _move(self, debit_acct_no: str, credit_acct_no: str, amount_fen: int) -> None:
        debit, credit = self._accounts[debit_acct_no], self._accounts[credit_acct_no]
        self._set(debit, balance_fen=debit.balance_fen - amount_fen)
        credit = self._accounts[credit_acct_no]  # the same account when debit == credit
        self._set(credit, balance_fen=credit.balance_fen + amount_fen)

    def is_own(self, bank_name: str) -> bool:
        """Whether a payee bank name (`PayeeAcctBankName`) is a branch of this bank."""
        return bool(self.bank_name) and bank_name.startswith(self.bank_name)

    # --- quota ----------------------------------------------------------------------------------------------

    def apply_quota(self, notice: QuotaNotice) -> None:
        """Add a 5106's quota lines to the zero-balance accounts they name."""
        for line in notice.lines:
            self._quota_fen[line.pay_acct_no] = self._quota_fen.get(line.pay_acct_no, 0) + line.quota_amt_fen

    def quota_fen(self, acct_no: str) -> int:
        """The quota left on a zero-balance account: granted less paid plus returned (negative if overspent)."""
        return self._quota_fen.get(acct_no, 0)

    # --- vouchers -------------------------------------------------------------------------------------------

    def receive(self, voucher: Voucher) -> int:
        """Record that a voucher arrived (status 1 until it is executed); returns how many times it has.

        The count lets rules treat a resent voucher differently from its first arrival.
        """
        count = self._received.get(voucher.key, 0) + 1
        self._received[voucher.key] = count
        return count

    def next_serial(self, on: date) -> str:
        """Allocate the next bank serial of a business date: `<BANKCODE><YYYYMMDD><8-digit sequence>`."""
        seq = self._serials.get(on, 0) + 1
        self._serials[on] = seq
        return f"{self.bank_code}{format_date8(on)}{seq:08d}"

    def pay(
        self,
        voucher: Voucher,
        pay_date: date,
        *,
        refuse_reason: str | None = None,
        failed_details: Mapping[str, str] | None = None,
    ) -> PaymentOutcome:
        """Execute a voucher, once: a voucher key already executed returns its first outcome unchanged.

        Args:
            voucher: the 5201 / 8202 to execute.
            pay_date: the business date (`XPayDate`).
            refuse_reason: refuse the whole voucher with this reason (a rule said so).
            failed_details: for an official-card repayment, detail `Id` → reason for details to fail.

        Returns:
            What was done; see :class:`PaymentOutcome`.
        """
        done = self._payments.get(voucher.key)
        if done is not None:
            return done.outcome
        if voucher.key not in self._received:
            self.receive(voucher)
        serial = self.next_serial(pay_date)
        payer = self._get(voucher.pay_acct_no, voucher.pay_acct_name, overdraft_fen=self.payer_overdraft_fen)
        if voucher.business_type_code == CARD_REPAYMENT:
            outcome, credits = self._pay_card(voucher, pay_date, serial, refuse_reason, failed_details or {})
        else:
            outcome, credits = self._pay_single(voucher, pay_date, serial, refuse_reason)
        self._payments[voucher.key] = _Payment(voucher, outcome, payer.acct_no, credits)
        return outcome

    def _payee(self, acct_no: str, name: str, bank_name: str) -> tuple[Account, str]:
        """The payee's account record and the account actually credited (itself, or external clearing)."""
        external = not self.is_own(bank_name)  # the voucher routes the money, whatever the record says
        payee = self._get(acct_no, name, external=external)
        return payee, EXTERNAL_CLEARING if external else payee.acct_no

    def _refusal(self, voucher: Voucher, payer: Account, payee: Account, amount_fen: int, *, card: bool) -> str | None:
        """Why moving `amount_fen` from payer to payee for `voucher` must be refused, or None."""
        if payer.closed:
            return PAYER_CLOSED
        if payer.frozen:
            return PAYER_FROZEN
        if payee.closed:
            return CARD_CLOSED if card else PAYEE_CLOSED
        if payee.frozen:
            return CARD_FROZEN if card else PAYEE_FROZEN
        if payer.balance_fen - amount_fen < -payer.overdraft_fen:
            return INSUFFICIENT_FUNDS
        if self.enforce_quota and voucher.vt_code == AUTHORIZED and self.quota_fen(payer.acct_no) < amount_fen:
            return QUOTA_EXCEEDED
        return None

    def _post(
        self, voucher: Voucher, pay_date: date, serial: str, detail_id: str | None, credit_acct_no: str, amount_fen: int
    ) -> None:
        self._move(voucher.pay_acct_no, credit_acct_no, amount_fen)
        if voucher.vt_code == AUTHORIZED:  # quota left may go below zero when it is not enforced
            self._quota_fen[voucher.pay_acct_no] = self.quota_fen(voucher.pay_acct_no) - amount_fen
        self._log(
            EntryKind.PAYMENT, serial, pay_date, voucher.key, detail_id, voucher.pay_acct_no, credit_acct_no, amount_fen
        )

    def _log(
        self,
        kind: EntryKind,
        serial: str,
        on: date,
        key: VoucherKey,
        detail_id: str | None,
        debit_acct_no: str,
        credit_acct_no: str,
        amount_fen: int,
        reason: str | None = None,
    ) -> None:
        self._journal.append(
            JournalEntry(
                len(self._journal) + 1,
                kind,
                serial,
                on,
                key,
                detail_id,
                debit_acct_no,
                credit_acct_no,
                amount_fen,
                reason,
            )
        )

    def _pay_single(
        self, voucher: Voucher, pay_date: date, serial: str, refuse_reason: str | None
    ) -> tuple[PaymentOutcome, list[tuple[str, int]]]:
        payer = self._accounts[voucher.pay_acct_no]
        payee, credit_acct_no = self._payee(
            voucher.payee_acct_no, voucher.payee_acct_name, voucher.payee_acct_bank_name
        )
        amount_fen = voucher.pay_amt_fen
        reason = refuse_reason or self._refusal(voucher, payer, payee, amount_fen, card=False)
        credits: list[tuple[str, int]] = []
        if reason is None:
            self._post(voucher, pay_date, serial, None, credit_acct_no, amount_fen)
            credits.append((credit_acct_no, amount_fen))
        else:
            self._log(
                EntryKind.REFUSAL,
                serial,
                pay_date,
                voucher.key,
                None,
                payer.acct_no,
                credit_acct_no,
                amount_fen,
                reason,
            )
        outcome = PaymentOutcome(
            key=voucher.key,
            serial=serial,
            pay_date=pay_date,
            requested_fen=amount_fen,
            paid_fen=0 if reason else amount_fen,
            reason=reason,
            payee_acct_no=voucher.payee_acct_no,
            payee_acct_name=voucher.payee_acct_name,
        )
        return outcome, credits

    def _pay_card(
        self,
        voucher: Voucher,
        pay_date: date,
        serial: str,
        refuse_reason: str | None,
        failed_details: Mapping[str, str],
    ) -> tuple[PaymentOutcome, list[tuple[str, int]]]:
        results: list[DetailResult] = []
        credits: list[tuple[str, int]] = []
        for d in voucher.details:
            payer = self._accounts[voucher.pay_acct_no]
            card, credit_acct_no = self._payee(
                d.card_no or voucher.payee_acct_no, voucher.payee_acct_name, voucher.payee_acct_bank_name
            )
            reason = (
                refuse_reason
                or failed_details.get(d.id)
                or self._refusal(voucher, payer, card, d.pay_amt_fen, card=True)
            )
            if reason is None:
                self._post(voucher, pay_date, serial, d.id, credit_acct_no, d.pay_amt_fen)
                credits.append((credit_acct_no, d.pay_amt_fen))
            else:
                self._log(
                    EntryKind.REFUSAL,
                    serial,
                    pay_date,
                    voucher.key,
                    d.id,
                    payer.acct_no,
                    credit_acct_no,
                    d.pay_amt_fen,
                    reason,
                )
            results.append(DetailResult(d.id, d.pay_amt_fen, reason is None, reason))
        paid_fen = sum(r.amount_fen for r in results if r.paid)
        failures = [r.reason for r in results if not r.paid]
        if not failures:
            overall = None
        elif paid_fen:
            overall = PARTLY_PAID
        else:
            overall = failures[0] if len(set(failures)) == 1 else ALL_DETAILS_FAILED
        outcome = PaymentOutcome(
            key=voucher.key,
            serial=serial,
            pay_date=pay_date,
            requested_fen=voucher.pay_amt_fen,
            paid_fen=paid_fen,
            reason=overall,
            payee_acct_no=voucher.payee_acct_no,
            payee_acct_name=voucher.payee_acct_name,
            details=tuple(results),
        )
        return outcome, credits

    def outcome(self, key: VoucherKey) -> PaymentOutcome | None:
        """The outcome of an executed voucher, or None if it has not been executed."""
        done = self._payments.get(key)
        return None if done is None else done.outcome

    def outcomes(self) -> tuple[PaymentOutcome, ...]:
        """Every executed voucher's outcome, in the order of execution."""
        return tuple(p.outcome for p in self._payments.values())

    def returned_fen(self, key: VoucherKey) -> int:
        """How much of a voucher's payment has come back so far (0 if none, or never paid)."""
        done = self._payments.get(key)
        return 0 if done is None else done.returned_fen

    # --- returns --------------------------------------------------------------------------------------------

    def return_payment(self, voucher_key: VoucherKey, amount_fen: int, on: date, reason: str) -> ReturnNotice:
        """Take back part or all of a paid voucher (the payee bank returned it) and build the 2252.

        The money comes back to the paying account from where it went (the payee's account, or external
        clearing), detail by detail in order. The notice's own `VoucherNo` is `2252` followed by the return's
        serial, which is unique per bank and across banks.

        Args:
            voucher_key: the original voucher.
            amount_fen: how much comes back (positive); the notice carries it negative.
            on: the business date of the return (`XPayDate`).
            reason: the return reason (`Remark`, e.g. "收款人账户已销户").

        Raises:
            ReturnRefused: unknown or unpaid voucher, amount not positive, or more than is left to return.
        """
        done = self._payments.get(voucher_key)
        if done is None or not done.outcome.paid:
            raise ReturnRefused(f"{voucher_key} was not paid: nothing to return")
        if amount_fen <= 0:
            raise ReturnRefused(f"a return takes back a positive amount, not {amount_fen} fen")
        left_fen = done.outcome.paid_fen - done.returned_fen
        if amount_fen > left_fen:
            raise ReturnRefused(f"{voucher_key}: {amount_fen} fen asked back, only {left_fen} fen left to return")
        if not reason:
            raise ReturnRefused("a return gives its reason")
        serial = self.next_serial(on)
        remaining = amount_fen
        for n, (acct_no, credited_fen) in enumerate(done.credits):
            take = min(remaining, credited_fen)
            if take:
                self._move(acct_no, done.payer_acct_no, take)
                if done.voucher.vt_code == AUTHORIZED:  # a return restores the quota it used
                    self._quota_fen[done.payer_acct_no] = self.quota_fen(done.payer_acct_no) + take
                self._log(EntryKind.RETURN, serial, on, voucher_key, None, acct_no, done.payer_acct_no, take, reason)
                done.credits[n] = (acct_no, credited_fen - take)
                remaining -= take
        done.returned_fen += amount_fen
        v = done.voucher
        notice = ReturnNotice(
            adm_div_code=v.adm_div_code,
            st_year=v.st_year,
            vt_code="2252",
            voucher_no=f"2252{serial}",
            ori_vt_code=v.vt_code,
            original_voucher_no=v.voucher_no,
            pay_amt_fen=-amount_fen,
            x_pay_date=on,
            x_agent_business_no=serial,
            remark=reason,
        )
        self._returns.append(_Return(notice, v.payee_acct_no))
        return notice

    def returns(self) -> tuple[ReturnNotice, ...]:
        """Every return notice issued, in order."""
        return tuple(r.notice for r in self._returns)

    # --- messages -------------------------------------------------------------------------------------------

    def status_of(self, key: VoucherKey) -> StatusReply:
        """The 9102 answer to a status query: 0 never received, 1 received not final, 2 paid, 3 refused.

        A voucher paid in part (card repayment) is 2 with the amount paid; one since returned is still 2 (the
        return is a separate 2252).
        """
        done = self._payments.get(key)
        unknown = StatusReply(
            adm_div_code=key.adm_div_code,
            st_year=key.st_year,
            vt_code=key.vt_code,
            voucher_no=key.voucher_no,
            x_status=0,
        )
        if done is None:
            return dataclasses.replace(unknown, x_status=1) if key in self._received else unknown
        o = done.outcome
        return dataclasses.replace(
            unknown,
            x_status=2 if o.paid else 3,
            x_pay_date=o.pay_date,
            x_agent_business_no=o.serial,
            x_pay_amt_fen=o.paid_fen,
            x_add_word=o.reason,
        )

    @staticmethod
    def make_receipt(voucher: Voucher, outcome: PaymentOutcome) -> Receipt:
        """The receipt (回单, PROTOCOL.md §5.2) for an executed voucher.

        `XResult` is `S` when anything was paid, `F` otherwise; `XAddWord` carries the reason (left out on full
        success); an official-card repayment lists each detail's result.
        """
        return Receipt(
            adm_div_code=voucher.adm_div_code,
            st_year=voucher.st_year,
            vt_code=voucher.vt_code,
            voucher_no=voucher.voucher_no,
            pay_amt_fen=voucher.pay_amt_fen,
            x_pay_date=outcome.pay_date,
            x_agent_business_no=outcome.serial,
            x_pay_amt_fen=outcome.paid_fen,
            x_payee_acct_no=outcome.payee_acct_no,
            x_payee_acct_name=outcome.payee_acct_name,
            x_result="S" if outcome.paid else "F",
            x_add_word=outcome.reason,
            details=tuple(
                ReceiptDetail(id=d.id, x_result="S" if d.paid else "F", x_add_word=d.reason) for d in outcome.details
            ),
        )

    def receipt(self, key: VoucherKey) -> Receipt:
        """The receipt of an executed voucher, rebuilt from the books (the same every time it is asked).

        Raises:
            KeyError: the voucher has not been executed.
        """
        done = self._payments[key]
        return self.make_receipt(done.voucher, done.outcome)

    def statement_lines(self, check_date: date) -> list[StatementDetail]:
        """The statement lines of a check date, in serial order (see the module docstring)."""
        lines = list(self._lines(check_date))
        lines.sort(key=lambda line: line.x_agent_business_no)
        return lines

    def _lines(self, check_date: date) -> Iterator[StatementDetail]:
        for p in self._payments.values():
            o = p.outcome
            if o.pay_date == check_date:
                yield StatementDetail(
                    vt_code=p.voucher.vt_code,
                    voucher_no=p.voucher.voucher_no,
                    x_agent_business_no=o.serial,
                    x_pay_date=o.pay_date,
                    amt_fen=o.paid_fen if o.paid else o.requested_fen,
                    pro_state=0 if o.paid else 2,
                    payee_acct_no=o.payee_acct_no,
                )
        for r in self._returns:
            if r.notice.x_pay_date == check_date:
                yield StatementDetail(
                    vt_code=r.notice.vt_code,
                    voucher_no=r.notice.voucher_no,
                    x_agent_business_no=r.notice.x_agent_business_no,
                    x_pay_date=r.notice.x_pay_date,
                    amt_fen=r.notice.pay_amt_fen,
                    pro_state=1,
                    payee_acct_no=r.payee_acct_no,
                )

    def statement_pages(self, check_date: date, page_size: int = MAX_STATEMENT_DETAILS) -> list[Statement]:
        """The 4006 statement of a check date, cut into pages (PROTOCOL.md §5.5; see :func:`paginate`).

        Raises:
            ValueError: `page_size` is not between 1 and :data:`~protocols.messages.MAX_STATEMENT_DETAILS`.
        """
        return paginate(check_date, self.statement_lines(check_date), page_size)

    # --- the journal ----------------------------------------------------------------------------------------

    @property
    def journal(self) -> tuple[JournalEntry, ...]:
        """Every posting and refusal, in order."""
        return tuple(self._journal)

    def replay_balances(self, opening: Mapping[str, int] | None = None) -> dict[str, int]:
        """Recompute every balance from `opening` balances and the journal (to check the journal is complete)."""
        balances = {no: 0 for no in self._accounts}
        balances.update(opening or {})
        for e in self._journal:
            if e.kind is not EntryKind.REFUSAL:
                balances[e.debit_acct_no] -= e.amount_fen
                balances[e.credit_acct_no] += e.amount_fen
        return balances


def paginate(
    check_date: date,
    lines: Sequence[StatementDetail],
    page_size: int = MAX_STATEMENT_DETAILS,
    declared: tuple[int, int] | None = None,
) -> list[Statement]:
    """A 4006 statement of `lines`, cut into pages of at most `page_size` details (PROTOCOL.md §5.5).

    Every page carries the whole statement's `AllNum` and `AllAmt`: `declared` (count, total in fen) if given
    (a statement that misstates its own totals), else the lines' own count and signed sum; the page count and
    its own number. A day without lines is one empty page.

    Raises:
        ValueError: `page_size` is not between 1 and :data:`~protocols.messages.MAX_STATEMENT_DETAILS`.
    """
    if not 1 <= page_size <= MAX_STATEMENT_DETAILS:
        raise ValueError(f"page_size must be between 1 and {MAX_STATEMENT_DETAILS}, not {page_size}")
    chunks = [lines[i : i + page_size] for i in range(0, len(lines), page_size)] or [[]]
    all_num, all_amt_fen = declared if declared is not None else (len(lines), sum(line.amt_fen for line in lines))
    return [
        Statement(
            check_date=check_date,
            all_num=all_num,
            all_amt_fen=all_amt_fen,
            child_pack_num=len(chunks),
            cur_pack_no=n,
            details=tuple(chunk),
        )
        for n, chunk in enumerate(chunks, 1)
    ]
