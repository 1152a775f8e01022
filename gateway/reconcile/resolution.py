"""The resolution workflow of reconciliation breaks (issue 6 §4): assign, comment, resolve with a reason code.

A resolution that changes a voucher's state needs a second operator's approval (four eyes): the first operator
proposes it (`PROPOSED`), a different operator with the approver role approves (`APPROVED`, and the correction is
applied through the payment service's one transition) or rejects it (`REJECTED`, the break stays open). A
resolution that changes nothing (a timing difference, a bank correction to come) is applied at once
(`RESOLVED`). Everything is appended to `recon_break_events` and to the voucher's history where a voucher changes.

The shared vocabulary (reason codes, :class:`Refused`) is defined here first; the store functions follow.

**The rules.** Every step works on an OPEN break only. A step that is not allowed raises :class:`Refused` with a
message for the operator and changes nothing (the caller's transaction rolls back; the API and the CLI record
the refusal in the audit log, :func:`record_refusal`):

* an unknown reason code; the reason OTHER without a note;
* a resolution proposed while another one awaits its decision;
* a reason that changes a voucher on a break that names none (a summary mismatch, a return notice, a voucher the
  gateway does not hold), or on a voucher whose state it does not apply to (the machine's table,
  :data:`gateway.payments.machine.TRANSITIONS`), checked when proposed and again when approved;
* approving or rejecting what is not PROPOSED, or by the operator who proposed it (four eyes: actors compared).

**The audit history.** Each step appends one `recon_break_events` row (who, when, what, a JSON detail), and the
workflow columns of the break (`assigned_to`, `resolution`, `resolution_state`, `proposed_by/at`,
`decided_by/at`, and `state` when it closes) are exactly what :func:`replay` of those events gives: the store
functions write the columns with the same :func:`fold` that a re-run uses to rebuild them
(:mod:`gateway.reconcile.store_port`), so the two can never disagree.

**The voucher corrections** (on approval, through :func:`gateway.payments.service.transition`, actor the
approver, the history's detail naming the break, the proposer and the approver):

* CONFIRMED_PAID (`recon_paid`: FAILED or IN_DOUBT → PAID) needs the statement's line for the voucher, paid: its
  serial, pay date and amount become the voucher's receipt values; an 8202's quota is used again when it was
  released at the failure (refused if the agency's quota no longer covers it);
* CONFIRMED_FAILED (`recon_failed`: PAID or IN_DOUBT → FAILED) gives an 8202's quota back;
* CONFIRMED_RETURNED (`recon_returned`: PAID → RETURNED) records the whole paid amount as returned and gives an
  8202's quota back.

Open status queries (9101) of a voucher that was in doubt are withdrawn, as when an operator settles it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import RowMapping

from gateway.payments.machine import TRANSITIONS, Event, State
from gateway.payments.service import transition
from gateway.store import repo
from gateway.store.errors import ConcurrentUpdate, QuotaExceeded, QuotaUnderflow
from gateway.store.tables import ACTOR_LEN, outbox, recon_break_events, recon_breaks, vouchers
from protocols.messages import VoucherKey


class Refused(Exception):
    """A workflow step that is not allowed (unknown break, wrong state, the proposer approving, a bad reason)."""


class NotFound(Refused):
    """The break (or run) named does not exist (the API answers 404, the CLI exits 1)."""


@dataclass(frozen=True, slots=True)
class Reason:
    """A resolution's reason code; `event` is the voucher correction it applies (None: it changes no voucher)."""

    code: str
    zh: str
    en: str
    event: str | None = None  # a gateway.payments.machine.Event value (RECON_*), applied on approval

    @property
    def needs_approval(self) -> bool:
        """Four eyes: a resolution that changes a voucher's state needs a second operator."""
        return self.event is not None


REASONS: Final[tuple[Reason, ...]] = (
    Reason("TIMING", "跨日时差", "Cut-off timing, clears on a later statement"),
    Reason("BANK_CORRECTION", "银行更正", "The bank corrects its statement"),
    Reason("VERIFIED", "差异已核实", "Difference verified, nothing to change"),
    Reason("DUPLICATE_RECOVERED", "重复支付已追回", "Duplicate payment recovered by the bank"),
    Reason("OTHER", "其他", "Other (explained in the note)"),
    Reason("CONFIRMED_PAID", "确认已支付", "Bank proved it paid: record the voucher PAID", "recon_paid"),
    Reason("CONFIRMED_FAILED", "确认未支付", "Bank proved it did not pay: record the voucher FAILED", "recon_failed"),
    Reason("CONFIRMED_RETURNED", "确认已退票", "Bank proved the payment came back: RETURNED", "recon_returned"),
)
REASON_BY_CODE: Final = {r.code: r for r in REASONS}

#: Reasons that change no voucher (the only ones a break without a voucher can take).
NO_CHANGE_CODES: Final = tuple(r.code for r in REASONS if not r.needs_approval)
#: Longest note, comment or rejection reason kept (characters).
TEXT_MAX: Final = 2000
#: `recon_breaks.closed_reason` of a break people closed (resolved at once, or approved).
CLOSED_RESOLVED: Final = "resolved"

#: The events of a break's audit history (`recon_break_events.event`).
ASSIGNED: Final = "assigned"
COMMENTED: Final = "commented"
PROPOSED: Final = "proposed"
RESOLVED: Final = "resolved"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"


# --- the workflow columns as a fold over the events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workflow:
    """The workflow columns of a `recon_breaks` row (and its `state`, `closed_on`, `closed_reason`)."""

    state: str = "OPEN"
    closed_on: date | None = None
    closed_reason: str | None = None
    assigned_to: str | None = None
    resolution: str | None = None
    resolution_note: str | None = None
    resolution_state: str | None = None
    proposed_by: str | None = None
    proposed_at: datetime | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Workflow:
        """The workflow a row holds."""
        return cls(**{name: row[name] for name in cls.__slots__})

    def values(self) -> dict[str, Any]:
        """The columns to write."""
        return {name: getattr(self, name) for name in self.__slots__}


def fold(workflow: Workflow, event: str, actor: str, at: datetime, detail: Mapping[str, Any]) -> Workflow:
    """The workflow after one event (pure; the store functions and :func:`replay` both use it)."""
    if event == ASSIGNED:
        return replace(workflow, assigned_to=detail.get("to") or None)
    if event in (PROPOSED, RESOLVED):
        workflow = replace(
            workflow,
            resolution=detail["reason"],
            resolution_note=detail.get("note") or None,
            resolution_state="PROPOSED" if event == PROPOSED else "RESOLVED",
            proposed_by=actor,
            proposed_at=at,
            decided_by=None,
            decided_at=None,
        )
        return _closed(workflow, at) if event == RESOLVED else workflow
    if event == APPROVED:
        return _closed(replace(workflow, resolution_state="APPROVED", decided_by=actor, decided_at=at), at)
    if event == REJECTED:
        return replace(workflow, resolution_state="REJECTED", decided_by=actor, decided_at=at)
    return workflow  # commented: the history only


def _closed(workflow: Workflow, at: datetime) -> Workflow:
    return replace(workflow, state="CLOSED", closed_on=at.date(), closed_reason=CLOSED_RESOLVED)


def replay(events: Iterable[Mapping[Any, Any]]) -> Workflow:
    """The workflow of an open break that went through `events` (`recon_break_events` rows, oldest first)."""
    workflow = Workflow()
    for e in events:
        workflow = fold(workflow, e["event"], e["actor"], e["at"], json.loads(e["detail"]))
    return workflow


# --- the store functions ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Corrected:
    """A voucher an approval changed: for the live feed (the dashboard's `voucher` event)."""

    key: VoucherKey
    bank: str
    state: State
    amount_fen: int


def assign(conn: Connection, break_id: int, assignee: str, actor: str, now: datetime) -> None:
    """Give an open break to someone (`assignee`, e.g. `operator:alice`) to work on.

    Raises:
        Refused: unknown or closed break, an empty or over-long name.
    """
    assignee = (assignee or "").strip()
    if not assignee:
        raise Refused("say whom the break is assigned to")
    if len(assignee) > ACTOR_LEN:
        raise Refused(f"an assignee is at most {ACTOR_LEN} characters")
    row = _open_break(conn, break_id)
    _step(conn, row, ASSIGNED, actor, now, {"to": assignee, "from": row["assigned_to"]})


def comment(conn: Connection, break_id: int, text: str, actor: str, now: datetime) -> None:
    """Add a comment to an open break's history.

    Raises:
        Refused: unknown or closed break, an empty or over-long comment.
    """
    text = _text(text, "comment", required=True)
    row = _open_break(conn, break_id)
    _step(conn, row, COMMENTED, actor, now, {"text": text})


def propose(conn: Connection, break_id: int, reason_code: str, note: str, actor: str, now: datetime) -> str:
    """Resolve an open break with a reason code.

    Returns:
        "RESOLVED" when the reason changes no voucher (the break is closed at once), "PROPOSED" when it does
        (the correction awaits a second operator's :func:`approve`).

    Raises:
        Refused: unknown or closed break; unknown reason code; OTHER without a note; a proposal already awaiting
            its decision; a correcting reason on a break without a voucher or on a voucher it does not apply to.
    """
    reason = REASON_BY_CODE.get((reason_code or "").strip().upper())
    if reason is None:
        raise Refused(f"unknown reason code {reason_code!r}; one of {', '.join(REASON_BY_CODE)}")
    note = _text(note, "note", required=reason.code == "OTHER")
    row = _open_break(conn, break_id)
    if row["resolution_state"] == "PROPOSED":
        raise Refused(
            f"break {break_id}: {row['resolution']} proposed by {row['proposed_by']} awaits a second operator's "
            "decision; approve or reject it first"
        )
    detail: dict[str, Any] = {"reason": reason.code, "note": note}
    if not reason.needs_approval:
        _step(conn, row, RESOLVED, actor, now, detail)
        return "RESOLVED"
    voucher = _voucher_of(conn, row, reason)
    plan = _plan(row, voucher, reason)
    detail |= {"voucher": str(_key(voucher)), "event": plan.event.value, "voucher_state": voucher["state"]}
    _step(conn, row, PROPOSED, actor, now, detail)
    return "PROPOSED"


def approve(conn: Connection, break_id: int, actor: str, now: datetime) -> Corrected | None:
    """The second pair of eyes approves the proposed resolution: the voucher correction is applied, the break
    closed.

    Returns:
        The voucher changed (None when the reason changes none: only a stored proposal of an older vocabulary).

    Raises:
        Refused: unknown or closed break; nothing proposed; `actor` proposed it (four eyes); the voucher is no
            longer in a state the correction applies to, or its agency's quota no longer covers it.
    """
    row = _open_break(conn, break_id)
    _proposal_decided_by(row, actor, "approve")
    reason = REASON_BY_CODE.get(row["resolution"] or "")
    if reason is None:
        raise Refused(f"break {break_id}: the proposed reason {row['resolution']!r} is no longer known")
    detail: dict[str, Any] = {"reason": reason.code, "proposed_by": row["proposed_by"]}
    corrected = None
    if reason.needs_approval:
        voucher = _voucher_of(conn, row, reason)
        plan = _plan(row, voucher, reason)
        _step(conn, row, APPROVED, actor, now, detail | {"voucher": str(_key(voucher)), "event": plan.event.value})
        corrected = _apply(conn, row, voucher, plan, reason, actor, now)
    else:
        _step(conn, row, APPROVED, actor, now, detail)
    return corrected


def reject(conn: Connection, break_id: int, why: str, actor: str, now: datetime) -> None:
    """The second operator turns the proposal down; the break stays open and may be proposed again.

    Raises:
        Refused: unknown or closed break; nothing proposed; `actor` proposed it; no reason given.
    """
    why = _text(why, "reason for the rejection", required=True)
    row = _open_break(conn, break_id)
    _proposal_decided_by(row, actor, "reject")
    _step(conn, row, REJECTED, actor, now, {"reason": row["resolution"], "why": why, "proposed_by": row["proposed_by"]})


def record_refusal(conn: Connection, now: datetime, actor: str, step: str, break_id: int, message: str) -> None:
    """Record a refused step in the audit log (its own transaction: the refused one rolled back)."""
    from gateway.auth import accounts

    accounts.audit(conn, now, actor, f"recon.{step}", "refused", f"break:{break_id}", {"message": message})


def events_of(conn: Connection, row: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """The audit history of a break (every event of its identity, across re-runs), oldest first."""
    e = recon_break_events.c
    rows = conn.execute(
        select(e.at, e.actor, e.event, e.detail)
        .where(
            e.bank_code == row["bank_code"],
            e.check_date == row["opened_on"],
            e.break_class == row["break_class"],
            e.break_key == row["break_key"],
        )
        .order_by(e.id)
    )
    return [{"at": r.at, "actor": r.actor, "event": r.event, "detail": json.loads(r.detail)} for r in rows]


# --- helpers ------------------------------------------------------------------------------------------------------


def _text(text: str | None, what: str, *, required: bool) -> str:
    text = (text or "").strip()
    if required and not text:
        raise Refused(f"the {what} is empty")
    if len(text) > TEXT_MAX:
        raise Refused(f"the {what} is longer than {TEXT_MAX} characters")
    return text


def _break(conn: Connection, break_id: int) -> RowMapping:
    row = conn.execute(select(recon_breaks).where(recon_breaks.c.id == break_id)).mappings().first()
    if row is None:
        raise NotFound(f"no break {break_id}")
    return row


def _open_break(conn: Connection, break_id: int) -> RowMapping:
    row = _break(conn, break_id)
    if row["state"] != "OPEN":
        why = f" ({row['closed_reason']} on {row['closed_on']})" if row["closed_reason"] else ""
        raise Refused(f"break {break_id} is closed{why}: only an open break can be worked on")
    return row


def _proposal_decided_by(row: RowMapping, actor: str, step: str) -> None:
    if row["resolution_state"] != "PROPOSED":
        now_state = row["resolution_state"] or "nothing proposed"
        raise Refused(f"break {row['id']}: nothing to {step} ({now_state}); a resolution must be proposed first")
    if row["proposed_by"] == actor:
        raise Refused(
            f"break {row['id']}: {actor} proposed this resolution; a second operator must {step} it (four eyes)"
        )


def _step(conn: Connection, row: RowMapping, event: str, actor: str, now: datetime, detail: dict[str, Any]) -> None:
    """Append the event and write the workflow it leads to, if the break is still as it was read."""
    before = Workflow.of(row)
    after = fold(before, event, actor, now, detail)
    b = recon_breaks.c
    same = (
        b.resolution_state.is_(None)
        if before.resolution_state is None
        else b.resolution_state == before.resolution_state
    )
    changed = conn.execute(
        update(recon_breaks).where(b.id == row["id"], b.state == "OPEN", same).values(**after.values())
    )
    if changed.rowcount != 1:
        raise Refused(f"break {row['id']} was changed by someone else meanwhile; look at it again")
    conn.execute(
        insert(recon_break_events).values(
            break_id=row["id"],
            bank_code=row["bank_code"],
            check_date=row["opened_on"],
            break_class=row["break_class"],
            break_key=row["break_key"],
            at=now,
            actor=actor[:ACTOR_LEN],
            event=event,
            detail=json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str),
        )
    )


def _key(voucher: Mapping[Any, Any]) -> VoucherKey:
    return VoucherKey(voucher["adm_div_code"], voucher["st_year"], voucher["vt_code"], voucher["voucher_no"])


def ledger_key(row: Mapping[Any, Any]) -> VoucherKey | None:
    """The full key the break's ledger side names, when it is the break's own voucher (no database needed)."""
    side = json.loads(row["ledger_side"]) if row["ledger_side"] else None
    if side is None:
        return None
    try:
        key = VoucherKey.parse(side["ref"])
    except (KeyError, ValueError):
        return None
    return key if (key.vt_code, key.voucher_no) == (row["vt_code"], row["voucher_no"]) else None


def voucher_key_of(conn: Connection, row: Mapping[Any, Any]) -> VoucherKey | None:
    """The full key of the gateway's voucher a break is about, or None (a summary, a return notice, a voucher
    the gateway does not hold, or a number held under several keys)."""
    key = ledger_key(row)
    if key is not None:
        return key
    if not row["voucher_no"]:
        return None
    v = vouchers.c
    found = conn.execute(
        select(v.adm_div_code, v.st_year, v.vt_code, v.voucher_no)
        .where(v.bank_code == row["bank_code"], v.vt_code == row["vt_code"], v.voucher_no == row["voucher_no"])
        .limit(2)
    ).all()
    return VoucherKey(*found[0]) if len(found) == 1 else None


def _voucher_of(conn: Connection, row: RowMapping, reason: Reason) -> RowMapping:
    only = f"only a reason that changes nothing applies ({', '.join(NO_CHANGE_CODES)})"
    if row["break_class"] == "summary_mismatch" or not row["voucher_no"]:
        raise Refused(f"break {row['id']} is about no single voucher ({row['break_key']}): {only}")
    key = voucher_key_of(conn, row)
    voucher = None
    if key is not None:
        v = vouchers.c
        voucher = (
            conn.execute(
                select(vouchers).where(
                    v.bank_code == row["bank_code"],
                    v.adm_div_code == key.adm_div_code,
                    v.st_year == key.st_year,
                    v.vt_code == key.vt_code,
                    v.voucher_no == key.voucher_no,
                )
            )
            .mappings()
            .first()
        )
    if voucher is None:
        raise Refused(f"break {row['id']}: {row['break_key']} is no voucher of the gateway's for {reason.code}: {only}")
    return voucher


@dataclass(frozen=True, slots=True)
class _Plan:
    event: Event
    to_state: State
    changes: dict[str, Any]
    use_quota_fen: int = 0
    release_quota_fen: int = 0


def _plan(row: RowMapping, voucher: RowMapping, reason: Reason) -> _Plan:
    """What the correction changes on `voucher`; refused when it does not apply to the voucher as it is."""
    assert reason.event is not None
    event = Event(reason.event)
    state = State(voucher["state"])
    key = _key(voucher)
    to_state = TRANSITIONS.get((state, event))
    if to_state is None:
        applies = ", ".join(s.value for (s, e) in TRANSITIONS if e is event)
        raise Refused(f"{reason.code} does not apply to voucher {key}: it is {state.value} (applies to {applies})")
    bank = json.loads(row["bank_side"]) if row["bank_side"] else None
    amount = int(voucher["amount_fen"])
    quota = voucher["vt_code"] == "8202"
    paid = int(voucher["x_pay_amt_fen"] or 0)
    held = amount if state is State.IN_DOUBT else max(paid - int(voucher["returned_fen"]), 0)
    if event is Event.RECON_PAID:
        if bank is None or bank["status"] != 0 or bank["amount_fen"] <= 0:
            raise Refused(f"{reason.code}: the bank's statement does not show voucher {key} paid")
        if bank["amount_fen"] > amount:
            raise Refused(f"{reason.code}: the bank paid {bank['amount_fen']} fen, more than the {amount} fen asked")
        changes = {
            "x_agent_business_no": (bank["serial"] or voucher["x_agent_business_no"] or "")[:42] or None,
            "x_pay_date": date.fromisoformat(bank["pay_date"]),
            "x_pay_amt_fen": bank["amount_fen"],
            "deadline_at": None,
        }
        if state is State.FAILED:  # the failure gave the quota back: the payment spends it again
            return _Plan(event, to_state, changes, use_quota_fen=bank["amount_fen"] if quota else 0)
        return _Plan(event, to_state, changes, release_quota_fen=amount - bank["amount_fen"] if quota else 0)
    if event is Event.RECON_FAILED:
        changes = {"x_pay_amt_fen": 0, "deadline_at": None}
        if bank is not None and voucher["x_pay_date"] is None:
            changes |= {"x_pay_date": date.fromisoformat(bank["pay_date"])}
            if bank["serial"] and not voucher["x_agent_business_no"]:
                changes["x_agent_business_no"] = bank["serial"][:42]
        return _Plan(event, to_state, changes, release_quota_fen=held if quota else 0)
    # RECON_RETURNED: the whole paid amount came back
    return _Plan(event, to_state, {"returned_fen": paid}, release_quota_fen=held if quota else 0)


def _apply(
    conn: Connection, row: RowMapping, voucher: RowMapping, plan: _Plan, reason: Reason, actor: str, now: datetime
) -> Corrected:
    detail = {
        "break_id": row["id"],
        "break": f"{row['break_class']} {row['break_key']}",
        "check_date": row["check_date"].isoformat(),
        "reason": reason.code,
        "note": row["resolution_note"] or "",
        "proposed_by": row["proposed_by"],
        "approved_by": actor,
        **{k: v.isoformat() if isinstance(v, date) else v for k, v in plan.changes.items() if k != "deadline_at"},
    }
    changes = dict(plan.changes)
    if plan.event is Event.RECON_FAILED and row["resolution_note"]:
        changes["reason"] = row["resolution_note"]
    try:
        new = transition(conn, voucher, plan.event, now, actor, detail, None, **changes)
    except ConcurrentUpdate:
        raise Refused(f"voucher {_key(voucher)} was changed meanwhile; look at the break again") from None
    adm, year, agency = voucher["adm_div_code"], voucher["st_year"], voucher["agency_code"]
    if plan.use_quota_fen > 0:
        try:
            repo.use_quota(conn, adm, year, agency, plan.use_quota_fen, now)
        except QuotaExceeded as exc:
            raise Refused(f"{reason.code}: the agency's quota no longer covers the payment ({exc})") from None
    if plan.release_quota_fen > 0:
        try:
            repo.release_quota(conn, adm, year, agency, plan.release_quota_fen, now)
        except QuotaUnderflow as exc:
            raise Refused(f"{reason.code}: the agency's quota in use is less than the payment's ({exc})") from None
    if voucher["state"] == State.IN_DOUBT.value:  # the answer is known: the open status queries are withdrawn
        conn.execute(
            update(outbox)
            .where(
                outbox.c.voucher_id == voucher["id"],
                outbox.c.msg_no == "9101",
                outbox.c.state.in_(("PENDING", "SENT")),
            )
            .values(state="NACKED", add_word=f"settled by reconciliation, break {row['id']}")
        )
    return Corrected(_key(voucher), voucher["bank_code"], new, int(voucher["amount_fen"]))
