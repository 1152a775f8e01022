"""Hypothesis strategies for canonical messages: valid by schema and by business rules, of every type."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from hypothesis import strategies as st

from protocols.errors import ResultCode
from protocols.messages import (
    CardSpending,
    Head,
    Kind,
    Message,
    Payload,
    Ping,
    QuotaLine,
    QuotaNotice,
    Receipt,
    ReceiptDetail,
    ReconcileDetail,
    ReconcileResult,
    Reply,
    ReturnNotice,
    SignOff,
    SignOffReply,
    SignOn,
    SignOnReply,
    SpendRecord,
    Statement,
    StatementDetail,
    StatementRequest,
    StatusQuery,
    StatusReply,
    Voucher,
    VoucherDetail,
    wire_fields,
)
from protocols.schema import ELEMENT_TYPES

# XML 1.0 text that survives a round trip: letters (Chinese included), digits, punctuation, spaces.
# Carriage returns are normalized by every XML parser, and control characters are not XML, so neither is drawn.
_TEXT_CHARS = st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="\r")


def _free_text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(_TEXT_CHARS, min_size=min_size, max_size=max_size)


_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "Name": _free_text(1, 40),
    "Text": _free_text(1, 60),
    "TextOrEmpty": _free_text(0, 60),
    "Code": st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True),
    "NodeCode": st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True),
    "DocNo": st.from_regex(r"[A-Za-z0-9_\-]{1,42}", fullmatch=True),
    "MsgId": st.from_regex(r"[A-Za-z0-9_\-]{1,32}", fullmatch=True),
    "MsgIdOrEmpty": st.from_regex(r"[A-Za-z0-9_\-]{0,32}", fullmatch=True),
    "MsgNo": st.from_regex(r"[0-9]{4}", fullmatch=True),
    "MsgNoOrEmpty": st.from_regex(r"([0-9]{4})?", fullmatch=True),
    "AcctNo": st.from_regex(r"[A-Za-z0-9\-]{1,40}", fullmatch=True),
    "CardNo": st.from_regex(r"[0-9]{12,19}", fullmatch=True),
    "Cnaps": st.from_regex(r"[0-9]{12}", fullmatch=True),
    "AdmDivCode": st.from_regex(r"[0-9]{6,12}", fullmatch=True),
    "VtCode": st.from_regex(r"[0-9]{4}", fullmatch=True),
    "Year": st.integers(2000, 2099),
    "Count": st.integers(0, 999_999_999),
    "Flag": st.integers(0, 9),
    "ResultCode": st.sampled_from([int(c) for c in ResultCode]),
    "ResultSF": st.sampled_from(["S", "F"]),
    "Amount": st.integers(1, 10**12),
    "Date8": st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    "DateTime14": st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(lambda d: d.replace(microsecond=0)),
    "Time6": st.times().map(lambda t: t.replace(microsecond=0)),
    "Version": st.just("1.0"),
}

positive_fen = st.integers(1, 10**12)
dates = _BY_TYPE["Date8"]


def field_value(element: str) -> st.SearchStrategy[Any]:
    """A valid value for the element named `element`, by its simple type."""
    return _BY_TYPE[ELEMENT_TYPES[element]]


def record(cls: type[Any], **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Instances of a record type with every field drawn by its element type unless overridden."""
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for attr, wire in wire_fields(cls):
        if attr in overrides:
            kwargs[attr] = overrides[attr]
        elif wire.kind is Kind.LIST:
            continue
        elif wire.optional:
            kwargs[attr] = st.none() | field_value(wire.element)
        else:
            kwargs[attr] = field_value(wire.element)
    return st.builds(cls, **kwargs)


@st.composite
def vouchers(draw: st.DrawFn) -> Voucher:
    vt_code = draw(st.sampled_from(["5201", "8202"]))
    card = vt_code == "8202" and draw(st.booleans())
    detail = record(
        VoucherDetail,
        card_no=field_value("CardNo") if card else st.none(),
        spend_id=field_value("SpendId") if card else st.none(),
    )
    details = draw(st.lists(detail, min_size=1, max_size=5, unique_by=(lambda d: d.id, lambda d: d.spend_id)))
    base = draw(
        record(
            Voucher,
            voucher_flag=st.just(0),
            vt_code=st.just(vt_code),
            pay_type_code=st.just("11" if vt_code == "5201" else "12"),
            business_type_code=st.just("2") if card else st.sampled_from(["1", "4"]),
            pay_amt_fen=st.just(sum(d.pay_amt_fen for d in details)),
            details=st.just(tuple(details)),
        )
    )
    return base  # type: ignore[no-any-return]


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    pay_amt = draw(positive_fen)
    paid = draw(st.booleans())
    details = draw(
        st.lists(record(ReceiptDetail, x_add_word=field_value("XAddWord")), max_size=4, unique_by=lambda d: d.id)
    )
    if paid:
        x_pay_amt = draw(st.integers(0, pay_amt)) if details else pay_amt
    else:
        x_pay_amt = 0
    return draw(
        record(  # type: ignore[no-any-return]
            Receipt,
            voucher_flag=st.just(1),
            vt_code=st.sampled_from(["5201", "8202"]),
            pay_amt_fen=st.just(pay_amt),
            x_pay_amt_fen=st.just(x_pay_amt),
            x_result=st.just("S" if paid else "F"),
            x_add_word=field_value("XAddWord") if not paid else st.none() | field_value("XAddWord"),
            details=st.just(tuple(details)),
        )
    )


def return_notices() -> st.SearchStrategy[ReturnNotice]:
    return record(  # type: ignore[no-any-return]
        ReturnNotice,
        vt_code=st.just("2252"),
        ori_vt_code=st.sampled_from(["5201", "8202"]),
        pay_amt_fen=positive_fen.map(lambda x: -x),
    )


def quota_notices() -> st.SearchStrategy[QuotaNotice]:
    lines = st.lists(record(QuotaLine, quota_amt_fen=positive_fen), min_size=1, max_size=4, unique_by=lambda q: q.id)
    return record(QuotaNotice, vt_code=st.just("5106"), lines=lines.map(tuple))  # type: ignore[no-any-return]


@st.composite
def spend_records(draw: st.DrawFn) -> SpendRecord:
    txn_date = draw(dates)
    limit = draw(st.dates(txn_date, date(2099, 12, 31)))
    return draw(
        record(
            SpendRecord,
            txn_date=st.just(txn_date),
            limit_date=st.just(limit),  # type: ignore[no-any-return]
            amt_fen=positive_fen,
        )
    )


def card_spendings() -> st.SearchStrategy[CardSpending]:
    records = st.lists(spend_records(), min_size=1, max_size=4, unique_by=lambda r: r.spend_id)
    return st.builds(CardSpending, records=records.map(tuple))


@st.composite
def statement_details(draw: st.DrawFn) -> StatementDetail:
    state = draw(st.sampled_from([0, 1, 2]))
    amt = draw(positive_fen)
    return draw(
        record(
            StatementDetail,
            pro_state=st.just(state),  # type: ignore[no-any-return]
            amt_fen=st.just(-amt if state == 1 else amt),
        )
    )


@st.composite
def statements(draw: st.DrawFn) -> Statement:
    pages = draw(st.integers(1, 50))
    return draw(
        record(  # type: ignore[no-any-return]
            Statement,
            child_pack_num=st.just(pages),
            cur_pack_no=st.integers(1, pages),
            all_amt_fen=st.integers(-(10**12), 10**12),
            details=st.lists(statement_details(), max_size=4).map(tuple),
        )
    )


@st.composite
def reconcile_results(draw: st.DrawFn) -> ReconcileResult:
    mismatch = draw(st.booleans())
    details = draw(st.lists(record(ReconcileDetail, x_check_result=st.sampled_from([0, 1])), max_size=4))
    return draw(
        record(  # type: ignore[no-any-return]
            ReconcileResult,
            x_check_result=st.just(int(mismatch)),
            x_diff_num=st.integers(1, 1000) if mismatch else st.just(0),
            details=st.just(tuple(details)),
        )
    )


@st.composite
def status_replies(draw: st.DrawFn) -> StatusReply:
    status = draw(st.sampled_from([0, 1, 2, 3]))
    overrides: dict[str, st.SearchStrategy[Any]] = {"x_status": st.just(status)}
    if status == 2:
        overrides |= {
            "x_pay_date": dates,
            "x_agent_business_no": field_value("XAgentBusinessNo"),
            "x_pay_amt_fen": positive_fen,
        }
    if status == 3:
        overrides["x_add_word"] = field_value("XAddWord")
    return draw(record(StatusReply, **overrides))  # type: ignore[no-any-return]


#: A strategy per payload type; the codec tests check that each type has one.
PAYLOADS: dict[type[Payload], st.SearchStrategy[Any]] = {
    Ping: st.just(Ping()),
    SignOn: record(SignOn),
    SignOnReply: record(SignOnReply),
    SignOff: record(SignOff),
    SignOffReply: record(SignOffReply),
    Reply: record(Reply),
    Voucher: vouchers(),
    Receipt: receipts(),
    ReturnNotice: return_notices(),
    QuotaNotice: quota_notices(),
    CardSpending: card_spendings(),
    StatementRequest: record(StatementRequest),
    Statement: statements(),
    ReconcileResult: reconcile_results(),
    StatusQuery: record(StatusQuery),
    StatusReply: status_replies(),
}


@st.composite
def messages(draw: st.DrawFn, payload: st.SearchStrategy[Any] | None = None) -> Message:
    """A whole valid message: a head whose MsgNo matches a payload of any (or the given) type."""
    body = draw(payload if payload is not None else st.one_of(*PAYLOADS.values()))
    head = draw(record(Head, msg_no=st.just(body.msg_no)))
    return Message(head, body)


__all__ = ["PAYLOADS", "field_value", "messages", "record"]
