"""Writes docs/banks/<code>.md for every registered dialect from its declaration (`python -m tests.banks.docgen`).

Everything in those pages that can drift is generated: the comparison with the standard, the framing, the
message type and result code tables, the mapping element by element, what the dialect does not carry, its
statement file (with an example written by `simulators/statements.py`), and a signed sample of every message
type. The samples are signed with throwaway keys made for the run (nothing secret is committed, and the values
verify with nothing anyone holds); `test_docs.py` regenerates the pages and compares them with the committed
ones, signature values aside.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Final

from banks import registry
from banks.declarative import (
    Absent,
    AmountFormat,
    BodyLayout,
    Declaration,
    DeclarativeDialect,
    ListLayout,
    msg_nos_of,
)
from banks.dialect import Dialect
from banks.signing.detached import DetachedSignature
from banks.standard import STANDARD_DIALECT
from protocols.errors import ResultCode
from protocols.framing import STANDARD, FrameSpec, HeaderKind, encode_header
from protocols.messages import PAYLOAD_TYPES, Head, Kind, Payload, StatementDetail, wire_fields
from protocols.signature import ECDSA_SHA256, RSA_SHA256, Signer
from simulators import statements
from tests.banks.support import bank_code, keys_for, sample_messages
from tests.vectors.attacks.generate import Keys, make_keys

DOCS: Final = Path(__file__).parent.parent.parent / "docs" / "banks"

#: The standard written as a declaration (every default is the standard's); it speaks the standard byte for byte.
STANDARD_DECLARED: Final = Declaration(
    code="standard",
    title="Exchange standard v1 (PROTOCOL.md)",
    description="""\
The exchange standard itself, as PROTOCOL.md defines it: a bank without a dialect of its own speaks exactly
this. It is listed here as the reference every other dialect is compared with; PROTOCOL.md is the
specification.""",
    framing=STANDARD,
    encoding="UTF-8",
    root="Message",
    head="Head",
    body="Body",
    signature="xmldsig-enveloped",
)

BANK_NAMES: Final = {
    "standard": "",
    "icbc": "中国工商银行 (Industrial and Commercial Bank of China)",
    "ccb": "中国建设银行 (China Construction Bank)",
    "bocom": "交通银行 (Bank of Communications)",
    "gxnx": "广西农村信用社 (Guangxi Rural Credit Union)",
}

RESULT_MEANINGS: Final = {
    90000: "accepted / success",
    91001: "malformed frame or XML",
    91002: "schema or field validation failed",
    91003: "signature missing or invalid",
    91004: "sender unknown or not the TLS peer",
    91005: "MsgId reused with different content",
    91006: "business rule refused",
    91099: "temporary failure, resend",
}

KEY_TYPES: Final = {RSA_SHA256: "RSA", ECDSA_SHA256: "ECDSA P-256"}


def declaration_of(dialect: Dialect) -> Declaration:
    if isinstance(dialect, DeclarativeDialect):
        return dialect.declaration
    assert dialect is STANDARD_DIALECT
    return STANDARD_DECLARED


def describe_framing(spec: FrameSpec) -> str:
    kind = "ASCII decimal digits" if spec.header_kind is HeaderKind.ASCII_DECIMAL else "bytes, big-endian binary"
    counts = "the header and the body" if spec.length_includes_header else "the body only"
    return f"{spec.header_width} {kind}, counting {counts}; bodies of at most {spec.max_body_bytes:,} bytes"


def describe_header(spec: FrameSpec, body_bytes: int) -> str:
    header = encode_header(spec, body_bytes)
    if spec.header_kind is HeaderKind.ASCII_DECIMAL:
        return f"`{header.decode()}`"
    return "`" + " ".join(f"{b:02x}" for b in header) + "` (hex)"


def layout(d: Declaration) -> str:
    payload = "…fields…" if d.body_layout is BodyLayout.FLAT else "<payload>…</payload>"
    return f"`<{d.root}><{d.head}>…</{d.head}><{d.body}>{payload}</{d.body}></{d.root}>`"


def describe_signature(d: Declaration) -> str:
    if d.signature == "xmldsig-enveloped":
        return "enveloped XMLDSig, PROTOCOL.md §6 (`ds:Signature` as the root's last child)"
    algorithm = "RSA-SHA256 PKCS#1 v1.5" if d.signature == "rsa-sha256-detached" else "ECDSA P-256 SHA-256, raw r‖s"
    return f"`{d.signature}`: {algorithm} over the document, base64 in `{d.head}/{d.signature_element}`"


def format_of(d: Declaration, element: str, kind: Kind) -> str:
    if element == "Result" and d.result_codes:
        return "result code (table above)"
    if element in ("MsgNo", "OriMsgNo") and d.message_types:
        return "message type code (table above)" + ("; an unknown one passes as is" if element == "OriMsgNo" else "")
    if kind is Kind.AMOUNT:
        return "yuan, two decimals" if d.amount_format is AmountFormat.YUAN else "integer fen"
    return {
        Kind.DATE: d.date_format.value,
        Kind.DATETIME: d.datetime_format.value,
        Kind.TIME: d.time_format.value,
        Kind.INT: "integer",
        Kind.TEXT: "text",
    }.get(kind, "")


def mapping_table(dialect: DeclarativeDialect) -> list[str]:
    """One table per record type: the standard's element, the bank's, the format, whether optional."""
    d = dialect.declaration
    lines: list[str] = []
    queue: list[type[Any]] = [Head, *(t for t in PAYLOAD_TYPES if dialect.supports(t))]
    seen: set[type[Any]] = set()
    while queue:
        cls = queue.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        where = ""
        if cls is Head:
            where = f" (in `{d.head}`)"
        elif issubclass(cls, Payload):
            element = dialect.payload_element(cls)
            where = f" (in `{d.body}`)" if element is None else f" (`{d.body}/{element}`)"
        lines += [
            "",
            f"### {cls.__name__}{where}",
            "",
            "| standard | this dialect | format | optional |",
            "|---|---|---|---|",
        ]
        for _attr, wire in wire_fields(cls):
            if wire.kind is Kind.LIST:
                assert wire.container is not None and wire.item is not None
                container = d.names.get(wire.container, wire.container)
                item = d.names.get(wire.element, wire.element)
                bank = f"`{item}` repeated" if d.list_layout is ListLayout.BARE else f"`{container}/{item}`"
                lines.append(
                    f"| `{wire.container}/{wire.element}` | {bank} | list of {wire.item.__name__} "
                    f"(at most {wire.max_items:,}) | {'yes' if wire.min_items == 0 else 'no'} |"
                )
                queue.append(wire.item)
            else:
                bank = d.names.get(wire.element, wire.element)
                optional = "yes" if wire.optional else "no"
                if wire.optional and d.absent is Absent.EMPTY:
                    optional = "yes (empty element)"
                lines.append(f"| `{wire.element}` | `{bank}` | {format_of(d, wire.element, wire.kind)} | {optional} |")
        if cls is Head:
            for name, value in d.head_constants.items():
                lines.append(f"| – | `{name}` | always `{value}` | no |")
            if d.signature_element:
                lines.append(f"| – | `{d.signature_element}` | base64 signature value (last) | no |")
    return lines


def render(dialect: Dialect, keys: Keys) -> str:
    """The whole page of one dialect, with samples signed by `keys`."""
    d = declaration_of(dialect)
    twin = dialect if isinstance(dialect, DeclarativeDialect) else DeclarativeDialect(d)
    s = STANDARD_DECLARED
    signer = Signer(keys.key, keys.cert, include_cert=False)
    name = BANK_NAMES.get(d.code, d.code)
    out = [f"# `{d.code}`: {d.title}", ""]
    if d.code != "standard":
        out += [
            f"> **Our model, not the bank's specification.** This dialect models how a front-end such as "
            f"{name}'s differs on the wire from the exchange standard (DOMAIN.md, \"How bank front-end interfaces "
            "differ on the wire\"). It is not the bank's official interface specification and was not written from "
            "it; a real connection starts from the bank's own documents.",
            "",
        ]
    out += [d.description, "", "This page is generated by `python -m tests.banks.docgen`; do not edit it by hand.", ""]
    out += ["## At a glance", "", "| | this dialect | the standard |", "|---|---|---|"]

    def row(label: str, mine: str, standard: str) -> None:
        out.append(f"| {label} | {'**' + mine + '**' if mine != standard else mine} | {standard} |")

    row("framing", describe_framing(d.framing), describe_framing(s.framing))
    row("encoding", d.encoding, s.encoding)
    row("layout", layout(d), layout(s))
    row(
        "payload elements",
        "none (flat body)"
        if d.body_layout is BodyLayout.FLAT
        else ("own (table below)" if d.payload_elements else "the standard's"),
        "the standard's",
    )
    row("head constants", ", ".join(f"`{k}` = `{v}`" for k, v in d.head_constants.items()) or "none", "none")
    row("element names", "own (tables below)" if d.names else "the standard's", "the standard's")
    row("lists", f"{d.list_layout.value}", s.list_layout.value)
    row("absent optional fields", "left out" if d.absent is Absent.OMIT else "empty element", "left out")
    row("amounts", format_of(d, "PayAmt", Kind.AMOUNT), format_of(s, "PayAmt", Kind.AMOUNT))
    row("dates", d.date_format.value, s.date_format.value)
    row("date-times", d.datetime_format.value, s.datetime_format.value)
    row("times", d.time_format.value, s.time_format.value)
    row("result codes", "own (table below)" if d.result_codes else "PROTOCOL.md §4", "PROTOCOL.md §4")
    row("message type codes", "own (table below)" if d.message_types else "MsgNo", "MsgNo")
    row("signature", describe_signature(d), describe_signature(s))
    row(
        "key types",
        " or ".join(name for m, name in KEY_TYPES.items() if m in dialect.signature_methods),
        "RSA or ECDSA P-256",
    )
    row("not carried", ", ".join(sorted(d.unsupported)) or "nothing", "nothing")

    voucher = dict(sample_messages(dialect))["5201-voucher"]
    body = dialect.encode(voucher, signer)
    out += ["", "## Framing", "", describe_framing(d.framing) + "."]
    out += [
        f"The signed 5201 voucher sample below is {len(body):,} bytes, so its frame starts with "
        f"{describe_header(d.framing, len(body))} and the document follows. A larger header or a body above the "
        "maximum is a framing error (91001): the connection is closed after the reply."
    ]
    out += ["", "## Encoding", ""]
    every = d.encoding.upper() in ("UTF-8", "GB18030")
    out += [
        f"Documents are {d.encoding} and say so in their XML declaration"
        + (
            f" ({d.encoding} represents every character)."
            if every
            else f"; characters {d.encoding} cannot represent travel as character references (`&#8364;`)."
        )
        + f" The samples below are shown as text; on the wire they are {d.encoding} bytes."
    ]
    out += ["", "## Signature", "", signature_section(d)]

    out += ["", "## Message types", "", "| MsgNo | payload | code in this dialect | payload element |"]
    out += ["|---|---|---|---|"]
    for payload_type in PAYLOAD_TYPES:
        for msg_no in msg_nos_of(payload_type):
            code = d.message_types.get(msg_no, msg_no)
            element = twin.payload_element(payload_type)
            shown = "(none: flat body)" if element is None else f"`{element}`"
            if not dialect.supports(payload_type):
                code, shown = "**not carried**", "–"
            flag = {"Voucher": " (VoucherFlag 0)", "Receipt": " (VoucherFlag 1)"}.get(payload_type.__name__, "")
            label = payload_type.__name__ + flag
            out.append(f"| {msg_no} | {label} | `{code}` | {shown} |".replace("`**not carried**`", "**not carried**"))
    out += ["", "## Result codes", "", "| Result (PROTOCOL.md §4) | meaning | code in this dialect |", "|---|---|---|"]
    for result in ResultCode:
        code = d.result_codes.get(int(result), str(int(result)))
        out.append(f"| {int(result)} | {RESULT_MEANINGS[int(result)]} | `{code}` |")
    out += ["", "## Mapping, element by element"]
    out += [
        "",
        "Each canonical field (protocols/messages.py) and the element that carries it. Input may give the fields of "
        "a record in any order; the standard's schema and business rules apply to the values, and a problem names "
        "this dialect's element.",
    ]
    out += mapping_table(twin)
    out += ["", "## What it does not carry", ""]
    if d.unsupported:
        out += [
            f"{', '.join(sorted(d.unsupported))}. Encoding such a message raises `banks.dialect.Unsupported`, so the "
            "gateway refuses to send it to this bank with a clear error; a document of such a type from the bank "
            "is refused as an unknown message type (91002)."
        ]
    else:
        out += ["Nothing: every message type of the standard maps to and from this dialect."]
    out += ["", "## Statement file", "", *statement_section(dialect)]
    out += ["", "## Signed samples", ""]
    out += [
        "One sample of every message type (protocols/samples.py), addressed between the gateway "
        f"(`450100000000`) and the bank (`{bank_code(dialect)}`), signed with a throwaway "
        f"{'RSA' if keys.kind == 'rsa' else 'ECDSA P-256'} key. The unsigned documents are the golden vectors "
        f"under `tests/vectors/{d.code}/`."
    ]
    for sample_name, message in sample_messages(dialect):
        doc = dialect.encode(message, signer).decode(d.encoding)
        out += ["", f"### {sample_name}", "", "```xml", doc.rstrip("\n"), "```"]
    return "\n".join(out) + "\n"


STATUS_MEANINGS: Final = {0: "paid", 1: "returned", 2: "refused"}
FIELD_MEANINGS: Final = {
    "vt_code": "`VtCode`",
    "voucher_no": "`VoucherNo`",
    "serial": "`XAgentBusinessNo` (the bank's serial)",
    "pay_date": "`XPayDate`",
    "amount": "`Amt` (negative for a return)",
    "status": "`ProState` (by the status codes above)",
    "payee_acct_no": "`PayeeAcctNo`",
    "": "ignored (the payee's name)",
}


def example_lines(dialect: Dialect) -> list[StatementDetail]:
    """A payment, a return and a refusal, as the dialect's bank lists them."""
    serial = f"{bank_code(dialect)}20261123"
    day = date(2026, 11, 23)
    rows = [
        ("5201", "5201450100000123", 12_500_000, 0, "6222020000000000123"),
        ("2252", f"2252{serial}00000002", -2_500_000, 1, "6222020000000000123"),
        ("5201", "5201450100000124", 1_234_500, 2, "6217000000000000789"),
    ]
    return [
        StatementDetail(
            vt_code=vt_code,
            voucher_no=voucher_no,
            x_agent_business_no=f"{serial}{n:08d}",
            x_pay_date=day,
            amt_fen=fen,
            pro_state=state,
            payee_acct_no=payee,
        )
        for n, (vt_code, voucher_no, fen, state, payee) in enumerate(rows, 1)
    ]


def statement_section(dialect: Dialect) -> list[str]:
    """How the bank delivers its end-of-day statement as a file (`Dialect.statement_format`)."""
    source = dialect.statement_format
    out = [
        "How the bank delivers its end-of-day statement (对账单) as a file, the dialect's `statement_format` "
        "(banks/statement_format.py): `tgw reconcile --statement FILE` reads this format unless `--format` says "
        "otherwise, and the simulated bank writes it (`simulators/statements.py`)."
    ]
    if source.description:
        out += ["", source.description]
    if source.kind == "4006":
        return [
            *out,
            "",
            "**The standard's 4006 statement document** (PROTOCOL.md §5.5): a `<Message>` whose `Body` holds the "
            "`Statement`, or a bare `<Statement>`, in the **standard's** element names and UTF-8 (as the "
            "4006-statement sample of docs/banks/standard.md), one file per page; every page carries the whole "
            "statement's `AllNum` and `AllAmt`. `tgw reconcile --statement p1.xml --statement p2.xml …` takes "
            "the pages in any order and refuses a statement with a page missing.",
        ]
    if source.kind == "camt053":
        return [
            *out,
            "",
            "**ISO 20022 camt.053** (`BkToCstmrStmt`, any version `camt.053.001.NN`; the simulated bank writes "
            'version 08), mapped onto statement lines as docs/reconciliation.md ("ISO 20022 camt.053") '
            "describes: the voucher type in `Ntry/BkTxCd/Prtry/Cd`, the voucher number in `EndToEndId`, the serial "
            "in `AcctSvcrRef`, `BOOK`+`DBIT` paid, `BOOK`+`CRDT` returned, `INFO`+`DBIT` refused; the opening and "
            "closing balances must add up.",
        ]
    fmt = source.text
    assert fmt is not None
    if fmt.widths is not None:
        layout = f"fixed-width, {sum(fmt.widths)} bytes at most (widths in bytes of {fmt.encoding})"
    else:
        shown = fmt.delimiter.replace("|", "\\|")  # a pipe inside a table cell, even in code, is escaped
        layout = f"delimited by `{shown}`" + (", spaces around values ignored" if fmt.strip else "")
    codes = ", ".join(f"`{code}` {STATUS_MEANINGS[state]} ({state})" for code, state in fmt.status_codes)
    summary = "none"
    if fmt.summary is not None:
        s = fmt.summary
        parts = [f"count in column {s.count_column}", f"total in column {s.amount_column}"]
        if s.check_date_column is not None:
            parts.insert(0, f"check date in column {s.check_date_column}")
        summary = f"{s.place} line {s.index}: " + ", ".join(parts) + " (columns from 0"
        summary += f"; widths {', '.join(map(str, s.widths))})" if s.widths is not None else ")"
    out += [
        "",
        f"**A text file**, layout `{fmt.name}`:",
        "",
        "| | |",
        "|---|---|",
        f"| encoding | {fmt.encoding} |",
        f"| layout | {layout} |",
        f"| header lines | {fmt.header_lines} |",
        f"| trailer lines | {fmt.trailer_lines} |",
        f"| summary | {summary} |",
        f"| amounts | {'yuan, two decimals' if fmt.amount_unit == 'yuan' else 'integer fen'} |",
        f"| dates | {fmt.date_format} |",
        f"| status codes | {codes} |",
    ]
    if fmt.vt_code:
        out.append(f"| VtCode | `{fmt.vt_code}` for every line |")
    out += [
        "",
        "| column | carries |" + (" width (bytes) |" if fmt.widths else ""),
        "|---|---|" + ("---|" if fmt.widths else ""),
    ]
    for n, name in enumerate(fmt.columns):
        width = f" {fmt.widths[n]} |" if fmt.widths is not None else ""
        out.append(f"| {n} | {FIELD_MEANINGS[name]} |{width}")
    example = statements.render(source, date(2026, 11, 23), example_lines(dialect), bank=bank_code(dialect))[0]
    out += [
        "",
        f"A payment, a return and a refusal as the simulated bank writes them (shown decoded; on disk {fmt.encoding}):",
        "",
        "```text",
        example.decode(fmt.encoding).rstrip("\n"),
        "```",
    ]
    return out


def signature_section(d: Declaration) -> str:
    if d.signature == "xmldsig-enveloped":
        return f"""\
The standard's profile (PROTOCOL.md §6) on this dialect's root: exactly one enveloped `ds:Signature` as the last
child of `{d.root}`, one `Reference URI=""`, transforms enveloped-signature then exclusive C14N, SHA-256, and
RSA-SHA256 or ECDSA-SHA256 by the key. It is verified with the certificate pinned for the sender only. A bank's
developers can check their signatures independently:

```sh
tgw message sign   --dialect {d.code} --key bank-key.pem --cert bank-cert.pem unsigned.xml -o signed.xml
tgw message verify --dialect {d.code} --cert bank-cert.pem signed.xml
xmlsec1 --verify --pubkey-cert-pem bank-cert.pem --enabled-key-data rsa,ecdsa --enabled-reference-uris empty signed.xml
```"""
    ec = d.signature == "ecdsa-p256-detached"
    value = (
        "the raw r‖s of ECDSA P-256 with SHA-256 (64 bytes, not DER)"
        if ec
        else "RSA-SHA256 PKCS#1 v1.5 (deterministic)"
    )
    convert = (
        "\n# openssl writes ECDSA values in DER: convert them to the raw r||s (32 + 32 bytes) before base64"
        if ec
        else ""
    )
    key = "an ECDSA P-256 key: an RSA key is refused" if ec else "an RSA key: an ECDSA key is refused"
    return f"""\
`{d.signature}` (banks/signing/): {value}, over the exact bytes of the document **without** the signature
element, carried base64 as the last element of `{d.head}`: `<{d.signature_element}>…</{d.signature_element}>`.
Head and body are both covered. The receiver checks there is exactly one such element, in its place, holding
base64 only; cuts it out of the bytes; verifies the value over the rest with the certificate pinned for the sender;
and decodes the parse of exactly those verified bytes, so nothing unsigned is ever read. Signing needs {key}
(`tgw init --key-type {"ec" if ec else "rsa"}`).

Because the signed bytes are the unsigned document byte for byte, a bank's developers can sign and check with
openssl alone:

```sh
openssl dgst -sha256 -sign bank-key.pem -out value.bin unsigned.xml{convert}
# insert <{d.signature_element}>$(base64 -w0 value.bin)</{d.signature_element}> right after the last element of {d.head}
tgw message verify --dialect {d.code} --cert bank-cert.pem signed.xml
```"""


def mask(page: str, dialect: Dialect) -> str:
    """A page with its signature values (which change with every run's keys) blanked out."""
    page = re.sub(r"<SignatureValue>[^<]*</SignatureValue>", "<SignatureValue/>", page)
    scheme = getattr(dialect, "scheme", None)
    if isinstance(scheme, DetachedSignature):
        e = re.escape(scheme.element)
        page = re.sub(f"<{e}>[A-Za-z0-9+/=]+</{e}>", f"<{scheme.element}/>", page)
    return page


def fresh_keys() -> dict[str, Keys]:
    return {kind: make_keys(kind, f"throwaway-{kind}") for kind in ("rsa", "ec")}


def main() -> None:
    keys = fresh_keys()
    DOCS.mkdir(parents=True, exist_ok=True)
    for code, dialect in registry.DIALECTS.items():
        (DOCS / f"{code}.md").write_text(render(dialect, keys_for(dialect, keys)), encoding="utf-8")
        print(f"wrote {DOCS / code}.md")


if __name__ == "__main__":
    main()
