"""Money and dates at the edge: decimal yuan text <-> integer fen, and the standard's date/time formats.

Money is an integer number of fen everywhere inside the project (STYLE.md §4); text with exactly two
fraction digits (`1234.50`, `-10.00`) exists only on the wire. No float ever touches an amount.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time

#: The wire form of an amount: optional minus, integer part without leading zeros, exactly two decimals.
AMOUNT_RE = re.compile(r"-?(0|[1-9][0-9]{0,15})\.[0-9]{2}")
#: The largest amount the standard carries: 16 integer digits of yuan (fits comfortably in 64 bits of fen).
MAX_AMOUNT_FEN = 10**18 - 1


def parse_amount_fen(text: str) -> int:
    """Parse `1234.50` into 123450 fen.

    Raises:
        ValueError: the text is not of the form `-?digits.dd` (no exponent, no spaces, no plus sign,
            no leading zeros, exactly two fraction digits).
    """
    if not AMOUNT_RE.fullmatch(text):
        raise ValueError(f"not an amount with two decimals: {text!r}")
    negative = text.startswith("-")
    whole, frac = text.lstrip("-").split(".")
    fen = int(whole) * 100 + int(frac)
    if negative and fen == 0:
        raise ValueError(f"negative zero is not an amount: {text!r}")
    return -fen if negative else fen


def format_amount_fen(fen: int) -> str:
    """Format 123450 fen as `1234.50` (and -1000 as `-10.00`)."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"amounts are integer fen, not {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole}.{frac:02d}"


def parse_date8(text: str) -> date:
    """Parse `YYYYMMDD`.

    Raises:
        ValueError: not eight digits or not a calendar date.
    """
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError(f"not a YYYYMMDD date: {text!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def format_date8(value: date) -> str:
    """Format a date as `YYYYMMDD`."""
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def parse_datetime14(text: str) -> datetime:
    """Parse `YYYYMMDDhhmmss` (China Standard Time, returned naive).

    Raises:
        ValueError: not fourteen digits or not a valid date and time.
    """
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError(f"not a YYYYMMDDhhmmss time: {text!r}")
    return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:]))


def format_datetime14(value: datetime) -> str:
    """Format a datetime as `YYYYMMDDhhmmss` (seconds precision; microseconds are dropped)."""
    return format_date8(value.date()) + f"{value.hour:02d}{value.minute:02d}{value.second:02d}"


def parse_time6(text: str) -> time:
    """Parse `hhmmss`.

    Raises:
        ValueError: not six digits or not a valid time of day.
    """
    if len(text) != 6 or not text.isascii() or not text.isdigit():
        raise ValueError(f"not an hhmmss time: {text!r}")
    return time(int(text[:2]), int(text[2:4]), int(text[4:]))


def format_time6(value: time) -> str:
    """Format a time of day as `hhmmss`."""
    return f"{value.hour:02d}{value.minute:02d}{value.second:02d}"
