"""The text statement reader: delimited or fixed-width lines as a :class:`~reconciliation.formats.FileFormat` declares.

The file is read in blocks of :data:`BLOCK_BYTES` and cut into lines at ``\\n`` (which is never part of a
multi-byte character in UTF-8, GBK or GB18030), so memory holds one block whatever the file's size, and a
line longer than the cap is refused before it is decoded. A delimited block is decoded once and then split
(splitting GBK bytes at a delimiter would be wrong: ``|`` can be the second byte of a Chinese character); a
fixed-width line is cut by **byte** widths first and each value decoded after.

Blank lines are skipped wherever they are; the header is the first `header_lines` non-blank lines and the
trailer the last `trailer_lines` (each block holds back its last non-blank lines until the next block shows
they were not the trailer). Line numbers in errors and in
:meth:`~reconciliation.readers.base.StatementStream.describe` are physical line numbers, counting from 1.

The inner loop (:meth:`TextStatement._run`) is written for speed: it builds the matcher's staged record
directly, and looks at a line's blankness only when the line does not split into the declared columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from itertools import accumulate, chain, pairwise, repeat
from operator import eq, itemgetter, lt
from typing import BinaryIO, Final, cast

from reconciliation.errors import StatementError, StatementLimitExceeded
from reconciliation.formats import FileFormat, SummaryLine
from reconciliation.model import KEY_SEPARATOR, Staged, Totals
from reconciliation.readers.base import (
    DEFAULT_LIMITS,
    FEN_FORM,
    YUAN_FORM,
    Source,
    StatementLimits,
    StatementStream,
    date_parser,
    open_source,
    parse_fen,
    parse_yuan_fen,
    source_name,
)

#: Bytes read at a time.
BLOCK_BYTES: Final = 1024 * 1024
_BOM: Final = b"\xef\xbb\xbf"
#: The printable ASCII characters and the line break (a block that is nothing else needs no printable check).
_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F)) + b"\n"
#: Lines checked together on the fast path: small enough to stay in the processor's cache.
_BULK_LINES: Final = 512
#: A whole column of amounts, one per line, checked with one match (cheaper than one match per value).
_YUAN_BLOCK: Final = re.compile(r"(?:-?[0-9]{1,16}\.[0-9]{2}\n)*")
_FEN_BLOCK: Final = re.compile(r"(?:-?[0-9]{1,18}\n)*")
_ORDER: Final = ("vt_code", "voucher_no", "serial", "pay_date", "amount", "status", "payee_acct_no")

Line = str | bytes
Numbered = tuple[int, Line]


def read_text(source: Source, fmt: FileFormat, *, limits: StatementLimits = DEFAULT_LIMITS) -> TextStatement:
    """Read a text statement file of layout `fmt`.

    Args:
        source: A file name or an open binary file.
        fmt: The file's layout.
        limits: Caps on size, lines and line length.

    Returns:
        The statement, to be iterated once.
    """
    return TextStatement(source, fmt, limits)


class TextStatement(StatementStream):
    """A text statement being read (see the module docstring)."""

    def __init__(self, source: Source, fmt: FileFormat, limits: StatementLimits) -> None:
        super().__init__(source_name(source), fmt.name)
        self._input = source
        self._fmt = fmt
        self._limits = limits
        self._encoding = fmt.encoding.upper()
        self._date = date_parser(fmt.date_format)
        self._amount = parse_yuan_fen if fmt.amount_unit == "yuan" else parse_fen
        self._days: dict[str, int] = {}
        self._count = 0
        self._total = 0
        columns = len(fmt.columns)
        self._extra: list[str] = []  # values appended to every split line for fields the file has no column for
        index = []
        for name in _ORDER:
            i = fmt.column(name)
            if i is None:
                i = columns + len(self._extra)
                self._extra.append((fmt.vt_code or "") if name == "vt_code" else "")
            index.append(i)
        self._pick = itemgetter(*index)
        self._codes = {code: state for code, state in fmt.status_codes}
        self._split_fixed = self._fixed_splitter(fmt.widths) if fmt.widths is not None else None

    def _records(self) -> Iterator[Staged]:
        return chain.from_iterable(self._record_blocks())

    def _record_blocks(self) -> Iterator[list[Staged]]:
        fmt = self._fmt
        header: list[Numbered] = []
        held: list[Numbered] = []  # the last non-blank lines so far: the trailer, unless more lines follow
        trailer = fmt.trailer_lines
        max_lines = self._limits.max_lines
        with ExitStack() as stack:
            for base, lines, printable in self._blocks(open_source(stack, self._input)):
                i = 0
                while len(header) < fmt.header_lines and i < len(lines):
                    if lines[i] and not lines[i].isspace():
                        header.append((base + i + 1, lines[i]))
                    i += 1
                cut = len(lines)
                if trailer:
                    tail: list[Numbered] = []
                    while cut > i and len(tail) < trailer:
                        cut -= 1
                        if lines[cut] and not lines[cut].isspace():
                            tail.append((base + cut + 1, lines[cut]))
                    tail.reverse()
                    pushed = held + tail
                    out = max(0, len(pushed) - trailer)
                    for lineno, line in pushed[:out]:
                        if staged := list(self._run((line,), lineno - 1)):
                            yield staged
                    held = pushed[out:]
                for start in range(i, cut, _BULK_LINES):
                    run = lines[start : min(cut, start + _BULK_LINES)]
                    block = self._bulk(run, base + start, printable=printable)
                    if block is None:
                        block = list(self._run(run, base + start))
                    if block:
                        yield block
                if self._count > max_lines:
                    raise StatementLimitExceeded(f"more than {max_lines} detail lines", source=self.source)
        if len(header) < fmt.header_lines or len(held) < trailer:
            raise StatementError(
                f"the file ends before its {fmt.header_lines} header and {trailer} trailer lines are complete",
                source=self.source,
            )
        self.computed = Totals(self._count, self._total)
        if fmt.summary is not None:
            place = header if fmt.summary.place == "header" else held
            self._read_summary(fmt.summary, *place[fmt.summary.index])

    def _bulk(self, lines: list[str] | list[bytes], lineno: int, *, printable: bool = False) -> list[Staged] | None:
        """Staged records of a run of detail lines, checked column by column; None if any line needs a look.

        This is the fast path: every step is one call that loops in C (split, transpose, regular expression,
        conversion, look-up, comparison of whole columns), so a line costs a fraction of what the line-by-line
        loop costs. When anything is amiss (a blank line, a line without a voucher number, a malformed value)
        it gives up and :meth:`_run` goes through the same lines one by one to name the culprit.
        """
        fmt = self._fmt
        n = len(lines)
        columns = self._columns(lines)
        if columns is None:
            return None
        columns += [(value,) * n for value in self._extra]
        vt_codes, voucher_nos, serials, dates, amounts, states, payees = self._pick(columns)
        amount_form = _YUAN_BLOCK if fmt.amount_unit == "yuan" else _FEN_BLOCK
        column = "\n".join(amounts) + "\n"
        if "" in voucher_nos or amount_form.fullmatch(column) is None:
            return None
        if fmt.amount_unit == "yuan":  # every amount has its point two digits from the end (the match says so)
            amounts = column.replace(".", "").split("\n")
            amounts.pop()
        amounts_fen = list(map(int, amounts))
        try:
            codes = list(map(self._codes.__getitem__, states))
            days = list(map(self._days.__getitem__, dates))
        except KeyError:
            if not self._learn_dates(dates):
                return None
            try:
                codes = list(map(self._codes.__getitem__, states))
                days = list(map(self._days.__getitem__, dates))
            except KeyError:
                return None
        if list(map(lt, amounts_fen, repeat(0))) != list(map(eq, codes, repeat(1))):
            return None
        if not printable and not "".join(chain(vt_codes, voucher_nos, serials, payees)).isprintable():
            return None
        keys = map(KEY_SEPARATOR.join, zip(vt_codes, voucher_nos, strict=True))  # match_key(): one new string
        self._count += n
        self._total += sum(amounts_fen)
        return list(zip(keys, serials, amounts_fen, codes, payees, days, range(lineno + 1, lineno + n + 1), repeat("")))

    def _columns(self, lines: list[str] | list[bytes]) -> list[Sequence[str]] | None:
        """The lines' values column by column, or None if a line is blank or has the wrong shape."""
        fmt = self._fmt
        if fmt.delimiter is not None:
            # Every line must hold exactly width - 1 delimiters; then one split of the joined lines gives the
            # values row after row, and every width-th of them is a column (no list per line to build).
            rows = cast(list[str], lines)
            width = len(fmt.columns)
            if set(map(str.count, rows, repeat(fmt.delimiter))) != {width - 1}:
                return None
            values = fmt.delimiter.join(rows).split(fmt.delimiter)
            columns: list[Sequence[str]] = [values[i::width] for i in range(width)]
            return [list(map(str.strip, column)) for column in columns] if fmt.strip else columns
        assert fmt.widths is not None
        raw = cast(list[bytes], lines)
        text = b"\n".join(raw)
        if max(map(len, raw)) > sum(fmt.widths) or not all(map(bytes.strip, raw)) or not text.isascii():
            return None  # blank, too long, or not ASCII (cut by bytes, then decoded, on the slow path)
        decoded = text.decode("ascii").split("\n")
        starts = list(accumulate(fmt.widths, initial=0))
        return [list(map(str.strip, map(itemgetter(slice(a, b)), decoded))) for a, b in pairwise(starts)]

    def _learn_dates(self, dates: Sequence[str]) -> bool:
        """Parse the dates of a block not seen before; False if one is malformed (the slow path will say)."""
        if len(self._days) > 4096:
            self._days.clear()
        for text in set(dates) - self._days.keys():
            try:
                self._days[text] = self._date(text).toordinal()
            except ValueError:
                return False
        return True

    def _run(self, lines: Sequence[Line], lineno: int) -> Iterator[Staged]:
        """Staged records of consecutive detail lines, the first being line `lineno` + 1 (the inner loop)."""
        fmt = self._fmt
        source = self.source
        delimiter = fmt.delimiter
        columns = len(fmt.columns)
        strip = fmt.strip
        split_fixed = self._split_fixed
        extra = self._extra
        pick = self._pick
        is_yuan = fmt.amount_unit == "yuan"
        amount_form = (YUAN_FORM if is_yuan else FEN_FORM).fullmatch
        days = self._days
        codes = self._codes
        sep = KEY_SEPARATOR
        count = 0
        total = 0
        for line in lines:
            lineno += 1
            if delimiter is not None:
                assert isinstance(line, str)
                parts = line.split(delimiter)
                if len(parts) != columns:
                    if not line or line.isspace():
                        continue
                    raise StatementError(
                        f"{len(parts)} columns where the format declares {columns}", source=source, line=lineno
                    )
                if strip:
                    parts = [p.strip() for p in parts]
            else:
                if not line or line.isspace():
                    continue
                assert split_fixed is not None
                parts = split_fixed(lineno, line)
            if extra:
                parts.extend(extra)
            vt_code, voucher_no, serial, pay_date, amount, state, payee = pick(parts)
            if amount_form(amount) is None:
                raise StatementError(f"{amount!r} is not an amount in {fmt.amount_unit}", source=source, line=lineno)
            amount_fen = int(amount.replace(".", "", 1)) if is_yuan else int(amount)
            day = days.get(pay_date)
            if day is None:
                day = self._day(pay_date, lineno)
            code = codes.get(state)
            if code is None:
                raise StatementError(f"unknown status code {state!r}", source=source, line=lineno)
            if (amount_fen < 0) != (code == 1):
                raise StatementError(
                    "the amount must be negative exactly when the line is a return", source=source, line=lineno
                )
            if not (vt_code + voucher_no + serial + payee).isprintable():
                raise StatementError("a field contains a character that is not printable", source=source, line=lineno)
            count += 1
            total += amount_fen
            if voucher_no:
                yield (vt_code + sep + voucher_no, serial, amount_fen, code, payee, day, lineno, "")
            elif serial:
                yield ("", serial, amount_fen, code, payee, day, lineno, vt_code)
            else:
                raise StatementError("the line has neither a voucher number nor a serial", source=source, line=lineno)
        self._count += count
        self._total += total

    def _day(self, text: str, lineno: int) -> int:
        try:
            day = self._date(text).toordinal()
        except ValueError as exc:
            raise StatementError(str(exc), source=self.source, line=lineno) from None
        if len(self._days) < 4096:
            self._days[text] = day
        return day

    # --- lines ------------------------------------------------------------------------------------------------

    def _blocks(self, file: BinaryIO) -> Iterator[tuple[int, list[str] | list[bytes], bool]]:
        """Yield (number of the line before the block, the block's lines, printable), decoded unless fixed-width.

        `printable` is True when the block is ASCII without control characters (other than the line breaks),
        so that no value in it needs its characters looked at (one pass over the bytes in C for the block,
        instead of one per column of each run of lines); False says nothing either way.
        """
        max_line = self._limits.max_line_bytes
        max_bytes = self._limits.max_bytes
        fixed = self._fmt.fixed_width
        rest = b""
        total = 0
        lineno = 0
        first = True
        while True:
            data = file.read(BLOCK_BYTES)
            total += len(data)
            if total > max_bytes:
                raise StatementLimitExceeded(f"larger than the maximum of {max_bytes} bytes", source=self.source)
            if first and self._encoding == "UTF-8" and data.startswith(_BOM):
                data = data[len(_BOM) :]
            first = False
            block = rest + data
            cut = block.rfind(b"\n") + 1 if data else len(block)
            rest = block[cut:]
            if len(rest) > max_line:
                raise StatementLimitExceeded(
                    f"a line longer than the maximum of {max_line} bytes", source=self.source, line=lineno + 1
                )
            if cut:
                complete = block[:cut] if data else block.rstrip(b"\r")
                if b"\r" in complete:
                    complete = complete.replace(b"\r\n", b"\n")
                if not fixed and complete.isascii():
                    # ASCII reads the same in every encoding allowed, and a line's characters are its bytes.
                    lines = complete.decode("ascii").split("\n")
                    if data:
                        lines.pop()  # the empty string after the block's final line break
                    self._check_lengths(lines, lineno)
                    yield lineno, lines, not complete.translate(None, _PRINTABLE_ASCII)
                    lineno += len(lines)
                else:
                    raw = complete.split(b"\n")
                    if data:
                        raw.pop()
                    self._check_lengths(raw, lineno)
                    yield lineno, raw if fixed else self._decode(complete, lineno, data), False
                    lineno += len(raw)
            if not data:
                return

    def _check_lengths(self, lines: list[str] | list[bytes], lineno: int) -> None:
        """Refuse a line longer than the cap (`lines` are bytes, or ASCII text), naming it."""
        max_line = self._limits.max_line_bytes
        if lines and max(map(len, lines)) > max_line:
            long = next(i for i, line in enumerate(lines) if len(line) > max_line)
            raise StatementLimitExceeded(
                f"a line longer than the maximum of {max_line} bytes", source=self.source, line=lineno + long + 1
            )

    def _decode(self, complete: bytes, lineno: int, more: bytes) -> list[str]:
        try:
            lines = complete.decode(self._encoding).split("\n")
        except UnicodeDecodeError as exc:
            at = lineno + complete.count(b"\n", 0, exc.start) + 1
            raise StatementError(f"not valid {self._encoding}", source=self.source, line=at) from None
        if more:
            lines.pop()
        return lines

    def _fixed_splitter(self, widths: tuple[int, ...]) -> Callable[[int, Line], list[str]]:
        spans = []
        start = 0
        for width in widths:
            spans.append((start, start + width))
            start += width
        total = start
        encoding = self._encoding
        source = self.source

        def split_fixed(lineno: int, line: Line) -> list[str]:
            assert isinstance(line, bytes)
            if len(line) > total:
                raise StatementError(f"{len(line)} bytes where the format declares {total}", source=source, line=lineno)
            if line.isascii():
                text = line.decode("ascii")
                return [text[a:b].strip() for a, b in spans]
            try:
                return [line[a:b].decode(encoding).strip() for a, b in spans]
            except UnicodeDecodeError:
                raise StatementError(
                    f"not valid {encoding}, or a column boundary cuts a character", source=source, line=lineno
                ) from None

        return split_fixed

    # --- summary ----------------------------------------------------------------------------------------------

    def _read_summary(self, spec: SummaryLine, lineno: int, line: Line) -> None:
        if spec.widths is not None:
            parts = self._fixed_splitter(spec.widths)(lineno, line)
        else:
            assert isinstance(line, str) and self._fmt.delimiter is not None
            parts = [p.strip() for p in line.split(self._fmt.delimiter)]
        try:
            count_text = parts[spec.count_column]
            amount_text = parts[spec.amount_column]
            date_text = None if spec.check_date_column is None else parts[spec.check_date_column]
        except IndexError:
            raise StatementError(
                "the summary line has fewer columns than declared", source=self.source, line=lineno
            ) from None
        if not (count_text.isascii() and count_text.isdigit()):
            raise StatementError(f"the count {count_text!r} is not a number", source=self.source, line=lineno)
        try:
            amount_fen = self._amount(amount_text)
            if date_text is not None:
                self.check_date = self._date(date_text)
        except ValueError as exc:
            raise StatementError(str(exc), source=self.source, line=lineno) from None
        self.declared = Totals(int(count_text), amount_fen)
