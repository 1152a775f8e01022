"""4006 statements: golden paged documents, decoded pages, and every way pages can fail to make one statement."""

from __future__ import annotations

import dataclasses
import io
from datetime import date

import pytest
from lxml import etree

from protocols import samples
from protocols.messages import Statement
from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.model import StatementLine, Status, Totals
from reconciliation.readers import StatementLimits, from_messages, read_4006
from reconciliation.xmlstream import local_name
from tests.reconciliation.conftest import DATA

D = date(2026, 11, 23)
PAGE1 = (DATA / "4006-page1.xml").read_bytes()
PAGE2 = (DATA / "4006-page2.xml").read_bytes()
EXPECTED = [
    StatementLine(
        "5201", "5201450100000123", "ICBC2026112300004711", 12_500_000, Status.PAID, "6222020000000000123", D, 1
    ),
    StatementLine(
        "8202", "8202450100000456", "ICBC2026112300004712", 250_050, Status.PAID, "6222020000000000456", D, 2
    ),
    StatementLine(
        "2252", "2252450100000007", "ICBC2026112300004713", -2_500_000, Status.RETURNED, "6222020000000000123", D, 3
    ),
    StatementLine(
        "5201", "5201450100000124", "ICBC2026112300004714", 1_234_500, Status.FAILED, "6217000000000000789", D, 4
    ),
]


def read(*documents: bytes, **limits: int) -> list[StatementLine]:
    return list(read_4006([io.BytesIO(d) for d in documents], limits=StatementLimits(**limits)))


def test_golden_two_pages_make_one_statement() -> None:
    statement = read_4006([DATA / "4006-page1.xml", DATA / "4006-page2.xml"])
    assert list(statement) == EXPECTED
    assert statement.check_date == D and statement.declared == statement.computed == Totals(4, 11_484_550)
    assert statement.describe(3).endswith("4006-page1.xml page 1, Detail[3]")
    assert statement.describe(4).endswith("4006-page2.xml page 2, Detail[1]")
    assert statement.describe(0) == f"{statement.source} Detail 0"


def test_pages_may_come_in_any_order() -> None:
    assert sorted(read(PAGE2, PAGE1), key=lambda x: x.serial) == [
        line._replace(position=p) for line, p in zip(EXPECTED, (2, 3, 4, 1), strict=True)
    ]


def test_a_bare_statement_element_is_a_page() -> None:
    bare = etree.tostring(etree.fromstring(PAGE2).find("Body/Statement"))
    assert len(read(PAGE1, bare)) == 4


@pytest.mark.parametrize(
    ("documents", "words"),
    [
        ((PAGE1,), "pages missing: 2 of 2"),
        ((PAGE1, PAGE1, PAGE2), "page 1 appears twice"),
        ((PAGE1, PAGE2.replace(b"<AllNum>4<", b"<AllNum>5<")), "the pages disagree"),
        ((PAGE1, PAGE2.replace(b"<CurPackNo>2<", b"<CurPackNo>3<")), "page 3 of 2 does not exist"),
        ((), "no page of the statement was given"),
        ((PAGE1.replace(b"<MsgNo>4006<", b"<MsgNo>2507<"),), "MsgNo '2507' is not 4006"),
        ((b"<Message><Body><Other/></Body></Message>",), "no Statement element"),
        ((b"<Message><X><Statement/></X></Message>",), "must be the root or in Message/Body"),
        ((b"<Voucher><DetailList><Detail/></DetailList></Voucher>",), "a Detail outside Statement/DetailList"),
        ((PAGE1.replace(b"<AllNum>4</AllNum>", b"<AllNum>four</AllNum>"),), "'four' is not a count"),
        ((PAGE1.replace(b"<Amt>125000.00<", b"<Amt>125000.0<"),), "not an amount with two decimals"),
        ((PAGE1.replace(b"<XPayDate>20261123<", b"<XPayDate>2026-11-23<", 1),), "not a YYYYMMDD date"),
        ((PAGE1.replace(b"<ProState>0<", b"<ProState>9<", 1),), "ProState '9' is not 0, 1 or 2"),
        ((PAGE1.replace(b"<ProState>0<", b"<ProState>1<", 1),), "negative exactly when the line is a return"),
        ((PAGE1.replace(b"<VtCode>5201</VtCode>", b"", 1),), "missing VtCode"),
        (
            (PAGE1.replace(b"<VtCode>5201</VtCode>", b"<VtCode>5201</VtCode><VtCode>5201</VtCode>", 1),),
            "VtCode appears twice",
        ),
        ((PAGE1.replace(b"<VtCode>5201</VtCode>", b"<VtCode>5201</VtCode><Extra/>", 1),), "unexpected element Extra"),
        ((PAGE1.replace(b"<VtCode>5201</VtCode>", b"<VtCode><b/></VtCode>", 1),), "must hold text only"),
        (
            (PAGE1.replace(b"<VoucherNo>5201450100000123<", b"<VoucherNo>" + b"9" * 65 + b"<", 1),),
            "longer than 64 characters",
        ),
        ((PAGE1.replace(b"<Detail>", b"<!DOCTYPE x><Detail>", 1),), "DOCTYPE"),
    ],
)
def test_a_bad_statement_is_refused_with_where(documents: tuple[bytes, ...], words: str) -> None:
    with pytest.raises(StatementError, match=words):
        read(*documents)


def test_errors_name_the_element_and_line() -> None:
    with pytest.raises(StatementError) as caught:
        read(PAGE1.replace(b"<Amt>2500.50<", b"<Amt>2,500.50<"))
    assert caught.value.element == "Statement/DetailList/Detail[2]/Amt" and caught.value.line == 35


def test_caps_on_pages_lines_and_bytes() -> None:
    with pytest.raises(StatementLimitExceeded, match="more than 1 pages"):
        read(PAGE1, PAGE2, max_pages=1)
    with pytest.raises(StatementLimitExceeded, match="more than 3 detail lines"):
        read(PAGE1, PAGE2, max_lines=3)
    with pytest.raises(StatementLimitExceeded, match="larger than"):
        read(PAGE1, max_bytes=500)


def test_decoded_pages_are_a_statement_too() -> None:
    sample = samples.statement()
    statement = from_messages([sample], source="link")
    lines = list(statement)
    assert [(x.voucher_no, x.amount_fen, x.status) for x in lines] == [
        ("5201450100000123", 12_500_000, Status.PAID),
        ("2252450100000007", -2_500_000, Status.RETURNED),
    ]
    assert statement.declared == Totals(2, 10_000_000) and statement.describe(2) == "link page 1, Detail[2]"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"pro_state": 5}, "ProState 5"),
        ({"amt_fen": -1}, "negative exactly"),
        ({"voucher_no": "", "x_agent_business_no": ""}, "neither"),
    ],
)
def test_bad_decoded_pages_are_refused(change: dict[str, object], words: str) -> None:
    sample = samples.statement()
    page = dataclasses.replace(sample, details=(dataclasses.replace(sample.details[0], **change),))  # type: ignore[arg-type]
    with pytest.raises(StatementError, match=words):
        list(from_messages([page]))


def test_decoded_pages_are_checked_as_a_statement() -> None:
    sample = samples.statement()
    with pytest.raises(StatementError, match="appears twice"):
        list(from_messages([sample, sample]))
    split: Statement = dataclasses.replace(sample, child_pack_num=2)
    with pytest.raises(StatementError, match="pages missing: 2"):
        list(from_messages([split]))


def test_local_name_of_a_node_without_tag() -> None:
    assert local_name(etree.Comment("x")) == ""


def test_decoded_pages_with_unprintable_fields_are_refused() -> None:
    sample = samples.statement()
    bad = dataclasses.replace(sample.details[0], voucher_no="5201\x00")
    with pytest.raises(StatementError, match="not printable"):
        list(from_messages([dataclasses.replace(sample, details=(bad,))]))
