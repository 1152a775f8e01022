"""The one exception tree of the exchange standard's core, each error carrying its 9120 result code.

Errors split into "the peer broke the protocol" (:class:`PeerError` and its children: what a bank sent is
wrong, and the reply says so with a PROTOCOL.md §4 result code) and "we broke it" (:class:`LocalError`: our
own caller asked for something impossible, such as encoding a frame larger than the maximum). Callers that
handle untrusted bytes catch :class:`ProtocolError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ResultCode(IntEnum):
    """`9120/Result` codes of PROTOCOL.md §4."""

    OK = 90000
    MALFORMED = 91001
    INVALID = 91002
    BAD_SIGNATURE = 91003
    UNKNOWN_SENDER = 91004
    MSGID_REUSED = 91005
    REFUSED = 91006
    TEMPORARY = 91099


class ProtocolError(Exception):
    """Base of every error raised by `protocols/` (and by the bank dialects built on it)."""

    result_code: ResultCode = ResultCode.MALFORMED


class PeerError(ProtocolError):
    """The peer sent something the standard does not allow."""


class LocalError(ProtocolError):
    """Our own caller asked for something the standard does not allow (a bug on our side, not the peer's)."""


# --- framing (PROTOCOL.md §2) -------------------------------------------------------------------------------


class FramingError(PeerError):
    """The byte stream cannot be cut into frames; the connection must be closed after the reply."""

    result_code = ResultCode.MALFORMED


class BadFrameHeader(FramingError):
    """A length header that is not of the declared form (not all digits, impossible value)."""


class FrameTooLarge(FramingError):
    """A frame whose declared body length exceeds the configured maximum."""


class FrameTooLargeToSend(LocalError):
    """We were asked to frame a body larger than the configured maximum or than the header can express."""


# --- XML (PROTOCOL.md §3) -----------------------------------------------------------------------------------


class XmlError(PeerError):
    """The document is not well-formed XML, or uses a forbidden construct, or breaks a size cap."""

    result_code = ResultCode.MALFORMED


class ForbiddenXml(XmlError):
    """A DTD, an entity declaration or reference, or an external reference."""


class XmlLimitExceeded(XmlError):
    """The document is larger, deeper or has more elements than the configured caps allow."""


# --- message validation ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: the field it concerns (a slash path such as `Body/Voucher/PayAmt`) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(PeerError):
    """The document is well-formed but breaks the schema or a business rule; `problems` names every field."""

    result_code = ResultCode.INVALID

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid message")

    @property
    def add_word(self) -> str:
        """Text for the reply's `AddWord`: the first problem, which names its field (PROTOCOL.md §4)."""
        return str(self.problems[0]) if self.problems else "invalid message"


class UnknownMessageType(ValidationError):
    """A `MsgNo` (or payload element) that the standard does not define."""


# --- signatures (PROTOCOL.md §6) ------------------------------------------------------------------------------


class SignatureError(PeerError):
    """The signature is missing, malformed, not of the profile, or does not verify with the pinned key."""

    result_code = ResultCode.BAD_SIGNATURE


class SignatureMissing(SignatureError):
    """The document carries no signature."""


class SignatureProfileViolation(SignatureError):
    """The signature exists but is not of the standard's restricted profile (more than one, wrong place,
    wrong reference, other transforms, SHA-1, unknown algorithm)."""


class SignatureInvalid(SignatureError):
    """The digest or the signature value does not match: the document was altered or signed by another key."""
