"""JSON form of canonical messages, for the HTTP API, the CLI and the store: driven by the same wire table.

Keys are the standard's element names (`VoucherNo`, `PayAmt`, …), so that a finance-side developer who knows
the XML knows the JSON. Amounts are decimal yuan strings with two places (`"1234.50"`, never a float), dates
`YYYYMMDD`, times `YYYYMMDDhhmmss` / `hhmmss`, exactly as on the wire; lists are JSON arrays under the
container's name (`"DetailList": [{…}, …]`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from protocols import money
from protocols.errors import Problem, ValidationError
from protocols.messages import Kind, wire_fields

_TO: Final[dict[Kind, Callable[[Any], Any]]] = {
    Kind.TEXT: str,
    Kind.INT: int,
    Kind.AMOUNT: money.format_amount_fen,
    Kind.DATE: money.format_date8,
    Kind.DATETIME: money.format_datetime14,
    Kind.TIME: money.format_time6,
}
_FROM: Final[dict[Kind, Callable[[str], Any]]] = {
    Kind.AMOUNT: money.parse_amount_fen,
    Kind.DATE: money.parse_date8,
    Kind.DATETIME: money.parse_datetime14,
    Kind.TIME: money.parse_time6,
}


def to_json(record: Any) -> dict[str, Any]:
    """The JSON object of a record or payload; absent optionals are left out."""
    out: dict[str, Any] = {}
    for attr, wire in wire_fields(type(record)):
        value = getattr(record, attr)
        if wire.kind is Kind.LIST:
            assert wire.container is not None
            out[wire.container] = [to_json(item) for item in value]
        elif value is not None:
            out[wire.element] = _TO[wire.kind](value)
    return out


def from_json(cls: type[Any], data: Any, path: str = "") -> Any:
    """Build a record of type `cls` from its JSON object.

    Raises:
        ValidationError: naming every missing, unknown or malformed field (the record is not built).
    """
    problems: list[Problem] = []
    record = _read(cls, data, path or cls.__name__, problems)
    if problems:
        raise ValidationError(problems)
    return record


def _read(cls: type[Any], data: Any, path: str, problems: list[Problem]) -> Any:
    if not isinstance(data, dict):
        problems.append(Problem(path, f"expected an object, not {type(data).__name__}"))
        return None
    known = set()
    values: dict[str, Any] = {}
    for attr, wire in wire_fields(cls):
        key = wire.container if wire.kind is Kind.LIST else wire.element
        assert key is not None
        known.add(key)
        at = f"{path}/{key}"
        if key not in data:
            if wire.kind is Kind.LIST and wire.min_items == 0:
                values[attr] = ()
            elif wire.optional:
                values[attr] = None
            else:
                problems.append(Problem(at, "missing"))
            continue
        raw = data[key]
        if wire.kind is Kind.LIST:
            assert wire.item is not None
            if not isinstance(raw, list):
                problems.append(Problem(at, "expected a list"))
                continue
            values[attr] = tuple(_read(wire.item, item, f"{at}[{n}]", problems) for n, item in enumerate(raw, 1))
        else:
            values[attr] = _scalar(wire.kind, raw, at, problems)
    for key in data:
        if key not in known:
            problems.append(Problem(f"{path}/{key}", "unknown field"))
    if problems:
        return None
    return cls(**values)


def _scalar(kind: Kind, raw: Any, at: str, problems: list[Problem]) -> Any:
    if kind is Kind.INT:
        if isinstance(raw, bool) or not isinstance(raw, int):
            problems.append(Problem(at, "expected an integer"))
            return None
        return raw
    if not isinstance(raw, str):
        problems.append(Problem(at, "expected a string"))
        return None
    if kind is Kind.TEXT:
        return raw
    try:
        return _FROM[kind](raw)
    except ValueError as exc:
        problems.append(Problem(at, str(exc)))
        return None
