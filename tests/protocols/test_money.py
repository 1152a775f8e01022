"""Amounts as integer fen and the standard's date formats, at the edge where text meets values."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import money


@given(st.integers(-(10**17), 10**17))
def test_amount_round_trip(fen: int) -> None:
    """Every integer fen amount survives text and back unchanged."""
    assert money.parse_amount_fen(money.format_amount_fen(fen)) == fen


@pytest.mark.parametrize(
    ("text", "fen"), [("0.00", 0), ("1234.50", 123450), ("-10.00", -1000), ("0.01", 1), ("-0.05", -5)]
)
def test_amount_examples(text: str, fen: int) -> None:
    """Known amounts parse to the right number of fen and format back to the same text."""
    assert money.parse_amount_fen(text) == fen
    assert money.format_amount_fen(fen) == text


@pytest.mark.parametrize(
    "text", ["1", "1.5", "1.500", "01.00", "+1.00", " 1.00", "1e3", "1,000.00", "-0.00", "１.00", "", "."]
)
def test_amount_rejects_non_canonical_text(text: str) -> None:
    """Anything but `-?digits.dd` without leading zeros is refused, never guessed."""
    with pytest.raises(ValueError):
        money.parse_amount_fen(text)


@pytest.mark.parametrize("value", [1.5, True, "100"])
def test_amount_format_takes_integer_fen_only(value: object) -> None:
    """Floats, booleans and strings are not amounts."""
    with pytest.raises(TypeError):
        money.format_amount_fen(value)  # type: ignore[arg-type]


def test_dates_and_times_round_trip() -> None:
    """YYYYMMDD, YYYYMMDDhhmmss and hhmmss parse and format symmetrically."""
    assert money.parse_date8("20261123") == date(2026, 11, 23)
    assert money.format_date8(date(2026, 1, 2)) == "20260102"
    assert money.parse_datetime14("20261123103001") == datetime(2026, 11, 23, 10, 30, 1)
    assert money.format_datetime14(datetime(2026, 11, 23, 10, 30, 1, 999)) == "20261123103001"
    assert money.parse_time6("235959") == time(23, 59, 59)
    assert money.format_time6(time(9, 5, 7)) == "090507"


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (money.parse_date8, "2026113"),
        (money.parse_date8, "20261131"),
        (money.parse_date8, "2026-1-1"),
        (money.parse_date8, "２０２６１１２３"),
        (money.parse_datetime14, "2026112310300"),
        (money.parse_datetime14, "20261123256001"),
        (money.parse_datetime14, "2026112310300a"),
        (money.parse_time6, "24000"),
        (money.parse_time6, "240000"),
        (money.parse_time6, "12:000"),
    ],
)
def test_bad_dates_and_times_are_refused(parse: object, text: str) -> None:
    """Wrong lengths, non-ASCII digits and impossible dates or times raise ValueError."""
    with pytest.raises(ValueError):
        parse(text)  # type: ignore[operator]
