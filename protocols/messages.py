"""Canonical messages of the exchange standard: one frozen type per message of PROTOCOL.md §4.

Every bank dialect maps its wire format onto these types and back; nothing above `banks/` sees XML. Money is
integer fen (`*_fen`), dates are :class:`datetime.date`, times :class:`datetime.datetime` /
:class:`datetime.time`. The types do not validate themselves: :mod:`protocols.rules` does, so that a test or
a tool can build a wrong message on purpose and see it refused with the field named.

Each field carries its wire description in its metadata (:class:`Wire`): the element name in the standard
dialect, its kind, whether it may be left out, and for lists the container and item element. The standard
codec (:mod:`protocols.codec`) and the dialect mappings (`banks/`) are driven by that table, so the order of
the fields here is the order on the wire (PROTOCOL.md §5: "fields appear in this order").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from typing import Any, ClassVar, Final


class Kind(Enum):
    """How a field's value is written as element text."""

    TEXT = "text"  # str, as is
    INT = "int"  # int, decimal digits
    AMOUNT = "amount"  # int fen, written as decimal yuan with two places
    DATE = "date"  # date, YYYYMMDD
    DATETIME = "datetime"  # datetime, YYYYMMDDhhmmss
    TIME = "time"  # time, hhmmss
    LIST = "list"  # tuple of records, inside a container element


@dataclass(frozen=True, slots=True)
class Wire:
    """Wire description of one field (see the module docstring)."""

    element: str
    kind: Kind = Kind.TEXT
    optional: bool = False
    container: str | None = None  # for LIST: the wrapping element (`DetailList`)
    item: type[Any] | None = None  # for LIST: the record type of the items
    min_items: int = 0  # for LIST; a list that may be empty leaves its container out when it is
    max_items: int = 0  # for LIST: the named cap on items in one message


def _f(element: str, kind: Kind = Kind.TEXT, *, optional: bool = False) -> Any:
    """A dataclass field described on the wire; optional fields default to None."""
    meta = {"wire": Wire(element, kind, optional)}
    if optional:
        return field(default=None, metadata=meta)
    return field(metadata=meta)


def _list(container: str, item_element: str, item: type[Any], *, min_items: int, max_items: int) -> Any:
    """A tuple-of-records field: `<container><item_element>…</item_element>…</container>`."""
    wire = Wire(item_element, Kind.LIST, min_items == 0, container, item, min_items, max_items)
    return field(default=(), metadata={"wire": wire})


#: Named caps on the number of records in one message.
MAX_VOUCHER_DETAILS: Final = 1000
MAX_QUOTA_LINES: Final = 1000
MAX_SPEND_RECORDS: Final = 5000
MAX_STATEMENT_DETAILS: Final = 5000
MAX_RECONCILE_DETAILS: Final = 5000


def wire_fields(cls: type[Any]) -> tuple[tuple[str, Wire], ...]:
    """The (attribute, wire description) pairs of a message or record type, in wire order (cached)."""
    cached = _WIRE_CACHE.get(cls)
    if cached is None:
        cached = tuple((f.name, f.metadata["wire"]) for f in dataclasses.fields(cls) if "wire" in f.metadata)
        _WIRE_CACHE[cls] = cached
    return cached


_WIRE_CACHE: dict[type[Any], tuple[tuple[str, Wire], ...]] = {}

# --- the envelope -------------------------------------------------------------------------------------------

PROTOCOL_VERSION: Final = "1.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """`Message/Head` (PROTOCOL.md §3)."""

    ver: str = field(default=PROTOCOL_VERSION, metadata={"wire": Wire("Ver")})
    msg_no: str = _f("MsgNo")
    msg_id: str = _f("MsgId")
    msg_ref: str = _f("MsgRef")  # a request: its own MsgId; a reply: the MsgId replied to ("" if unreadable)
    src: str = _f("Src")
    des: str = _f("Des")
    work_date: date = _f("WorkDate", Kind.DATE)
    send_time: datetime = _f("SendTime", Kind.DATETIME)


# --- payloads -------------------------------------------------------------------------------------------------


class Payload:
    """Base of every body payload. `ELEMENT` is the payload element's name; `msg_no` the header's MsgNo."""

    __slots__ = ()
    ELEMENT: ClassVar[str]
    MSG_NO: ClassVar[str | None] = None  # fixed MsgNo; None where it depends on the content (VtCode)

    @property
    def msg_no(self) -> str:
        """The `MsgNo` this payload travels under."""
        assert self.MSG_NO is not None
        return self.MSG_NO

    #: True for payloads that are themselves replies (9007, 9009, 9120, 9102): they are not acknowledged.
    IS_REPLY: ClassVar[bool] = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Payload):
    """9005 connectivity probe; answered by a 9120 with 90000."""

    ELEMENT: ClassVar[str] = "Ping"
    MSG_NO: ClassVar[str | None] = "9005"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOn(Payload):
    """9006 sign-on request, bank → gateway."""

    ELEMENT: ClassVar[str] = "SignOn"
    MSG_NO: ClassVar[str | None] = "9006"
    bank_code: str = _f("BankCode")
    last_work_date: date = _f("LastWorkDate", Kind.DATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOnReply(Payload):
    """9007 sign-on reply, gateway → bank, carrying the gateway's work date."""

    ELEMENT: ClassVar[str] = "SignOnReply"
    MSG_NO: ClassVar[str | None] = "9007"
    IS_REPLY: ClassVar[bool] = True
    result: int = _f("Result", Kind.INT)
    add_word: str = _f("AddWord")
    work_date: date = _f("WorkDate", Kind.DATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOff(Payload):
    """9008 sign-off request, either direction."""

    ELEMENT: ClassVar[str] = "SignOff"
    MSG_NO: ClassVar[str | None] = "9008"
    reason: str = _f("Reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOffReply(Payload):
    """9009 sign-off reply."""

    ELEMENT: ClassVar[str] = "SignOffReply"
    MSG_NO: ClassVar[str | None] = "9009"
    IS_REPLY: ClassVar[bool] = True
    result: int = _f("Result", Kind.INT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply(Payload):
    """9120 generic reply (ack / nak). `ori_msg_no` is "" when the request's MsgNo could not be read."""

    ELEMENT: ClassVar[str] = "Reply"
    MSG_NO: ClassVar[str | None] = "9120"
    IS_REPLY: ClassVar[bool] = True
    ori_msg_no: str = _f("OriMsgNo")
    result: int = _f("Result", Kind.INT)
    add_word: str = _f("AddWord")


@dataclass(frozen=True, slots=True, kw_only=True)
class VoucherDetail:
    """`Voucher/DetailList/Detail` (5.1); `card_no`/`spend_id` only on an official-card repayment."""

    id: str = _f("Id")
    pay_amt_fen: int = _f("PayAmt", Kind.AMOUNT)
    exp_func_code: str = _f("ExpFuncCode")
    card_no: str | None = _f("CardNo", optional=True)
    spend_id: str | None = _f("SpendId", optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Voucher(Payload):
    """5201 direct / 8202 authorized payment voucher (`VoucherFlag` 0), gateway → bank (5.1)."""

    ELEMENT: ClassVar[str] = "Voucher"
    voucher_flag: int = field(default=0, metadata={"wire": Wire("VoucherFlag", Kind.INT)})
    adm_div_code: str = _f("AdmDivCode")
    st_year: int = _f("StYear", Kind.INT)
    vt_code: str = _f("VtCode")
    vou_date: date = _f("VouDate", Kind.DATE)
    voucher_no: str = _f("VoucherNo")
    agency_code: str = _f("AgencyCode")
    agency_name: str = _f("AgencyName")
    fund_type_code: str = _f("FundTypeCode")
    pay_type_code: str = _f("PayTypeCode")
    business_type_code: str = _f("BusinessTypeCode")
    exp_func_code: str = _f("ExpFuncCode")
    pay_acct_no: str = _f("PayAcctNo")
    pay_acct_name: str = _f("PayAcctName")
    pay_acct_bank_name: str = _f("PayAcctBankName")
    payee_acct_no: str = _f("PayeeAcctNo")
    payee_acct_name: str = _f("PayeeAcctName")
    payee_acct_bank_name: str = _f("PayeeAcctBankName")
    pay_amt_fen: int = _f("PayAmt", Kind.AMOUNT)
    pay_summary_name: str = _f("PaySummaryName")
    payee_acct_bank_no: str | None = _f("PayeeAcctBankNo", optional=True)
    exp_eco_code: str | None = _f("ExpEcoCode", optional=True)
    remark: str | None = _f("Remark", optional=True)
    details: tuple[VoucherDetail, ...] = _list(
        "DetailList", "Detail", VoucherDetail, min_items=1, max_items=MAX_VOUCHER_DETAILS
    )

    @property
    def msg_no(self) -> str:
        return self.vt_code

    @property
    def key(self) -> VoucherKey:
        """The voucher key: `AdmDivCode`+`StYear`+`VtCode`+`VoucherNo` (PROTOCOL.md §7)."""
        return VoucherKey(self.adm_div_code, self.st_year, self.vt_code, self.voucher_no)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptDetail:
    """`Voucher/DetailList/Detail` of a receipt: the result of one detail (official-card repayments)."""

    id: str = _f("Id")
    x_result: str = _f("XResult")
    x_add_word: str | None = _f("XAddWord", optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(Payload):
    """Payment receipt (回单): a 5201 / 8202 with `VoucherFlag` 1, bank → gateway (5.2)."""

    ELEMENT: ClassVar[str] = "Voucher"
    voucher_flag: int = field(default=1, metadata={"wire": Wire("VoucherFlag", Kind.INT)})
    adm_div_code: str = _f("AdmDivCode")
    st_year: int = _f("StYear", Kind.INT)
    vt_code: str = _f("VtCode")
    voucher_no: str = _f("VoucherNo")
    pay_amt_fen: int = _f("PayAmt", Kind.AMOUNT)
    x_pay_date: date = _f("XPayDate", Kind.DATE)
    x_agent_business_no: str = _f("XAgentBusinessNo")
    x_pay_amt_fen: int = _f("XPayAmt", Kind.AMOUNT)
    x_payee_acct_no: str = _f("XPayeeAcctNo")
    x_payee_acct_name: str = _f("XPayeeAcctName")
    x_result: str = _f("XResult")  # S paid, F refused / failed
    x_add_word: str | None = _f("XAddWord", optional=True)
    details: tuple[ReceiptDetail, ...] = _list(
        "DetailList", "Detail", ReceiptDetail, min_items=0, max_items=MAX_VOUCHER_DETAILS
    )

    @property
    def msg_no(self) -> str:
        return self.vt_code

    @property
    def key(self) -> VoucherKey:
        """The key of the voucher this receipt answers."""
        return VoucherKey(self.adm_div_code, self.st_year, self.vt_code, self.voucher_no)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnNotice(Payload):
    """2252 returned payment notice (退票), bank → gateway (5.3); `pay_amt_fen` is negative."""

    ELEMENT: ClassVar[str] = "Voucher"
    MSG_NO: ClassVar[str | None] = "2252"
    adm_div_code: str = _f("AdmDivCode")
    st_year: int = _f("StYear", Kind.INT)
    vt_code: str = _f("VtCode")  # always 2252
    voucher_no: str = _f("VoucherNo")  # the notice's own number
    ori_vt_code: str = _f("OriVtCode")
    original_voucher_no: str = _f("OriginalVoucherNo")
    pay_amt_fen: int = _f("PayAmt", Kind.AMOUNT)
    x_pay_date: date = _f("XPayDate", Kind.DATE)
    x_agent_business_no: str = _f("XAgentBusinessNo")
    remark: str = _f("Remark")

    @property
    def original_key(self) -> VoucherKey:
        """The key of the voucher whose payment came back."""
        return VoucherKey(self.adm_div_code, self.st_year, self.ori_vt_code, self.original_voucher_no)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaLine:
    """One line of a 5106 quota notice: quota granted to an agency's zero-balance account."""

    id: str = _f("Id")
    agency_code: str = _f("AgencyCode")
    agency_name: str = _f("AgencyName")
    pay_acct_no: str = _f("PayAcctNo")
    fund_type_code: str = _f("FundTypeCode")
    exp_func_code: str = _f("ExpFuncCode")
    quota_amt_fen: int = _f("QuotaAmt", Kind.AMOUNT)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaNotice(Payload):
    """5106 authorized payment quota notice (授权支付额度通知单), gateway → bank."""

    ELEMENT: ClassVar[str] = "QuotaNotice"
    MSG_NO: ClassVar[str | None] = "5106"
    adm_div_code: str = _f("AdmDivCode")
    st_year: int = _f("StYear", Kind.INT)
    vt_code: str = _f("VtCode")  # always 5106
    vou_date: date = _f("VouDate", Kind.DATE)
    voucher_no: str = _f("VoucherNo")
    lines: tuple[QuotaLine, ...] = _list("DetailList", "Detail", QuotaLine, min_items=1, max_items=MAX_QUOTA_LINES)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendRecord:
    """One official-card spending record of a 7101 (5.4)."""

    spend_id: str = _f("SpendId")
    card_no: str = _f("CardNo")
    card_holder: str = _f("CardHolder")
    agency_code: str = _f("AgencyCode")
    txn_date: date = _f("TxnDate", Kind.DATE)
    txn_time: time = _f("TxnTime", Kind.TIME)
    merchant_name: str = _f("MerchantName")
    amt_fen: int = _f("Amt", Kind.AMOUNT)
    auth_code: str = _f("AuthCode")
    limit_date: date = _f("LimitDate", Kind.DATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class CardSpending(Payload):
    """7101 official-card spending report (公务卡消费明细), bank → gateway."""

    ELEMENT: ClassVar[str] = "CardSpending"
    MSG_NO: ClassVar[str | None] = "7101"
    records: tuple[SpendRecord, ...] = _list(
        "RecordList", "Record", SpendRecord, min_items=1, max_items=MAX_SPEND_RECORDS
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementRequest(Payload):
    """4005 statement request (对账请求) for a check date, gateway → bank."""

    ELEMENT: ClassVar[str] = "StatementRequest"
    MSG_NO: ClassVar[str | None] = "4005"
    check_date: date = _f("CheckDate", Kind.DATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementDetail:
    """One line of a 4006 statement (5.5). `pro_state`: 0 paid, 1 returned, 2 failed."""

    vt_code: str = _f("VtCode")
    voucher_no: str = _f("VoucherNo")
    x_agent_business_no: str = _f("XAgentBusinessNo")
    x_pay_date: date = _f("XPayDate", Kind.DATE)
    amt_fen: int = _f("Amt", Kind.AMOUNT)
    pro_state: int = _f("ProState", Kind.INT)
    payee_acct_no: str = _f("PayeeAcctNo")


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement(Payload):
    """4006 statement (对账单), one page of it, bank → gateway (5.5)."""

    ELEMENT: ClassVar[str] = "Statement"
    MSG_NO: ClassVar[str | None] = "4006"
    check_date: date = _f("CheckDate", Kind.DATE)
    all_num: int = _f("AllNum", Kind.INT)
    all_amt_fen: int = _f("AllAmt", Kind.AMOUNT)
    child_pack_num: int = _f("ChildPackNum", Kind.INT)
    cur_pack_no: int = _f("CurPackNo", Kind.INT)
    details: tuple[StatementDetail, ...] = _list(
        "DetailList", "Detail", StatementDetail, min_items=0, max_items=MAX_STATEMENT_DETAILS
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileDetail:
    """Per-detail result of a 2507: `x_check_result` 0 match / 1 mismatch, with the reason."""

    vt_code: str = _f("VtCode")
    voucher_no: str = _f("VoucherNo")
    x_check_result: int = _f("XCheckResult", Kind.INT)
    x_check_reason: str | None = _f("XCheckReason", optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileResult(Payload):
    """2507 reconciliation result (对账结果), gateway → bank."""

    ELEMENT: ClassVar[str] = "ReconcileResult"
    MSG_NO: ClassVar[str | None] = "2507"
    check_date: date = _f("CheckDate", Kind.DATE)
    x_check_result: int = _f("XCheckResult", Kind.INT)
    x_diff_num: int = _f("XDiffNum", Kind.INT)
    details: tuple[ReconcileDetail, ...] = _list(
        "DetailList", "Detail", ReconcileDetail, min_items=0, max_items=MAX_RECONCILE_DETAILS
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusQuery(Payload):
    """9101 voucher status query, gateway → bank: the project's addition (docs/protocol.md) to resolve an
    `IN_DOUBT` voucher by asking, never by resending."""

    ELEMENT: ClassVar[str] = "StatusQuery"
    MSG_NO: ClassVar[str | None] = "9101"
    adm_div_code: str = _f("AdmDivCode")
    st_year: int = _f("StYear", Kind.INT)
    vt_code: str = _f("VtCode")
    voucher_no: str = _f("VoucherNo")

    @property
    def key(self) -> VoucherKey:
        return VoucherKey(self.adm_div_code, self.st_year, self.vt_code, self.voucher_no)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply(Payload):
    """9102 voucher status reply, bank → gateway. `x_status`: 0 never received, 1 received and not yet
    final, 2 paid, 3 refused. For 2 and 3 the receipt fields follow, as on the receipt."""

    ELEMENT: ClassVar[str] = "StatusReply"
    MSG_NO: ClassVar[str | None] = "9102"
    IS_REPLY: ClassVar[bool] = True
    adm_div_code: str = _f("AdmDivCode")
    st_year: int = _f("StYear", Kind.INT)
    vt_code: str = _f("VtCode")
    voucher_no: str = _f("VoucherNo")
    x_status: int = _f("XStatus", Kind.INT)
    x_pay_date: date | None = _f("XPayDate", Kind.DATE, optional=True)
    x_agent_business_no: str | None = _f("XAgentBusinessNo", optional=True)
    x_pay_amt_fen: int | None = _f("XPayAmt", Kind.AMOUNT, optional=True)
    x_add_word: str | None = _f("XAddWord", optional=True)

    @property
    def key(self) -> VoucherKey:
        return VoucherKey(self.adm_div_code, self.st_year, self.vt_code, self.voucher_no)


@dataclass(frozen=True, slots=True, order=True)
class VoucherKey:
    """`AdmDivCode`+`StYear`+`VtCode`+`VoucherNo`: a voucher is paid at most once per key."""

    adm_div_code: str
    st_year: int
    vt_code: str
    voucher_no: str

    def __str__(self) -> str:
        return f"{self.adm_div_code}-{self.st_year}-{self.vt_code}-{self.voucher_no}"

    @classmethod
    def parse(cls, text: str) -> VoucherKey:
        """Parse the `ADMDIV-YEAR-VTCODE-VOUCHERNO` form printed by :meth:`__str__`.

        Raises:
            ValueError: not four dash-separated parts with a numeric year.
        """
        parts = text.split("-", 3)
        if len(parts) != 4 or not parts[1].isdigit() or not all(parts):
            raise ValueError(f"not a voucher key (ADMDIV-YEAR-VTCODE-VOUCHERNO): {text!r}")
        return cls(parts[0], int(parts[1]), parts[2], parts[3])


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message: its head and exactly one payload."""

    head: Head
    body: Payload


#: Every payload type, for codecs and registries.
PAYLOAD_TYPES: Final[tuple[type[Payload], ...]] = (
    Ping,
    SignOn,
    SignOnReply,
    SignOff,
    SignOffReply,
    Reply,
    Voucher,
    Receipt,
    ReturnNotice,
    QuotaNotice,
    CardSpending,
    StatementRequest,
    Statement,
    ReconcileResult,
    StatusQuery,
    StatusReply,
)

#: Payment voucher types (`VtCode` of a 5201 / 8202 and their receipts).
VOUCHER_VT_CODES: Final = ("5201", "8202")
