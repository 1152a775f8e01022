"""The restricted XML Signature profile of PROTOCOL.md §6: enveloped, whole document, exc-C14N, SHA-256.

One profile and nothing else: a single ``Signature`` as the last child of the root element, holding one
``Reference`` with ``URI=""``, the transforms enveloped-signature then exclusive C14N, a SHA-256 digest, and an
RSA-SHA256 (PKCS#1 v1.5) or ECDSA-SHA256 (P-256) signature value. It is implemented directly on lxml and
``cryptography``; signxml and xmlsec1 serve as independent peers in the tests.

Verification follows signxml's "see what is signed": the verifier uses only the key pinned for the sender,
never one the document brings in ``KeyInfo``, and what flows on is the verified tree with its signature
removed, which is exactly the node set that was digested. Because the reference is the whole document and the
signature must be the last child of the root, nothing outside the digest can be processed, so signature
wrapping has nowhere to hide.

The profile is checked on the canonical form of ``SignedInfo`` (the very bytes the signature value covers)
with one anchored regular expression: canonical XML is regular enough for that to be exact, it is much
cheaper than walking the elements, and every algorithm the verifier acts upon is read from the signed bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
from collections.abc import Callable
from functools import partial
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from protocols import xmlsafe
from protocols.errors import (
    ForbiddenXml,
    LocalError,
    SignatureInvalid,
    SignatureMissing,
    SignatureProfileViolation,
)

DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
ENVELOPED_SIGNATURE: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SIGNATURE_METHODS: Final = frozenset({RSA_SHA256, ECDSA_SHA256})

_SIGNATURE: Final = f"{{{DS_NS}}}Signature"
_SIGNED_INFO: Final = f"{{{DS_NS}}}SignedInfo"
_SIGNATURE_VALUE: Final = f"{{{DS_NS}}}SignatureValue"
_KEY_INFO: Final = f"{{{DS_NS}}}KeyInfo"
_CHILDREN: Final = ([_SIGNED_INFO, _SIGNATURE_VALUE], [_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO])

_P256_BYTES: Final = 32
_PKCS1: Final = padding.PKCS1v15()
_HASH: Final = hashes.SHA256()
_ECDSA: Final = ec.ECDSA(hashes.SHA256())


def _c14n(node: etree._Element | etree._ElementTree) -> bytes:
    """Exclusive XML Canonicalization 1.0 without comments, as every step of the profile uses it."""
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


# --- the canonical SignedInfo -------------------------------------------------------------------------------
# What the signer writes, in canonical form: the default-namespace form of PROTOCOL.md §3.
_SI_BODY: Final = (
    f'<CanonicalizationMethod Algorithm="{EXC_C14N}"></CanonicalizationMethod>'
    '<SignatureMethod Algorithm="{method}"></SignatureMethod>'
    '<Reference URI=""><Transforms>'
    f'<Transform Algorithm="{ENVELOPED_SIGNATURE}"></Transform><Transform Algorithm="{EXC_C14N}"></Transform>'
    f'</Transforms><DigestMethod Algorithm="{SHA256}"></DigestMethod><DigestValue>'
)
_SI_END: Final = b"</DigestValue></Reference></SignedInfo>"


def _signed_info_pattern() -> re.Pattern[bytes]:
    """The canonical SignedInfo of the profile, with any one prefix (or none) and whitespace between tags."""
    ws = rb"(?:[ \t\n]|&#xD;)*"  # whitespace text; canonical form writes a carriage return as &#xD;

    def tag(name: str, attributes: bytes = b"") -> bytes:
        return rb"<(?(p)(?P=p):)" + name.encode() + attributes + rb">" + ws

    def end(name: str) -> bytes:
        return rb"</(?(p)(?P=p):)" + name.encode() + rb">" + ws

    def algorithm(uri: str) -> bytes:
        return b' Algorithm="' + re.escape(uri.encode()) + b'"'

    return re.compile(
        rb'<(?:(?P<p>[A-Za-z_][A-Za-z0-9._-]*):)?SignedInfo xmlns(?(p):(?P=p))="'
        + re.escape(DS_NS.encode())
        + rb'">'
        + ws
        + tag("CanonicalizationMethod", algorithm(EXC_C14N))
        + end("CanonicalizationMethod")
        + tag("SignatureMethod", rb' Algorithm="(?P<method>[^"]*)"')
        + end("SignatureMethod")
        + tag("Reference", b' URI=""')
        + tag("Transforms")
        + tag("Transform", algorithm(ENVELOPED_SIGNATURE))
        + end("Transform")
        + tag("Transform", algorithm(EXC_C14N))
        + end("Transform")
        + end("Transforms")
        + tag("DigestMethod", rb' Algorithm="(?P<digest_method>[^"]*)"')
        + end("DigestMethod")
        + rb"<(?(p)(?P=p):)DigestValue>(?P<digest>[^<]*)"
        + end("DigestValue")
        + end("Reference")
        + rb"</(?(p)(?P=p):)SignedInfo>"
    )


_SIGNED_INFO_C14N: Final = _signed_info_pattern()


def _base64(text: str, what: str) -> bytes:
    """Decode a base64Binary value; XML whitespace (xmlsec1 breaks lines) is allowed, nothing else."""
    try:
        return base64.b64decode(text.encode("ascii").translate(None, b" \t\r\n"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise SignatureProfileViolation(f"{what} is not base64") from None


# --- keys -------------------------------------------------------------------------------------------------


def _sign_ecdsa(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-SHA256 as XMLDSig writes it: the raw r || s, not DER (RFC 4051 §3.3)."""
    r, s = decode_dss_signature(key.sign(data, _ECDSA))
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    """Verify a raw r || s ECDSA-SHA256 value; raises InvalidSignature."""
    if len(signature) != 2 * _P256_BYTES:
        raise InvalidSignature(f"an ECDSA P-256 value has {2 * _P256_BYTES} bytes, not {len(signature)}")
    r = int.from_bytes(signature[:_P256_BYTES], "big")
    s = int.from_bytes(signature[_P256_BYTES:], "big")
    key.verify(encode_dss_signature(r, s), data, _ECDSA)


def _unsupported(key: object) -> LocalError:
    return LocalError(f"unsupported key {type(key).__name__}: PROTOCOL.md §6 allows RSA and ECDSA P-256")


# --- signing ----------------------------------------------------------------------------------------------


class Signer:
    """Signs documents with one private key, as PROTOCOL.md §6 prescribes.

    The signature is written in the default-namespace form of PROTOCOL.md §3 and, apart from the digest and
    signature values, is a precomputed template: the document is canonicalized once, nothing is re-parsed
    but the new ``Signature`` element itself.

    Args:
        key: An RSA or ECDSA P-256 private key.
        cert: The signer's certificate; it must hold `key`'s public key.
        include_cert: Whether to put `cert` into ``KeyInfo/X509Data`` (for the peer's information only:
            verifiers use the certificate they have pinned).

    Raises:
        LocalError: The key is of another type or curve, or `cert` is not the key's certificate.
    """

    def __init__(
        self,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        cert: x509.Certificate | None = None,
        include_cert: bool = True,
    ) -> None:
        self._sign: Callable[[bytes], bytes]
        if isinstance(key, rsa.RSAPrivateKey):
            method = RSA_SHA256
            self._sign = partial(key.sign, padding=_PKCS1, algorithm=_HASH)
        elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            method = ECDSA_SHA256
            self._sign = partial(_sign_ecdsa, key)
        else:
            raise _unsupported(key)
        if cert is not None and cert.public_key() != key.public_key():
            raise LocalError("the certificate does not hold the signing key's public key")
        body = _SI_BODY.format(method=method)
        self.signature_method = method
        self._signed_info_c14n = f'<SignedInfo xmlns="{DS_NS}">{body}'.encode()
        self._signature_start = f'<Signature xmlns="{DS_NS}"><SignedInfo>{body}'.encode()
        key_info = b""
        if cert is not None and include_cert:
            der = base64.b64encode(cert.public_bytes(Encoding.DER))
            key_info = b"<KeyInfo><X509Data><X509Certificate>" + der + b"</X509Certificate></X509Data></KeyInfo>"
        self._signature_end = b"</SignatureValue>" + key_info + b"</Signature>"

    def sign_value(self, data: bytes) -> bytes:
        """The raw signature value of `data`: RSA-SHA256 PKCS#1 v1.5, or ECDSA-SHA256 as raw r || s (64 bytes
        for P-256, RFC 4051 §3.3). For dialects whose signatures are detached rather than XMLDSig (`banks/`)."""
        return self._sign(data)

    def sign(self, root: etree._Element, encoding: str | None = None) -> bytes:
        """Return the document of `root`, serialized, with the enveloped signature as the root's last child.

        The tree itself is not modified: the signature goes into the serialized bytes only, so signing costs
        one canonicalization and one serialization besides the key operation.

        Args:
            root: The unsigned document's root element.
            encoding: The encoding to write; by default the document's own (as parsed, or UTF-8).

        Returns:
            The signed document's bytes with its XML declaration (see :func:`protocols.xmlsafe.serialize`).

        Raises:
            LocalError: `root` is not a document's root element, it is already signed, or the encoding is
                not supported.
        """
        if root.getparent() is not None:
            raise LocalError('only a document\'s root element can be signed (the reference is URI="")')
        name = encoding or root.getroottree().docinfo.encoding or "UTF-8"
        return self._insert_signature(root, xmlsafe.serialize(root, name), name)

    def sign_bytes(self, data: bytes, limits: xmlsafe.XmlLimits = xmlsafe.DEFAULT_LIMITS) -> bytes:
        """Sign a document given as bytes: the same bytes with the signature inserted before the root's end tag.

        The document is parsed (and so checked) by :func:`protocols.xmlsafe.parse_document`; everything
        else in it, the XML declaration and the encoding included, is kept byte for byte.

        Raises:
            XmlError: The document cannot be parsed safely.
            LocalError: It is already signed.
        """
        root = xmlsafe.parse_document(data, limits)
        return self._insert_signature(root, data, root.getroottree().docinfo.encoding or "UTF-8")

    def _insert_signature(self, root: etree._Element, document: bytes, encoding: str) -> bytes:
        """Sign the document of `root` and insert the signature into `document`, its serialized form."""
        if next(root.iter(_SIGNATURE), None) is not None:
            raise LocalError("the document already carries a signature")
        # PROTOCOL.md §6: the digest is over the whole document, which does not yet hold the signature.
        digest = base64.b64encode(hashlib.sha256(_c14n(root.getroottree())).digest()) + _SI_END
        value = base64.b64encode(self._sign(self._signed_info_c14n + digest))
        signature = self._signature_start + digest + b"<SignatureValue>" + value + self._signature_end
        # The root's end tag is the document's last "</" (nothing but whitespace may follow it, and "<" and
        # "/" never occur inside a multi-byte character of a supported encoding, see protocols.xmlsafe).
        at = document.rfind(b"</")
        if at < 0:  # an empty root element, written <Message/>
            at = document.rindex(b"/>")
            qname = (
                etree.QName(root).localname if root.prefix is None else f"{root.prefix}:{etree.QName(root).localname}"
            )
            end_tag = b"</" + qname.encode(encoding) + b">"
            return document[:at] + b">" + signature + end_tag + document[at + 2 :]
        return document[:at] + signature + document[at:]


# --- verification -----------------------------------------------------------------------------------------


class Verifier:
    """Verifies documents against one pinned certificate or public key, as PROTOCOL.md §6 prescribes.

    Args:
        cert_or_public_key: The certificate pinned for the sender node, or its RSA / ECDSA P-256 public key.
            ``KeyInfo`` in a document is never used.

    Raises:
        LocalError: The key is of another type or curve.
    """

    def __init__(self, cert_or_public_key: x509.Certificate | rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> None:
        key = (
            cert_or_public_key.public_key() if isinstance(cert_or_public_key, x509.Certificate) else cert_or_public_key
        )
        self._verify: Callable[[bytes, bytes], None]
        self.signature_method: str
        if isinstance(key, rsa.RSAPublicKey):
            self.signature_method = RSA_SHA256
            self._verify = partial(key.verify, padding=_PKCS1, algorithm=_HASH)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            self.signature_method = ECDSA_SHA256
            self._verify = partial(_verify_ecdsa, key)
        else:
            raise _unsupported(key)

    def verify_value(self, value: bytes, data: bytes) -> None:
        """Check a raw signature value (as :meth:`Signer.sign_value` makes it) of `data` with the pinned key.

        Raises:
            SignatureInvalid: The value does not verify with the pinned key.
        """
        try:
            self._verify(value, data)
        except InvalidSignature:
            raise SignatureInvalid("the signature value does not verify with the pinned key") from None

    def verify_bytes(self, data: bytes, limits: xmlsafe.XmlLimits = xmlsafe.DEFAULT_LIMITS) -> etree._Element:
        """Parse an untrusted document (:func:`protocols.xmlsafe.parse_document`) and :meth:`verify_tree` it.

        Raises:
            XmlError: The document cannot be parsed safely (see :func:`protocols.xmlsafe.parse_document`).
            SignatureError: See :meth:`verify_tree`.
        """
        return self.verify_tree(xmlsafe.parse_document(data, limits))

    def verify_tree(self, root: etree._Element) -> etree._Element:
        """Verify the document's signature, then remove it and return the root: only this tree flows on.

        On success the tree equals the node set that was digested (the enveloped-signature transform keeps
        the text that followed the signature). On failure the tree is left as it was.

        Args:
            root: The document's root element.

        Returns:
            `root`, without its ``Signature``.

        Raises:
            SignatureMissing: No ``ds:Signature`` in the document.
            SignatureProfileViolation: More than one signature, one that is not the root's last child, or
                one that is not of the profile (reference, transforms, algorithms, ``Object`` …).
            SignatureInvalid: The signature value does not verify with the pinned key, the document was
                signed for another key type, or the digest does not match the document.
            ForbiddenXml: The tree holds a comment, processing instruction or entity reference (a tree from
                :func:`protocols.xmlsafe.parse_document` never does).
            LocalError: `root` is not a document's root element.
        """
        if root.getparent() is not None:
            raise LocalError('only a document\'s root element can be verified (the reference is URI="")')
        if (
            root.getprevious() is not None
            or root.getnext() is not None
            or next(root.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity), None) is not None
        ):
            # Canonicalization drops comments, so a comment could split a signed value without breaking the
            # signature (the SAML "comment truncation" attack); protocols.xmlsafe never lets one in.
            raise ForbiddenXml("the tree holds comments, processing instructions or entity references")
        signatures = list(itertools.islice(root.iter(_SIGNATURE), 2))
        if not signatures:
            raise SignatureMissing("the document carries no ds:Signature (PROTOCOL.md §6)")
        if len(signatures) > 1:
            raise SignatureProfileViolation("the document carries more than one ds:Signature (PROTOCOL.md §6)")
        signature = signatures[0]
        if signature.getparent() is not root or signature.getnext() is not None:
            raise SignatureProfileViolation("the ds:Signature must be the last child of the root element")
        if [child.tag for child in signature] not in _CHILDREN:
            raise SignatureProfileViolation("a ds:Signature holds SignedInfo, SignatureValue and maybe KeyInfo only")
        signed_info = _c14n(signature[0])
        profile = _SIGNED_INFO_C14N.fullmatch(signed_info)
        if profile is None:
            raise SignatureProfileViolation(
                'SignedInfo is not of the profile: one Reference URI="", transforms enveloped-signature and '
                "exc-c14n, exc-c14n canonicalization (PROTOCOL.md §6)"
            )
        method = profile["method"].decode()
        if method not in SIGNATURE_METHODS:
            raise SignatureProfileViolation(f"signature method {method} is not allowed (PROTOCOL.md §6)")
        digest_method = profile["digest_method"].decode()
        if digest_method != SHA256:
            raise SignatureProfileViolation(f"digest method {digest_method} is not allowed (PROTOCOL.md §6)")
        digest = _base64(profile["digest"].decode().replace("&#xD;", ""), "DigestValue")
        value = _base64(signature[1].text or "", "SignatureValue")
        if method != self.signature_method:
            raise SignatureInvalid(f"signed with {method}, but the pinned key is for {self.signature_method}")
        try:
            self._verify(value, signed_info)
        except InvalidSignature:
            raise SignatureInvalid("the signature value does not verify with the pinned key") from None
        restore = _remove_enveloped(root, signature)
        if not hmac.compare_digest(hashlib.sha256(_c14n(root.getroottree())).digest(), digest):
            restore()
            raise SignatureInvalid("the digest does not match: the document was altered after signing")
        return root


def _remove_enveloped(root: etree._Element, signature: etree._Element) -> Callable[[], None]:
    """Remove `signature` as the enveloped-signature transform does, and return how to put it back.

    The transform removes the element only; lxml keeps the text that follows an element as its ``tail`` and
    would drop it with the element, so the tail is first joined to the previous sibling's tail (or, with no
    previous sibling, to the parent's text).
    """
    previous = signature.getprevious()
    before = root.text if previous is None else previous.tail
    if signature.tail:
        joined = (before or "") + signature.tail
        if previous is None:
            root.text = joined
        else:
            previous.tail = joined
    root.remove(signature)  # the tail text goes with the element and comes back with it on restore

    def restore() -> None:
        if previous is None:
            root.text = before
        else:
            previous.tail = before
        root.append(signature)

    return restore
