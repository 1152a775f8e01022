"""The one XML parser factory of the project: no DTD, no entities, no network, capped size, depth and count.

Every document that enters the gateway goes through :func:`parse_document` (STYLE.md §6). PROTOCOL.md §3
forbids DTDs, entity declarations and external references; this module additionally refuses comments,
processing instructions and CDATA sections, which no message needs. All of these are refused by a byte scan
*before* libxml2 sees the document, so no entity is ever declared, let alone expanded, and nothing is fetched.

The byte scan is exact because the document is first required to be in an ASCII-compatible encoding from a
short allowlist (UTF-8, GBK, GB18030, GB2312; PROTOCOL.md §3): in these encodings the bytes ``<``, ``!``
and ``?`` never occur inside a multi-byte character, and since ``<`` may not appear literally in text or
attribute values, the byte pairs ``<!`` and ``<?`` (after the XML declaration) occur exactly where a DOCTYPE,
comment, CDATA section or processing instruction begins. Encodings such as UTF-7, UTF-16 or EBCDIC, which
could hide a ``<!DOCTYPE`` from the scan, never reach the parser.

lxml parsers must not be shared between threads, and creating one costs about a third of parsing a 2 KB
message, so each thread keeps its own (:data:`threading.local`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Final, cast

from lxml import etree

from protocols.errors import ForbiddenXml, LocalError, XmlError, XmlLimitExceeded

#: Encodings a document may declare (compared case-insensitively); all are ASCII-compatible (PROTOCOL.md §3).
SUPPORTED_ENCODINGS: Final = frozenset({"UTF-8", "GBK", "GB18030", "GB2312"})

_BOM: Final = b"\xef\xbb\xbf"
_S: Final = rb"[ \t\r\n]"
# XMLDecl of XML 1.0 §2.8, version 1.0 only. Group 3 is the declared encoding.
_DECLARATION: Final = re.compile(
    rb"<\?xml" + _S + rb"+version" + _S + rb"*=" + _S + rb"*([\"'])1\.0\1"
    rb"(?:" + _S + rb"+encoding" + _S + rb"*=" + _S + rb"*([\"'])([A-Za-z][A-Za-z0-9._-]*)\2)?"
    rb"(?:" + _S + rb"+standalone" + _S + rb"*=" + _S + rb"*([\"'])(?:yes|no)\4)?" + _S + rb"*\?>"
)
# What a forbidden construct found by the byte scan is, for the error message.
_CONSTRUCTS: Final = (
    (b"<!DOCTYPE", "a DOCTYPE (DTD, entity declarations)"),
    (b"<!--", "a comment"),
    (b"<![CDATA[", "a CDATA section"),
    (b"<?", "a processing instruction"),
)
_COUNT_ELEMENTS: Final = etree.XPath("count(//*)")


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """Caps on one document (TigerBeetle: a limit on everything).

    Attributes:
        max_bytes: Largest accepted document, checked before parsing (PROTOCOL.md §2 frame maximum).
        max_depth: Deepest element nesting; the root element is at depth 1. libxml2 itself stops at 256.
        max_elements: Most elements in the document.
    """

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 32
    max_elements: int = 50_000
    # True when some element lies deeper than max_depth: /*/*/…/* with max_depth + 1 steps, compiled once
    # (an lxml XPath object serializes its evaluations with a lock, so threads may share it).
    _too_deep: etree.XPath = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_depth, self.max_elements) < 1:
            raise ValueError(f"XML limits must be positive: {self!r}")
        object.__setattr__(self, "_too_deep", etree.XPath("boolean(" + "/*" * (self.max_depth + 1) + ")"))


DEFAULT_LIMITS: Final = XmlLimits()

_local = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser: no entity substitution, no DTD, no network, no huge trees, whitespace kept."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=False,  # whitespace is signed (PROTOCOL.md §6)
            collect_ids=False,  # no ID semantics: signatures reference the whole document only
        )
        _local.parser = parser
    return parser


def _body_start(data: bytes) -> int:
    """Check the prolog's encoding and return the offset just after the XML declaration (or BOM).

    Raises:
        XmlError: The document does not start with markup, contains NUL bytes, has a malformed XML
            declaration, or declares an encoding outside :data:`SUPPORTED_ENCODINGS` or contrary to its BOM.
    """
    start = len(_BOM) if data.startswith(_BOM) else 0
    if data[start : start + 1] != b"<" or b"\x00" in data:
        # Also keeps out UTF-16/UTF-32 (NUL bytes) and EBCDIC, whose detection libxml2 would otherwise do.
        raise XmlError("not an XML document in a supported encoding: it must begin with '<'")
    if not data.startswith(b"<?xml", start):
        return start  # no declaration: UTF-8 (XML 1.0 §4.3.3)
    declaration = _DECLARATION.match(data, start)
    if declaration is None:
        raise XmlError("malformed XML declaration")
    encoding = (declaration.group(3) or b"UTF-8").decode("ascii").upper()
    if encoding not in SUPPORTED_ENCODINGS:
        raise XmlError(f"unsupported encoding {encoding!r}; supported: {', '.join(sorted(SUPPORTED_ENCODINGS))}")
    if start and encoding != "UTF-8":
        raise XmlError(f"a UTF-8 byte order mark contradicts the declared encoding {encoding!r}")
    return declaration.end()


def _forbidden_construct(data: bytes, body_start: int) -> str | None:
    """Name the first DOCTYPE, comment, CDATA section or processing instruction in `data`, if any."""
    # One-byte probes first: they run at memchr speed and most messages contain neither "!" nor "?".
    at = data.find(b"<!") if b"!" in data else -1
    if at < 0 and data.find(b"?", body_start) >= 0:
        at = data.find(b"<?", body_start)
    if at < 0:
        return None
    return next((name for prefix, name in _CONSTRUCTS if data.startswith(prefix, at)), "a markup declaration")


def parse_document(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse one untrusted document and return its root element.

    Args:
        data: The document's bytes, in UTF-8 or the encoding its XML declaration names.
        limits: Size, depth and element-count caps.

    Returns:
        The root element. Whitespace is preserved exactly (it is signed, PROTOCOL.md §6).

    Raises:
        XmlLimitExceeded: The document is larger, deeper or has more elements than `limits` allow.
        ForbiddenXml: A DOCTYPE (DTD, entities, external references), comment, CDATA section or
            processing instruction (PROTOCOL.md §3); refused before parsing.
        XmlError: Empty, not well-formed, or in an unsupported or mismatched encoding.
    """
    if len(data) > limits.max_bytes:
        raise XmlLimitExceeded(f"document of {len(data)} bytes exceeds the maximum of {limits.max_bytes}")
    if not data:
        raise XmlError("empty document")
    construct = _forbidden_construct(data, _body_start(data))
    if construct is not None:
        raise ForbiddenXml(f"the document contains {construct}, which no message may (PROTOCOL.md §3)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"not well-formed XML: {exc}") from None
    if limits._too_deep(root):
        raise XmlLimitExceeded(f"elements nested deeper than {limits.max_depth}")
    # Every element has a start tag, so the count of "<" bounds the element count; count exactly only above.
    if data.count(b"<") > limits.max_elements and cast(float, _COUNT_ELEMENTS(root)) > limits.max_elements:
        raise XmlLimitExceeded(f"more than {limits.max_elements} elements")
    return root


def serialize(root: etree._Element, encoding: str = "UTF-8") -> bytes:
    """A document's bytes: an XML declaration naming `encoding`, then the tree exactly as it is.

    Nothing is indented or otherwise reformatted (whitespace is signed, PROTOCOL.md §6). Characters the
    encoding cannot represent are written as character references.

    Raises:
        LocalError: `encoding` is not in :data:`SUPPORTED_ENCODINGS`.
    """
    name = encoding.upper()
    if name not in SUPPORTED_ENCODINGS:
        raise LocalError(f"cannot write a document in {encoding!r}")
    declaration = f'<?xml version="1.0" encoding="{name}"?>\n'.encode("ascii")
    body = etree.tostring(root, encoding=name, xml_declaration=False, with_tail=False)
    return declaration + cast(bytes, body)
