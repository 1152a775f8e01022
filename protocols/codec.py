"""XML codec of the standard dialect (PROTOCOL.md §3–§5): canonical messages to documents and back.

Encoding builds the unsigned `<Message>` tree (the caller signs it with :mod:`protocols.signature`).
Decoding takes a tree that has already been parsed by :mod:`protocols.xmlsafe` and, for signed traffic,
verified, so that only the verified tree flows on (STYLE.md §6). It then checks the published schema
(:mod:`protocols.schema`), converts the text into typed values and applies the business rules
(:mod:`protocols.rules`); every problem names its field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Final

from lxml import etree

from protocols import money, rules, schema
from protocols.errors import Problem, UnknownMessageType, ValidationError
from protocols.messages import (
    CardSpending,
    Head,
    Kind,
    Message,
    Payload,
    Ping,
    QuotaNotice,
    Receipt,
    ReconcileResult,
    Reply,
    ReturnNotice,
    SignOff,
    SignOffReply,
    SignOn,
    SignOnReply,
    Statement,
    StatementRequest,
    StatusQuery,
    StatusReply,
    Voucher,
    wire_fields,
)
from protocols.xmlsafe import serialize

#: MsgNo -> payload type, for every MsgNo whose payload does not depend on VoucherFlag.
PAYLOAD_BY_MSG_NO: Final[dict[str, type[Payload]]] = {
    "9005": Ping,
    "9006": SignOn,
    "9007": SignOnReply,
    "9008": SignOff,
    "9009": SignOffReply,
    "9120": Reply,
    "2252": ReturnNotice,
    "5106": QuotaNotice,
    "7101": CardSpending,
    "4005": StatementRequest,
    "4006": Statement,
    "2507": ReconcileResult,
    "9101": StatusQuery,
    "9102": StatusReply,
}
#: 5201 / 8202 carry a voucher (VoucherFlag 0) or its receipt (VoucherFlag 1).
VOUCHER_BY_FLAG: Final[dict[str, type[Payload]]] = {"0": Voucher, "1": Receipt}

_TO_TEXT: Final[dict[Kind, Callable[[Any], str]]] = {
    Kind.TEXT: str,
    Kind.INT: str,
    Kind.AMOUNT: money.format_amount_fen,
    Kind.DATE: money.format_date8,
    Kind.DATETIME: money.format_datetime14,
    Kind.TIME: money.format_time6,
}


_FROM_TEXT: Final[dict[Kind, Callable[[str], Any]]] = {
    Kind.TEXT: str,
    Kind.INT: int,  # the schema has checked ASCII digits only: no sign, space or underscore reaches int()
    Kind.AMOUNT: money.parse_amount_fen,
    Kind.DATE: money.parse_date8,
    Kind.DATETIME: money.parse_datetime14,
    Kind.TIME: money.parse_time6,
}


# --- encoding -------------------------------------------------------------------------------------------------


def _append_record(parent: etree._Element, record: Any) -> None:
    """Append the record's fields to `parent`, in wire order; absent optionals and empty lists are left out."""
    for attr, wire in wire_fields(type(record)):
        value = getattr(record, attr)
        if wire.kind is Kind.LIST:
            if not value and wire.min_items == 0:
                continue
            assert wire.container is not None
            container = etree.SubElement(parent, wire.container)
            for item in value:
                _append_record(etree.SubElement(container, wire.element), item)
        elif value is not None:
            etree.SubElement(parent, wire.element).text = _TO_TEXT[wire.kind](value)


def to_tree(message: Message) -> etree._Element:
    """Build the unsigned `<Message>` tree of a canonical message."""
    root = etree.Element("Message")
    _append_record(etree.SubElement(root, "Head"), message.head)
    _append_record(etree.SubElement(etree.SubElement(root, "Body"), message.body.ELEMENT), message.body)
    return root


def to_indented_tree(message: Message) -> etree._Element:
    """The `<Message>` tree indented two spaces per level (readable in the archive; whitespace is signed)."""
    root = to_tree(message)
    etree.indent(root)
    return root


def encode(message: Message, encoding: str = "UTF-8") -> bytes:
    """Serialize a canonical message as an unsigned, indented document (with its XML declaration)."""
    return serialize(to_indented_tree(message), encoding)


# --- decoding -------------------------------------------------------------------------------------------------


def _text(el: etree._Element) -> str:
    return el.text or ""


#: Per record type: (attribute, element, converter or None for a list, container, item type, is_text).
_Plan = tuple[tuple[str, str, Callable[[str], Any] | None, str | None, type[Any] | None], ...]
_PLANS: dict[type[Any], _Plan] = {}


def _plan(cls: type[Any]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple(
            (attr, wire.element, None if wire.kind is Kind.LIST else _FROM_TEXT[wire.kind], wire.container, wire.item)
            for attr, wire in wire_fields(cls)
        )
    return plan


def _read_record(el: etree._Element, cls: type[Any], path: str, problems: list[Problem]) -> Any:
    """Convert the children of `el` into an instance of `cls`; conversion failures go to `problems`."""
    children = {child.tag: child for child in el}
    values: dict[str, Any] = {}
    for attr, element, convert, container, item_cls in _plan(cls):
        if convert is None:  # a list of records inside its container
            holder = children.get(container or "")
            items = () if holder is None else holder
            values[attr] = tuple(
                _read_record(item, item_cls, f"{path}/{container}/{element}[{n}]", problems)  # type: ignore[arg-type]
                for n, item in enumerate(items, 1)
            )
            continue
        child = children.get(element)
        if child is None:
            values[attr] = None  # the schema has checked presence; only optionals reach here
            continue
        try:
            values[attr] = convert(child.text or "")
        except ValueError as exc:
            problems.append(Problem(f"{path}/{element}", str(exc)))
            values[attr] = None
    return cls(**values)


def payload_type_of(root: etree._Element) -> type[Payload]:
    """Tell which payload a `<Message>` tree carries, from `Head/MsgNo` (and `VoucherFlag` for 5201/8202).

    Raises:
        UnknownMessageType: not a `Message`, or a MsgNo (or VoucherFlag) that the standard does not define.
    """
    if root.tag != "Message":
        raise UnknownMessageType([Problem("Message", f"the root element is {root.tag!r}, not 'Message'")])
    msg_no = root.findtext("Head/MsgNo")
    if msg_no is None:
        raise UnknownMessageType([Problem("Head/MsgNo", "missing")])
    if msg_no in ("5201", "8202"):
        flag = root.findtext("Body/Voucher/VoucherFlag")
        payload_type = VOUCHER_BY_FLAG.get(flag or "")
        if payload_type is None:
            raise UnknownMessageType([Problem("Body/Voucher/VoucherFlag", f"must be 0 or 1, not {flag!r}")])
        return payload_type
    payload_type = PAYLOAD_BY_MSG_NO.get(msg_no)
    if payload_type is None:
        raise UnknownMessageType([Problem("Head/MsgNo", f"unknown message type {msg_no!r}")])
    return payload_type


def from_tree(root: etree._Element) -> Message:
    """Decode a parsed (and, for signed traffic, verified and signature-stripped) `<Message>` tree.

    Raises:
        UnknownMessageType: the MsgNo is not one of the standard's.
        ValidationError: the schema or a business rule is broken; `problems` names every field.
    """
    payload_type = payload_type_of(root)
    problems = schema.check(root, payload_type)
    if problems:
        raise ValidationError(problems)
    head = _read_record(root[0], Head, "Head", problems)
    body = _read_record(root[1][0], payload_type, f"Body/{payload_type.ELEMENT}", problems)
    if problems:
        raise ValidationError(problems)
    message = Message(head, body)
    problems = rules.check(message)
    if problems:
        raise ValidationError(problems)
    return message


def head_of(root: etree._Element) -> dict[str, str]:
    """The raw text of the head's elements, for replying to a document that could not be decoded.

    Untrusted: use it only to address a rejection (MsgRef, OriMsgNo), never to act on.
    """
    head = root.find("Head") if root.tag == "Message" else None
    return {} if head is None else {child.tag: _text(child) for child in head if isinstance(child.tag, str)}


def make_head(
    payload: Payload,
    *,
    msg_id: str,
    src: str,
    des: str,
    work_date: date,
    send_time: datetime,
    msg_ref: str | None = None,
) -> Head:
    """A head for `payload`: MsgNo from the payload, MsgRef defaulting to the message's own MsgId."""
    return Head(
        msg_no=payload.msg_no,
        msg_id=msg_id,
        msg_ref=msg_id if msg_ref is None else msg_ref,
        src=src,
        des=des,
        work_date=work_date,
        send_time=send_time,
    )


__all__ = [
    "PAYLOAD_BY_MSG_NO",
    "encode",
    "from_tree",
    "head_of",
    "make_head",
    "payload_type_of",
    "to_tree",
]
