"""The `icbc` dialect (中国工商银行): a TIPS/CFX-like layout in GBK, framed by six digits, signed detached with RSA.

Our model of how such a front-end differs on the wire (DOMAIN.md, "How bank front-end interfaces differ on the
wire"), not ICBC's specification. Everything is data (:class:`~banks.declarative.Declaration`); the codec is
:class:`~banks.declarative.DeclarativeDialect`. docs/banks/icbc.md shows a signed sample of every message.
"""

from __future__ import annotations

from typing import Final

from banks.declarative import Declaration, DeclarativeDialect
from banks.statement_format import StatementSource
from protocols.framing import FrameSpec, HeaderKind

DECLARATION: Final = Declaration(
    code="icbc",
    title="中国工商银行 (ICBC): CFX-like layout, GBK, 6-digit length, detached RSA-SHA256",
    description="""\
Modelled on the PBOC TIPS/CFX message style that bank treasury front-ends grew up with: a `<CFX>` root with a
`<HEAD>` of `VER`, `SRC`, `DES`, `APP`, `MsgNo`, `MsgID`, `MsgRef`, `WorkDate` and a `<MSG>` holding one payload
element named after the business (`PAY_VOUCHER`, `PAY_RECEIPT`, …), upper-case field names in the bank's own
vocabulary (`TRAN_AMT`, `RCV_ACCT_NO`, `BANK_SERIAL_NO`), GBK text, a 6-digit ASCII length that counts the body
only, four-digit result codes (`0000` success, `9xxx` errors), six-character transaction codes (`PAY001`) in
`MsgNo`, and a detached RSA-SHA256 signature over the exact bytes of the document, base64 in `HEAD/SIGN`.""",
    framing=FrameSpec(HeaderKind.ASCII_DECIMAL, 6, length_includes_header=False, max_body_bytes=999_999),
    encoding="GBK",
    root="CFX",
    head="HEAD",
    body="MSG",
    signature="rsa-sha256-detached",
    signature_element="SIGN",
    head_constants={"APP": "GKZF"},
    names={
        # head: TIPS style
        "Ver": "VER",
        "MsgId": "MsgID",
        "Src": "SRC",
        "Des": "DES",
        # session and replies
        "BankCode": "BANK_CODE",
        "LastWorkDate": "LAST_WORK_DATE",
        "Result": "RET_CODE",
        "AddWord": "RET_MSG",
        "Reason": "REASON",
        "OriMsgNo": "ORI_MSG_NO",
        # vouchers, receipts, returns
        "VoucherFlag": "VOUCHER_FLAG",
        "AdmDivCode": "ADM_DIV_CODE",
        "StYear": "ST_YEAR",
        "VtCode": "VT_CODE",
        "VouDate": "VOU_DATE",
        "VoucherNo": "VOUCHER_NO",
        "AgencyCode": "AGENCY_CODE",
        "AgencyName": "AGENCY_NAME",
        "FundTypeCode": "FUND_TYPE_CODE",
        "PayTypeCode": "PAY_TYPE_CODE",
        "BusinessTypeCode": "BIZ_TYPE_CODE",
        "ExpFuncCode": "EXP_FUNC_CODE",
        "ExpEcoCode": "EXP_ECO_CODE",
        "PayAcctNo": "PAY_ACCT_NO",
        "PayAcctName": "PAY_ACCT_NAME",
        "PayAcctBankName": "PAY_BANK_NAME",
        "PayeeAcctNo": "RCV_ACCT_NO",
        "PayeeAcctName": "RCV_ACCT_NAME",
        "PayeeAcctBankName": "RCV_BANK_NAME",
        "PayeeAcctBankNo": "RCV_BANK_NO",
        "PayAmt": "TRAN_AMT",
        "PaySummaryName": "PURPOSE",
        "Remark": "REMARK",
        "DetailList": "DETAILS",
        "Detail": "DETAIL",
        "Id": "SEQ_NO",
        "CardNo": "CARD_NO",
        "SpendId": "SPEND_ID",
        "XPayDate": "PAY_DATE",
        "XAgentBusinessNo": "BANK_SERIAL_NO",
        "XPayAmt": "PAID_AMT",
        "XPayeeAcctNo": "PAID_ACCT_NO",
        "XPayeeAcctName": "PAID_ACCT_NAME",
        "XResult": "PAY_RESULT",
        "XAddWord": "PAY_MSG",
        "OriVtCode": "ORI_VT_CODE",
        "OriginalVoucherNo": "ORI_VOUCHER_NO",
        # quotas, cards, statements, reconciliation, status
        "QuotaAmt": "QUOTA_AMT",
        "RecordList": "RECORDS",
        "Record": "RECORD",
        "CardHolder": "CARD_HOLDER",
        "TxnDate": "TXN_DATE",
        "TxnTime": "TXN_TIME",
        "MerchantName": "MERCHANT_NAME",
        "Amt": "AMT",
        "AuthCode": "AUTH_CODE",
        "LimitDate": "LIMIT_DATE",
        "CheckDate": "CHECK_DATE",
        "AllNum": "TOTAL_NUM",
        "AllAmt": "TOTAL_AMT",
        "ChildPackNum": "PACK_NUM",
        "CurPackNo": "PACK_NO",
        "ProState": "TRAN_STATE",
        "XCheckResult": "CHECK_RESULT",
        "XDiffNum": "DIFF_NUM",
        "XCheckReason": "CHECK_REASON",
        "XStatus": "VOUCHER_STATUS",
    },
    payload_elements={
        "Ping": "HEARTBEAT",
        "SignOn": "LOGIN",
        "SignOnReply": "LOGIN_ANS",
        "SignOff": "LOGOUT",
        "SignOffReply": "LOGOUT_ANS",
        "Reply": "COMM_ANS",
        "Voucher": "PAY_VOUCHER",
        "Receipt": "PAY_RECEIPT",
        "ReturnNotice": "RETURN_NOTICE",
        "QuotaNotice": "QUOTA_NOTICE",
        "CardSpending": "CARD_SPEND",
        "StatementRequest": "CHECK_REQ",
        "Statement": "CHECK_BILL",
        "ReconcileResult": "RECON_RESULT",
        "StatusQuery": "STATUS_QUERY",
        "StatusReply": "STATUS_ANS",
    },
    result_codes={
        90000: "0000",
        91001: "9001",
        91002: "9002",
        91003: "9003",
        91004: "9004",
        91005: "9005",
        91006: "9006",
        91099: "9099",
    },
    message_types={
        "9005": "SYS005",
        "9006": "SYS006",
        "9007": "SYS007",
        "9008": "SYS008",
        "9009": "SYS009",
        "9120": "SYS120",
        "5201": "PAY001",
        "8202": "PAY002",
        "2252": "RTN001",
        "5106": "QTA001",
        "7101": "CRD001",
        "4005": "CHK001",
        "4006": "CHK002",
        "2507": "CHK003",
        "9101": "QRY001",
        "9102": "QRY002",
    },
    statement_format=StatementSource(
        "camt053",
        description="""\
An ISO 20022 camt.053 bank-to-customer statement, as a large bank's cash-management platform exports it for its
corporate and government customers: one `Ntry` per voucher or return. This is our choice for the model (a
front-end of TIPS/CFX style for the messages and ISO 20022 for the statement file is plausible for a bank of this
size), not the bank's specification.""",
    ),
)

DIALECT: Final = DeclarativeDialect(DECLARATION)
