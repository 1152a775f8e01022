"""The 4006 statement reader: the standard's `Statement` (PROTOCOL.md §5.5), one document per page, streamed.

A statement may come in several pages (`ChildPackNum`, `CurPackNo`); each page is a document of its own, a
`<Message>` whose `Body` holds the `Statement` (signed or not: a file's signature is not checked here; the
gateway verifies messages that come over the link before they get here) or a bare `<Statement>`. Every page
repeats the whole statement's `CheckDate`, `AllNum` and `AllAmt`. :func:`read_4006` reads documents,
:func:`from_messages` pages already decoded by the codec. Both check that the pages make one statement: the
same check date, count, total and page count on every page, each page exactly once, none missing; anything
else is a :class:`~reconciliation.errors.StatementError` (an incomplete statement cannot be reconciled).

Documents are parsed with :mod:`reconciliation.xmlstream` (the policy of :mod:`protocols.xmlsafe`), so a
single document of a million details is read in flat memory. Values are read as the standard writes them
(:mod:`protocols.money`: `1234.50`, `YYYYMMDD`), and each `Detail` must hold each of its seven fields once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from typing import Final

from lxml import etree

from protocols import messages
from protocols.money import parse_amount_fen, parse_date8
from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.model import Staged, StatementLine, Totals, match_key, staged_from_line
from reconciliation.readers.base import (
    DEFAULT_LIMITS,
    Source,
    StatementLimits,
    StatementStream,
    check_line,
    open_source,
    source_name,
    status_of,
)
from reconciliation.xmlstream import StreamLimits, iter_elements, line_of, local_name, release

#: The fields of a `Detail`, each required exactly once (PROTOCOL.md §5.5).
DETAIL_FIELDS: Final = ("VtCode", "VoucherNo", "XAgentBusinessNo", "XPayDate", "Amt", "ProState", "PayeeAcctNo")
#: The summary fields of a `Statement` page.
PAGE_FIELDS: Final = ("CheckDate", "AllNum", "AllAmt", "ChildPackNum", "CurPackNo")
_ELEMENT_LIMITS: Final = StreamLimits(max_element_depth=3, max_element_count=64)


@dataclass(frozen=True, slots=True)
class _Page:
    check_date: date
    all_num: int
    all_amt_fen: int
    child_pack_num: int
    cur_pack_no: int


def read_4006(sources: Iterable[Source], *, limits: StatementLimits = DEFAULT_LIMITS) -> StandardStatement:
    """Read a 4006 statement from its page documents (file names or open binary files), in any order."""
    return StandardStatement(sources, limits)


def from_messages(pages: Iterable[messages.Statement], *, source: str = "4006 pages") -> MessageStatement:
    """A 4006 statement from pages already decoded (and verified) by the gateway, in any order."""
    return MessageStatement(pages, source)


class _Pages(StatementStream):
    """What both 4006 readers share: checking that the pages make one statement, and naming positions."""

    def __init__(self, source: str, max_pages: int) -> None:
        super().__init__(source, "4006")
        self._max_pages = max_pages
        self._first: _Page | None = None
        self._seen: dict[int, str] = {}
        self._starts: list[int] = []  # ordinal of the first detail of each document read, for describe()
        self._names: list[tuple[str, int]] = []  # (document, page number) of each

    def _page(self, page: _Page, where: str) -> None:
        if len(self._seen) >= self._max_pages:
            raise StatementLimitExceeded(f"more than {self._max_pages} pages", source=where)
        if not 1 <= page.cur_pack_no <= page.child_pack_num:
            raise StatementError(f"page {page.cur_pack_no} of {page.child_pack_num} does not exist", source=where)
        if page.cur_pack_no in self._seen:
            raise StatementError(
                f"page {page.cur_pack_no} appears twice (also in {self._seen[page.cur_pack_no]})", source=where
            )
        first = self._first
        if first is None:
            self._first = page
        elif (first.check_date, first.all_num, first.all_amt_fen, first.child_pack_num) != (
            page.check_date,
            page.all_num,
            page.all_amt_fen,
            page.child_pack_num,
        ):
            raise StatementError(
                "the pages disagree about the statement's CheckDate, AllNum, AllAmt or ChildPackNum", source=where
            )
        self._seen[page.cur_pack_no] = where

    def _finish(self, count: int, total: int) -> None:
        first = self._first
        if first is None:
            raise StatementError("no page of the statement was given", source=self.source)
        missing = sorted(set(range(1, first.child_pack_num + 1)) - self._seen.keys())
        if missing:
            raise StatementError(
                f"pages missing: {', '.join(map(str, missing))} of {first.child_pack_num}", source=self.source
            )
        self.check_date = first.check_date
        self.declared = Totals(first.all_num, first.all_amt_fen)
        self.computed = Totals(count, total)

    def describe(self, position: int) -> str:
        """`<document> page P, Detail[N]` for the detail at ordinal `position`."""
        at = bisect_right(self._starts, position) - 1
        if at < 0:
            return f"{self.source} Detail {position}"
        name, page = self._names[at]
        return f"{name} page {page}, Detail[{position - self._starts[at] + 1}]"


class StandardStatement(_Pages):
    """A 4006 statement read from documents (see the module docstring)."""

    def __init__(self, sources: Iterable[Source], limits: StatementLimits) -> None:
        super().__init__("4006 documents", limits.max_pages)
        self._sources = sources
        self._limits = limits

    def _records(self) -> Iterator[Staged]:
        limits = self._limits
        stream_limits = StreamLimits(
            limits.max_bytes, _ELEMENT_LIMITS.max_element_depth, _ELEMENT_LIMITS.max_element_count
        )
        ordinal = 0
        total = 0
        names = []
        for document in self._sources:
            name = source_name(document)
            names.append(name)
            first_ordinal = ordinal + 1
            page: _Page | None = None
            with ExitStack() as stack:
                file = open_source(stack, document)
                for element in iter_elements(file, ("Detail", "Statement"), source=name, limits=stream_limits):
                    if element.tag == "Detail":
                        ordinal += 1
                        if ordinal > limits.max_lines:
                            raise StatementLimitExceeded(f"more than {limits.max_lines} detail lines", source=name)
                        record = self._detail(element, name, ordinal - first_ordinal + 1, ordinal)
                        total += record[2]
                        release(element)
                        yield record
                    else:
                        page = self._statement(element, name)
            if page is None:
                raise StatementError("not a 4006 statement: no Statement element", source=name)
            self._page(page, name)
            self._starts.append(first_ordinal)
            self._names.append((name, page.cur_pack_no))
        self.source = ", ".join(names) if names else self.source
        self._finish(ordinal, total)

    def _detail(self, element: etree._Element, name: str, index: int, ordinal: int) -> Staged:
        path = f"Statement/DetailList/Detail[{index}]"
        parent = element.getparent()
        grandparent = None if parent is None else parent.getparent()
        if parent is None or parent.tag != "DetailList" or grandparent is None or grandparent.tag != "Statement":
            raise StatementError("a Detail outside Statement/DetailList", source=name, line=line_of(element))
        values = _fields(element, DETAIL_FIELDS, name, path, self._limits.max_field_chars)
        field = "Amt"
        try:
            amount_fen = parse_amount_fen(values["Amt"])
            field = "XPayDate"
            pay_date = parse_date8(values["XPayDate"])
            field = "ProState"
            state = values["ProState"]
            if state not in ("0", "1", "2"):
                raise ValueError(f"ProState {state!r} is not 0, 1 or 2")
            status = status_of(int(state))
        except ValueError as exc:
            raise StatementError(
                str(exc), source=name, line=_line_of(element, field), element=f"{path}/{field}"
            ) from None
        if (amount_fen < 0) != (status.value == 1):
            raise StatementError(
                "the amount must be negative exactly when the line is a return (ProState 1)",
                source=name,
                line=_line_of(element, "Amt"),
                element=f"{path}/Amt",
            )
        key = match_key(values["VtCode"], values["VoucherNo"])
        return (
            key,
            values["XAgentBusinessNo"],
            amount_fen,
            status.value,
            values["PayeeAcctNo"],
            pay_date.toordinal(),
            ordinal,
            "" if key else values["VtCode"],
        )

    def _statement(self, element: etree._Element, name: str) -> _Page:
        body = element.getparent()
        if body is not None:
            root = body.getparent()
            if body.tag != "Body" or root is None or root.tag != "Message":
                raise StatementError("the Statement must be the root or in Message/Body", source=name)
            msg_no = root.findtext("Head/MsgNo")
            if msg_no is not None and msg_no.strip() != "4006":
                raise StatementError(f"MsgNo {msg_no!r} is not 4006", source=name, element="Message/Head/MsgNo")
        values = _fields(element, PAGE_FIELDS, name, "Statement", 32, ignore=("DetailList",))
        try:
            page = _Page(
                check_date=parse_date8(values["CheckDate"]),
                all_num=_count(values["AllNum"]),
                all_amt_fen=parse_amount_fen(values["AllAmt"]),
                child_pack_num=_count(values["ChildPackNum"]),
                cur_pack_no=_count(values["CurPackNo"]),
            )
        except ValueError as exc:
            raise StatementError(str(exc), source=name, line=line_of(element), element="Statement") from None
        release(element)
        return page


class MessageStatement(_Pages):
    """A 4006 statement from decoded pages (:func:`from_messages`)."""

    def __init__(self, pages: Iterable[messages.Statement], source: str) -> None:
        super().__init__(source, DEFAULT_LIMITS.max_pages)
        self._pages = pages

    def _records(self) -> Iterator[Staged]:
        ordinal = 0
        total = 0
        for page in self._pages:
            where = f"{self.source} page {page.cur_pack_no}"
            self._page(
                _Page(page.check_date, page.all_num, page.all_amt_fen, page.child_pack_num, page.cur_pack_no), where
            )
            self._starts.append(ordinal + 1)
            self._names.append((self.source, page.cur_pack_no))
            for n, detail in enumerate(page.details, 1):
                ordinal += 1
                try:
                    line = StatementLine(
                        detail.vt_code,
                        detail.voucher_no,
                        detail.x_agent_business_no,
                        detail.amt_fen,
                        status_of(detail.pro_state),
                        detail.payee_acct_no,
                        detail.x_pay_date,
                        ordinal,
                    )
                    problem = check_line(line)
                    if problem:
                        raise ValueError(problem)
                except ValueError as exc:
                    raise StatementError(str(exc), source=where, element=f"DetailList/Detail[{n}]") from None
                total += detail.amt_fen
                yield staged_from_line(line)
        self._finish(ordinal, total)


def _fields(
    element: etree._Element,
    names: tuple[str, ...],
    source: str,
    path: str,
    max_chars: int,
    ignore: tuple[str, ...] = (),
) -> dict[str, str]:
    """The text of each named child of `element`, each exactly once and simple; nothing else allowed."""
    values: dict[str, str] = {}
    for child in element:
        tag = local_name(child)
        if tag in ignore:
            continue
        if tag not in names:
            raise StatementError(f"unexpected element {tag}", source=source, line=line_of(child), element=path)
        if tag in values:
            raise StatementError(f"{tag} appears twice", source=source, line=line_of(child), element=path)
        if len(child):
            raise StatementError(f"{tag} must hold text only", source=source, line=line_of(child), element=path)
        text = (child.text or "").strip()
        if len(text) > max_chars or not text.isprintable():
            raise StatementError(
                f"{tag} is longer than {max_chars} characters or not printable",
                source=source,
                line=line_of(child),
                element=f"{path}/{tag}",
            )
        values[tag] = text
    missing = [n for n in names if n not in values]
    if missing:
        raise StatementError(f"missing {', '.join(missing)}", source=source, line=line_of(element), element=path)
    return values


def _line_of(element: etree._Element, child: str) -> int | None:
    """The line of `element`'s child named `child` (which :func:`_fields` has seen), else of `element`."""
    found = element.find(child)
    return line_of(element if found is None else found)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise ValueError(f"{text!r} is not a count")
    return int(text)
