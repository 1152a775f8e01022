"""Conformance of every registered dialect: the same suite for the standard, the three banks and the declared one.

Parametrized over :data:`banks.registry.DIALECTS`, so a new bank (docs/banks/adding-a-bank.md) is tested the
moment it is registered: round trips of every canonical message type (hypothesis), golden vectors, the framing
triple, the attack corpus adapted to the dialect's signature scheme, identity (Src/Des carried faithfully and
signed), and the dialect's key-type rules.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from banks import registry
from banks.declarative import DeclarativeDialect
from banks.dialect import Dialect, Unsupported
from banks.signing import KeyTypeMismatch
from banks.signing.detached import DetachedSignature
from protocols import codec, samples
from protocols.errors import (
    ForbiddenXml,
    FrameTooLarge,
    ProtocolError,
    SignatureInvalid,
    SignatureMissing,
    SignatureProfileViolation,
    XmlError,
    XmlLimitExceeded,
)
from protocols.framing import FrameDecoder, encode_frame, encode_header
from protocols.messages import PAYLOAD_TYPES, Message, Payload
from protocols.signature import ECDSA_SHA256, RSA_SHA256, Signer, Verifier
from tests.banks.support import DECLARED, VECTORS, bank_code, keys_for, readdress, sample_messages, signer_verifier
from tests.strategies import PAYLOADS, messages
from tests.vectors.attacks.generate import Keys

DIALECTS = list(registry.DIALECTS.values())
CODES = [d.code for d in DIALECTS]
ATTACK_FILES = Path(__file__).parent.parent / "vectors" / "attacks"

dialects = pytest.mark.parametrize("dialect", DIALECTS, ids=CODES)


def voucher_message(dialect: Dialect) -> Message:
    """The sample 5201 direct payment voucher, from the gateway to the dialect's bank."""
    return readdress(samples.message(samples.direct_voucher(), "gateway"), bank_code(dialect))


def unsigned(dialect: Dialect, message: Message) -> bytes:
    """The unsigned document of a message in `dialect`."""
    if isinstance(dialect, DeclarativeDialect):
        return dialect.encode_unsigned(message)
    return codec.encode(message)


def detached_element(dialect: Dialect) -> str | None:
    """The head element carrying a detached signature, or None for XMLDSig."""
    scheme = getattr(dialect, "scheme", None)
    return scheme.element if isinstance(scheme, DetachedSignature) else None


def body_name(dialect: Dialect) -> str:
    return dialect.declaration.body if isinstance(dialect, DeclarativeDialect) else "Body"


# --- round trips ----------------------------------------------------------------------------------------------


def test_every_payload_type_has_a_strategy() -> None:
    """The round trip below covers every message type of the standard."""
    assert set(PAYLOADS) == set(PAYLOAD_TYPES)


@dialects
@pytest.mark.parametrize("payload_type", PAYLOAD_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_round_trip_every_type(
    dialect: Dialect, payload_type: type[Payload], bank_keys: dict[str, Keys], data: st.DataObject
) -> None:
    """decode(encode(m)) == m for every canonical message type the dialect carries; the others raise Unsupported."""
    signer, verifier = signer_verifier(keys_for(dialect, bank_keys))
    message = data.draw(messages(PAYLOADS[payload_type]))
    if not dialect.supports(payload_type):
        with pytest.raises(Unsupported, match=payload_type.__name__):
            dialect.encode(message, signer)
        return
    wire = dialect.encode(message, signer)
    inbound = dialect.decode(wire, verifier)
    assert inbound.message == message
    assert inbound.raw == wire
    assert dialect.check(wire) == []


@dialects
def test_unsupported_types_are_documented_and_refused(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """What a dialect does not carry is the declared list, and encoding any of it raises Unsupported."""
    signer, _ = signer_verifier(keys_for(dialect, bank_keys))
    for payload_type in dialect.unsupported:
        assert not dialect.supports(payload_type)
        sample = next(p for _, p, _ in samples.all_payloads() if type(p) is payload_type)
        with pytest.raises(Unsupported):
            dialect.encode(samples.message(sample, "bank"), signer)
    doc = Path(__file__).parent.parent.parent / "docs" / "banks" / f"{dialect.code}.md"
    if isinstance(dialect, DeclarativeDialect):
        text = doc.read_text(encoding="utf-8")
        for payload_type in dialect.unsupported:
            assert payload_type.__name__ in text, f"{doc} must say that {payload_type.__name__} is not carried"


# --- golden vectors -------------------------------------------------------------------------------------------

GOLDEN = [(d, name, m) for d in DECLARED.values() for name, m in sample_messages(d)]


@pytest.mark.parametrize(("dialect", "name", "message"), GOLDEN, ids=[f"{d.code}-{n}" for d, n, _ in GOLDEN])
def test_golden_vectors(dialect: DeclarativeDialect, name: str, message: Message) -> None:
    """Each sample's unsigned document is its golden file byte for byte, and the golden file reads back to it."""
    golden = (VECTORS / dialect.code / f"{name}.xml").read_bytes()
    assert dialect.encode_unsigned(message) == golden, (
        f"{dialect.code}/{name}: regenerate with `python -m tests.banks.regenerate` only for an intended change"
    )
    assert dialect.check(golden) == []


@pytest.mark.parametrize("dialect", DECLARED.values(), ids=list(DECLARED))
def test_golden_vectors_cover_every_carried_type(dialect: DeclarativeDialect) -> None:
    """There is a golden file for every type the dialect carries and for nothing else."""
    names = {p.stem for p in (VECTORS / dialect.code).glob("*.xml")}
    carried = {name for name, m in sample_messages(dialect)}
    assert names == carried
    assert {type(m.body) for _, m in sample_messages(dialect)} == set(PAYLOAD_TYPES) - dialect.unsupported


@pytest.mark.parametrize(("dialect", "name", "message"), GOLDEN, ids=[f"{d.code}-{n}" for d, n, _ in GOLDEN])
def test_golden_vectors_sign_and_verify(
    dialect: DeclarativeDialect, name: str, message: Message, bank_keys: dict[str, Keys]
) -> None:
    """Signing a golden file (as a bank's developer does) and encoding the sample both verify and decode."""
    signer, verifier = signer_verifier(keys_for(dialect, bank_keys))
    golden = (VECTORS / dialect.code / f"{name}.xml").read_bytes()
    for signed in (dialect.sign_document(golden, signer), dialect.encode(message, signer)):
        dialect.verify_document(signed, verifier)
        assert dialect.decode(signed, verifier).message == message
        element = detached_element(dialect)
        if element is not None:  # what a detached signature covers is exactly the golden file
            assert re.sub(rf"<{element}>[^<]*</{element}>".encode(), b"", signed) == golden


# --- framing --------------------------------------------------------------------------------------------------


@dialects
def test_framing_triple(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """Frames of the dialect are cut the same whole, byte by byte, and with trailing bytes of the next frame."""
    signer, verifier = signer_verifier(keys_for(dialect, bank_keys))
    chosen = sample_messages(dialect)[:4]
    bodies = [dialect.encode(m, signer) for _, m in chosen]
    frames = [encode_frame(dialect.framing, body) for body in bodies]
    stream = b"".join(frames)

    assert FrameDecoder(dialect.framing).feed(stream) == bodies
    decoder = FrameDecoder(dialect.framing)
    byte_by_byte = [frame for i in range(len(stream)) for frame in decoder.feed(stream[i : i + 1])]
    assert byte_by_byte == bodies and decoder.buffered_bytes == 0
    decoder = FrameDecoder(dialect.framing)
    assert decoder.feed(stream + frames[0][:3]) == bodies
    assert decoder.buffered_bytes == 3
    assert [dialect.decode(body, verifier).message for body in bodies] == [m for _, m in chosen]


@dialects
def test_framing_header_is_the_declared_one(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """The length header has the declared width and counts what the dialect says it counts."""
    signer, _ = signer_verifier(keys_for(dialect, bank_keys))
    body = dialect.encode(voucher_message(dialect), signer)
    frame = encode_frame(dialect.framing, body)
    spec = dialect.framing
    header, rest = frame[: spec.header_bytes], frame[spec.header_bytes :]
    assert rest == body
    declared = int(header) if header.isdigit() else int.from_bytes(header, "big")
    assert declared == len(body) + (spec.header_bytes if spec.length_includes_header else 0)


@dialects
def test_oversized_frame_is_refused_before_its_body(dialect: Dialect) -> None:
    """A header announcing more than the dialect's maximum fails at once (91001), before any body byte."""
    spec = dialect.framing
    one_more = spec.max_body_bytes + 1 + (spec.header_bytes if spec.length_includes_header else 0)
    if one_more > spec.max_declared_length:  # the maximum is all the header can say: nothing larger exists
        assert spec.max_body_bytes == spec.max_expressible_body_bytes
        return
    header = (
        b"%0*d" % (spec.header_width, one_more)
        if header_is_ascii(dialect)
        else one_more.to_bytes(spec.header_width, "big")
    )
    with pytest.raises(FrameTooLarge):
        FrameDecoder(spec).feed(header)


def header_is_ascii(dialect: Dialect) -> bool:
    return encode_header(dialect.framing, 0).isdigit()


# --- the attack corpus ----------------------------------------------------------------------------------------

XXE = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
LAUGHS = (
    b'<!DOCTYPE x [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>\n'
)
AMOUNTS = ((b">125000.00<", b">925000.00<"), (b">12500000<", b">92500000<"))


def after_declaration(doc: bytes, insert: bytes) -> bytes:
    end = doc.index(b"?>") + 3
    return doc[:end] + insert + doc[end:]


def tamper_amount(doc: bytes) -> bytes:
    for old, new in AMOUNTS:
        if old in doc:
            return doc.replace(old, new, 1)
    raise AssertionError("no sample amount in the document")


def body_span(dialect: Dialect, doc: bytes) -> tuple[int, int]:
    name = body_name(dialect).encode()
    start = doc.index(b"<" + name + b">")
    end = doc.index(b"</" + name + b">") + len(name) + 3
    return start, end


def extra_body(dialect: Dialect, doc: bytes) -> bytes:
    """Wrapping: an evil copy of the body (altered amount) before the signed one."""
    start, end = body_span(dialect, doc)
    return doc[:start] + tamper_amount(doc[start:end]) + doc[start:]


def xmldsig_span(doc: bytes) -> tuple[int, int]:
    start = doc.index(b"<Signature ")
    return start, doc.index(b"</Signature>") + len(b"</Signature>")


def detached_span(doc: bytes, element: str) -> tuple[int, int]:
    start = doc.index(f"<{element}>".encode())
    return start, doc.index(f"</{element}>".encode()) + len(element) + 3


def span(dialect: Dialect, doc: bytes) -> tuple[int, int]:
    element = detached_element(dialect)
    return xmldsig_span(doc) if element is None else detached_span(doc, element)


def duplicated(dialect: Dialect, doc: bytes) -> bytes:
    start, end = span(dialect, doc)
    return doc[:end] + doc[start:end] + doc[end:]


def moved_into_body(dialect: Dialect, doc: bytes) -> bytes:
    """Wrapping: the signature moved from its place into the body."""
    start, end = span(dialect, doc)
    signature, rest = doc[start:end], doc[:start] + doc[end:]
    at = rest.index(f"</{body_name(dialect)}>".encode())
    return rest[:at] + signature + rest[at:]


def signed_attacks(dialect: Dialect) -> dict[str, tuple[Callable[[bytes], bytes], type[ProtocolError]]]:
    """Attacks on a validly signed sample voucher: name -> (how to make it, what it must raise)."""
    cases: dict[str, tuple[Callable[[bytes], bytes], type[ProtocolError]]] = {
        "tampered-amount": (tamper_amount, SignatureInvalid),
        "tampered-des": (
            lambda d: d.replace(b">" + bank_code(dialect).encode() + b"<", b">EVIL<", 1),
            SignatureInvalid,
        ),
        "duplicated-signature": (lambda d: duplicated(dialect, d), SignatureProfileViolation),
        "signature-moved-into-body": (lambda d: moved_into_body(dialect, d), SignatureProfileViolation),
        "wrapping-extra-body": (lambda d: extra_body(dialect, d), SignatureInvalid),
        "xxe": (lambda d: after_declaration(d, XXE), ForbiddenXml),
        "billion-laughs": (lambda d: after_declaration(d, LAUGHS), ForbiddenXml),
        "comment-in-value": (lambda d: tamper_comment(d), ForbiddenXml),
        "oversize": (lambda d: d + b" " * (dialect.limits.max_bytes + 1 - len(d)), XmlLimitExceeded),
    }
    element = detached_element(dialect)
    if element is not None:
        open_, close = f"<{element}>".encode(), f"</{element}>".encode()
        cases |= {
            "empty-signature": (lambda d: re.sub(open_ + rb"[^<]*" + close, open_ + close, d), SignatureMissing),
            "markup-in-signature": (lambda d: d.replace(close, b"<x/>" + close), SignatureProfileViolation),
            "attribute-on-signature": (
                lambda d: d.replace(open_, f'<{element} alg="rsa-sha1">'.encode()),
                SignatureProfileViolation,
            ),
            "namespaced-signature": (
                lambda d: d.replace(open_, f'<{element} xmlns="urn:evil">'.encode()),
                SignatureProfileViolation,
            ),
            "character-reference-in-signature": (
                lambda d: d.replace(close, b"&#65;" + close),
                SignatureProfileViolation,
            ),
            "signature-value-bit-flip": (lambda d: flip_value(d, element), SignatureInvalid),
        }
    return cases


def tamper_comment(doc: bytes) -> bytes:
    """A comment inside a signed value: C14N would drop it, so the parser must refuse it."""
    old = next(old for old, _ in AMOUNTS if old in doc)
    return doc.replace(old, old[:-1] + b"<!---->" + b"<", 1)


def flip_value(doc: bytes, element: str) -> bytes:
    start, end = detached_span(doc, element)
    inner = doc[start + len(element) + 2 : end - len(element) - 3]
    value = bytearray(base64.b64decode(inner))
    value[len(value) // 2] ^= 1
    return doc[: start + len(element) + 2] + base64.b64encode(bytes(value)) + doc[end - len(element) - 3 :]


ATTACKS = [(d, name) for d in DIALECTS for name in signed_attacks(d)]


@pytest.mark.parametrize(("dialect", "attack"), ATTACKS, ids=[f"{d.code}-{a}" for d, a in ATTACKS])
def test_signed_attacks_are_refused(dialect: Dialect, attack: str, bank_keys: dict[str, Keys]) -> None:
    """Each attack on a signed voucher is refused with its own error, by decode and by verify_document."""
    signer, verifier = signer_verifier(keys_for(dialect, bank_keys))
    make, error = signed_attacks(dialect)[attack]
    document = make(dialect.encode(voucher_message(dialect), signer))
    with pytest.raises(error):
        dialect.decode(document, verifier)
    with pytest.raises(error):
        dialect.verify_document(document, verifier)


@dialects
def test_missing_signature_is_refused(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """The unsigned document is refused as unsigned (91003), though check() finds nothing else wrong."""
    _, verifier = signer_verifier(keys_for(dialect, bank_keys))
    document = unsigned(dialect, voucher_message(dialect))
    with pytest.raises(SignatureMissing):
        dialect.decode(document, verifier)
    assert dialect.check(document) == []


@dialects
def test_wrong_key_is_refused(dialect: Dialect, bank_keys: dict[str, Keys], attacker_keys: dict[str, Keys]) -> None:
    """A valid signature by another key of the right type does not verify with the pinned certificate."""
    keys = keys_for(dialect, bank_keys)
    attacker = attacker_keys[keys.kind]
    document = dialect.encode(voucher_message(dialect), Signer(attacker.key, attacker.cert))
    with pytest.raises(SignatureInvalid):
        dialect.decode(document, Verifier(keys.cert))


@dialects
@pytest.mark.parametrize("attack", sorted(p.name for p in ATTACK_FILES.glob("*.xml")))
def test_static_attack_corpus_is_refused(dialect: Dialect, attack: str, bank_keys: dict[str, Keys]) -> None:
    """The XML attack corpus (XXE, DTDs, billion laughs, foreign encodings, depth) is refused by every dialect
    before any signature is looked at."""
    _, verifier = signer_verifier(keys_for(dialect, bank_keys))
    data = (ATTACK_FILES / attack).read_bytes()
    with pytest.raises(XmlError):
        dialect.decode(data, verifier)
    with pytest.raises(XmlError):
        dialect.check(data)
    assert dialect.peek_head(data).msg_id == ""


@pytest.mark.parametrize(
    "dialect", [d for d in DIALECTS if d.signature_methods == {ECDSA_SHA256}], ids=lambda d: d.code
)
def test_ecdsa_der_value_is_refused(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """A detached ECDSA value written in DER instead of the raw r || s is refused as invalid."""
    element = detached_element(dialect)
    assert element is not None
    signer, verifier = signer_verifier(bank_keys["ec"])
    document = dialect.encode(voucher_message(dialect), signer)
    start, end = detached_span(document, element)
    raw = base64.b64decode(document[start + len(element) + 2 : end - len(element) - 3])
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    forged = document[: start + len(element) + 2] + base64.b64encode(der) + document[end - len(element) - 3 :]
    with pytest.raises(SignatureInvalid):
        dialect.decode(forged, verifier)


@dialects
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_mutated_document_is_refused_or_reads_as_signed(
    dialect: Dialect, bank_keys: dict[str, Keys], data: st.DataObject
) -> None:
    """See what is signed: whatever bytes are changed, the result is refused or decodes to the signed message
    (a change outside what is signed, such as the XML declaration's spacing, may be harmless, never more)."""
    signer, verifier = signer_verifier(keys_for(dialect, bank_keys))
    message = voucher_message(dialect)
    document = bytearray(dialect.encode(message, signer))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(document) - 1))
        document[at] = data.draw(st.integers(0, 255))
    try:
        decoded = dialect.decode(bytes(document), verifier)
    except ProtocolError:
        return
    assert decoded.message == message


@dialects
@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=400) | st.from_regex(rb"<\?xml version=\"1.0\"\?>\n<[a-zA-Z]+>[ -~]{0,200}"))
def test_arbitrary_bytes_raise_only_protocol_errors(dialect: Dialect, bank_keys: dict[str, Keys], data: bytes) -> None:
    """Arbitrary input raises only the protocol's own errors; peek_head never raises."""
    _, verifier = signer_verifier(keys_for(dialect, bank_keys))
    with pytest.raises(ProtocolError):
        dialect.decode(data, verifier)
    dialect.peek_head(data)


# --- identity -------------------------------------------------------------------------------------------------


@dialects
def test_src_and_des_are_carried_faithfully(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """The decoded head's Src and Des (what the gateway binds to the TLS peer) are exactly the sender's, both
    ways, and peek_head reads the same MsgId, MsgNo and Src from the raw document."""
    signer, verifier = signer_verifier(keys_for(dialect, bank_keys))
    bank = bank_code(dialect)
    for sender in ("gateway", "bank"):
        message = readdress(samples.message(samples.direct_voucher(), sender), bank)
        wire = dialect.encode(message, signer)
        head = dialect.decode(wire, verifier).message.head
        assert (head.src, head.des) == (message.head.src, message.head.des)
        raw = dialect.peek_head(wire)
        assert (raw.msg_id, raw.msg_no, raw.src) == (message.head.msg_id, message.head.msg_no, message.head.src)


@dialects
def test_another_banks_signature_does_not_pass_for_this_bank(
    dialect: Dialect, bank_keys: dict[str, Keys], attacker_keys: dict[str, Keys]
) -> None:
    """A message claiming to be from this bank but signed by another bank's key is refused (91003): the key
    pinned for the TLS peer's bank decides, whatever Src says."""
    keys = keys_for(dialect, bank_keys)
    other = attacker_keys[keys.kind]
    message = readdress(samples.message(samples.receipt(), "bank"), bank_code(dialect))
    forged = dialect.encode(message, Signer(other.key, other.cert))
    with pytest.raises(SignatureInvalid):
        dialect.decode(forged, Verifier(keys.cert))
    impersonation = dataclasses.replace(message, head=dataclasses.replace(message.head, src="OTHER"))
    decoded = dialect.decode(dialect.encode(impersonation, Signer(keys.key, keys.cert)), Verifier(keys.cert))
    assert decoded.message.head.src == "OTHER"  # carried as sent: the gateway compares it with the TLS peer


# --- key types ------------------------------------------------------------------------------------------------


@dialects
def test_a_key_of_another_type_is_refused_clearly(dialect: Dialect, bank_keys: dict[str, Keys]) -> None:
    """A dialect whose scheme fixes the key type refuses a signer of the other type with a clear error, and a
    pinned certificate of the other type never verifies; the others accept both types."""
    for kind, method in (("rsa", RSA_SHA256), ("ec", ECDSA_SHA256)):
        signer, verifier = signer_verifier(bank_keys[kind])
        if method in dialect.signature_methods:
            assert dialect.decode(dialect.encode(voucher_message(dialect), signer), verifier)
            continue
        with pytest.raises(KeyTypeMismatch, match=f"{dialect.code} dialect signs with .*--key-type"):
            dialect.encode(voucher_message(dialect), signer)
        good_signer, _ = signer_verifier(keys_for(dialect, bank_keys))
        with pytest.raises(SignatureInvalid, match="pinned"):
            dialect.decode(dialect.encode(voucher_message(dialect), good_signer), verifier)
