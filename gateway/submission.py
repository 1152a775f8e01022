"""Reading vouchers submitted by the finance side (API body or CLI file): JSON or a standard XML voucher.

Accepted forms:
- JSON `{"bank": "ICBC", "voucher": {…}}`, or `{"vouchers": [{"bank": …, "voucher": …}, …]}`, or a JSON array of
  such objects; the voucher object is the JSON form of :mod:`protocols.jsonform` (the standard's element names);
- XML: a whole standard `<Message>` carrying a 5201/8202 voucher (the bank is its `Head/Des`), or a bare
  `<Voucher>` element, or a `<Vouchers>` element holding several (the bank given separately).
Where no bank is named and exactly one is configured, that one is meant.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

from protocols import codec, jsonform
from protocols.errors import Problem, ProtocolError, ValidationError
from protocols.messages import Voucher
from protocols.xmlsafe import parse_document


class SubmissionError(ValueError):
    """The submission cannot be read at all (not JSON, not XML, no bank)."""


def _bank(named: Any, default: str | None, banks: list[str], where: str) -> str:
    bank = named if isinstance(named, str) and named else default
    if bank is None and len(banks) == 1:
        bank = banks[0]
    if bank is None:
        raise SubmissionError(f"{where}: name the bank (configured: {', '.join(banks)})")
    return bank


_HEAD = (
    b"<Head><Ver>1.0</Ver><MsgNo>%s</MsgNo><MsgId>SUBMIT</MsgId><MsgRef>SUBMIT</MsgRef><Src>FINANCE</Src>"
    b"<Des>GATEWAY</Des><WorkDate>20000101</WorkDate><SendTime>20000101000000</SendTime></Head>"
)


def _voucher_from_element(element: etree._Element, where: str) -> Voucher:
    msg_no = (element.findtext("VtCode") or "5201").encode("ascii", "replace")[:4]
    wrapper = etree.fromstring(b"<Message>" + _HEAD.replace(b"%s", msg_no) + b"<Body/></Message>")
    body = wrapper.find("Body")
    assert body is not None
    body.append(element)
    try:
        message = codec.from_tree(wrapper)
    except ValidationError as exc:
        raise ValidationError([Problem(f"{where}/{p.field}", p.message) for p in exc.problems]) from None
    if not isinstance(message.body, Voucher):
        raise ValidationError([Problem(where, "not a payment voucher (VoucherFlag 0)")])
    return message.body


def parse_submission(
    data: bytes, content_type: bytes | str, bank: str | None, banks: list[str]
) -> list[tuple[str, Voucher]]:
    """The (bank, voucher) pairs of a submission.

    Raises:
        SubmissionError: unreadable, or no bank named where several are configured.
        ValidationError: a voucher breaks the schema or a rule; every problem is named.
    """
    kind = content_type.decode() if isinstance(content_type, bytes) else content_type
    text = data.lstrip()
    if "xml" in kind or text.startswith(b"<"):
        try:
            root = parse_document(data)
        except ProtocolError as exc:
            raise SubmissionError(f"not a readable XML document: {exc}") from None
        if root.tag == "Message":
            message = codec.from_tree(root)
            if not isinstance(message.body, Voucher):
                raise SubmissionError("the document does not carry a payment voucher (5201/8202, VoucherFlag 0)")
            return [
                (_bank(message.head.des if message.head.des in banks else None, bank, banks, "Message"), message.body)
            ]
        elements = [root] if root.tag == "Voucher" else list(root.iter("Voucher"))
        if not elements:
            raise SubmissionError(f"no <Voucher> in a <{root.tag}> document")
        chosen = _bank(None, bank, banks, "XML submission")
        return [(chosen, _voucher_from_element(el, f"Voucher[{n}]")) for n, el in enumerate(elements, 1)]
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"neither JSON nor XML: {exc}") from None
    entries = obj.get("vouchers") if isinstance(obj, dict) and "vouchers" in obj else obj
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise SubmissionError("expected {'bank': …, 'voucher': {…}} or a list of them")
    out = []
    problems: list[Problem] = []
    for n, entry in enumerate(entries, 1):
        where = f"vouchers[{n}]"
        if not isinstance(entry, dict):
            raise SubmissionError(f"{where}: expected an object")
        document = entry.get("voucher", entry if "VoucherNo" in entry else None)
        try:
            voucher = jsonform.from_json(Voucher, document, where)
        except ValidationError as exc:
            problems += exc.problems
            continue
        out.append((_bank(entry.get("bank"), bank, banks, where), voucher))
    if problems:
        raise ValidationError(problems)
    return out
