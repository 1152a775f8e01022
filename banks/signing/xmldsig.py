"""The enveloped XMLDSig scheme: exactly the profile of PROTOCOL.md §6, on a dialect's own root element.

Nothing here but delegation to :mod:`protocols.signature`: one enveloped signature as the root's last child,
`Reference URI=""`, enveloped-signature then exclusive C14N, SHA-256, RSA-SHA256 or ECDSA-SHA256. The profile
does not depend on the element names, so every dialect that declares this scheme gets the standard's
verification, its attack corpus and its interoperability with `xmlsec1 --verify` unchanged.
"""

from __future__ import annotations

from typing import ClassVar, Final

from lxml import etree

from banks.signing.base import SignatureScheme
from protocols.errors import SignatureProfileViolation
from protocols.signature import DS_NS, ECDSA_SHA256, RSA_SHA256, Signer, Verifier
from protocols.xmlsafe import XmlLimits, parse_document

DS_SIGNATURE: Final = f"{{{DS_NS}}}Signature"


class EnvelopedXmlDsig(SignatureScheme):
    """PROTOCOL.md §6 as it stands, by :mod:`protocols.signature`'s `Signer` and `Verifier`."""

    name: ClassVar[str] = "xmldsig-enveloped"
    methods: ClassVar[frozenset[str]] = frozenset({RSA_SHA256, ECDSA_SHA256})

    def sign_tree(self, root: etree._Element, encoding: str, signer: Signer) -> bytes:
        return signer.sign(root, encoding)

    def sign_bytes(self, document: bytes, signer: Signer, limits: XmlLimits) -> bytes:
        root = parse_document(document, limits)
        if next(root.iter(DS_SIGNATURE), None) is not None:
            raise SignatureProfileViolation("the document is already signed; sign the unsigned document")
        return signer.sign_bytes(document, limits)

    def verify(self, data: bytes, verifier: Verifier, limits: XmlLimits) -> etree._Element:
        return verifier.verify_tree(parse_document(data, limits))

    def strip(self, root: etree._Element) -> None:
        for signature in list(root.iter(DS_SIGNATURE)):
            parent = signature.getparent()
            if parent is not None:
                parent.remove(signature)
