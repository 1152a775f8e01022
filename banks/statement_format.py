"""The statement file a bank delivers: the standard 4006 document, a declared text layout, or ISO 20022 camt.053.

Each dialect declares how its bank delivers the end-of-day statement as a file (:class:`StatementSource`, the
dialect's `statement_format`); `tgw reconcile --statement FILE` reads that format unless told otherwise, and the
simulated banks write it. Differences between banks are data here, not code (STYLE.md §3).

A bank that delivers a text file declares the file's layout as a :class:`FileFormat`; the reader
(:func:`reconciliation.readers.read_text`) does the rest. This module lives in `banks/`, below
`reconciliation/`, so that a dialect can declare its statement file; it imports nothing from the project.
(`reconciliation.formats` re-exports it under its old name.)

The fields a statement line may carry are those of a 4006 `Detail` (PROTOCOL.md §5.5), named by
:data:`FIELDS`. `ProState` codes are the standard's integers (0 paid, 1 returned, 2 failed); a format maps its
own status codes onto them with `status_codes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

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


class FileFormatError(ValueError):
    """A text statement layout that cannot work.

    Attributes:
        problems: Every problem, as (the attribute concerned, e.g. `widths` or `summary.index`, what is wrong).
    """

    def __init__(self, name: str, problems: list[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"file format {name!r}: " + "; ".join(message for _field, message in problems))


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

    Raises:
        FileFormatError: (a ValueError) when the layout cannot work, naming every problem.
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
            raise FileFormatError(self.name, problems)
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.columns) if name})

    def _problems(self) -> list[tuple[str, str]]:
        p: list[tuple[str, str]] = []
        unknown = [c for c in self.columns if c and c not in FIELDS]
        if unknown:
            p.append(("columns", f"unknown columns {unknown}; known: {', '.join(FIELDS)}"))
        named = [c for c in self.columns if c]
        if len(named) != len(set(named)):
            p.append(("columns", "a field is named by more than one column"))
        missing = [f for f in REQUIRED_FIELDS if f not in named]
        if "vt_code" not in named and not self.vt_code:
            missing.append("vt_code (or a fixed vt_code for the file)")
        if missing:
            p.append(("columns", f"missing columns {missing}"))
        if (self.delimiter is None) == (self.widths is None):
            p.append(("delimiter", "declare exactly one of delimiter (delimited) and widths (fixed-width)"))
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in "\r\n"):
            p.append(("delimiter", "the delimiter must be one character other than a line break"))
        if self.widths is not None and (len(self.widths) != len(self.columns) or min(self.widths, default=0) < 1):
            p.append(("widths", "widths must give one positive width per column"))
        if self.encoding.upper() not in ENCODINGS:
            p.append(("encoding", f"encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}"))
        if min(self.header_lines, self.trailer_lines) < 0:
            p.append(("header_lines", "header_lines and trailer_lines cannot be negative"))
        if self.amount_unit not in ("yuan", "fen"):
            p.append(("amount_unit", "amount_unit must be yuan or fen"))
        if self.date_format not in DATE_FORMATS:
            p.append(("date_format", f"date_format must be one of {', '.join(DATE_FORMATS)}"))
        codes = dict(self.status_codes)
        if len(codes) != len(self.status_codes) or not set(codes.values()) <= {0, 1, 2}:
            p.append(("status_codes", "status_codes must map distinct codes onto ProState 0, 1 or 2"))
        if self.summary is not None:
            p += self._summary_problems(self.summary)
        return p

    def _summary_problems(self, s: SummaryLine) -> list[tuple[str, str]]:
        p: list[tuple[str, str]] = []
        lines = self.header_lines if s.place == "header" else self.trailer_lines
        if not 0 <= s.index < lines:
            where = f"the summary is {s.place} line {s.index}, but the format has {lines} {s.place} lines"
            p.append(("summary.index", where))
        columns = [c for c in (s.count_column, s.amount_column, s.check_date_column) if c is not None]
        if min(columns) < 0 or (s.widths is not None and max(columns) >= len(s.widths)):
            p.append(("summary", "summary columns must exist in the summary line"))
        if (self.widths is None) != (s.widths is None):
            why = "a fixed-width format gives the summary line's widths, a delimited one does not"
            p.append(("summary.widths", why))
        return p

    @property
    def fixed_width(self) -> bool:
        """True for a fixed-width file."""
        return self.widths is not None

    def column(self, name: str) -> int | None:
        """The index of the column carrying field `name`, or None."""
        return self._index.get(name)


#: The standard text layout (docs/reconciliation.md): UTF-8, `|`-separated, one header line
#: `H|CheckDate|AllNum|AllAmt`, the fields in the order of a 4006 Detail, amounts in yuan. `tgw reconcile
#: --format text` reads it for a bank whose dialect declares no text layout of its own.
STANDARD_TEXT: Final = FileFormat(
    name="standard-txt",
    columns=("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no"),
    delimiter="|",
    header_lines=1,
    summary=SummaryLine(place="header", check_date_column=1, count_column=2, amount_column=3),
)


# --- the statement a dialect declares -------------------------------------------------------------------------

StatementKind = Literal["4006", "text", "camt053"]
#: The statement file kinds, as `tgw reconcile --format` and a declaration's `statement.kind` name them.
KINDS: Final[tuple[StatementKind, ...]] = ("4006", "text", "camt053")
KIND_TITLES: Final[dict[str, str]] = {
    "4006": "the standard's 4006 statement document (PROTOCOL.md §5.5)",
    "text": "a text file of a declared layout",
    "camt053": "an ISO 20022 camt.053 bank-to-customer statement (BkToCstmrStmt)",
}


class StatementFormatError(ValueError):
    """A statement declaration that cannot work; `field` names the key (`kind`, `widths`, `summary.index`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class StatementSource:
    """How a bank delivers its end-of-day statement as a file: a dialect's `statement_format`.

    Attributes:
        kind: "4006" (the standard's 4006 document: `<Message>` or a bare `<Statement>`, one file per page),
            "text" (a text file laid out as `text` declares) or "camt053" (ISO 20022 camt.053, any version).
        text: The layout of a "text" statement; None for the other kinds.
        description: Prose for the dialect's page (docs/banks/<code>.md).

    Raises:
        StatementFormatError: A kind not in :data:`KINDS`, or a layout given for any kind but "text" or
            missing for "text".
    """

    kind: StatementKind = "4006"
    text: FileFormat | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StatementFormatError("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "text" and not isinstance(self.text, FileFormat):
            raise StatementFormatError("kind", "a text statement declares its layout (columns, delimiter or widths)")
        if self.kind != "text" and self.text is not None:
            raise StatementFormatError("kind", f"a {self.kind} statement has no text layout")
        if not isinstance(self.description, str):
            raise StatementFormatError("description", "must be a string")


#: The standard's statement file: the 4006 document (what a bank without a declaration of its own delivers).
STANDARD_STATEMENT: Final = StatementSource("4006")


# --- the [statement] table of a declaration file -------------------------------------------------------------

_TOML_TYPES: Final[dict[str, type]] = {
    "kind": str,
    "description": str,
    "name": str,
    "columns": list,
    "delimiter": str,
    "widths": list,
    "encoding": str,
    "header_lines": int,
    "trailer_lines": int,
    "amount_unit": str,
    "date_format": str,
    "status_codes": dict,
    "vt_code": str,
    "strip": bool,
    "summary": dict,
}
_SUMMARY_TYPES: Final[dict[str, type]] = {
    "place": str,
    "index": int,
    "count_column": int,
    "amount_column": int,
    "check_date_column": int,
    "widths": list,
}
_TYPE_NAMES: Final[dict[type, str]] = {str: "string", int: "integer", bool: "boolean", list: "array", dict: "table"}


def _check_types(table: Mapping[str, Any], spec: Mapping[str, type], prefix: str) -> None:
    for key, value in table.items():
        expected = spec.get(key)
        if expected is None:
            raise StatementFormatError(f"{prefix}{key}", f"unknown key; expected one of {', '.join(spec)}")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise StatementFormatError(f"{prefix}{key}", f"must be a {_TYPE_NAMES[expected]}")


def _array(value: list[Any], item: type, where: str) -> tuple[Any, ...]:
    if not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        raise StatementFormatError(where, f"must be an array of {_TYPE_NAMES[item]}s")
    return tuple(value)


def statement_from_table(table: Mapping[str, Any], *, default_name: str) -> StatementSource:
    """The statement declared by a declaration file's `[statement]` table (docs/banks/adding-a-bank.md).

    Args:
        table: The table, as `tomllib` read it.
        default_name: The layout's name when the table gives none (`gxnx-txt`).

    Raises:
        StatementFormatError: An unknown key, a value of the wrong type, a missing `kind`, text keys for a
            statement that is not text, or a layout that cannot work; `field` names the key.
    """
    _check_types(table, _TOML_TYPES, "")
    kind = table.get("kind")
    if kind is None:
        raise StatementFormatError("kind", "is required: one of " + ", ".join(KINDS))
    if kind not in KINDS:
        raise StatementFormatError("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    description = table.get("description", "")
    layout_keys = [key for key in table if key not in ("kind", "description")]
    if kind != "text":
        if layout_keys:
            raise StatementFormatError(layout_keys[0], f"a {kind} statement has no text layout")
        return StatementSource(kind, description=description)
    if "columns" not in table:
        raise StatementFormatError("columns", "is required for a text statement")
    summary_table = table.get("summary")
    summary = None
    if summary_table is not None:
        _check_types(summary_table, _SUMMARY_TYPES, "summary.")
        for key in ("place", "count_column", "amount_column"):
            if key not in summary_table:
                raise StatementFormatError(f"summary.{key}", "is required")
        if summary_table["place"] not in ("header", "trailer"):
            raise StatementFormatError("summary.place", f"{summary_table['place']!r} is not 'header' or 'trailer'")
        widths = summary_table.get("widths")
        summary = SummaryLine(
            place=summary_table["place"],
            count_column=summary_table["count_column"],
            amount_column=summary_table["amount_column"],
            index=summary_table.get("index", 0),
            check_date_column=summary_table.get("check_date_column"),
            widths=None if widths is None else _array(widths, int, "summary.widths"),
        )
    codes: list[tuple[str, int]] = []
    for code, state in table.get("status_codes", dict(STANDARD_STATUS_CODES)).items():
        if not isinstance(state, int) or isinstance(state, bool):
            raise StatementFormatError(f"status_codes.{code}", "must be an integer ProState (0, 1 or 2)")
        codes.append((code, state))
    widths = table.get("widths")
    try:
        text = FileFormat(
            name=table.get("name", default_name),
            columns=_array(table["columns"], str, "columns"),
            delimiter=table.get("delimiter"),
            widths=None if widths is None else _array(widths, int, "widths"),
            encoding=table.get("encoding", "UTF-8"),
            header_lines=table.get("header_lines", 0),
            trailer_lines=table.get("trailer_lines", 0),
            amount_unit=table.get("amount_unit", "yuan"),
            date_format=table.get("date_format", "YYYYMMDD"),
            status_codes=tuple(codes),
            summary=summary,
            vt_code=table.get("vt_code"),
            strip=table.get("strip", False),
        )
    except FileFormatError as exc:
        where, message = exc.problems[0]
        raise StatementFormatError(where, message) from None
    return StatementSource("text", text, description)


__all__ = [
    "DATE_FORMATS",
    "ENCODINGS",
    "FIELDS",
    "KINDS",
    "REQUIRED_FIELDS",
    "STANDARD_STATEMENT",
    "STANDARD_STATUS_CODES",
    "STANDARD_TEXT",
    "AmountUnit",
    "FileFormat",
    "FileFormatError",
    "StatementFormatError",
    "StatementKind",
    "StatementSource",
    "SummaryLine",
    "SummaryPlace",
    "statement_from_table",
]
