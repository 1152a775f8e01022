"""Reports of a reconciliation run: HTML for the person who reads it in the morning, CSV and JSON for other
systems, and the 2507 result message for the bank.

The HTML page is one self-contained document (styles inline, no script, no external resource), every value
escaped, labels in Chinese with English beside them, amounts in yuan with thousands separators. CSV and JSON
carry every field of every break, amounts in fen (JSON) or as yuan with two decimals (CSV), dates in ISO 8601,
and read back into the same values (:func:`breaks_from_csv`, :func:`from_json`), which the tests check.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import date
from html import escape
from typing import Any, Final

from protocols.messages import MAX_RECONCILE_DETAILS, ReconcileDetail, ReconcileResult
from protocols.money import format_amount_fen, parse_amount_fen
from reconciliation.matcher import CarryOver
from reconciliation.model import Break, BreakClass, RunResult, Side, Status, Totals

#: Columns of the CSV, in order.
CSV_COLUMNS: Final = (
    "check_date",
    "first_check_date",
    "age_days",
    "class",
    "class_zh",
    "vt_code",
    "voucher_no",
    "serial",
    "scope",
    "ledger_serial",
    "ledger_amount",
    "ledger_status",
    "ledger_payee_acct_no",
    "ledger_pay_date",
    "ledger_ref",
    "bank_serial",
    "bank_amount",
    "bank_status",
    "bank_payee_acct_no",
    "bank_pay_date",
    "bank_ref",
    "declared_count",
    "declared_amount",
    "computed_count",
    "computed_amount",
    "detail",
)
_STATUS_NAMES: Final = {s: s.name.lower() for s in Status}
_STATUS_BY_NAME: Final = {name: s for s, name in _STATUS_NAMES.items()}


def format_yuan(amount_fen: int) -> str:
    """Fen as yuan with thousands separators: 123456789 → `1,234,567.89` (no float involved)."""
    sign = "-" if amount_fen < 0 else ""
    whole, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{whole:,}.{fen:02d}"


# --- 2507 -------------------------------------------------------------------------------------------------------


def reconcile_result(result: RunResult) -> ReconcileResult:
    """The 2507 message for the bank: the whole result, and one detail per voucher that differs.

    `XCheckResult` is 0 when there is no break and 1 otherwise; `XDiffNum` counts the breaks. Details list
    only the vouchers that differ (every other detail of the bank's statement matched), each with the Chinese
    names of its breaks' classes as `XCheckReason`; summary mismatches and lines without a voucher number
    have no detail. At most :data:`~protocols.messages.MAX_RECONCILE_DETAILS` details are listed, in key
    order; `XDiffNum` still counts them all.
    """
    reasons: dict[tuple[str, str], list[str]] = {}
    for b in result.breaks:
        if b.voucher_no:
            found = reasons.setdefault((b.vt_code, b.voucher_no), [])
            if b.break_class.zh not in found:
                found.append(b.break_class.zh)
    details = tuple(
        ReconcileDetail(vt_code=vt_code, voucher_no=voucher_no, x_check_result=1, x_check_reason=";".join(why))
        for (vt_code, voucher_no), why in sorted(reasons.items())[:MAX_RECONCILE_DETAILS]
    )
    return ReconcileResult(
        check_date=result.check_date,
        x_check_result=0 if result.balanced else 1,
        x_diff_num=len(result.breaks),
        details=details,
    )


# --- CSV --------------------------------------------------------------------------------------------------------


def to_csv(breaks: Iterable[Break]) -> str:
    """The breaks as CSV text (a header row, then one row per break; see :data:`CSV_COLUMNS`)."""
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: CRLF between rows, and any field holding CR or LF quoted
    writer.writerow(CSV_COLUMNS)
    for b in breaks:
        writer.writerow(
            [
                b.check_date.isoformat(),
                b.first_check_date.isoformat() if b.first_check_date else "",
                b.age_days,
                b.break_class.value,
                b.break_class.zh,
                b.vt_code,
                b.voucher_no,
                b.serial,
                b.scope,
                *_side_cells(b.ledger),
                *_side_cells(b.bank),
                *_totals_cells(b.declared),
                *_totals_cells(b.computed),
                b.detail,
            ]
        )
    return out.getvalue()


def breaks_from_csv(text: str) -> list[Break]:
    """Breaks read back from :func:`to_csv` text.

    Raises:
        ValueError: the header is not :data:`CSV_COLUMNS`, or a value cannot be read.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise ValueError("not a reconciliation breaks CSV: unexpected header")
    found = []
    for row in reader:
        if len(row) != len(CSV_COLUMNS):
            raise ValueError(f"a row of {len(row)} cells, not {len(CSV_COLUMNS)}")
        v = dict(zip(CSV_COLUMNS, row, strict=True))
        found.append(
            Break(
                break_class=BreakClass(v["class"]),
                check_date=date.fromisoformat(v["check_date"]),
                vt_code=v["vt_code"],
                voucher_no=v["voucher_no"],
                serial=v["serial"],
                ledger=_side_from_cells(v, "ledger"),
                bank=_side_from_cells(v, "bank"),
                detail=v["detail"],
                scope=v["scope"],
                declared=_totals_from_cells(v, "declared"),
                computed=_totals_from_cells(v, "computed"),
                first_check_date=date.fromisoformat(v["first_check_date"]) if v["first_check_date"] else None,
                age_days=int(v["age_days"]),
            )
        )
    return found


def _side_cells(side: Side | None) -> list[str]:
    if side is None:
        return [""] * 6
    return [
        side.serial,
        format_amount_fen(side.amount_fen),
        _STATUS_NAMES[side.status],
        side.payee_acct_no,
        side.pay_date.isoformat(),
        side.ref,
    ]


def _side_from_cells(v: dict[str, str], prefix: str) -> Side | None:
    if not v[f"{prefix}_status"]:
        return None
    return Side(
        serial=v[f"{prefix}_serial"],
        amount_fen=parse_amount_fen(v[f"{prefix}_amount"]),
        status=_STATUS_BY_NAME[v[f"{prefix}_status"]],
        payee_acct_no=v[f"{prefix}_payee_acct_no"],
        pay_date=date.fromisoformat(v[f"{prefix}_pay_date"]),
        ref=v[f"{prefix}_ref"],
    )


def _totals_cells(totals: Totals | None) -> list[str]:
    return ["", ""] if totals is None else [str(totals.count), format_amount_fen(totals.amount_fen)]


def _totals_from_cells(v: dict[str, str], prefix: str) -> Totals | None:
    if not v[f"{prefix}_count"]:
        return None
    return Totals(int(v[f"{prefix}_count"]), parse_amount_fen(v[f"{prefix}_amount"]))


# --- JSON -------------------------------------------------------------------------------------------------------


def to_json(result: RunResult, carry: CarryOver | None = None, *, indent: int | None = 2) -> str:
    """The run (and, if given, the open and closed breaks after it) as JSON; amounts in integer fen."""
    document: dict[str, Any] = {
        "bank": result.bank,
        "check_date": result.check_date.isoformat(),
        "source": result.source,
        "balanced": result.balanced,
        "ledger": _totals_json(result.ledger),
        "statement": _totals_json(result.statement),
        "declared": None if result.declared is None else _totals_json(result.declared),
        "matched": result.matched,
        "matched_by_serial": result.matched_by_serial,
        "carried_in": _totals_json(result.carried_in),
        "counts": {cls.value: n for cls, n in result.counts().items()},
        "breaks": [_break_json(b) for b in result.breaks],
        "cleared": [_break_json(b) for b in result.cleared],
    }
    if carry is not None:
        document["open"] = [_break_json(b) for b in carry.open]
        document["closed"] = [_break_json(b) for b in carry.closed]
    return json.dumps(document, ensure_ascii=False, indent=indent)


def from_json(text: str) -> tuple[RunResult, CarryOver | None]:
    """A run (and its carry-over, if the document has one) read back from :func:`to_json` text.

    Raises:
        ValueError: not such a document (not JSON, or a field missing or of the wrong type).
    """
    try:
        d = json.loads(text)
        result = RunResult(
            bank=d["bank"],
            check_date=date.fromisoformat(d["check_date"]),
            source=d["source"],
            ledger=_totals_from_json(d["ledger"]),
            statement=_totals_from_json(d["statement"]),
            declared=None if d["declared"] is None else _totals_from_json(d["declared"]),
            matched=d["matched"],
            matched_by_serial=d["matched_by_serial"],
            breaks=tuple(_break_from_json(b) for b in d["breaks"]),
            cleared=tuple(_break_from_json(b) for b in d["cleared"]),
            carried_in=_totals_from_json(d["carried_in"]),
        )
        carry = None
        if "open" in d:
            carry = CarryOver(
                open=tuple(_break_from_json(b) for b in d["open"]),
                closed=tuple(_break_from_json(b) for b in d["closed"]),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a reconciliation result document: {exc!r}") from None
    return result, carry


def _totals_json(totals: Totals) -> dict[str, int]:
    return {"count": totals.count, "amount_fen": totals.amount_fen}


def _totals_from_json(d: dict[str, int]) -> Totals:
    return Totals(d["count"], d["amount_fen"])


def _side_json(side: Side | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "serial": side.serial,
        "amount_fen": side.amount_fen,
        "status": _STATUS_NAMES[side.status],
        "payee_acct_no": side.payee_acct_no,
        "pay_date": side.pay_date.isoformat(),
        "ref": side.ref,
    }


def _side_from_json(d: dict[str, Any] | None) -> Side | None:
    if d is None:
        return None
    return Side(
        d["serial"],
        d["amount_fen"],
        _STATUS_BY_NAME[d["status"]],
        d["payee_acct_no"],
        date.fromisoformat(d["pay_date"]),
        d["ref"],
    )


def _break_json(b: Break) -> dict[str, Any]:
    return {
        "class": b.break_class.value,
        "class_zh": b.break_class.zh,
        "check_date": b.check_date.isoformat(),
        "first_check_date": b.first_check_date.isoformat() if b.first_check_date else None,
        "age_days": b.age_days,
        "key": b.key,
        "vt_code": b.vt_code,
        "voucher_no": b.voucher_no,
        "serial": b.serial,
        "scope": b.scope,
        "ledger": _side_json(b.ledger),
        "bank": _side_json(b.bank),
        "declared": None if b.declared is None else _totals_json(b.declared),
        "computed": None if b.computed is None else _totals_json(b.computed),
        "detail": b.detail,
    }


def _break_from_json(d: dict[str, Any]) -> Break:
    return Break(
        break_class=BreakClass(d["class"]),
        check_date=date.fromisoformat(d["check_date"]),
        vt_code=d["vt_code"],
        voucher_no=d["voucher_no"],
        serial=d["serial"],
        ledger=_side_from_json(d["ledger"]),
        bank=_side_from_json(d["bank"]),
        detail=d["detail"],
        scope=d["scope"],
        declared=None if d["declared"] is None else _totals_from_json(d["declared"]),
        computed=None if d["computed"] is None else _totals_from_json(d["computed"]),
        first_check_date=date.fromisoformat(d["first_check_date"]) if d["first_check_date"] else None,
        age_days=d["age_days"],
    )


# --- HTML -------------------------------------------------------------------------------------------------------

_STYLE: Final = """
body { font-family: "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.2em; font-weight: bold; padding: 0.4em 0.8em; display: inline-block; }
.ok { background: #e3f5e1; color: #1b5e20; } .bad { background: #fde7e7; color: #8e1b1b; }
.note { color: #666; font-size: 0.9em; }
"""


def to_html(
    result: RunResult,
    *,
    open_breaks: Sequence[Break] = (),
    oldest: int = 20,
    max_rows: int = 1000,
) -> str:
    """The morning report of a run, as one self-contained HTML page.

    Args:
        result: The run.
        open_breaks: Every break open after the run (:attr:`CarryOver.open`), for the oldest-first table.
        oldest: How many of the oldest open breaks to show.
        max_rows: Most breaks of this run listed in full (the CSV has them all).
    """
    e = _e
    verdict = (
        '<p class="verdict ok">平 Balanced: no break</p>'
        if result.balanced
        else f'<p class="verdict bad">不平 Not balanced: {len(result.breaks):,} breaks 差异</p>'
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>对账报告 Reconciliation {e(result.bank)} {result.check_date.isoformat()}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>对账报告 Reconciliation report</h1>",
        verdict,
        "<table>",
        f"<tr><th>银行 Bank</th><td>{e(result.bank)}</td></tr>",
        f"<tr><th>对账日期 Check date</th><td>{result.check_date.isoformat()}</td></tr>",
        f"<tr><th>对账单 Statement</th><td>{e(result.source)}</td></tr>",
        f"<tr><th>相符 Matched</th><td class=num>{result.matched:,}"
        + (f" (按流水号 by serial: {result.matched_by_serial:,})" if result.matched_by_serial else "")
        + "</td></tr>",
        "</table>",
        "<h2>汇总 Totals</h2>",
        _totals_table(result),
        "<h2>差异分类 Breaks by class</h2>",
        _class_table(result),
    ]
    if open_breaks:
        ranked = sorted(open_breaks, key=lambda b: (-b.age_days, b.since, b.key))[:oldest]
        parts += [
            f"<h2>最久未决差异 Oldest open breaks (of {len(open_breaks):,} open)</h2>",
            _breaks_table(ranked, with_age=True),
        ]
    parts.append("<h2>本次差异明细 Breaks found in this run</h2>")
    if result.breaks:
        parts.append(_breaks_table(result.breaks[:max_rows], with_age=False))
        if len(result.breaks) > max_rows:
            parts.append(
                f'<p class="note">前 {max_rows:,} 条 The first {max_rows:,} of {len(result.breaks):,}; '
                "the CSV lists them all.</p>"
            )
    else:
        parts.append('<p class="note">无 None.</p>')
    if result.cleared:
        parts += [
            "<h2>自动关闭 Closed automatically (cleared by this statement)</h2>",
            _breaks_table(result.cleared, with_age=False),
        ]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _totals_table(result: RunResult) -> str:
    rows = [
        ("台账 Ledger", result.ledger),
        ("对账单明细 Statement details", result.statement),
    ]
    if result.declared is not None:
        rows.append(("对账单声明 Statement declares (AllNum / AllAmt)", result.declared))
    rows.append(("差额 Difference (ledger − statement)", result.ledger - result.statement))
    if result.carried_in.count:
        rows.append(("其中跨日已清 Of which cleared earlier timing breaks", result.carried_in))
    body = "".join(
        f"<tr><th>{label}</th><td class=num>{t.count:,}</td><td class=num>{format_yuan(t.amount_fen)}</td></tr>"
        for label, t in rows
    )
    return f"<table><tr><th></th><th>笔数 Count</th><th>金额（元）Amount (yuan)</th></tr>{body}</table>"


def _class_table(result: RunResult) -> str:
    counts = result.counts()
    amounts = result.amounts_fen()
    body = "".join(
        f"<tr><td>{_e(cls.label)}</td><td class=num>{counts[cls]:,}</td>"
        f"<td class=num>{format_yuan(amounts[cls])}</td></tr>"
        for cls in BreakClass
    )
    return (
        f"<table><tr><th>类别 Class</th><th>笔数 Count</th><th>差额（元）Ledger − bank (yuan)</th></tr>{body}</table>"
    )


def _breaks_table(breaks: Sequence[Break], *, with_age: bool) -> str:
    head = (
        ("<th>天数 Age (days)</th><th>发现日 Since</th>" if with_age else "")
        + "<th>类别 Class</th><th>凭证 Voucher</th><th>流水号 Serial</th>"
        "<th>台账金额 Ledger amount</th><th>银行金额 Bank amount</th>"
        "<th>台账状态 Ledger status</th><th>银行状态 Bank status</th>"
        "<th>台账日期 Ledger date</th><th>银行日期 Bank date</th><th>说明 Detail</th>"
    )
    rows = []
    for b in breaks:
        ledger, bank = b.ledger, b.bank
        rows.append(
            "<tr>"
            + (f"<td class=num>{b.age_days}</td><td>{b.since.isoformat()}</td>" if with_age else "")
            + f"<td>{_e(b.break_class.label)}</td><td>{_e(b.key)}</td><td>{_e(b.serial)}</td>"
            f"<td class=num>{format_yuan(ledger.amount_fen) if ledger else ''}</td>"
            f"<td class=num>{format_yuan(bank.amount_fen) if bank else ''}</td>"
            f"<td>{_e(ledger.status.label) if ledger else ''}</td><td>{_e(bank.status.label) if bank else ''}</td>"
            f"<td>{ledger.pay_date.isoformat() if ledger else ''}</td>"
            f"<td>{bank.pay_date.isoformat() if bank else ''}</td>"
            f"<td>{_e(b.detail)}</td></tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"
