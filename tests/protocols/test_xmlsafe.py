"""The one XML parser factory: encodings, forbidden constructs, size caps, the attack corpus, serialization."""

from __future__ import annotations

import threading

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from lxml import etree

from protocols import xmlsafe
from protocols.errors import ForbiddenXml, LocalError, ProtocolError, XmlError, XmlLimitExceeded
from tests.vectors.attacks.generate import HERE as ATTACKS
from tests.vectors.attacks.generate import STATIC_ATTACKS, message

PAYEE = "广西某某建设有限公司"


def raises(data: bytes, limits: xmlsafe.XmlLimits = xmlsafe.DEFAULT_LIMITS) -> ProtocolError:
    """Parse `data`, which must fail, and return the error."""
    with pytest.raises(ProtocolError) as info:
        xmlsafe.parse_document(data, limits)
    return info.value


def nested(depth: int) -> bytes:
    """A document whose deepest element is at `depth` (the root is at depth 1)."""
    return b"<a>" * depth + b"</a>" * depth


# --- encodings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["UTF-8", "GBK", "GB18030", "GB2312", "gbk", "utf-8"])
def test_sample_message_parses_in_every_supported_encoding(encoding: str) -> None:
    """The Chinese text of the sample message comes out right whatever supported encoding carries it."""
    data = message(encoding)
    assert PAYEE.encode(encoding) in data
    root = xmlsafe.parse_document(data)
    assert root.findtext("Body/Voucher/PayeeAcctName") == PAYEE
    assert root.getroottree().docinfo.encoding.upper() == encoding.upper()


def test_gb18030_four_byte_characters_parse() -> None:
    """Characters outside the BMP and outside GBK (four-byte GB18030 sequences) are decoded."""
    text = "𠀀𪚥€"
    data = f'<?xml version="1.0" encoding="GB18030"?><a>{text}</a>'.encode("gb18030")
    assert b"\x95\x32\x82\x36" in data  # U+20000 as a four-byte sequence
    assert xmlsafe.parse_document(data).text == text


def test_document_without_declaration_is_utf8() -> None:
    """With no XML declaration the document is UTF-8 (XML 1.0 §4.3.3)."""
    assert xmlsafe.parse_document(f"<a>{PAYEE}</a>".encode()).text == PAYEE


@pytest.mark.parametrize("declaration", [b"", b'<?xml version="1.0" encoding="UTF-8"?>'])
def test_utf8_byte_order_mark_is_accepted(declaration: bytes) -> None:
    """A UTF-8 BOM is allowed, with or without a declaration naming UTF-8."""
    assert xmlsafe.parse_document(b"\xef\xbb\xbf" + declaration + b"<a>x</a>").text == "x"


def test_byte_order_mark_contradicting_the_declaration_is_refused() -> None:
    """A UTF-8 BOM in front of a declaration of GBK is a mismatch."""
    error = raises(b'\xef\xbb\xbf<?xml version="1.0" encoding="GBK"?><a>x</a>')
    assert type(error) is XmlError
    assert "byte order mark" in str(error)


def test_standalone_declaration_is_accepted() -> None:
    """The declaration may carry standalone and single quotes."""
    data = b"<?xml version='1.0' encoding='GBK' standalone='yes' ?><a>x</a>"
    assert xmlsafe.parse_document(data).text == "x"


@pytest.mark.parametrize("encoding", ["UTF-7", "ISO-8859-1", "UTF-16", "Shift_JIS", "HZ-GB-2312", "EBCDIC-US"])
def test_unsupported_declared_encoding_is_refused(encoding: str) -> None:
    """Only UTF-8, GBK, GB18030 and GB2312 may be declared."""
    error = raises(f'<?xml version="1.0" encoding="{encoding}"?><a/>'.encode())
    assert type(error) is XmlError
    assert "unsupported encoding" in str(error)


def test_gbk_bytes_declared_as_utf8_are_refused() -> None:
    """A document whose bytes are not in its declared encoding is not well-formed."""
    error = raises(f'<?xml version="1.0" encoding="UTF-8"?><a>{PAYEE}</a>'.encode("gbk"))
    assert type(error) is XmlError
    assert "not well-formed" in str(error)


def test_invalid_gbk_bytes_are_refused() -> None:
    """Bytes that are no GBK character (0xFF) are refused in a GBK document."""
    assert type(raises(b'<?xml version="1.0" encoding="GBK"?><a>\xff\xff</a>')) is XmlError


@pytest.mark.parametrize(
    "data",
    [
        "<a>x</a>".encode("utf-16"),  # BOM FF FE
        "<a>x</a>".encode("utf-16-be"),  # no BOM, NUL bytes
        "<a>x</a>".encode("utf-32"),
        b"\x4c\x6f\xa7\x94\x93\x40",  # "<?xml " in EBCDIC
        b" <a/>",
        b"\n<a/>",
        b"<a>\x00</a>",
    ],
)
def test_documents_not_starting_with_ascii_markup_are_refused(data: bytes) -> None:
    """UTF-16/32, EBCDIC, NUL bytes and leading whitespace never reach libxml2's encoding detection."""
    error = raises(data)
    assert type(error) is XmlError
    assert "must begin with '<'" in str(error)


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.1"?><a/>',
        b"<?xml encoding='UTF-8'?><a/>",
        b'<?xml version="1.0" encoding=""?><a/>',
        b'<?xml version="1.0"',
        b"<?xml?><a/>",
    ],
)
def test_malformed_xml_declaration_is_refused(data: bytes) -> None:
    """The XML declaration must be XML 1.0's, version 1.0."""
    error = raises(data)
    assert type(error) is XmlError
    assert "malformed XML declaration" in str(error)


# --- forbidden constructs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "construct"),
    [
        (b"<!DOCTYPE a><a/>", "DOCTYPE"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', "DOCTYPE"),
        (b"<a><!-- hidden --></a>", "comment"),
        (b"<a/><!-- trailing -->", "comment"),
        (b"<a><![CDATA[x]]></a>", "CDATA"),
        (b'<?xml version="1.0"?><a><?target data?></a>', "processing instruction"),
        (b'<?xml version="1.0"?><?target data?><a/>', "processing instruction"),
        (b"<a/><?target data?>", "processing instruction"),
        (b"<?xml-stylesheet href='x'?><a/>", "malformed XML declaration"),
        (b"<a><!ELEMENT a ANY></a>", "markup declaration"),
    ],
)
def test_dtd_comments_cdata_and_processing_instructions_are_refused(data: bytes, construct: str) -> None:
    """Every DOCTYPE, comment, CDATA section and PI is refused before parsing, and named."""
    error = raises(data)
    assert construct in str(error)
    assert type(error) is (XmlError if construct == "malformed XML declaration" else ForbiddenXml)


@pytest.mark.parametrize("text", ["Hello!", "Why?", "a!b?c", "<!>?".replace("<", "&lt;")])
def test_exclamation_and_question_marks_in_text_are_fine(text: str) -> None:
    """The byte scan looks for "<!" and "<?", not for "!" or "?" alone."""
    data = f'<?xml version="1.0" encoding="UTF-8"?><a b="?!">{text}</a>'.encode()
    assert xmlsafe.parse_document(data).text == text.replace("&lt;", "<")


def test_undeclared_entity_is_not_well_formed() -> None:
    """An entity reference without a DTD is an error, never an unresolved node."""
    error = raises(b"<a>&xxe;</a>")
    assert type(error) is XmlError
    assert "xxe" in str(error)


def test_predefined_entities_and_character_references_are_resolved() -> None:
    """The five predefined entities and character references are ordinary text."""
    root = xmlsafe.parse_document(b'<a t="&quot;&#x4E2D;">&lt;&amp;&gt;&apos;&#20013;</a>')
    assert root.text == "<&>'中"
    assert root.get("t") == '"中'


def test_not_well_formed_carries_lxml_message() -> None:
    """A not-well-formed document is an XmlError whose message is libxml2's."""
    error = raises(b"<Message><Head></Message>")
    assert type(error) is XmlError
    assert "mismatch" in str(error)


@pytest.mark.parametrize("data", [b"", b"<", b"<a>", b"<a/><b/>", b"<a></b>"])
def test_empty_and_truncated_documents_are_refused(data: bytes) -> None:
    """Empty and truncated input raises XmlError."""
    assert type(raises(data)) is XmlError


def test_whitespace_is_preserved() -> None:
    """Blank text is kept exactly: it is signed (PROTOCOL.md §6)."""
    root = xmlsafe.parse_document(message())
    assert root.text == "\n  "
    assert root.find("Head").tail == "\n  "
    assert root.find("Body/Voucher/PayeeAcctName").text == PAYEE


# --- limits -----------------------------------------------------------------------------------------------


def test_oversize_document_is_refused_before_parsing() -> None:
    """A document over max_bytes raises XmlLimitExceeded, even when it would also be malformed."""
    limits = xmlsafe.XmlLimits(max_bytes=100)
    error = raises(b"<!DOCTYPE" + b" " * 100, limits)
    assert type(error) is XmlLimitExceeded
    assert xmlsafe.parse_document(b"<a>" + b"x" * 93 + b"</a>", limits).text == "x" * 93


def test_default_limits() -> None:
    """The defaults are 4 MiB, depth 32 and 50 000 elements."""
    limits = xmlsafe.DEFAULT_LIMITS
    assert (limits.max_bytes, limits.max_depth, limits.max_elements) == (4 * 1024 * 1024, 32, 50_000)


def test_depth_cap() -> None:
    """Nesting up to max_depth is accepted and one level more is refused."""
    assert xmlsafe.parse_document(nested(32)).tag == "a"
    error = raises(nested(33))
    assert type(error) is XmlLimitExceeded
    assert "deeper than 32" in str(error)
    assert type(raises(nested(5), xmlsafe.XmlLimits(max_depth=4))) is XmlLimitExceeded


def test_libxml2_depth_limit_still_applies_above_ours() -> None:
    """With a cap above libxml2's own (256), libxml2 refuses first and nothing deeper is ever built."""
    assert type(raises(nested(300), xmlsafe.XmlLimits(max_depth=1000))) is XmlError


def test_element_count_cap() -> None:
    """Up to max_elements elements are accepted and one more is refused."""
    limits = xmlsafe.XmlLimits(max_elements=3)
    assert len(xmlsafe.parse_document(b"<a><b/><b/></a>", limits)) == 2
    error = raises(b"<a><b/><b/><b/></a>", limits)
    assert type(error) is XmlLimitExceeded
    assert "more than 3 elements" in str(error)


def test_element_count_is_exact_when_tags_outnumber_the_cap() -> None:
    """More "<" than max_elements (end tags count too) is not yet too many elements: they are counted."""
    data = b"<a><b></b><b></b></a>"
    assert data.count(b"<") > 4
    assert len(xmlsafe.parse_document(data, xmlsafe.XmlLimits(max_elements=3))) == 2


@pytest.mark.parametrize("field", ["max_bytes", "max_depth", "max_elements"])
def test_limits_must_be_positive(field: str) -> None:
    """A zero cap is a configuration error."""
    with pytest.raises(ValueError, match="positive"):
        xmlsafe.XmlLimits(**{field: 0})


# --- the attack corpus ------------------------------------------------------------------------------------


def test_every_static_attack_file_has_an_expected_error() -> None:
    """No file of the corpus escapes the table below (and the table names no missing file)."""
    assert {path.name for path in ATTACKS.glob("*.xml")} == set(STATIC_ATTACKS)


@pytest.mark.parametrize(("name", "expected"), sorted(STATIC_ATTACKS.items()))
def test_static_attack_raises_its_specific_error(name: str, expected: type[ProtocolError]) -> None:
    """Each corpus file raises exactly the exception README.md names, without expanding or fetching."""
    error = raises((ATTACKS / name).read_bytes())
    assert type(error) is expected
    assert "root:" not in str(error)


# --- threads ----------------------------------------------------------------------------------------------


def test_each_thread_has_its_own_parser() -> None:
    """Parsers are per thread (lxml parsers are not thread-safe) and parse correctly in every thread."""
    results: dict[int, tuple[etree.XMLParser, str | None]] = {}

    def work(index: int) -> None:
        root = xmlsafe.parse_document(message("GBK"))
        results[index] = (xmlsafe._parser(), root.findtext("Body/Voucher/PayeeAcctName"))

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsers = [parser for parser, _ in results.values()] + [xmlsafe._parser()]
    assert len({id(parser) for parser in parsers}) == 5  # all alive, so distinct ids mean distinct parsers
    assert {text for _, text in results.values()} == {PAYEE}
    assert xmlsafe._parser() is xmlsafe._parser()


# --- serialization ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["UTF-8", "GBK", "GB18030", "GB2312"])
def test_serialize_round_trips(encoding: str) -> None:
    """serialize writes the declaration and exactly the parsed tree; parsing it gives the same document."""
    root = xmlsafe.parse_document(message())
    data = xmlsafe.serialize(root, encoding)
    assert data.startswith(f'<?xml version="1.0" encoding="{encoding}"?>\n<Message>'.encode())
    assert data.endswith(b"</Message>")
    again = xmlsafe.parse_document(data)
    assert etree.tostring(again, method="c14n") == etree.tostring(root, method="c14n")


def test_serialize_does_not_reformat() -> None:
    """The serialized tree is byte for byte the parsed one (no indentation added or removed)."""
    data = message()
    assert xmlsafe.serialize(xmlsafe.parse_document(data)) == data.rstrip(b"\n")


def test_serialize_writes_unencodable_characters_as_references() -> None:
    """A character GB2312 cannot encode becomes a character reference and survives the round trip."""
    root = etree.fromstring("<a>镕€</a>")
    data = xmlsafe.serialize(root, "gb2312")
    assert data.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert b"&#" in data
    assert xmlsafe.parse_document(data).text == "镕€"


def test_serialize_refuses_unsupported_encoding() -> None:
    """Writing UTF-16 (or anything off the allowlist) is our caller's mistake."""
    with pytest.raises(LocalError, match="UTF-16"):
        xmlsafe.serialize(etree.fromstring("<a/>"), "UTF-16")


# --- properties -------------------------------------------------------------------------------------------

XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff", whitelist_characters="\t\n\r"
    )
)


@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda data: b"<" + data)))
@example(b"<a>\xff</a>")
@example(b'<?xml version="1.0" encoding="GB18030"?><a>\x81</a>')
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    """Whatever the bytes, parse_document returns a root or raises a ProtocolError, nothing else."""
    try:
        root = xmlsafe.parse_document(data)
    except ProtocolError:
        return
    assert isinstance(root.tag, str)


@given(
    st.sampled_from([b"", b'<?xml version="1.0" encoding="UTF-8"?>', b'<?xml version="1.0" encoding="GBK"?>']),
    st.lists(st.sampled_from([b"<a>", b"</a>", b"<b x='1'/>", b"&amp;", b"<!", b"<?", b"\xb9\xe3", b"x", b"]]>"])),
)
def test_markup_like_bytes_raise_only_protocol_errors(declaration: bytes, parts: list[bytes]) -> None:
    """Near-miss documents built from markup fragments also only ever raise ProtocolError."""
    try:
        root = xmlsafe.parse_document(declaration + b"".join(parts))
    except ProtocolError:
        return
    assert root.tag in ("a", "b")


@given(XML_TEXT, st.sampled_from(["UTF-8", "GBK", "GB18030", "GB2312"]))
def test_text_round_trips_through_serialize_and_parse(text: str, encoding: str) -> None:
    """parse(serialize(tree)) keeps any XML text exactly, in every supported encoding."""
    root = etree.Element("Message")
    etree.SubElement(root, "Remark").text = text
    assert xmlsafe.parse_document(xmlsafe.serialize(root, encoding)).findtext("Remark") == text
