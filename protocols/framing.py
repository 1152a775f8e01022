"""Sans-I/O length-prefix framing (PROTOCOL.md §2): a declarative frame spec, an encoder and a stream decoder.

The standard frames every message as an 8-byte zero-padded ASCII decimal body length followed by the body
(PROTOCOL.md §2). Bank dialects (STYLE.md §3) declare their own framing as data, a :class:`FrameSpec`: an
ASCII decimal header of 4, 5, 6, 8 or 10 digits, or a big-endian unsigned binary header of 2 or 4 bytes,
counting either the body only or the header plus the body, with a maximum body size.

Nothing here touches a socket, a reactor or a clock: :func:`encode_frame` turns a body into bytes to send and
:class:`FrameDecoder` turns received bytes, in whatever chunks they arrive, into complete frame bodies.

Design decisions:

* **Zero-length bodies are frames.** A header declaring an empty body yields ``b""`` and the encoder frames
  ``b""``. Framing has no opinion on content; for the standard dialect the XML layer rejects an empty
  document (91001), which gives the peer a proper reply instead of a framing-level disconnect.
* **A maximum the header cannot express is rejected, not clamped.** ``FrameSpec(..., max_body_bytes=...)``
  raises :class:`ValueError` when the maximum exceeds :attr:`FrameSpec.max_expressible_body_bytes` (for
  example the default 4 MiB with a 6-digit or a 2-byte header). Clamping would silently give a dialect a
  different limit from the one it wrote down; the author of the dialect must state the real limit.
* **Errors are detected as soon as the header is complete.** A header that is not of the declared form, or
  declares a body above the maximum, raises before any body byte is awaited, so an oversized length never
  causes buffering. The buffer is capped at :attr:`FrameSpec.buffer_cap_bytes` (header plus maximum body).
* **A failed decoder stays failed.** Once the stream cannot be cut into frames there is no way to find the
  next frame boundary, so every later :meth:`FrameDecoder.feed` raises the same error (PROTOCOL.md §2: reply
  91001 if possible, then close).
* **No frame is lost to chunking.** Frames completed earlier in the same :meth:`FrameDecoder.feed` call as a
  bad header are kept in :attr:`FrameDecoder.frames_before_error`, so the sequence of good frames the caller
  can see before the error does not depend on how the bytes were chunked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from protocols.errors import BadFrameHeader, FrameTooLarge, FrameTooLargeToSend, FramingError

#: The default maximum body size of PROTOCOL.md §2: 4 MiB.
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024


class HeaderKind(enum.Enum):
    """How the length header is written."""

    #: Zero-padded ASCII decimal digits (`00001234`), one byte per digit.
    ASCII_DECIMAL = "ascii-decimal"
    #: Big-endian unsigned binary integer.
    BINARY_BIG_ENDIAN = "binary-big-endian"


#: The header widths each kind supports: digits for ASCII decimal, bytes for binary (either way, bytes).
SUPPORTED_WIDTHS: Final[dict[HeaderKind, frozenset[int]]] = {
    HeaderKind.ASCII_DECIMAL: frozenset({4, 5, 6, 8, 10}),
    HeaderKind.BINARY_BIG_ENDIAN: frozenset({2, 4}),
}


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """A declared framing: header kind and width, what the length counts, and the maximum body size.

    Attributes:
        header_kind: ASCII decimal or big-endian binary.
        header_width: digits (ASCII decimal: 4, 5, 6, 8 or 10) or bytes (binary: 2 or 4). An ASCII digit
            is one byte, so this is also the header's size in bytes (:attr:`header_bytes`).
        length_includes_header: True if the declared length counts the header itself plus the body,
            False (the standard, PROTOCOL.md §2) if it counts the body only.
        max_body_bytes: the largest body accepted or sent; at least 1 and at most
            :attr:`max_expressible_body_bytes`.

    Raises:
        TypeError: a field of the wrong type.
        ValueError: an unsupported width, or a maximum below 1 or above what the header can express
            (rejected rather than clamped, see the module docstring).
    """

    header_kind: HeaderKind
    header_width: int
    length_includes_header: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.header_kind, HeaderKind):
            raise TypeError(f"header_kind must be a HeaderKind, not {type(self.header_kind).__name__}")
        for name in ("header_width", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not isinstance(self.length_includes_header, bool):
            raise TypeError(f"length_includes_header must be a bool, not {type(self.length_includes_header).__name__}")
        widths = SUPPORTED_WIDTHS[self.header_kind]
        if self.header_width not in widths:
            raise ValueError(f"{self.header_kind.value} headers are {sorted(widths)} wide, not {self.header_width}")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, not {self.max_body_bytes}")
        if self.max_body_bytes > self.max_expressible_body_bytes:
            raise ValueError(
                f"max_body_bytes {self.max_body_bytes} exceeds the {self.max_expressible_body_bytes} bytes "
                f"a {self.header_width}-wide {self.header_kind.value} header can express"
            )

    @property
    def header_bytes(self) -> int:
        """The size of the length header in bytes."""
        return self.header_width

    @property
    def max_declared_length(self) -> int:
        """The largest value the header can hold (`99999999` for 8 ASCII digits, 65535 for 2 bytes)."""
        if self.header_kind is HeaderKind.ASCII_DECIMAL:
            # int(): typeshed types int ** int as Any (a negative exponent would give a float).
            return int(10**self.header_width) - 1
        return (1 << (8 * self.header_width)) - 1

    @property
    def max_expressible_body_bytes(self) -> int:
        """The largest body the header can express (less the header when the length counts it)."""
        return self.max_declared_length - (self.header_bytes if self.length_includes_header else 0)

    @property
    def buffer_cap_bytes(self) -> int:
        """The most bytes a :class:`FrameDecoder` of this spec ever holds: one header plus one maximum body."""
        return self.header_bytes + self.max_body_bytes


#: The standard dialect (PROTOCOL.md §2): 8 ASCII digits, counting the body only, 4 MiB at most.
STANDARD: Final = FrameSpec(HeaderKind.ASCII_DECIMAL, 8, length_includes_header=False)


def encode_header(spec: FrameSpec, body_bytes: int) -> bytes:
    """Return the length header announcing a body of `body_bytes` bytes.

    Raises:
        FrameTooLargeToSend: `body_bytes` is above `spec.max_body_bytes` (which the header can always express).
    """
    if body_bytes > spec.max_body_bytes:
        raise FrameTooLargeToSend(f"body of {body_bytes} bytes exceeds the maximum of {spec.max_body_bytes} bytes")
    declared = body_bytes + (spec.header_bytes if spec.length_includes_header else 0)
    if spec.header_kind is HeaderKind.ASCII_DECIMAL:
        return b"%0*d" % (spec.header_width, declared)
    return declared.to_bytes(spec.header_width, "big")


def encode_frame(spec: FrameSpec, body: bytes) -> bytes:
    """Return `body` framed according to `spec`: the length header followed by the body.

    A zero-length body is framed like any other (see the module docstring).

    Raises:
        FrameTooLargeToSend: the body is larger than `spec.max_body_bytes`.
    """
    return encode_header(spec, len(body)) + body


def decode_header(spec: FrameSpec, header: bytes) -> int:
    """Return the body length announced by a complete header of `spec.header_bytes` bytes.

    Raises:
        BadFrameHeader: an ASCII header that is not all ASCII digits, or a length that counts the header
            but is smaller than the header.
        FrameTooLarge: the announced body is larger than `spec.max_body_bytes`.
        ValueError: `header` is not `spec.header_bytes` long (a bug in the caller, not in the peer).
    """
    if len(header) != spec.header_bytes:
        raise ValueError(f"a header of this spec is {spec.header_bytes} bytes, not {len(header)}")
    if spec.header_kind is HeaderKind.ASCII_DECIMAL:
        # bytes.isdigit() accepts b"0"-b"9" only, so int() never sees the "+", "-", " ", "_" or non-ASCII
        # digits it would otherwise accept; PROTOCOL.md §2 wants exactly the declared number of digits.
        if not header.isdigit():
            raise BadFrameHeader(f"length header {header!r} is not {spec.header_width} ASCII digits")
        declared = int(header)
    else:
        declared = int.from_bytes(header, "big")
    if spec.length_includes_header:
        if declared < spec.header_bytes:
            raise BadFrameHeader(
                f"declared length {declared} is smaller than the {spec.header_bytes}-byte header it counts"
            )
        declared -= spec.header_bytes
    if declared > spec.max_body_bytes:
        # PROTOCOL.md §2: a body over the maximum is a framing error, found before any body byte is read.
        raise FrameTooLarge(f"declared body of {declared} bytes exceeds the maximum of {spec.max_body_bytes}")
    return declared


class FrameDecoder:
    """Cut a received byte stream into frame bodies (PROTOCOL.md §2), whatever its chunking.

    Feed it every received chunk; it returns the bodies completed so far, in order, and keeps a partial
    frame for later. It holds at most one header and one body (:attr:`FrameSpec.buffer_cap_bytes`).
    A complete frame that arrives within a single chunk is sliced out of it without passing through the
    buffer; a frame spread over many chunks is accumulated in a :class:`bytearray` (amortized linear), so
    neither many small frames in one chunk nor one large frame in many chunks costs quadratic copying.
    """

    def __init__(self, spec: FrameSpec) -> None:
        """Start a decoder at a frame boundary of a stream framed by `spec`."""
        self._spec: Final = spec
        self._header = bytearray()
        # The announced body length once the header is complete, None while reading a header.
        self._body_length: int | None = None
        self._body = bytearray()
        self._error: FramingError | None = None
        self._frames_before_error: tuple[bytes, ...] = ()

    @property
    def spec(self) -> FrameSpec:
        """The framing this decoder reads."""
        return self._spec

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned in a frame (header included); 0 exactly at a frame boundary."""
        return len(self._header) + len(self._body)

    @property
    def error(self) -> FramingError | None:
        """The framing error that killed this decoder, or None while it is alive."""
        return self._error

    @property
    def frames_before_error(self) -> tuple[bytes, ...]:
        """Bodies completed in the failing :meth:`feed` call before the error (not returned by it)."""
        return self._frames_before_error

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next received bytes; return the frame bodies now complete, in order.

        Raises:
            BadFrameHeader: a header not of the declared form (see :func:`decode_header`).
            FrameTooLarge: a header announcing a body above the maximum.
            FramingError: the same error again on every call after the first one, including ``feed(b"")``.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        frames: list[bytes] = []
        try:
            self._consume(data, frames)
        except FramingError as error:
            self._error = error
            self._frames_before_error = tuple(frames)
            self._header.clear()
            self._body.clear()
            raise
        return frames

    def _consume(self, data: bytes, frames: list[bytes]) -> None:
        header_bytes = self._spec.header_bytes
        with memoryview(data) as view:
            end = len(view)
            pos = 0
            while True:
                if self._body_length is None:
                    if pos == end:
                        return
                    take = min(header_bytes - len(self._header), end - pos)
                    self._header += view[pos : pos + take]
                    pos += take
                    if len(self._header) < header_bytes:
                        return
                    # Checked as soon as the header is complete, before awaiting a single body byte.
                    self._body_length = decode_header(self._spec, bytes(self._header))
                body_length = self._body_length
                if not self._body and end - pos >= body_length:
                    # The whole body is in this chunk: slice it out, the buffer is not involved.
                    frames.append(bytes(view[pos : pos + body_length]))
                    pos += body_length
                else:
                    take = min(body_length - len(self._body), end - pos)
                    self._body += view[pos : pos + take]
                    pos += take
                    if len(self._body) < body_length:
                        return
                    frames.append(bytes(self._body))
                    self._body.clear()
                self._header.clear()
                self._body_length = None
