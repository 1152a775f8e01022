"""A simulated bank's statement files: every declared format, read back by the gateway's readers, says the same."""

from __future__ import annotations

import io
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banks import registry
from banks.statement_format import STANDARD_TEXT, FileFormat, StatementSource, SummaryLine
from protocols.messages import StatementDetail
from reconciliation.model import Totals
from reconciliation.readers import StatementStream, read_4006, read_camt053, read_text
from simulators import statements
from tests.strategies import statement_details

CHECK_DATE = date(2026, 11, 23)
SOURCES = {code: d.statement_format for code, d in registry.DIALECTS.items()} | {
    "standard-text": StatementSource("text", STANDARD_TEXT),
    "fixed-yuan-slashes": StatementSource(
        "text",
        FileFormat(
            name="fixed-yuan",
            columns=("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no"),
            widths=(4, 42, 42, 10, 21, 2, 40),
            encoding="GB18030",
            header_lines=2,
            trailer_lines=2,
            date_format="YYYY/MM/DD",
            status_codes=(("00", 0), ("10", 1), ("20", 2)),
            summary=SummaryLine(place="header", index=1, count_column=1, amount_column=2, widths=(2, 9, 21)),
        ),
    ),
}


def read(source: StatementSource, files: list[bytes]) -> StatementStream:
    if source.kind == "4006":
        return read_4006([io.BytesIO(f) for f in files])
    if source.kind == "camt053":
        return read_camt053(io.BytesIO(files[0]))
    assert source.text is not None
    return read_text(io.BytesIO(files[0]), source.text)


def as_details(stream: StatementStream) -> list[StatementDetail]:
    return [
        StatementDetail(
            vt_code=x.vt_code,
            voucher_no=x.voucher_no,
            x_agent_business_no=x.serial,
            x_pay_date=x.pay_date,
            amt_fen=x.amount_fen,
            pro_state=int(x.status),
            payee_acct_no=x.payee_acct_no,
        )
        for x in stream
    ]


@pytest.mark.parametrize("name", list(SOURCES))
@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(statement_details(), max_size=12).filter(lambda ls: all(x.voucher_no != "NOTPROVIDED" for x in ls)),
    spoil=st.integers(-(10**6), 10**6),
)
def test_what_is_written_reads_back_the_same(name: str, lines: list[StatementDetail], spoil: int) -> None:
    """Lines, order, declared totals (the file says what it is told to) and the check date where declared."""
    source = SOURCES[name]
    declared = (len(lines), sum(x.amt_fen for x in lines) + spoil)
    files = statements.render(source, CHECK_DATE, lines, declared=declared, bank="ABC", page_size=5)
    assert len(files) == (max(1, -(-len(lines) // 5)) if source.kind == "4006" else 1)
    stream = read(source, files)
    assert as_details(stream) == lines
    assert stream.declared == Totals(*declared)
    assert stream.computed == Totals(len(lines), sum(x.amt_fen for x in lines))
    summary = source.text.summary if source.text is not None else None
    dated = source.kind != "text" or (summary is not None and summary.check_date_column is not None)
    assert stream.check_date == (CHECK_DATE if dated else None)
    assert stream.findings == []  # camt.053: the balances add up


def line(**changes: object) -> StatementDetail:
    values: dict[str, object] = {
        "vt_code": "5201",
        "voucher_no": "5201450100000123",
        "x_agent_business_no": "CCB2026112300000001",
        "x_pay_date": CHECK_DATE,
        "amt_fen": 12_500_000,
        "pro_state": 0,
        "payee_acct_no": "6222020000000000123",
    } | changes
    return StatementDetail(**values)  # type: ignore[arg-type]


def test_the_ccb_file_is_fixed_width_gbk_with_a_trailer() -> None:
    source = registry.get("ccb").statement_format
    data = statements.render(source, CHECK_DATE, [line(), line(amt_fen=-500, pro_state=1, vt_code="2252")])[0]
    rows = data.decode("gbk").splitlines()
    assert rows[0] == "ccb-fixed 2026-11-23"
    assert rows[1][:42].rstrip() == "CCB2026112300000001" and rows[1][42:46] == "5201"
    assert rows[1][188:206] == "000000000012500000" and rows[1][206:] == "S2026-11-23"
    assert rows[2][188:206] == "-00000000000000500" and rows[2][206] == "R"
    assert rows[3] == "TRL2026-11-230000000002000000000012499500"


def test_values_a_format_cannot_hold_are_refused_naming_the_line_and_column() -> None:
    ccb = registry.get("ccb").statement_format
    with pytest.raises(ValueError, match=r"line 1 \(5201 X+\), column 2: .* wider than 42 bytes"):
        statements.render(ccb, CHECK_DATE, [line(voucher_no="X" * 43)])
    bocom = registry.get("bocom").statement_format
    with pytest.raises(ValueError, match=r"line 2 .*column 4: '62,22' holds the delimiter"):
        statements.render(bocom, CHECK_DATE, [line(), line(payee_acct_no="62,22")])
    no_returns = FileFormat(
        name="paid-only", columns=STANDARD_TEXT.columns, delimiter="|", status_codes=(("0", 0), ("2", 2))
    )
    with pytest.raises(ValueError, match="no status code for ProState 1"):
        statements.render_text(no_returns, CHECK_DATE, [line(amt_fen=-1, pro_state=1)])
    one_type = FileFormat(
        name="5201-only",
        columns=("voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no"),
        delimiter="|",
        vt_code="5201",
    )
    assert statements.render_text(one_type, CHECK_DATE, [line()]).count(b"\n") == 1
    with pytest.raises(ValueError, match="the file is for VtCode 5201 only"):
        statements.render_text(one_type, CHECK_DATE, [line(vt_code="8202")])
    with pytest.raises(ValueError, match=r"has no camt\.053 entry"):
        statements.render_camt053(CHECK_DATE, [line(amt_fen=-1, pro_state=0)])
    with pytest.raises(ValueError, match="page_size must be between 1 and"):
        statements.render_4006(CHECK_DATE, [line()], page_size=0)


def test_an_empty_day_is_a_statement_of_nothing() -> None:
    for name, source in SOURCES.items():
        stream = read(source, statements.render(source, CHECK_DATE, []))
        assert as_details(stream) == [], name
        assert stream.declared == stream.computed == Totals(0, 0), name


def test_camt053_balances_add_up_from_the_opening_balance() -> None:
    lines = [line(), line(amt_fen=-2_500_000, pro_state=1, vt_code="2252"), line(amt_fen=99, pro_state=2)]
    data = statements.render_camt053(CHECK_DATE, lines, bank="ICBC", opening_fen=1_000_000_00)
    text = data.decode()
    assert '<Amt Ccy="CNY">1000000.00</Amt>' in text  # opening, credit
    assert '<Amt Ccy="CNY">900000.00</Amt>' in text  # closing: 1,000,000 − 125,000 + 25,000 (the refusal is not booked)
    assert "<Cd>INFO</Cd>" in text and text.count("<Cd>BOOK</Cd>") == 2
    stream = read_camt053(io.BytesIO(data))
    assert len(as_details(stream)) == 3 and stream.findings == []
