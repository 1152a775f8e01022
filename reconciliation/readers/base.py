"""What every statement reader produces: a :class:`StatementStream` of lines, its caps, and shared parsing.

A stream is read once. Its lines come out as they are parsed, so memory does not grow with the statement;
what the statement declares about itself (check date, `AllNum`/`AllAmt`, balances) is known once the lines
have been read, because some formats only declare it at the end (a trailer line) and others repeat it on
every page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import BinaryIO, Final

from reconciliation.errors import StatementError
from reconciliation.model import Staged, StatementLine, Status, Totals, line_from_staged

#: A file name, or an open binary file (read from its current position, not closed by the reader).
Source = str | os.PathLike[str] | BinaryIO

#: An amount in yuan as text files write it (leading zeros allowed), and in fen.
YUAN_FORM: Final = re.compile(r"-?[0-9]{1,16}\.[0-9]{2}")
FEN_FORM: Final = re.compile(r"-?[0-9]{1,18}")
#: Records per list of :meth:`StatementStream.record_blocks` when a reader yields them one by one.
_BLOCK_RECORDS: Final = 1024
_STATUS: Final = {0: Status.PAID, 1: Status.RETURNED, 2: Status.FAILED}


@dataclass(frozen=True, slots=True)
class StatementLimits:
    """Caps on one statement, whatever its format (TigerBeetle: a limit on everything).

    Attributes:
        max_bytes: Largest statement, all files or pages together.
        max_lines: Most detail lines.
        max_line_bytes: Longest line of a text file.
        max_field_chars: Longest value of a voucher number, serial or account in an XML statement.
        max_pages: Most 4006 pages.
    """

    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_lines: int = 20_000_000
    max_line_bytes: int = 4096
    max_field_chars: int = 64
    max_pages: int = 10_000

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_lines, self.max_line_bytes, self.max_field_chars, self.max_pages) < 1:
            raise ValueError(f"statement limits must be positive: {self!r}")


DEFAULT_LIMITS: Final = StatementLimits()


@dataclass(frozen=True, slots=True)
class SummaryFinding:
    """A statement contradicting itself beyond its count and total (a camt.053 balance that does not add up).

    The matcher turns each into a summary-mismatch break.
    """

    scope: str
    declared: Totals
    computed: Totals
    detail: str


class StatementStream:
    """A statement being read: iterate it once for its lines, then read what it declared.

    Readers produce *staged records* (:data:`~reconciliation.model.Staged`), the compact tuples the matcher
    sorts and merges, so that a line is built once; :meth:`__iter__` gives the same lines as
    :class:`~reconciliation.model.StatementLine` records for everyone else.

    Attributes:
        source: What it is read from, for people (a file name, "4006 pages").
        format_name: `4006`, `camt.053` or the text format's name.
        check_date: The check date the statement declares (None if it declares none). Set once iteration
            has finished.
        declared: The count and signed total the statement declares, or None. Set once iteration has
            finished.
        computed: The count and signed total of the detail lines read. Set once iteration has finished.
        statement_id: The statement's own identification (camt.053 `GrpHdr/MsgId` and `Stmt/Id`), or "".
        findings: Contradictions found while reading, other than count and total (see
            :class:`SummaryFinding`).
    """

    def __init__(self, source: str, format_name: str) -> None:
        self.source = source
        self.format_name = format_name
        self.check_date: date | None = None
        self.declared: Totals | None = None
        self.computed = Totals()
        self.statement_id = ""
        self.findings: list[SummaryFinding] = []
        self._started = False

    def __iter__(self) -> Iterator[StatementLine]:
        """The lines, in the statement's order.

        Raises:
            StatementError: the statement is malformed (with where), or read a second time.
        """
        return map(line_from_staged, self.records())

    def records(self) -> Iterator[Staged]:
        """The lines as staged records, in the statement's order (what the matcher reads).

        Raises:
            StatementError: the statement is malformed (with where), or read a second time.
        """
        if self._started:
            raise StatementError("a statement stream can be read only once", source=self.source)
        self._started = True
        return self._records()

    def record_blocks(self) -> Iterator[list[Staged]]:
        """The same records as :meth:`records`, as consecutive lists (none empty): what the matcher reads.

        A reader that parses lines in bulk hands its lists over as they are, so that staging a line costs no
        step of Python code; the others' records are gathered into lists here.

        Raises:
            StatementError: the statement is malformed (with where), or read a second time.
        """
        if self._started:
            raise StatementError("a statement stream can be read only once", source=self.source)
        self._started = True
        return self._record_blocks()

    def _records(self) -> Iterator[Staged]:
        raise NotImplementedError

    def _record_blocks(self) -> Iterator[list[Staged]]:
        records = self._records()
        while block := list(islice(records, _BLOCK_RECORDS)):
            yield block

    def describe(self, position: int) -> str:
        """Where the line at `position` is, in words (`statement.txt line 17`)."""
        return f"{self.source} line {position}"


def open_source(stack: ExitStack, source: Source) -> BinaryIO:
    """Open a file name for reading in binary (closed with `stack`), or pass an open file through."""
    if isinstance(source, str | os.PathLike):
        return stack.enter_context(open(source, "rb"))
    return source


def source_name(source: Source) -> str:
    """A name for messages: the file name, or the open file's `name`, or `<stream>`."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def parse_yuan_fen(text: str) -> int:
    """`-1234.50` → -123450 (leading zeros allowed, as text files pad with them).

    Raises:
        ValueError: not an optional minus, 1–16 digits, a point and two digits.
    """
    if YUAN_FORM.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not an amount in yuan with two decimals")
    return int(text.replace(".", "", 1))


def parse_fen(text: str) -> int:
    """`-123450` → -123450.

    Raises:
        ValueError: not an optional minus and 1–18 digits.
    """
    if FEN_FORM.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not an amount in fen")
    return int(text)


def date_parser(layout: str) -> Callable[[str], date]:
    """A parser of dates in `layout` (`YYYYMMDD`, `YYYY-MM-DD` or `YYYY/MM/DD`), caching what it has seen.

    A statement holds few distinct dates, so the cache makes parsing a date a dict lookup.

    Raises:
        ValueError: (from the returned parser) not a date in that layout.
    """
    separator = layout[4] if len(layout) == 10 else ""
    width = len(layout)
    cache: dict[str, date] = {}

    def parse(text: str) -> date:
        found = cache.get(text)
        if found is not None:
            return found
        digits = text.replace(separator, "") if separator else text
        ok = (
            len(text) == width
            and len(digits) == 8
            and digits.isascii()
            and digits.isdigit()
            and (not separator or (text[4] == separator and text[7] == separator))
        )
        if not ok:
            raise ValueError(f"{text!r} is not a date of the form {layout}")
        try:
            value = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        except ValueError:
            raise ValueError(f"{text!r} is not a calendar date") from None
        if len(cache) < 4096:
            cache[text] = value
        return value

    return parse


def status_of(pro_state: int) -> Status:
    """The status of a `ProState` code.

    Raises:
        ValueError: not 0, 1 or 2.
    """
    try:
        return _STATUS[pro_state]
    except KeyError:
        raise ValueError(f"ProState {pro_state} is not 0 paid, 1 returned or 2 failed") from None


def check_line(line: StatementLine) -> str | None:
    """What is wrong with a parsed line, or None: the rules of PROTOCOL.md §5.5 that hold in every format.

    A line is refused when its amount's sign contradicts its status (negative exactly for a return, as
    :mod:`protocols.rules` requires of a 4006), when it carries neither a voucher number nor a serial (nothing
    to match it by), or when an identifying field holds a character that is not printable (such as the NUL
    that separates match keys).
    """
    if (line.amount_fen < 0) != (line.status is Status.RETURNED):
        return "the amount must be negative exactly when the line is a return (ProState 1)"
    if not line.voucher_no and not line.serial:
        return "the line has neither a voucher number nor a bank serial"
    if not (line.vt_code + line.voucher_no + line.serial + line.payee_acct_no).isprintable():
        return "a VtCode, VoucherNo, serial or account contains a character that is not printable"
    return None
