"""The standard dialect: exactly the exchange standard of PROTOCOL.md (8-digit framing, UTF-8, XMLDSig)."""

from __future__ import annotations

import hashlib

from lxml import etree

from banks.dialect import Dialect, Inbound, RawHead
from protocols import codec, rules, schema
from protocols.errors import Problem, ProtocolError, SignatureProfileViolation
from protocols.framing import STANDARD
from protocols.messages import Message
from protocols.signature import Signer, Verifier
from protocols.xmlsafe import parse_document

DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"


def body_digest(root: etree._Element) -> str:
    """SHA-256 hex of the exclusive C14N of `Body` (PROTOCOL.md §7: "the same content")."""
    body = root.find("Body")
    canonical = b"" if body is None else etree.tostring(body, method="c14n", exclusive=True)
    return hashlib.sha256(canonical).hexdigest()


class StandardDialect(Dialect):
    """PROTOCOL.md as written; every other dialect is measured against this one."""

    code = "standard"
    title = "Exchange standard v1 (PROTOCOL.md)"
    framing = STANDARD
    encoding = "UTF-8"

    def _encode(self, message: Message, signer: Signer) -> bytes:
        return signer.sign(codec.to_indented_tree(message), self.encoding)

    def decode(self, data: bytes, verifier: Verifier) -> Inbound:
        root = verifier.verify_tree(parse_document(data, self.limits))
        message = codec.from_tree(root)
        return Inbound(message=message, raw=data, content_digest=body_digest(root))

    def peek_head(self, data: bytes) -> RawHead:
        try:
            head = codec.head_of(parse_document(data, self.limits))
        except ProtocolError:
            return RawHead()
        return RawHead(msg_id=head.get("MsgId", ""), msg_no=head.get("MsgNo", ""), src=head.get("Src", ""))

    def check(self, data: bytes) -> list[Problem]:
        root = parse_document(data, self.limits)
        for signature in root.findall(DS_SIGNATURE):
            root.remove(signature)  # the schema allows it; checking it needs the sender's certificate
        payload_type = codec.payload_type_of(root)
        problems = schema.check(root, payload_type)
        if problems:
            return problems
        try:
            message = codec.from_tree(root)
        except ProtocolError as exc:
            return list(getattr(exc, "problems", [Problem("Message", str(exc))]))
        return rules.check(message)

    def sign_document(self, data: bytes, signer: Signer) -> bytes:
        root = parse_document(data, self.limits)
        if root.find(DS_SIGNATURE) is not None:
            raise SignatureProfileViolation("the document is already signed; sign the unsigned document")
        encoding = root.getroottree().docinfo.encoding or self.encoding
        return signer.sign(root, encoding)

    def verify_document(self, data: bytes, verifier: Verifier) -> None:
        verifier.verify_tree(parse_document(data, self.limits))


STANDARD_DIALECT = StandardDialect()
