"""What a bank dialect is: framing, encoding and a codec between its wire documents and canonical messages.

The gateway and the simulators talk to every bank through this interface and never see a bank's format
(STYLE.md §3). A dialect encodes a canonical :class:`~protocols.messages.Message` into the signed bytes of one
frame body, and decodes a frame body into a verified canonical message, raising only
:class:`~protocols.errors.ProtocolError` subclasses whose `result_code` is the reply's `Result`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from banks.statement_format import STANDARD_STATEMENT, StatementSource
from protocols.errors import LocalError, Problem
from protocols.framing import FrameSpec
from protocols.messages import Message, Payload
from protocols.signature import ECDSA_SHA256, RSA_SHA256, Signer, Verifier
from protocols.xmlsafe import DEFAULT_LIMITS, XmlLimits


@dataclass(frozen=True, slots=True)
class Inbound:
    """A verified inbound message.

    Attributes:
        message: The canonical message decoded from the verified document only.
        raw: The frame body exactly as received (for the archive, PROTOCOL.md §6).
        content_digest: SHA-256 hex of the body's canonical form: the same `MsgId` with another digest is
            a reuse with different content (91005, PROTOCOL.md §7).
    """

    message: Message
    raw: bytes
    content_digest: str


@dataclass(frozen=True, slots=True)
class RawHead:
    """What could be read of an undecodable document's head, to address the rejection. Untrusted."""

    msg_id: str = ""
    msg_no: str = ""
    src: str = ""


class Unsupported(LocalError):
    """The dialect does not carry this message type; the gateway refuses to send it to that bank."""


class Dialect(abc.ABC):
    """A bank's wire format. Subclasses declare `code`, `title`, `framing`, `encoding` and the codec."""

    code: str
    title: str
    framing: FrameSpec
    encoding: str
    limits: XmlLimits = DEFAULT_LIMITS
    #: Payload types this dialect does not carry (documented in docs/banks/<code>.md).
    unsupported: frozenset[type[Payload]] = frozenset()
    #: The signature methods (:mod:`protocols.signature` URIs, which stand for the key types: RSA or ECDSA
    #: P-256) this dialect signs and verifies with. A dialect whose scheme fixes one refuses a signer of the
    #: other type (`banks.signing.KeyTypeMismatch`) and fails to verify with a pinned certificate of it; the
    #: gateway and `tgw init` can read this to give each bank a key it accepts.
    signature_methods: frozenset[str] = frozenset({RSA_SHA256, ECDSA_SHA256})
    #: The file the bank delivers its end-of-day statement in (`tgw reconcile --statement` reads it by default,
    #: the simulated bank writes it): the standard's 4006 document unless the dialect declares otherwise.
    statement_format: StatementSource = STANDARD_STATEMENT

    def supports(self, payload_type: type[Payload]) -> bool:
        """Whether messages of this payload type can be sent to (and received from) this dialect."""
        return payload_type not in self.unsupported

    def encode(self, message: Message, signer: Signer) -> bytes:
        """The signed frame body of a canonical message.

        Raises:
            Unsupported: the dialect does not carry this message type.
        """
        if not self.supports(type(message.body)):
            raise Unsupported(f"the {self.code} dialect does not carry {type(message.body).__name__}")
        return self._encode(message, signer)

    @abc.abstractmethod
    def _encode(self, message: Message, signer: Signer) -> bytes: ...

    @abc.abstractmethod
    def decode(self, data: bytes, verifier: Verifier) -> Inbound:
        """Parse, verify with the pinned `verifier`, validate and decode one frame body.

        Raises:
            ProtocolError: a subclass whose `result_code` says what was wrong (91001, 91002, 91003).
        """

    @abc.abstractmethod
    def peek_head(self, data: bytes) -> RawHead:
        """Best-effort, untrusted read of a document's head; never raises."""

    @abc.abstractmethod
    def check(self, data: bytes) -> list[Problem]:
        """Every schema and business-rule problem of an (unverified) document, for integrators' tools.

        Raises:
            ProtocolError: the document cannot even be parsed (not XML, forbidden construct, unknown type).
        """

    @abc.abstractmethod
    def sign_document(self, data: bytes, signer: Signer) -> bytes:
        """Sign an existing unsigned document of this dialect (integrators' tools)."""

    @abc.abstractmethod
    def verify_document(self, data: bytes, verifier: Verifier) -> None:
        """Check only the signature of a document with the pinned `verifier`.

        Raises:
            ProtocolError: the document is unreadable or its signature is missing, off-profile or invalid.
        """
