"""camt.053 statements: golden files of versions 08 and 02, the mapping, balance checks, and what is refused."""

from __future__ import annotations

import io
from datetime import date

import pytest

from protocols.messages import StatementDetail
from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.matcher import reconcile
from reconciliation.model import BreakClass, LedgerEntry, StatementLine, Status, Totals
from reconciliation.ports import TempFileScratch
from reconciliation.readers import StatementLimits, read_camt053
from reconciliation.readers.base import SummaryFinding
from tests.reconciliation.conftest import DATA, entry_of

D = date(2026, 11, 23)
V08 = (DATA / "camt053-v08.xml").read_bytes()
V02 = (DATA / "camt053-v02.xml").read_bytes()


def read(data: bytes, **limits: int) -> list[StatementLine]:
    return list(read_camt053(io.BytesIO(data), limits=StatementLimits(**limits)))


def test_golden_version_08() -> None:
    """Debit paid, a NOTPROVIDED end-to-end id, a credit return, an INFO failure with an IBAN."""
    statement = read_camt053(DATA / "camt053-v08.xml")
    assert list(statement) == [
        StatementLine(
            "5201", "5201450100000123", "BOCOM2026112300000101", 12_500_000, Status.PAID, "6222020000000000123", D, 42
        ),
        StatementLine("8202", "", "BOCOM2026112300000102-1", 250_050, Status.PAID, "6222020000000000456", D, 60),
        StatementLine(
            "2252",
            "2252450100000007",
            "BOCOM2026112300000103",
            -2_500_000,
            Status.RETURNED,
            "6222020000000000123",
            D,
            76,
        ),
        StatementLine(
            "5201",
            "5201450100000124",
            "BOCOM2026112300000104",
            1_234_500,
            Status.FAILED,
            "CN0062170000000000000789",
            D,
            92,
        ),
    ]
    assert statement.check_date == D and statement.declared == statement.computed == Totals(4, 11_484_550)
    assert statement.statement_id == "BOCOM-STMT-20261123-01/4501000000000001-20261123"
    assert statement.findings == [] and statement.describe(42).endswith("camt053-v08.xml line 42")


def test_golden_version_02() -> None:
    statement = read_camt053(DATA / "camt053-v02.xml")
    assert [(x.vt_code, x.voucher_no, x.amount_fen, x.status) for x in statement] == [
        ("8202", "8202450100000900", 10_000, Status.PAID)
    ]
    assert statement.declared == Totals(1, 10_000) and statement.statement_id == "CCB-20261123/S1"


def test_a_camt_statement_reconciles_by_key_and_by_serial() -> None:
    """The line without an end-to-end id is matched by its AcctSvcrRef."""
    statement = read_camt053(DATA / "camt053-v08.xml")
    lines = list(read_camt053(DATA / "camt053-v08.xml"))
    ledger = [
        entry_of_line(lines[0]),
        entry_of_line(lines[1], voucher_no="8202450100000456"),
        entry_of_line(lines[2]),
        entry_of_line(lines[3]),
    ]
    ledger.sort(key=lambda e: (e.vt_code, e.voucher_no))
    result = reconcile(ledger, statement, bank="BOCOM", check_date=D, scratch=TempFileScratch())
    assert result.balanced and result.matched == 4 and result.matched_by_serial == 1


def entry_of_line(line: StatementLine, **changes: object) -> LedgerEntry:
    """The ledger entry a statement line is true to (with `changes`)."""
    detail = StatementDetail(
        vt_code=line.vt_code,
        voucher_no=line.voucher_no,
        x_agent_business_no=line.serial,
        x_pay_date=line.pay_date,
        amt_fen=line.amount_fen,
        pro_state=int(line.status),
        payee_acct_no=line.payee_acct_no,
    )
    return entry_of(detail, **changes)


def test_a_closing_balance_that_does_not_add_up_is_a_finding() -> None:
    statement = read_camt053(io.BytesIO(V08.replace(b"897499.50", b"897499.49")))
    list(statement)
    assert statement.findings == [
        SummaryFinding(
            scope="balance 4501000000000001-20261123",
            declared=Totals(3, 89_749_949),
            computed=Totals(3, 89_749_950),
            detail="balance 4501000000000001-20261123: the closing balance 897499.49 is not the opening balance "
            "1000000.00 plus the booked entries (897499.50)",
        )
    ]
    result = reconcile(
        [],
        read_camt053(io.BytesIO(V08.replace(b"897499.50", b"897499.49"))),
        bank="B",
        check_date=D,
        scratch=TempFileScratch(),
    )
    assert result.counts()[BreakClass.SUMMARY_MISMATCH] == 1


def test_several_statements_add_up_and_must_share_their_date() -> None:
    second = V02.split(b"<Stmt>")[1].split(b"</BkToCstmrStmt>")[0]
    two = V02.replace(
        b"</BkToCstmrStmt>", b"<Stmt>" + second.replace(b"<Id>S1</Id>", b"<Id>S2</Id>") + b"</BkToCstmrStmt>"
    )
    statement = read_camt053(io.BytesIO(two))
    assert len(list(statement)) == 2 and statement.declared == Totals(2, 20_000)
    assert statement.statement_id == "CCB-20261123/S1/S2"
    # The second statement's closing balance (the last one in the document) moves to the next day.
    moved = b"<Dt>2026-11-24</Dt></Dt>\n      </Bal>".join(two.rsplit(b"<Dt>2026-11-23</Dt></Dt>\n      </Bal>", 1))
    with pytest.raises(StatementError, match="different dates"):
        list(read_camt053(io.BytesIO(moved)))


def test_supplementary_data_in_another_namespace_is_ignored() -> None:
    data = V02.replace(b"<Sts>BOOK</Sts>", b'<Sts>BOOK</Sts><x:Note xmlns:x="urn:bank:extra"><x:Id>9</x:Id></x:Note>')
    assert [x.serial for x in read(data)] == ["CCB2026112300000001"]


def test_interim_balances_are_ignored_and_a_statement_may_have_no_summary() -> None:
    data = V02.replace(b"<Cd>OPBD</Cd>", b"<Cd>ITBD</Cd>")
    start = data.index(b"<TxsSummry>")
    data = data[:start] + data[data.index(b"</TxsSummry>") + len(b"</TxsSummry>") :]
    statement = read_camt053(io.BytesIO(data))
    assert len(list(statement)) == 1 and statement.declared is None and statement.findings == []


def test_an_empty_statement_without_entries_or_balances() -> None:
    data = (
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        b"<GrpHdr><MsgId>M</MsgId></GrpHdr><Stmt><Id>S</Id></Stmt></BkToCstmrStmt></Document>"
    )
    statement = read_camt053(io.BytesIO(data))
    assert list(statement) == [] and statement.check_date is None and statement.statement_id == "M/S"


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (b"camt.053.001.02", b"camt.052.001.02", "not a camt.053 document"),
        (
            b'<Amt Ccy="CNY">100.00</Amt>\n        <CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>',
            b'<Amt Ccy="USD">100.00</Amt>\n        <CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>',
            "in 'USD', not CNY",
        ),
        (
            b'<Amt Ccy="CNY">100.00</Amt>\n        <CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>',
            b'<Amt Ccy="CNY">100.001</Amt>\n        <CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>',
            "not an amount in yuan and fen",
        ),
        (b"<Sts>BOOK</Sts>", b"<Sts>PDNG</Sts>", "entry status PDNG with DBIT is not supported"),
        (b"<Sts>BOOK</Sts>", b"<Sts>BOOK</Sts><RvslInd>true</RvslInd>", "reversal entries"),
        (b"<NtryDtls><TxDtls>", b"<NtryDtls><TxDtls><Refs/></TxDtls><TxDtls>", "2 TxDtls"),
        (b"<BkTxCd><Prtry><Cd>8202</Cd></Prtry></BkTxCd>", b"", "BkTxCd/Prtry/Cd is missing"),
        (b"<BookgDt><Dt>2026-11-23</Dt></BookgDt>", b"<BookgDt><Dt>2026-13-01</Dt></BookgDt>", "not an ISO date"),
        (b"<BookgDt><Dt>2026-11-23</Dt></BookgDt>", b"<BookgDt><Dt>23.11.2026</Dt></BookgDt>", "not an ISO date"),
        (b"<NbOfNtries>1</NbOfNtries>", b"<NbOfNtries>one</NbOfNtries>", "not a count"),
        (
            b"<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>",
            b"<CdtDbtInd>BOTH</CdtDbtInd>\n        <Sts>",
            "not DBIT or CRDT",
        ),
        (b"<Id>6227000000000000900</Id>", b"<Id>" + b"9" * 70 + b"</Id>", "longer than 64"),
        (b"<Stmt>", b'<Stmt xmlns:o="urn:other"><o:Bal/>', "element in namespace"),
        (
            b'<Amt Ccy="CNY">100.00</Amt>\n        <CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>',
            b"<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>",
            "Amt is missing",
        ),
        (b"<Stmt>", b"<Bal/><Stmt>", "must be inside BkToCstmrStmt/Stmt"),
        (b"<Document", b"<!-- x --><Document", "a comment"),
    ],
)
def test_what_is_not_supported_is_refused_with_where(old: bytes, new: bytes, words: str) -> None:
    assert old in V02
    with pytest.raises(StatementError, match=words):
        read(V02.replace(old, new, 1))


def test_an_info_credit_and_a_document_without_statement_are_refused() -> None:
    credit_info = V08.replace(
        b"<Cd>BOOK</Cd></Sts>\n        <BookgDt><Dt>2026-11-23</Dt></BookgDt>\n        "
        b"<AcctSvcrRef>BOCOM2026112300000103",
        b"<Cd>INFO</Cd></Sts>\n        <BookgDt><Dt>"
        b"2026-11-23</Dt></BookgDt>\n        <AcctSvcrRef>BOCOM2026112300000103",
    )
    with pytest.raises(StatementError, match="INFO with CRDT"):
        read(credit_info)
    with pytest.raises(StatementError, match="no BkToCstmrStmt/Stmt"):
        read(b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"/>')


def test_caps_on_entries_and_bytes() -> None:
    with pytest.raises(StatementLimitExceeded, match="more than 3 entries"):
        read(V08, max_lines=3)
    with pytest.raises(StatementLimitExceeded, match="larger than"):
        read(V08, max_bytes=1000)
