"""Reconciliation on the store: the ledger port, the result sink, and one run of a bank and date (issue 6).

**The ledger of a check date D** (docs/reconciliation.md, "The ledger of a check date"):

* every voucher of the bank whose receipt gave the pay date `x_pay_date = D`: a paid one (`PAID`, or
  `RETURNED` since) with the amount the bank paid (`x_pay_amt_fen`), a failed one (`FAILED`) with the amount
  asked and status FAILED;
* every returned-payment notice (2252) the gateway recorded on D (a `returned_*` event of the voucher's history
  whose time is on D, UTC): an entry of its own under `2252` and the notice's number, negative, RETURNED, with
  the notice's serial. The history does not keep the notice's `XPayDate`, so its pay date is the day it was
  recorded.

Entries come in key order: `ORDER BY vt_code, voucher_no` (`COLLATE "C"` on PostgreSQL, SQLite's BINARY
collation otherwise), merged with the returns (sorted in Python: they are few).

**Reconciled vouchers are not a voucher state.** The voucher machine has no `RECONCILED` state; a matched paid
voucher gets a row in `recon_matches` (run, voucher) instead, so that reconciliation never races the payment
state machine and a re-run simply replaces the links.

**Idempotency.** :func:`run_day` does everything in one transaction: it undoes an earlier run of the same bank
and date (its run, breaks and links are deleted; breaks of earlier dates it had closed by itself are opened
again), then stores the new run. A run that fails rolls back and leaves the previous one in place.

**The resolution workflow survives re-runs.** What people did to a break (assigned, commented, proposed,
approved, rejected, resolved: `recon_break_events`) is kept by the break's identity — bank, first check date,
class and key — and not only by its row: the undo detaches the events, and the new run attaches them to its break
of the same identity and rebuilds the workflow columns from them, so an assignment or a pending proposal stays,
and a break people resolved stays closed when the re-run finds it again. A break the re-run no longer finds keeps
its events (detached). The same happens when a later date's run finds an open break again.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from gateway.reconcile.resolution import replay
from gateway.store.db import transaction
from gateway.store.tables import recon_break_events, recon_breaks, recon_matches, recon_runs, voucher_history, vouchers
from reconciliation.matcher import DEFAULT_MATCH_LIMITS, CarryOver, MatchLimits, carry_over, reconcile_day
from reconciliation.model import Break, BreakClass, LedgerEntry, RunResult, Side, Status, Totals
from reconciliation.ports import ScratchArea
from reconciliation.readers.base import StatementStream

#: The voucher type of a returned-payment notice (PROTOCOL.md §5.3).
RETURN_VT_CODE: Final = "2252"
#: Voucher states whose receipt said paid (a returned voucher was paid first).
_PAID_STATES: Final = ("PAID", "RETURNED")
_LEDGER_STATES: Final = (*_PAID_STATES, "FAILED")
#: Voucher numbers looked up per query when recording matched vouchers.
_LOOKUP_CHUNK: Final = 500
_STREAM_ROWS: Final = 2_000
#: How many days after its booking day (`XPayDate`) a return notice may reach the gateway and still be found.
_RETURN_LATE_DAYS: Final = 31
#: `closed_reason` of the breaks a run closes by itself (a re-run of its date opens them again).
_CLEARED: Final = "cleared"
_FOUND_AGAIN: Final = "found again"
_AUTO_CLOSED: Final = (_CLEARED, _FOUND_AGAIN)


def _sort_column(conn: Connection, column: Any) -> Any:
    return column.collate("C") if conn.dialect.name == "postgresql" else column


class StoreLedger:
    """The :class:`~reconciliation.ports.LedgerPort` on the store; reads on connections of its own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def entries(self, bank: str, check_date: date) -> Iterator[LedgerEntry]:
        """The ledger of `bank` for `check_date`, in key order (module docstring)."""
        with transaction(self._engine, read_only=True) as conn:
            returns = sorted(self._returns(conn, bank, check_date), key=lambda e: (e.vt_code, e.voucher_no))
        yield from heapq.merge(returns, self._payments(bank, check_date), key=lambda e: (e.vt_code, e.voucher_no))

    def control_totals(self, bank: str, check_date: date) -> Totals:
        """Count and signed sum by SQL aggregates, separately from :meth:`entries`."""
        v = vouchers.c
        amount = case((v.state == "FAILED", v.amount_fen), else_=func.coalesce(v.x_pay_amt_fen, v.amount_fen))
        with transaction(self._engine, read_only=True) as conn:
            count, total = conn.execute(
                select(func.count(), func.coalesce(func.sum(amount), 0)).where(_payment_filter(bank, check_date))
            ).one()
            returns = list(self._returns(conn, bank, check_date))
        return Totals(int(count), int(total)) + Totals(len(returns), sum(e.amount_fen for e in returns))

    def _payments(self, bank: str, check_date: date) -> Iterator[LedgerEntry]:
        v = vouchers.c
        with transaction(self._engine, read_only=True) as conn:
            query = (
                select(
                    v.adm_div_code,
                    v.st_year,
                    v.vt_code,
                    v.voucher_no,
                    v.x_agent_business_no,
                    v.amount_fen,
                    v.x_pay_amt_fen,
                    v.state,
                    v.payee_acct_no,
                    v.x_pay_date,
                )
                .where(_payment_filter(bank, check_date))
                .order_by(_sort_column(conn, v.vt_code), _sort_column(conn, v.voucher_no))
            )
            for row in conn.execution_options(yield_per=_STREAM_ROWS).execute(query):
                failed = row.state == "FAILED"
                yield LedgerEntry(
                    row.adm_div_code,
                    row.st_year,
                    row.vt_code,
                    row.voucher_no,
                    row.x_agent_business_no or "",
                    row.amount_fen if failed or row.x_pay_amt_fen is None else row.x_pay_amt_fen,
                    Status.FAILED if failed else Status.PAID,
                    row.payee_acct_no,
                    row.x_pay_date,
                )

    @staticmethod
    def _returns(conn: Connection, bank: str, check_date: date) -> Iterator[LedgerEntry]:
        """The returns (2252) the bank booked on `check_date`: by the notice's `XPayDate`, which the voucher's
        history keeps (`x_pay_date`); a return recorded without it, by the (UTC) day it was recorded.

        The history is searched from the day before `check_date` (time zones) to :data:`_RETURN_LATE_DAYS`
        after it: a notice that reaches the gateway later than that is not found on its date.
        """
        v, h = vouchers.c, voucher_history.c
        start = datetime.combine(check_date, time())
        rows = conn.execute(
            select(v.adm_div_code, v.st_year, v.payee_acct_no, h.detail, h.at)
            .select_from(voucher_history.join(vouchers, h.voucher_id == v.id))
            .where(
                v.bank_code == bank,
                h.event.like("returned%"),
                h.at >= start - timedelta(days=1),
                h.at < start + timedelta(days=_RETURN_LATE_DAYS),
            )
        )
        for row in rows:
            detail = json.loads(row.detail)
            booked = detail.get("x_pay_date")
            pay_date = date.fromisoformat(booked) if booked else row.at.date()
            if pay_date != check_date:
                continue
            yield LedgerEntry(
                row.adm_div_code,
                row.st_year,
                RETURN_VT_CODE,
                str(detail["notice"]),
                str(detail.get("x_agent_business_no") or ""),
                -abs(int(detail["amount_fen"])),  # the history keeps the amount that came back, positive
                Status.RETURNED,
                row.payee_acct_no,
                pay_date,
            )


def _payment_filter(bank: str, check_date: date) -> ColumnElement[bool]:
    v = vouchers.c
    return and_(v.bank_code == bank, v.x_pay_date == check_date, v.state.in_(_LEDGER_STATES))


class StoreSink:
    """The :class:`~reconciliation.ports.ResultSink` on the store: links matched vouchers to the run.

    The run's totals and breaks are written by :func:`run_day` after :func:`carry_over` (they need the open
    breaks' first dates); :meth:`finish` keeps the result for it.
    """

    def __init__(self, conn: Connection, bank: str, run_id: int) -> None:
        self._conn = conn
        self._bank = bank
        self._run_id = run_id
        self.linked = 0
        self.result: RunResult | None = None

    def reconciled(self, entries: Sequence[LedgerEntry]) -> None:
        """Link the matched vouchers of a batch (paid or failed) to the run; a return's entry names its notice."""
        paid = [e for e in entries if e.vt_code != RETURN_VT_CODE]
        v = vouchers.c
        for start in range(0, len(paid), _LOOKUP_CHUNK):
            chunk = paid[start : start + _LOOKUP_CHUNK]
            wanted = {(e.adm_div_code, e.st_year, e.vt_code, e.voucher_no) for e in chunk}
            # By voucher number alone, so that the database searches its voucher_no index: with the bank in the
            # WHERE clause SQLite chose the bank_code index and read every voucher of the bank for every chunk
            # (42 of 55 s of a 100,000-line run). The bank is checked here instead.
            rows = self._conn.execute(
                select(v.id, v.bank_code, v.adm_div_code, v.st_year, v.vt_code, v.voucher_no).where(
                    v.voucher_no.in_({e.voucher_no for e in chunk})
                )
            )
            ids = [
                r.id
                for r in rows
                if r.bank_code == self._bank and (r.adm_div_code, r.st_year, r.vt_code, r.voucher_no) in wanted
            ]
            if ids:
                self._conn.execute(insert(recon_matches), [{"run_id": self._run_id, "voucher_id": i} for i in ids])
                self.linked += len(ids)

    def finish(self, result: RunResult) -> None:
        """Keep the result for :func:`run_day`."""
        self.result = result


@dataclass(frozen=True, slots=True)
class DayRun:
    """What :func:`run_day` did: the run's id, its result, the open and closed breaks after it."""

    run_id: int
    result: RunResult
    carry: CarryOver
    linked: int


def run_day(
    engine: Engine,
    bank: str,
    check_date: date,
    statement: StatementStream,
    *,
    scratch: ScratchArea,
    now: datetime,
    limits: MatchLimits = DEFAULT_MATCH_LIMITS,
) -> DayRun:
    """Reconcile `bank`'s statement for `check_date` against the store and store the run (replacing an earlier one).

    Raises:
        StatementError, LedgerError, TooManyBreaks: from the matcher; nothing is stored (the transaction rolls
            back, an earlier run of the date stays).
    """
    with transaction(engine) as conn:
        _undo_run(conn, bank, check_date)
        previous = open_breaks(conn, bank, before=check_date)
        run_id = conn.execute(
            insert(recon_runs)
            .values(
                bank_code=bank,
                check_date=check_date,
                started_at=now,
                source=statement.source,
                status="RUNNING",
                counts="{}",
            )
            .returning(recon_runs.c.id)
        ).scalar_one()
        sink = StoreSink(conn, bank, run_id)
        result = reconcile_day(
            StoreLedger(engine),
            statement,
            bank=bank,
            check_date=check_date,
            scratch=scratch,
            sink=sink,
            carried=[b for _, b in previous],
            limits=limits,
        )
        carry = carry_over([b for _, b in previous], result)
        _store_result(conn, run_id, result, carry, previous, now)
    return DayRun(run_id, result, carry, sink.linked)


def open_breaks(conn: Connection, bank: str, *, before: date | None = None) -> list[tuple[int, Break]]:
    """The open breaks of `bank` (of check dates before `before`), oldest first, with their row ids."""
    b = recon_breaks.c
    query = select(recon_breaks).where(b.bank_code == bank, b.state == "OPEN")
    if before is not None:
        query = query.where(b.check_date < before)
    rows = conn.execute(query.order_by(b.opened_on, b.id)).mappings()
    return [(row["id"], break_from_row(row, before)) for row in rows]


def _undo_run(conn: Connection, bank: str, check_date: date) -> None:
    run_id = conn.execute(
        select(recon_runs.c.id).where(recon_runs.c.bank_code == bank, recon_runs.c.check_date == check_date)
    ).scalar_one_or_none()
    if run_id is None:
        return
    b = recon_breaks.c
    conn.execute(  # what the run closed by itself opens again; what people resolved stays closed
        update(recon_breaks)
        .where(
            b.bank_code == bank,
            b.check_date < check_date,
            b.closed_on == check_date,
            b.closed_reason.in_(_AUTO_CLOSED),
        )
        .values(state="OPEN", closed_on=None, closed_reason=None)
    )
    # the workflow's events outlive the rows: detached here, attached by _store_result to the same break again
    e = recon_break_events.c
    conn.execute(
        update(recon_break_events).where(e.break_id.in_(select(b.id).where(b.run_id == run_id))).values(break_id=None)
    )
    conn.execute(delete(recon_matches).where(recon_matches.c.run_id == run_id))
    conn.execute(delete(recon_breaks).where(b.run_id == run_id))
    conn.execute(delete(recon_runs).where(recon_runs.c.id == run_id))


def _store_result(
    conn: Connection,
    run_id: int,
    result: RunResult,
    carry: CarryOver,
    previous: Sequence[tuple[int, Break]],
    now: datetime,
) -> None:
    counts = result.counts()
    declared = result.declared
    conn.execute(
        update(recon_runs)
        .where(recon_runs.c.id == run_id)
        .values(
            finished_at=now,
            source=result.source,
            status="DONE",
            ledger_count=result.ledger.count,
            ledger_fen=result.ledger.amount_fen,
            statement_count=result.statement.count,
            statement_fen=result.statement.amount_fen,
            declared_count=declared.count if declared else None,
            declared_fen=declared.amount_fen if declared else None,
            matched=result.matched,
            matched_by_serial=result.matched_by_serial,
            carried_in=result.carried_in.count,
            break_count=len(result.breaks),
            counts=json.dumps({cls.value: n for cls, n in counts.items()}),
        )
    )
    since = {b.identity: b.since for b in carry.open}
    if result.breaks:
        conn.execute(
            insert(recon_breaks),
            [_break_row(run_id, result, b, since.get(b.identity, b.since)) for b in result.breaks],
        )
    closed = {(b.identity, b.since) for b in carry.closed}
    found_again = {b.identity for b in result.breaks}
    for row_id, b in previous:
        reason = _CLEARED if (b.identity, b.since) in closed else _FOUND_AGAIN if b.identity in found_again else None
        if reason is not None:
            conn.execute(
                update(recon_breaks)
                .where(recon_breaks.c.id == row_id)
                .values(state="CLOSED", closed_on=result.check_date, closed_reason=reason)
            )
            if reason == _FOUND_AGAIN:  # its workflow goes on on this run's row of the same break
                conn.execute(
                    update(recon_break_events).where(recon_break_events.c.break_id == row_id).values(break_id=None)
                )
    _attach_workflow(conn, result.bank)


def _attach_workflow(conn: Connection, bank: str) -> None:
    """Give the detached workflow events of `bank` (a re-run replaced their break's row, or a later run found the
    break again) to the open row of the same break — same bank, first check date, class and key — and rebuild
    its workflow columns from all of the break's events (:func:`gateway.reconcile.resolution.replay`): who it
    is assigned to, the resolution proposed or rejected, and a resolution people applied, which closes it again.
    Events whose break no run finds any more stay detached (`break_id` NULL), kept for the audit history.
    """
    e, b = recon_break_events.c, recon_breaks.c
    identities = conn.execute(
        select(e.check_date, e.break_class, e.break_key)
        .where(e.bank_code == bank, e.break_id.is_(None))
        .group_by(e.check_date, e.break_class, e.break_key)
    ).all()
    for opened_on, break_class, break_key in identities:
        row_id = conn.execute(
            select(b.id)
            .where(
                b.bank_code == bank,
                b.opened_on == opened_on,
                b.break_class == break_class,
                b.break_key == break_key,
                b.state == "OPEN",
            )
            .order_by(b.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row_id is None:
            continue
        same = and_(
            e.bank_code == bank, e.check_date == opened_on, e.break_class == break_class, e.break_key == break_key
        )
        conn.execute(update(recon_break_events).where(same).values(break_id=row_id))
        events = conn.execute(select(e.event, e.actor, e.at, e.detail).where(same).order_by(e.id)).mappings()
        conn.execute(update(recon_breaks).where(b.id == row_id).values(**replay(events).values()))


def _break_row(run_id: int, result: RunResult, b: Break, opened_on: date) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "bank_code": result.bank,
        "check_date": result.check_date,
        "break_class": b.break_class.value,
        "break_key": b.key[:64],
        "vt_code": b.vt_code,
        "voucher_no": b.voucher_no,
        "serial": b.serial,
        "ledger_side": _side_json(b.ledger),
        "bank_side": _side_json(b.bank),
        "detail": b.detail,
        "scope": b.scope,
        "declared": _totals_json(b.declared),
        "computed": _totals_json(b.computed),
        "difference_fen": b.difference_fen,
        "opened_on": opened_on,
        "closed_on": None,
        "closed_reason": None,
        "state": "OPEN",
    }


def break_from_row(row: Any, as_of: date | None = None) -> Break:
    """The :class:`Break` a `recon_breaks` row holds; its age counted to `as_of` (default: its own check date)."""
    opened: date = row["opened_on"]
    return Break(
        break_class=BreakClass(row["break_class"]),
        check_date=row["check_date"],
        vt_code=row["vt_code"],
        voucher_no=row["voucher_no"],
        serial=row["serial"],
        ledger=_side_from_json(row["ledger_side"]),
        bank=_side_from_json(row["bank_side"]),
        detail=row["detail"],
        scope=row["scope"],
        declared=_totals_from_json(row["declared"]),
        computed=_totals_from_json(row["computed"]),
        first_check_date=opened,
        age_days=((as_of or row["check_date"]) - opened).days,
    )


def _side_json(side: Side | None) -> str | None:
    if side is None:
        return None
    return json.dumps(
        {
            "serial": side.serial,
            "amount_fen": side.amount_fen,
            "status": int(side.status),
            "payee_acct_no": side.payee_acct_no,
            "pay_date": side.pay_date.isoformat(),
            "ref": side.ref,
        },
        ensure_ascii=False,
        sort_keys=True,
    )


def _side_from_json(text: str | None) -> Side | None:
    if text is None:
        return None
    d = json.loads(text)
    return Side(
        d["serial"],
        d["amount_fen"],
        Status(d["status"]),
        d["payee_acct_no"],
        date.fromisoformat(d["pay_date"]),
        d["ref"],
    )


def _totals_json(totals: Totals | None) -> str | None:
    return None if totals is None else json.dumps({"count": totals.count, "amount_fen": totals.amount_fen})


def _totals_from_json(text: str | None) -> Totals | None:
    if text is None:
        return None
    d = json.loads(text)
    return Totals(d["count"], d["amount_fen"])


def stored_breaks(engine: Engine, bank: str, check_date: date) -> Iterable[Break]:
    """The breaks stored for the run of `bank` and `check_date` (for reports and tests)."""
    with transaction(engine, read_only=True) as conn:
        rows = conn.execute(
            select(recon_breaks)
            .where(recon_breaks.c.bank_code == bank, recon_breaks.c.check_date == check_date)
            .order_by(recon_breaks.c.id)
        ).mappings()
        return [break_from_row(row) for row in rows]
