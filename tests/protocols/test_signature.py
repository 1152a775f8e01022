"""The XMLDSig profile of PROTOCOL.md §6: round trips, every refusal with its exception, the attack corpus."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from protocols import xmlsafe
from protocols.errors import (
    ForbiddenXml,
    LocalError,
    ProtocolError,
    SignatureInvalid,
    SignatureMissing,
    SignatureProfileViolation,
)
from protocols.signature import DS_NS, ECDSA_SHA256, RSA_SHA256, Signer, Verifier
from tests.vectors.attacks.generate import (
    ATTACKS,
    STATIC_ATTACKS,
    XMLSEC1_ACCEPTS,
    Attack,
    Keys,
    edit,
    forge,
    make_keys,
    message,
)
from tests.vectors.attacks.generate import HERE as ATTACK_DIR

PAYEE = "广西某某建设有限公司"
SIGNATURE = re.compile(rb"<Signature .*</Signature>", re.DOTALL)
XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff", whitelist_characters="\t\n\r"
    )
)


def c14n(node: etree._Element) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True)


def unsigned_c14n(document: bytes) -> bytes:
    """The canonical form of an unsigned document, to compare verified trees with."""
    return c14n(xmlsafe.parse_document(document))


def signer(keys: Keys, **options: object) -> Signer:
    return Signer(keys.key, keys.cert, **options)


def refusal(keys: Keys, document: bytes) -> ProtocolError:
    """Verify `document` against `keys`' certificate, which must fail, and return the error."""
    with pytest.raises(ProtocolError) as info:
        Verifier(keys.cert).verify_bytes(document)
    return info.value


def move_signature(document: bytes, before: bytes) -> bytes:
    """Move the (first) signature of `document` to just before the first occurrence of `before`."""
    signature = SIGNATURE.search(document)
    assert signature is not None
    rest = document[: signature.start()] + document[signature.end() :]
    at = rest.index(before)
    return rest[:at] + signature.group() + rest[at:]


# --- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["UTF-8", "GBK", "GB18030"])
def test_sign_then_verify_returns_the_unsigned_document(keys: Keys, encoding: str) -> None:
    """What verify returns is exactly the document that was signed, without its signature."""
    data = message(encoding)
    signed = signer(keys).sign(xmlsafe.parse_document(data))
    root = Verifier(keys.cert).verify_bytes(signed)
    assert c14n(root) == unsigned_c14n(data)
    assert root.find(f"{{{DS_NS}}}Signature") is None
    assert root.findtext("Body/Voucher/PayeeAcctName") == PAYEE
    assert signed.startswith(f'<?xml version="1.0" encoding="{encoding}"?>'.encode())
    assert PAYEE.encode(encoding) in signed


def test_sign_leaves_the_tree_alone(keys: Keys) -> None:
    """Signing writes the signature into the bytes only; the caller's tree is not modified."""
    root = xmlsafe.parse_document(message())
    before = etree.tostring(root)
    signer(keys).sign(root)
    assert etree.tostring(root) == before


def test_signature_is_the_last_child_in_default_namespace_form(keys: Keys) -> None:
    """The signature is written as in PROTOCOL.md §3, right before the root's end tag, with the key's method."""
    signed = signer(keys).sign_bytes(message())
    assert signed.endswith(b"</Signature></Message>\n")
    assert f'<Signature xmlns="{DS_NS}"><SignedInfo>'.encode() in signed
    method = RSA_SHA256 if keys.kind == "rsa" else ECDSA_SHA256
    assert f'<SignatureMethod Algorithm="{method}"'.encode() in signed
    assert xmlsafe.parse_document(signed)[-1].tag == f"{{{DS_NS}}}Signature"


def test_sign_bytes_keeps_the_document_byte_for_byte(keys: Keys) -> None:
    """sign_bytes only inserts the signature: removing it gives back the input bytes."""
    for data in (message(), message("GBK"), b"<Message>\n<Head/>\n</Message>\n  "):
        assert SIGNATURE.sub(b"", signer(keys).sign_bytes(data)) == data


def test_ecdsa_value_is_raw_r_s(ec_keys: Keys, rsa_keys: Keys) -> None:
    """An ECDSA P-256 value is r || s, 64 bytes (not DER); an RSA-2048 value is 256 bytes."""
    for keys, size in ((ec_keys, 64), (rsa_keys, 256)):
        signature = xmlsafe.parse_document(signer(keys).sign_bytes(message()))[-1]
        assert len(base64.b64decode(signature.findtext(f"{{{DS_NS}}}SignatureValue"))) == size


def test_key_info_carries_the_certificate_only_when_asked(keys: Keys) -> None:
    """include_cert puts the certificate into KeyInfo; without it (or without a cert) there is no KeyInfo."""
    der = base64.b64encode(keys.cert.public_bytes(Encoding.DER))
    assert b"<X509Certificate>" + der + b"</X509Certificate>" in signer(keys).sign_bytes(message())
    assert b"KeyInfo" not in signer(keys, include_cert=False).sign_bytes(message())
    assert b"KeyInfo" not in Signer(keys.key).sign_bytes(message())
    Verifier(keys.cert).verify_bytes(Signer(keys.key).sign_bytes(message()))


def test_sign_writes_the_requested_or_the_documents_encoding(keys: Keys) -> None:
    """sign() writes the document's own encoding unless told another one."""
    root = xmlsafe.parse_document(message("GB18030"))
    assert signer(keys).sign(root).startswith(b'<?xml version="1.0" encoding="GB18030"?>')
    signed = signer(keys).sign(root, "GBK")
    assert signed.startswith(b'<?xml version="1.0" encoding="GBK"?>')
    assert Verifier(keys.cert).verify_bytes(signed).findtext("Body/Voucher/PayeeAcctName") == PAYEE
    built = etree.Element("Message")
    etree.SubElement(built, "Ping").text = PAYEE
    assert signer(keys).sign(built).startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


@pytest.mark.parametrize(
    "data",
    [
        b"<Message/>",
        b'<p:Message xmlns:p="urn:x" p:a="1" />',
        '<?xml version="1.0" encoding="GBK"?><消息 属性="值"/>'.encode("gbk"),
    ],
)
def test_empty_root_element_can_be_signed(keys: Keys, data: bytes) -> None:
    """A root written <Message/> gets an end tag, with its prefix and in the document's encoding."""
    signed = signer(keys).sign_bytes(data)
    root = Verifier(keys.cert).verify_bytes(signed)
    assert c14n(root) == unsigned_c14n(data)
    tree_signed = signer(keys).sign(xmlsafe.parse_document(data))
    assert c14n(Verifier(keys.cert).verify_bytes(tree_signed)) == unsigned_c14n(data)


def test_root_with_namespaces_round_trips(keys: Keys) -> None:
    """A default namespace and other declarations on the root do not disturb the signature."""
    data = b'<Message xmlns="urn:x" xmlns:a="urn:a" a:v="1"><Head a:w="2"/>\n<Body><a:Ping/></Body>\n</Message>'
    root = Verifier(keys.cert).verify_bytes(signer(keys).sign_bytes(data))
    assert c14n(root) == unsigned_c14n(data)


def test_verifier_accepts_a_public_key(keys: Keys) -> None:
    """The pinned key may be given as a certificate or as the bare public key."""
    signed = signer(keys).sign_bytes(message())
    assert Verifier(keys.cert.public_key()).verify_bytes(signed).tag == "Message"


# --- what other signers write -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"prefix": "ds"},
        {"prefix": None},
        {"prefix": "dsig"},
        {"whitespace": "\n    "},
        {"whitespace": "\r\n  ", "wrap": 64},
        {"key_info": False},
    ],
    ids=["ds-prefix", "default-namespace", "other-prefix", "indented", "crlf-and-line-breaks", "no-keyinfo"],
)
def test_verifier_accepts_every_spelling_of_the_profile(keys: Keys, options: dict[str, object]) -> None:
    """Prefix, whitespace inside SignedInfo, line breaks in base64 values and KeyInfo are free."""
    signed = forge(message(), keys, **options)
    assert c14n(Verifier(keys.cert).verify_bytes(signed)) == unsigned_c14n(message())


def test_text_after_the_signature_is_kept(keys: Keys) -> None:
    """The enveloped-signature transform removes the element only: text after it stays (here, a tail)."""
    data = b"<Message><Head>h</Head>\n  trailing text\n</Message>"
    moved = move_signature(signer(keys).sign_bytes(data), b"\n  trailing")
    assert moved.index(b"</Signature>\n  trailing") > 0
    root = Verifier(keys.cert).verify_bytes(moved)
    assert c14n(root) == unsigned_c14n(data)
    assert root[0].tail == "\n  trailing text\n"


def test_text_after_a_first_child_signature_joins_the_root_text(keys: Keys) -> None:
    """With no element before the signature, the text after it becomes the root's text."""
    data = b"<Message>only text</Message>"
    moved = move_signature(signer(keys).sign_bytes(data), b"only text")
    root = Verifier(keys.cert).verify_bytes(moved)
    assert root.text == "only text"
    assert c14n(root) == unsigned_c14n(data)


# --- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "place", "old", "new"),
    [
        (b"<Message>only text</Message>", b"only text", b"only", b"ONLY"),
        (b"<Message>only text</Message>", b"</Message>", b"only", b"ONLY"),
        (b"<Message><Head>h</Head>tail</Message>", b"tail", b"tail", b"TAIL"),
        (b"<Message><Head>h</Head>tail</Message>", b"</Message>", b"<Head>h", b"<Head>H"),
    ],
    ids=["first-child-with-tail", "only-child", "after-sibling-with-tail", "last-child"],
)
def test_failed_verification_leaves_the_tree_as_it_was(
    keys: Keys, data: bytes, place: bytes, old: bytes, new: bytes
) -> None:
    """On a digest mismatch the signature (and the text after it) is put back where it was."""
    document = move_signature(signer(keys).sign_bytes(data), place).replace(old, new)
    root = xmlsafe.parse_document(document)
    before = etree.tostring(root)
    with pytest.raises(SignatureInvalid, match="digest"):
        Verifier(keys.cert).verify_tree(root)
    assert etree.tostring(root) == before


def test_place_of_the_signature_without_following_text(keys: Keys) -> None:
    """A signature as the only child, with no text around it, verifies and leaves an empty root."""
    root = Verifier(keys.cert).verify_bytes(signer(keys).sign_bytes(b"<Message></Message>"))
    assert (len(root), root.text) == (0, None)


def test_signature_value_by_another_key_is_invalid(keys: Keys, other_keys: dict[str, Keys]) -> None:
    """A valid signature by another key fails with SignatureInvalid, and the tree is left as it was."""
    root = xmlsafe.parse_document(signer(other_keys[keys.kind]).sign_bytes(message()))
    before = etree.tostring(root)
    with pytest.raises(SignatureInvalid, match="pinned key"):
        Verifier(keys.cert).verify_tree(root)
    assert etree.tostring(root) == before


def test_method_of_another_key_type_is_invalid(rsa_keys: Keys, ec_keys: Keys) -> None:
    """A document signed for ECDSA cannot verify with a pinned RSA key, nor the reverse."""
    with pytest.raises(SignatureInvalid, match="pinned key is for"):
        Verifier(rsa_keys.cert).verify_bytes(signer(ec_keys).sign_bytes(message()))
    with pytest.raises(SignatureInvalid, match="pinned key is for"):
        Verifier(ec_keys.cert).verify_bytes(signer(rsa_keys).sign_bytes(message()))


def _set_signature_value(text: str):
    def change(root: etree._Element) -> None:
        root[-1].find(f"{{{DS_NS}}}SignatureValue").text = text

    return change


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SignatureInvalid),
        ("!!!!", SignatureProfileViolation),
        ("签名", SignatureProfileViolation),
        ("AAAA AAAA\n", SignatureInvalid),
    ],
)
def test_signature_value_must_be_base64(keys: Keys, text: str, expected: type[ProtocolError]) -> None:
    """An empty or wrong value is invalid; one that is not base64 breaks the profile."""
    error = refusal(keys, edit(signer(keys).sign_bytes(message()), _set_signature_value(text)))
    assert type(error) is expected


def test_ecdsa_value_of_wrong_length_is_invalid(ec_keys: Keys) -> None:
    """An ECDSA P-256 value must be exactly 64 bytes."""
    short = base64.b64encode(b"\x01" * 63).decode()
    error = refusal(ec_keys, edit(signer(ec_keys).sign_bytes(message()), _set_signature_value(short)))
    assert type(error) is SignatureInvalid


def test_digest_value_must_be_base64(keys: Keys) -> None:
    """A DigestValue that is not base64 breaks the profile (before any key operation)."""

    def change(root: etree._Element) -> None:
        root[-1].find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference/{{{DS_NS}}}DigestValue").text = "not-base64"

    error = refusal(keys, edit(signer(keys).sign_bytes(message()), change))
    assert type(error) is SignatureProfileViolation
    assert "DigestValue" in str(error)


@pytest.mark.parametrize(
    "change",
    [
        lambda signature: signature.remove(signature[1]),
        lambda signature: signature.insert(1, signature[2]),
        lambda signature: etree.SubElement(signature, f"{{{DS_NS}}}Object"),
        lambda signature: signature.insert(0, etree.Element(f"{{{DS_NS}}}KeyInfo")),
        lambda signature: signature.append(etree.Element("Unsigned")),
    ],
    ids=["no-signature-value", "keyinfo-first", "object", "keyinfo-at-start", "foreign-child"],
)
def test_signature_children_are_of_the_profile(keys: Keys, change) -> None:
    """A Signature holds SignedInfo, SignatureValue and optionally KeyInfo, in this order, and nothing else."""
    document = edit(signer(keys).sign_bytes(message()), lambda root: change(root[-1]))
    error = refusal(keys, document)
    assert type(error) is SignatureProfileViolation
    assert "SignedInfo, SignatureValue" in str(error)


def test_mixed_prefixes_in_signed_info_break_the_profile(keys: Keys) -> None:
    """The canonical SignedInfo must use one prefix throughout."""
    document = forge(message(), keys).replace(
        b"<ds:SignatureMethod ", f'<other:SignatureMethod xmlns:other="{DS_NS}" '.encode()
    )
    assert b"<other:SignatureMethod" in document
    error = refusal(keys, document)
    assert type(error) is SignatureProfileViolation
    assert "not of the profile" in str(error)


def test_verify_tree_needs_the_root(keys: Keys) -> None:
    """Only a whole document can be verified (the reference is URI="")."""
    root = xmlsafe.parse_document(signer(keys).sign_bytes(message()))
    with pytest.raises(LocalError, match="root element"):
        Verifier(keys.cert).verify_tree(root.find("Body"))


def test_sign_needs_the_root(keys: Keys) -> None:
    """Only a whole document can be signed."""
    with pytest.raises(LocalError, match="root element"):
        signer(keys).sign(xmlsafe.parse_document(message()).find("Body"))


def test_signed_document_cannot_be_signed_again(keys: Keys) -> None:
    """A second signature would break the profile, so the signer refuses to add one."""
    with pytest.raises(LocalError, match="already"):
        signer(keys).sign_bytes(signer(keys).sign_bytes(message()))


def test_certificate_must_hold_the_signing_key(keys: Keys, other_keys: dict[str, Keys]) -> None:
    """A signer given another key's certificate would advertise the wrong certificate."""
    with pytest.raises(LocalError, match="certificate"):
        Signer(keys.key, other_keys[keys.kind].cert)


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["P-384", "Ed25519"],
)
def test_unsupported_keys_are_refused(key: object) -> None:
    """Only RSA and ECDSA P-256 are in the profile, for signing and for verifying."""
    with pytest.raises(LocalError, match="unsupported key"):
        Signer(key)
    with pytest.raises(LocalError, match="unsupported key"):
        Verifier(key.public_key())


@pytest.mark.parametrize(
    "document",
    [
        b"<!-- c --><Message/>",
        b"<Message/><?pi x?>",
        b"<Message><Head><!-- hidden --></Head></Message>",
        b'<!DOCTYPE Message [<!ENTITY e "x">]><Message>&e;</Message>',
    ],
    ids=["comment-before-root", "pi-after-root", "comment-inside", "entity-reference"],
)
def test_verify_tree_refuses_trees_not_from_xmlsafe(keys: Keys, document: bytes) -> None:
    """A tree parsed elsewhere with comments, PIs or entity references is refused (comment truncation)."""
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    root = etree.fromstring(document, parser)
    with pytest.raises(ForbiddenXml):
        Verifier(keys.cert).verify_tree(root)


# --- the attack corpus ------------------------------------------------------------------------------------

SIGNED_CASES = [(attack, kind) for attack in ATTACKS for kind in ("rsa", "ec") if kind in attack.kinds]


@pytest.mark.parametrize(
    ("attack", "kind"), SIGNED_CASES, ids=[f"{attack.name}-{kind}" for attack, kind in SIGNED_CASES]
)
def test_signed_attack_raises_its_specific_error(
    attack: Attack, kind: str, request: pytest.FixtureRequest, other_keys: dict[str, Keys]
) -> None:
    """Each signed attack of the corpus raises exactly the exception README.md names."""
    victim: Keys = request.getfixturevalue(f"{kind}_keys")
    error = refusal(victim, attack.build(victim, other_keys[kind]))
    assert type(error) is attack.expected, f"{attack.name}: {error!r}"


@pytest.mark.parametrize(("name", "expected"), sorted(STATIC_ATTACKS.items()))
def test_static_attack_is_refused_by_the_verifier(rsa_keys: Keys, name: str, expected: type[ProtocolError]) -> None:
    """The unsigned attacks never get as far as the signature: verify_bytes raises the parser's error."""
    assert type(refusal(rsa_keys, (ATTACK_DIR / name).read_bytes())) is expected


def test_corpus_readme_lists_every_case() -> None:
    """README.md documents every static file and every signed case, with its exception."""
    readme = (ATTACK_DIR / "README.md").read_text()
    for name, expected in STATIC_ATTACKS.items():
        assert re.search(rf"\| `{re.escape(name)}` \| `{expected.__name__}` \|", readme), name
    for attack in ATTACKS:
        row = re.search(rf"^\| `{attack.name}` \| `{attack.expected.__name__}` \|.*$", readme, re.MULTILINE)
        assert row, attack.name
        assert ("*xmlsec1 accepts*" in row.group()) == (attack.name in XMLSEC1_ACCEPTS), attack.name


def test_missing_signature(keys: Keys) -> None:
    """An unsigned document raises SignatureMissing."""
    assert type(refusal(keys, message())) is SignatureMissing


# --- properties -------------------------------------------------------------------------------------------


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_protocol_errors(rsa_keys: Keys, data: bytes) -> None:
    """Whatever the bytes, verify_bytes raises a ProtocolError (here they are never validly signed)."""
    with pytest.raises(ProtocolError):
        Verifier(rsa_keys.cert).verify_bytes(data)


@given(kind=st.sampled_from(["rsa", "ec"]), data=st.data())
def test_mutated_signed_document_never_verifies_to_other_content(
    all_keys: dict[str, Keys], kind: str, data: st.DataObject
) -> None:
    """Any edit of a signed document either raises a ProtocolError or verifies to the signed content."""
    keys = all_keys[kind]
    signed = _signed_sample(keys)
    start = data.draw(st.integers(0, len(signed) - 1))
    end = data.draw(st.integers(start, min(len(signed), start + 8)))
    replacement = data.draw(st.binary(max_size=4) | st.sampled_from([b" ", b"\n", b"<", b"&#13;", b"0"]))
    mutated = signed[:start] + replacement + signed[end:]
    try:
        root = Verifier(keys.cert).verify_bytes(mutated)
    except ProtocolError:
        return
    assert c14n(root) == unsigned_c14n(message())


_SIGNED_SAMPLES: dict[str, bytes] = {}


def _signed_sample(keys: Keys) -> bytes:
    if keys.kind not in _SIGNED_SAMPLES:
        _SIGNED_SAMPLES[keys.kind] = signer(keys).sign_bytes(message())
    return _SIGNED_SAMPLES[keys.kind]


@given(st.sampled_from(["rsa", "ec"]), XML_TEXT, st.sampled_from(["UTF-8", "GBK", "GB18030"]))
def test_round_trip_of_any_text(all_keys: dict[str, Keys], kind: str, text: str, encoding: str) -> None:
    """sign then verify gives back any XML text in a signed field, for both key types and encodings."""
    keys = all_keys[kind]
    root = xmlsafe.parse_document(message())
    root.find("Body/Voucher/PayeeAcctName").text = text
    verified = Verifier(keys.cert).verify_bytes(signer(keys).sign(root, encoding))
    assert verified.findtext("Body/Voucher/PayeeAcctName") == text
    assert c14n(verified) == c14n(root)


def test_make_keys_gives_distinct_keys() -> None:
    """The throwaway keys of the corpus are fresh each time (no key material is shared or committed)."""
    first, second = make_keys("ec", "a"), make_keys("ec", "a")
    assert first.cert.public_key() != second.cert.public_key()


def test_raw_signature_values_round_trip_and_refuse_tampering(keys: Keys, other_keys: dict[str, Keys]) -> None:
    """sign_value/verify_value (detached dialect signatures) verify, and refuse changed data or another key."""
    from protocols.errors import SignatureInvalid
    from protocols.signature import Signer, Verifier

    value = Signer(keys.key).sign_value(b"<body>125000.00</body>")
    if keys.kind == "ec":
        assert len(value) == 64  # raw r || s, not DER
    verifier = Verifier(keys.cert)
    verifier.verify_value(value, b"<body>125000.00</body>")
    with pytest.raises(SignatureInvalid):
        verifier.verify_value(value, b"<body>925000.00</body>")
    with pytest.raises(SignatureInvalid):
        Verifier(other_keys[keys.kind].cert).verify_value(value, b"<body>125000.00</body>")
