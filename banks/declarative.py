"""Declarative bank dialects: a bank's wire format as data, and the one codec that speaks every declaration.

STYLE.md §3: "differences are data first, named flags second, code last". A :class:`Declaration` says
everything in which a bank's front-end differs from the exchange standard (PROTOCOL.md):

* **framing**: a :class:`~protocols.framing.FrameSpec` (ASCII or binary length, width, what it counts, maximum);
* **encoding**: UTF-8, GBK, GB18030 or GB2312;
* **layout**: the root, head and body element names; whether the body holds one payload element
  (`wrapped`, as the standard's `<Body><Voucher>`) or the payload's fields directly (`flat`); whether lists
  have a container element (`wrapped`, `<DetailList><Detail>`) or repeat their items bare; whether an absent
  optional field is left out (`omit`) or sent as an empty element (`empty`); fixed head elements
  (`head_constants`, such as a channel or application code);
* **names**: the bank's element name for each standard element (`VoucherNo` → `VOUCHER_NO`, `PayAmt` →
  `TRAN_AMT`, `DetailList` → `DETAILS`), and for each payload type its payload element;
* **formats**: amounts in yuan with two decimals or in integer fen; dates `YYYYMMDD` or `YYYY-MM-DD`;
  date-times and times in compact or ISO-like forms;
* **vocabularies**: the bank's code for each result code of PROTOCOL.md §4 (`0000` ↔ 90000) and for each
  message type (MsgNo 5201 ↔ `PAY001`); the latter is also used for a reply's `OriMsgNo`;
* **what it does not carry** (`unsupported` payload types) and its **signature scheme** by name
  (:mod:`banks.signing`);
* **its statement file**: how the bank delivers its end-of-day statement as a file
  (:class:`~banks.statement_format.StatementSource`: the standard's 4006 document, a text layout, or camt.053).

:class:`DeclarativeDialect` is the codec for any declaration. A declaration is checked when the dialect is
built; every mistake raises :class:`DeclarationError` naming the field (`names.PayAmt: …`). Declarations can
be written in Python (`banks/icbc.py`) or in a TOML file read by :func:`load_declaration`
(`banks/declarations/*.toml`, whose format docs/banks/adding-a-bank.md describes).

Decoding is strict and names the bank's own element in every problem: the document is verified by the scheme
(which returns only the verified tree), read into canonical values with the dialect's formats (unknown,
repeated or missing elements, attributes and stray text are problems), and then checked against the standard's
own schema and business rules on the canonical form (:mod:`protocols.schema`, :mod:`protocols.rules`), so a
bank's message means exactly what the same message in the standard would, and is refused for the same reasons.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar

from lxml import etree

from banks.dialect import Dialect, Inbound, RawHead
from banks.signing import DETACHED, SCHEME_NAMES, SignatureScheme, make_scheme
from banks.statement_format import STANDARD_STATEMENT, StatementFormatError, StatementSource, statement_from_table
from protocols import codec, money, rules, schema
from protocols.errors import (
    LocalError,
    Problem,
    ProtocolError,
    ResultCode,
    SignatureProfileViolation,
    UnknownMessageType,
    ValidationError,
)
from protocols.framing import DEFAULT_MAX_BODY_BYTES, SUPPORTED_WIDTHS, FrameSpec, HeaderKind
from protocols.messages import (
    PAYLOAD_TYPES,
    VOUCHER_VT_CODES,
    Head,
    Kind,
    Message,
    Payload,
    Receipt,
    Voucher,
    wire_fields,
)
from protocols.signature import Signer, Verifier
from protocols.xmlsafe import SUPPORTED_ENCODINGS, XmlLimits, parse_document, serialize

E = TypeVar("E", bound=Enum)


# --- the declaration ------------------------------------------------------------------------------------------


class BodyLayout(Enum):
    """How the body holds the payload."""

    WRAPPED = "wrapped"  # <Body><Voucher>…fields…</Voucher></Body>, as the standard
    FLAT = "flat"  # <body>…fields…</body>; the head's message type says what they are


class ListLayout(Enum):
    """How a list of records is written."""

    WRAPPED = "wrapped"  # <DetailList><Detail>…</Detail>…</DetailList>, as the standard
    BARE = "bare"  # <detail>…</detail><detail>…</detail> directly among the record's fields


class Absent(Enum):
    """How an optional field without a value is written."""

    OMIT = "omit"  # left out, as the standard
    EMPTY = "empty"  # an empty element <Remark/>; an empty optional element reads as absent


class AmountFormat(Enum):
    """How money is written."""

    YUAN = "yuan"  # 1234.50, as the standard
    FEN = "fen"  # 123450


class DateFormat(Enum):
    """How a date is written."""

    COMPACT = "YYYYMMDD"
    ISO = "YYYY-MM-DD"


class DateTimeFormat(Enum):
    """How a date and time (the head's send time) is written."""

    COMPACT = "YYYYMMDDhhmmss"
    ISO_SPACE = "YYYY-MM-DD hh:mm:ss"
    ISO_T = "YYYY-MM-DDThh:mm:ss"


class TimeFormat(Enum):
    """How a time of day is written."""

    COMPACT = "hhmmss"
    COLON = "hh:mm:ss"


@dataclass(frozen=True)
class Declaration:
    """Everything in which a bank's dialect differs from the standard (see the module docstring).

    Attributes:
        code: The dialect's code, as `tgw init --bank CODE:DIALECT` names it (`[a-z][a-z0-9_]*`).
        title: One line for people.
        framing: The length prefix.
        encoding: One of :data:`protocols.xmlsafe.SUPPORTED_ENCODINGS`.
        root: The root element.
        head: The head element (the root's first child).
        body: The body element (the root's second child).
        signature: The signature scheme's name (:data:`banks.signing.SCHEME_NAMES`).
        signature_element: For a detached scheme, the head element carrying the value.
        body_layout: `wrapped` or `flat`.
        list_layout: `wrapped` or `bare`.
        absent: `omit` or `empty`.
        amount_format: yuan or fen.
        date_format: `YYYYMMDD` or `YYYY-MM-DD`.
        datetime_format: The head's send time.
        time_format: A time of day (card spending).
        names: Standard element name → the bank's (fields, list containers and items; head included).
            Elements not named keep the standard's name.
        payload_elements: Payload type name (`Voucher`, `Receipt`, …) → its element in a wrapped body;
            by default the standard's (`Voucher` for vouchers, receipts and returns alike).
        head_constants: Extra head elements with a fixed value, written after the head's fields and
            required on input.
        result_codes: Result code (PROTOCOL.md §4) → the bank's code, for every result code; empty keeps
            the standard's five digits.
        message_types: MsgNo → the bank's message type code, for every MsgNo the dialect carries; empty
            keeps the standard's MsgNo. A code of four digits must be its own MsgNo, so that a reply's
            `OriMsgNo` naming a type the table does not know passes through unchanged and unambiguous.
        unsupported: Names of the payload types the dialect does not carry.
        description: Prose for the dialect's documentation (docs/banks/<code>.md).
        statement_format: The file the bank delivers its end-of-day statement in (by default the standard's
            4006 document); a declaration file's `[statement]` table.
    """

    code: str
    title: str
    framing: FrameSpec
    encoding: str
    root: str
    head: str
    body: str
    signature: str
    signature_element: str | None = None
    body_layout: BodyLayout = BodyLayout.WRAPPED
    list_layout: ListLayout = ListLayout.WRAPPED
    absent: Absent = Absent.OMIT
    amount_format: AmountFormat = AmountFormat.YUAN
    date_format: DateFormat = DateFormat.COMPACT
    datetime_format: DateTimeFormat = DateTimeFormat.COMPACT
    time_format: TimeFormat = TimeFormat.COMPACT
    names: Mapping[str, str] = field(default_factory=dict)
    payload_elements: Mapping[str, str] = field(default_factory=dict)
    head_constants: Mapping[str, str] = field(default_factory=dict)
    result_codes: Mapping[int, str] = field(default_factory=dict)
    message_types: Mapping[str, str] = field(default_factory=dict)
    unsupported: frozenset[str] = frozenset()
    description: str = ""
    statement_format: StatementSource = STANDARD_STATEMENT


class DeclarationError(ValueError):
    """A declaration that cannot work; `field` names the declaration's field (`names.PayAmt`)."""

    def __init__(self, field: str, message: str, origin: str = "") -> None:
        self.field = field
        self.origin = origin
        super().__init__(f"{origin + ': ' if origin else ''}{field}: {message}")


# --- what the standard has: records, elements, message types --------------------------------------------------


def _record_types() -> tuple[type[Any], ...]:
    """Head, every payload type and every list item type, each once, in the order of the message table."""
    found: list[type[Any]] = []

    def visit(cls: type[Any]) -> None:
        if cls in found:
            return
        found.append(cls)
        for _attr, wire in wire_fields(cls):
            if wire.kind is Kind.LIST:
                assert wire.item is not None
                visit(wire.item)

    roots: tuple[type[Any], ...] = (Head, *PAYLOAD_TYPES)
    for cls in roots:
        visit(cls)
    return tuple(found)


RECORD_TYPES: Final = _record_types()
PAYLOADS_BY_NAME: Final[dict[str, type[Payload]]] = {t.__name__: t for t in PAYLOAD_TYPES}


def _standard_elements() -> frozenset[str]:
    names: set[str] = set()
    for cls in RECORD_TYPES:
        for _attr, wire in wire_fields(cls):
            names.add(wire.element)
            if wire.container:
                names.add(wire.container)
    return frozenset(names)


#: Every element name of the standard that a declaration may rename.
STANDARD_ELEMENTS: Final = _standard_elements()


def msg_nos_of(payload_type: type[Payload]) -> tuple[str, ...]:
    """The MsgNos a payload type travels under (vouchers and receipts: 5201 and 8202)."""
    if payload_type.MSG_NO is not None:
        return (payload_type.MSG_NO,)
    return VOUCHER_VT_CODES


#: Fields whose values are result codes of PROTOCOL.md §4 (mapped through `result_codes`).
RESULT_ELEMENTS: Final = frozenset({"Result"})

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,63}")
_CODE: Final = re.compile(r"[a-z][a-z0-9_]{1,31}")
_VOCABULARY_CODE: Final = re.compile(r"[A-Za-z0-9_.-]{1,20}")
_MSG_NO: Final = re.compile(r"[0-9]{4}")


def _check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value.lower().startswith("xml"):
        raise DeclarationError(where, f"{value!r} is not an XML element name without a prefix")
    return value


def check_declaration(d: Declaration) -> None:
    """Check that a declaration can work; see :class:`Declaration` for the rules.

    Raises:
        DeclarationError: The first mistake found, naming its field.
    """
    if not isinstance(d.code, str) or not _CODE.fullmatch(d.code):
        raise DeclarationError("code", f"{d.code!r} is not a dialect code ([a-z][a-z0-9_]{{1,31}})")
    if not isinstance(d.title, str) or not d.title.strip():
        raise DeclarationError("title", "must be a non-empty string")
    if not isinstance(d.framing, FrameSpec):
        raise DeclarationError("framing", "must be a FrameSpec")
    if not isinstance(d.encoding, str) or d.encoding.upper() not in SUPPORTED_ENCODINGS:
        raise DeclarationError("document.encoding", f"{d.encoding!r} is not one of {sorted(SUPPORTED_ENCODINGS)}")
    layout = {"document.root": d.root, "document.head": d.head, "document.body": d.body}
    for where, value in layout.items():
        _check_name(value, where)
    if len(set(layout.values())) != 3:
        raise DeclarationError("document", "root, head and body must have three different names")
    enums: tuple[tuple[str, object, type[Enum]], ...] = (
        ("document.body_layout", d.body_layout, BodyLayout),
        ("document.list_layout", d.list_layout, ListLayout),
        ("document.absent", d.absent, Absent),
        ("formats.amount", d.amount_format, AmountFormat),
        ("formats.date", d.date_format, DateFormat),
        ("formats.datetime", d.datetime_format, DateTimeFormat),
        ("formats.time", d.time_format, TimeFormat),
    )
    for where, member, enum in enums:
        if not isinstance(member, enum):
            raise DeclarationError(where, f"must be a {enum.__name__}")
    if d.signature not in SCHEME_NAMES:
        raise DeclarationError("signature.scheme", f"{d.signature!r} is not one of {sorted(SCHEME_NAMES)}")
    if d.signature in DETACHED:
        if d.signature_element is None:
            raise DeclarationError("signature.element", f"{d.signature} needs the head element carrying the value")
        _check_name(d.signature_element, "signature.element")
    elif d.signature_element is not None:
        raise DeclarationError("signature.element", f"{d.signature} takes no element (it is ds:Signature)")
    for standard, bank in d.names.items():
        if standard not in STANDARD_ELEMENTS:
            raise DeclarationError(f"names.{standard}", "is not an element of the standard")
        _check_name(bank, f"names.{standard}")
    for type_name, bank in d.payload_elements.items():
        if type_name not in PAYLOADS_BY_NAME:
            raise DeclarationError(
                f"payload_elements.{type_name}", f"is not a payload type: {sorted(PAYLOADS_BY_NAME)}"
            )
        if d.body_layout is BodyLayout.FLAT:
            raise DeclarationError(f"payload_elements.{type_name}", "a flat body has no payload element")
        _check_name(bank, f"payload_elements.{type_name}")
    for name, value in d.head_constants.items():
        _check_name(name, f"head_constants.{name}")
        if not isinstance(value, str):
            raise DeclarationError(f"head_constants.{name}", "must be a string")
    for type_name in d.unsupported:
        if type_name not in PAYLOADS_BY_NAME:
            raise DeclarationError("unsupported", f"{type_name!r} is not a payload type: {sorted(PAYLOADS_BY_NAME)}")
    if not isinstance(d.statement_format, StatementSource):
        raise DeclarationError("statement", "must be a StatementSource")
    _check_vocabularies(d)
    _check_collisions(d)


def _check_vocabularies(d: Declaration) -> None:
    if d.result_codes:
        expected = {int(code) for code in ResultCode}
        given = set(d.result_codes)
        for result in sorted(given - expected, key=str):
            raise DeclarationError(f"result_codes.{result}", "is not a result code of PROTOCOL.md §4")
        for result in sorted(expected - given):
            raise DeclarationError("result_codes", f"has no code for {result} ({ResultCode(result).name})")
        _check_codes(d.result_codes, "result_codes")
    if d.message_types:
        carried = {t for t in PAYLOAD_TYPES if t.__name__ not in d.unsupported}
        expected_nos = {no for t in carried for no in msg_nos_of(t)}
        for msg_no in sorted(set(d.message_types) - expected_nos):
            known = any(msg_no in msg_nos_of(t) for t in PAYLOAD_TYPES)
            why = "is a type the dialect does not carry (unsupported)" if known else "is not a MsgNo of the standard"
            raise DeclarationError(f"message_types.{msg_no}", why)
        for msg_no in sorted(expected_nos - set(d.message_types)):
            raise DeclarationError("message_types", f"has no code for MsgNo {msg_no}")
        _check_codes(d.message_types, "message_types")
        for msg_no, code in d.message_types.items():
            if _MSG_NO.fullmatch(code) and code != msg_no:
                raise DeclarationError(
                    f"message_types.{msg_no}", f"a four-digit code must be the MsgNo itself, not {code!r}"
                )


def _check_codes(table: Mapping[Any, str], where: str) -> None:
    seen: dict[str, Any] = {}
    for key, code in table.items():
        if not isinstance(code, str) or not _VOCABULARY_CODE.fullmatch(code):
            raise DeclarationError(f"{where}.{key}", f"{code!r} is not a code ([A-Za-z0-9_.-]{{1,20}})")
        if code in seen:
            raise DeclarationError(f"{where}.{key}", f"{code!r} is already the code of {seen[code]}")
        seen[code] = key


def _check_collisions(d: Declaration) -> None:
    """Every record's child elements have distinct names, and the layout's names are used for nothing else."""
    reserved = {d.root: "document.root", d.head: "document.head", d.body: "document.body"}
    if d.signature_element is not None:
        if d.signature_element in reserved:
            raise DeclarationError("signature.element", f"is already {reserved[d.signature_element]}")
        reserved[d.signature_element] = "signature.element"
    bare = d.list_layout is ListLayout.BARE
    for cls in RECORD_TYPES:
        children: dict[str, str] = {}
        if cls is Head:
            children |= {name: f"head_constants.{name}" for name in d.head_constants}
        for _attr, wire in wire_fields(cls):
            if wire.kind is Kind.LIST and not bare:
                assert wire.container is not None
                here = {d.names.get(wire.container, wire.container): wire.container}
                item = d.names.get(wire.element, wire.element)
                if item in reserved:
                    raise DeclarationError(f"names.{wire.element}", f"{item!r} is already {reserved[item]}")
            else:
                here = {d.names.get(wire.element, wire.element): wire.element}
            for bank, standard in here.items():
                if bank in reserved:
                    raise DeclarationError(f"names.{standard}", f"{bank!r} is already {reserved[bank]}")
                if bank in children:
                    raise DeclarationError(
                        f"names.{standard}", f"{bank!r} is already {children[bank]} in {cls.__name__}"
                    )
                children[bank] = f"names.{standard}"
    if d.body_layout is BodyLayout.WRAPPED:
        for payload_type in PAYLOAD_TYPES:
            element = d.payload_elements.get(payload_type.__name__, payload_type.ELEMENT)
            if element in reserved:
                raise DeclarationError(f"payload_elements.{payload_type.__name__}", f"is already {reserved[element]}")


# --- the TOML declaration file --------------------------------------------------------------------------------

_TOP_KEYS: Final = {
    "code": str,
    "title": str,
    "description": str,
    "unsupported": list,
    "framing": dict,
    "document": dict,
    "formats": dict,
    "signature": dict,
    "names": dict,
    "payload_elements": dict,
    "head_constants": dict,
    "result_codes": dict,
    "message_types": dict,
    "statement": dict,
}
_SECTION_KEYS: Final[dict[str, dict[str, type]]] = {
    "framing": {"header": str, "width": int, "counts_header": bool, "max_body_bytes": int},
    "document": {
        "encoding": str,
        "root": str,
        "head": str,
        "body": str,
        "body_layout": str,
        "list_layout": str,
        "absent": str,
    },
    "formats": {"amount": str, "date": str, "datetime": str, "time": str},
    "signature": {"scheme": str, "element": str},
}
_REQUIRED: Final = {
    "": ("code", "title", "framing", "document", "signature"),
    "framing": ("header", "width"),
    "document": ("encoding", "root", "head", "body"),
    "signature": ("scheme",),
}
_HEADER_KINDS: Final = {"ascii": HeaderKind.ASCII_DECIMAL, "binary": HeaderKind.BINARY_BIG_ENDIAN}


def _typed(table: Mapping[str, Any], spec: Mapping[str, type], section: str, origin: str) -> None:
    prefix = f"{section}." if section else ""
    for key, value in table.items():
        expected = spec.get(key)
        if expected is None:
            raise DeclarationError(f"{prefix}{key}", f"unknown key; expected one of {', '.join(spec)}", origin)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise DeclarationError(f"{prefix}{key}", f"must be a {_TOML_TYPE[expected]}", origin)
    for key in _REQUIRED.get(section, ()):
        if key not in table:
            raise DeclarationError(f"{prefix}{key}", "is required", origin)


_TOML_TYPE: Final[dict[type, str]] = {str: "string", int: "integer", bool: "boolean", list: "array", dict: "table"}


def _strings(table: Mapping[str, Any], section: str, origin: str) -> dict[str, str]:
    for key, value in table.items():
        if not isinstance(value, str):
            raise DeclarationError(f"{section}.{key}", "must be a string", origin)
    return dict(table)


def _choice(value: str | None, enum: type[E], default: E, where: str, origin: str) -> E:
    if value is None:
        return default
    for member in enum:
        if member.value == value:
            return member
    choices = ", ".join(repr(m.value) for m in enum)
    raise DeclarationError(where, f"{value!r} is not one of {choices}", origin)


def declaration_from_toml(text: str, origin: str = "<declaration>") -> Declaration:
    """Read a declaration file (docs/banks/adding-a-bank.md describes the format) and check it.

    Args:
        text: The file's text.
        origin: The file's name, which starts every error message.

    Raises:
        DeclarationError: Not TOML, an unknown or missing key, a value of the wrong type, or a declaration
            that cannot work (:func:`check_declaration`); the message names the file and the field.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError("(file)", f"not TOML: {exc}", origin) from None
    _typed(data, _TOP_KEYS, "", origin)
    sections = {name: data.get(name, {}) for name in _SECTION_KEYS}
    for name, table in sections.items():
        _typed(table, _SECTION_KEYS[name], name, origin)
    framing, document, formats, signature = (sections[n] for n in ("framing", "document", "formats", "signature"))
    kind = _HEADER_KINDS.get(framing["header"])
    if kind is None:
        raise DeclarationError("framing.header", f"{framing['header']!r} is not 'ascii' or 'binary'", origin)
    width = framing["width"]
    if width not in SUPPORTED_WIDTHS[kind]:
        widths = sorted(SUPPORTED_WIDTHS[kind])
        raise DeclarationError("framing.width", f"{framing['header']} headers are {widths} wide, not {width}", origin)
    counts_header = framing.get("counts_header", False)
    probe = FrameSpec(kind, width, counts_header, 1)
    max_body_bytes = framing.get("max_body_bytes", min(DEFAULT_MAX_BODY_BYTES, probe.max_expressible_body_bytes))
    try:
        spec = FrameSpec(kind, width, counts_header, max_body_bytes)
    except ValueError as exc:
        raise DeclarationError("framing.max_body_bytes", str(exc), origin) from None
    result_codes: dict[int, str] = {}
    for key, value in _strings(data.get("result_codes", {}), "result_codes", origin).items():
        if not key.isascii() or not key.isdigit():
            raise DeclarationError(f"result_codes.{key}", "is not a result code of PROTOCOL.md §4", origin)
        result_codes[int(key)] = value
    unsupported = data.get("unsupported", [])
    if not all(isinstance(name, str) for name in unsupported):
        raise DeclarationError("unsupported", "must be an array of payload type names", origin)
    statement = STANDARD_STATEMENT
    if "statement" in data:
        try:
            statement = statement_from_table(data["statement"], default_name=f"{data['code']}-txt")
        except StatementFormatError as exc:
            raise DeclarationError(f"statement.{exc.field}", exc.message, origin) from None
    declaration = Declaration(
        code=data["code"],
        title=data["title"],
        description=data.get("description", ""),
        framing=spec,
        encoding=document["encoding"],
        root=document["root"],
        head=document["head"],
        body=document["body"],
        body_layout=_choice(
            document.get("body_layout"), BodyLayout, BodyLayout.WRAPPED, "document.body_layout", origin
        ),
        list_layout=_choice(
            document.get("list_layout"), ListLayout, ListLayout.WRAPPED, "document.list_layout", origin
        ),
        absent=_choice(document.get("absent"), Absent, Absent.OMIT, "document.absent", origin),
        amount_format=_choice(formats.get("amount"), AmountFormat, AmountFormat.YUAN, "formats.amount", origin),
        date_format=_choice(formats.get("date"), DateFormat, DateFormat.COMPACT, "formats.date", origin),
        datetime_format=_choice(
            formats.get("datetime"), DateTimeFormat, DateTimeFormat.COMPACT, "formats.datetime", origin
        ),
        time_format=_choice(formats.get("time"), TimeFormat, TimeFormat.COMPACT, "formats.time", origin),
        signature=signature["scheme"],
        signature_element=signature.get("element"),
        names=_strings(data.get("names", {}), "names", origin),
        payload_elements=_strings(data.get("payload_elements", {}), "payload_elements", origin),
        head_constants=_strings(data.get("head_constants", {}), "head_constants", origin),
        result_codes=result_codes,
        message_types=_strings(data.get("message_types", {}), "message_types", origin),
        unsupported=frozenset(unsupported),
        statement_format=statement,
    )
    try:
        check_declaration(declaration)
    except DeclarationError as exc:
        raise DeclarationError(exc.field, str(exc).removeprefix(f"{exc.field}: "), origin) from None
    return declaration


def load_declaration(path: Path) -> Declaration:
    """Read and check a declaration file (see :func:`declaration_from_toml`).

    Raises:
        DeclarationError: The file cannot be read, or see :func:`declaration_from_toml`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeclarationError("(file)", f"cannot read: {exc}", str(path)) from None
    return declaration_from_toml(text, str(path))


# --- value formats --------------------------------------------------------------------------------------------

_FEN: Final = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_INT: Final = re.compile(r"0|[1-9][0-9]{0,17}")
_ISO_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_ISO_DATETIME: Final = {
    DateTimeFormat.ISO_SPACE: re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})"),
    DateTimeFormat.ISO_T: re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"),
}
_COLON_TIME: Final = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})")


def parse_int(text: str) -> int:
    """A non-negative decimal integer without sign, spaces or leading zeros (the standard's INT fields)."""
    if not _INT.fullmatch(text):
        raise ValueError(f"not a number: {text!r}")
    return int(text)


def parse_fen(text: str) -> int:
    """An amount in integer fen: `-?digits`, no leading zeros, no negative zero."""
    if not _FEN.fullmatch(text) or text == "-0":
        raise ValueError(f"not an amount in fen: {text!r}")
    return int(text)


def _calendar(build: Callable[..., Any], parts: Iterator[str], text: str, what: str) -> Any:
    try:
        return build(*(int(p) for p in parts))
    except ValueError:
        raise ValueError(f"not a valid {what}: {text!r}") from None


def _date_parser(fmt: DateFormat) -> Callable[[str], date]:
    if fmt is DateFormat.COMPACT:
        return money.parse_date8

    def parse_iso(text: str) -> date:
        match = _ISO_DATE.fullmatch(text)
        if match is None:
            raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
        return _calendar(date, iter(match.groups()), text, "date")  # type: ignore[no-any-return]

    return parse_iso


def _date_formatter(fmt: DateFormat) -> Callable[[date], str]:
    if fmt is DateFormat.COMPACT:
        return money.format_date8
    return lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _datetime_parser(fmt: DateTimeFormat) -> Callable[[str], datetime]:
    if fmt is DateTimeFormat.COMPACT:
        return money.parse_datetime14
    pattern = _ISO_DATETIME[fmt]

    def parse_iso(text: str) -> datetime:
        match = pattern.fullmatch(text)
        if match is None:
            raise ValueError(f"not a {fmt.value} time: {text!r}")
        return _calendar(datetime, iter(match.groups()), text, "date and time")  # type: ignore[no-any-return]

    return parse_iso


def _datetime_formatter(fmt: DateTimeFormat) -> Callable[[datetime], str]:
    if fmt is DateTimeFormat.COMPACT:
        return money.format_datetime14
    separator = " " if fmt is DateTimeFormat.ISO_SPACE else "T"
    return lambda t: f"{t.year:04d}-{t.month:02d}-{t.day:02d}{separator}{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _time_parser(fmt: TimeFormat) -> Callable[[str], time]:
    if fmt is TimeFormat.COMPACT:
        return money.parse_time6

    def parse_colon(text: str) -> time:
        match = _COLON_TIME.fullmatch(text)
        if match is None:
            raise ValueError(f"not an hh:mm:ss time: {text!r}")
        return _calendar(time, iter(match.groups()), text, "time")  # type: ignore[no-any-return]

    return parse_colon


def _time_formatter(fmt: TimeFormat) -> Callable[[time], str]:
    if fmt is TimeFormat.COMPACT:
        return money.format_time6
    return lambda t: f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


# --- the codec ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    """One field of a record as a dialect writes it."""

    attr: str
    standard: str  # the standard's element (a list's item element)
    name: str  # the bank's element (a list's item element)
    kind: Kind
    optional: bool
    write: Callable[[Any], str] | None = None  # None for lists
    read: Callable[[str], Any] | None = None
    container: str | None = None  # a list's bank container; None for a bare list
    container_standard: str | None = None
    item: type[Any] | None = None
    min_items: int = 0


@dataclass(frozen=True, slots=True)
class _Record:
    """A record type as a dialect writes it: its fields, and which bank element is which field."""

    fields: tuple[_Field, ...]
    by_standard: dict[str, _Field]  # standard element (and container) -> field, to translate problem paths


class _Vocabulary:
    """A two-way table between canonical values and a bank's codes."""

    def __init__(self, table: Mapping[Any, str], what: str, dialect: str) -> None:
        self.to_bank = dict(table)
        self.from_bank = {code: value for value, code in table.items()}
        self.what, self.dialect = what, dialect

    def encode(self, value: Any) -> str:
        code: str | None = self.to_bank.get(value)
        if code is None:
            raise LocalError(f"the {self.dialect} dialect has no code for {self.what} {value!r}")
        return code

    def decode(self, code: str) -> Any:
        value = self.from_bank.get(code)
        if value is None:
            raise ValueError(f"{code!r} is not a {self.what} of the {self.dialect} dialect")
        return value


class DeclarativeDialect(Dialect):
    """The codec of one :class:`Declaration` (see the module docstring).

    Args:
        declaration: The dialect's declaration; it is checked here.

    Raises:
        DeclarationError: The declaration cannot work.
    """

    def __init__(self, declaration: Declaration) -> None:
        check_declaration(declaration)
        d = self.declaration = declaration
        self.code = d.code
        self.title = d.title
        self.framing = d.framing
        self.encoding = d.encoding.upper()
        self.limits = XmlLimits(max_bytes=d.framing.max_body_bytes)
        self.unsupported = frozenset(PAYLOADS_BY_NAME[name] for name in d.unsupported)
        self.scheme: SignatureScheme = make_scheme(
            d.signature, dialect=d.code, root=d.root, head=d.head, element=d.signature_element
        )
        self.signature_methods = self.scheme.methods
        self.statement_format = d.statement_format
        self._results = _Vocabulary(d.result_codes, "result code", d.code) if d.result_codes else None
        self._types = _Vocabulary(d.message_types, "message type", d.code) if d.message_types else None
        self._plans = {cls: self._plan(cls) for cls in RECORD_TYPES}
        self._head_msg_no = self._plans[Head].by_standard["MsgNo"].name
        self._head_msg_id = self._plans[Head].by_standard["MsgId"].name
        self._head_src = self._plans[Head].by_standard["Src"].name
        self._flag = d.names.get("VoucherFlag", "VoucherFlag")

    # --- plans: per record type, how each field is named and converted ------------------------------------------

    def name_of(self, standard: str) -> str:
        """The bank's element for a standard element name."""
        return self.declaration.names.get(standard, standard)

    def payload_element(self, payload_type: type[Payload]) -> str | None:
        """The payload element in the body, or None in a flat body."""
        if self.declaration.body_layout is BodyLayout.FLAT:
            return None
        return self.declaration.payload_elements.get(payload_type.__name__, payload_type.ELEMENT)

    def _converters(self, element: str, kind: Kind) -> tuple[Callable[[Any], str], Callable[[str], Any]]:
        d = self.declaration
        if element in RESULT_ELEMENTS and self._results is not None:
            return self._results.encode, self._results.decode
        if element == "MsgNo" and self._types is not None:
            return self._types.encode, self._types.decode
        if element == "OriMsgNo" and self._types is not None:
            types = self._types
            # A MsgNo the table does not know passes through both ways (see Declaration.message_types): a
            # reply to a document whose type could not be read names the code the bank sent.
            return (lambda v: types.to_bank.get(v, v)), (lambda t: types.from_bank.get(t, t))
        if kind is Kind.AMOUNT:
            if d.amount_format is AmountFormat.FEN:
                return _format_fen, parse_fen
            return money.format_amount_fen, money.parse_amount_fen
        if kind is Kind.DATE:
            return _date_formatter(d.date_format), _date_parser(d.date_format)
        if kind is Kind.DATETIME:
            return _datetime_formatter(d.datetime_format), _datetime_parser(d.datetime_format)
        if kind is Kind.TIME:
            return _time_formatter(d.time_format), _time_parser(d.time_format)
        if kind is Kind.INT:
            return str, parse_int
        return str, str

    def _plan(self, cls: type[Any]) -> _Record:
        bare = self.declaration.list_layout is ListLayout.BARE
        fields = []
        by_standard: dict[str, _Field] = {}
        for attr, wire in wire_fields(cls):
            if wire.kind is Kind.LIST:
                assert wire.container is not None
                one = _Field(
                    attr,
                    wire.element,
                    self.name_of(wire.element),
                    wire.kind,
                    wire.optional,
                    container=None if bare else self.name_of(wire.container),
                    container_standard=wire.container,
                    item=wire.item,
                    min_items=wire.min_items,
                )
                by_standard[wire.container] = one
            else:
                write, read = self._converters(wire.element, wire.kind)
                one = _Field(attr, wire.element, self.name_of(wire.element), wire.kind, wire.optional, write, read)
            by_standard[wire.element] = one
            fields.append(one)
        return _Record(tuple(fields), by_standard)

    # --- encoding -----------------------------------------------------------------------------------------------

    def _write(self, parent: etree._Element, record: Any) -> None:
        empty = self.declaration.absent is Absent.EMPTY
        for f in self._plans[type(record)].fields:
            value = getattr(record, f.attr)
            if f.kind is Kind.LIST:
                if not value and f.min_items == 0:
                    continue
                holder = parent if f.container is None else etree.SubElement(parent, f.container)
                for item in value:
                    self._write(etree.SubElement(holder, f.name), item)
            elif value is not None:
                assert f.write is not None
                etree.SubElement(parent, f.name).text = f.write(value)
            elif empty:
                etree.SubElement(parent, f.name)

    def to_tree(self, message: Message) -> etree._Element:
        """The unsigned, unindented document tree of a canonical message.

        Raises:
            LocalError: A value the dialect's vocabularies cannot express (a result code or MsgNo that
                is not the standard's).
        """
        d = self.declaration
        root = etree.Element(d.root)
        head = etree.SubElement(root, d.head)
        self._write(head, message.head)
        for name, value in d.head_constants.items():
            etree.SubElement(head, name).text = value
        body = etree.SubElement(root, d.body)
        element = self.payload_element(type(message.body))
        self._write(body if element is None else etree.SubElement(body, element), message.body)
        return root

    def _indented(self, message: Message) -> etree._Element:
        root = self.to_tree(message)
        etree.indent(root, space="  ")
        return root

    def encode_unsigned(self, message: Message) -> bytes:
        """The unsigned document of a message, exactly as :meth:`encode` signs it (golden vectors, samples).

        For a detached scheme these are the very bytes the signature covers.
        """
        return serialize(self._indented(message), self.encoding)

    def _encode(self, message: Message, signer: Signer) -> bytes:
        self.scheme.check_signer(signer)
        return self.scheme.sign_tree(self._indented(message), self.encoding, signer)

    # --- decoding -----------------------------------------------------------------------------------------------

    def decode(self, data: bytes, verifier: Verifier) -> Inbound:
        root = self.scheme.verify(data, verifier, self.limits)
        message, body = self._decode_tree(root)
        digest = hashlib.sha256(etree.tostring(body, method="c14n", exclusive=True)).hexdigest()
        return Inbound(message=message, raw=data, content_digest=digest)

    def _layout(self, root: etree._Element) -> tuple[etree._Element, etree._Element]:
        """The head and body of a document of this dialect.

        Raises:
            UnknownMessageType: Another root element.
            ValidationError: The root does not hold exactly the head and then the body.
        """
        d = self.declaration
        if root.tag != d.root:
            raise UnknownMessageType([Problem(d.root, f"the root element is {root.tag!r}, not {d.root!r}")])
        children = [child.tag for child in root]
        if children != [d.head, d.body] or root.attrib or (root.text or "").strip():
            raise ValidationError([Problem(d.root, f"must hold {d.head} then {d.body} and nothing else")])
        return root[0], root[1]

    def payload_type_of(self, root: etree._Element) -> type[Payload]:
        """Which payload a document carries, from its message type code (and voucher flag for 5201/8202).

        Raises:
            UnknownMessageType: Not this dialect's document, an unknown code, or a type it does not carry.
            ValidationError: The root does not hold the head and the body.
        """
        head, body = self._layout(root)
        where = f"{self.declaration.head}/{self._head_msg_no}"
        code = head.findtext(self._head_msg_no)
        if code is None:
            raise UnknownMessageType([Problem(where, "missing")])
        msg_no = code if self._types is None else self._types.from_bank.get(code)
        if msg_no in VOUCHER_VT_CODES:
            holder = body
            if self.declaration.body_layout is BodyLayout.WRAPPED:
                if len(body) != 1:
                    raise ValidationError([Problem(self.declaration.body, "must hold one payload element")])
                holder = body[0]
            flag = holder.findtext(self._flag)
            payload_type: type[Payload] | None = {"0": Voucher, "1": Receipt}.get(flag or "")
            if payload_type is None:
                path = self._bank_path("Body/Voucher/VoucherFlag", Voucher)
                raise UnknownMessageType([Problem(path, f"must be 0 or 1, not {flag!r}")])
        else:
            payload_type = codec.PAYLOAD_BY_MSG_NO.get(msg_no or "")
        if payload_type is None:
            raise UnknownMessageType([Problem(where, f"unknown message type {code!r}")])
        if payload_type in self.unsupported:
            raise UnknownMessageType(
                [Problem(where, f"the {self.code} dialect does not carry {payload_type.__name__} ({code})")]
            )
        return payload_type

    def _read(self, el: etree._Element, cls: type[Any], path: str, problems: list[Problem]) -> Any:
        """Read the children of `el` into a `cls`; every problem names the bank's element."""
        empty_is_absent = self.declaration.absent is Absent.EMPTY
        if el.attrib:
            problems.append(Problem(path, "attributes are not allowed"))
        if (el.text or "").strip() or any((child.tail or "").strip() for child in el):
            problems.append(Problem(path, "text is not allowed between the fields"))
        children: dict[str, list[etree._Element]] = {}
        for child in el:
            children.setdefault(child.tag, []).append(child)
        if cls is Head:
            for name, value in self.declaration.head_constants.items():
                found = children.pop(name, [])
                if len(found) != 1 or len(found[0]) or (found[0].text or "") != value:
                    problems.append(Problem(f"{path}/{name}", f"must be present once with the value {value!r}"))
        values: dict[str, Any] = {}
        for f in self._plans[cls].fields:
            if f.kind is Kind.LIST:
                assert f.item is not None
                if f.container is None:
                    items = children.pop(f.name, [])
                    at = path
                else:
                    holders = children.pop(f.container, [])
                    at = f"{path}/{f.container}"
                    items = []
                    if len(holders) > 1:
                        problems.append(Problem(at, "appears more than once"))
                    elif not holders and f.min_items:
                        problems.append(Problem(at, "missing"))
                    elif holders:
                        holder = holders[0]
                        items = [child for child in holder if child.tag == f.name]
                        if len(items) != len(holder) or holder.attrib or (holder.text or "").strip():
                            problems.append(Problem(at, f"holds {f.name} elements only"))
                values[f.attr] = tuple(
                    self._read(item, f.item, f"{at}/{f.name}[{n}]", problems) for n, item in enumerate(items, 1)
                )
                continue
            found = children.pop(f.name, [])
            where = f"{path}/{f.name}"
            values[f.attr] = None
            if len(found) > 1:
                problems.append(Problem(where, "appears more than once"))
            elif not found:
                if not f.optional:
                    problems.append(Problem(where, "missing"))
            elif len(found[0]) or found[0].attrib:
                problems.append(Problem(where, "holds text only"))
            else:
                text = found[0].text or ""
                if f.optional and empty_is_absent and text == "":
                    continue
                assert f.read is not None
                try:
                    values[f.attr] = f.read(text)
                except ValueError as exc:
                    problems.append(Problem(where, str(exc)))
        for tag in children:
            problems.append(Problem(f"{path}/{tag}", "unknown element"))
        return cls(**values)

    def _decode_tree(self, root: etree._Element) -> tuple[Message, etree._Element]:
        """Decode a verified (or, for :meth:`check`, stripped) tree; returns the message and the body element.

        Raises:
            UnknownMessageType: See :meth:`payload_type_of`.
            ValidationError: A problem with the document, the standard's schema or its rules.
        """
        d = self.declaration
        payload_type = self.payload_type_of(root)
        head_el, body_el = root[0], root[1]
        problems: list[Problem] = []
        head = self._read(head_el, Head, d.head, problems)
        element = self.payload_element(payload_type)
        holder, at = body_el, d.body
        if element is not None:
            at = f"{d.body}/{element}"
            if [child.tag for child in body_el] != [element] or body_el.attrib or (body_el.text or "").strip():
                raise ValidationError([Problem(d.body, f"must hold one {element} element and nothing else")])
            holder = body_el[0]
        body = self._read(holder, payload_type, at, problems)
        if problems:
            raise ValidationError(problems)
        message = Message(head, body)
        # The standard's schema and rules, on the canonical form: the same refusals as in the standard.
        problems = schema.check(codec.to_tree(message), payload_type) or rules.check(message)
        if problems:
            raise ValidationError([self._bank_problem(p, payload_type) for p in problems])
        return message, body_el

    # --- problems in the bank's names -----------------------------------------------------------------------------

    def _bank_path(self, path: str, payload_type: type[Payload]) -> str:
        """Translate a standard path (`Body/Voucher/DetailList/Detail[2]/PayAmt`) into the bank's names."""
        d = self.declaration
        segments = path.split("/")
        cls: type[Any] | None
        if segments[0] == "Head":
            out, rest, cls = [d.head], segments[1:], Head
        elif segments[0] == "Body":
            out, rest, cls = [d.body], segments[1:], payload_type
            if rest and rest[0] == payload_type.ELEMENT:
                element = self.payload_element(payload_type)
                out += [] if element is None else [element]
                rest = rest[1:]
        else:
            return d.root if path == "Message" else path
        while rest:
            name, bracket, index = rest[0].partition("[")
            f = None if cls is None else self._plans[cls].by_standard.get(name)
            rest = rest[1:]
            if f is None:  # not a field of the record (lxml names what it did not expect): keep it
                out.append(name + bracket + index)
                cls = None
            elif f.kind is Kind.LIST and name == f.container_standard:
                if f.container is not None:
                    out.append(f.container)
                if rest:
                    _item, bracket, index = rest[0].partition("[")
                    out.append(f.name + bracket + index)
                    rest = rest[1:]
                cls = f.item
            else:
                out.append(f.name + bracket + index)
                cls = f.item if f.kind is Kind.LIST else None
        return "/".join(out)

    def _bank_problem(self, problem: Problem, payload_type: type[Payload]) -> Problem:
        path = self._bank_path(problem.field, payload_type)
        standard = problem.field.rsplit("/", 1)[-1].partition("[")[0]
        bank = path.rsplit("/", 1)[-1].partition("[")[0]
        message = problem.message.replace(f"'{standard}'", f"'{bank}'") if standard != bank else problem.message
        return Problem(path, message)

    # --- integrators' tools ---------------------------------------------------------------------------------------

    def peek_head(self, data: bytes) -> RawHead:
        try:
            root = parse_document(data, self.limits)
        except ProtocolError:
            return RawHead()
        if root.tag != self.declaration.root or len(root) == 0 or root[0].tag != self.declaration.head:
            return RawHead()
        head = root[0]
        code = head.findtext(self._head_msg_no) or ""
        msg_no = code if self._types is None else self._types.from_bank.get(code, code)
        return RawHead(
            msg_id=head.findtext(self._head_msg_id) or "", msg_no=msg_no, src=head.findtext(self._head_src) or ""
        )

    def check(self, data: bytes) -> list[Problem]:
        root = parse_document(data, self.limits)
        self.scheme.strip(root)  # checking the signature needs the sender's certificate: verify_document
        try:
            self._decode_tree(root)
        except UnknownMessageType:
            raise
        except ValidationError as exc:
            return list(exc.problems)
        return []

    def sign_document(self, data: bytes, signer: Signer) -> bytes:
        root = parse_document(data, self.limits)
        if root.tag != self.declaration.root:
            raise SignatureProfileViolation(f"not a {self.code} document: the root element is {root.tag!r}")
        return self.scheme.sign_bytes(data, signer, self.limits)

    def verify_document(self, data: bytes, verifier: Verifier) -> None:
        self.scheme.verify(data, verifier, self.limits)


def _format_fen(fen: int) -> str:
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"amounts are integer fen, not {type(fen).__name__}")
    return str(fen)


__all__ = [
    "Absent",
    "AmountFormat",
    "BodyLayout",
    "DateFormat",
    "DateTimeFormat",
    "Declaration",
    "DeclarationError",
    "DeclarativeDialect",
    "ListLayout",
    "TimeFormat",
    "check_declaration",
    "declaration_from_toml",
    "load_declaration",
]
