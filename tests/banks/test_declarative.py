"""Declarative dialects: the declaration format and its errors, the value formats, and problems in the bank's names."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time
from pathlib import Path

import pytest

from banks import bocom, ccb, icbc, registry
from banks.declarative import (
    DateFormat,
    DateTimeFormat,
    Declaration,
    DeclarationError,
    DeclarativeDialect,
    TimeFormat,
    _date_formatter,
    _date_parser,
    _datetime_formatter,
    _datetime_parser,
    _time_formatter,
    _time_parser,
    declaration_from_toml,
    load_declaration,
    msg_nos_of,
    parse_fen,
    parse_int,
)
from banks.dialect import RawHead
from banks.signing import KeyTypeMismatch
from banks.standard import STANDARD_DIALECT
from protocols import samples
from protocols.errors import LocalError, SignatureProfileViolation, UnknownMessageType
from protocols.framing import STANDARD
from protocols.messages import PAYLOAD_TYPES, Message, Reply
from protocols.signature import Signer, Verifier
from tests.banks.support import VECTORS, readdress
from tests.vectors.attacks.generate import Keys

GXNX = Path(__file__).parent.parent.parent / "banks" / "declarations" / "gxnx.toml"

#: The standard itself, written as a declaration: every default is the standard's.
STANDARD_DECLARED = Declaration(
    code="standard_declared",
    title="the standard, declared",
    framing=STANDARD,
    encoding="UTF-8",
    root="Message",
    head="Head",
    body="Body",
    signature="xmldsig-enveloped",
)


def golden(code: str, name: str) -> bytes:
    return (VECTORS / code / f"{name}.xml").read_bytes()


def problems_of(dialect: DeclarativeDialect, document: bytes) -> dict[str, str]:
    return {p.field: p.message for p in dialect.check(document)}


# --- the declarative form covers the standard and tells the banks apart ---------------------------------------


def test_the_standard_declared_is_the_standard(bank_keys: dict[str, Keys]) -> None:
    """A declaration with nothing but the standard's layout speaks the standard byte for byte, both ways."""
    declared = DeclarativeDialect(STANDARD_DECLARED)
    signer, verifier = Signer(bank_keys["rsa"].key, bank_keys["rsa"].cert), Verifier(bank_keys["rsa"].cert)
    for seq, (_name, payload, sender) in enumerate(samples.all_payloads(), 1):
        message = samples.message(payload, sender, seq)
        wire = STANDARD_DIALECT.encode(message, signer)
        assert declared.encode(message, signer) == wire  # RSA PKCS#1 v1.5 is deterministic
        assert declared.decode(wire, verifier).message == message
        assert declared.decode(wire, verifier).content_digest == STANDARD_DIALECT.decode(wire, verifier).content_digest


def axes(d: Declaration) -> set[str]:
    """The axes on which a declaration differs from the standard (STANDARD_DECLARED)."""
    s = STANDARD_DECLARED
    layout = ("root", "head", "body", "body_layout", "list_layout", "absent", "payload_elements", "head_constants")
    checks = {
        "framing": d.framing != s.framing,
        "encoding": d.encoding != s.encoding,
        "layout": any(getattr(d, a) != getattr(s, a) for a in layout),
        "element names": d.names != s.names,
        "amounts": d.amount_format != s.amount_format,
        "dates": (d.date_format, d.datetime_format, d.time_format) != (s.date_format, s.datetime_format, s.time_format),
        "result codes": d.result_codes != s.result_codes,
        "message type codes": d.message_types != s.message_types,
        "signature": (d.signature, d.signature_element) != (s.signature, s.signature_element),
    }
    return {axis for axis, differs in checks.items() if differs}


def difference(a: Declaration, b: Declaration) -> set[str]:
    return axes(a) ^ axes(b) | {
        axis
        for axis, attrs in {
            "framing": ("framing",),
            "encoding": ("encoding",),
            "layout": ("root", "head", "body", "body_layout", "list_layout", "absent", "payload_elements"),
            "element names": ("names",),
            "amounts": ("amount_format",),
            "dates": ("date_format", "datetime_format", "time_format"),
            "result codes": ("result_codes",),
            "message type codes": ("message_types",),
            "signature": ("signature", "signature_element"),
        }.items()
        if any(getattr(a, attr) != getattr(b, attr) for attr in attrs)
    }


BANKS = {"icbc": icbc.DECLARATION, "ccb": ccb.DECLARATION, "bocom": bocom.DECLARATION}


@pytest.mark.parametrize("code", ["icbc", "ccb", "bocom", "gxnx"])
def test_each_bank_differs_from_the_standard_on_at_least_four_axes(code: str) -> None:
    """Issue 4: every bank dialect differs from the standard on four axes or more."""
    dialect = registry.get(code)
    assert isinstance(dialect, DeclarativeDialect)
    assert len(axes(dialect.declaration)) >= 4, axes(dialect.declaration)


@pytest.mark.parametrize(("a", "b"), [("icbc", "ccb"), ("icbc", "bocom"), ("ccb", "bocom")])
def test_the_three_banks_differ_from_each_other(a: str, b: str) -> None:
    """... and the three banks from each other, on four axes or more."""
    assert len(difference(BANKS[a], BANKS[b])) >= 4, difference(BANKS[a], BANKS[b])


def test_framings_are_as_documented() -> None:
    """The framing facts the docs state: 6 ASCII digits, 4 binary bytes, 10 digits counting themselves, 5."""
    frames = {code: registry.get(code).framing for code in ("icbc", "ccb", "bocom", "gxnx")}
    assert [(f.header_kind.value, f.header_width, f.length_includes_header) for f in frames.values()] == [
        ("ascii-decimal", 6, False),
        ("binary-big-endian", 4, False),
        ("ascii-decimal", 10, True),
        ("ascii-decimal", 5, False),
    ]


# --- the declaration file -------------------------------------------------------------------------------------


def test_the_declared_bank_is_the_file_in_the_registry() -> None:
    """gxnx is registered from its declaration file alone, and reads the same as loading the file."""
    dialect = registry.get("gxnx")
    assert isinstance(dialect, DeclarativeDialect)
    assert dialect.declaration == load_declaration(GXNX)
    assert "gxnx.toml" in registry.DECLARATION_FILES


MINIMAL = """
code = "mybank"
title = "My bank"
[framing]
header = "ascii"
width = 8
[document]
encoding = "GBK"
root = "R"
head = "H"
body = "B"
[signature]
scheme = "xmldsig-enveloped"
"""


def test_a_minimal_declaration_is_the_standard_with_other_names() -> None:
    """Everything not declared is the standard's: a declaration needs only its framing, document and scheme."""
    d = declaration_from_toml(MINIMAL)
    assert d.framing == STANDARD and d.encoding == "GBK" and (d.root, d.head, d.body) == ("R", "H", "B")
    assert d.names == {} and d.result_codes == {} and d.message_types == {}


RESULT_CODES = "\n".join(f'{c} = "C{c}"' for c in (90000, 91001, 91002, 91003, 91004, 91005, 91006, 91099))

BROKEN = [
    ("not TOML", "code = ", "(file)"),
    ("unknown top-level key", 'colour = "red"', "colour"),
    ("unknown section key", "[formats]\namount = 'fen'\nprecision = 2", "formats.precision"),
    ("wrong type", "[framing]\nwidth = '8'", "framing.width"),
    ("missing key", "-document.encoding", "document.encoding"),
    ("header kind", "[framing]\nheader = 'hex'\nwidth = 8", "framing.header"),
    ("header width", "[framing]\nheader = 'binary'\nwidth = 3", "framing.width"),
    (
        "inexpressible maximum",
        "[framing]\nheader = 'ascii'\nwidth = 4\nmax_body_bytes = 10000",
        "framing.max_body_bytes",
    ),
    ("encoding", "[document]\nencoding = 'UTF-16'\nroot = 'R'\nhead = 'H'\nbody = 'B'", "document.encoding"),
    ("element name", "[document]\nencoding = 'GBK'\nroot = 'a b'\nhead = 'H'\nbody = 'B'", "document.root"),
    ("same layout names", "[document]\nencoding = 'GBK'\nroot = 'R'\nhead = 'R'\nbody = 'B'", "document"),
    (
        "layout value",
        "[document]\nencoding = 'GBK'\nroot = 'R'\nhead = 'H'\nbody = 'B'\nabsent = 'nil'",
        "document.absent",
    ),
    ("format value", "[formats]\ndate = 'DD.MM.YYYY'", "formats.date"),
    ("not a standard element", "[names]\nPayAmount = 'AMT'", "names.PayAmount"),
    ("bad element name", "[names]\nPayAmt = 'xmlAmt'", "names.PayAmt"),
    ("collision in a record", "[names]\nPayAmt = 'AMT'\nPaySummaryName = 'AMT'", "names.PaySummaryName"),
    ("collision with the layout", "[names]\nRemark = 'B'", "names.Remark"),
    ("name not a string", "[names]\nPayAmt = 1", "names.PayAmt"),
    ("payload type", "[payload_elements]\nVouchr = 'V'", "payload_elements.Vouchr"),
    ("result code missing", "[result_codes]\n90000 = '0'", "result_codes"),
    ("unknown result code", f"[result_codes]\n{RESULT_CODES}\n90001 = 'X'", "result_codes.90001"),
    ("duplicate code", "[result_codes]\n" + RESULT_CODES.replace('"C91099"', '"C90000"'), "result_codes.91099"),
    ("message type missing", "[message_types]\n9005 = 'PING'", "message_types"),
    ("unsupported", "unsupported = ['Nothing']", "unsupported"),
    ("scheme", "[signature]\nscheme = 'pgp'", "signature.scheme"),
    ("detached without element", "[signature]\nscheme = 'rsa-sha256-detached'", "signature.element"),
    ("xmldsig with element", "[signature]\nscheme = 'xmldsig-enveloped'\nelement = 'S'", "signature.element"),
    ("signature element is a field", "[signature]\nscheme = 'ecdsa-p256-detached'\nelement = 'MsgId'", "names.MsgId"),
]


def merge(extra: str) -> str:
    """MINIMAL with the keys of `extra` added or replaced, section by section; `-section.key` removes a key."""
    sections: dict[str, dict[str, str]] = {}
    for text in (MINIMAL, extra):
        current = ""
        for line in text.splitlines():
            if line.startswith("-"):
                section, _, key = line[1:].rpartition(".")
                del sections[f"[{section}]" if section else ""][key]
            elif line.startswith("["):
                current = line
                sections.setdefault(current, {})
            elif line.strip():
                sections.setdefault(current, {})[line.split("=")[0].strip()] = line
    return "\n".join("\n".join([name, *lines.values()]) for name, lines in sections.items())


@pytest.mark.parametrize(("case", "extra", "field"), BROKEN, ids=[b[0] for b in BROKEN])
def test_declaration_errors_name_the_file_and_the_field(case: str, extra: str, field: str) -> None:
    """Every mistake in a declaration file is refused with an error naming the file and the field."""
    text = "code = " if case == "not TOML" else merge(extra)
    with pytest.raises(DeclarationError) as info:
        declaration_from_toml(text, "mybank.toml")
    assert info.value.field == field
    assert str(info.value).startswith(f"mybank.toml: {field}: ")


def test_message_type_rules() -> None:
    """A four-digit code must be its own MsgNo; a code for a type not carried is refused."""
    every = {msg_no: f"T{msg_no}" for t in PAYLOAD_TYPES for msg_no in msg_nos_of(t)}
    base = declaration_from_toml(MINIMAL)
    DeclarativeDialect(dataclasses.replace(base, message_types=every))
    DeclarativeDialect(dataclasses.replace(base, message_types=every | {"5201": "5201"}))
    with pytest.raises(DeclarationError, match=r"message_types\.5201: a four-digit code must be the MsgNo"):
        DeclarativeDialect(dataclasses.replace(base, message_types=every | {"5201": "1001"}))
    with pytest.raises(DeclarationError, match=r"message_types\.7101: is a type the dialect does not carry"):
        DeclarativeDialect(dataclasses.replace(base, message_types=every, unsupported=frozenset({"CardSpending"})))
    with pytest.raises(DeclarationError, match=r"message_types\.1234: is not a MsgNo"):
        DeclarativeDialect(dataclasses.replace(base, message_types=every | {"1234": "X"}))
    flat = "[document]\nbody_layout = 'flat'\n[payload_elements]\nVoucher = 'V'"
    with pytest.raises(DeclarationError, match=r"payload_elements\.Voucher: a flat body"):
        declaration_from_toml(merge(flat))


def test_an_unreadable_declaration_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match=r"missing\.toml: \(file\): cannot read"):
        load_declaration(tmp_path / "missing.toml")


# --- value formats --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "-0", "01", "+1", "1.00", " 1", "1_000", "١٢", "1" * 19])
def test_fen_amounts_are_strict(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fen(text)


def test_fen_amounts() -> None:
    assert [parse_fen(t) for t in ("0", "1", "-250", "999999999999999999")] == [0, 1, -250, 10**18 - 1]


@pytest.mark.parametrize("text", ["", "-1", "01", "+1", " 1", "1_0", "١"])
def test_integers_are_strict(text: str) -> None:
    with pytest.raises(ValueError):
        parse_int(text)


@pytest.mark.parametrize(
    ("fmt", "value", "text", "bad"),
    [
        (DateFormat.COMPACT, date(2026, 2, 3), "20260203", ["2026-02-03", "20260230"]),
        (DateFormat.ISO, date(2026, 2, 3), "2026-02-03", ["20260203", "2026-02-30", "2026-2-3", "2026-02-03Z"]),
    ],
)
def test_date_formats(fmt: DateFormat, value: date, text: str, bad: list[str]) -> None:
    assert _date_formatter(fmt)(value) == text and _date_parser(fmt)(text) == value
    for wrong in bad:
        with pytest.raises(ValueError):
            _date_parser(fmt)(wrong)


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (DateTimeFormat.COMPACT, "20261123103001"),
        (DateTimeFormat.ISO_SPACE, "2026-11-23 10:30:01"),
        (DateTimeFormat.ISO_T, "2026-11-23T10:30:01"),
    ],
)
def test_datetime_formats(fmt: DateTimeFormat, text: str) -> None:
    value = datetime(2026, 11, 23, 10, 30, 1)
    assert _datetime_formatter(fmt)(value) == text and _datetime_parser(fmt)(text) == value
    for wrong in (text.replace("23", "31", 1), text + "Z", text[:-3]):
        with pytest.raises(ValueError):
            _datetime_parser(fmt)(wrong)


@pytest.mark.parametrize(("fmt", "text"), [(TimeFormat.COMPACT, "090705"), (TimeFormat.COLON, "09:07:05")])
def test_time_formats(fmt: TimeFormat, text: str) -> None:
    assert _time_formatter(fmt)(time(9, 7, 5)) == text and _time_parser(fmt)(text) == time(9, 7, 5)
    for wrong in ("24:00:00", "9:07:05", "090760"):
        with pytest.raises(ValueError):
            _time_parser(fmt)(wrong)


# --- problems name the bank's elements ------------------------------------------------------------------------

ICBC = icbc.DIALECT
CCB = ccb.DIALECT


def test_a_business_rule_problem_names_the_banks_element() -> None:
    """The standard's rules run on the canonical form, but the problem names the bank's element."""
    doc = golden("icbc", "5201-voucher").replace(b"<TRAN_AMT>100000.00</TRAN_AMT>", b"<TRAN_AMT>100000.01</TRAN_AMT>")
    problems = problems_of(ICBC, doc)
    assert list(problems) == ["MSG/PAY_VOUCHER/TRAN_AMT"]
    assert "details add up to" in problems["MSG/PAY_VOUCHER/TRAN_AMT"]


def test_a_schema_problem_names_the_banks_element() -> None:
    """A field of the wrong form (by the standard's schema) is named with the bank's element, also in the text."""
    long_name = "某" * 121
    doc = golden("icbc", "5201-voucher").decode("gbk").replace("广西某某建设有限公司", long_name).encode("gbk")
    problems = problems_of(ICBC, doc)
    assert list(problems) == ["MSG/PAY_VOUCHER/RCV_ACCT_NAME"]
    assert "'RCV_ACCT_NAME'" in problems["MSG/PAY_VOUCHER/RCV_ACCT_NAME"] and "PayeeAcctName" not in str(problems)


def test_list_item_problems_are_indexed_in_the_banks_names() -> None:
    doc = golden("icbc", "5201-voucher").replace(b"<SEQ_NO>2</SEQ_NO>", b"<SEQ_NO>1</SEQ_NO>")
    assert "MSG/PAY_VOUCHER/DETAILS/DETAIL/SEQ_NO" in problems_of(ICBC, doc)
    doc = golden("ccb", "5201-voucher").replace(b"<amount>2500000</amount>", b"<amount>25000.00</amount>")
    assert problems_of(CCB, doc) == {"body/detail[2]/amount": "not an amount in fen: '25000.00'"}


def test_structural_problems_are_each_named() -> None:
    """Missing, unknown, repeated elements, attributes, stray text and a wrong head constant, all at once."""
    doc = golden("icbc", "5201-voucher")
    doc = doc.replace(b"<PURPOSE>", b"<COLOUR>red</COLOUR><PURPOSE>", 1)
    doc = doc.replace(b"<VT_CODE>5201</VT_CODE>", b"", 1)
    doc = doc.replace(b"<APP>GKZF</APP>", b"<APP>OTHER</APP>", 1)
    doc = doc.replace(b"<ST_YEAR>2026</ST_YEAR>", b"<ST_YEAR>2026</ST_YEAR><ST_YEAR>2026</ST_YEAR>", 1)
    doc = doc.replace(b"<AGENCY_CODE>", b'<AGENCY_CODE x="1">', 1)
    doc = doc.replace(b"<DETAILS>", b"<DETAILS>junk", 1)
    problems = problems_of(ICBC, doc)
    assert problems == {
        "HEAD/APP": "must be present once with the value 'GKZF'",
        "MSG/PAY_VOUCHER/COLOUR": "unknown element",
        "MSG/PAY_VOUCHER/VT_CODE": "missing",
        "MSG/PAY_VOUCHER/ST_YEAR": "appears more than once",
        "MSG/PAY_VOUCHER/AGENCY_CODE": "holds text only",
        "MSG/PAY_VOUCHER/DETAILS": "holds DETAIL elements only",
    }


def test_flat_body_bare_lists_and_empty_optionals() -> None:
    """ccb: fields directly in the body, list items without a container and in any order among the fields,
    and an empty optional element read as absent."""
    doc = golden("ccb", "8202-card-repayment").decode("gb18030")
    assert "<details>" not in doc and doc.count("<detail>") == 2 and "<remark/>" in doc
    moved = doc.replace("<purpose>公务卡还款</purpose>", "").replace("</body>", "<purpose>公务卡还款</purpose></body>")
    assert CCB.check(moved.encode("gb18030")) == []


def test_empty_optional_elements_are_refused_where_the_dialect_omits_them() -> None:
    doc = golden("icbc", "5201-voucher").replace(b"<EXP_ECO_CODE>30213</EXP_ECO_CODE>", b"<EXP_ECO_CODE/>")
    assert list(problems_of(ICBC, doc)) == ["MSG/PAY_VOUCHER/EXP_ECO_CODE"]


def test_unknown_or_uncarried_message_types_and_foreign_documents() -> None:
    """An unknown code, a type the dialect does not carry, or another dialect's document cannot be read."""
    with pytest.raises(UnknownMessageType, match="unknown message type 'PAY999'"):
        ICBC.check(golden("icbc", "5201-voucher").replace(b"PAY001", b"PAY999"))
    gxnx = registry.get("gxnx")
    card = golden("bocom", "7101-card-spending")
    with pytest.raises(UnknownMessageType, match="root element is 'Document', not 'ebank'"):
        gxnx.check(card)
    spending = golden("gxnx", "9005-ping").replace(b"GX9005", b"GX7101")
    with pytest.raises(UnknownMessageType, match="unknown message type 'GX7101'"):
        gxnx.check(spending)
    with pytest.raises(UnknownMessageType, match=r"VOUCHER_FLAG.*must be 0 or 1"):
        ICBC.check(golden("icbc", "5201-voucher").replace(b"<VOUCHER_FLAG>0<", b"<VOUCHER_FLAG>2<"))


def test_reply_ori_msg_no_uses_the_banks_codes() -> None:
    """A reply's OriMsgNo travels as the bank's transaction code; one the table does not know passes through."""
    for ori, wire in (("5201", b"<ORI_MSG_NO>PAY001</ORI_MSG_NO>"), ("", b"<ORI_MSG_NO></ORI_MSG_NO>")):
        message = samples.message(Reply(ori_msg_no=ori, result=90000, add_word="ok"), "gateway")
        assert wire in ICBC.encode_unsigned(message)
    unknown = samples.message(Reply(ori_msg_no="XYZ999", result=91002, add_word="?"), "gateway")
    document = ICBC.encode_unsigned(unknown)
    assert b"<ORI_MSG_NO>XYZ999</ORI_MSG_NO>" in document and b"<RET_CODE>9002</RET_CODE>" in document


def test_values_outside_the_vocabularies_cannot_be_encoded() -> None:
    bad = samples.message(Reply(ori_msg_no="5201", result=12345, add_word=""), "gateway")
    with pytest.raises(LocalError, match="no code for result code 12345"):
        ICBC.encode_unsigned(bad)
    message = samples.message(samples.direct_voucher(), "gateway")
    odd = Message(dataclasses.replace(message.head, msg_no="1234"), message.body)
    with pytest.raises(LocalError, match="no code for message type '1234'"):
        ICBC.encode_unsigned(odd)


def test_peek_head_reads_untrusted_heads() -> None:
    """peek_head gives the canonical MsgNo of a known code, the raw code of an unknown one, nothing otherwise."""
    doc = golden("icbc", "5201-voucher")
    assert ICBC.peek_head(doc) == RawHead("20261123450100000008", "5201", "450100000000")
    assert ICBC.peek_head(doc.replace(b"PAY001", b"PAY999")).msg_no == "PAY999"
    assert ICBC.peek_head(golden("ccb", "5201-voucher")) == RawHead()
    assert ICBC.peek_head(b"not xml") == RawHead()


# --- integrators' tools ---------------------------------------------------------------------------------------


def test_sign_document_refuses_signed_foreign_or_wrong_key_input(bank_keys: dict[str, Keys]) -> None:
    rsa = Signer(bank_keys["rsa"].key, bank_keys["rsa"].cert)
    ec = Signer(bank_keys["ec"].key, bank_keys["ec"].cert)
    for dialect, signer in ((ICBC, rsa), (CCB, ec), (bocom.DIALECT, rsa)):
        document = golden(dialect.code, "9005-ping")
        signed = dialect.sign_document(document, signer)
        with pytest.raises(SignatureProfileViolation, match="already signed"):
            dialect.sign_document(signed, signer)
        with pytest.raises(SignatureProfileViolation, match="not a"):
            dialect.sign_document(golden("gxnx", "9005-ping"), signer)
    with pytest.raises(KeyTypeMismatch, match=r"ccb dialect signs with ecdsa-p256-detached.*RSA"):
        CCB.sign_document(golden("ccb", "9005-ping"), rsa)
    with pytest.raises(SignatureProfileViolation, match="end tag"):
        ICBC.sign_document(golden("icbc", "9005-ping").replace(b"</HEAD>", b"</HEAD >"), rsa)


def test_a_readdressed_sample_is_what_the_vectors_hold() -> None:
    """The golden vectors address each bank by its own code (the samples are ICBC's)."""
    assert readdress(samples.message(samples.receipt(), "bank"), "CCB").head.src == "CCB"
    assert b"<sender>CCB</sender>" in golden("ccb", "5201-receipt")
