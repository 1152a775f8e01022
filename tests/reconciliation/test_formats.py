"""File format declarations: a wrong declaration is refused at once, naming every problem."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import banks.statement_format as statement_format
import reconciliation.formats as formats
from reconciliation.formats import STANDARD_TEXT, FileFormat, SummaryLine

COLUMNS = ("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"columns": (*COLUMNS, "colour")}, "unknown columns ['colour']"),
        ({"columns": (*COLUMNS, "serial")}, "more than one column"),
        ({"columns": COLUMNS[1:]}, "missing columns ['vt_code (or a fixed vt_code for the file)']"),
        ({"columns": COLUMNS[:-1]}, "missing columns ['payee_acct_no']"),
        ({"delimiter": None}, "exactly one of delimiter"),
        ({"delimiter": "||"}, "one character"),
        ({"delimiter": "\n"}, "one character"),
        ({"delimiter": None, "widths": (1, 2)}, "one positive width per column"),
        ({"encoding": "latin-1"}, "encoding 'latin-1'"),
        ({"header_lines": -1}, "cannot be negative"),
        ({"amount_unit": "jiao"}, "yuan or fen"),
        ({"date_format": "DD.MM.YYYY"}, "date_format"),
        ({"status_codes": (("0", 0), ("0", 1))}, "distinct codes"),
        ({"status_codes": (("9", 9),)}, "ProState 0, 1 or 2"),
        ({"summary": SummaryLine(place="trailer", count_column=0, amount_column=1)}, "has 0 trailer lines"),
        ({"header_lines": 1, "summary": SummaryLine(place="header", count_column=-1, amount_column=1)}, "must exist"),
        (
            {"header_lines": 1, "summary": SummaryLine(place="header", count_column=0, amount_column=1, widths=(3,))},
            "gives the summary line's widths",
        ),
    ],
)
def test_a_wrong_declaration_is_refused(changes: dict[str, object], words: str) -> None:
    values: dict[str, object] = {"name": "x", "columns": COLUMNS, "delimiter": "|"} | changes
    with pytest.raises(ValueError, match=re.escape(words)) as caught:
        FileFormat(**values)  # type: ignore[arg-type]
    assert str(caught.value).startswith("file format 'x': ")


def test_a_fixed_width_summary_must_fit_its_widths() -> None:
    with pytest.raises(ValueError, match="must exist"):
        FileFormat(
            name="f",
            columns=COLUMNS,
            widths=(1,) * 7,
            trailer_lines=1,
            summary=SummaryLine(place="trailer", count_column=0, amount_column=2, widths=(3, 4)),
        )


def test_the_standard_layout() -> None:
    assert STANDARD_TEXT.column("amount") == 4 and STANDARD_TEXT.column("nothing") is None
    assert not STANDARD_TEXT.fixed_width


def test_the_declarations_live_in_banks_and_import_nothing_from_the_project() -> None:
    """A bank dialect declares its statement file with them (banks/ may not import reconciliation/)."""
    tree = ast.parse(Path(statement_format.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert imported <= {"__future__", "collections.abc", "dataclasses", "typing"}
    for name in formats.__all__:  # the old module re-exports the very same objects
        assert getattr(formats, name) is getattr(statement_format, name), name
