"""The ISO 20022 camt.053 reader (`BkToCstmrStmt`, bank-to-customer statement), streamed.

Any version of the message is accepted (namespace `urn:iso:std:iso:20022:tech:xsd:camt.053.001.NN`); the
elements read are the same in versions 02 to 08, where they differ only in the two places handled below
(`Sts` and the net total). The mapping onto a statement line (docs/reconciliation.md has the table):

========================================================  ==================================================
camt.053                                                   statement line (4006 `Detail`)
========================================================  ==================================================
`Ntry/BkTxCd/Prtry/Cd`                                     `VtCode` (5201, 8202, 2252): the bank's
                                                           proprietary transaction code names the voucher type
`Ntry/NtryDtls/TxDtls/Refs/EndToEndId`                     `VoucherNo` (`NOTPROVIDED` or absent: none, the
                                                           line is matched by serial)
`TxDtls/Refs/AcctSvcrRef`, else `Ntry/AcctSvcrRef`         `XAgentBusinessNo`
`Ntry/BookgDt/Dt` (or the date of `BookgDt/DtTm`)          `XPayDate`
`Ntry/Amt` (`Ccy` must be CNY) and `CdtDbtInd`             `Amt`: a debit (the bank paid out) positive, a
                                                           credit (money came back) negative
`Ntry/Sts` (`Sts/Cd` from version 08) with `CdtDbtInd`     `ProState`: BOOK+DBIT 0 paid, BOOK+CRDT
                                                           1 returned, INFO+DBIT 2 failed (reported, not
                                                           booked); anything else is refused
`TxDtls/RltdPties/CdtrAcct/Id` (debit) or `DbtrAcct/Id`    `PayeeAcctNo` (`Othr/Id`, or `IBAN`): for a
(credit)                                                   return the payee is the one who sends money back
`Stmt/TxsSummry/TtlNtries/NbOfNtries`                      `AllNum`
`TtlNtries/TtlNetNtry/Amt` + `CdtDbtInd` (08) or           `AllAmt`, debit positive
`TtlNtries/TtlNetNtryAmt` + `CdtDbtInd` (02)
`Stmt/Bal` with `Tp/CdOrPrtry/Cd` CLBD, its `Dt/Dt`        the check date
`Bal` OPBD and CLBD                                        checked: closing = opening + booked credits −
                                                           booked debits, else a summary-mismatch break
`GrpHdr/MsgId`, `Stmt/Id`                                  the statement's identification
========================================================  ==================================================

An entry must carry exactly one `TxDtls` (batch-booked entries are refused) and no `RvslInd` true (reversals
are refused): both are named in the error. Several `Stmt` (accounts) in one message are one statement; their
check dates must agree and their totals add up.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date
from typing import Final

from lxml import etree

from protocols.money import format_amount_fen
from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.model import Staged, Totals, match_key
from reconciliation.readers.base import (
    DEFAULT_LIMITS,
    Source,
    StatementLimits,
    StatementStream,
    SummaryFinding,
    open_source,
    source_name,
)
from reconciliation.xmlstream import StreamLimits, iter_elements, line_of, local_name, release

#: The namespace every accepted version shares, up to its version number.
NAMESPACE_PREFIX: Final = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
#: `EndToEndId` meaning "none was given" (ISO 20022 convention).
NOT_PROVIDED: Final = "NOTPROVIDED"
_TAGS: Final = ("{*}GrpHdr", "{*}Stmt", "{*}Bal", "{*}TxsSummry", "{*}Ntry")
_ELEMENT_LIMITS: Final = StreamLimits(max_element_depth=10, max_element_count=160)
_AMOUNT: Final = re.compile(r"([0-9]{1,16})(?:\.([0-9]{1,5}))?")
_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T.*)?")


def read_camt053(source: Source, *, limits: StatementLimits = DEFAULT_LIMITS) -> Camt053Statement:
    """Read a camt.053 statement (a file name or an open binary file)."""
    return Camt053Statement(source, limits)


class Camt053Statement(StatementStream):
    """A camt.053 statement being read (see the module docstring)."""

    def __init__(self, source: Source, limits: StatementLimits) -> None:
        super().__init__(source_name(source), "camt.053")
        self._input = source
        self._limits = limits
        self._ns = ""
        self._opening: int | None = None
        self._closing: int | None = None
        self._booked_fen = 0
        self._booked_count = 0
        self._statement_ids: list[str] = []
        self._check_dates: set[date] = set()
        self._declared: Totals | None = None
        self._current: etree._Element | None = None
        self._indexed: etree._Element | None = None
        self._index: dict[str, list[etree._Element]] = {}

    def _records(self) -> Iterator[Staged]:
        limits = dataclasses.replace(_ELEMENT_LIMITS, max_bytes=self._limits.max_bytes)
        count = 0
        total = 0
        message_id = ""
        with ExitStack() as stack:
            file = open_source(stack, self._input)
            for element in iter_elements(file, _TAGS, source=self.source, limits=limits):
                tag = self._local(element)
                if tag == "Ntry":
                    count += 1
                    if count > self._limits.max_lines:
                        raise StatementLimitExceeded(f"more than {self._limits.max_lines} entries", source=self.source)
                    record = self._entry(element)
                    total += record[2]
                    release(element)
                    yield record
                elif tag == "Bal":
                    self._balance(element)
                    release(element)
                elif tag == "TxsSummry":
                    self._summary(element)
                    release(element)
                elif tag == "GrpHdr":
                    message_id = self._text(element, "MsgId")
                    release(element)
                else:
                    self._end_of_statement(element)
        if not self._ns:
            raise StatementError("not a camt.053 statement: no BkToCstmrStmt/Stmt", source=self.source)
        if len(self._check_dates) > 1:
            raise StatementError("the statements (Stmt) are for different dates", source=self.source)
        self.check_date = next(iter(self._check_dates), None)
        self.statement_id = "/".join([message_id, *self._statement_ids])
        self.declared = self._declared
        self.computed = Totals(count, total)

    # --- elements ---------------------------------------------------------------------------------------------

    def _local(self, element: etree._Element) -> str:
        tag = element.tag
        assert isinstance(tag, str)
        namespace = tag[1:].partition("}")[0] if tag.startswith("{") else ""
        if not self._ns:
            if not namespace.startswith(NAMESPACE_PREFIX):
                raise StatementError(
                    f"not a camt.053 document: namespace {namespace!r}", source=self.source, line=line_of(element)
                )
            self._ns = namespace
        elif namespace != self._ns:
            raise StatementError(
                f"element in namespace {namespace!r}, not {self._ns!r}", source=self.source, line=line_of(element)
            )
        return local_name(element)

    def _find(self, element: etree._Element, path: str) -> etree._Element | None:
        found = self._findall(element, path)
        return found[0] if found else None

    def _findall(self, element: etree._Element, path: str) -> list[etree._Element]:
        """The elements at `path` (local names) below `element`, from an index of its subtree built once.

        lxml's `find` parses its path in Python on every call; an entry is asked for a dozen paths, so one
        walk of its two dozen elements into a dict is several times cheaper.
        """
        if element is not self._indexed:
            self._indexed = element
            index: dict[str, list[etree._Element]] = {}
            self._index = index
            start = len(self._ns) + 2
            prefix = f"{{{self._ns}}}"
            stack = [("", element)]
            while stack:
                path_so_far, node = stack.pop()
                for child in node:
                    tag = child.tag
                    if not isinstance(tag, str) or not tag.startswith(prefix):
                        continue  # another namespace: never one of the paths asked for
                    at = path_so_far + tag[start:]
                    index.setdefault(at, []).append(child)
                    if len(child):
                        stack.append((at + "/", child))
        return self._index.get(path, [])

    def _text(self, element: etree._Element, path: str, *, required: bool = True) -> str:
        found = self._find(element, path)
        text = "" if found is None or found.text is None else found.text.strip()
        if required and not text:
            raise StatementError(
                f"{path} is missing", source=self.source, line=line_of(element), element=local_name(element)
            )
        if len(text) > self._limits.max_field_chars or not text.isprintable():
            raise StatementError(
                f"{path} is longer than {self._limits.max_field_chars} characters or not printable",
                source=self.source,
                line=line_of(element),
                element=local_name(element),
            )
        return text

    def _error(self, element: etree._Element, reason: str) -> StatementError:
        return StatementError(reason, source=self.source, line=line_of(element), element=local_name(element))

    def _amount(self, element: etree._Element, path: str, *, currency: bool = True) -> int:
        """An unsigned amount in fen: in CNY (its `Ccy`), or a plain decimal number (`currency` False)."""
        found = self._find(element, path)
        if found is None or found.text is None:
            raise self._error(element, f"{path} is missing")
        if currency and found.get("Ccy") != "CNY":
            raise self._error(element, f"{path} is in {found.get('Ccy')!r}, not CNY")
        match = _AMOUNT.fullmatch(found.text.strip())
        fraction = (match.group(2) or "") if match else ""
        if match is None or fraction.rstrip("0")[2:]:
            raise self._error(element, f"{path} {found.text!r} is not an amount in yuan and fen")
        return int(match.group(1)) * 100 + int((fraction + "00")[:2])

    def _sign(self, element: etree._Element) -> int:
        indicator = self._text(element, "CdtDbtInd")
        if indicator not in ("DBIT", "CRDT"):
            raise self._error(element, f"CdtDbtInd {indicator!r} is not DBIT or CRDT")
        return 1 if indicator == "DBIT" else -1

    def _date(self, element: etree._Element, path: str) -> date:
        """The date of `path/Dt`, or of `path/DtTm`."""
        text = self._text(element, f"{path}/Dt", required=False) or self._text(element, f"{path}/DtTm")
        match = _DATE.fullmatch(text)
        try:
            if match is None:
                raise ValueError
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise self._error(element, f"{path} {text!r} is not an ISO date") from None

    def _entry(self, element: etree._Element) -> Staged:
        self._open_statement(element)
        details = self._findall(element, "NtryDtls/TxDtls")
        if len(details) != 1:
            raise self._error(element, f"{len(details)} TxDtls: exactly one per entry is supported")
        if self._text(element, "RvslInd", required=False).lower() in ("true", "1"):
            raise self._error(element, "reversal entries (RvslInd) are not supported")
        sign = self._sign(element)
        state = self._text(element, "Sts/Cd", required=False) or self._text(element, "Sts")
        if state == "BOOK":
            code = 0 if sign > 0 else 1
        elif state == "INFO" and sign > 0:
            code = 2
        else:
            raise self._error(element, f"entry status {state} with {'DBIT' if sign > 0 else 'CRDT'} is not supported")
        amount_fen = sign * self._amount(element, "Amt")
        if code != 2:
            self._booked_fen -= amount_fen  # a debit lowers the balance
            self._booked_count += 1
        vt_code = self._text(element, "BkTxCd/Prtry/Cd")
        tx = "NtryDtls/TxDtls/"
        voucher_no = self._text(element, tx + "Refs/EndToEndId", required=False)
        if voucher_no == NOT_PROVIDED:
            voucher_no = ""
        serial = self._text(element, tx + "Refs/AcctSvcrRef", required=False) or self._text(element, "AcctSvcrRef")
        party = f"{tx}RltdPties/{'CdtrAcct' if sign > 0 else 'DbtrAcct'}/Id/"
        payee = self._text(element, party + "Othr/Id", required=False) or self._text(element, party + "IBAN")
        pay_date = self._date(element, "BookgDt")
        key = match_key(vt_code, voucher_no)
        position = line_of(element) or 0
        return (key, serial, amount_fen, code, payee, pay_date.toordinal(), position, "" if key else vt_code)

    def _balance(self, element: etree._Element) -> None:
        self._open_statement(element)
        kind = self._text(element, "Tp/CdOrPrtry/Cd", required=False)
        if kind not in ("OPBD", "CLBD"):
            return  # interim and available balances are not checked
        balance = -self._sign(element) * self._amount(element, "Amt")  # a credit balance is positive
        if kind == "OPBD":
            self._opening = balance
        else:
            self._closing = balance
            self._check_dates.add(self._date(element, "Dt"))

    def _summary(self, element: etree._Element) -> None:
        self._open_statement(element)
        count_text = self._text(element, "TtlNtries/NbOfNtries")
        if not (count_text.isascii() and count_text.isdigit()):
            raise self._error(element, f"NbOfNtries {count_text!r} is not a count")
        totals = self._find(element, "TtlNtries")
        assert totals is not None
        if self._find(totals, "TtlNetNtry") is not None:
            net = self._find(totals, "TtlNetNtry")
            assert net is not None
            amount_fen = self._sign(net) * self._amount(net, "Amt", currency=False)
        else:
            amount_fen = self._sign(totals) * self._amount(totals, "TtlNetNtryAmt", currency=False)
        declared = Totals(int(count_text), amount_fen)
        self._declared = declared if self._declared is None else self._declared + declared

    def _open_statement(self, element: etree._Element) -> None:
        """Note the statement (`Stmt`) an element belongs to, the first time one of its children ends."""
        statement = element.getparent()
        if statement is None or local_name(statement) != "Stmt":
            raise self._error(element, "must be inside BkToCstmrStmt/Stmt")
        self._open_statement_of(statement)

    def _end_of_statement(self, element: etree._Element) -> None:
        self._open_statement_of(element)
        if self._opening is not None and self._closing is not None:
            expected = self._opening + self._booked_fen
            if expected != self._closing:
                scope = f"balance {self._statement_ids[-1] if self._statement_ids else ''}".strip()
                self.findings.append(
                    SummaryFinding(
                        scope=scope,
                        declared=Totals(self._booked_count, self._closing),
                        computed=Totals(self._booked_count, expected),
                        detail=(
                            f"{scope}: the closing balance {format_amount_fen(self._closing)} is not the opening "
                            f"balance {format_amount_fen(self._opening)} plus the booked entries "
                            f"({format_amount_fen(expected)})"
                        ),
                    )
                )
        self._opening = self._closing = None
        self._booked_fen = 0
        self._booked_count = 0
        release(element)

    def _open_statement_of(self, statement: etree._Element) -> None:
        # Holding the element keeps lxml's proxy for it alive, so identity tells a new Stmt from the current.
        if statement is not self._current:
            self._current = statement
            self._statement_ids.append(self._text(statement, "Id", required=False))

    def describe(self, position: int) -> str:
        """`<file> line N` (the line the entry starts on)."""
        return f"{self.source} line {position}"
