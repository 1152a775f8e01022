"""Detached signatures over the exact bytes of the frame body, carried base64 in an element of the head.

The model is the bank front-ends that sign "the message" as a byte string and put the value into a header
field (DOMAIN.md, "How bank front-end interfaces differ on the wire"), rather than using XMLDSig. Made exact:

* **What is signed** is the frame body (the whole XML document, declaration included) *without the signature
  element*: the bytes from the first to the last, with the one element `<E>…</E>` cut out. Head and body are
  both covered, so every field the gateway acts on (`Src`, `MsgId`, `MsgRef`, the amounts) is signed.
* **Where the value goes**: the element `E` (declared per dialect), the last element of the head, holding the
  base64 of the value and nothing else. The signer inserts it right after the head's last child, that is
  before the whitespace that precedes the head's end tag, so cutting it out gives back the unsigned document
  byte for byte: the golden vector of a message *is* what its signature covers.
* **Verification** parses the document with :func:`protocols.xmlsafe.parse_document` (caps, no DTD), checks
  that there is exactly one signature element, in its place and with base64 only, cuts it out of the bytes,
  verifies the value over the rest with the pinned key, and then parses *those verified bytes* again: the
  tree that is decoded is the parse of exactly what was verified, so there is no second document for a
  signature-wrapping attack to hide in.

The byte search is exact for the same reason as the byte scan of :mod:`protocols.xmlsafe`: in the supported
encodings `<` never occurs inside a multi-byte character, literal `<` cannot occur in text or attribute
values, and comments, CDATA and processing instructions are refused, so `<E>` and `</E>` occur exactly where
such tags are. Namespaces are refused in these documents, so no `<E>` can belong to another vocabulary.

Each named scheme fixes its algorithm (a bank's specification names one), in :mod:`banks.signing.rsa_detached`
and :mod:`banks.signing.ecdsa_detached`; a key of the other type is refused with a clear error, never adapted.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from lxml import etree

from banks.signing.base import SignatureScheme, sign_value, verify_value
from protocols.errors import SignatureMissing, SignatureProfileViolation
from protocols.signature import Signer, Verifier
from protocols.xmlsafe import XmlLimits, parse_document, serialize

_XML_SPACE: Final = b" \t\r\n"


class DetachedSignature(SignatureScheme):
    """The detached scheme for one dialect's layout (see the module docstring).

    Args:
        dialect: The dialect's code, for error messages.
        root: The dialect's root element.
        head: The dialect's head element (the root's first child), which holds the signature element.
        element: The signature element.
    """

    def __init__(self, dialect: str, *, root: str, head: str, element: str) -> None:
        super().__init__(dialect)
        self.root, self.head, self.element = root, head, element
        self._open = f"<{element}>".encode("ascii")
        self._close = f"</{element}>".encode("ascii")
        self._head_end = f"</{head}>".encode("ascii")

    # --- signing ----------------------------------------------------------------------------------------------

    def sign_tree(self, root: etree._Element, encoding: str, signer: Signer) -> bytes:
        self.check_signer(signer)
        return self._insert(serialize(root, encoding), signer)

    def sign_bytes(self, document: bytes, signer: Signer, limits: XmlLimits) -> bytes:
        self.check_signer(signer)
        root = parse_document(document, limits)
        self._head_of(root)
        if next(root.iter(self.element), None) is not None:
            raise SignatureProfileViolation("the document is already signed; sign the unsigned document")
        if document.count(self._head_end) != 1:
            raise SignatureProfileViolation(
                f"the head's end tag must be written {self._head_end.decode()} (no spaces), exactly once"
            )
        return self._insert(document, signer)

    def _insert(self, document: bytes, signer: Signer) -> bytes:
        """Sign `document` and insert the signature element right after the head's last child."""
        at = document.index(self._head_end)
        while at > 0 and document[at - 1] in _XML_SPACE:
            at -= 1
        value = base64.b64encode(sign_value(signer, document))
        return document[:at] + self._open + value + self._close + document[at:]

    # --- verification -----------------------------------------------------------------------------------------

    def verify(self, data: bytes, verifier: Verifier, limits: XmlLimits) -> etree._Element:
        self.check_verifier(verifier)
        root = parse_document(data, limits)
        head = self._head_of(root)
        found = list(root.iter(self.element))
        if not found:
            raise SignatureMissing(f"the document carries no {self.element} signature in its {self.head}")
        if len(found) > 1:
            raise SignatureProfileViolation(f"the document carries {len(found)} {self.element} signatures, not one")
        signature = found[0]
        if signature.getparent() is not head or signature.getnext() is not None:
            raise SignatureProfileViolation(f"the {self.element} signature must be the last element of {self.head}")
        if len(signature) or signature.attrib:
            raise SignatureProfileViolation(f"{self.element} holds the base64 signature value and nothing else")
        if not (signature.text or "").strip():
            raise SignatureMissing(f"the {self.element} signature is empty")
        if data.count(self._open) != 1 or data.count(self._close) != 1:
            raise SignatureProfileViolation(
                f"the signature must be written {self._open.decode()}…{self._close.decode()}, exactly once"
            )
        start = data.index(self._open)
        end = data.index(self._close)
        try:
            value = base64.b64decode(data[start + len(self._open) : end].translate(None, _XML_SPACE), validate=True)
        except binascii.Error:
            raise SignatureProfileViolation(f"the {self.element} signature value is not base64") from None
        signed = data[:start] + data[end + len(self._close) :]
        verify_value(verifier, value, signed)
        # "See what is signed": decode the parse of exactly the verified bytes, nothing else.
        return parse_document(signed, limits)

    def strip(self, root: etree._Element) -> None:
        for signature in list(root.iter(self.element)):
            _remove_keeping_tail(signature)

    def _head_of(self, root: etree._Element) -> etree._Element:
        """The head element of a document of this layout, which must use no namespaces.

        Raises:
            SignatureProfileViolation: Another root, no head first, or a namespaced element.
        """
        if root.tag != self.root or len(root) == 0 or root[0].tag != self.head:
            raise SignatureProfileViolation(
                f"not a {self.dialect} document: the root must be {self.root} and its first element {self.head}"
            )
        if any(element.tag[0] == "{" for element in root.iter()):
            raise SignatureProfileViolation(f"{self.dialect} documents use no XML namespaces")
        return root[0]


def _remove_keeping_tail(element: etree._Element) -> None:
    """Remove `element` from its parent but keep the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    previous = element.getprevious()
    if element.tail:
        if previous is None:
            parent.text = (parent.text or "") + element.tail
        else:
            previous.tail = (previous.tail or "") + element.tail
    parent.remove(element)
