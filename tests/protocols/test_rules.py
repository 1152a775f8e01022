"""Business rules beyond the schema: each broken rule is refused and names its field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from protocols import rules, samples
from protocols.messages import (
    Message,
    Payload,
    Reply,
    SignOffReply,
    SignOnReply,
    StatementDetail,
    StatusQuery,
    StatusReply,
    VoucherDetail,
)


def fields_of(payload: Payload, sender: str = "bank", **head: Any) -> list[str]:
    message = samples.message(payload, sender)
    if head:
        message = Message(dataclasses.replace(message.head, **head), payload)
    return [p.field for p in rules.check(message)]


def test_every_sample_is_valid() -> None:
    """The samples, which are also the golden vectors, break no rule."""
    for _name, payload, sender in samples.all_payloads():
        assert fields_of(payload, sender) == []


def test_head_rules() -> None:
    """The version must be ours and MsgNo must match the payload."""
    assert fields_of(samples.receipt(), ver="2.0", msg_no="8202") == ["Head/Ver", "Head/MsgNo"]


V = "Body/Voucher"
R = replace = dataclasses.replace


def detail(**kw: Any) -> VoucherDetail:
    base = dict(id="1", pay_amt_fen=100, exp_func_code="2050201")
    return VoucherDetail(**(base | kw))


CASES: list[tuple[str, Callable[[], Payload], list[str]]] = [
    ("voucher year", lambda: R(samples.direct_voucher(), st_year=1999), [f"{V}/StYear"]),
    ("voucher flag", lambda: R(samples.direct_voucher(), voucher_flag=1), [f"{V}/VoucherFlag"]),
    ("vt code", lambda: R(samples.direct_voucher(), vt_code="5202"), [f"{V}/VtCode"]),
    ("pay type", lambda: R(samples.direct_voucher(), pay_type_code="12"), [f"{V}/PayTypeCode"]),
    ("business type", lambda: R(samples.direct_voucher(), business_type_code="9"), [f"{V}/BusinessTypeCode"]),
    (
        "card on 5201",
        lambda: R(samples.direct_voucher(), business_type_code="2"),
        [f"{V}/BusinessTypeCode", f"{V}/DetailList/Detail[1]/SpendId", f"{V}/DetailList/Detail[2]/SpendId"],
    ),
    (
        "zero amount",
        lambda: R(samples.direct_voucher(), pay_amt_fen=0, details=(detail(pay_amt_fen=0),)),
        [f"{V}/PayAmt", f"{V}/DetailList/Detail[1]/PayAmt"],
    ),
    ("sum", lambda: R(samples.direct_voucher(), pay_amt_fen=1), [f"{V}/PayAmt"]),
    (
        "card fields on a plain voucher",
        lambda: R(
            samples.authorized_voucher(),
            details=(detail(pay_amt_fen=3_860_050, card_no="6227000000001234567"),),
        ),
        [f"{V}/DetailList/Detail[1]/CardNo"],
    ),
    (
        "duplicate detail ids",
        lambda: R(samples.direct_voucher(), details=(detail(pay_amt_fen=12_000_000), detail(pay_amt_fen=500_000))),
        [f"{V}/DetailList/Detail/Id"],
    ),
    (
        "same spending repaid twice",
        lambda: R(
            samples.card_repayment(),
            details=tuple(R(d, spend_id="S1") for d in samples.card_repayment().details),
        ),
        [f"{V}/DetailList/Detail/SpendId"],
    ),
    ("receipt year", lambda: R(samples.receipt(), st_year=2100), [f"{V}/StYear"]),
    ("receipt vt", lambda: R(samples.receipt(), vt_code="2252"), [f"{V}/VtCode"]),
    ("receipt amount", lambda: R(samples.receipt(), pay_amt_fen=0, x_pay_amt_fen=0), [f"{V}/PayAmt"]),
    (
        "receipt overpaid",
        lambda: R(samples.receipt(), x_pay_amt_fen=samples.receipt().pay_amt_fen + 1),
        [f"{V}/XPayAmt", f"{V}/XPayAmt"],
    ),
    (
        "refusal pays nothing and says why",
        lambda: R(samples.receipt(), x_result="F"),
        [f"{V}/XPayAmt", f"{V}/XAddWord"],
    ),
    ("paid in part without details", lambda: R(samples.receipt(), x_pay_amt_fen=1), [f"{V}/XPayAmt"]),
    (
        "failed detail without reason",
        lambda: R(
            samples.card_receipt(),
            details=tuple(R(d, x_add_word=None) for d in samples.card_receipt().details),
        ),
        [f"{V}/DetailList/Detail[2]/XAddWord"],
    ),
    (
        "receipt duplicate ids",
        lambda: R(samples.card_receipt(), details=tuple(R(d, id="1") for d in samples.card_receipt().details)),
        [f"{V}/DetailList/Detail/Id"],
    ),
    ("return year", lambda: R(samples.return_notice(), st_year=1900), [f"{V}/StYear"]),
    ("return vt", lambda: R(samples.return_notice(), vt_code="5201"), [f"{V}/VtCode"]),
    ("return original", lambda: R(samples.return_notice(), ori_vt_code="2252"), [f"{V}/OriVtCode"]),
    ("return positive", lambda: R(samples.return_notice(), pay_amt_fen=100), [f"{V}/PayAmt"]),
    ("quota year", lambda: R(samples.quota_notice(), st_year=3000), ["Body/QuotaNotice/StYear"]),
    ("quota vt", lambda: R(samples.quota_notice(), vt_code="5108"), ["Body/QuotaNotice/VtCode"]),
    (
        "quota amount",
        lambda: R(samples.quota_notice(), lines=(R(samples.quota_notice().lines[0], quota_amt_fen=-1),)),
        ["Body/QuotaNotice/DetailList/Detail[1]/QuotaAmt"],
    ),
    (
        "quota ids",
        lambda: R(samples.quota_notice(), lines=tuple(R(q, id="7") for q in samples.quota_notice().lines)),
        ["Body/QuotaNotice/DetailList/Detail/Id"],
    ),
    (
        "spending amount",
        lambda: R(samples.card_spending(), records=(R(samples.card_spending().records[0], amt_fen=0),)),
        ["Body/CardSpending/RecordList/Record[1]/Amt"],
    ),
    (
        "spending deadline",
        lambda: R(
            samples.card_spending(),
            records=(R(samples.card_spending().records[0], limit_date=samples.WORK_DATE.replace(day=1)),),
        ),
        ["Body/CardSpending/RecordList/Record[1]/LimitDate"],
    ),
    (
        "spending ids",
        lambda: R(
            samples.card_spending(),
            records=tuple(R(r, spend_id="X") for r in samples.card_spending().records),
        ),
        ["Body/CardSpending/RecordList/Record/SpendId"],
    ),
    ("statement page", lambda: R(samples.statement(), cur_pack_no=2), ["Body/Statement/CurPackNo"]),
    (
        "statement state",
        lambda: R(samples.statement(), details=(R(samples.statement().details[0], pro_state=5),)),
        ["Body/Statement/DetailList/Detail[1]/ProState"],
    ),
    (
        "statement sign",
        lambda: R(
            samples.statement(),
            details=(StatementDetail(**(dataclasses.asdict(samples.statement().details[0]) | {"amt_fen": -5})),),
        ),
        ["Body/Statement/DetailList/Detail[1]/Amt"],
    ),
    (
        "reconcile result",
        lambda: R(samples.reconcile_result(), x_check_result=2, x_diff_num=0),
        ["Body/ReconcileResult/XCheckResult"],
    ),
    (
        "reconcile count",
        lambda: R(samples.reconcile_result(), x_diff_num=0),
        ["Body/ReconcileResult/XDiffNum"],
    ),
    (
        "reconcile detail",
        lambda: R(samples.reconcile_result(), details=(R(samples.reconcile_result().details[0], x_check_result=3),)),
        ["Body/ReconcileResult/DetailList/Detail[1]/XCheckResult"],
    ),
    (
        "status query year",
        lambda: StatusQuery(adm_div_code="450100", st_year=1, vt_code="5201", voucher_no="1"),
        ["Body/StatusQuery/StYear"],
    ),
    (
        "status value",
        lambda: StatusReply(adm_div_code="450100", st_year=2026, vt_code="5201", voucher_no="1", x_status=4),
        ["Body/StatusReply/XStatus"],
    ),
    (
        "paid status without serial",
        lambda: StatusReply(adm_div_code="450100", st_year=2026, vt_code="5201", voucher_no="1", x_status=2),
        ["Body/StatusReply/XPayDate"],
    ),
    (
        "refused status without reason",
        lambda: StatusReply(adm_div_code="450100", st_year=2026, vt_code="5201", voucher_no="1", x_status=3),
        ["Body/StatusReply/XAddWord"],
    ),
    ("reply code", lambda: Reply(ori_msg_no="5201", result=12345, add_word=""), ["Body/Reply/Result"]),
    (
        "sign-on reply code",
        lambda: SignOnReply(result=1, add_word="", work_date=samples.WORK_DATE),
        ["Body/SignOnReply/Result"],
    ),
    ("sign-off reply code", lambda: SignOffReply(result=99999), ["Body/SignOffReply/Result"]),
]


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_rule_names_the_field(name: str, build: Callable[[], Payload], expected: list[str]) -> None:
    """Each broken rule yields exactly the expected problems, each naming its field."""
    assert fields_of(build()) == expected


def test_refused_status_with_reason_and_pending_status_are_valid() -> None:
    """Statuses 0, 1 and a refused 3 with its reason are valid."""
    for status, word in [(0, None), (1, None), (3, "账户冻结")]:
        reply = StatusReply(
            adm_div_code="450100",
            st_year=2026,
            vt_code="5201",
            voucher_no="1",
            x_status=status,
            x_add_word=word,
        )
        assert fields_of(reply) == []
