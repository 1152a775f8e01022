"""Declarations of text statement files: delimited or fixed-width columns, encoding, header and trailer, units.

A bank that delivers its statement as a text file declares the file's layout as a :class:`FileFormat`; the
reader (:func:`reconciliation.readers.read_text`) does the rest. Differences between banks are data here,
not code (STYLE.md §3).

This module is self-contained on purpose: it imports nothing from the project, so that a bank dialect can
declare its statement format with it. (A dialect lives in `banks/`, below `reconciliation/`, and may not
import from here; moving this file to `banks/` as it is keeps the rule.)

The fields a statement line may carry are those of a 4006 `Detail` (PROTOCOL.md §5.5), named by
:data:`FIELDS`. `ProState` codes are the standard's integers (0 paid, 1 returned, 2 failed); a format maps its
own status codes onto them with `status_codes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

#: Field names a column may carry ("" for a column the reader ignores, such as a payee's name).
FIELDS: Final = ("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no")
#: Fields every line must have (a VtCode may instead be fixed for the whole file, `FileFormat.vt_code`).
REQUIRED_FIELDS: Final = ("serial", "pay_date", "amount", "status", "payee_acct_no")
#: Encodings a text statement may be in (the standard's, PROTOCOL.md §3).
ENCODINGS: Final = ("UTF-8", "GBK", "GB18030")
#: Date layouts understood, as written in a format declaration.
DATE_FORMATS: Final = ("YYYYMMDD", "YYYY-MM-DD", "YYYY/MM/DD")

AmountUnit = Literal["yuan", "fen"]
SummaryPlace = Literal["header", "trailer"]

#: The standard's ProState codes (PROTOCOL.md §5.5).
STANDARD_STATUS_CODES: Final = (("0", 0), ("1", 1), ("2", 2))


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """Where a text statement declares its totals: one of its header or trailer lines.

    Column numbers count from 0, in the summary line's own layout: split with the format's delimiter, or
    cut by `widths` (fixed-width files; bytes in the file's encoding).

    Attributes:
        place: "header" or "trailer".
        index: Which header or trailer line (0 is the first).
        count_column: Column of the line count (`AllNum`).
        amount_column: Column of the signed total (`AllAmt`), in the format's amount unit.
        check_date_column: Column of the check date, in the format's date layout, if the line carries it.
        widths: For a fixed-width file, the summary line's column widths.
    """

    place: SummaryPlace
    count_column: int
    amount_column: int
    index: int = 0
    check_date_column: int | None = None
    widths: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class FileFormat:
    """The layout of a text statement file.

    Attributes:
        name: A short name for messages and reports (`icbc-txt`).
        columns: One entry per column, in order: a name from :data:`FIELDS`, or "" for a column to ignore.
        delimiter: The column separator of a delimited file (one character); None for a fixed-width file.
        widths: The column widths of a fixed-width file, in **bytes** of the file's encoding (a GBK Chinese
            character is two); None for a delimited file. A line may be shorter than the sum (trailing
            spaces trimmed) but not longer.
        encoding: One of :data:`ENCODINGS`. A UTF-8 byte order mark is skipped.
        header_lines: Lines before the details.
        trailer_lines: Lines after the details (the last non-blank lines of the file).
        amount_unit: "yuan" (two decimals, `1234.50`) or "fen" (an integer, `123450`); negative for a return.
        date_format: One of :data:`DATE_FORMATS`.
        status_codes: The file's status codes and the `ProState` each means.
        summary: Where the file declares its count and total, if it does.
        vt_code: The `VtCode` of every line, for a file without a VtCode column.
        strip: Strip spaces around delimited values (fixed-width values are always stripped).
    """

    name: str
    columns: tuple[str, ...]
    delimiter: str | None = None
    widths: tuple[int, ...] | None = None
    encoding: str = "UTF-8"
    header_lines: int = 0
    trailer_lines: int = 0
    amount_unit: AmountUnit = "yuan"
    date_format: str = "YYYYMMDD"
    status_codes: tuple[tuple[str, int], ...] = STANDARD_STATUS_CODES
    summary: SummaryLine | None = None
    vt_code: str | None = None
    strip: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"file format {self.name!r}: " + "; ".join(problems))
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.columns) if name})

    def _problems(self) -> list[str]:
        p: list[str] = []
        unknown = [c for c in self.columns if c and c not in FIELDS]
        if unknown:
            p.append(f"unknown columns {unknown}; known: {', '.join(FIELDS)}")
        named = [c for c in self.columns if c]
        if len(named) != len(set(named)):
            p.append("a field is named by more than one column")
        missing = [f for f in REQUIRED_FIELDS if f not in named]
        if "vt_code" not in named and not self.vt_code:
            missing.append("vt_code (or a fixed vt_code for the file)")
        if missing:
            p.append(f"missing columns {missing}")
        if (self.delimiter is None) == (self.widths is None):
            p.append("declare exactly one of delimiter (delimited) and widths (fixed-width)")
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in "\r\n"):
            p.append("the delimiter must be one character other than a line break")
        if self.widths is not None and (len(self.widths) != len(self.columns) or min(self.widths, default=0) < 1):
            p.append("widths must give one positive width per column")
        if self.encoding.upper() not in ENCODINGS:
            p.append(f"encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        if min(self.header_lines, self.trailer_lines) < 0:
            p.append("header_lines and trailer_lines cannot be negative")
        if self.amount_unit not in ("yuan", "fen"):
            p.append("amount_unit must be yuan or fen")
        if self.date_format not in DATE_FORMATS:
            p.append(f"date_format must be one of {', '.join(DATE_FORMATS)}")
        codes = dict(self.status_codes)
        if len(codes) != len(self.status_codes) or not set(codes.values()) <= {0, 1, 2}:
            p.append("status_codes must map distinct codes onto ProState 0, 1 or 2")
        if self.summary is not None:
            p += self._summary_problems(self.summary)
        return p

    def _summary_problems(self, s: SummaryLine) -> list[str]:
        p: list[str] = []
        lines = self.header_lines if s.place == "header" else self.trailer_lines
        if not 0 <= s.index < lines:
            p.append(f"the summary is {s.place} line {s.index}, but the format has {lines} {s.place} lines")
        columns = [c for c in (s.count_column, s.amount_column, s.check_date_column) if c is not None]
        if min(columns) < 0 or (s.widths is not None and max(columns) >= len(s.widths)):
            p.append("summary columns must exist in the summary line")
        if (self.widths is None) != (s.widths is None):
            p.append("a fixed-width format gives the summary line's widths, a delimited one does not")
        return p

    @property
    def fixed_width(self) -> bool:
        """True for a fixed-width file."""
        return self.widths is not None

    def column(self, name: str) -> int | None:
        """The index of the column carrying field `name`, or None."""
        return self._index.get(name)


#: The standard text layout the simulated banks write (docs/reconciliation.md): UTF-8, `|`-separated, one
#: header line `H|CheckDate|AllNum|AllAmt`, the fields in the order of a 4006 Detail, amounts in yuan.
STANDARD_TEXT: Final = FileFormat(
    name="standard-txt",
    columns=("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no"),
    delimiter="|",
    header_lines=1,
    summary=SummaryLine(place="header", check_date_column=1, count_column=2, amount_column=3),
)
