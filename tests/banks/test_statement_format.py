"""Each dialect declares its statement file; the `[statement]` table of a declaration file and its errors."""

from __future__ import annotations

import dataclasses

import pytest

from banks import registry
from banks.declarative import DeclarationError, DeclarativeDialect, declaration_from_toml
from banks.standard import STANDARD_DIALECT
from banks.statement_format import (
    STANDARD_STATEMENT,
    STANDARD_TEXT,
    FileFormat,
    FileFormatError,
    StatementFormatError,
    StatementSource,
    SummaryLine,
)
from tests.banks.test_declarative import MINIMAL

DECLARED = {"standard": "4006", "icbc": "camt053", "ccb": "text", "bocom": "text", "gxnx": "text"}


def test_every_registered_dialect_declares_its_statement_file() -> None:
    """The standard (and a bank without a declaration) delivers the 4006; the banks their own formats."""
    assert {code: d.statement_format.kind for code, d in registry.DIALECTS.items()} == DECLARED
    assert STANDARD_DIALECT.statement_format is STANDARD_STATEMENT
    ccb = registry.get("ccb").statement_format.text
    bocom = registry.get("bocom").statement_format.text
    gxnx = registry.get("gxnx").statement_format.text
    assert ccb is not None and ccb.fixed_width and ccb.encoding == "GBK" and ccb.amount_unit == "fen"
    assert bocom is not None and bocom.delimiter == "," and bocom.encoding == "UTF-8" and bocom.strip
    assert gxnx is not None and gxnx.delimiter == "|" and gxnx.encoding == "GBK"
    assert gxnx.status_codes == (("00", 0), ("01", 1), ("02", 2))
    assert gxnx.summary == SummaryLine(place="header", check_date_column=1, count_column=2, amount_column=3)
    for dialect in registry.DIALECTS.values():
        assert dialect.code == "standard" or dialect.statement_format.description, dialect.code


def test_a_declaration_without_a_statement_table_delivers_the_4006() -> None:
    declaration = declaration_from_toml(MINIMAL, "mybank.toml")
    assert declaration.statement_format == STANDARD_STATEMENT
    assert DeclarativeDialect(declaration).statement_format == STANDARD_STATEMENT


def test_a_statement_table_declares_a_fixed_width_layout() -> None:
    text = (
        MINIMAL
        + """
[statement]
kind = "text"
encoding = "GB18030"
columns = ["serial", "vt_code", "voucher_no", "", "payee_acct_no", "amount", "status", "pay_date"]
widths = [20, 4, 20, 30, 25, 15, 1, 10]
header_lines = 1
trailer_lines = 1
amount_unit = "fen"
date_format = "YYYY/MM/DD"
status_codes = { S = 0, R = 1, F = 2 }
[statement.summary]
place = "trailer"
count_column = 1
amount_column = 2
widths = [3, 10, 15]
"""
    )
    fmt = DeclarativeDialect(declaration_from_toml(text, "mybank.toml")).statement_format.text
    assert fmt == FileFormat(
        name="mybank-txt",
        columns=("serial", "vt_code", "voucher_no", "", "payee_acct_no", "amount", "status", "pay_date"),
        widths=(20, 4, 20, 30, 25, 15, 1, 10),
        encoding="GB18030",
        header_lines=1,
        trailer_lines=1,
        amount_unit="fen",
        date_format="YYYY/MM/DD",
        status_codes=(("S", 0), ("R", 1), ("F", 2)),
        summary=SummaryLine(place="trailer", count_column=1, amount_column=2, widths=(3, 10, 15)),
    )


def test_camt053_needs_only_its_kind() -> None:
    text = MINIMAL + '\n[statement]\nkind = "camt053"\ndescription = "ISO 20022"\n'
    source = declaration_from_toml(text, "mybank.toml").statement_format
    assert source == StatementSource("camt053", description="ISO 20022")


TEXT = '[statement]\nkind = "text"\ncolumns = ["vt_code", "voucher_no", "serial", "pay_date", "amount", "status", '
TEXT += '"payee_acct_no"]\n'
BROKEN = [
    ("no kind", '[statement]\nname = "x"', "statement.kind", "is required"),
    ("unknown kind", '[statement]\nkind = "mt940"', "statement.kind", "'mt940' is not one of 4006, text, camt053"),
    ("not a table", 'statement = "text"', "statement", "must be a table"),
    ("unknown key", TEXT + 'delimiter = "|"\ncolour = "red"', "statement.colour", "unknown key"),
    ("layout of a 4006", '[statement]\nkind = "4006"\ndelimiter = "|"', "statement.delimiter", "no text layout"),
    ("text without columns", '[statement]\nkind = "text"\ndelimiter = "|"', "statement.columns", "is required"),
    ("wrong type", TEXT + "delimiter = 1", "statement.delimiter", "must be a string"),
    ("boolean for a number", TEXT + 'delimiter = "|"\nheader_lines = true', "statement.header_lines", "integer"),
    ("columns of numbers", '[statement]\nkind = "text"\ncolumns = [1, 2]', "statement.columns", "array of strings"),
    ("unknown column", TEXT.replace('"serial"', '"serialno"') + 'delimiter = "|"', "statement.columns", "unknown"),
    ("neither delimiter nor widths", TEXT, "statement.delimiter", "exactly one of delimiter"),
    ("widths per column", TEXT + "widths = [1, 2]", "statement.widths", "one positive width per column"),
    ("widths of text", TEXT + 'widths = ["1"]', "statement.widths", "array of integers"),
    ("encoding", TEXT + 'delimiter = "|"\nencoding = "latin-1"', "statement.encoding", "'latin-1'"),
    ("amount unit", TEXT + 'delimiter = "|"\namount_unit = "jiao"', "statement.amount_unit", "yuan or fen"),
    ("date format", TEXT + 'delimiter = "|"\ndate_format = "DD.MM.YYYY"', "statement.date_format", "one of"),
    (
        "status code not a number",
        TEXT + 'delimiter = "|"\nstatus_codes = { S = "0" }',
        "statement.status_codes.S",
        "integer ProState",
    ),
    ("status code 9", TEXT + 'delimiter = "|"\nstatus_codes = { S = 9 }', "statement.status_codes", "ProState 0, 1"),
    (
        "summary without place",
        TEXT + 'delimiter = "|"\nheader_lines = 1\n[statement.summary]\ncount_column = 1\namount_column = 2',
        "statement.summary.place",
        "is required",
    ),
    (
        "summary place",
        TEXT + 'delimiter = "|"\n[statement.summary]\nplace = "footer"\ncount_column = 1\namount_column = 2',
        "statement.summary.place",
        "'footer'",
    ),
    (
        "summary on a missing line",
        TEXT + 'delimiter = "|"\n[statement.summary]\nplace = "header"\ncount_column = 1\namount_column = 2',
        "statement.summary.index",
        "has 0 header lines",
    ),
    (
        "summary widths of a delimited file",
        TEXT + 'delimiter = "|"\nheader_lines = 1\n[statement.summary]\nplace = "header"\ncount_column = 0\n'
        "amount_column = 1\nwidths = [3, 4]",
        "statement.summary.widths",
        "a delimited one does not",
    ),
    (
        "unknown summary key",
        TEXT + 'delimiter = "|"\nheader_lines = 1\n[statement.summary]\nplace = "header"\ncount_column = 0\n'
        "amount_column = 1\nline = 2",
        "statement.summary.line",
        "unknown key",
    ),
]


@pytest.mark.parametrize(("case", "extra", "field", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_statement_errors_name_the_file_and_the_field(case: str, extra: str, field: str, words: str) -> None:
    """Like every mistake in a declaration file: refused, naming the file and the field."""
    text = MINIMAL + "\n" + extra if extra.startswith("[") else extra + "\n" + MINIMAL  # top-level keys first
    with pytest.raises(DeclarationError) as info:
        declaration_from_toml(text + "\n", "mybank.toml")
    assert info.value.field == field
    assert str(info.value).startswith(f"mybank.toml: {field}: ")
    assert words in str(info.value)


def test_a_statement_source_is_checked_when_it_is_made() -> None:
    with pytest.raises(StatementFormatError, match="'mt940' is not one of"):
        StatementSource("mt940")  # type: ignore[arg-type]
    with pytest.raises(StatementFormatError, match="declares its layout"):
        StatementSource("text")
    with pytest.raises(StatementFormatError, match="a camt053 statement has no text layout"):
        StatementSource("camt053", STANDARD_TEXT)
    base = declaration_from_toml(MINIMAL)
    with pytest.raises(DeclarationError, match="statement: must be a StatementSource"):
        DeclarativeDialect(dataclasses.replace(base, statement_format="text"))  # type: ignore[arg-type]


def test_a_wrong_layout_names_every_problem_and_its_attribute() -> None:
    with pytest.raises(FileFormatError) as info:
        FileFormat(name="x", columns=("colour",), encoding="latin-1", amount_unit="jiao")  # type: ignore[arg-type]
    fields = [f for f, _message in info.value.problems]
    assert fields == ["columns", "columns", "delimiter", "encoding", "amount_unit"]
    assert isinstance(info.value, ValueError) and str(info.value).startswith("file format 'x': unknown columns")
