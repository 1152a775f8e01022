"""End-of-day statement files as a simulated bank delivers them: in the format its dialect declares.

A dialect declares its statement file (:class:`~banks.statement_format.StatementSource`, the dialect's
`statement_format`): the standard's 4006 document, a text layout (:class:`~banks.statement_format.FileFormat`),
or ISO 20022 camt.053. :func:`render` writes the lines of a check date (a
:meth:`~simulators.ledger.Ledger.statement_lines`, possibly spoilt by `reconciliation.inject`) in that format,
exactly as `tgw reconcile --statement FILE` reads it back (docs/reconciliation.md):

* **4006**: one unsigned standard `<Message>` per page (`AllNum`, `AllAmt`, `ChildPackNum` and `CurPackNo` on
  every page), at most :data:`~protocols.messages.MAX_STATEMENT_DETAILS` details each;
* **text**: the declared columns, delimited or cut to byte widths in the declared encoding; numbers are
  zero-filled on the left in a fixed-width file, text padded with spaces on the right; columns the reader
  ignores are left empty; the summary line carries the declared count, total and check date, with a marker
  in its first column when that column is not otherwise used (`H`/`T` delimited, `HDR`/`TRL` fixed-width);
  other header lines are the column names (delimited) or a title (fixed-width); other trailer lines `END`;
* **camt.053** (version 08): one `Stmt` of one account, one `Ntry` with one `TxDtls` per line (paid `BOOK` +
  `DBIT`, returned `BOOK` + `CRDT`, refused `INFO` + `DBIT`), the declared totals in `TxsSummry`, and an
  opening balance with the closing balance it adds up to.

`declared` is the (count, total in fen) the file states; by default the lines' own. Values a format cannot hold
(a delimiter inside a value, a value wider than its column, a status the file has no code for) raise
`ValueError` naming the line and the column. No clock is read: the creation times written are the morning after
the check date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

from lxml import etree

from banks.statement_format import FileFormat, StatementSource
from protocols import codec
from protocols.messages import MAX_STATEMENT_DETAILS, Message, Statement, StatementDetail
from protocols.money import format_amount_fen
from protocols.xmlsafe import serialize

#: A statement's declared count and signed total in fen (`AllNum`, `AllAmt`).
Declared = tuple[int, int]
#: The camt.053 version written.
CAMT053_NAMESPACE: Final = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
#: The gateway's default node code (the 4006 `Des`).
DEFAULT_NODE: Final = "450100000000"
_MARKERS: Final = {("header", False): "H", ("trailer", False): "T", ("header", True): "HDR", ("trailer", True): "TRL"}


def render(
    source: StatementSource,
    check_date: date,
    lines: Sequence[StatementDetail],
    *,
    declared: Declared | None = None,
    bank: str = "BANK",
    node: str = DEFAULT_NODE,
    page_size: int = MAX_STATEMENT_DETAILS,
) -> list[bytes]:
    """The statement of `check_date` in the format `source` declares: one file, or one per page of a 4006.

    Args:
        source: The dialect's `statement_format`.
        check_date: The statement's check date.
        lines: Its lines, in the order they are written.
        declared: The count and total the file states (default: the lines' own).
        bank: The bank's code (the 4006 `Src`, the camt.053 identifiers).
        node: The gateway's node code (the 4006 `Des`).
        page_size: Details per 4006 page.

    Raises:
        ValueError: A line the format cannot hold.
    """
    if source.kind == "4006":
        return render_4006(check_date, lines, declared=declared, bank=bank, node=node, page_size=page_size)
    if source.kind == "camt053":
        return [render_camt053(check_date, lines, declared=declared, bank=bank)]
    assert source.text is not None
    return [render_text(source.text, check_date, lines, declared=declared)]


def write(
    path: Path,
    source: StatementSource,
    check_date: date,
    lines: Sequence[StatementDetail],
    *,
    declared: Declared | None = None,
    bank: str = "BANK",
    node: str = DEFAULT_NODE,
    page_size: int = MAX_STATEMENT_DETAILS,
) -> list[Path]:
    """Write :func:`render`'s files: `path` itself, or `<stem>-p1<suffix>`, `-p2`, … for a 4006 of several pages.

    Returns:
        The files written, in page order (what `tgw reconcile --statement` takes, once per file).
    """
    files = render(source, check_date, lines, declared=declared, bank=bank, node=node, page_size=page_size)
    if len(files) == 1:
        paths = [path]
    else:
        paths = [path.with_name(f"{path.stem}-p{n}{path.suffix}") for n in range(1, len(files) + 1)]
    for target, data in zip(paths, files, strict=True):
        target.write_bytes(data)
    return paths


def _totals(lines: Sequence[StatementDetail], declared: Declared | None) -> Declared:
    return declared if declared is not None else (len(lines), sum(line.amt_fen for line in lines))


def _morning_after(check_date: date) -> datetime:
    return datetime.combine(check_date + timedelta(days=1), datetime.min.time()).replace(hour=1, minute=30)


# --- 4006 ------------------------------------------------------------------------------------------------------


def render_4006(
    check_date: date,
    lines: Sequence[StatementDetail],
    *,
    declared: Declared | None = None,
    bank: str = "BANK",
    node: str = DEFAULT_NODE,
    page_size: int = MAX_STATEMENT_DETAILS,
) -> list[bytes]:
    """The pages of a 4006 statement, each an unsigned standard `<Message>` from `bank` to `node`.

    Raises:
        ValueError: `page_size` is not between 1 and :data:`~protocols.messages.MAX_STATEMENT_DETAILS`.
    """
    if not 1 <= page_size <= MAX_STATEMENT_DETAILS:
        raise ValueError(f"page_size must be between 1 and {MAX_STATEMENT_DETAILS}, not {page_size}")
    count, total = _totals(lines, declared)
    chunks = [tuple(lines[i : i + page_size]) for i in range(0, len(lines), page_size)] or [()]
    pages = []
    for n, chunk in enumerate(chunks, 1):
        page = Statement(
            check_date=check_date,
            all_num=count,
            all_amt_fen=total,
            child_pack_num=len(chunks),
            cur_pack_no=n,
            details=chunk,
        )
        head = codec.make_head(
            page,
            msg_id=f"{bank[:16]}4006{check_date:%Y%m%d}{n:04d}",
            src=bank,
            des=node,
            work_date=check_date,
            send_time=_morning_after(check_date),
        )
        pages.append(codec.encode(Message(head, page)))
    return pages


# --- text ------------------------------------------------------------------------------------------------------


def _date_text(fmt: FileFormat, day: date) -> str:
    if fmt.date_format == "YYYYMMDD":
        return f"{day:%Y%m%d}"
    separator = fmt.date_format[4]
    return f"{day.year:04d}{separator}{day.month:02d}{separator}{day.day:02d}"


def _amount_text(fmt: FileFormat, fen: int) -> str:
    return format_amount_fen(fen) if fmt.amount_unit == "yuan" else str(fen)


def _zero_filled(text: str, width: int, most_digits: int) -> str:
    """`-125` in 6 → `-00125`: as a batch system writes numbers, at most `most_digits` characters after the sign."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    return sign + digits.rjust(min(width - len(sign), most_digits), "0")


class _TextWriter:
    """Writes the lines of one :class:`FileFormat`."""

    def __init__(self, fmt: FileFormat) -> None:
        self.fmt = fmt
        self.encoding = fmt.encoding.upper()
        self.status: dict[int, str] = {}
        for code, state in fmt.status_codes:
            self.status.setdefault(state, code)
        #: Most characters after the sign a number may have (the reader's amount forms).
        self.most_digits = 19 if fmt.amount_unit == "yuan" else 18

    def row(self, values: Sequence[str], widths: Sequence[int] | None, numeric: Sequence[bool], where: str) -> bytes:
        fmt = self.fmt
        if widths is None:
            assert fmt.delimiter is not None
            for column, value in enumerate(values):
                if fmt.delimiter in value or "\n" in value or "\r" in value:
                    raise ValueError(f"{where}, column {column}: {value!r} holds the delimiter or a line break")
            return fmt.delimiter.join(values).encode(self.encoding)
        out = b""
        for column, (value, width, number) in enumerate(zip(values, widths, numeric, strict=True)):
            text = _zero_filled(value, width, self.most_digits) if number and value else value
            data = text.encode(self.encoding)
            if len(data) > width:
                raise ValueError(f"{where}, column {column}: {value!r} is wider than {width} bytes")
            out += data + b" " * (width - len(data))
        return out.rstrip(b" ")

    def detail(self, n: int, line: StatementDetail) -> bytes:
        fmt = self.fmt
        where = f"line {n} ({line.vt_code} {line.voucher_no})"
        if fmt.column("vt_code") is None and line.vt_code != fmt.vt_code:
            raise ValueError(f"{where}: the file is for VtCode {fmt.vt_code} only")
        code = self.status.get(line.pro_state)
        if code is None:
            raise ValueError(f"{where}: the file has no status code for ProState {line.pro_state}")
        values = {
            "vt_code": line.vt_code,
            "voucher_no": line.voucher_no,
            "serial": line.x_agent_business_no,
            "pay_date": _date_text(fmt, line.x_pay_date),
            "amount": _amount_text(fmt, line.amt_fen),
            "status": code,
            "payee_acct_no": line.payee_acct_no,
            "": "",
        }
        row = [values[name] for name in fmt.columns]
        return self.row(row, fmt.widths, [name == "amount" for name in fmt.columns], where)

    def edge(self, place: str, index: int, check_date: date, totals: Declared) -> bytes:
        """Header or trailer line `index`: the summary, or column names / a title / `END`."""
        fmt, s = self.fmt, self.fmt.summary
        fixed = fmt.widths is not None
        if s is None or s.place != place or s.index != index:
            if place == "trailer":
                return b"END"
            if fixed:
                return f"{fmt.name} {_date_text(fmt, check_date)}".encode(self.encoding)
            assert fmt.delimiter is not None
            return fmt.delimiter.join(name or "-" for name in fmt.columns).encode(self.encoding)
        used = {s.count_column: str(totals[0]), s.amount_column: _amount_text(fmt, totals[1])}
        if s.check_date_column is not None:
            used[s.check_date_column] = _date_text(fmt, check_date)
        size = len(s.widths) if s.widths is not None else max(used) + 1
        values = [used.get(column, "") for column in range(size)]
        if 0 not in used:
            marker = _MARKERS[place, fixed]
            values[0] = marker[: s.widths[0]] if s.widths is not None else marker
        numeric = [column in (s.count_column, s.amount_column) for column in range(size)]
        return self.row(values, s.widths, numeric, f"the {place} summary line")


def render_text(
    fmt: FileFormat, check_date: date, lines: Sequence[StatementDetail], *, declared: Declared | None = None
) -> bytes:
    """A text statement in layout `fmt` (see the module docstring).

    Raises:
        ValueError: A line the layout cannot hold.
    """
    writer = _TextWriter(fmt)
    totals = _totals(lines, declared)
    rows = [writer.edge("header", i, check_date, totals) for i in range(fmt.header_lines)]
    rows += [writer.detail(n, line) for n, line in enumerate(lines, 1)]
    rows += [writer.edge("trailer", i, check_date, totals) for i in range(fmt.trailer_lines)]
    return b"".join(row + b"\n" for row in rows)


# --- camt.053 --------------------------------------------------------------------------------------------------


def _sub(parent: etree._Element, path: str, text: str | None = None, **attributes: str) -> etree._Element:
    """Append the elements of `path` (`a/b/c`) under `parent`; the last gets `text` and `attributes`."""
    element = parent
    for name in path.split("/"):
        element = etree.SubElement(element, f"{{{CAMT053_NAMESPACE}}}{name}")
    element.text = text
    for key, value in attributes.items():
        element.set(key, value)
    return element


def _balance(statement: etree._Element, kind: str, fen: int, day: date) -> None:
    bal = _sub(statement, "Bal")
    _sub(bal, "Tp/CdOrPrtry/Cd", kind)
    _sub(bal, "Amt", format_amount_fen(abs(fen)), Ccy="CNY")
    _sub(bal, "CdtDbtInd", "CRDT" if fen >= 0 else "DBIT")
    _sub(bal, "Dt/Dt", day.isoformat())


def render_camt053(
    check_date: date,
    lines: Sequence[StatementDetail],
    *,
    declared: Declared | None = None,
    bank: str = "BANK",
    account: str | None = None,
    opening_fen: int = 0,
) -> bytes:
    """A camt.053 (version 08) statement of one account (see the module docstring).

    The opening balance is `opening_fen` (a zero-balance account's, by default); the closing balance is the
    opening one minus the booked debits plus the booked credits, as the reader checks.

    Raises:
        ValueError: A line with a ProState other than 0, 1 or 2, or whose amount's sign does not fit it.
    """
    count, total = _totals(lines, declared)
    account = account or f"{bank}-TREASURY"
    created = f"{_morning_after(check_date).isoformat()}+08:00"
    root = etree.Element(f"{{{CAMT053_NAMESPACE}}}Document", nsmap={None: CAMT053_NAMESPACE})  # type: ignore[dict-item]
    message = _sub(root, "BkToCstmrStmt")
    header = _sub(message, "GrpHdr")
    _sub(header, "MsgId", f"{bank}-STMT-{check_date:%Y%m%d}")
    _sub(header, "CreDtTm", created)
    statement = _sub(message, "Stmt")
    _sub(statement, "Id", f"{account}-{check_date:%Y%m%d}")
    _sub(statement, "CreDtTm", created)
    acct = _sub(statement, "Acct")
    _sub(acct, "Id/Othr/Id", account)
    _sub(acct, "Ccy", "CNY")
    booked = sum(line.amt_fen for line in lines if line.pro_state in (0, 1))
    _balance(statement, "OPBD", opening_fen, check_date)
    _balance(statement, "CLBD", opening_fen - booked, check_date)
    summary = _sub(statement, "TxsSummry/TtlNtries")
    _sub(summary, "NbOfNtries", str(count))
    net = _sub(summary, "TtlNetNtry")
    _sub(net, "Amt", format_amount_fen(abs(total)))
    _sub(net, "CdtDbtInd", "DBIT" if total >= 0 else "CRDT")
    for n, line in enumerate(lines, 1):
        if line.pro_state not in (0, 1, 2) or (line.amt_fen < 0) != (line.pro_state == 1):
            raise ValueError(
                f"line {n} ({line.vt_code} {line.voucher_no}): ProState {line.pro_state} "
                f"with {line.amt_fen} fen has no camt.053 entry"
            )
        debit = line.amt_fen >= 0
        entry = _sub(statement, "Ntry")
        _sub(entry, "Amt", format_amount_fen(abs(line.amt_fen)), Ccy="CNY")
        _sub(entry, "CdtDbtInd", "DBIT" if debit else "CRDT")
        _sub(entry, "Sts/Cd", "INFO" if line.pro_state == 2 else "BOOK")
        _sub(entry, "BookgDt/Dt", line.x_pay_date.isoformat())
        _sub(entry, "AcctSvcrRef", line.x_agent_business_no)
        _sub(entry, "BkTxCd/Prtry/Cd", line.vt_code)
        details = _sub(entry, "NtryDtls/TxDtls")
        _sub(details, "Refs/EndToEndId", line.voucher_no or "NOTPROVIDED")
        _sub(details, f"RltdPties/{'CdtrAcct' if debit else 'DbtrAcct'}/Id/Othr/Id", line.payee_acct_no)
    etree.indent(root)
    return serialize(root) + b"\n"


__all__ = ["CAMT053_NAMESPACE", "Declared", "render", "render_4006", "render_camt053", "render_text", "write"]
