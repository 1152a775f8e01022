"""The canonical message types: immutability, wire metadata, voucher keys."""

from __future__ import annotations

import dataclasses

import pytest

from protocols import samples
from protocols.messages import PAYLOAD_TYPES, Kind, Payload, Ping, VoucherKey, wire_fields


def test_messages_are_frozen() -> None:
    """A canonical message cannot be changed after it is built."""
    voucher = samples.direct_voucher()
    with pytest.raises(dataclasses.FrozenInstanceError):
        voucher.pay_amt_fen = 1  # type: ignore[misc]


def test_every_payload_type_has_an_element_and_money_in_fen() -> None:
    """Each payload declares its element, and every amount field is named in fen."""
    for payload_type in PAYLOAD_TYPES:
        assert payload_type.ELEMENT
        for attr, wire in wire_fields(payload_type):
            if wire.kind is Kind.AMOUNT:
                assert attr.endswith("_fen"), attr


def test_msg_no_follows_the_payload() -> None:
    """Fixed MsgNos come from the type; vouchers and receipts travel under their VtCode."""
    assert Ping().msg_no == "9005"
    assert samples.authorized_voucher().msg_no == "8202"
    assert samples.receipt().msg_no == "5201"


def test_base_payload_without_msg_no_is_a_bug() -> None:
    """A payload type that forgets its MsgNo fails loudly instead of sending a wrong header."""

    class Broken(Payload):
        ELEMENT = "Broken"

    with pytest.raises(AssertionError):
        _ = Broken().msg_no


def test_voucher_keys() -> None:
    """The voucher key of a voucher, its receipt, a return's original and a status query agree."""
    key = samples.direct_voucher().key
    assert key == samples.receipt().key == samples.return_notice().original_key
    assert str(key) == "450100-2026-5201-5201450100000123"
    assert VoucherKey.parse(str(key)) == key
    status = [p for name, p, _ in samples.all_payloads() if name.startswith("910")]
    assert all(p.key == key for p in status)  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["450100-2026-5201", "450100-x-5201-1", "450100--5201-1", ""])
def test_bad_voucher_keys(text: str) -> None:
    """A malformed key text is refused with ValueError."""
    with pytest.raises(ValueError):
        VoucherKey.parse(text)
