"""XSD schemas of the standard dialect: generated from the message table, shipped as package data, applied.

The schemas under `protocols/schemas/` are what we publish to bank integrators (one file per payload, each a
whole `Message`). They are generated from :mod:`protocols.messages` and the element types below by
:func:`generate_all`, and a test checks that the shipped files equal the
generated ones (`make schemas` rewrites them), so the published schema and the codec can never drift apart.

On input we accept the children of a record in any order (`xs:all`): PROTOCOL.md §5 tells senders the order,
and a receiver gains nothing by refusing a message for it (docs/protocol.md, "Departures and gaps").
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Final

from lxml import etree

from protocols.errors import Problem
from protocols.messages import (
    PAYLOAD_TYPES,
    Head,
    Kind,
    Payload,
    wire_fields,
)

XS: Final = "http://www.w3.org/2001/XMLSchema"
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"

#: Simple types: name -> (base, facets). Lengths count characters (Chinese names are characters, not bytes).
SIMPLE_TYPES: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "Amount": ("xs:string", {"pattern": r"-?(0|[1-9][0-9]{0,15})\.[0-9]{2}"}),
    "Date8": ("xs:string", {"pattern": "[0-9]{8}"}),
    "DateTime14": ("xs:string", {"pattern": "[0-9]{14}"}),
    "Time6": ("xs:string", {"pattern": "[0-9]{6}"}),
    "Count": ("xs:string", {"pattern": "(0|[1-9][0-9]{0,8})"}),
    "ResultCode": ("xs:string", {"pattern": "[0-9]{5}"}),
    "Flag": ("xs:string", {"pattern": "[0-9]"}),
    "Year": ("xs:string", {"pattern": "[0-9]{4}"}),
    "MsgNo": ("xs:string", {"pattern": "[0-9]{4}"}),
    "MsgNoOrEmpty": ("xs:string", {"pattern": "([0-9]{4})?"}),
    "MsgId": ("xs:string", {"pattern": "[A-Za-z0-9_\\-]{1,32}"}),
    "MsgIdOrEmpty": ("xs:string", {"pattern": "[A-Za-z0-9_\\-]{0,32}"}),
    "NodeCode": ("xs:string", {"pattern": "[A-Za-z0-9]{1,20}"}),
    "AdmDivCode": ("xs:string", {"pattern": "[0-9]{6,12}"}),
    "VtCode": ("xs:string", {"pattern": "[0-9]{4}"}),
    "Code": ("xs:string", {"pattern": "[A-Za-z0-9]{1,20}"}),
    "DocNo": ("xs:string", {"pattern": "[A-Za-z0-9_\\-]{1,42}"}),
    "AcctNo": ("xs:string", {"pattern": "[A-Za-z0-9\\-]{1,40}"}),
    "CardNo": ("xs:string", {"pattern": "[0-9]{12,19}"}),
    "Cnaps": ("xs:string", {"pattern": "[0-9]{12}"}),
    "ResultSF": ("xs:string", {"enumeration": "S|F"}),
    "Name": ("xs:string", {"minLength": "1", "maxLength": "120"}),
    "Text": ("xs:string", {"minLength": "1", "maxLength": "200"}),
    "TextOrEmpty": ("xs:string", {"maxLength": "200"}),
    "Version": ("xs:string", {"enumeration": "1.0"}),
}

#: Element name -> simple type. One meaning per name across all payloads.
ELEMENT_TYPES: Final[dict[str, str]] = {
    # head
    "Ver": "Version",
    "MsgNo": "MsgNo",
    "MsgId": "MsgId",
    "MsgRef": "MsgIdOrEmpty",
    "Src": "NodeCode",
    "Des": "NodeCode",
    "WorkDate": "Date8",
    "SendTime": "DateTime14",
    # session and replies
    "BankCode": "NodeCode",
    "LastWorkDate": "Date8",
    "Result": "ResultCode",
    "AddWord": "TextOrEmpty",
    "Reason": "Text",
    "OriMsgNo": "MsgNoOrEmpty",
    # vouchers and receipts
    "VoucherFlag": "Flag",
    "AdmDivCode": "AdmDivCode",
    "StYear": "Year",
    "VtCode": "VtCode",
    "VouDate": "Date8",
    "VoucherNo": "DocNo",
    "AgencyCode": "Code",
    "AgencyName": "Name",
    "FundTypeCode": "Code",
    "PayTypeCode": "Code",
    "BusinessTypeCode": "Code",
    "ExpFuncCode": "Code",
    "ExpEcoCode": "Code",
    "PayAcctNo": "AcctNo",
    "PayAcctName": "Name",
    "PayAcctBankName": "Name",
    "PayeeAcctNo": "AcctNo",
    "PayeeAcctName": "Name",
    "PayeeAcctBankName": "Name",
    "PayeeAcctBankNo": "Cnaps",
    "PayAmt": "Amount",
    "PaySummaryName": "Text",
    "Remark": "Text",
    "Id": "DocNo",
    "CardNo": "CardNo",
    "SpendId": "DocNo",
    "XPayDate": "Date8",
    "XAgentBusinessNo": "DocNo",
    "XPayAmt": "Amount",
    "XPayeeAcctNo": "AcctNo",
    "XPayeeAcctName": "Name",
    "XResult": "ResultSF",
    "XAddWord": "Text",
    "OriVtCode": "VtCode",
    "OriginalVoucherNo": "DocNo",
    # quota, cards, statements, reconciliation, status
    "QuotaAmt": "Amount",
    "CardHolder": "Name",
    "TxnDate": "Date8",
    "TxnTime": "Time6",
    "MerchantName": "Name",
    "Amt": "Amount",
    "AuthCode": "Code",
    "LimitDate": "Date8",
    "CheckDate": "Date8",
    "AllNum": "Count",
    "AllAmt": "Amount",
    "ChildPackNum": "Count",
    "CurPackNo": "Count",
    "ProState": "Flag",
    "XCheckResult": "Flag",
    "XDiffNum": "Count",
    "XCheckReason": "Text",
    "XStatus": "Flag",
}


def schema_name(payload_type: type[Payload]) -> str:
    """The shipped file name of a payload's schema (`Voucher.xsd`, `Receipt.xsd`, …)."""
    return f"{payload_type.__name__}.xsd"


def _record_type(parent: etree._Element, cls: type[Any]) -> None:
    """Append an anonymous complexType with an `xs:all` of the record's fields to `parent`."""
    ctype = etree.SubElement(parent, f"{{{XS}}}complexType")
    fields = wire_fields(cls)
    if not fields:
        return  # an empty element such as <Ping/>
    group = etree.SubElement(ctype, f"{{{XS}}}all")
    for _attr, wire in fields:
        if wire.kind is Kind.LIST:
            assert wire.container is not None and wire.item is not None
            container = etree.SubElement(group, f"{{{XS}}}element", name=wire.container)
            if wire.min_items == 0:
                container.set("minOccurs", "0")
            seq = etree.SubElement(etree.SubElement(container, f"{{{XS}}}complexType"), f"{{{XS}}}sequence")
            item = etree.SubElement(
                seq,
                f"{{{XS}}}element",
                name=wire.element,
                minOccurs=str(max(1, wire.min_items)),
                maxOccurs=str(wire.max_items),
            )
            _record_type(item, wire.item)
        else:
            el = etree.SubElement(group, f"{{{XS}}}element", name=wire.element, type=ELEMENT_TYPES[wire.element])
            if wire.optional:
                el.set("minOccurs", "0")


def build_xsd(payload_type: type[Payload]) -> bytes:
    """Generate the XSD of a whole `Message` carrying `payload_type` (see the module docstring)."""
    root = etree.Element(f"{{{XS}}}schema", nsmap={"xs": XS}, elementFormDefault="qualified")
    root.append(
        etree.Comment(
            f" Exchange standard v1, standard dialect: a Message carrying {payload_type.__name__}"
            f" (MsgNo {payload_type.MSG_NO or '5201/8202'}). Generated by protocols/schema.py; do not edit. "
        )
    )
    etree.SubElement(root, f"{{{XS}}}import", namespace=DS_NS)
    for name, (base, facets) in SIMPLE_TYPES.items():
        stype = etree.SubElement(root, f"{{{XS}}}simpleType", name=name)
        restriction = etree.SubElement(stype, f"{{{XS}}}restriction", base=base)
        for facet, value in facets.items():
            for one in value.split("|") if facet == "enumeration" else [value]:
                etree.SubElement(restriction, f"{{{XS}}}{facet}", value=one)
    message = etree.SubElement(root, f"{{{XS}}}element", name="Message")
    seq = etree.SubElement(etree.SubElement(message, f"{{{XS}}}complexType"), f"{{{XS}}}sequence")
    _record_type(etree.SubElement(seq, f"{{{XS}}}element", name="Head"), Head)
    body_seq = etree.SubElement(
        etree.SubElement(etree.SubElement(seq, f"{{{XS}}}element", name="Body"), f"{{{XS}}}complexType"),
        f"{{{XS}}}sequence",
    )
    _record_type(etree.SubElement(body_seq, f"{{{XS}}}element", name=payload_type.ELEMENT), payload_type)
    # The enveloped signature (PROTOCOL.md §6) is checked by protocols.signature, not by the schema.
    etree.SubElement(seq, f"{{{XS}}}any", namespace=DS_NS, processContents="skip", minOccurs="0", maxOccurs="1")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


SCHEMA_DIR: Final = "schemas"


_SCHEMAS: dict[str, etree.XMLSchema] = {}


def load_schema(payload_type: type[Payload]) -> etree.XMLSchema:
    """The compiled schema of a payload, read from the shipped package data (compiled once)."""
    cached = _SCHEMAS.get(payload_type.__name__)
    if cached is None:
        cached = _SCHEMAS[payload_type.__name__] = _compile(payload_type)
    return cached


def _compile(payload_type: type[Payload]) -> etree.XMLSchema:
    data = resources.files("protocols").joinpath(SCHEMA_DIR, schema_name(payload_type)).read_bytes()
    # Our own package data, not peer input: a plain parser with network and entities still off.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.fromstring(data, parser))


def check(root: etree._Element, payload_type: type[Payload]) -> list[Problem]:
    """Validate a `Message` tree against the payload's schema; every problem names its field."""
    schema = load_schema(payload_type)
    if schema.validate(root):
        return []
    problems = []
    for entry in schema.error_log:  # type: ignore[attr-defined]  # lxml-stubs lack _ListErrorLog.__iter__
        path = (entry.path or "").removeprefix("/Message/").removeprefix("/")
        # lxml names the element at fault in the message ("Element 'PayAmt': …", or for a missing child
        # "Missing child element(s). Expected is ( AgencyName )"), so the field is named either way.
        problems.append(Problem(path or "Message", entry.message))
    return problems


def generate_all(directory: Path) -> list[Path]:
    """Write every payload's schema into `directory`; returns the files written."""
    written = []
    for payload_type in PAYLOAD_TYPES:
        target = directory / schema_name(payload_type)
        target.write_bytes(build_xsd(payload_type))
        written.append(target)
    return written
