"""Tests of the sans-I/O framing codec (PROTOCOL.md §2): specs, encoder, decoder under any chunking."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocols.errors import (
    BadFrameHeader,
    FrameTooLarge,
    FrameTooLargeToSend,
    FramingError,
    LocalError,
    PeerError,
    ProtocolError,
    ResultCode,
)
from protocols.framing import (
    DEFAULT_MAX_BODY_BYTES,
    STANDARD,
    SUPPORTED_WIDTHS,
    FrameDecoder,
    FrameSpec,
    HeaderKind,
    decode_header,
    encode_frame,
    encode_header,
)

_Test = TypeVar("_Test", bound=Callable[..., None])

ASCII = HeaderKind.ASCII_DECIMAL
BINARY = HeaderKind.BINARY_BIG_ENDIAN


def _spec(kind: HeaderKind, width: int, includes: bool, max_body_bytes: int | None = None) -> FrameSpec:
    """A spec with the default maximum, lowered to what the header can express when it cannot hold 4 MiB."""
    probe = FrameSpec(kind, width, includes, max_body_bytes=1)
    cap = min(DEFAULT_MAX_BODY_BYTES, probe.max_expressible_body_bytes)
    return dataclasses.replace(probe, max_body_bytes=cap if max_body_bytes is None else max_body_bytes)


#: Every supported kind x width x length convention, each with the largest maximum it allows (up to 4 MiB).
ALL_SPECS = [
    _spec(kind, width, includes)
    for kind, widths in SUPPORTED_WIDTHS.items()
    for width in sorted(widths)
    for includes in (False, True)
]
#: The same with a small maximum, so that random bytes often announce too large a body.
SMALL_SPECS = [dataclasses.replace(spec, max_body_bytes=16) for spec in ALL_SPECS]


def _id(spec: FrameSpec) -> str:
    """A readable test id such as `ASCII_DECIMAL-8-body-4194304`."""
    counts = "total" if spec.length_includes_header else "body"
    return f"{spec.header_kind.name}-{spec.header_width}-{counts}-{spec.max_body_bytes}"


def _feed_chunks(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    """Feed every chunk, checking the buffer cap after each, and return all frames."""
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
        assert decoder.buffered_bytes <= decoder.spec.buffer_cap_bytes
    return frames


@st.composite
def _chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Cut `data` at arbitrary points (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- the standard ---------------------------------------------------------------------------------------------


def test_standard_is_eight_ascii_digits_counting_the_body_with_4_mib_max() -> None:
    """STANDARD is PROTOCOL.md §2: 8 ASCII digits, body only, 4 MiB."""
    assert STANDARD.header_kind is ASCII
    assert STANDARD.header_width == 8
    assert STANDARD.header_bytes == 8
    assert STANDARD.length_includes_header is False
    assert STANDARD.max_body_bytes == 4 * 1024 * 1024
    assert STANDARD.max_declared_length == 99_999_999
    assert STANDARD.buffer_cap_bytes == 8 + 4 * 1024 * 1024


def test_standard_encodes_zero_padded_body_length() -> None:
    """The standard header is the zero-padded body length (`00001234` form)."""
    assert encode_frame(STANDARD, b"<a/>") == b"00000004<a/>"
    assert encode_frame(STANDARD, b"x" * 1234) == b"00001234" + b"x" * 1234


# --- encoding of each header form -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "body", "expected"),
    [
        (_spec(ASCII, 4, False), b"abc", b"0003abc"),
        (_spec(ASCII, 4, True), b"abc", b"0007abc"),
        (_spec(ASCII, 10, True), b"", b"0000000010"),
        (_spec(BINARY, 2, False), b"abc", b"\x00\x03abc"),
        (_spec(BINARY, 2, True), b"abc", b"\x00\x05abc"),
        (_spec(BINARY, 4, False), b"x" * 258, b"\x00\x00\x01\x02" + b"x" * 258),
        (_spec(BINARY, 4, True), b"", b"\x00\x00\x00\x04"),
    ],
    ids=["ascii4", "ascii4-total", "ascii10-total-empty", "bin2", "bin2-total", "bin4", "bin4-total-empty"],
)
def test_encode_frame_writes_the_declared_header(spec: FrameSpec, body: bytes, expected: bytes) -> None:
    """Each header kind writes the length it declares: zero-padded digits or big-endian bytes."""
    assert encode_frame(spec, body) == expected


def test_encode_frame_accepts_exactly_the_maximum_and_fills_the_header() -> None:
    """A body of exactly the maximum is framed, even when its length fills every digit of the header."""
    spec = FrameSpec(ASCII, 4, length_includes_header=True, max_body_bytes=9995)
    assert encode_frame(spec, b"y" * 9995)[:4] == b"9999"
    assert encode_header(_spec(BINARY, 2, False), 65535) == b"\xff\xff"


@pytest.mark.parametrize("spec", [STANDARD, *SMALL_SPECS], ids=_id)
def test_encode_frame_refuses_a_body_over_the_maximum(spec: FrameSpec) -> None:
    """A body one byte over the maximum raises FrameTooLargeToSend, a local (our own) error."""
    with pytest.raises(FrameTooLargeToSend) as info:
        encode_frame(spec, b"z" * (spec.max_body_bytes + 1))
    assert isinstance(info.value, LocalError)
    assert not isinstance(info.value, PeerError)


# --- the framing triple ---------------------------------------------------------------------------------------

TRIPLE_BODIES = [b"<Message>first</Message>", b"", b"\x00\x01 third \xff"]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=_id)
def test_triple_whole_input_yields_every_frame_in_order(spec: FrameSpec) -> None:
    """Several frames in one chunk come out in order, with nothing left buffered."""
    decoder = FrameDecoder(spec)
    assert decoder.feed(b"".join(encode_frame(spec, b) for b in TRIPLE_BODIES)) == TRIPLE_BODIES
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("spec", ALL_SPECS, ids=_id)
def test_triple_byte_by_byte_yields_each_frame_on_its_last_byte(spec: FrameSpec) -> None:
    """Fed one byte at a time, each frame appears exactly when its last byte arrives."""
    decoder = FrameDecoder(spec)
    frames: list[bytes] = []
    for body in TRIPLE_BODIES:
        encoded = encode_frame(spec, body)
        for i in range(len(encoded)):
            out = decoder.feed(encoded[i : i + 1])
            if i < len(encoded) - 1:
                assert out == []
                assert decoder.buffered_bytes == i + 1
        frames.extend(out)
    assert frames == TRIPLE_BODIES
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("spec", ALL_SPECS, ids=_id)
@pytest.mark.parametrize("partial", ["one byte", "header", "header and one body byte"])
def test_triple_trailing_partial_frame_is_kept_for_later(spec: FrameSpec, partial: str) -> None:
    """Bytes of an incomplete next frame stay buffered and complete that frame when the rest arrives."""
    nxt = encode_frame(spec, b"next frame")
    cut = {"one byte": 1, "header": spec.header_bytes, "header and one body byte": spec.header_bytes + 1}[partial]
    decoder = FrameDecoder(spec)
    assert decoder.feed(encode_frame(spec, b"one") + encode_frame(spec, b"two") + nxt[:cut]) == [b"one", b"two"]
    assert decoder.buffered_bytes == cut
    assert decoder.feed(nxt[cut:]) == [b"next frame"]
    assert decoder.buffered_bytes == 0


def test_large_frame_in_small_chunks_is_reassembled() -> None:
    """A 4 MiB body fed in 1 KiB chunks comes out once, whole, on the last chunk."""
    body = bytes(range(256)) * (DEFAULT_MAX_BODY_BYTES // 256)
    encoded = encode_frame(STANDARD, body)
    decoder = FrameDecoder(STANDARD)
    chunks = [encoded[i : i + 1024] for i in range(0, len(encoded), 1024)]
    for chunk in chunks[:-1]:
        assert decoder.feed(chunk) == []
    assert decoder.buffered_bytes == len(encoded) - len(chunks[-1])
    assert decoder.feed(chunks[-1]) == [body]


# --- round trip under any chunking ----------------------------------------------------------------------------
#
# The spec is drawn by Hypothesis rather than given by @pytest.mark.parametrize: pytest-twisted (installed for
# the gateway's tests) re-wraps a @given test's shared inner function once per parametrized item, which breaks
# every parametrization after the first. An @example per spec still runs each spec on every test run.

#: (spec, bodies, chunks): the expected bodies (empty for noise) and the chunks the decoder is fed.
Case = tuple[FrameSpec, list[bytes], list[bytes]]
FUZZ_SPECS = [*ALL_SPECS, *SMALL_SPECS]


def _for_every_spec(specs: list[FrameSpec], bodies: list[bytes]) -> Callable[[_Test], _Test]:
    """Add one explicit example per spec: `bodies` (cut to the spec's maximum) framed and fed byte by byte."""

    def decorate(test: _Test) -> _Test:
        for spec in specs:
            cut = [body[: spec.max_body_bytes] for body in bodies]
            stream = b"".join(encode_frame(spec, body) for body in cut)
            chunks = [stream[i : i + 1] for i in range(len(stream))]
            test = example(case=(spec, cut, chunks))(test)
        return test

    return decorate


@st.composite
def _framed_cases(draw: st.DrawFn, specs: list[FrameSpec], bad_tail: bool = False) -> Case:
    """A spec, bodies it can frame, and their concatenated encodings (plus a bad header) in arbitrary chunks."""
    spec = draw(st.sampled_from(specs), label="spec")
    bodies = draw(st.lists(st.binary(max_size=min(spec.max_body_bytes, 64)), max_size=8), label="bodies")
    stream = b"".join(encode_frame(spec, body) for body in bodies)
    if bad_tail:
        stream += _bad_header(spec)
    return spec, bodies, draw(_chunked(stream), label="chunks")


def _bad_header(spec: FrameSpec) -> bytes:
    """A header of plus signs (ASCII), or one announcing 2**16 - 1 or 2**32 - 1 bytes (binary, small maximum)."""
    assert spec.max_body_bytes < 1000
    return (b"+" if spec.header_kind is ASCII else b"\xff") * spec.header_bytes


@settings(max_examples=400)
@given(case=_framed_cases(FUZZ_SPECS))
@_for_every_spec(FUZZ_SPECS, [b"<Message/>", b"", b"\x00" * 40])
def test_any_bodies_in_any_chunking_round_trip(case: Case) -> None:
    """Decoding the concatenated encodings, however chunked, yields exactly the encoded bodies."""
    spec, bodies, chunks = case
    decoder = FrameDecoder(spec)
    assert _feed_chunks(decoder, chunks) == bodies
    assert decoder.buffered_bytes == 0
    assert decoder.error is None


# --- arbitrary input ------------------------------------------------------------------------------------------


@st.composite
def _noisy_cases(draw: st.DrawFn, specs: list[FrameSpec]) -> Case:
    """A spec and arbitrary bytes in arbitrary chunks: pure noise, or a well-formed stream with bytes overwritten."""
    spec = draw(st.sampled_from(specs), label="spec")
    if draw(st.booleans(), label="noise"):
        stream = draw(st.binary(max_size=200), label="stream")
    else:
        # Mostly well-formed streams reach deeper into the decoder than pure noise does.
        bodies = draw(st.lists(st.binary(max_size=min(spec.max_body_bytes, 20)), max_size=4), label="bodies")
        stream = b"".join(encode_frame(spec, body) for body in bodies)
        for position, value in draw(st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=3)):
            if position < len(stream):
                stream = stream[:position] + bytes([value]) + stream[position + 1 :]
    return spec, [], draw(_chunked(stream), label="chunks")


@settings(max_examples=400)
@given(case=_noisy_cases(FUZZ_SPECS))
@_for_every_spec(FUZZ_SPECS, [bytes(range(256)) * 2])
def test_arbitrary_bytes_yield_frames_or_raise_only_framing_errors(case: Case) -> None:
    """Random bytes in random chunks give frames or a FramingError (never ValueError, IndexError, ...)."""
    spec, _, chunks = case
    decoder = FrameDecoder(spec)
    try:
        frames = _feed_chunks(decoder, chunks)
    except ProtocolError as error:
        assert isinstance(error, FramingError)
        assert error.result_code is ResultCode.MALFORMED
        assert decoder.error is error
    else:
        consumed = sum(len(frame) + spec.header_bytes for frame in frames) + decoder.buffered_bytes
        assert consumed == sum(len(chunk) for chunk in chunks)


@settings(max_examples=200)
@given(case=_framed_cases(SMALL_SPECS, bad_tail=True))
def test_frames_before_a_bad_header_are_never_lost_to_chunking(case: Case) -> None:
    """Good frames before a bad header reach the caller (returned or in frames_before_error) in any chunking."""
    spec, bodies, chunks = case
    decoder = FrameDecoder(spec)
    frames: list[bytes] = []
    with pytest.raises(FramingError):
        for chunk in chunks:
            frames.extend(decoder.feed(chunk))
    assert frames + list(decoder.frames_before_error) == bodies


@pytest.mark.parametrize("spec", SMALL_SPECS, ids=_id)
def test_frames_before_a_bad_header_in_one_chunk_are_set_aside(spec: FrameSpec) -> None:
    """Frames completed in the same chunk as a bad header are kept in frames_before_error, for every spec."""
    decoder = FrameDecoder(spec)
    with pytest.raises(FramingError):
        decoder.feed(encode_frame(spec, b"a") + encode_frame(spec, b"") + _bad_header(spec))
    assert decoder.frames_before_error == (b"a", b"")


# --- bad headers ----------------------------------------------------------------------------------------------

BAD_ASCII_HEADERS = [
    b"0000+123",
    b"+0000123",
    b"-0000123",
    b" 0000123",
    b"0000123 ",
    b"0000_123",
    b"0000012a",
    b"0x000012",
    b"1234567\n",
    "00000０".encode(),  # full-width digit zero, 3 bytes in UTF-8
    "000000٠".encode(),  # Arabic-Indic digit zero, 2 bytes in UTF-8
    "0000000１".encode("gb18030")[-8:],  # full-width one as a bank on GB18030 would write it
    bytes([0xD9]) + b"0000000",  # a non-ASCII byte
]


@pytest.mark.parametrize("header", BAD_ASCII_HEADERS, ids=repr)
def test_ascii_header_that_is_not_all_ascii_digits_raises_bad_frame_header(header: bytes) -> None:
    """Any non-digit in an 8-byte ASCII header is BadFrameHeader (91001), even where int() would accept it."""
    assert len(header) == 8
    decoder = FrameDecoder(STANDARD)
    with pytest.raises(BadFrameHeader) as info:
        decoder.feed(header + b"<Message/>")
    assert info.value.result_code is ResultCode.MALFORMED
    assert decoder.buffered_bytes == 0


def test_headers_int_would_accept_are_among_those_rejected() -> None:
    """The bad-header list includes forms int() accepts, so the test above guards against a bare int()."""
    accepted_by_int = []
    for header in BAD_ASCII_HEADERS:
        try:
            int(header.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        accepted_by_int.append(header)
    assert {b"+0000123", b"-0000123", b" 0000123", b"0000_123", "00000０".encode(), "000000٠".encode()} <= set(
        accepted_by_int
    )


def test_bad_header_is_detected_on_its_last_byte_without_waiting_for_the_body() -> None:
    """Fed byte by byte, the error comes with the header's last byte, not later."""
    decoder = FrameDecoder(STANDARD)
    for byte in b"0000012":
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(BadFrameHeader):
        decoder.feed(b"a")


@pytest.mark.parametrize(
    ("spec", "header"),
    [
        (_spec(ASCII, 4, True), b"0003"),
        (_spec(ASCII, 10, True), b"0000000000"),
        (_spec(BINARY, 2, True), b"\x00\x01"),
        (_spec(BINARY, 4, True), b"\x00\x00\x00\x03"),
    ],
    ids=["ascii4", "ascii10-zero", "bin2", "bin4"],
)
def test_length_counting_the_header_but_smaller_than_it_raises(spec: FrameSpec, header: bytes) -> None:
    """When the length counts the header, a length below the header size is BadFrameHeader."""
    decoder = FrameDecoder(spec)
    with pytest.raises(BadFrameHeader):
        decoder.feed(header)


@pytest.mark.parametrize(
    ("spec", "header"),
    [(_spec(ASCII, 4, True), b"0004"), (_spec(BINARY, 2, True), b"\x00\x02"), (STANDARD, b"00000000")],
    ids=["ascii4-total", "bin2-total", "standard"],
)
def test_zero_length_body_is_a_frame_yielded_as_soon_as_the_header_completes(spec: FrameSpec, header: bytes) -> None:
    """A header announcing an empty body yields b"" at once (the XML layer, not framing, rejects it)."""
    decoder = FrameDecoder(spec)
    assert decoder.feed(header[:-1]) == []
    assert decoder.feed(header[-1:]) == [b""]
    assert decoder.buffered_bytes == 0


# --- oversized declared lengths -------------------------------------------------------------------------------


def test_declared_body_over_the_maximum_raises_before_the_body_arrives() -> None:
    """A header announcing max + 1 bytes raises on the header alone, with nothing kept buffered."""
    decoder = FrameDecoder(STANDARD)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(b"%08d" % (DEFAULT_MAX_BODY_BYTES + 1))
    assert info.value.result_code is ResultCode.MALFORMED
    assert decoder.buffered_bytes == 0


def test_declared_body_of_exactly_the_maximum_is_awaited() -> None:
    """A header announcing exactly the maximum is accepted and its body awaited."""
    decoder = FrameDecoder(STANDARD)
    assert decoder.feed(b"%08d" % DEFAULT_MAX_BODY_BYTES) == []
    assert decoder.buffered_bytes == 8


@pytest.mark.parametrize(
    ("spec", "header"),
    [
        (STANDARD, b"99999999"),
        (_spec(ASCII, 4, True, max_body_bytes=100), b"0105"),
        (_spec(BINARY, 2, False, max_body_bytes=100), b"\x00\x65"),
        (_spec(BINARY, 4, True, max_body_bytes=100), b"\x00\x00\x00\x69"),
        (_spec(BINARY, 4, False), b"\xff\xff\xff\xff"),
    ],
    ids=["standard-max-digits", "ascii4-total", "bin2", "bin4-total", "bin4-max"],
)
def test_oversized_declared_length_raises_frame_too_large_with_its_body_attached(
    spec: FrameSpec, header: bytes
) -> None:
    """An oversized length raises FrameTooLarge even if body bytes arrive in the same chunk."""
    decoder = FrameDecoder(spec)
    with pytest.raises(FrameTooLarge):
        decoder.feed(header + b"b" * 200)
    assert decoder.buffered_bytes == 0


# --- a failed decoder stays failed ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"0000012a", b"%08d" % (DEFAULT_MAX_BODY_BYTES + 1)], ids=["bad", "large"])
def test_decoder_is_dead_after_an_error(bad: bytes) -> None:
    """After an error every feed, even of valid or empty input, raises the same error again."""
    decoder = FrameDecoder(STANDARD)
    with pytest.raises(FramingError) as first:
        decoder.feed(encode_frame(STANDARD, b"ok") + bad)
    assert decoder.error is first.value
    assert decoder.frames_before_error == (b"ok",)
    for later in (encode_frame(STANDARD, b"valid"), b""):
        with pytest.raises(FramingError) as again:
            decoder.feed(later)
        assert again.value is first.value
    assert decoder.frames_before_error == (b"ok",)


def test_live_decoder_reports_no_error() -> None:
    """A decoder that has seen only good frames has no error and no frames set aside."""
    decoder = FrameDecoder(STANDARD)
    assert decoder.feed(encode_frame(STANDARD, b"a")) == [b"a"]
    assert decoder.error is None
    assert decoder.frames_before_error == ()
    assert decoder.spec is STANDARD


# --- decode_header as a function ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "header", "body_bytes"),
    [
        (STANDARD, b"00001234", 1234),
        (_spec(ASCII, 5, True), b"00105", 100),
        (_spec(BINARY, 2, False), b"\x01\x00", 256),
        (_spec(BINARY, 4, True), b"\x00\x00\x01\x04", 256),
    ],
    ids=["standard", "ascii5-total", "bin2", "bin4-total"],
)
def test_decode_header_returns_the_body_length(spec: FrameSpec, header: bytes, body_bytes: int) -> None:
    """decode_header gives the body length, the header already subtracted where it was counted."""
    assert decode_header(spec, header) == body_bytes
    assert encode_header(spec, body_bytes) == header


def test_decode_header_of_the_wrong_size_is_a_caller_error() -> None:
    """A header of the wrong size is the caller's bug (ValueError), not a peer error."""
    with pytest.raises(ValueError, match="8 bytes, not 7"):
        decode_header(STANDARD, b"0000001")


# --- spec validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "width"),
    [(ASCII, 0), (ASCII, 2), (ASCII, 3), (ASCII, 7), (ASCII, 9), (ASCII, 12), (BINARY, 1), (BINARY, 3), (BINARY, 8)],
)
def test_spec_with_an_unsupported_width_is_rejected(kind: HeaderKind, width: int) -> None:
    """Widths other than 4/5/6/8/10 digits or 2/4 bytes raise ValueError."""
    with pytest.raises(ValueError, match="wide"):
        FrameSpec(kind, width, max_body_bytes=100)


@pytest.mark.parametrize("max_body_bytes", [0, -1])
def test_spec_with_a_maximum_below_one_is_rejected(max_body_bytes: int) -> None:
    """A maximum body size below one byte raises ValueError."""
    with pytest.raises(ValueError, match="at least 1"):
        FrameSpec(ASCII, 8, max_body_bytes=max_body_bytes)


@pytest.mark.parametrize(
    ("kind", "width", "includes", "expressible"),
    [
        (ASCII, 4, False, 9_999),
        (ASCII, 4, True, 9_995),
        (ASCII, 5, False, 99_999),
        (ASCII, 6, True, 999_993),
        (ASCII, 8, False, 99_999_999),
        (ASCII, 10, True, 9_999_999_989),
        (BINARY, 2, False, 65_535),
        (BINARY, 2, True, 65_533),
        (BINARY, 4, False, 2**32 - 1),
        (BINARY, 4, True, 2**32 - 5),
    ],
)
def test_maximum_above_what_the_header_can_express_is_rejected_not_clamped(
    kind: HeaderKind, width: int, includes: bool, expressible: int
) -> None:
    """max_body_bytes may equal the header's capacity but not exceed it (ValueError, no silent clamp)."""
    spec = FrameSpec(kind, width, includes, max_body_bytes=expressible)
    assert spec.max_expressible_body_bytes == expressible
    with pytest.raises(ValueError, match="can express"):
        FrameSpec(kind, width, includes, max_body_bytes=expressible + 1)


@pytest.mark.parametrize(("kind", "width"), [(ASCII, 4), (ASCII, 5), (ASCII, 6), (BINARY, 2)])
def test_default_maximum_is_rejected_for_headers_too_narrow_for_4_mib(kind: HeaderKind, width: int) -> None:
    """Narrow headers must declare their own maximum: the 4 MiB default does not fit them."""
    with pytest.raises(ValueError, match="can express"):
        FrameSpec(kind, width)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"header_kind": "ascii-decimal"},
        {"header_width": True},
        {"header_width": 8.0},
        {"max_body_bytes": 1024.0},
        {"max_body_bytes": "1024"},
        {"length_includes_header": 1},
    ],
    ids=repr,
)
def test_spec_fields_of_the_wrong_type_are_rejected(kwargs: dict[str, Any]) -> None:
    """Fields of the wrong type raise TypeError rather than producing a spec that misframes."""
    fields: dict[str, Any] = {"header_kind": ASCII, "header_width": 8} | kwargs
    with pytest.raises(TypeError):
        FrameSpec(**fields)


def test_spec_is_frozen() -> None:
    """A spec cannot be changed after construction (dialects share it)."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        STANDARD.max_body_bytes = 1  # type: ignore[misc]
