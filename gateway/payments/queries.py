"""Read side of the payment service: voucher lists, one voucher with its timeline and messages, counts.

Shared by the HTTP API, the CLI (`tgw voucher`, `tgw vouchers`) and the demo's summary, so that all of them
show the same thing. Plain dictionaries with JSON-friendly values: amounts in fen (`*_fen`) and as yuan text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, RowMapping

from gateway.cards.plan import CARD_REPAYMENT, mask_card, masked_voucher_document
from gateway.store.tables import archive, recon_breaks, recon_matches, recon_runs, voucher_history, vouchers
from protocols.messages import VoucherKey
from protocols.money import format_amount_fen


@dataclass(frozen=True, slots=True)
class VoucherFilter:
    """Filters of the voucher list (all optional)."""

    state: str | None = None
    bank: str | None = None
    agency: str | None = None
    voucher_no: str | None = None
    payee: str | None = None
    min_fen: int | None = None
    max_fen: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    limit: int = 50
    offset: int = 0


def _iso(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def summary(row: RowMapping) -> dict[str, Any]:
    """One voucher as a list entry."""
    key = VoucherKey(row["adm_div_code"], row["st_year"], row["vt_code"], row["voucher_no"])
    return {
        "key": str(key),
        "vt_code": row["vt_code"],
        "business_type_code": row["business_type_code"],
        "voucher_no": row["voucher_no"],
        "bank": row["bank_code"],
        "agency_code": row["agency_code"],
        "agency_name": row["agency_name"],
        # official cards (issue 5): a card repayment's payee is the card, shown masked
        "payee_acct_no": mask_card(row["payee_acct_no"])
        if row["business_type_code"] == CARD_REPAYMENT
        else row["payee_acct_no"],
        "payee_acct_name": row["payee_acct_name"],
        "amount_fen": row["amount_fen"],
        "amount": format_amount_fen(row["amount_fen"]),
        "state": row["state"],
        "x_agent_business_no": row["x_agent_business_no"],
        "x_pay_date": _iso(row["x_pay_date"]),
        "returned_fen": row["returned_fen"],
        "reason": row["reason"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def list_vouchers(conn: Connection, f: VoucherFilter) -> dict[str, Any]:
    """A page of vouchers, newest first, with the total count of the filter."""
    where = []
    c = vouchers.c
    if f.state:
        where.append(c.state == f.state)
    if f.bank:
        where.append(c.bank_code == f.bank)
    if f.agency:
        where.append(c.agency_code == f.agency)
    if f.voucher_no:
        where.append(c.voucher_no.contains(f.voucher_no))
    if f.payee:
        where.append(c.payee_acct_name.contains(f.payee) | c.payee_acct_no.contains(f.payee))
    if f.min_fen is not None:
        where.append(c.amount_fen >= f.min_fen)
    if f.max_fen is not None:
        where.append(c.amount_fen <= f.max_fen)
    if f.date_from is not None:
        where.append(c.created_at >= datetime.combine(f.date_from, datetime.min.time()))
    if f.date_to is not None:
        where.append(c.created_at < datetime.combine(f.date_to, datetime.max.time()))
    total = conn.execute(select(func.count()).select_from(vouchers).where(*where)).scalar_one()
    rows = (
        conn.execute(
            select(vouchers).where(*where).order_by(c.id.desc()).limit(max(1, min(f.limit, 1000))).offset(f.offset)
        )
        .mappings()
        .all()
    )
    return {"total": total, "limit": f.limit, "offset": f.offset, "vouchers": [summary(r) for r in rows]}


def get_voucher(conn: Connection, key: VoucherKey) -> dict[str, Any] | None:
    """One voucher: its summary, the voucher itself, the timeline (history) and the messages exchanged."""
    c = vouchers.c
    row = (
        conn.execute(
            select(vouchers).where(
                c.adm_div_code == key.adm_div_code,
                c.st_year == key.st_year,
                c.vt_code == key.vt_code,
                c.voucher_no == key.voucher_no,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    timeline = [
        {
            "seq": h["seq"],
            "at": _iso(h["at"]),
            "event": h["event"],
            "from": h["from_state"],
            "to": h["to_state"],
            "actor": h["actor"],
            "detail": json.loads(h["detail"]),
            "msg_id": h["msg_id"],
            "hash": h["hash"],
        }
        for h in conn.execute(
            select(voucher_history).where(voucher_history.c.voucher_id == row["id"]).order_by(voucher_history.c.seq)
        ).mappings()
    ]
    messages = [
        {
            "id": a["id"],
            "at": _iso(a["at"]),
            "direction": a["direction"],
            "msg_id": a["msg_id"],
            "msg_no": a["msg_no"],
            "verified": a["verified"],
            "verify_detail": a["verify_detail"],
            "result": a["result_code"],
            "bytes": len(a["raw"]),
        }
        for a in conn.execute(
            select(archive).where(archive.c.voucher_id == row["id"]).order_by(archive.c.id)
        ).mappings()
    ]
    return {
        **summary(row),
        "voucher": masked_voucher_document(json.loads(row["document"])),  # card numbers masked (issue 5)
        "msg_id": row["msg_id"],
        "deadline_at": _iso(row["deadline_at"]),
        "timeline": timeline,
        "messages": messages,
        "reconciliation": reconciliation_of(conn, row),
    }


def reconciliation_of(conn: Connection, row: RowMapping) -> dict[str, Any]:
    """Where the nightly reconciliation left a voucher: `RECONCILED` by a run, in a break, or `NOT_RECONCILED`.

    A matched voucher is linked to the run that matched it (`recon_matches`), not given a state of its own
    (docs/reconciliation.md); this is the one place that turns the link into what people ask: "is it reconciled?".
    Breaks name the voucher by bank, `VtCode` and `VoucherNo` (a statement does not carry the full key).
    """
    b = recon_breaks.c
    breaks = [
        {
            "id": r.id,
            "run_id": r.run_id,
            "check_date": _iso(r.check_date),
            "class": r.break_class,
            "state": r.state,
            "resolution_state": r.resolution_state,
        }
        for r in conn.execute(
            select(b.id, b.run_id, b.check_date, b.break_class, b.state, b.resolution_state)
            .where(b.bank_code == row["bank_code"], b.vt_code == row["vt_code"], b.voucher_no == row["voucher_no"])
            .order_by(b.id)
        )
    ]
    run = conn.execute(
        select(recon_runs.c.id, recon_runs.c.check_date)
        .select_from(recon_matches.join(recon_runs, recon_matches.c.run_id == recon_runs.c.id))
        .where(recon_matches.c.voucher_id == row["id"])
        .order_by(recon_runs.c.check_date.desc())
        .limit(1)
    ).first()
    if any(x["state"] == "OPEN" for x in breaks):
        state = "BREAK"
    elif run is not None:
        state = "RECONCILED"
    else:
        state = "NOT_RECONCILED"
    return {
        "state": state,
        "run_id": None if run is None else run.id,
        "check_date": None if run is None else _iso(run.check_date),
        "breaks": breaks,
    }


def counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Voucher counts by bank and state."""
    out: dict[str, dict[str, int]] = {}
    for bank, state, n in conn.execute(
        select(vouchers.c.bank_code, vouchers.c.state, func.count()).group_by(vouchers.c.bank_code, vouchers.c.state)
    ):
        out.setdefault(bank, {})[state] = n
    return out


def archived_message(conn: Connection, archive_id: int) -> bytes | None:
    """The raw bytes of one archived message."""
    row = conn.execute(select(archive.c.raw).where(archive.c.id == archive_id)).first()
    return None if row is None else bytes(row[0])
