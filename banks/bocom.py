"""The `bocom` dialect (交通银行): own element names in UTF-8, a 10-digit length counting itself, XMLDSig.

Our model of how such a front-end differs on the wire (DOMAIN.md, "How bank front-end interfaces differ on the
wire"), not the Bank of Communications' specification. Everything is data
(:class:`~banks.declarative.Declaration`); the codec is :class:`~banks.declarative.DeclarativeDialect`.
docs/banks/bocom.md shows a signed sample of every message.
"""

from __future__ import annotations

from typing import Final

from banks.declarative import DateFormat, DateTimeFormat, Declaration, DeclarativeDialect, TimeFormat
from banks.statement_format import FileFormat, StatementSource, SummaryLine
from protocols.framing import FrameSpec, HeaderKind

DECLARATION: Final = Declaration(
    code="bocom",
    title="交通银行 (BOCOM): own names, UTF-8, 10-digit length counting the header, ISO dates, XMLDSig",
    description="""\
Modelled on a bank middleware with its own, English vocabulary: a `<Document>` with a `<Header>` (`TxCode`,
`MessageId`, `Sender`, `Receiver`, `BusinessDate`, `CreationTime`) and a `<Content>` holding one payload element
(`PaymentOrder`, `PaymentReceipt`, `RefundNotice`, …) whose fields are named in payment-industry English
(`DebtorAccount`, `CreditorAgent`, `BankReference`). Six-digit numeric transaction codes (`305201`; `10xxxx` for
the session messages), its own result codes (`BC000` success, `BC1xx`–`BC9xx` errors), ISO dates
(`2026-11-23`) and date-times (`2026-11-23T10:30:01`), amounts in yuan. Frames have a 10-digit ASCII length that
counts the header too. Text is UTF-8 and the signature is the standard's enveloped XMLDSig (PROTOCOL.md §6),
verifiable with `xmlsec1`.""",
    framing=FrameSpec(HeaderKind.ASCII_DECIMAL, 10, length_includes_header=True),
    encoding="UTF-8",
    root="Document",
    head="Header",
    body="Content",
    date_format=DateFormat.ISO,
    datetime_format=DateTimeFormat.ISO_T,
    time_format=TimeFormat.COLON,
    signature="xmldsig-enveloped",
    names={
        "Ver": "Version",
        "MsgNo": "TxCode",
        "MsgId": "MessageId",
        "MsgRef": "ReferenceId",
        "Src": "Sender",
        "Des": "Receiver",
        "WorkDate": "BusinessDate",
        "SendTime": "CreationTime",
        "BankCode": "BankId",
        "LastWorkDate": "LastBusinessDate",
        "Result": "ReturnCode",
        "AddWord": "ReturnMessage",
        "OriMsgNo": "OriginalTxCode",
        "VoucherFlag": "OrderFlag",
        "AdmDivCode": "DivisionCode",
        "StYear": "FiscalYear",
        "VtCode": "OrderType",
        "VouDate": "OrderDate",
        "VoucherNo": "OrderNo",
        "AgencyCode": "UnitCode",
        "AgencyName": "UnitName",
        "FundTypeCode": "FundType",
        "PayTypeCode": "PaymentType",
        "BusinessTypeCode": "BusinessType",
        "ExpFuncCode": "FunctionCode",
        "ExpEcoCode": "EconomicCode",
        "PayAcctNo": "DebtorAccount",
        "PayAcctName": "DebtorName",
        "PayAcctBankName": "DebtorAgent",
        "PayeeAcctNo": "CreditorAccount",
        "PayeeAcctName": "CreditorName",
        "PayeeAcctBankName": "CreditorAgent",
        "PayeeAcctBankNo": "CreditorAgentCode",
        "PayAmt": "Amount",
        "PaySummaryName": "Purpose",
        "DetailList": "Items",
        "Detail": "Item",
        "Id": "ItemNo",
        "CardNo": "CardNumber",
        "SpendId": "SpendingId",
        "XPayDate": "SettlementDate",
        "XAgentBusinessNo": "BankReference",
        "XPayAmt": "SettledAmount",
        "XPayeeAcctNo": "SettledAccount",
        "XPayeeAcctName": "SettledName",
        "XResult": "Outcome",
        "XAddWord": "OutcomeReason",
        "OriVtCode": "OriginalOrderType",
        "OriginalVoucherNo": "OriginalOrderNo",
        "QuotaAmt": "QuotaAmount",
        "RecordList": "Transactions",
        "Record": "Transaction",
        "TxnDate": "TransactionDate",
        "TxnTime": "TransactionTime",
        "MerchantName": "Merchant",
        "Amt": "TransactionAmount",
        "AuthCode": "AuthorizationCode",
        "LimitDate": "RepaymentDeadline",
        "AllNum": "TotalCount",
        "AllAmt": "TotalAmount",
        "ChildPackNum": "PageCount",
        "CurPackNo": "PageNo",
        "ProState": "EntryStatus",
        "XDiffNum": "DifferenceCount",
        "XCheckReason": "DifferenceReason",
        "XStatus": "OrderStatus",
    },
    payload_elements={
        "Ping": "Heartbeat",
        "SignOn": "Logon",
        "SignOnReply": "LogonResponse",
        "SignOff": "Logoff",
        "SignOffReply": "LogoffResponse",
        "Reply": "Acknowledgement",
        "Voucher": "PaymentOrder",
        "Receipt": "PaymentReceipt",
        "ReturnNotice": "RefundNotice",
        "QuotaNotice": "QuotaGrant",
        "CardSpending": "CardTransactions",
        "StatementRequest": "StatementRequest",
        "Statement": "Statement",
        "ReconcileResult": "ReconciliationReport",
        "StatusQuery": "StatusInquiry",
        "StatusReply": "StatusResponse",
    },
    result_codes={
        90000: "BC000",
        91001: "BC101",
        91002: "BC102",
        91003: "BC201",
        91004: "BC202",
        91005: "BC301",
        91006: "BC401",
        91099: "BC999",
    },
    message_types={
        "9005": "109005",
        "9006": "109006",
        "9007": "109007",
        "9008": "109008",
        "9009": "109009",
        "9120": "109120",
        "5201": "305201",
        "8202": "308202",
        "2252": "302252",
        "5106": "305106",
        "7101": "307101",
        "4005": "304005",
        "4006": "304006",
        "2507": "302507",
        "9101": "309101",
        "9102": "309102",
    },
    statement_format=StatementSource(
        "text",
        FileFormat(
            name="bocom-csv",
            columns=("serial", "pay_date", "vt_code", "voucher_no", "payee_acct_no", "", "amount", "status"),
            delimiter=",",
            encoding="UTF-8",
            header_lines=1,
            trailer_lines=1,
            amount_unit="yuan",
            date_format="YYYY-MM-DD",
            status_codes=(("BOOK", 0), ("RTRN", 1), ("RJCT", 2)),
            summary=SummaryLine(place="trailer", check_date_column=1, count_column=2, amount_column=3),
            strip=True,
        ),
        description="""\
A comma-separated UTF-8 file exported by the bank's middleware: a line of column titles, one line per voucher
or return (the creditor's name is listed and ignored), and a trailer `T,<check date>,<count>,<total>` (the
marker in its first column is not read).
Amounts in yuan with two decimals, ISO dates, the bank's English status codes (`BOOK` paid, `RTRN` returned,
`RJCT` refused); spaces around values are ignored. Values are never quoted.""",
    ),
)

DIALECT: Final = DeclarativeDialect(DECLARATION)
