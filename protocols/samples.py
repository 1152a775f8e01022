"""One realistic sample of every message type, for golden vectors, docs, the benchmark and the demo.

Deterministic: the same values every time (no clock, no randomness), so that the golden files under
`tests/vectors/standard/` and the samples in `docs/protocol.md` can be regenerated and compared.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Final

from protocols.messages import (
    CardSpending,
    Head,
    Message,
    Payload,
    Ping,
    QuotaLine,
    QuotaNotice,
    Receipt,
    ReceiptDetail,
    ReconcileDetail,
    ReconcileResult,
    Reply,
    ReturnNotice,
    SignOff,
    SignOffReply,
    SignOn,
    SignOnReply,
    SpendRecord,
    Statement,
    StatementDetail,
    StatementRequest,
    StatusQuery,
    StatusReply,
    Voucher,
    VoucherDetail,
)

NODE: Final = "450100000000"
BANK: Final = "ICBC"
WORK_DATE: Final = date(2026, 11, 23)
SEND_TIME: Final = datetime(2026, 11, 23, 10, 30, 1)


def direct_voucher(
    voucher_no: str = "5201450100000123", amounts_fen: tuple[int, ...] = (10_000_000, 2_500_000)
) -> Voucher:
    """A 5201 direct payment: a school repair contract paid from the treasury single account."""
    return Voucher(
        adm_div_code="450100",
        st_year=2026,
        vt_code="5201",
        vou_date=WORK_DATE,
        voucher_no=voucher_no,
        agency_code="101001",
        agency_name="南宁市教育局",
        fund_type_code="1",
        pay_type_code="11",
        business_type_code="1",
        exp_func_code="2050201",
        pay_acct_no="4501000000000001",
        pay_acct_name="南宁市财政局国库单一账户",
        pay_acct_bank_name="中国人民银行南宁中心支行",
        payee_acct_no="6222020000000000123",
        payee_acct_name="广西某某建设有限公司",
        payee_acct_bank_name="中国工商银行南宁分行",
        pay_amt_fen=sum(amounts_fen),
        pay_summary_name="校舍维修工程款",
        payee_acct_bank_no="102611000017",
        exp_eco_code="30213",
        details=tuple(
            VoucherDetail(id=str(n), pay_amt_fen=amt, exp_func_code="2050201") for n, amt in enumerate(amounts_fen, 1)
        ),
    )


def authorized_voucher() -> Voucher:
    """An 8202 authorized payment from an agency's zero-balance account against its quota."""
    return Voucher(
        adm_div_code="450100",
        st_year=2026,
        vt_code="8202",
        vou_date=WORK_DATE,
        voucher_no="8202450100000045",
        agency_code="102003",
        agency_name="南宁市卫生健康委员会",
        fund_type_code="1",
        pay_type_code="12",
        business_type_code="1",
        exp_func_code="2100201",
        pay_acct_no="4501020300000088",
        pay_acct_name="南宁市卫生健康委员会零余额账户",
        pay_acct_bank_name="中国工商银行南宁民族支行",
        payee_acct_no="4512345678901234",
        payee_acct_name="南宁某某医疗器械有限公司",
        payee_acct_bank_name="中国建设银行南宁分行",
        pay_amt_fen=3_860_050,
        pay_summary_name="采购医用耗材",
        remark="合同号NN-2026-0451",
        details=(VoucherDetail(id="1", pay_amt_fen=3_860_050, exp_func_code="2100201"),),
    )


def card_repayment() -> Voucher:
    """An 8202 with BusinessTypeCode 2: repaying two official-card spending records of one card."""
    return Voucher(
        adm_div_code="450100",
        st_year=2026,
        vt_code="8202",
        vou_date=WORK_DATE,
        voucher_no="8202450100000046",
        agency_code="102003",
        agency_name="南宁市卫生健康委员会",
        fund_type_code="1",
        pay_type_code="12",
        business_type_code="2",
        exp_func_code="2100201",
        pay_acct_no="4501020300000088",
        pay_acct_name="南宁市卫生健康委员会零余额账户",
        pay_acct_bank_name="中国工商银行南宁民族支行",
        payee_acct_no="6227000000001234567",
        payee_acct_name="李明",
        payee_acct_bank_name="中国工商银行南宁民族支行",
        pay_amt_fen=128_800,
        pay_summary_name="公务卡还款",
        details=(
            VoucherDetail(
                id="1",
                pay_amt_fen=86_000,
                exp_func_code="2100201",
                card_no="6227000000001234567",
                spend_id="ICBC20261120000101",
            ),
            VoucherDetail(
                id="2",
                pay_amt_fen=42_800,
                exp_func_code="2100201",
                card_no="6227000000001234567",
                spend_id="ICBC20261121000017",
            ),
        ),
    )


def receipt() -> Receipt:
    """The bank's receipt (回单) for :func:`direct_voucher`: paid in full."""
    v = direct_voucher()
    return Receipt(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code=v.vt_code,
        voucher_no=v.voucher_no,
        pay_amt_fen=v.pay_amt_fen,
        x_pay_date=WORK_DATE,
        x_agent_business_no="ICBC2026112300004711",
        x_pay_amt_fen=v.pay_amt_fen,
        x_payee_acct_no=v.payee_acct_no,
        x_payee_acct_name=v.payee_acct_name,
        x_result="S",
    )


def card_receipt() -> Receipt:
    """A receipt for :func:`card_repayment` where the second detail failed (card closed)."""
    v = card_repayment()
    return Receipt(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code=v.vt_code,
        voucher_no=v.voucher_no,
        pay_amt_fen=v.pay_amt_fen,
        x_pay_date=WORK_DATE,
        x_agent_business_no="ICBC2026112300004712",
        x_pay_amt_fen=86_000,
        x_payee_acct_no=v.payee_acct_no,
        x_payee_acct_name=v.payee_acct_name,
        x_result="S",
        x_add_word="部分成功",
        details=(
            ReceiptDetail(id="1", x_result="S"),
            ReceiptDetail(id="2", x_result="F", x_add_word="卡片已销户"),
        ),
    )


def return_notice() -> ReturnNotice:
    """A 2252: the payee bank returned part of :func:`direct_voucher`'s payment."""
    return ReturnNotice(
        adm_div_code="450100",
        st_year=2026,
        vt_code="2252",
        voucher_no="2252450100000007",
        ori_vt_code="5201",
        original_voucher_no="5201450100000123",
        pay_amt_fen=-2_500_000,
        x_pay_date=date(2026, 11, 24),
        x_agent_business_no="ICBC2026112400000311",
        remark="收款人账户已销户",
    )


def quota_notice() -> QuotaNotice:
    """A 5106 granting a month's quota to two agencies."""
    return QuotaNotice(
        adm_div_code="450100",
        st_year=2026,
        vt_code="5106",
        vou_date=WORK_DATE,
        voucher_no="5106450100000012",
        lines=(
            QuotaLine(
                id="1",
                agency_code="102003",
                agency_name="南宁市卫生健康委员会",
                pay_acct_no="4501020300000088",
                fund_type_code="1",
                exp_func_code="2100201",
                quota_amt_fen=50_000_000,
            ),
            QuotaLine(
                id="2",
                agency_code="101001",
                agency_name="南宁市教育局",
                pay_acct_no="4501010100000017",
                fund_type_code="1",
                exp_func_code="2050201",
                quota_amt_fen=120_000_000,
            ),
        ),
    )


def card_spending() -> CardSpending:
    """A 7101 with two official-card spending records."""
    return CardSpending(
        records=(
            SpendRecord(
                spend_id="ICBC20261120000101",
                card_no="6227000000001234567",
                card_holder="李明",
                agency_code="102003",
                txn_date=date(2026, 11, 20),
                txn_time=time(14, 5, 33),
                merchant_name="南宁某某酒店",
                amt_fen=86_000,
                auth_code="A10332",
                limit_date=date(2026, 12, 20),
            ),
            SpendRecord(
                spend_id="ICBC20261121000017",
                card_no="6227000000001234567",
                card_holder="李明",
                agency_code="102003",
                txn_date=date(2026, 11, 21),
                txn_time=time(9, 12, 0),
                merchant_name="广西某某航空服务有限公司",
                amt_fen=42_800,
                auth_code="B20917",
                limit_date=date(2026, 12, 21),
            ),
        )
    )


def statement() -> Statement:
    """A one-page 4006 with a payment and a return."""
    return Statement(
        check_date=WORK_DATE,
        all_num=2,
        all_amt_fen=10_000_000,
        child_pack_num=1,
        cur_pack_no=1,
        details=(
            StatementDetail(
                vt_code="5201",
                voucher_no="5201450100000123",
                x_agent_business_no="ICBC2026112300004711",
                x_pay_date=WORK_DATE,
                amt_fen=12_500_000,
                pro_state=0,
                payee_acct_no="6222020000000000123",
            ),
            StatementDetail(
                vt_code="2252",
                voucher_no="2252450100000007",
                x_agent_business_no="ICBC2026112400000311",
                x_pay_date=WORK_DATE,
                amt_fen=-2_500_000,
                pro_state=1,
                payee_acct_no="6222020000000000123",
            ),
        ),
    )


def reconcile_result() -> ReconcileResult:
    """A 2507 reporting one mismatch."""
    return ReconcileResult(
        check_date=WORK_DATE,
        x_check_result=1,
        x_diff_num=1,
        details=(
            ReconcileDetail(vt_code="5201", voucher_no="5201450100000123", x_check_result=0),
            ReconcileDetail(vt_code="5201", voucher_no="5201450100000124", x_check_result=1, x_check_reason="银行单边"),
        ),
    )


#: (sample name, payload, sender) for every message type; the sender is "gateway" or "bank".
def all_payloads() -> list[tuple[str, Payload, str]]:
    """Every sample payload with a file-friendly name and who sends it."""
    return [
        ("9005-ping", Ping(), "bank"),
        ("9006-sign-on", SignOn(bank_code=BANK, last_work_date=date(2026, 11, 20)), "bank"),
        (
            "9007-sign-on-reply",
            SignOnReply(result=90000, add_word="签到成功", work_date=WORK_DATE),
            "gateway",
        ),
        ("9008-sign-off", SignOff(reason="日终签退"), "bank"),
        ("9009-sign-off-reply", SignOffReply(result=90000), "gateway"),
        ("9120-reply", Reply(ori_msg_no="5201", result=90000, add_word=""), "bank"),
        (
            "9120-reply-refused",
            Reply(
                ori_msg_no="7101",
                result=91002,
                add_word="Body/CardSpending/RecordList/Record[1]/Amt: must be greater than zero",
            ),
            "gateway",
        ),
        ("5201-voucher", direct_voucher(), "gateway"),
        ("8202-voucher", authorized_voucher(), "gateway"),
        ("8202-card-repayment", card_repayment(), "gateway"),
        ("5201-receipt", receipt(), "bank"),
        ("8202-card-receipt", card_receipt(), "bank"),
        ("2252-return", return_notice(), "bank"),
        ("5106-quota-notice", quota_notice(), "gateway"),
        ("7101-card-spending", card_spending(), "bank"),
        ("4005-statement-request", StatementRequest(check_date=WORK_DATE), "gateway"),
        ("4006-statement", statement(), "bank"),
        ("2507-reconcile-result", reconcile_result(), "gateway"),
        (
            "9101-status-query",
            StatusQuery(adm_div_code="450100", st_year=2026, vt_code="5201", voucher_no="5201450100000123"),
            "gateway",
        ),
        (
            "9102-status-reply",
            StatusReply(
                adm_div_code="450100",
                st_year=2026,
                vt_code="5201",
                voucher_no="5201450100000123",
                x_status=2,
                x_pay_date=WORK_DATE,
                x_agent_business_no="ICBC2026112300004711",
                x_pay_amt_fen=12_500_000,
            ),
            "bank",
        ),
    ]


def message(payload: Payload, sender: str, seq: int = 1) -> Message:
    """Wrap a sample payload in a head from `sender` ("gateway" or "bank") with a deterministic MsgId.

    A reply (9007, 9009, 9120, 9102) refers, in its MsgRef, to the other side's message of sequence `seq - 1`.
    """
    src, des = (NODE, BANK) if sender == "gateway" else (BANK, NODE)
    msg_id = f"20261123{src[:4]}{seq:08d}"
    msg_ref = f"20261123{des[:4]}{seq - 1:08d}" if payload.IS_REPLY else msg_id
    return Message(
        Head(
            msg_no=payload.msg_no,
            msg_id=msg_id,
            msg_ref=msg_ref,
            src=src,
            des=des,
            work_date=WORK_DATE,
            send_time=SEND_TIME,
        ),
        payload,
    )
