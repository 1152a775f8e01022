"""The stored reconciliation as the dashboard, the API and the CLI read it and work on it (issue 6 §4).

:class:`StoreReconciliation` implements :class:`gateway.dashboard.providers.ReconciliationProvider`: runs and
breaks in the shapes that protocol documents (plain dictionaries, amounts in fen, dates and times as ISO text,
times in UTC), the reports of a stored run, the reason codes, and the workflow steps of
:mod:`gateway.reconcile.resolution`. Every method takes a connection on the store thread (the caller owns the
transaction), like every store function; it is attached to the hub as `hub.reconciliation` by
:func:`gateway.app.start`.

**Age of a break.** An open break's age is counted to the latest check date reconciled for its bank (it is still
open after that run); a closed one's to the day it closed.

**The voucher of a break.** A statement names a voucher by `VtCode` and `VoucherNo` only; `voucher_key` is the
gateway's full key (`ADMDIV-YEAR-VTCODE-VOUCHERNO`) when the ledger side names it or exactly one voucher of the
bank has that number, else None (a summary mismatch, a return notice, a voucher the gateway does not hold).
`key` is the break's own key as the reports print it (`5201-…`, a serial, or `statement`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Connection, func, select
from sqlalchemy.sql.elements import ColumnElement

from gateway.reconcile import resolution
from gateway.reconcile.resolution import REASONS, NotFound
from gateway.reconcile.store_port import break_from_row
from gateway.store.tables import RECON_BREAK_STATES, RECON_RESOLUTION_STATES, recon_breaks, recon_runs, vouchers
from protocols.messages import VoucherKey
from reconciliation.matcher import CarryOver
from reconciliation.model import Break, BreakClass, RunResult, Status, Totals
from reconciliation.report import to_csv, to_html, to_json

#: Report formats of a stored run and their content types.
REPORT_TYPES: Final = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json; charset=utf-8",
}
_KINDS: Final = frozenset(c.value for c in BreakClass)


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class StoreReconciliation:
    """Runs, breaks, reports and the resolution workflow on the store (the dashboard's reconciliation provider)."""

    # --- runs -------------------------------------------------------------------------------------------------

    def runs(self, conn: Connection, *, check_date: date | None, bank: str | None) -> list[dict[str, Any]]:
        """Runs of a check date and/or bank (every run when both are None), newest date first, then by bank."""
        r = recon_runs.c
        conditions: list[ColumnElement[bool]] = []
        if check_date is not None:
            conditions.append(r.check_date == check_date)
        if bank is not None:
            conditions.append(r.bank_code == bank)
        return self._runs(conn, conditions)

    def latest(self, conn: Connection) -> list[dict[str, Any]]:
        """The latest run of every bank, by bank."""
        r = recon_runs.c
        newest = select(r.bank_code, func.max(r.check_date).label("check_date")).group_by(r.bank_code).subquery()
        ids = select(r.id).join(newest, (r.bank_code == newest.c.bank_code) & (r.check_date == newest.c.check_date))
        return self._runs(conn, [r.id.in_(ids)])

    def run(self, conn: Connection, run_id: int) -> dict[str, Any] | None:
        """One run in run shape, with its `source`, `declared` totals and its breaks counted by `break_states`
        (OPEN, CLOSED) and `resolution_states` (PROPOSED, … and `none`)."""
        found = self._runs(conn, [recon_runs.c.id == run_id])
        if not found:
            return None
        run = found[0]
        row = conn.execute(select(recon_runs).where(recon_runs.c.id == run_id)).mappings().one()
        b = recon_breaks.c
        states = dict.fromkeys(RECON_BREAK_STATES, 0)
        resolutions = dict.fromkeys((*RECON_RESOLUTION_STATES, "none"), 0)
        for state, resolution_state, n in conn.execute(
            select(b.state, b.resolution_state, func.count())
            .where(b.run_id == run_id)
            .group_by(b.state, b.resolution_state)
        ):
            states[state] = states.get(state, 0) + int(n)
            resolutions[resolution_state or "none"] = resolutions.get(resolution_state or "none", 0) + int(n)
        declared = (
            None
            if row["declared_count"] is None
            else {"count": row["declared_count"], "amount_fen": row["declared_fen"]}
        )
        return run | {
            "source": row["source"],
            "declared": declared,
            "matched_by_serial": row["matched_by_serial"],
            "carried_in": row["carried_in"],
            "result_msg_id": row["result_msg_id"],
            "break_states": states,
            "resolution_states": resolutions,
        }

    def _runs(self, conn: Connection, conditions: Sequence[ColumnElement[bool]]) -> list[dict[str, Any]]:
        r, b = recon_runs.c, recon_breaks.c
        open_counts = select(b.run_id, func.count().label("n")).where(b.state == "OPEN").group_by(b.run_id).subquery()
        rows = conn.execute(
            select(recon_runs, func.coalesce(open_counts.c.n, 0).label("open_breaks"))
            .outerjoin(open_counts, open_counts.c.run_id == r.id)
            .where(*conditions)
            .order_by(r.check_date.desc(), r.bank_code)
        ).mappings()
        return [
            {
                "id": row["id"],
                "bank": row["bank_code"],
                "check_date": row["check_date"].isoformat(),
                "state": row["status"],
                "matched": row["matched"],
                "breaks": row["break_count"],
                "open_breaks": int(row["open_breaks"]),
                "counts": json.loads(row["counts"]),
                "ledger_count": row["ledger_count"],
                "ledger_fen": row["ledger_fen"],
                "statement_count": row["statement_count"],
                "statement_fen": row["statement_fen"],
                "result_sent": row["result_sent_at"] is not None,
                "started_at": _iso(row["started_at"]),
                "finished_at": _iso(row["finished_at"]),
            }
            for row in rows
        ]

    # --- breaks -----------------------------------------------------------------------------------------------

    def breaks(
        self,
        conn: Connection,
        run_id: int | None,
        *,
        kind: str | None,
        state: str | None,
        bank: str | None = None,
        assigned_to: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Breaks of one run (of every run with `run_id` None), oldest first (first check date, then id).

        Args:
            kind: a break class (`amount_mismatch`, …).
            state: OPEN or CLOSED, or a resolution state (PROPOSED, APPROVED, REJECTED, RESOLVED).
            assigned_to: who it is assigned to, exactly as stored (`operator:alice`).

        Raises:
            ValueError: an unknown class or state.
        """
        b = recon_breaks.c
        query = select(recon_breaks)
        if run_id is not None:
            query = query.where(b.run_id == run_id)
        if kind is not None:
            if kind not in _KINDS:
                raise ValueError(f"unknown break class {kind!r}; one of {', '.join(sorted(_KINDS))}")
            query = query.where(b.break_class == kind)
        if state is not None:
            state = state.upper()
            if state in RECON_BREAK_STATES:
                query = query.where(b.state == state)
            elif state in RECON_RESOLUTION_STATES:
                query = query.where(b.resolution_state == state)
            else:
                known = ", ".join((*RECON_BREAK_STATES, *RECON_RESOLUTION_STATES))
                raise ValueError(f"unknown break state {state!r}; one of {known}")
        if bank is not None:
            query = query.where(b.bank_code == bank)
        if assigned_to is not None:
            query = query.where(b.assigned_to == assigned_to)
        query = query.order_by(b.opened_on, b.id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        rows = list(conn.execute(query).mappings())
        keys = _voucher_keys(conn, rows)
        as_of = _latest_dates(conn)
        return [_break_shape(row, keys.get(row["id"]), as_of) for row in rows]

    def break_detail(self, conn: Connection, break_id: int) -> dict[str, Any] | None:
        """One break in break shape with both sides, its detail, the note and its events (oldest first).

        As the protocol says, `"ledger"` and `"bank"` are the two sides here (dictionaries of `serial`,
        `amount_fen`, `status` (PAID, RETURNED, FAILED), `payee_acct_no`, `pay_date`, `ref`, or None): the bank's
        code, `"bank"` in the break shape, is `"bank_code"` in the detail.
        """
        row = conn.execute(select(recon_breaks).where(recon_breaks.c.id == break_id)).mappings().first()
        if row is None:
            return None
        found = _break_shape(row, _voucher_keys(conn, [row]).get(row["id"]), _latest_dates(conn))
        events = [e | {"at": _iso(e["at"])} for e in resolution.events_of(conn, row)]
        return found | {
            "bank_code": row["bank_code"],
            "ledger": _side(row["ledger_side"]),
            "bank": _side(row["bank_side"]),
            "detail": row["detail"],
            "note": row["resolution_note"],
            "scope": row["scope"],
            "declared": json.loads(row["declared"]) if row["declared"] else None,
            "computed": json.loads(row["computed"]) if row["computed"] else None,
            "proposed_at": _iso(row["proposed_at"]),
            "decided_at": _iso(row["decided_at"]),
            "events": events,
        }

    # --- reports ----------------------------------------------------------------------------------------------

    def report_html(self, conn: Connection, run_id: int) -> str:
        """The run's HTML report (:func:`reconciliation.report.to_html`), from the stored run and its breaks.

        Raises:
            NotFound: no such run.
        """
        return self.report(conn, run_id, "html")

    def report(self, conn: Connection, run_id: int, fmt: str) -> str:
        """The run's report as `html`, `csv` (its breaks) or `json` (the run, its breaks, those open after it and
        those it cleared).

        Raises:
            NotFound: no such run.
            ValueError: an unknown format.
        """
        if fmt not in REPORT_TYPES:
            raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(REPORT_TYPES)}")
        result, carry = stored_result(conn, run_id)
        if fmt == "csv":
            return to_csv(result.breaks)
        if fmt == "json":
            return to_json(result, carry)
        return to_html(result, open_breaks=carry.open)

    # --- the workflow -----------------------------------------------------------------------------------------

    def reasons(self) -> list[dict[str, Any]]:
        """The reason codes, in the order people choose from."""
        return [{"code": r.code, "zh": r.zh, "en": r.en, "needs_approval": r.needs_approval} for r in REASONS]

    def assign(self, conn: Connection, break_id: int, assignee: str, actor: str, now: Any) -> None:
        resolution.assign(conn, break_id, assignee, actor, now)

    def comment(self, conn: Connection, break_id: int, text: str, actor: str, now: Any) -> None:
        resolution.comment(conn, break_id, text, actor, now)

    def propose(self, conn: Connection, break_id: int, resolution_code: str, note: str, actor: str, now: Any) -> str:
        return resolution.propose(conn, break_id, resolution_code, note, actor, now)

    def approve(self, conn: Connection, break_id: int, actor: str, now: Any) -> None:
        resolution.approve(conn, break_id, actor, now)

    def reject(self, conn: Connection, break_id: int, reason: str, actor: str, now: Any) -> None:
        resolution.reject(conn, break_id, reason, actor, now)


# --- helpers ----------------------------------------------------------------------------------------------------


def stored_result(conn: Connection, run_id: int) -> tuple[RunResult, CarryOver]:
    """The stored run as the matcher's result, with the breaks of its bank open now (aged to its check date) and
    the earlier ones it cleared.

    Raises:
        NotFound: no such run.
    """
    row = conn.execute(select(recon_runs).where(recon_runs.c.id == run_id)).mappings().first()
    if row is None:
        raise NotFound(f"no reconciliation run {run_id}")
    b = recon_breaks.c
    day: date = row["check_date"]
    breaks = tuple(
        break_from_row(r)
        for r in conn.execute(select(recon_breaks).where(b.run_id == run_id).order_by(b.id)).mappings()
    )
    cleared = tuple(
        break_from_row(r, day)
        for r in conn.execute(
            select(recon_breaks)
            .where(b.bank_code == row["bank_code"], b.closed_on == day, b.closed_reason == "cleared")
            .order_by(b.id)
        ).mappings()
    )
    still_open = tuple(
        break_from_row(r, day)
        for r in conn.execute(
            select(recon_breaks)
            .where(b.bank_code == row["bank_code"], b.state == "OPEN", b.check_date <= day)
            .order_by(b.opened_on, b.id)
        ).mappings()
    )
    declared = None if row["declared_count"] is None else Totals(row["declared_count"], row["declared_fen"])
    result = RunResult(
        bank=row["bank_code"],
        check_date=day,
        source=row["source"],
        ledger=Totals(row["ledger_count"], row["ledger_fen"]),
        statement=Totals(row["statement_count"], row["statement_fen"]),
        declared=declared,
        matched=row["matched"],
        matched_by_serial=row["matched_by_serial"],
        breaks=breaks,
        cleared=cleared,
        # the run keeps the count of the lines that cleared earlier timing breaks; their amounts are the cleared
        # breaks' (a line that clears a timing break agrees with it)
        carried_in=Totals(row["carried_in"], sum(_amount(c) for c in cleared)),
    )
    return result, CarryOver(open=still_open, closed=cleared)


def _amount(b: Break) -> int:
    side = b.ledger or b.bank
    return side.amount_fen if side else 0


def _latest_dates(conn: Connection) -> dict[str, date]:
    """The latest check date reconciled per bank (the day open breaks are aged to)."""
    r = recon_runs.c
    return {bank: day for bank, day in conn.execute(select(r.bank_code, func.max(r.check_date)).group_by(r.bank_code))}


def _voucher_keys(conn: Connection, rows: Iterable[Mapping[Any, Any]]) -> dict[int, str]:
    """Break id → the full key of the gateway's voucher it is about (see the module docstring)."""
    keys: dict[int, str] = {}
    wanted: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        key = resolution.ledger_key(row)
        if key is not None:
            keys[row["id"]] = str(key)
            continue
        if row["voucher_no"] and row["break_class"] != BreakClass.SUMMARY_MISMATCH.value:
            wanted.setdefault((row["bank_code"], row["vt_code"], row["voucher_no"]), []).append(row["id"])
    by_bank: dict[str, set[str]] = {}
    for bank, _, number in wanted:
        by_bank.setdefault(bank, set()).add(number)
    v = vouchers.c
    for bank, numbers in by_bank.items():
        found: dict[tuple[str, str], list[VoucherKey]] = {}
        chunk = sorted(numbers)
        for start in range(0, len(chunk), 500):
            # By voucher number alone, so that the voucher_no index is used (see StoreSink.reconciled).
            for holder, adm, year, vt, number in conn.execute(
                select(v.bank_code, v.adm_div_code, v.st_year, v.vt_code, v.voucher_no).where(
                    v.voucher_no.in_(chunk[start : start + 500])
                )
            ):
                if holder == bank:
                    found.setdefault((vt, number), []).append(VoucherKey(adm, year, vt, number))
        for (vt, number), matches in found.items():
            if len(matches) == 1:
                for break_id in wanted.get((bank, vt, number), []):
                    keys[break_id] = str(matches[0])
    return keys


def _side_amount(text: str | None) -> int | None:
    return None if not text else int(json.loads(text)["amount_fen"])


def _side(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    d: dict[str, Any] = json.loads(text)
    return d | {"status": Status(d["status"]).name}


def _break_shape(row: Mapping[Any, Any], voucher_key: str | None, as_of: Mapping[str, date]) -> dict[str, Any]:
    if row["state"] == "OPEN":
        until = max(as_of.get(row["bank_code"], row["check_date"]), row["check_date"])
    else:
        until = row["closed_on"] or row["check_date"]
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "bank": row["bank_code"],
        "check_date": row["check_date"].isoformat(),
        "kind": row["break_class"],
        "voucher_key": voucher_key,
        "bank_serial": row["serial"],
        "ledger_fen": _side_amount(row["ledger_side"]),
        "bank_fen": _side_amount(row["bank_side"]),
        "difference_fen": row["difference_fen"],
        "age_days": max((until - row["opened_on"]).days, 0),
        "state": row["state"],
        "assigned_to": row["assigned_to"],
        "resolution": row["resolution"],
        "resolution_state": row["resolution_state"],
        "proposed_by": row["proposed_by"],
        "approved_by": row["decided_by"],
        # beyond the protocol's shape: the break's own key, its first check date, how it closed
        "key": row["break_key"],
        "opened_on": row["opened_on"].isoformat(),
        "closed_on": _iso(row["closed_on"]),
        "closed_reason": row["closed_reason"],
    }
