"""Streaming XML under the project's one parsing policy: elements of interest as they end, memory flat.

A statement in XML (a 4006 document of a million details, a camt.053 file) is too large for
:func:`protocols.xmlsafe.parse_document`, whose caps are made for messages. This module feeds the bytes in
chunks to an lxml pull parser and yields the elements named by the caller as each one ends; the caller reads
it and calls :func:`release`, which clears it and drops the siblings before it, so the tree never holds more
than the element being read.

**The policy is the one of** :mod:`protocols.xmlsafe`, applied chunk by chunk with the same code: the prolog
check (ASCII-compatible encoding from the same allowlist, a well-formed XML declaration, no NUL bytes) and the
byte scan that refuses a DOCTYPE (DTD, entity declarations), comments, CDATA sections and processing
instructions before libxml2 sees them. The scan is exact across chunk boundaries because a chunk ending in
``<`` is scanned again together with the next one. The parser has the same options (no entity substitution, no
DTD loading, no network, no huge trees, no ID collection). What differs are the caps: a statement is large
by design, so the whole-document depth and element-count caps are replaced by a cap on the total bytes and,
for each element handed to the caller, caps on its depth and element count (:class:`StreamLimits`).
libxml2 itself stops at a depth of 256 without huge trees.

The two private helpers of :mod:`protocols.xmlsafe` used here would become this module's neighbours if
this streaming entry point moves into `protocols/xmlsafe.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, cast

from lxml import etree

from protocols.errors import XmlError
from protocols.xmlsafe import _body_start, _forbidden_construct
from reconciliation.errors import StatementError, StatementLimitExceeded

#: Bytes read and fed at a time.
CHUNK_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Caps on one streamed XML source.

    Attributes:
        max_bytes: Largest accepted source.
        max_element_depth: Deepest nesting inside one element handed to the caller (the element is depth 1).
        max_element_count: Most elements inside one element handed to the caller, itself included.
    """

    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_element_depth: int = 8
    max_element_count: int = 256

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_element_depth, self.max_element_count) < 1:
            raise ValueError(f"stream limits must be positive: {self!r}")


def iter_elements(
    stream: BinaryIO, tags: tuple[str, ...], *, source: str, limits: StreamLimits
) -> Iterator[etree._Element]:
    """Yield each element whose tag is in `tags` when it ends, in document order.

    Args:
        stream: The document's bytes, read in chunks of :data:`CHUNK_BYTES`.
        tags: Tags of interest; ``{*}Name`` matches `Name` in any namespace.
        source: The source's name, for error messages.
        limits: The caps.

    Yields:
        Elements, fully parsed. The caller should :func:`release` each one when done with it.

    Raises:
        StatementError: Forbidden construct, unsupported encoding, not well-formed, or an element over a cap.
        StatementLimitExceeded: The source is larger than `limits.max_bytes`.
    """
    parser = etree.XMLPullParser(
        events=("end",),
        tag=tags,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        collect_ids=False,
    )
    total = 0
    tail = b""
    first = True
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise StatementLimitExceeded(f"larger than the maximum of {limits.max_bytes} bytes", source=source)
        try:
            start = _body_start(chunk) if first else 0
            if not first and b"\x00" in chunk:
                raise XmlError("not an XML document in a supported encoding: it contains NUL bytes")
            construct = _forbidden_construct(tail + chunk, start)
        except XmlError as exc:
            raise StatementError(str(exc), source=source) from None
        if construct is not None:
            raise StatementError(f"the document contains {construct}, which no statement may", source=source)
        first = False
        tail = b"<" if chunk.endswith(b"<") else b""
        yield from _events(parser, chunk, source, limits)
    if first:
        raise StatementError("empty document", source=source)
    yield from _events(parser, None, source, limits)


def _events(
    parser: etree.XMLPullParser, chunk: bytes | None, source: str, limits: StreamLimits
) -> Iterator[etree._Element]:
    try:
        if chunk is None:
            parser.close()
        else:
            parser.feed(chunk)
    except etree.XMLSyntaxError as exc:
        raise StatementError(f"not well-formed XML: {exc.msg}", source=source, line=exc.lineno) from None
    for _event, element in parser.read_events():
        assert isinstance(element, etree._Element)
        _check_size(element, source, limits)
        yield element


def _check_size(element: etree._Element, source: str, limits: StreamLimits) -> None:
    too_deep, count = _probes(limits.max_element_depth)
    if cast(float, count(element)) > limits.max_element_count:
        raise StatementError(
            f"more than {limits.max_element_count} elements inside",
            source=source,
            line=line_of(element),
            element=local_name(element),
        )
    if too_deep(element):
        raise StatementError(
            f"elements nested deeper than {limits.max_element_depth}",
            source=source,
            line=line_of(element),
            element=local_name(element),
        )


@functools.cache
def _probes(max_depth: int) -> tuple[etree.XPath, etree.XPath]:
    """Compiled XPath probes: "is anything deeper than `max_depth` below this element" and "how many elements".

    An lxml XPath object serializes its evaluations with a lock, so threads may share it (as in xmlsafe).
    """
    deeper = etree.XPath("boolean(" + "/".join(["*"] * max_depth) + ")")
    return deeper, etree.XPath("count(descendant-or-self::*)")


def release(element: etree._Element) -> None:
    """Free an element that has been read, and every sibling before it, so the tree stays small."""
    element.clear()
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def line_of(element: etree._Element) -> int | None:
    """The line an element starts on in its source (None if unknown)."""
    line = element.sourceline
    return line if isinstance(line, int) else None


def local_name(element: etree._Element) -> str:
    """The tag without its namespace (`Ntry` for `{urn:…}Ntry`)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]
