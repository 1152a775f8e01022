"""Streaming XML keeps the policy of protocols.xmlsafe: forbidden constructs refused, even across chunks; caps hold."""

from __future__ import annotations

import io

import pytest

from reconciliation import xmlstream
from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.xmlstream import StreamLimits, iter_elements, line_of, local_name, release

LIMITS = StreamLimits()


def tags(data: bytes, limits: StreamLimits = LIMITS, wanted: tuple[str, ...] = ("{*}R",)) -> list[str]:
    found = []
    for element in iter_elements(io.BytesIO(data), wanted, source="doc.xml", limits=limits):
        found.append(f"{local_name(element)}:{element.text}")
        release(element)
    return found


def test_elements_come_out_in_order_and_are_released() -> None:
    data = b'<?xml version="1.0" encoding="UTF-8"?><D xmlns="urn:x"><R>1</R><X/><R>2</R><R>3</R></D>'
    assert tags(data) == ["R:1", "R:2", "R:3"]


def test_gbk_documents_are_read() -> None:
    data = '<?xml version="1.0" encoding="GBK"?><D><R>南宁</R></D>'.encode("gbk")
    assert tags(data, wanted=("R",)) == ["R:南宁"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE D [<!ENTITY e "x">]><D><R>&e;</R></D>', "a DOCTYPE"),
        (b"<D><!-- hidden --><R/></D>", "a comment"),
        (b"<D><R><![CDATA[x]]></R></D>", "a CDATA section"),
        (b'<?xml version="1.0"?><D><?pi x?><R/></D>', "a processing instruction"),
        (b'<?xml version="1.0" encoding="UTF-16"?><D/>', "unsupported encoding"),
        (b"<?xml version='1.1'?><D/>", "malformed XML declaration"),
        (b"  <D/>", "must begin with '<'"),
        (b"<D><R>&undeclared;</R></D>", "not well-formed"),
        (b"<D><R></D>", "not well-formed"),
    ],
)
def test_what_xmlsafe_forbids_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(StatementError, match=words):
        tags(data)


def test_a_doctype_split_across_chunks_is_still_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan looks again at a chunk's trailing '<' together with the next chunk."""
    data = b"<D>" + b" " * 60 + b"<R>1</R>" + b"<"
    monkeypatch.setattr(xmlstream, "CHUNK_BYTES", len(data))
    with pytest.raises(StatementError, match="a DOCTYPE"):
        tags(data + b"!DOCTYPE D><D/>")
    with pytest.raises(StatementError, match="a comment"):
        tags(data + b"!-- x --><R/></D>")


def test_nul_bytes_after_the_first_chunk_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmlstream, "CHUNK_BYTES", 8)
    with pytest.raises(StatementError, match="NUL"):
        tags(b"<D><R>1</R>\x00</D>")


def test_an_empty_source_is_refused() -> None:
    with pytest.raises(StatementError, match="empty document"):
        tags(b"")


def test_caps_on_bytes_depth_and_count() -> None:
    with pytest.raises(StatementLimitExceeded, match="larger than the maximum of 10 bytes"):
        tags(b"<D><R>1</R></D>", StreamLimits(max_bytes=10))
    with pytest.raises(StatementError, match="nested deeper than 2") as caught:
        tags(b"<D>\n<R><a><b/></a></R></D>", StreamLimits(max_element_depth=2))
    assert caught.value.line == 2
    assert tags(b"<D><R><a>x</a></R></D>", StreamLimits(max_element_depth=2)) == ["R:None"]
    with pytest.raises(StatementError, match="more than 3 elements"):
        tags(b"<D><R><a/><b/><c/></R></D>", StreamLimits(max_element_count=3))
    with pytest.raises(ValueError):
        StreamLimits(max_element_depth=0)


def test_line_numbers_and_names() -> None:
    elements = list(iter_elements(io.BytesIO(b"<D>\n\n<R/></D>"), ("R",), source="s", limits=LIMITS))
    assert line_of(elements[0]) == 3 and local_name(elements[0]) == "R"
    root = elements[0].getparent()
    assert root is not None
    release(root)  # the root has no parent: nothing before it to drop
