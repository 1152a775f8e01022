"""The `ccb` dialect (中国建设银行): `<packet><head>…<body>` in GB18030, a binary length, fen, ISO dates, ECDSA.

Our model of how such a front-end differs on the wire (DOMAIN.md, "How bank front-end interfaces differ on the
wire"), not CCB's specification. Everything is data (:class:`~banks.declarative.Declaration`); the codec is
:class:`~banks.declarative.DeclarativeDialect`. docs/banks/ccb.md shows a signed sample of every message.
"""

from __future__ import annotations

from typing import Final

from banks.declarative import (
    Absent,
    AmountFormat,
    BodyLayout,
    DateFormat,
    DateTimeFormat,
    Declaration,
    DeclarativeDialect,
    ListLayout,
    TimeFormat,
)
from banks.statement_format import FileFormat, StatementSource, SummaryLine
from protocols.framing import FrameSpec, HeaderKind

DECLARATION: Final = Declaration(
    code="ccb",
    title="中国建设银行 (CCB): <packet> layout, GB18030, 4-byte binary length, fen, ISO dates, ECDSA P-256",
    description="""\
Modelled on a bank-enterprise link: a `<packet>` with a `<head>` (`tranCode`, `seqNo`, `signFlag`, …) and a flat
`<body>` that holds the payload's fields directly, the message type being the head's `tranCode` (six characters,
pinyin initials: `ZF5201` 支付, `TP2252` 退票, `DZ4006` 对账). Lists repeat their items without a container
(`<detail>…</detail><detail>…</detail>`), an absent optional field is sent as an empty element, amounts are
integer fen, dates ISO (`2026-11-23`), times `2026-11-23 10:30:01`. Replies carry `hostReturnCode` /
`hostErrorMessage` in the bank's vocabulary (`000000` success, `E…` errors). Frames have a 4-byte big-endian
binary length counting the body only; text is GB18030. The signature is ECDSA P-256 with SHA-256, detached over
the exact bytes of the document, the raw r||s value base64 in `head/signData`: this dialect needs EC keys.""",
    framing=FrameSpec(HeaderKind.BINARY_BIG_ENDIAN, 4, length_includes_header=False),
    encoding="GB18030",
    root="packet",
    head="head",
    body="body",
    body_layout=BodyLayout.FLAT,
    list_layout=ListLayout.BARE,
    absent=Absent.EMPTY,
    amount_format=AmountFormat.FEN,
    date_format=DateFormat.ISO,
    datetime_format=DateTimeFormat.ISO_SPACE,
    time_format=TimeFormat.COLON,
    signature="ecdsa-p256-detached",
    signature_element="signData",
    head_constants={"signFlag": "1"},
    names={
        "Ver": "version",
        "MsgNo": "tranCode",
        "MsgId": "seqNo",
        "MsgRef": "refSeqNo",
        "Src": "sender",
        "Des": "receiver",
        "WorkDate": "tranDate",
        "SendTime": "tranTime",
        "BankCode": "bankCode",
        "LastWorkDate": "lastTranDate",
        "Result": "hostReturnCode",
        "AddWord": "hostErrorMessage",
        "Reason": "reason",
        "OriMsgNo": "oriTranCode",
        "VoucherFlag": "voucherFlag",
        "AdmDivCode": "admDivCode",
        "StYear": "fiscalYear",
        "VtCode": "vtCode",
        "VouDate": "voucherDate",
        "VoucherNo": "voucherNo",
        "AgencyCode": "agencyCode",
        "AgencyName": "agencyName",
        "FundTypeCode": "fundType",
        "PayTypeCode": "payType",
        "BusinessTypeCode": "bizType",
        "ExpFuncCode": "expFuncCode",
        "ExpEcoCode": "expEcoCode",
        "PayAcctNo": "payerAcctNo",
        "PayAcctName": "payerAcctName",
        "PayAcctBankName": "payerBankName",
        "PayeeAcctNo": "payeeAcctNo",
        "PayeeAcctName": "payeeAcctName",
        "PayeeAcctBankName": "payeeBankName",
        "PayeeAcctBankNo": "payeeBankNo",
        "PayAmt": "amount",
        "PaySummaryName": "purpose",
        "Remark": "remark",
        "DetailList": "details",
        "Detail": "detail",
        "Id": "detailNo",
        "CardNo": "cardNo",
        "SpendId": "spendId",
        "XPayDate": "hostDate",
        "XAgentBusinessNo": "hostSeqNo",
        "XPayAmt": "paidAmount",
        "XPayeeAcctNo": "paidAcctNo",
        "XPayeeAcctName": "paidAcctName",
        "XResult": "payResult",
        "XAddWord": "payMessage",
        "OriVtCode": "oriVtCode",
        "OriginalVoucherNo": "oriVoucherNo",
        "QuotaAmt": "quotaAmount",
        "RecordList": "records",
        "Record": "record",
        "CardHolder": "cardHolder",
        "TxnDate": "txnDate",
        "TxnTime": "txnTime",
        "MerchantName": "merchantName",
        "Amt": "txnAmount",
        "AuthCode": "authCode",
        "LimitDate": "repayDeadline",
        "CheckDate": "checkDate",
        "AllNum": "totalCount",
        "AllAmt": "totalAmount",
        "ChildPackNum": "pageCount",
        "CurPackNo": "pageNo",
        "ProState": "status",
        "XCheckResult": "checkResult",
        "XDiffNum": "diffCount",
        "XCheckReason": "checkReason",
        "XStatus": "voucherStatus",
    },
    result_codes={
        90000: "000000",
        91001: "E10001",
        91002: "E10002",
        91003: "E20001",
        91004: "E20002",
        91005: "E30001",
        91006: "E40001",
        91099: "E99999",
    },
    message_types={
        "9005": "XT9005",
        "9006": "QD9006",
        "9007": "QD9007",
        "9008": "QT9008",
        "9009": "QT9009",
        "9120": "YD9120",
        "5201": "ZF5201",
        "8202": "ZF8202",
        "2252": "TP2252",
        "5106": "ED5106",
        "7101": "GW7101",
        "4005": "DZ4005",
        "4006": "DZ4006",
        "2507": "DZ2507",
        "9101": "CX9101",
        "9102": "CX9102",
    },
    statement_format=StatementSource(
        "text",
        FileFormat(
            name="ccb-fixed",
            columns=("serial", "vt_code", "voucher_no", "", "payee_acct_no", "amount", "status", "pay_date"),
            widths=(42, 4, 42, 60, 40, 18, 1, 10),
            encoding="GBK",
            header_lines=1,
            trailer_lines=1,
            amount_unit="fen",
            date_format="YYYY-MM-DD",
            status_codes=(("S", 0), ("R", 1), ("F", 2)),
            summary=SummaryLine(
                place="trailer", check_date_column=1, count_column=2, amount_column=3, widths=(3, 10, 10, 18)
            ),
        ),
        description="""\
A fixed-width GBK file from the bank's batch system: a title line, one line per voucher or return, and a trailer
`TRL` with the check date, the count and the signed total in fen. Columns are cut by bytes (a Chinese character
of the payee's name, which the reader ignores, is two); numbers are zero-filled on the left, text is padded with
spaces on the right. The widths hold the longest value the standard allows (42 characters for a voucher number
or serial, 40 for an account), so every voucher fits.""",
    ),
)

DIALECT: Final = DeclarativeDialect(DECLARATION)
