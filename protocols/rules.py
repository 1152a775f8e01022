"""Business rules of the standard beyond its schema: sums, signs, code lists, cross-field consistency.

The schema (:mod:`protocols.schema`) checks the shape and the form of each field; these rules check what a
schema cannot say: the details add up to the total (PROTOCOL.md §5.1), negative amounts only on returns
(§3, §5.3), a direct voucher is paid by the treasury and an authorized one against a quota (`PayTypeCode`),
an official-card repayment names its spending records, and so on. Each rule reports a :class:`Problem`
naming the field; :func:`check` returns all of them, so that a bank's developer sees every mistake at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from protocols.errors import Problem, ResultCode
from protocols.messages import (
    PROTOCOL_VERSION,
    CardSpending,
    Message,
    Payload,
    QuotaNotice,
    Receipt,
    ReconcileResult,
    Reply,
    ReturnNotice,
    SignOffReply,
    SignOnReply,
    Statement,
    StatusQuery,
    StatusReply,
    Voucher,
)

#: Code lists (PROTOCOL.md §5.1 and DOMAIN.md).
PAY_TYPE_BY_VT_CODE: Final = {"5201": "11", "8202": "12"}  # 11 direct, 12 authorized
BUSINESS_TYPE_CODES: Final = frozenset({"1", "2", "4"})  # 1 single, 2 official-card repayment, 4 batch
CARD_REPAYMENT: Final = "2"
RESULT_CODES: Final = frozenset(int(code) for code in ResultCode)
MIN_YEAR: Final = 2000
MAX_YEAR: Final = 2099


def _unique(items: Iterable[str], field: str) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for value in items:
        if value in seen:
            problems.append(Problem(field, f"{value!r} appears more than once"))
        seen.add(value)
    return problems


def _year(year: int, field: str) -> list[Problem]:
    if MIN_YEAR <= year <= MAX_YEAR:
        return []
    return [Problem(field, f"year {year} is outside {MIN_YEAR}–{MAX_YEAR}")]


def _voucher(v: Voucher, at: str) -> list[Problem]:
    p = _year(v.st_year, f"{at}/StYear")
    if v.voucher_flag != 0:
        p.append(Problem(f"{at}/VoucherFlag", "a voucher has VoucherFlag 0"))
    expected_pay_type = PAY_TYPE_BY_VT_CODE.get(v.vt_code)
    if expected_pay_type is None:
        p.append(Problem(f"{at}/VtCode", f"a payment voucher is 5201 or 8202, not {v.vt_code}"))
    elif v.pay_type_code != expected_pay_type:
        p.append(Problem(f"{at}/PayTypeCode", f"must be {expected_pay_type} for a {v.vt_code} voucher"))
    if v.business_type_code not in BUSINESS_TYPE_CODES:
        p.append(Problem(f"{at}/BusinessTypeCode", f"must be one of 1, 2, 4, not {v.business_type_code}"))
    card = v.business_type_code == CARD_REPAYMENT
    if card and v.vt_code != "8202":
        p.append(Problem(f"{at}/BusinessTypeCode", "an official-card repayment (2) is an 8202 voucher"))
    if v.pay_amt_fen <= 0:
        p.append(Problem(f"{at}/PayAmt", "must be greater than zero"))
    total = 0
    for n, d in enumerate(v.details, 1):
        dat = f"{at}/DetailList/Detail[{n}]"
        total += d.pay_amt_fen
        if d.pay_amt_fen <= 0:
            p.append(Problem(f"{dat}/PayAmt", "must be greater than zero"))
        if card and (d.card_no is None or d.spend_id is None):
            p.append(Problem(f"{dat}/SpendId", "an official-card repayment detail names CardNo and SpendId"))
        if not card and (d.card_no is not None or d.spend_id is not None):
            p.append(Problem(f"{dat}/CardNo", "CardNo and SpendId belong to official-card repayments only"))
    if total != v.pay_amt_fen:
        p.append(Problem(f"{at}/PayAmt", f"the details add up to {total} fen, not {v.pay_amt_fen} fen"))
    p += _unique((d.id for d in v.details), f"{at}/DetailList/Detail/Id")
    if card:
        p += _unique((d.spend_id for d in v.details if d.spend_id), f"{at}/DetailList/Detail/SpendId")
    return p


def _receipt(r: Receipt, at: str) -> list[Problem]:
    p = _year(r.st_year, f"{at}/StYear")
    if r.vt_code not in PAY_TYPE_BY_VT_CODE:
        p.append(Problem(f"{at}/VtCode", f"a receipt answers a 5201 or 8202, not {r.vt_code}"))
    if r.pay_amt_fen <= 0:
        p.append(Problem(f"{at}/PayAmt", "must be greater than zero"))
    if not 0 <= r.x_pay_amt_fen <= r.pay_amt_fen:
        p.append(Problem(f"{at}/XPayAmt", "must be between 0.00 and PayAmt"))
    if r.x_result == "F":
        if r.x_pay_amt_fen != 0:
            p.append(Problem(f"{at}/XPayAmt", "a refused payment pays 0.00"))
        if not r.x_add_word:
            p.append(Problem(f"{at}/XAddWord", "a refused payment gives its reason"))
    elif not r.details and r.x_pay_amt_fen != r.pay_amt_fen:
        p.append(Problem(f"{at}/XPayAmt", "a paid voucher without details pays PayAmt in full"))
    for n, d in enumerate(r.details, 1):
        if d.x_result == "F" and not d.x_add_word:
            p.append(Problem(f"{at}/DetailList/Detail[{n}]/XAddWord", "a failed detail gives its reason"))
    p += _unique((d.id for d in r.details), f"{at}/DetailList/Detail/Id")
    return p


def _return(r: ReturnNotice, at: str) -> list[Problem]:
    p = _year(r.st_year, f"{at}/StYear")
    if r.vt_code != "2252":
        p.append(Problem(f"{at}/VtCode", "a returned payment notice is 2252"))
    if r.ori_vt_code not in PAY_TYPE_BY_VT_CODE:
        p.append(Problem(f"{at}/OriVtCode", f"returns apply to 5201 or 8202, not {r.ori_vt_code}"))
    if r.pay_amt_fen >= 0:
        p.append(Problem(f"{at}/PayAmt", "a return carries a negative amount (PROTOCOL.md §5.3)"))
    return p


def _quota(q: QuotaNotice, at: str) -> list[Problem]:
    p = _year(q.st_year, f"{at}/StYear")
    if q.vt_code != "5106":
        p.append(Problem(f"{at}/VtCode", "a quota notice is 5106"))
    for n, line in enumerate(q.lines, 1):
        if line.quota_amt_fen <= 0:
            p.append(Problem(f"{at}/DetailList/Detail[{n}]/QuotaAmt", "must be greater than zero"))
    p += _unique((line.id for line in q.lines), f"{at}/DetailList/Detail/Id")
    return p


def _spending(c: CardSpending, at: str) -> list[Problem]:
    p: list[Problem] = []
    for n, r in enumerate(c.records, 1):
        rat = f"{at}/RecordList/Record[{n}]"
        if r.amt_fen <= 0:
            p.append(Problem(f"{rat}/Amt", "must be greater than zero"))
        if r.limit_date < r.txn_date:
            p.append(Problem(f"{rat}/LimitDate", "the repayment deadline is before the transaction"))
    p += _unique((r.spend_id for r in c.records), f"{at}/RecordList/Record/SpendId")
    return p


def _statement(s: Statement, at: str) -> list[Problem]:
    # The statement's own count and total are NOT checked here: a summary that disagrees with its details
    # is a reconciliation finding (a "summary mismatch" break), not a malformed message.
    p: list[Problem] = []
    if not 1 <= s.cur_pack_no <= s.child_pack_num:
        p.append(Problem(f"{at}/CurPackNo", f"page {s.cur_pack_no} of {s.child_pack_num} does not exist"))
    for n, d in enumerate(s.details, 1):
        dat = f"{at}/DetailList/Detail[{n}]"
        if d.pro_state not in (0, 1, 2):
            p.append(Problem(f"{dat}/ProState", "must be 0 paid, 1 returned or 2 failed"))
        elif (d.amt_fen < 0) != (d.pro_state == 1):
            p.append(Problem(f"{dat}/Amt", "negative exactly when the line is a return (ProState 1)"))
    return p


def _reconcile(r: ReconcileResult, at: str) -> list[Problem]:
    p: list[Problem] = []
    if r.x_check_result not in (0, 1):
        p.append(Problem(f"{at}/XCheckResult", "must be 0 match or 1 mismatch"))
    elif (r.x_check_result == 0) != (r.x_diff_num == 0):
        p.append(Problem(f"{at}/XDiffNum", "differences are counted exactly when the result is 1"))
    for n, d in enumerate(r.details, 1):
        if d.x_check_result not in (0, 1):
            p.append(Problem(f"{at}/DetailList/Detail[{n}]/XCheckResult", "must be 0 or 1"))
    return p


def _result(result: int, field: str) -> list[Problem]:
    if result in RESULT_CODES:
        return []
    return [Problem(field, f"{result} is not a result code of PROTOCOL.md §4")]


def _status_query(q: StatusQuery, at: str) -> list[Problem]:
    return _year(q.st_year, f"{at}/StYear")


def _status_reply(r: StatusReply, at: str) -> list[Problem]:
    p = _year(r.st_year, f"{at}/StYear")
    if r.x_status not in (0, 1, 2, 3):
        p.append(Problem(f"{at}/XStatus", "must be 0 unknown, 1 pending, 2 paid or 3 refused"))
    elif r.x_status == 2 and (r.x_pay_date is None or r.x_agent_business_no is None or r.x_pay_amt_fen is None):
        p.append(Problem(f"{at}/XPayDate", "a paid voucher's status carries XPayDate, XAgentBusinessNo, XPayAmt"))
    elif r.x_status == 3 and not r.x_add_word:
        p.append(Problem(f"{at}/XAddWord", "a refused voucher's status gives the reason"))
    return p


_RULES: Final[dict[type[Payload], Callable[[Any, str], list[Problem]]]] = {
    Voucher: _voucher,
    Receipt: _receipt,
    ReturnNotice: _return,
    QuotaNotice: _quota,
    CardSpending: _spending,
    Statement: _statement,
    ReconcileResult: _reconcile,
    StatusQuery: _status_query,
    StatusReply: _status_reply,
    Reply: lambda r, at: _result(r.result, f"{at}/Result"),
    SignOnReply: lambda r, at: _result(r.result, f"{at}/Result"),
    SignOffReply: lambda r, at: _result(r.result, f"{at}/Result"),
}


def check(message: Message) -> list[Problem]:
    """Every business-rule problem of a message (an empty list when it is valid)."""
    head, body = message.head, message.body
    problems = []
    if head.ver != PROTOCOL_VERSION:
        problems.append(Problem("Head/Ver", f"this is version {PROTOCOL_VERSION} of the standard"))
    if head.msg_no != body.msg_no:
        problems.append(Problem("Head/MsgNo", f"{head.msg_no} does not match the payload ({body.msg_no})"))
    rule = _RULES.get(type(body))
    if rule is not None:
        problems += rule(body, f"Body/{body.ELEMENT}")
    return problems
