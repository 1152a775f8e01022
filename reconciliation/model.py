"""The records of reconciliation: ledger entries, statement lines, break classes, breaks and the run result.

Everything here is an immutable value with no behaviour beyond formatting, so that the matcher, the readers,
the reports and the gateway's store all speak the same small vocabulary. Money is integer fen (STYLE.md §4),
dates are :class:`datetime.date`.

Two record types cross the ledger port and the readers in large numbers (a million a night), so they are
:class:`typing.NamedTuple` rather than dataclasses: a tuple is built about three times faster, and the matcher
reads fields by position in its inner loop. Everything that exists once per break or per run is a frozen
dataclass.

**The match key.** A 4006 statement line names its voucher by `VtCode` + `VoucherNo` only (PROTOCOL.md §5.5),
so that pair is what the matcher merges on: :func:`match_key` joins them with a NUL (which no field may
contain), giving a single string whose code-point order is the order of the pair. The ledger's full voucher
key (`AdmDivCode`+`StYear`+`VtCode`+`VoucherNo`, PROTOCOL.md §7) travels alongside, for the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum, IntEnum
from typing import Final, NamedTuple

from protocols.messages import VoucherKey

#: Separates `VtCode` from `VoucherNo` in a match key; readers refuse it in any field (it is not printable).
KEY_SEPARATOR: Final = "\x00"

#: The cut-off window: a payment the two sides date this many days apart is a timing difference
#: (docs/reconciliation.md, "cutoff_timing"); further apart it is a status mismatch.
CUTOFF_WINDOW_DAYS: Final = 1


def match_key(vt_code: str, voucher_no: str) -> str:
    """The string the matcher orders and merges on: `VtCode` NUL `VoucherNo` ("" when there is no number)."""
    return vt_code + KEY_SEPARATOR + voucher_no if voucher_no else ""


class Status(IntEnum):
    """What happened to a payment, numbered as the 4006 `ProState` (PROTOCOL.md §5.5)."""

    PAID = 0
    RETURNED = 1
    FAILED = 2

    @property
    def label(self) -> str:
        """Chinese and English, for people: `已支付 paid`."""
        return _STATUS_LABELS[self]


_STATUS_LABELS: Final = {Status.PAID: "已支付 paid", Status.RETURNED: "已退回 returned", Status.FAILED: "失败 failed"}


class BreakClass(Enum):
    """The classes of difference the matcher reports (docs/reconciliation.md defines each precisely).

    The order of the members is the order of precedence when one pair differs in several ways, and the order
    reports list them in.
    """

    MISSING_AT_BANK = "missing_at_bank"
    MISSING_IN_LEDGER = "missing_in_ledger"
    STATUS_MISMATCH = "status_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    PAYEE_MISMATCH = "payee_mismatch"
    CUTOFF_TIMING = "cutoff_timing"
    DUPLICATE = "duplicate"
    SUMMARY_MISMATCH = "summary_mismatch"

    @property
    def zh(self) -> str:
        """The Chinese name used in practice (平台单边, 银行单边, 金额不符 …); also the 2507 `XCheckReason`."""
        return _CLASS_ZH[self]

    @property
    def en(self) -> str:
        """The English name, in words."""
        return self.value.replace("_", " ")

    @property
    def label(self) -> str:
        """Chinese with English beside it: `金额不符 amount mismatch`."""
        return f"{self.zh} {self.en}"


_CLASS_ZH: Final = {
    BreakClass.MISSING_AT_BANK: "平台单边",
    BreakClass.MISSING_IN_LEDGER: "银行单边",
    BreakClass.STATUS_MISMATCH: "状态不符",
    BreakClass.AMOUNT_MISMATCH: "金额不符",
    BreakClass.PAYEE_MISMATCH: "收款账号不符",
    BreakClass.CUTOFF_TIMING: "跨日未达",
    BreakClass.DUPLICATE: "重复记录",
    BreakClass.SUMMARY_MISMATCH: "汇总不符",
}


class LedgerEntry(NamedTuple):
    """One entry of the gateway's ledger for a bank and check date, as the ledger port yields it.

    A payment (5201, 8202) is one entry with its positive amount; a returned payment notice (2252) is an
    entry of its own, under the notice's `VtCode` and `VoucherNo`, with a negative amount and status
    RETURNED, exactly as the bank lists it on the statement (PROTOCOL.md §5.3, §5.5).

    Attributes:
        adm_div_code: `AdmDivCode` of the voucher key.
        st_year: `StYear` of the voucher key.
        vt_code: `VtCode` (5201, 8202, 2252).
        voucher_no: `VoucherNo`.
        serial: The bank's serial `XAgentBusinessNo` from the receipt or notice ("" when none is known).
        amount_fen: The amount paid (the amount asked when the payment failed); negative for a return.
        status: Paid, returned or failed.
        payee_acct_no: The payee's account number as the bank reported it (`XPayeeAcctNo`).
        pay_date: The pay date the bank gave on its receipt or notice (`XPayDate`).
    """

    adm_div_code: str
    st_year: int
    vt_code: str
    voucher_no: str
    serial: str
    amount_fen: int
    status: Status
    payee_acct_no: str
    pay_date: date

    @property
    def key(self) -> VoucherKey:
        """The full voucher key (PROTOCOL.md §7)."""
        return VoucherKey(self.adm_div_code, self.st_year, self.vt_code, self.voucher_no)


class StatementLine(NamedTuple):
    """One line of a bank statement, whatever format it came in (the fields of a 4006 `Detail`).

    Attributes:
        vt_code: `VtCode`.
        voucher_no: `VoucherNo`; "" when the format did not carry it (matched by serial alone).
        serial: The bank's serial `XAgentBusinessNo`.
        amount_fen: Signed amount: negative for a return.
        status: `ProState`.
        payee_acct_no: `PayeeAcctNo`.
        pay_date: `XPayDate`.
        position: Where the line is in its source (a line number, or the detail's ordinal for XML);
            :meth:`~reconciliation.readers.StatementStream.describe` turns it into words.
    """

    vt_code: str
    voucher_no: str
    serial: str
    amount_fen: int
    status: Status
    payee_acct_no: str
    pay_date: date
    position: int


#: A statement line as the matcher stages it: (match key, serial, amount_fen, ProState code, payee account,
#: pay date as a proleptic ordinal, position, VtCode if the line has no voucher number else ""). Plain values
#: only, so that :mod:`reconciliation.extsort` can spill it; readers build it directly, once per line.
Staged = tuple[str, str, int, int, str, int, int, str]

_STATUS_BY_CODE: Final = (Status.PAID, Status.RETURNED, Status.FAILED)


def staged_from_line(line: StatementLine) -> Staged:
    """The staged record of a statement line."""
    key = match_key(line.vt_code, line.voucher_no)
    return (
        key,
        line.serial,
        line.amount_fen,
        int(line.status),
        line.payee_acct_no,
        line.pay_date.toordinal(),
        line.position,
        "" if key else line.vt_code,
    )


def line_from_staged(record: Staged) -> StatementLine:
    """The statement line of a staged record."""
    key, serial, amount_fen, code, payee, day, position, vt_code = record
    if key:
        vt_code, _, voucher_no = key.partition(KEY_SEPARATOR)
    else:
        voucher_no = ""
    return StatementLine(
        vt_code, voucher_no, serial, amount_fen, _STATUS_BY_CODE[code], payee, date.fromordinal(day), position
    )


@dataclass(frozen=True, slots=True)
class Totals:
    """A count of lines and their signed sum in fen."""

    count: int = 0
    amount_fen: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.count + other.count, self.amount_fen + other.amount_fen)

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.count - other.count, self.amount_fen - other.amount_fen)


@dataclass(frozen=True, slots=True)
class Side:
    """One side's values of a voucher in a break.

    Attributes:
        serial: `XAgentBusinessNo` ("" when unknown).
        amount_fen: Signed amount.
        status: Paid, returned or failed.
        payee_acct_no: Payee account.
        pay_date: Pay date.
        ref: Where it came from: the full voucher key for the ledger, the statement line for the bank.
    """

    serial: str
    amount_fen: int
    status: Status
    payee_acct_no: str
    pay_date: date
    ref: str


@dataclass(frozen=True, slots=True)
class Break:
    """One difference between the ledger and a statement.

    Attributes:
        break_class: What kind of difference (docs/reconciliation.md).
        check_date: The check date of the run that found it.
        vt_code: `VtCode` ("" for a summary mismatch).
        voucher_no: `VoucherNo` ("" for a summary mismatch or a statement line without one).
        serial: The bank serial the break is about ("" when neither side has one).
        ledger: The ledger's values, or None when the ledger has none (missing in ledger, a bank duplicate
            of a voucher the ledger does not hold, a summary mismatch).
        bank: The statement's values, or None (missing at bank, a ledger duplicate, a summary mismatch).
        detail: One sentence for people: which fields differ and how.
        scope: For a summary mismatch, what was summed: `statement`, `ledger`, or `balance <Stmt/Id>`.
        declared: For a summary mismatch: what the document declares (or the ledger's control totals).
        computed: For a summary mismatch: what its details add up to.
        first_check_date: The check date of the run that first found it (carried over from run to run).
        age_days: Days between `first_check_date` and the run that reports it; 0 in the run that found it.
    """

    break_class: BreakClass
    check_date: date
    vt_code: str
    voucher_no: str
    serial: str
    ledger: Side | None
    bank: Side | None
    detail: str
    scope: str = ""
    declared: Totals | None = None
    computed: Totals | None = None
    first_check_date: date | None = None
    age_days: int = 0

    @property
    def key(self) -> str:
        """The voucher as people write it (`5201-5201450100000123`), else the serial, else the summary's scope."""
        if self.voucher_no:
            return f"{self.vt_code}-{self.voucher_no}"
        return self.serial or self.scope

    @property
    def match_key(self) -> str:
        """The matcher's key of the voucher ("" for a summary mismatch or a line without a voucher number)."""
        return match_key(self.vt_code, self.voucher_no)

    @property
    def identity(self) -> tuple[str, str, str, str, bool, bool]:
        """What makes two reports of a break the same break (used to carry breaks over without doubling them)."""
        return (
            self.break_class.value,
            self.vt_code,
            self.voucher_no,
            self.serial or self.scope,
            self.ledger is None,
            self.bank is None,
        )

    @property
    def since(self) -> date:
        """The check date it was first found on."""
        return self.first_check_date or self.check_date

    @property
    def difference_fen(self) -> int:
        """How much this break makes the ledger's total exceed the statement's.

        Ledger amount minus bank amount, a missing side counting as zero; but a duplicate counts only its
        extra copy (the other side is shown for context, it is matched elsewhere).
        """
        if self.break_class is BreakClass.DUPLICATE:
            return -self.bank.amount_fen if self.bank else (self.ledger.amount_fen if self.ledger else 0)
        return (self.ledger.amount_fen if self.ledger else 0) - (self.bank.amount_fen if self.bank else 0)


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of reconciling one bank's statement for one check date against the ledger.

    Attributes:
        bank: The bank code.
        check_date: The check date.
        source: What the statement was read from (format and file or pages), for people.
        ledger: Count and signed total of the ledger entries streamed.
        statement: Count and signed total of the statement's detail lines as read.
        declared: The statement's own declared count and total (`AllNum`, `AllAmt`), if it declares them.
        matched: Pairs that agree in every compared field (including those matched by serial).
        matched_by_serial: Of those and of the breaks, pairs found by the bank serial after the voucher key
            failed (a statement line without a voucher number, or with a different one).
        breaks: Every break found, sorted by key then class.
        cleared: Breaks of earlier runs that this run's statement cleared (closed automatically).
        carried_in: Statement lines that cleared an earlier run's timing break and so are not breaks here.
    """

    bank: str
    check_date: date
    source: str
    ledger: Totals
    statement: Totals
    declared: Totals | None
    matched: int
    matched_by_serial: int
    breaks: tuple[Break, ...] = ()
    cleared: tuple[Break, ...] = ()
    carried_in: Totals = Totals()

    @property
    def balanced(self) -> bool:
        """True when there is no break at all (the 2507 `XCheckResult` 0)."""
        return not self.breaks

    def counts(self) -> dict[BreakClass, int]:
        """Number of breaks of each class, every class present (zero when none), in class order."""
        counts = dict.fromkeys(BreakClass, 0)
        for b in self.breaks:
            counts[b.break_class] += 1
        return counts

    def amounts_fen(self) -> dict[BreakClass, int]:
        """Sum of ledger-minus-bank differences of the breaks of each class, in class order."""
        amounts = dict.fromkeys(BreakClass, 0)
        for b in self.breaks:
            amounts[b.break_class] += b.difference_fen
        return amounts
