"""Generator of the signed half of the attack corpus: documents with real signatures that must still be refused.

The unsigned attacks (XXE, billion laughs, external DTD, …) are static files next to this module. The signed
ones need a private key, so they are built at test time from throwaway keys and never committed: the tests
import :data:`ATTACKS`. ``python -m tests.vectors.attacks.generate OUTDIR`` writes them, with fresh keys, for
inspection or for feeding to another implementation. README.md lists every case and why it must be refused.

:func:`forge` is a small, independent XMLDSig signer that is not bound to the profile of PROTOCOL.md §6: it
makes cryptographically correct signatures with other references, transforms, algorithms and shapes, so that
each attack is refused for the reason it names and not for a broken signature (the interoperability tests
check the forgeries with xmlsec1).
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import hmac
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from lxml import etree

from protocols import xmlsafe
from protocols.errors import (
    ForbiddenXml,
    ProtocolError,
    SignatureInvalid,
    SignatureMissing,
    SignatureProfileViolation,
    XmlError,
    XmlLimitExceeded,
)
from protocols.signature import DS_NS, ECDSA_SHA256, ENVELOPED_SIGNATURE, EXC_C14N, RSA_SHA256, SHA256, Signer

SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
ECDSA_SHA1 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
XPATH_FILTER = "http://www.w3.org/TR/1999/REC-xpath-19991116"
PROFILE_TRANSFORMS = (ENVELOPED_SIGNATURE, EXC_C14N)

# --- the sample message -----------------------------------------------------------------------------------

MESSAGE = """<?xml version="1.0" encoding="{encoding}"?>
<Message>
  <Head>
    <Ver>1.0</Ver>
    <MsgNo>5201</MsgNo>
    <MsgId>20261123450100000017</MsgId>
    <MsgRef>20261123450100000017</MsgRef>
    <Src>450100000000</Src>
    <Des>ICBC</Des>
    <WorkDate>20261123</WorkDate>
    <SendTime>20261123103001</SendTime>
  </Head>
  <Body{body_attributes}>
    <Voucher>
      <VoucherFlag>0</VoucherFlag>
      <AdmDivCode>450100</AdmDivCode><StYear>2026</StYear><VtCode>5201</VtCode>
      <VouDate>20261123</VouDate><VoucherNo>5201450100000123</VoucherNo>
      <AgencyCode>101001</AgencyCode><AgencyName>南宁市教育局</AgencyName>
      <FundTypeCode>1</FundTypeCode><PayTypeCode>11</PayTypeCode><BusinessTypeCode>1</BusinessTypeCode>
      <ExpFuncCode>2050201</ExpFuncCode>
      <PayAcctNo>4501000000000001</PayAcctNo><PayAcctName>南宁市财政局国库单一账户</PayAcctName>
      <PayAcctBankName>中国人民银行南宁中心支行</PayAcctBankName>
      <PayeeAcctNo>6222020000000000123</PayeeAcctNo><PayeeAcctName>广西某某建设有限公司</PayeeAcctName>
      <PayeeAcctBankName>中国工商银行南宁分行</PayeeAcctBankName>
      <PayAmt>125000.00</PayAmt><PaySummaryName>校舍维修工程款</PaySummaryName>
      <DetailList>
        <Detail><Id>1</Id><PayAmt>100000.00</PayAmt><ExpFuncCode>2050201</ExpFuncCode></Detail>
        <Detail><Id>2</Id><PayAmt>25000.00</PayAmt><ExpFuncCode>2050201</ExpFuncCode></Detail>
      </DetailList>
    </Voucher>
  </Body>
</Message>
"""


def message(encoding: str = "UTF-8", body_attributes: str = "") -> bytes:
    """The unsigned sample 5201 voucher message (PROTOCOL.md §3, §5.1), encoded as its declaration says."""
    return MESSAGE.format(encoding=encoding, body_attributes=body_attributes).encode(encoding)


# --- throwaway keys ---------------------------------------------------------------------------------------


class Keys(NamedTuple):
    """A private key and its self-signed certificate."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def kind(self) -> str:
        return "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ec"

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def make_keys(kind: str, name: str) -> Keys:
    """A fresh RSA-2048 (`kind` "rsa") or ECDSA P-256 ("ec") key with a self-signed certificate for CN=`name`."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return Keys(key, cert)


# --- an unrestricted signer ----------------------------------------------------------------------------------

_C14N_PARAMETERS = {EXC_C14N: (True, False), EXC_C14N_WITH_COMMENTS: (True, True), C14N: (False, False)}
_DIGESTS = {SHA256: hashlib.sha256, SHA1: hashlib.sha1}


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def _canonical(node: etree._Element | etree._ElementTree, algorithm: str) -> bytes:
    exclusive, with_comments = _C14N_PARAMETERS[algorithm]
    return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=with_comments)


def remove_keeping_tail(element: etree._Element) -> None:
    """Remove `element` but not the text that follows it, as the enveloped-signature and XPath transforms do."""
    parent = element.getparent()
    assert parent is not None
    previous = element.getprevious()
    if element.tail:
        if previous is None:
            parent.text = (parent.text or "") + element.tail
        else:
            previous.tail = (previous.tail or "") + element.tail
    parent.remove(element)


def _wrap(value: bytes, width: int) -> str:
    text = base64.b64encode(value).decode()
    if not width:
        return text
    return "\r\n".join(text[i : i + width] for i in range(0, len(text), width))


def _signature_value(keys: Keys, method: str, data: bytes, *, der: bool) -> bytes:
    key = keys.key
    if method == HMAC_SHA256:  # keyed with the public certificate: the classic algorithm confusion
        return hmac.new(keys.cert.public_bytes(serialization.Encoding.DER), data, hashlib.sha256).digest()
    algorithm = hashes.SHA1() if method in (RSA_SHA1, ECDSA_SHA1) else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    signature = key.sign(data, ec.ECDSA(algorithm))
    if der:
        return signature
    r, s = decode_dss_signature(signature)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(
    document: bytes,
    keys: Keys,
    *,
    uri: str = "",
    transforms: Sequence[str] | None = PROFILE_TRANSFORMS,
    c14n: str = EXC_C14N,
    digest: str = SHA256,
    method: str | None = None,
    references: int = 1,
    prefix: str | None = "ds",
    whitespace: str = "",
    wrap: int = 0,
    inclusive_prefixes: str | None = None,
    der: bool = False,
    key_info: bool = True,
) -> bytes:
    """Sign `document` with any XMLDSig parameters; the signature is appended as the root's last child.

    Args:
        document: An unsigned (or, to add a second signature, a signed) document of our own.
        keys: The signing key; `method` defaults to RSA-SHA256 or ECDSA-SHA256 by its type.
        uri: The reference: ``""`` (whole document) or ``"#id"`` (the element whose ``Id`` is ``id``).
        transforms: Reference transforms; ``None`` leaves out the ``Transforms`` element. The XPath filter
            transform removes ``Body``.
        c14n: The SignedInfo canonicalization method.
        digest: The digest method.
        method: The signature method.
        references: How many (identical) references.
        prefix: The namespace prefix of the signature elements; ``None`` for the default namespace.
        whitespace: Text put between the children of ``SignedInfo`` (it is signed).
        wrap: Break base64 values into lines of this many characters with CR LF (0: no breaks).
        inclusive_prefixes: An ``InclusiveNamespaces PrefixList`` for the exclusive C14N transform.
        der: Write an ECDSA value DER-encoded instead of as r || s.
        key_info: Whether to include the signer's certificate.
    """
    root = xmlsafe.parse_document(document)
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    method = method or (RSA_SHA256 if keys.kind == "rsa" else ECDSA_SHA256)
    # 1. The reference's octets: the node set after the transforms (the signature is not there yet).
    target: etree._Element | etree._ElementTree = root.getroottree()
    if uri:
        target = root.xpath("//*[@Id=$id]", id=uri[1:])[0]
    if transforms and XPATH_FILTER in transforms:
        target = copy.deepcopy(root)
        remove_keeping_tail(target.find("Body"))
    octets_c14n = next((t for t in reversed(transforms or ()) if t in _C14N_PARAMETERS), C14N)
    digest_value = _DIGESTS[digest](_canonical(target, octets_c14n)).digest()
    # 2. The Signature element.
    signature = etree.SubElement(root, _ds("Signature"), nsmap={prefix: DS_NS})
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=c14n)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    for _ in range(references):
        reference = etree.SubElement(signed_info, _ds("Reference"), URI=uri)
        if transforms is not None:
            transforms_element = etree.SubElement(reference, _ds("Transforms"))
            for algorithm in transforms:
                transform = etree.SubElement(transforms_element, _ds("Transform"), Algorithm=algorithm)
                if algorithm == XPATH_FILTER:
                    etree.SubElement(transform, _ds("XPath")).text = "not(ancestor-or-self::Body)"
                if algorithm == EXC_C14N and inclusive_prefixes is not None:
                    etree.SubElement(transform, f"{{{EXC_C14N}}}InclusiveNamespaces", PrefixList=inclusive_prefixes)
        etree.SubElement(reference, _ds("DigestMethod"), Algorithm=digest)
        etree.SubElement(reference, _ds("DigestValue")).text = _wrap(digest_value, wrap)
    if whitespace:
        signed_info.text = whitespace
        for child in signed_info:
            child.tail = whitespace
    value = etree.SubElement(signature, _ds("SignatureValue"))
    if key_info:
        x509_data = etree.SubElement(etree.SubElement(signature, _ds("KeyInfo")), _ds("X509Data"))
        der_cert = keys.cert.public_bytes(serialization.Encoding.DER)
        etree.SubElement(x509_data, _ds("X509Certificate")).text = base64.b64encode(der_cert).decode()
    # 3. The signature value over the canonical SignedInfo, in its place in the document.
    value.text = _wrap(_signature_value(keys, method, _canonical(signed_info, c14n), der=der), wrap)
    return xmlsafe.serialize(root, encoding)


# --- the corpus -------------------------------------------------------------------------------------------

HERE = Path(__file__).parent

# Every static file of the corpus and the exact exception it must raise (README.md says why).
STATIC_ATTACKS: dict[str, type[ProtocolError]] = {
    "xxe-external-entity.xml": ForbiddenXml,
    "xxe-parameter-entity.xml": ForbiddenXml,
    "billion-laughs.xml": ForbiddenXml,
    "quadratic-blowup.xml": ForbiddenXml,
    "external-dtd.xml": ForbiddenXml,
    "empty-internal-subset.xml": ForbiddenXml,
    "gbk-xxe.xml": ForbiddenXml,
    "xml-stylesheet.xml": ForbiddenXml,
    "cdata-section.xml": ForbiddenXml,
    "utf16-xxe.xml": XmlError,
    "utf7-hidden-doctype.xml": XmlError,
    "deep-nesting.xml": XmlLimitExceeded,
}

# --- signed attacks -------------------------------------------------------------------------------------------


def tree(document: bytes) -> etree._Element:
    """Parse one of our own documents for editing."""
    return xmlsafe.parse_document(document)


def edit(document: bytes, change: Callable[[etree._Element], object]) -> bytes:
    """Apply `change` to the parsed document and serialize it again in its encoding."""
    root = tree(document)
    change(root)
    return xmlsafe.serialize(root, root.getroottree().docinfo.encoding or "UTF-8")


def signed(keys: Keys, document: bytes | None = None) -> bytes:
    """The sample message (or `document`) signed by the profile's own signer."""
    return Signer(keys.key, keys.cert).sign_bytes(document or message())


def _signature(root: etree._Element) -> etree._Element:
    return root.find(_ds("Signature"))


def _wrapping_object(victim: Keys, attacker: Keys) -> bytes:
    def change(root: etree._Element) -> None:
        body = root.find("Body")
        ds_object = etree.SubElement(_signature(root), _ds("Object"))
        ds_object.append(copy.deepcopy(body))
        body.find("Voucher/PayAmt").text = "925000.00"

    return edit(signed(victim), change)


def _wrapping_duplicate_body(victim: Keys, attacker: Keys) -> bytes:
    def change(root: etree._Element) -> None:
        body = root.find("Body")
        evil = copy.deepcopy(body)
        evil.find("Voucher/PayAmt").text = "925000.00"
        wrapper = etree.Element("Wrapper")
        body.addprevious(wrapper)
        wrapper.append(body)
        wrapper.addnext(evil)

    return edit(signed(victim), change)


def _wrapping_id_reference(victim: Keys, attacker: Keys) -> bytes:
    def change(root: etree._Element) -> None:
        body = root.find("Body")
        evil = copy.deepcopy(body)
        del evil.attrib["Id"]
        evil.find("Voucher/PayAmt").text = "925000.00"
        body.addprevious(evil)
        wrapper = etree.SubElement(root.find("Head"), "Extension")
        wrapper.append(body)

    return edit(forge(message(body_attributes=' Id="body"'), victim, uri="#body"), change)


def _second_signature(victim: Keys, attacker: Keys) -> bytes:
    return forge(signed(victim), victim)


def _nested_second_signature(victim: Keys, attacker: Keys) -> bytes:
    return edit(signed(victim), lambda root: root.find("Body").append(copy.deepcopy(_signature(root))))


def _signature_first(victim: Keys, attacker: Keys) -> bytes:
    return edit(signed(victim), lambda root: root.insert(0, _signature(root)))


def _signature_in_body(victim: Keys, attacker: Keys) -> bytes:
    return edit(signed(victim), lambda root: root.find("Body").append(_signature(root)))


def _set_text(path: str, text: str) -> Callable[[Keys, Keys], bytes]:
    def build(victim: Keys, attacker: Keys) -> bytes:
        def change(root: etree._Element) -> None:
            root.find(path).text = text

        return edit(signed(victim), change)

    return build


def _tampered_signature_value(victim: Keys, attacker: Keys) -> bytes:
    def change(root: etree._Element) -> None:
        value = _signature(root).find(_ds("SignatureValue"))
        raw = bytearray(base64.b64decode(value.text))
        raw[len(raw) // 2] ^= 0x01
        value.text = base64.b64encode(bytes(raw)).decode()

    return edit(signed(victim), change)


def _comment_truncation(victim: Keys, attacker: Keys) -> bytes:
    document = signed(victim)
    return document.replace("广西某某建设".encode(), "广西某某建设<!---->".encode(), 1)


def _foreign_namespace(victim: Keys, attacker: Keys) -> bytes:
    return signed(victim).replace(f'<Signature xmlns="{DS_NS}">'.encode(), b'<Signature xmlns="urn:not-dsig">')


def _forged(**parameters: object) -> Callable[[Keys, Keys], bytes]:
    def build(victim: Keys, attacker: Keys) -> bytes:
        return forge(message(), victim, **parameters)  # type: ignore[arg-type]

    return build


def _sha1_method(victim: Keys, attacker: Keys) -> bytes:
    return forge(message(), victim, method=RSA_SHA1 if victim.kind == "rsa" else ECDSA_SHA1)


@dataclass(frozen=True)
class Attack:
    """One signed attack: how to build it from the victim's and an attacker's keys, and what it must raise."""

    name: str
    expected: type[ProtocolError]
    why: str
    build: Callable[[Keys, Keys], bytes]
    kinds: frozenset[str] = frozenset({"rsa", "ec"})


ATTACKS: tuple[Attack, ...] = (
    Attack("unsigned", SignatureMissing, "no signature at all", lambda v, a: message()),
    Attack(
        "foreign-namespace", SignatureMissing, "a Signature element outside the XMLDSig namespace", _foreign_namespace
    ),
    Attack(
        "second-signature", SignatureProfileViolation, "two valid signatures as the last children", _second_signature
    ),
    Attack(
        "nested-signature", SignatureProfileViolation, "a copy of the signature inside Body", _nested_second_signature
    ),
    Attack(
        "signature-first", SignatureProfileViolation, "the signature is not the root's last child", _signature_first
    ),
    Attack("signature-in-body", SignatureProfileViolation, "the only signature is inside Body", _signature_in_body),
    Attack(
        "wrapping-object",
        SignatureProfileViolation,
        "signature wrapping: the signed Body copied into ds:Object, the document's Body altered",
        _wrapping_object,
    ),
    Attack(
        "wrapping-duplicate-body",
        SignatureInvalid,
        "signature wrapping: the signed Body kept under a Wrapper, an evil Body inserted",
        _wrapping_duplicate_body,
    ),
    Attack(
        "wrapping-id-reference",
        SignatureProfileViolation,
        "signature wrapping against an ID reference (valid for xmlsec1 --id-attr): signed Body moved away",
        _wrapping_id_reference,
    ),
    Attack(
        "detached-id-reference",
        SignatureProfileViolation,
        'a valid signature over Reference URI="#body" instead of the whole document',
        lambda v, a: forge(message(body_attributes=' Id="body"'), v, uri="#body"),
    ),
    Attack("sha1-digest", SignatureProfileViolation, "SHA-1 digest method", _forged(digest=SHA1)),
    Attack("sha1-signature-method", SignatureProfileViolation, "rsa-sha1 / ecdsa-sha1 signature method", _sha1_method),
    Attack(
        "hmac-confusion",
        SignatureProfileViolation,
        "hmac-sha256 keyed with the victim's public certificate (algorithm confusion)",
        _forged(method=HMAC_SHA256),
    ),
    Attack("inclusive-c14n", SignatureProfileViolation, "inclusive C14N 1.0 for SignedInfo", _forged(c14n=C14N)),
    Attack(
        "c14n-with-comments",
        SignatureProfileViolation,
        "exc-C14N WithComments as the reference's transform",
        _forged(transforms=(ENVELOPED_SIGNATURE, EXC_C14N_WITH_COMMENTS)),
    ),
    Attack(
        "xpath-transform",
        SignatureProfileViolation,
        "an XPath filter transform that takes Body out of the digest",
        _forged(transforms=(ENVELOPED_SIGNATURE, XPATH_FILTER, EXC_C14N)),
    ),
    Attack("missing-transforms", SignatureProfileViolation, "no Transforms element", _forged(transforms=None)),
    Attack(
        "enveloped-only",
        SignatureProfileViolation,
        "only the enveloped-signature transform (implies inclusive C14N)",
        _forged(transforms=(ENVELOPED_SIGNATURE,)),
    ),
    Attack("two-references", SignatureProfileViolation, "two Reference elements", _forged(references=2)),
    Attack(
        "inclusive-namespaces",
        SignatureProfileViolation,
        "an InclusiveNamespaces PrefixList in the exc-C14N transform",
        _forged(inclusive_prefixes="ds"),
    ),
    Attack(
        "wrong-certificate",
        SignatureInvalid,
        "a valid signature by another key, whose certificate is in KeyInfo",
        lambda v, a: signed(a),
    ),
    Attack(
        "tampered-amount",
        SignatureInvalid,
        "PayAmt 125000.00 changed to 925000.00",
        _set_text("Body/Voucher/PayAmt", "925000.00"),
    ),
    Attack(
        "tampered-whitespace",
        SignatureInvalid,
        "a space added inside a signed text value",
        _set_text("Body/Voucher/PayeeAcctName", "广西某某建设有限公司 "),
    ),
    Attack(
        "tampered-signature-value",
        SignatureInvalid,
        "one bit of the signature value flipped",
        _tampered_signature_value,
    ),
    Attack(
        "ecdsa-der-value",
        SignatureInvalid,
        "an ECDSA signature value DER-encoded instead of r || s",
        _forged(der=True),
        frozenset({"ec"}),
    ),
    Attack(
        "comment-truncation",
        ForbiddenXml,
        "a comment inside a signed value: C14N drops it, so the signature stays valid",
        _comment_truncation,
    ),
)


# Signed attacks whose signature xmlsec1 finds valid: only the profile of PROTOCOL.md §6 refuses them.
XMLSEC1_ACCEPTS = frozenset(
    {
        "signature-first",
        "signature-in-body",
        "wrapping-id-reference",
        "detached-id-reference",
        "sha1-digest",
        "sha1-signature-method",
        "inclusive-c14n",
        "c14n-with-comments",
        "xpath-transform",
        "enveloped-only",
        "two-references",
        "inclusive-namespaces",
        "comment-truncation",
    }
)


def main(argv: list[str]) -> None:
    """Write every signed attack, for fresh RSA and ECDSA victims, into the directory `argv[0]`."""
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for kind in ("rsa", "ec"):
        victim, attacker = make_keys(kind, "victim"), make_keys(kind, "attacker")
        (out / f"victim-{kind}.pem").write_bytes(victim.cert_pem())
        for attack in ATTACKS:
            if kind in attack.kinds:
                (out / f"{attack.name}-{kind}.xml").write_bytes(attack.build(victim, attacker))
    print(f"wrote the signed attacks and the victims' certificates to {out}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["attacks-generated"])
