"""Statements over the link (issue 6 §1, §3): the gateway asks (4005), the bank answers with its 4006 statement
in pages, the gateway reconciles once every page is held and sends the bank its result (2507).

**Asking.** :func:`request_statement` records a `recon_requests` row (`REQUESTED`) and puts the 4005 into the
outbox in one transaction; the dispatcher sends it like any other message (resent with the same `MsgId` until
the bank's 9120 answers it). A new request for the same bank and check date supersedes an unfinished one (it
goes `FAILED`, "superseded by …"; its 4005 is not sent if it has not gone yet) and clears the pages held for that
date: the bank is asked for its statement afresh.

**Pages in.** Each 4006 page is a request of the bank's, acknowledged (9120 90000) once stored
(:func:`apply_statement`, called by :func:`gateway.payments.service.handle_request` in the transaction that
records the message): pages are kept in `recon_pages` per bank and check date, in any order. A page the gateway
already holds, unchanged, changes nothing; a page that disagrees with those held (another `AllNum`, `AllAmt` or
`ChildPackNum`, or the same page number with other content) starts the set over with itself. A page for a date
nobody asked about is accepted and kept just the same: a bank may push its statement. The request, if one is
waiting, goes `RECEIVING`, and when the last page arrives `COMPLETE`; the transaction then reports a
`statement_complete` outcome event, which the hub hands to :class:`LinkReconciler`.

**Reconciling.** :class:`LinkReconciler` reads the pages back (streamed, one transaction), reconciles them with
:func:`gateway.reconcile.store_port.run_day` off the reactor, writes the reports to `<instance>/reports/`, then in
one transaction (:func:`finish_run`) puts the 2507 (:func:`reconciliation.report.reconcile_result`) into the
outbox, records its `MsgId` and time on the run (`result_msg_id`, `result_sent_at`: when it was queued; the
outbox row says when it went and whether the bank acknowledged it) and on the request (`RECONCILED`), and kicks
the dispatcher. A statement that cannot be reconciled (a page missing after all, a malformed line) leaves the
request `FAILED` with the reason, and no 2507 is sent. The run of a superseded request is stored (the next run
replaces it) but sends no 2507.

Where the run executes: on SQLite, on the store's own single thread (`run_day` opens its own transactions, and
on SQLite its write transaction holds the one write lock for the whole run: on another thread every write of
the payment flow would wait on `busy_timeout` and fail after five seconds; on the store thread it queues
instead); on PostgreSQL, on a thread of the reactor's pool, so that the store's threads keep serving the banks
while it runs (docs/reconciliation.md has the measurements).

**Waiting.** :meth:`LinkReconciler.reconcile` asks and returns a Deferred that fires with the run's summary
(:func:`run_summary`) or fails: :class:`StatementRefused` (the bank refused the 4005), :class:`ReconcileFailed`
(the statement could not be reconciled), :class:`StatementTimeout` (no run within `[reconciliation]
statement_timeout_s`; a request still waiting for pages is then `FAILED`; pages that complete it later are
reconciled all the same, as a pushed statement), :class:`StatementSuperseded` (a newer request of the same bank
and date replaced it).

The HTTP API (:func:`route`): `POST /api/reconciliation/requests` and `GET /api/reconciliation/requests[/ID]`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall

from gateway.apiutil import actor_of, json_object, query_arg
from gateway.payments import service
from gateway.store.db import is_sqlite, transaction
from gateway.store.tables import outbox, recon_breaks, recon_matches, recon_pages, recon_requests, recon_runs
from protocols import jsonform
from protocols.messages import ReconcileResult, Statement, StatementDetail, StatementRequest
from protocols.money import parse_amount_fen, parse_date8
from reconciliation.readers import DEFAULT_LIMITS, from_messages

if TYPE_CHECKING:
    from gateway.hub import Hub
    from gateway.reconcile.store_port import DayRun

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A request waiting for pages.
OPEN: Final = ("REQUESTED", "RECEIVING")
#: A request not yet finished (a new one for the same bank and date supersedes it).
UNFINISHED: Final = (*OPEN, "COMPLETE")
#: MsgId prefixes of the gateway's 4005 and 2507 (docs/protocol.md §7).
REQUEST_PREFIX: Final = "S"
RESULT_PREFIX: Final = "C"
#: The outcome event of a statement whose last page arrived.
COMPLETE_EVENT: Final = "statement_complete"
#: The outcome event of a 4005 the bank refused.
REFUSED_EVENT: Final = "statement_refused"
#: `closed_reason` of the earlier breaks a run closed because its statement cleared them (store_port).
_CLEARED: Final = "cleared"
_POLL_LIMIT: Final = 50


class LinkError(Exception):
    """A reconciliation over the link did not produce a run; the message says why."""


class StatementRefused(LinkError):
    """The bank refused the statement request (its 9120 to the 4005 was not 90000)."""


class StatementTimeout(LinkError):
    """No run within the configured time (`[reconciliation] statement_timeout_s`)."""


class ReconcileFailed(LinkError):
    """The complete statement could not be reconciled (or the store failed meanwhile)."""


class StatementSuperseded(LinkError):
    """A newer request of the same bank and date replaced this one (its waiters are told so at once)."""


# --- the store side: one transaction each ----------------------------------------------------------------------


def _lock(conn: Connection, bank: str, check_date: date) -> None:
    """Serialize the transactions that touch one bank's statement of one date: on PostgreSQL a transaction-level
    advisory lock (two pages arriving at once on two store threads must not both miss the completion); SQLite
    writes one transaction at a time anyway (`BEGIN IMMEDIATE`)."""
    if is_sqlite(conn):
        return
    digest = hashlib.sha256(f"tgw-statement:{bank}:{check_date.isoformat()}".encode()).digest()
    conn.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))


def request_statement(
    conn: Connection, bank: str, check_date: date, actor: str, now: datetime, node: str, work_date: date
) -> str:
    """Ask `bank` for its statement of `check_date`: a request row and the 4005 in the outbox; returns the MsgId.

    An unfinished request of the same bank and date is superseded (`FAILED`; its 4005 stays home if it has
    not been sent) and the pages held for the date are cleared.
    """
    _lock(conn, bank, check_date)
    r = recon_requests.c
    msg_id = service.new_msg_id(REQUEST_PREFIX, now)
    superseded = conn.execute(
        select(r.id, r.msg_id).where(r.bank_code == bank, r.check_date == check_date, r.state.in_(UNFINISHED))
    ).all()
    if superseded:
        conn.execute(
            update(recon_requests)
            .where(r.id.in_([row.id for row in superseded]))
            .values(state="FAILED", error=f"superseded by {msg_id}", updated_at=now)
        )
        conn.execute(
            update(outbox)
            .where(
                outbox.c.bank_code == bank,
                outbox.c.msg_id.in_([row.msg_id for row in superseded]),
                outbox.c.state == "PENDING",
            )
            .values(state="NACKED", add_word=f"superseded by {msg_id}")
        )
    conn.execute(delete(recon_pages).where(recon_pages.c.bank_code == bank, recon_pages.c.check_date == check_date))
    service.enqueue(conn, bank, node, StatementRequest(check_date=check_date), now, work_date, msg_id=msg_id)
    conn.execute(
        insert(recon_requests).values(
            bank_code=bank,
            check_date=check_date,
            msg_id=msg_id,
            requested_by=actor,
            requested_at=now,
            state="REQUESTED",
            updated_at=now,
        )
    )
    return msg_id


def _page_document(page: Statement) -> str:
    return json.dumps(jsonform.to_json(page), ensure_ascii=False, sort_keys=True)


def apply_statement(
    conn: Connection, bank: str, page: Statement, msg_id: str, now: datetime
) -> tuple[service.Events, bool, None]:
    """Keep one 4006 page (see the module docstring); `(events, kick, voucher id)` as the service's steps return.

    Raises:
        service.Refused: the statement would have more pages than a statement may have.
    """
    limit = DEFAULT_LIMITS.max_pages
    if page.child_pack_num > limit:
        raise service.Refused(f"ChildPackNum {page.child_pack_num}: a statement has at most {limit} pages")
    _lock(conn, bank, page.check_date)
    p = recon_pages.c
    where = (p.bank_code == bank, p.check_date == page.check_date)
    document = _page_document(page)
    summary = (page.all_num, page.all_amt_fen, page.child_pack_num)
    held = conn.execute(
        select(p.cur_pack_no, p.all_num, p.all_amt_fen, p.child_pack_num, p.document).where(*where)
    ).all()
    same = [row for row in held if row.cur_pack_no == page.cur_pack_no]
    if same and same[0].document == document:
        return [], False, None  # a page held already, unchanged
    events: service.Events = []
    if same or any((row.all_num, row.all_amt_fen, row.child_pack_num) != summary for row in held):
        conn.execute(delete(recon_pages).where(*where))
        events.append(
            (
                "statement_restarted",
                {"bank": bank, "check_date": page.check_date.isoformat(), "pages_dropped": len(held)},
            )
        )
        held = []
    conn.execute(
        insert(recon_pages).values(
            bank_code=bank,
            check_date=page.check_date,
            cur_pack_no=page.cur_pack_no,
            child_pack_num=page.child_pack_num,
            all_num=page.all_num,
            all_amt_fen=page.all_amt_fen,
            msg_id=msg_id,
            document=document,
            received_at=now,
        )
    )
    r = recon_requests.c
    request = conn.execute(
        select(r.id, r.msg_id)
        .where(r.bank_code == bank, r.check_date == page.check_date, r.state.in_(OPEN))
        .order_by(r.id.desc())
        .limit(1)
    ).first()
    complete = len(held) + 1 == page.child_pack_num
    if request is not None:
        conn.execute(
            update(recon_requests)
            .where(r.id == request.id)
            .values(state="COMPLETE" if complete else "RECEIVING", updated_at=now)
        )
    if complete:
        events.append(
            (
                COMPLETE_EVENT,
                {
                    "bank": bank,
                    "check_date": page.check_date.isoformat(),
                    "request": None if request is None else request.msg_id,
                    "pages": page.child_pack_num,
                    "lines": page.all_num,
                },
            )
        )
    return events, False, None


def bank_answered(
    conn: Connection, bank: str, msg_no: str, msg_id: str, result: int, add_word: str, now: datetime
) -> service.Events:
    """The bank's 9120 to our 4005 or 2507 (the outbox row is settled by the caller): a refused 4005 fails its
    request; a refused 2507 is noted on the request it reported."""
    if result == service.OK:
        return []
    r = recon_requests.c
    if msg_no == "4005":
        error = f"the bank refused the statement request: {result} {add_word}".strip()
        done = conn.execute(
            update(recon_requests)
            .where(r.bank_code == bank, r.msg_id == msg_id, r.state.in_(OPEN))
            .values(state="FAILED", error=error, updated_at=now)
        )
        if done.rowcount:
            return [(REFUSED_EVENT, {"bank": bank, "request": msg_id, "error": error})]
        return []
    error = f"the bank refused the result (2507): {result} {add_word}".strip()
    conn.execute(
        update(recon_requests).where(r.bank_code == bank, r.result_msg_id == msg_id).values(error=error, updated_at=now)
    )
    return [("alert", {"bank": bank, "msg_id": msg_id, "reason": error})]


def stored_pages(engine: Engine, bank: str, check_date: date) -> Generator[Statement, None, None]:
    """The pages held for `bank` and `check_date`, decoded, in page order, read in one transaction (streamed)."""
    p = recon_pages.c
    with transaction(engine, read_only=True) as conn:
        query = select(p.document).where(p.bank_code == bank, p.check_date == check_date).order_by(p.cur_pack_no)
        for (document,) in conn.execution_options(yield_per=8).execute(query):
            yield decode_page(document)


def decode_page(document: str) -> Statement:
    """A kept page (its `protocols.jsonform` JSON) as the `Statement` it was: the same as
    `jsonform.from_json(Statement, …)` but about ten times faster, for pages this module wrote from messages
    that were decoded and checked on arrival (a test holds the two to the same result).

    Raises:
        KeyError, ValueError, TypeError: not a page this module wrote.
    """
    data = json.loads(document)
    dates: dict[str, date] = {}

    def day(text: str) -> date:
        found = dates.get(text)
        if found is None:
            found = dates[text] = parse_date8(text)
        return found

    details = tuple(
        StatementDetail(
            vt_code=str(d["VtCode"]),
            voucher_no=str(d["VoucherNo"]),
            x_agent_business_no=str(d["XAgentBusinessNo"]),
            x_pay_date=day(d["XPayDate"]),
            amt_fen=parse_amount_fen(d["Amt"]),
            pro_state=int(d["ProState"]),
            payee_acct_no=str(d["PayeeAcctNo"]),
        )
        for d in data.get("DetailList", ())
    )
    return Statement(
        check_date=day(data["CheckDate"]),
        all_num=int(data["AllNum"]),
        all_amt_fen=parse_amount_fen(data["AllAmt"]),
        child_pack_num=int(data["ChildPackNum"]),
        cur_pack_no=int(data["CurPackNo"]),
        details=details,
    )


def finish_run(
    conn: Connection,
    bank: str,
    check_date: date,
    request_msg_id: str | None,
    run_id: int,
    result: ReconcileResult,
    now: datetime,
    node: str,
    work_date: date,
) -> dict[str, Any]:
    """After the run: the 2507 into the outbox, its MsgId on the run and the request (`RECONCILED`); returns the
    run's summary (:func:`run_summary`). A superseded request's run sends nothing."""
    _lock(conn, bank, check_date)
    r = recon_requests.c
    current = True
    if request_msg_id is not None:
        state = conn.execute(select(r.state).where(r.msg_id == request_msg_id)).scalar_one_or_none()
        current = state == "COMPLETE"
    if current:
        result_msg_id = service.enqueue(conn, bank, node, result, now, work_date, prefix=RESULT_PREFIX)
        conn.execute(
            update(recon_runs).where(recon_runs.c.id == run_id).values(result_msg_id=result_msg_id, result_sent_at=now)
        )
        if request_msg_id is not None:
            conn.execute(
                update(recon_requests)
                .where(r.msg_id == request_msg_id)
                .values(state="RECONCILED", run_id=run_id, result_msg_id=result_msg_id, updated_at=now, error=None)
            )
    return run_summary(conn, run_id)


def fail_request(
    conn: Connection, msg_id: str, error: str, now: datetime, states: tuple[str, ...] = UNFINISHED
) -> bool:
    """Mark a request `FAILED` with `error` if it is in one of `states`; whether it was."""
    r = recon_requests.c
    done = conn.execute(
        update(recon_requests)
        .where(r.msg_id == msg_id, r.state.in_(states))
        .values(state="FAILED", error=error[:2000], updated_at=now)
    )
    return bool(done.rowcount)


def run_summary(conn: Connection, run_id: int) -> dict[str, Any]:
    """A stored run as `tgw reconcile --json` prints it (what the API and the CLI show after a run over the link).

    `open_breaks`: the bank's breaks open now, of this date and before; `closed_breaks`: earlier ones this run's
    statement cleared.
    """
    run = conn.execute(select(recon_runs).where(recon_runs.c.id == run_id)).mappings().first()
    if run is None:
        raise LookupError(f"no reconciliation run {run_id}")
    b = recon_breaks.c
    bank, check_date = run["bank_code"], run["check_date"]
    open_count = conn.execute(
        select(func.count()).where(b.bank_code == bank, b.state == "OPEN", b.check_date <= check_date)
    ).scalar_one()
    closed_count = conn.execute(
        select(func.count()).where(
            b.bank_code == bank, b.check_date < check_date, b.closed_on == check_date, b.closed_reason == _CLEARED
        )
    ).scalar_one()
    linked = conn.execute(select(func.count()).where(recon_matches.c.run_id == run_id)).scalar_one()
    counts = json.loads(run["counts"] or "{}")
    return {
        "bank": bank,
        "check_date": check_date.isoformat(),
        "run_id": run_id,
        "source": run["source"],
        "ledger": {"count": run["ledger_count"], "amount_fen": run["ledger_fen"]},
        "statement": {"count": run["statement_count"], "amount_fen": run["statement_fen"]},
        "matched": run["matched"],
        "reconciled_vouchers": int(linked),
        "breaks": {cls: n for cls, n in counts.items() if n},
        "break_count": run["break_count"],
        "open_breaks": int(open_count),
        "closed_breaks": int(closed_count),
        "result_msg_id": run["result_msg_id"],
        "result_sent_at": None if run["result_sent_at"] is None else run["result_sent_at"].isoformat(),
    }


def _request_json(conn: Connection, row: Any) -> dict[str, Any]:
    p = recon_pages.c
    held, of = conn.execute(
        select(func.count(), func.max(p.child_pack_num)).where(
            p.bank_code == row["bank_code"], p.check_date == row["check_date"]
        )
    ).one()
    data = {
        "id": row["id"],
        "msg_id": row["msg_id"],
        "bank": row["bank_code"],
        "check_date": row["check_date"].isoformat(),
        "state": row["state"],
        "requested_by": row["requested_by"],
        "requested_at": row["requested_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "pages": {"held": int(held), "of": of},
        "run_id": row["run_id"],
        "result_msg_id": row["result_msg_id"],
        "error": row["error"],
    }
    if row["run_id"] is not None and row["state"] == "RECONCILED":
        try:
            run: dict[str, Any] | None = run_summary(conn, row["run_id"])
        except LookupError:
            run = None
        # the run this request's 2507 reported, or None: replaced since by a re-run of the date (which may
        # have been given the same id again)
        data["run"] = run if run is not None and run["result_msg_id"] == row["result_msg_id"] else None
    return data


def get_request(conn: Connection, ref: str) -> dict[str, Any] | None:
    """One request by its id or its 4005's MsgId, with its pages held and, once reconciled, the run's summary."""
    r = recon_requests.c
    where = r.id == int(ref) if ref.isdigit() else r.msg_id == ref
    row = conn.execute(select(recon_requests).where(where)).mappings().first()
    return None if row is None else _request_json(conn, row)


def list_requests(
    conn: Connection, bank: str | None = None, check_date: date | None = None, limit: int = _POLL_LIMIT
) -> list[dict[str, Any]]:
    """Requests, newest first, optionally of one bank and/or check date."""
    r = recon_requests.c
    query = select(recon_requests).order_by(r.id.desc()).limit(limit)
    if bank is not None:
        query = query.where(r.bank_code == bank)
    if check_date is not None:
        query = query.where(r.check_date == check_date)
    return [_request_json(conn, row) for row in conn.execute(query).mappings().all()]


# --- the worker: reading the pages back and reconciling them ----------------------------------------------------


def report_paths(directory: Path, bank: str, check_date: date) -> dict[str, Path]:
    """Where the reports of `bank`'s run of `check_date` go (as `tgw reconcile` writes them)."""
    stem = directory / "reports" / f"recon-{bank}-{check_date:%Y%m%d}"
    return {kind: stem.with_suffix(f".{kind}") for kind in ("html", "csv", "json")}


@dataclass(frozen=True, slots=True)
class LinkRun:
    """What the worker did: the run and the 2507 that reports it."""

    day: DayRun
    result: ReconcileResult


def reconcile_pages(engine: Engine, bank: str, check_date: date, directory: Path, now: datetime) -> LinkRun:
    """Reconcile the pages held for `bank` and `check_date` and store the run; write its reports (blocking).

    Raises:
        reconciliation.errors.ReconciliationError: the pages do not make a statement that can be reconciled.
    """
    from gateway.reconcile.store_port import run_day
    from reconciliation.ports import TempFileScratch
    from reconciliation.report import reconcile_result, to_csv, to_html, to_json

    scratch = directory / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    pages = stored_pages(engine, bank, check_date)
    try:
        statement = from_messages(pages, source=f"4006 over the link ({bank} {check_date:%Y%m%d})")
        day = run_day(engine, bank, check_date, statement, scratch=TempFileScratch(str(scratch)), now=now)
    finally:
        pages.close()
    paths = report_paths(directory, bank, check_date)
    paths["html"].parent.mkdir(parents=True, exist_ok=True)
    paths["html"].write_text(to_html(day.result, open_breaks=day.carry.open), encoding="utf-8")
    paths["csv"].write_text(to_csv(day.result.breaks), encoding="utf-8")
    paths["json"].write_text(to_json(day.result, day.carry), encoding="utf-8")
    return LinkRun(day, reconcile_result(day.result))


# --- the reactor side -----------------------------------------------------------------------------------------


class LinkReconciler:
    """Asks banks for statements, reconciles complete ones, and tells whoever waits (module docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.timeout_s = hub.config.reconciliation.statement_timeout_s
        self._watchers: dict[str, list[defer.Deferred[dict[str, Any]]]] = {}
        self._timers: dict[str, IDelayedCall] = {}
        self._asked: dict[str, tuple[str, date]] = {}  # request MsgId → (bank, check date), while it may be waited on
        self._running: set[tuple[str, date]] = set()
        self._again: dict[tuple[str, date], dict[str, Any]] = {}
        #: Runs done and failed (for tests and metrics).
        self.runs = 0
        self.failures = 0

    # --- asking -----------------------------------------------------------------------------------------------

    def request(self, bank: str, check_date: date, actor: str) -> defer.Deferred[str]:
        """Record the request and send the 4005; fires with its MsgId once recorded. The request fails by itself
        (`FAILED`) if no complete statement arrives within the timeout.

        Raises (in the Deferred):
            ValueError: `bank` is not configured.
        """
        hub = self.hub
        if bank not in hub.config.banks:
            return defer.fail(ValueError(f"unknown bank {bank!r}; configured: {', '.join(hub.config.banks)}"))
        d = hub.db.run(request_statement, bank, check_date, actor, hub.now(), hub.config.node, hub.work_date())

        def requested(msg_id: str) -> str:
            for older in [m for m, key in self._asked.items() if key == (bank, check_date)]:
                self._settle(older, StatementSuperseded(f"request {older}: superseded by {msg_id}"))
            self._asked[msg_id] = (bank, check_date)
            self._timers[msg_id] = hub.clock.callLater(self.timeout_s, self._expired, msg_id)
            hub.emit("statement_requested", {"bank": bank, "check_date": check_date.isoformat(), "request": msg_id})
            hub.kick(bank)
            return msg_id

        return d.addCallback(requested)

    def watch(self, msg_id: str) -> defer.Deferred[dict[str, Any]]:
        """A Deferred that fires with the summary of the run of request `msg_id`, or fails (:class:`LinkError`)."""
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._watchers.setdefault(msg_id, []).append(d)
        return d

    def reconcile(self, bank: str, check_date: date, actor: str) -> defer.Deferred[dict[str, Any]]:
        """Ask `bank` for its statement of `check_date` and wait for the run: the Deferred fires with the run's
        summary (:func:`run_summary`, with the request's MsgId as `request`), or fails with a
        :class:`LinkError` (or ValueError for an unknown bank)."""
        return self.request(bank, check_date, actor).addCallback(self.watch)

    def _settle(self, msg_id: str | None, outcome: dict[str, Any] | LinkError) -> None:
        if msg_id is None:
            return
        self._asked.pop(msg_id, None)
        timer = self._timers.pop(msg_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        for d in self._watchers.pop(msg_id, []):
            if isinstance(outcome, LinkError):
                d.errback(outcome)
            else:
                d.callback({**outcome, "request": msg_id})

    def _expired(self, msg_id: str) -> None:
        self._timers.pop(msg_id, None)
        error = f"no complete statement within {self.timeout_s:g} s"
        d = self.hub.db.run(fail_request, msg_id, error, self.hub.now(), OPEN)
        d.addErrback(lambda f: log.error("could not fail the expired request %s: %s", msg_id, f.value))
        d.addBoth(lambda _: self._settle(msg_id, StatementTimeout(f"request {msg_id}: {error}")))

    # --- outcome events of the store's transactions (the hub passes them on) ------------------------------------

    def outcome(self, kind: str, data: dict[str, Any]) -> None:
        """An outcome event of a bank's message: a statement complete, or a 4005 refused."""
        if kind == COMPLETE_EVENT:
            self.statement_complete(data)
        elif kind == REFUSED_EVENT:
            self._settle(data["request"], StatementRefused(data["error"]))

    def statement_complete(self, data: dict[str, Any]) -> None:
        """Every page of a statement is held: reconcile it (one run at a time per bank and date)."""
        key = (data["bank"], date.fromisoformat(data["check_date"]))
        if key in self._running:
            self._again[key] = data  # the statement changed while it was being reconciled: once more after
            return
        self._running.add(key)
        self._run(key, data.get("request")).addBoth(self._ran, key)

    def _ran(self, _: Any, key: tuple[str, date]) -> None:
        self._running.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self.statement_complete(again)

    def _worker(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Run a blocking function: on SQLite on the store's thread, on PostgreSQL on the reactor's thread pool
        (module docstring); inline with a test's synchronous store."""
        db = self.hub.db
        pool = getattr(db, "pool", None)
        if pool is None:
            return defer.maybeDeferred(fn, *args)
        if is_sqlite(db.engine):
            return threads.deferToThreadPool(db.reactor, pool, fn, *args)  # type: ignore[arg-type]
        return threads.deferToThread(fn, *args)

    @defer.inlineCallbacks
    def _run(self, key: tuple[str, date], request: str | None) -> Generator[Any, Any, None]:
        hub = self.hub
        bank, check_date = key
        started = hub.clock.seconds()
        try:
            done: LinkRun = yield self._worker(
                reconcile_pages, hub.db.engine, bank, check_date, hub.config.directory, hub.now()
            )
            summary = yield hub.db.run(
                finish_run,
                bank,
                check_date,
                request,
                done.day.run_id,
                done.result,
                hub.now(),
                hub.config.node,
                hub.work_date(),
            )
        except Exception as exc:
            self.failures += 1
            error = f"cannot reconcile {bank} {check_date:%Y%m%d} over the link: {exc}"
            log.error("%s", error)
            if request is not None:
                failed = hub.db.run(fail_request, request, error, hub.now())
                failed.addErrback(lambda f: log.error("could not record the failure of %s: %s", request, f.value))
                yield failed
            hub.emit("alert", {"bank": bank, "reason": error[:200]})
            self._settle(request, ReconcileFailed(error))
            return
        self.runs += 1
        summary["reports"] = {k: str(v) for k, v in report_paths(hub.config.directory, bank, check_date).items()}
        log.info(
            "%s %s reconciled over the link in %.1f s: %d breaks, 2507 %s",
            bank,
            check_date,
            hub.clock.seconds() - started,
            summary["break_count"],
            summary["result_msg_id"] or "not sent (superseded)",
        )
        hub.emit("reconciliation", summary)
        hub.kick(bank)
        self._settle(request, summary)


def reconciler_of(hub: Hub) -> LinkReconciler:
    """The hub's reconciler over the link (`hub.link_reconciler`, attached by `gateway.app.start`), made on
    first use when none is attached."""
    if hub.link_reconciler is None:
        hub.link_reconciler = LinkReconciler(hub)
    return hub.link_reconciler


# --- the HTTP API ---------------------------------------------------------------------------------------------

#: What a waiting API call answers when the run does not come.
_STATUS: Final[dict[type[LinkError], int]] = {
    StatementRefused: 502,
    StatementTimeout: 504,
    ReconcileFailed: 422,
    StatementSuperseded: 409,
}


def parse_check_date(text: Any) -> date:
    """`YYYYMMDD` or `YYYY-MM-DD`.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(text, str):
        raise ValueError('"date" is the check date, YYYYMMDD or YYYY-MM-DD')
    try:
        return date.fromisoformat(text) if "-" in text else parse_date8(text)
    except ValueError:
        raise ValueError(f'"date" is the check date, YYYYMMDD or YYYY-MM-DD, not {text[:20]!r}') from None


def _with_reports(hub: Hub, request: dict[str, Any]) -> dict[str, Any]:
    """A request's JSON with the paths of its run's reports (those written)."""
    run = request.get("run")
    if run:
        paths = report_paths(hub.config.directory, run["bank"], date.fromisoformat(run["check_date"]))
        run["reports"] = {kind: str(path) for kind, path in paths.items() if path.exists()}
    return request


def _arg(request: Any, name: str) -> str | None:
    return query_arg(request, name)


def _actor(request: Any) -> str:
    return actor_of(request)


@defer.inlineCallbacks
def route(hub: Hub, request: Any, method: str, path: list[str]) -> Generator[Any, Any, tuple[int, Any]]:
    """`/api/reconciliation/requests[/REF]` (`path`: what follows `requests`, or the whole path from it):

    - `POST` `{"bank": "ICBC", "date": "20261123" | "2026-11-23", "wait": false}`: ask the bank; 202 with the
      request, or with `"wait": true` 200 with the request and the run's summary once stored (502 the bank
      refused, 504 no statement in time, 422 the statement could not be reconciled, 409 superseded);
    - `GET` with `bank`, `date` (both optional): the requests, newest first; `GET …/REF` (id or MsgId): one.

    Returns (HTTP status, JSON-ready data); a bad body or argument raises ValueError (400).
    """
    if path[:1] == ["requests"]:
        path = path[1:]
    if not path and method == "POST":
        body = json_object(request, 64 * 1024)  # {"bank": …, "date": …, "wait": …}
        bank, check_date, wait = body.get("bank"), parse_check_date(body.get("date")), body.get("wait", False)
        if not isinstance(bank, str) or bank not in hub.config.banks:
            raise ValueError(f'"bank" is one of {", ".join(hub.config.banks)}, not {bank!r}')
        if not isinstance(wait, bool):
            raise ValueError('"wait" is true or false')
        reconciler = reconciler_of(hub)
        msg_id = yield reconciler.request(bank, check_date, _actor(request))
        if not wait:
            return 202, {"request": _with_reports(hub, (yield hub.run_in_store(get_request, msg_id)))}
        try:
            summary = yield reconciler.watch(msg_id)
        except LinkError as exc:
            found = yield hub.run_in_store(get_request, msg_id)
            return _STATUS.get(type(exc), 500), {"error": "not_reconciled", "message": str(exc), "request": found}
        found = yield hub.run_in_store(get_request, msg_id)
        return 200, {"request": _with_reports(hub, found), "run": summary}
    if not path and method == "GET":
        bank = _arg(request, "bank")
        text = _arg(request, "date")
        on = None if text is None else parse_check_date(text)
        found = yield hub.run_in_store(list_requests, bank, on)
        return 200, {"requests": [_with_reports(hub, item) for item in found]}
    if len(path) == 1 and method == "GET":
        found = yield hub.run_in_store(get_request, path[0])
        if found is None:
            return 404, {"error": "not_found", "message": f"no statement request {path[0]}"}
        return 200, _with_reports(hub, found)
    return 404, {"error": "not_found", "message": f"{method} /api/reconciliation/requests/{'/'.join(path)}"}
