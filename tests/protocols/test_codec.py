"""The standard dialect's XML codec: round trips, golden vectors, and refusals that name the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from protocols import codec, samples
from protocols.errors import UnknownMessageType, ValidationError
from protocols.messages import PAYLOAD_TYPES, Message, Payload
from tests.strategies import PAYLOADS, messages

VECTORS = Path(__file__).parent.parent / "vectors" / "standard"


def decode(data: bytes) -> Message:
    return codec.from_tree(etree.fromstring(data))


def refusal(data: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        decode(data)
    return info.value


def test_every_payload_type_has_a_strategy() -> None:
    """The property tests below cover every message type of the standard."""
    assert set(PAYLOADS) == set(PAYLOAD_TYPES)


@pytest.mark.parametrize("payload_type", PAYLOAD_TYPES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_round_trip_every_type(payload_type: type[Payload], data: st.DataObject) -> None:
    """decode(encode(m)) == m for every message type, in UTF-8 and in GBK."""
    message = data.draw(messages(PAYLOADS[payload_type]))
    assert decode(codec.encode(message)) == message
    encoding = data.draw(st.sampled_from(["GBK", "GB18030"]))
    # Text that GBK cannot encode is written as character references, which decode to the same text.
    assert decode(codec.encode(message, encoding)) == message


SAMPLES = list(enumerate(samples.all_payloads(), 1))


@pytest.mark.parametrize(("seq", "sample"), SAMPLES, ids=[s[1][0] for s in SAMPLES])
def test_golden_vectors(seq: int, sample: tuple[str, Payload, str]) -> None:
    """Each sample encodes to exactly its golden file and the golden file decodes to the sample."""
    name, payload, sender = sample
    message = samples.message(payload, sender, seq)
    golden = (VECTORS / f"{name}.xml").read_bytes()
    assert codec.encode(message) == golden, f"{name}: regenerate with `make vectors` only for an intended change"
    assert decode(golden) == message


def test_golden_vectors_cover_every_type() -> None:
    """There is a golden vector for every payload type."""
    assert {type(p) for _, p, _ in samples.all_payloads()} == set(PAYLOAD_TYPES)


def test_gbk_document_decodes_chinese_text() -> None:
    """A GBK-encoded voucher (as some banks send) decodes to the same Chinese names."""
    message = samples.message(samples.direct_voucher(), "gateway")
    wire = codec.encode(message, "GBK")
    assert b'encoding="GBK"' in wire and "南宁市教育局".encode("gbk") in wire
    assert decode(wire) == message


def test_fields_in_any_order_are_accepted() -> None:
    """Children of a record may come in any order on input (docs/protocol.md); values are unchanged."""
    message = samples.message(samples.direct_voucher(), "gateway")
    root = codec.to_tree(message)
    voucher = root.find("Body/Voucher")
    assert voucher is not None
    children = list(voucher)
    for child in children:
        voucher.remove(child)
    for child in reversed(children):
        voucher.append(child)
    assert codec.from_tree(root) == message


def _with(message: Message, **changes: object) -> bytes:
    return codec.encode(dataclasses.replace(message, body=dataclasses.replace(message.body, **changes)))


def test_schema_problem_names_the_field() -> None:
    """A field of the wrong form is refused, and the problem names that field."""
    wire = codec.encode(samples.message(samples.direct_voucher(), "gateway")).replace(
        b"<PayAmt>125000.00</PayAmt>", b"<PayAmt>125000.5</PayAmt>"
    )
    error = refusal(wire)
    assert error.problems[0].field == "Body/Voucher/PayAmt"
    assert "PayAmt" in error.add_word


def test_missing_field_is_named() -> None:
    """A missing required field is refused and its name appears in the problem."""
    wire = codec.encode(samples.message(samples.direct_voucher(), "gateway"))
    wire = wire.replace(
        b"<AgencyName>\xe5\x8d\x97\xe5\xae\x81\xe5\xb8\x82\xe6\x95\x99\xe8\x82\xb2\xe5\xb1\x80</AgencyName>",
        b"",
    )
    error = refusal(wire)
    assert "AgencyName" in str(error)


def test_impossible_date_is_named() -> None:
    """A date of the right form but impossible (30 February) is refused naming the field."""
    wire = codec.encode(samples.message(samples.direct_voucher(), "gateway")).replace(
        b"<VouDate>20261123</VouDate>", b"<VouDate>20260230</VouDate>"
    )
    error = refusal(wire)
    assert [p.field for p in error.problems] == ["Body/Voucher/VouDate"]


def test_bad_detail_date_is_named_with_its_position() -> None:
    """A conversion problem inside a list names the record's position."""
    wire = codec.encode(samples.message(samples.card_spending(), "bank")).replace(
        b"<LimitDate>20261221</LimitDate>", b"<LimitDate>20261232</LimitDate>"
    )
    error = refusal(wire)
    assert error.problems[0].field == "Body/CardSpending/RecordList/Record[2]/LimitDate"


def test_business_rule_problem_after_schema() -> None:
    """A well-formed voucher whose details do not add up is refused naming PayAmt."""
    message = samples.message(samples.direct_voucher(), "gateway")
    error = refusal(_with(message, pay_amt_fen=12_500_001))
    assert error.problems[0].field == "Body/Voucher/PayAmt"


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ((b"<MsgNo>5201</MsgNo>", b"<MsgNo>5999</MsgNo>"), "Head/MsgNo"),
        ((b"<MsgNo>5201</MsgNo>", b""), "Head/MsgNo"),
        ((b"<VoucherFlag>0</VoucherFlag>", b"<VoucherFlag>7</VoucherFlag>"), "Body/Voucher/VoucherFlag"),
        ((b"<Message>", b"<Messages>"), "Message"),
    ],
)
def test_unknown_message_types(replace: tuple[bytes, bytes], field: str) -> None:
    """An unknown MsgNo, a missing MsgNo, a bad VoucherFlag or a foreign root is an unknown message type."""
    wire = codec.encode(samples.message(samples.direct_voucher(), "gateway")).replace(*replace)
    if replace[0] == b"<Message>":
        wire = wire.replace(b"</Message>", b"</Messages>")
    with pytest.raises(UnknownMessageType) as info:
        decode(wire)
    assert info.value.problems[0].field == field
    assert info.value.result_code == 91002


def test_head_of_reads_raw_head_for_replies() -> None:
    """Even a document that fails validation yields its raw head, to address the rejection."""
    wire = codec.encode(samples.message(samples.direct_voucher(), "gateway"))
    head = codec.head_of(etree.fromstring(wire))
    assert head["MsgId"] == "20261123450100000001" and head["MsgNo"] == "5201"
    assert codec.head_of(etree.fromstring(b"<Other><Head><MsgId>x</MsgId></Head></Other>")) == {}
    assert codec.head_of(etree.fromstring(b"<Message/>")) == {}


def test_make_head_defaults_msg_ref_to_msg_id() -> None:
    """A request's MsgRef is its own MsgId; a reply's is the MsgId it answers."""
    kwargs = dict(msg_id="A1", src="ICBC", des="450100000000", work_date=samples.WORK_DATE, send_time=samples.SEND_TIME)
    request = codec.make_head(samples.card_spending(), **kwargs)  # type: ignore[arg-type]
    assert (request.msg_no, request.msg_ref) == ("7101", "A1")
    reply = codec.make_head(samples.all_payloads()[5][1], msg_ref="Z9", **kwargs)  # type: ignore[arg-type]
    assert (reply.msg_no, reply.msg_ref) == ("9120", "Z9")
