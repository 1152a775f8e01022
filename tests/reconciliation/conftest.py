"""Shared helpers of the reconciliation tests: statements and ledgers built from 4006 detail lines."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from protocols.messages import Statement, StatementDetail
from reconciliation.inject import Injected
from reconciliation.model import LedgerEntry, Status, Totals, match_key
from reconciliation.readers import from_messages
from reconciliation.readers.base import StatementStream

DATA = Path(__file__).parent / "data"
CHECK_DATE = date(2026, 11, 23)
BANK = "ICBC"


def make_lines(n: int, rng: random.Random, check_date: date = CHECK_DATE) -> list[StatementDetail]:
    """`n` plausible statement lines (payments, returns, failures), distinct keys and serials."""
    lines = []
    serials = rng.sample(range(10**8), n)
    for i in range(n):
        state = rng.choice((0, 0, 0, 0, 1, 2))
        vt_code = "2252" if state == 1 else rng.choice(("5201", "8202"))
        amount_fen = rng.randrange(1, 10**9)
        lines.append(
            StatementDetail(
                vt_code=vt_code,
                voucher_no=f"{vt_code}450100{i:08d}",
                x_agent_business_no=f"{BANK}{check_date:%Y%m%d}{serials[i]:08d}",
                x_pay_date=check_date,
                amt_fen=-amount_fen if state == 1 else amount_fen,
                pro_state=state,
                payee_acct_no=f"6222{rng.randrange(10**15):015d}",
            )
        )
    return lines


def entry_of(line: StatementDetail, **changes: object) -> LedgerEntry:
    """The ledger entry a line is true to (with `changes`)."""
    entry = LedgerEntry(
        "450100",
        2026,
        line.vt_code,
        line.voucher_no,
        line.x_agent_business_no,
        line.amt_fen,
        Status(line.pro_state),
        line.payee_acct_no,
        line.x_pay_date,
    )
    return entry._replace(**changes)  # type: ignore[arg-type]


def ledger_of(lines: Iterable[StatementDetail]) -> list[LedgerEntry]:
    """The ledger the lines are true to, in key order."""
    return sorted((entry_of(line) for line in lines), key=lambda e: match_key(e.vt_code, e.voucher_no))


def statement_of(
    lines: Sequence[StatementDetail],
    injected: Injected | None = None,
    *,
    check_date: date = CHECK_DATE,
    page_size: int = 5000,
    declared: Totals | None = None,
) -> StatementStream:
    """A paged 4006 statement of `lines`, declaring their totals (spoilt as `injected` says, or `declared`)."""
    if declared is None:
        declared = Totals(len(lines), sum(line.amt_fen for line in lines))
        if injected is not None:
            declared = injected.declared(lines)
    declared_num, declared_fen = declared.count, declared.amount_fen
    chunks = [lines[i : i + page_size] for i in range(0, len(lines), page_size)] or [[]]
    pages = [
        Statement(
            check_date=check_date,
            all_num=declared_num,
            all_amt_fen=declared_fen,
            child_pack_num=len(chunks),
            cur_pack_no=n,
            details=tuple(chunk),
        )
        for n, chunk in enumerate(chunks, 1)
    ]
    return from_messages(pages)
