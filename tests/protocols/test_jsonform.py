"""The JSON form of canonical messages: lossless round trips and refusals that name the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import samples
from protocols.errors import ValidationError
from protocols.jsonform import from_json, to_json
from protocols.messages import PAYLOAD_TYPES, Payload, Voucher
from tests.strategies import PAYLOADS


@pytest.mark.parametrize("payload_type", PAYLOAD_TYPES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_round_trip_through_json_text(payload_type: type[Payload], data: st.DataObject) -> None:
    """from_json(json(to_json(p))) == p for every payload type."""
    payload = data.draw(PAYLOADS[payload_type])
    assert from_json(payload_type, json.loads(json.dumps(to_json(payload)))) == payload


def test_keys_are_the_standards_element_names() -> None:
    """A voucher's JSON uses VoucherNo, PayAmt as yuan text and DetailList as an array."""
    form = to_json(samples.direct_voucher())
    assert form["VoucherNo"] == "5201450100000123"
    assert form["PayAmt"] == "125000.00"
    assert [d["PayAmt"] for d in form["DetailList"]] == ["100000.00", "25000.00"]
    assert "Remark" not in form


def problems(data: object) -> list[str]:
    with pytest.raises(ValidationError) as info:
        from_json(Voucher, data)
    return [p.field for p in info.value.problems]


def test_every_problem_is_named() -> None:
    """Missing, unknown, mistyped and malformed fields are all reported, each with its path."""
    form = to_json(samples.direct_voucher())
    del form["AgencyName"]
    form["Colour"] = "red"
    form["StYear"] = "2026"
    form["PayAmt"] = 125000.0
    form["VouDate"] = "2026-11-23"
    form["DetailList"][1]["PayAmt"] = "1.5"
    assert sorted(problems(form)) == sorted(
        [
            "Voucher/AgencyName",
            "Voucher/Colour",
            "Voucher/StYear",
            "Voucher/PayAmt",
            "Voucher/VouDate",
            "Voucher/DetailList[2]/PayAmt",
        ]
    )


def test_wrong_shapes() -> None:
    """A non-object, a non-list detail list and a boolean integer are refused."""
    assert problems([]) == ["Voucher"]
    form = to_json(samples.direct_voucher())
    form["DetailList"] = {"Id": "1"}
    form["StYear"] = True
    assert sorted(problems(form)) == ["Voucher/DetailList", "Voucher/StYear"]


def test_optional_list_may_be_left_out() -> None:
    """A receipt without DetailList is read with no details; the path prefix can be chosen."""
    form = to_json(samples.receipt())
    assert "DetailList" in form
    del form["DetailList"]
    assert from_json(type(samples.receipt()), form, "Body/Voucher") == samples.receipt()
