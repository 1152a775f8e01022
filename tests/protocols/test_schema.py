"""The published XSDs: generated from the message table, shipped as package data, and applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from protocols import codec, samples, schema
from protocols.messages import PAYLOAD_TYPES, Payload

SHIPPED = Path(schema.__file__).parent / schema.SCHEMA_DIR


@pytest.mark.parametrize("payload_type", PAYLOAD_TYPES, ids=lambda t: t.__name__)
def test_shipped_schema_is_the_generated_one(payload_type: type[Payload]) -> None:
    """The XSD we publish equals what the message table generates (run `make schemas` after a change)."""
    assert (SHIPPED / schema.schema_name(payload_type)).read_bytes() == schema.build_xsd(payload_type)


def test_generate_all_writes_one_compilable_schema_per_payload(tmp_path: Path) -> None:
    """generate_all writes a schema per payload type, each compiling as XSD."""
    written = schema.generate_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(schema.schema_name(t) for t in PAYLOAD_TYPES)
    for path in written:
        etree.XMLSchema(etree.parse(str(path)))


def test_every_element_has_a_simple_type() -> None:
    """Every element of every payload has a declared type, and every type is declared."""
    assert set(schema.ELEMENT_TYPES.values()) <= set(schema.SIMPLE_TYPES)


def test_samples_pass_their_schema_and_fail_another() -> None:
    """A voucher passes the voucher schema and is refused by the receipt schema, naming a field."""
    root = codec.to_tree(samples.message(samples.direct_voucher(), "gateway"))
    assert schema.check(root, type(samples.direct_voucher())) == []
    problems = schema.check(root, type(samples.receipt()))
    assert problems and all(p.field.startswith("Body/Voucher") for p in problems)


def test_wrong_root_is_named() -> None:
    """A document whose root is not `Message` is reported against the root it has."""
    problems = schema.check(etree.fromstring(b"<Other/>"), type(samples.receipt()))
    assert [p.field for p in problems] == ["Other"]
