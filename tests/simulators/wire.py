"""Shared check for the simulator tests: a payload passes the business rules and survives the XML codec."""

from __future__ import annotations

from lxml import etree

from protocols import codec, rules, samples
from protocols.messages import Payload


def assert_valid(payload: Payload, sender: str) -> None:
    """`payload`, sent by `sender` ("gateway" or "bank"), breaks no business rule and round-trips through XML."""
    message = samples.message(payload, sender)
    assert rules.check(message) == []
    assert codec.from_tree(etree.fromstring(codec.encode(message))) == message
