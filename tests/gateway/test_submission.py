"""Reading the finance side's submissions: JSON (single, list, batch) and XML (Message, bare Voucher, Vouchers),
which bank each voucher is for, and every problem named."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from lxml import etree

from gateway.submission import SubmissionError, parse_submission
from protocols import codec, jsonform, samples
from protocols.errors import ValidationError
from protocols.messages import Ping, Voucher

BOTH = ["ICBC", "CCB"]
V1 = samples.direct_voucher()
V2 = samples.direct_voucher("5201450100000124", (1_000,))
V3 = samples.authorized_voucher()


def as_json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def entry(v: Voucher, bank: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"voucher": jsonform.to_json(v)}
    if bank is not None:
        out["bank"] = bank
    return out


def message_xml(v: Voucher, des: str = "ICBC") -> bytes:
    """A whole standard message carrying `v` (unsigned), addressed to `des`."""
    m = samples.message(v, "gateway")
    return codec.encode(dataclasses.replace(m, head=dataclasses.replace(m.head, des=des)))


def voucher_xml(v: Voucher) -> bytes:
    """A bare `<Voucher>` element."""
    element = etree.fromstring(codec.encode(samples.message(v, "gateway"))).find("Body/Voucher")
    assert element is not None
    return etree.tostring(element, encoding="UTF-8")


# --- JSON -----------------------------------------------------------------------------------------------------------


def test_json_single() -> None:
    assert parse_submission(as_json(entry(V1, "CCB")), "application/json", None, BOTH) == [("CCB", V1)]


def test_json_list_keeps_the_order() -> None:
    data = as_json([entry(V1, "ICBC"), entry(V2, "CCB"), entry(V3, "ICBC")])
    assert parse_submission(data, "application/json", None, BOTH) == [("ICBC", V1), ("CCB", V2), ("ICBC", V3)]


def test_json_batch() -> None:
    data = as_json({"vouchers": [entry(V1, "ICBC"), entry(V2, "CCB")]})
    assert parse_submission(data, b"application/json; charset=utf-8", None, BOTH) == [("ICBC", V1), ("CCB", V2)]


def test_json_without_a_bank_goes_to_the_only_configured_bank() -> None:
    assert parse_submission(as_json(entry(V1)), "application/json", None, ["ICBC"]) == [("ICBC", V1)]


def test_json_without_a_bank_takes_the_query_bank() -> None:
    data = as_json([entry(V1), entry(V2, "ICBC")])
    assert parse_submission(data, "application/json", "CCB", BOTH) == [("CCB", V1), ("ICBC", V2)]


def test_json_without_a_bank_among_several_is_an_error_naming_them() -> None:
    with pytest.raises(SubmissionError) as info:
        parse_submission(as_json([entry(V1, "ICBC"), entry(V2)]), "application/json", None, BOTH)
    message = str(info.value)
    assert "vouchers[2]" in message and "ICBC" in message and "CCB" in message


def test_json_names_every_problem_of_every_voucher() -> None:
    """Missing, malformed and unknown fields of all entries, each with its entry's index."""
    first = jsonform.to_json(V1)
    first["PayAmt"] = "12.345"
    del first["VouDate"]
    second = jsonform.to_json(V2)
    second["Colour"] = "blue"
    with pytest.raises(ValidationError) as info:
        parse_submission(as_json([{"voucher": first}, {"voucher": second}]), "application/json", None, BOTH)
    fields = {p.field for p in info.value.problems}
    assert {"vouchers[1]/PayAmt", "vouchers[1]/VouDate", "vouchers[2]/Colour"} <= fields


def test_json_entry_without_a_voucher_is_named() -> None:
    with pytest.raises(ValidationError) as info:
        parse_submission(as_json({"bank": "ICBC"}), "application/json", None, BOTH)
    assert [p.field for p in info.value.problems] == ["vouchers[1]"]


@pytest.mark.parametrize(
    "data",
    [b"", b"nonsense", b"[]", b'{"vouchers": []}', b'"a string"', b"[1, 2]", b"\xff\xfe"],
    ids=["empty", "text", "empty-list", "empty-batch", "string", "numbers", "binary"],
)
def test_json_that_cannot_be_read_is_a_submission_error(data: bytes) -> None:
    with pytest.raises(SubmissionError):
        parse_submission(data, "application/json", None, BOTH)


# --- XML ------------------------------------------------------------------------------------------------------------


def test_xml_message_takes_its_bank_from_head_des() -> None:
    """Head/Des names a configured bank: that bank, whatever ?bank says."""
    assert parse_submission(message_xml(V1, "CCB"), "application/xml", "ICBC", BOTH) == [("CCB", V1)]


def test_xml_message_to_no_configured_bank_falls_back_to_the_query_bank() -> None:
    assert parse_submission(message_xml(V1, "GATEWAY"), "text/xml", "CCB", BOTH) == [("CCB", V1)]


def test_xml_message_to_no_configured_bank_among_several_is_an_error() -> None:
    with pytest.raises(SubmissionError, match="name the bank"):
        parse_submission(message_xml(V1, "GATEWAY"), "application/xml", None, BOTH)


def test_xml_is_recognised_without_a_content_type() -> None:
    assert parse_submission(message_xml(V1), "", None, BOTH) == [("ICBC", V1)]
    assert parse_submission(voucher_xml(V1), b"application/octet-stream", "CCB", BOTH) == [("CCB", V1)]


def test_json_is_recognised_whatever_the_content_type() -> None:
    assert parse_submission(b"\n " + as_json(entry(V1)), "text/plain", "CCB", BOTH) == [("CCB", V1)]


def test_xml_bare_voucher() -> None:
    assert parse_submission(voucher_xml(V3), "application/xml", "CCB", BOTH) == [("CCB", V3)]
    assert parse_submission(voucher_xml(V3), "application/xml", None, ["ICBC"]) == [("ICBC", V3)]


def test_xml_vouchers_keeps_the_order() -> None:
    data = b"<Vouchers>" + voucher_xml(V1) + voucher_xml(V3) + voucher_xml(V2) + b"</Vouchers>"
    assert parse_submission(data, "application/xml", "ICBC", BOTH) == [("ICBC", V1), ("ICBC", V3), ("ICBC", V2)]


def test_xml_bare_voucher_without_a_bank_among_several_is_an_error() -> None:
    with pytest.raises(SubmissionError, match="ICBC, CCB"):
        parse_submission(voucher_xml(V1), "application/xml", None, BOTH)


def test_xml_problems_are_named_with_the_vouchers_index() -> None:
    bad = voucher_xml(V2).replace(b"<PayAmt>10.00</PayAmt>", b"<PayAmt>ten</PayAmt>", 1)
    assert bad != voucher_xml(V2)
    with pytest.raises(ValidationError) as info:
        parse_submission(b"<Vouchers>" + voucher_xml(V1) + bad + b"</Vouchers>", "application/xml", "ICBC", BOTH)
    assert [p.field for p in info.value.problems] == ["Voucher[2]/Body/Voucher/PayAmt"]


def test_xml_message_problems_are_named() -> None:
    bad = message_xml(V1).replace(b"<AgencyCode>101001</AgencyCode>", b"")
    with pytest.raises(ValidationError) as info:
        parse_submission(bad, "application/xml", None, BOTH)
    assert any("AgencyCode" in str(p) for p in info.value.problems)


def test_xml_receipt_is_not_a_voucher() -> None:
    """A Voucher element with VoucherFlag 1 (a bank's receipt) is not something to pay."""
    receipt = etree.fromstring(codec.encode(samples.message(samples.receipt(), "bank"))).find("Body/Voucher")
    assert receipt is not None
    with pytest.raises(ValidationError) as info:
        parse_submission(etree.tostring(receipt, encoding="UTF-8"), "application/xml", "ICBC", BOTH)
    assert "not a payment voucher" in str(info.value)


def test_xml_message_of_another_type_is_a_submission_error() -> None:
    with pytest.raises(SubmissionError, match="payment voucher"):
        parse_submission(codec.encode(samples.message(Ping(), "gateway")), "application/xml", None, BOTH)


@pytest.mark.parametrize(
    "data",
    [
        b"<Nothing><Here/></Nothing>",
        b'<?xml version="1.0"?><!DOCTYPE Voucher [<!ENTITY x "y">]><Voucher>&x;</Voucher>',
        b"<Voucher><unclosed></Voucher>",
    ],
    ids=["no-voucher", "dtd", "not-well-formed"],
)
def test_xml_that_cannot_be_read_is_a_submission_error(data: bytes) -> None:
    with pytest.raises(SubmissionError):
        parse_submission(data, "application/xml", "ICBC", BOTH)
