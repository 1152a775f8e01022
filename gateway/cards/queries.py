"""Read side of the card service: spending lists, one record with its events, deadlines, counts.

Shared by the HTTP API, the CLI (`tgw cards list|due`), the deadline watch and the demo's summary, so that they
all show the same thing. Card numbers appear only masked (`card`) and as a short reference to the card's keyed
hash (`card_ref`), which tells an agency's cards apart without revealing them. Plain JSON-friendly dictionaries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import RowMapping

from gateway.cards import plan
from gateway.cards.machine import OPEN, State
from gateway.store.tables import card_events, card_spending, vouchers
from protocols.messages import VoucherKey
from protocols.money import format_amount_fen

#: `state` filter values beyond the states themselves.
OPEN_FILTER: Final = "open"  # not reimbursed yet: RECEIVED, APPROVED, REPAYING (the default)
ALL_FILTER: Final = "all"
#: Most records one page returns.
PAGE_MAX: Final = 1000
#: Most records a deadline report lists per kind (the counts are always complete).
DUE_LIST_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class CardFilter:
    """Filters of the spending list (all optional)."""

    agency: str | None = None
    state: str = OPEN_FILTER
    bank: str | None = None
    limit: int = 100
    offset: int = 0


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def _states(state: str) -> list[str]:
    if state == OPEN_FILTER:
        return sorted(OPEN)
    if state == ALL_FILTER:
        return [s.value for s in State]
    if state not in State.__members__:
        raise ValueError(f"unknown state {state!r}: one of {', '.join(State)}, {OPEN_FILTER} or {ALL_FILTER}")
    return [state]


def _select() -> Any:
    v = vouchers.c
    return select(card_spending, v.adm_div_code, v.st_year, v.vt_code, v.voucher_no).outerjoin(
        vouchers, vouchers.c.id == card_spending.c.voucher_id
    )


def summary(row: RowMapping, today: date | None = None, lead_days: int = 5) -> dict[str, Any]:
    """One record as a list entry; with `today`, how many days are left and whether it is due or overdue."""
    key = (
        str(VoucherKey(row["adm_div_code"], row["st_year"], row["vt_code"], row["voucher_no"]))
        if row["voucher_no"] is not None
        else None
    )
    entry: dict[str, Any] = {
        "ref": f"{row['bank_code']}:{row['spend_id']}",
        "bank": row["bank_code"],
        "spend_id": row["spend_id"],
        "card": row["card_masked"],
        "card_ref": row["card_hash"][: plan.CARD_REF_HEX],
        "card_holder": row["card_holder"],
        "agency_code": row["agency_code"],
        "merchant_name": row["merchant_name"],
        "amount_fen": row["amount_fen"],
        "amount": format_amount_fen(row["amount_fen"]),
        "txn_date": _iso(row["txn_date"]),
        "txn_time": row["txn_time"],
        "limit_date": _iso(row["limit_date"]),
        "state": row["state"],
        "reason": row["reason"],
        "voucher": key,
        "repay_attempts": row["repay_attempts"],
        "repay_failures": row["repay_failures"],
        "quota_held_fen": row["quota_held_fen"],
        "reviewed_by": row["reviewed_by"],
        "received_at": _iso(row["received_at"]),
        "reviewed_at": _iso(row["reviewed_at"]),
        "repaid_at": _iso(row["repaid_at"]),
    }
    if today is not None:
        entry["days_left"] = (row["limit_date"] - today).days
        entry["deadline"] = plan.deadline_status(row["limit_date"], today, lead_days) if row["state"] in OPEN else None
    return entry


def list_spending(conn: Connection, f: CardFilter, today: date | None = None, lead_days: int = 5) -> dict[str, Any]:
    """A page of spending records, soonest deadline first, with the total count and amount of the filter.

    Raises:
        ValueError: an unknown state, or a page size outside 1..:data:`PAGE_MAX`.
    """
    if not 1 <= f.limit <= PAGE_MAX or f.offset < 0:
        raise ValueError(f"limit must be within 1..{PAGE_MAX} and offset not negative")
    c = card_spending.c
    where: list[Any] = [c.state.in_(_states(f.state))]
    if f.agency:
        where.append(c.agency_code == f.agency)
    if f.bank:
        where.append(c.bank_code == f.bank)
    total, total_fen = conn.execute(
        select(func.count(), func.coalesce(func.sum(c.amount_fen), 0)).select_from(card_spending).where(*where)
    ).one()
    rows = conn.execute(_select().where(*where).order_by(c.limit_date, c.id).limit(f.limit).offset(f.offset)).mappings()
    return {
        "total": int(total),
        "total_fen": int(total_fen),
        "limit": f.limit,
        "offset": f.offset,
        "records": [summary(r, today, lead_days) for r in rows],
    }


def get_spending(conn: Connection, bank: str, spend_id: str, today: date | None = None) -> dict[str, Any] | None:
    """One record with its events (received, reviewed, each repayment and its result), or None."""
    row = (
        conn.execute(_select().where(card_spending.c.bank_code == bank, card_spending.c.spend_id == spend_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    events = [
        {
            "at": _iso(e["at"]),
            "event": e["event"],
            "from": e["from_state"],
            "to": e["to_state"],
            "actor": e["actor"],
            "detail": json.loads(e["detail"]),
            "msg_id": e["msg_id"],
        }
        for e in conn.execute(
            select(card_events).where(card_events.c.spending_id == row["id"]).order_by(card_events.c.id)
        ).mappings()
    ]
    return {**summary(row, today), "events": events}


def due_report(conn: Connection, today: date, lead_days: int, agency: str | None = None) -> dict[str, Any]:
    """Records not reimbursed yet whose `LimitDate` has passed (`overdue`) or is within `lead_days` (`due`).

    The lists are capped at :data:`DUE_LIST_MAX` each, soonest deadline first; `counts` are complete.
    """
    c = card_spending.c
    base = [c.state.in_(sorted(OPEN)), c.limit_date <= today + timedelta(days=lead_days)]
    if agency:
        base.append(c.agency_code == agency)
    overdue = [*base, c.limit_date < today]
    due = [*base, c.limit_date >= today]

    def page(where: list[Any]) -> list[dict[str, Any]]:
        rows = conn.execute(_select().where(*where).order_by(c.limit_date, c.id).limit(DUE_LIST_MAX)).mappings()
        return [summary(r, today, lead_days) for r in rows]

    numbers = due_report_counts(conn, today, lead_days, agency)
    return {
        "today": today.isoformat(),
        "lead_days": lead_days,
        "agency": agency,
        "counts": numbers,
        "overdue": page(overdue),
        "due": page(due),
    }


def counts(conn: Connection, today: date, lead_days: int) -> dict[str, int]:
    """Metric-ready numbers: records and fen per state, due and overdue ones, repayment failures so far.

    Keys: `records_<STATE>`, `fen_<STATE>` for every state, `due`, `due_fen`, `overdue`, `overdue_fen`,
    `repay_failures` (failed repayment details, all time), `received` (records ever reported).
    """
    c = card_spending.c
    out: dict[str, int] = {}
    for state in State:
        out[f"records_{state.value}"] = 0
        out[f"fen_{state.value}"] = 0
    for state, n, fen in conn.execute(
        select(c.state, func.count(), func.coalesce(func.sum(c.amount_fen), 0)).group_by(c.state)
    ):
        out[f"records_{state}"] = int(n)
        out[f"fen_{state}"] = int(fen)
    out["received"] = sum(out[f"records_{s.value}"] for s in State)
    out["repay_failures"] = int(conn.execute(select(func.coalesce(func.sum(c.repay_failures), 0))).scalar_one())
    out.update(due_report_counts(conn, today, lead_days))
    return out


def due_report_counts(conn: Connection, today: date, lead_days: int, agency: str | None = None) -> dict[str, int]:
    """The counts of :func:`due_report`: `overdue`, `overdue_fen`, `due`, `due_fen`."""
    c = card_spending.c
    horizon = today + timedelta(days=lead_days)
    out = {}
    for name, condition in (("overdue", c.limit_date < today), ("due", c.limit_date >= today)):
        where = [c.state.in_(sorted(OPEN)), c.limit_date <= horizon, condition]
        if agency:
            where.append(c.agency_code == agency)
        n, fen = conn.execute(
            select(func.count(), func.coalesce(func.sum(c.amount_fen), 0)).select_from(card_spending).where(*where)
        ).one()
        out[name], out[f"{name}_fen"] = int(n), int(fen)
    return out


def open_deadlines(conn: Connection, today: date, lead_days: int) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, `due`/`overdue`, summary) of every open record within the lead time, soonest first (the watch)."""
    c = card_spending.c
    rows = conn.execute(
        _select()
        .where(c.state.in_(sorted(OPEN)), c.limit_date <= today + timedelta(days=lead_days))
        .order_by(c.limit_date, c.id)
        .limit(10 * DUE_LIST_MAX)
    ).mappings()
    out = []
    for row in rows:
        status = plan.deadline_status(row["limit_date"], today, lead_days)
        if status is not None:
            out.append((int(row["id"]), status, summary(row, today, lead_days)))
    return out
