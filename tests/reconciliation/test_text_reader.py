"""Text statements: golden delimited and fixed-width files; the fast and careful paths agree; errors name the line."""

from __future__ import annotations

import io
import random
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.formats import STANDARD_TEXT, FileFormat, SummaryLine
from reconciliation.model import StatementLine, Status, Totals
from reconciliation.readers import StatementLimits, read_text
from reconciliation.readers import text as text_module
from tests.reconciliation.conftest import DATA, make_lines

D = date(2026, 11, 23)

FIXED_GBK = FileFormat(
    name="ccb-fixed",
    columns=("serial", "vt_code", "voucher_no", "", "payee_acct_no", "amount", "status", "pay_date"),
    widths=(20, 4, 20, 30, 25, 15, 1, 10),
    encoding="GBK",
    header_lines=1,
    trailer_lines=1,
    amount_unit="fen",
    date_format="YYYY-MM-DD",
    status_codes=(("S", 0), ("R", 1), ("F", 2)),
    summary=SummaryLine(place="trailer", count_column=1, amount_column=2, widths=(3, 10, 15)),
)
PLAIN = FileFormat(
    name="plain",
    columns=("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no"),
    delimiter="|",
)


def read(data: bytes, fmt: FileFormat = PLAIN, **limits: int) -> list[StatementLine]:
    return list(read_text(io.BytesIO(data), fmt, limits=StatementLimits(**limits)))


def test_golden_standard_text() -> None:
    """The standard layout: header summary, CRLF, a blank line, a return and a failure."""
    statement = read_text(DATA / "statement-standard.txt", STANDARD_TEXT)
    lines = list(statement)
    assert lines == [
        StatementLine(
            "5201", "5201450100000123", "ICBC2026112300000001", 12_500_000, Status.PAID, "6222020000000000123", D, 2
        ),
        StatementLine(
            "8202", "8202450100000456", "ICBC2026112300000002", 250_050, Status.PAID, "6222020000000000456", D, 3
        ),
        StatementLine(
            "2252", "2252450100000007", "ICBC2026112300000003", -2_500_000, Status.RETURNED, "6222020000000000123", D, 4
        ),
        StatementLine(
            "5201", "5201450100000124", "ICBC2026112300000004", 1_234_500, Status.FAILED, "6217000000000000789", D, 6
        ),
    ]
    assert statement.check_date == D
    assert statement.declared == statement.computed == Totals(4, 11_484_550)
    assert statement.describe(6).endswith("statement-standard.txt line 6") and statement.format_name == "standard-txt"


def test_golden_fixed_width_gbk() -> None:
    """Byte widths in GBK (a Chinese name column, ignored), fen amounts, status letters, a trailer summary."""
    statement = read_text(DATA / "statement-fixed-gbk.txt", FIXED_GBK)
    lines = list(statement)
    assert [
        (x.serial, x.vt_code, x.voucher_no, x.amount_fen, x.status, x.payee_acct_no, x.pay_date, x.position)
        for x in lines
    ] == [
        ("CCB20261123000000001", "5201", "5201450100000200", 12_500_000, Status.PAID, "6227000000000000200", D, 2),
        ("CCB20261123000000002", "8202", "8202450100000201", 99_999, Status.FAILED, "6227000000000000201", D, 3),
        ("CCB20261123000000003", "2252", "2252450100000009", -500_000, Status.RETURNED, "6227000000000000200", D, 4),
    ]
    assert statement.declared == statement.computed == Totals(3, 12_099_999) and statement.check_date is None


def test_a_statement_is_read_once() -> None:
    statement = read_text(DATA / "statement-standard.txt", STANDARD_TEXT)
    list(statement)
    with pytest.raises(StatementError, match="only once"):
        list(statement)


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


LINE = "5201|V1|S1|20261123|10.00|0|622"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("5201|V1|S1|20261123|10.00|0", "6 columns where the format declares 7"),
        ("5201|V1|S1|20261123|10.0|0|622", "'10.0' is not an amount in yuan"),
        ("5201|V1|S1|20261123|1e3|0|622", "not an amount"),
        ("5201|V1|S1|20261131|10.00|0|622", "not a calendar date"),
        ("5201|V1|S1|2026-11-23|10.00|0|622", "not a date of the form YYYYMMDD"),
        ("5201|V1|S1|20261123|10.00|7|622", "unknown status code '7'"),
        ("5201|V1|S1|20261123|10.00|1|622", "negative exactly when the line is a return"),
        ("5201|V1|S1|20261123|-10.00|0|622", "negative exactly when the line is a return"),
        ("5201|V\x001|S1|20261123|10.00|0|622", "not printable"),
        ("5201|V1|S\t1|20261123|10.00|0|622", "not printable"),
        ("5201|V1|S1|20261123|10.00|0|622\x7f", "not printable"),
        ("5201|V1|S1\u200b|20261123|10.00|0|622", "not printable"),
        ("5201|||20261123|10.00|0|622", "neither a voucher number nor a serial"),
    ],
)
def test_a_bad_line_is_named(line: str, words: str) -> None:
    """Whatever is wrong, the error names the file's line (here line 3) and says what."""
    with pytest.raises(StatementError, match=words) as caught:
        read(_text([LINE, LINE.replace("V1", "V0").replace("S1", "S0"), line]))
    assert caught.value.line == 3 and "line 3" in str(caught.value)


def test_blank_and_whitespace_lines_are_skipped_everywhere() -> None:
    lines = read(_text(["", LINE, "   ", "\t", LINE.replace("V1", "V2")]))
    assert [x.position for x in lines] == [2, 5]


def test_a_utf8_bom_is_skipped_and_a_last_line_needs_no_line_break() -> None:
    assert [x.voucher_no for x in read(b"\xef\xbb\xbf" + LINE.encode() + b"\r")] == ["V1"]


def test_invalid_utf8_names_its_line() -> None:
    with pytest.raises(StatementError, match="not valid UTF-8") as caught:
        read(_text([LINE, LINE]) + b"5201|\xff|S|20261123|1.00|0|6\n")
    assert caught.value.line == 3


def test_caps_on_bytes_lines_and_line_length() -> None:
    data = _text([LINE.replace("V1", f"V{i}") for i in range(10)])
    with pytest.raises(StatementLimitExceeded, match="larger than the maximum of 100 bytes"):
        read(data, max_bytes=100)
    with pytest.raises(StatementLimitExceeded, match="more than 5 detail lines"):
        read(data, max_lines=5)
    with pytest.raises(StatementLimitExceeded, match="longer than the maximum of 20 bytes") as caught:
        read(data, max_line_bytes=20)
    assert caught.value.line == 1
    with pytest.raises(StatementLimitExceeded, match="longer than") as caught:
        read(_text([LINE, "x" * 40]), max_line_bytes=35)
    assert caught.value.line == 2
    # The cap counts bytes, not characters: 13 Chinese characters are 39 bytes of UTF-8 (a line of 42 and 68).
    wide = LINE.replace("S1", "银" * 13)
    assert len(wide) <= 50 < len(wide.encode())
    with pytest.raises(StatementLimitExceeded, match="longer than") as caught:
        read(_text([LINE, LINE, wide]), max_line_bytes=50)
    assert caught.value.line == 3


def test_an_endless_line_is_refused_before_it_is_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 16)
    with pytest.raises(StatementLimitExceeded, match="longer than"):
        read(b"x" * 1000, max_line_bytes=64)


def test_small_blocks_give_the_same_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = list(read_text(DATA / "statement-standard.txt", STANDARD_TEXT))
    monkeypatch.setattr(text_module, "BLOCK_BYTES", 7)
    assert list(read_text(DATA / "statement-standard.txt", STANDARD_TEXT)) == expected
    assert [x.position for x in read_text(DATA / "statement-fixed-gbk.txt", FIXED_GBK)] == [2, 3, 4]


def test_a_trailer_spanning_blocks_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = FileFormat(
        name="t",
        columns=PLAIN.columns,
        delimiter="|",
        trailer_lines=2,
        summary=SummaryLine(place="trailer", index=1, count_column=1, amount_column=2),
    )
    data = _text([LINE.replace("V1", f"V{i}") for i in range(6)] + ["T|ignored", "", "T|6|60.00"])
    for block in (5, 40, 1 << 20):
        monkeypatch.setattr(text_module, "BLOCK_BYTES", block)
        statement = read_text(io.BytesIO(data), fmt)
        assert [x.voucher_no for x in statement] == [f"V{i}" for i in range(6)]
        assert statement.declared == statement.computed == Totals(6, 6000)


def test_an_incomplete_header_or_trailer_is_an_error() -> None:
    fmt = FileFormat(name="t", columns=PLAIN.columns, delimiter="|", header_lines=1, trailer_lines=1)
    with pytest.raises(StatementError, match="ends before its 1 header and 1 trailer"):
        read(_text(["H"]), fmt)


@pytest.mark.parametrize(
    ("summary", "words"),
    [
        ("H|20261123|x|1.00", "the count 'x' is not a number"),
        ("H|20261123|1|1.0", "not an amount"),
        ("H|2026112|1|1.00", "not a date"),
        ("H|20261123", "fewer columns than declared"),
    ],
)
def test_a_bad_summary_line_is_named(summary: str, words: str) -> None:
    with pytest.raises(StatementError, match=words) as caught:
        read(_text([summary, LINE]), STANDARD_TEXT)
    assert caught.value.line == 1


def test_fixed_width_errors_name_the_line() -> None:
    good = (DATA / "statement-fixed-gbk.txt").read_bytes().split(b"\n")
    too_long = good[1] + b"X"
    with pytest.raises(StatementError, match="bytes where the format declares 125") as caught:
        list(read_text(io.BytesIO(b"\n".join([good[0], too_long, good[4]])), FIXED_GBK))
    assert caught.value.line == 2
    cut = good[2][:30] + b"\xb6" + good[2][31:]  # a lead byte without its trail byte
    with pytest.raises(StatementError, match="not valid GBK") as caught:
        list(read_text(io.BytesIO(b"\n".join([good[0], cut, good[4]])), FIXED_GBK))
    assert caught.value.line == 2


def test_fixed_width_lines_may_lack_trailing_spaces_but_not_values() -> None:
    """A line cut short is padded with spaces: fine for an ignored last column, an error for a date."""
    fmt = FileFormat(
        name="f",
        columns=("vt_code", "voucher_no", "serial", "amount", "status", "payee_acct_no", "pay_date", ""),
        widths=(4, 6, 6, 10, 1, 8, 8, 4),
    )
    lines = read(b"5201V00001S00001     10.000PAYEE00120261123\n5201V00002S00002      5.000PAYEE00220261123    \n", fmt)
    assert [(x.voucher_no, x.amount_fen, x.pay_date) for x in lines] == [("V00001", 1000, D), ("V00002", 500, D)]
    with pytest.raises(StatementError, match="'202611' is not a date") as caught:
        read(b"5201V00001S00001     10.000PAYEE00120261123\n5201V00002S00002      5.000PAYEE002202611\n", fmt)
    assert caught.value.line == 2


def test_a_format_without_vtcode_or_voucher_columns() -> None:
    fmt = FileFormat(
        name="s",
        columns=("serial", "pay_date", "amount", "status", "payee_acct_no"),
        delimiter=",",
        vt_code="8202",
        amount_unit="fen",
        date_format="YYYY/MM/DD",
        strip=True,
    )
    lines = read(b" S1 , 2026/11/23 , 1500 , 0 , 622 \n", fmt)
    assert lines == [StatementLine("8202", "", "S1", 1500, Status.PAID, "622", D, 1)]


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 40),
    blanks=st.lists(st.integers(0, 40), max_size=4),
    keyless=st.lists(st.integers(0, 40), max_size=3),
)
def test_the_fast_path_agrees_with_the_careful_one(seed: int, n: int, blanks: list[int], keyless: list[int]) -> None:
    """The column-at-a-time path and the line-by-line path give the same records, whatever the lines."""
    details = make_lines(n, random.Random(seed))
    rows = [
        "|".join(
            (
                x.vt_code,
                "" if i in keyless else x.voucher_no,
                x.x_agent_business_no,
                f"{x.x_pay_date:%Y%m%d}",
                f"{'-' if x.amt_fen < 0 else ''}{abs(x.amt_fen) // 100}.{abs(x.amt_fen) % 100:02d}",
                str(x.pro_state),
                x.payee_acct_no,
            )
        )
        for i, x in enumerate(details)
    ]
    for at in sorted(blanks, reverse=True):
        rows.insert(min(at, len(rows)), "")
    data = _text(rows)
    fast = list(read_text(io.BytesIO(data), PLAIN).records())
    careful = read_text(io.BytesIO(data), PLAIN)
    careful._bulk = lambda *args, **kwargs: None  # type: ignore[method-assign]
    assert fast == list(careful.records())
    blocks = list(read_text(io.BytesIO(data), PLAIN).record_blocks())
    assert [r for block in blocks for r in block] == fast
    assert all(blocks)
    assert [(x.voucher_no, x.amount_fen) for x in read_text(io.BytesIO(data), PLAIN)] == [
        ("" if i in keyless else x.voucher_no, x.amt_fen) for i, x in enumerate(details)
    ]


def test_lines_whose_extra_and_missing_columns_balance_are_refused() -> None:
    """The fast path splits a run of lines at once; one line too wide and one too narrow must not pass as two."""
    good = "5201|V1|S1|20261123|1.00|0|622"
    rows = [good] * 5 + ["5201|V2|S2|20261123|1.00|0|622|x", "5201|V3|S3|20261123|1.00|0"] + [good] * 5
    with pytest.raises(StatementError) as caught:
        read(_text(rows))
    assert caught.value.line == 6
    assert "8 columns" in str(caught.value)


def test_a_control_character_in_a_column_the_reader_ignores_is_not_looked_at() -> None:
    """Only the identifying fields must be printable; a block that is not all printable is checked field by field."""
    fmt = FileFormat(
        name="with-name",
        columns=("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no", ""),
        delimiter="|",
    )
    lines = read(_text([f"{LINE}|a name", f"{LINE.replace('V1', 'V2')}|a\x01name"]), fmt)
    assert [x.voucher_no for x in lines] == ["V1", "V2"]


def test_many_distinct_dates_are_all_parsed() -> None:
    rows = [
        LINE.replace("V1", f"V{i}").replace("20261123", f"{date.fromordinal(D.toordinal() + i):%Y%m%d}")
        for i in range(4200)
    ]
    lines = read(_text(rows))
    assert lines[-1].pay_date == date.fromordinal(D.toordinal() + 4199)


def test_fen_amounts_on_the_fast_path_and_a_blank_line_before_the_header() -> None:
    fmt = FileFormat(
        name="fen",
        columns=PLAIN.columns,
        delimiter="|",
        amount_unit="fen",
        header_lines=1,
        summary=SummaryLine(place="header", count_column=0, amount_column=1),
    )
    statement = read_text(
        io.BytesIO(b"\n2|3000\n5201|V1|S1|20261123|1000|0|622\n5201|V2|S2|20261123|2000|0|622\n"), fmt
    )
    assert [x.amount_fen for x in statement] == [1000, 2000] and statement.declared == Totals(2, 3000)
    with pytest.raises(StatementError, match="not an amount in fen"):
        list(read_text(io.BytesIO(b"2|30.00\n5201|V1|S1|20261123|1000|0|622\n"), fmt))


def test_a_blank_line_in_a_gbk_fixed_width_file_is_skipped() -> None:
    data = (DATA / "statement-fixed-gbk.txt").read_bytes().split(b"\n")
    statement = read_text(io.BytesIO(b"\n".join([*data[:2], b"", b"  ", *data[2:]])), FIXED_GBK)
    assert [x.position for x in statement] == [2, 5, 6]


@pytest.mark.parametrize("keyless", [False, True])
def test_more_distinct_dates_than_the_cache_holds(keyless: bool) -> None:
    """Both paths keep parsing dates right when the cache is full (keyless lines take the careful path)."""
    rows = [
        f"5201|{'' if keyless else f'V{i}'}|S{i}|{date.fromordinal(D.toordinal() + i):%Y%m%d}|1.00|0|622"
        for i in range(5000)
    ]
    lines = read(_text(rows))
    assert [x.pay_date for x in lines[::1000]] == [date.fromordinal(D.toordinal() + i) for i in range(0, 5000, 1000)]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StatementLimits(max_lines=0)
