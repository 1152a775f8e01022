"""What an operator does to a voucher from the dashboard, beyond cancelling it: resolve it when in doubt, resend it.

Each function is one business step over one transaction (the caller owns it, as in
:mod:`gateway.payments.service`), goes through the state machine (:mod:`gateway.payments.machine`), writes the
hash-chained history with the operator as actor, and returns the new state and the events for the live feed.

**Resolving a voucher in doubt** (DESIGN.md "In doubt is a state"): the gateway asks the bank (9101) by itself;
when the bank's answer is known otherwise (its 9102 keeps saying "processing", or the bank confirmed by phone or
letter), an approver records it, with the evidence. The resolution applies the machine's operator events —
`operator_paid`, `operator_failed` or `operator_not_received` — never the bank's own `receipt_paid`,
`receipt_failed` or `status_not_received`: the history says that a person decided, which person (the actor), what
the bank said by the operator's account (`evidence`), and what the bank last said on the wire (`bank_status`, its
latest 9102 answer while the voucher was in doubt, or none). The effects are those of the bank's event it stands
for: a payment records the bank's serial and date, a refusal gives an 8202's quota back, "never received" queues
the voucher's own message again (same MsgId, same bytes). Open status queries for the voucher are withdrawn, so a
late 9102 finds the voucher settled and changes nothing.

**Resending**: for a bank that reconnected, the voucher's outbox row is made due now: same `MsgId`, same signed
bytes (the row keeps the first send's wire). Only a voucher not yet acknowledged (ACCEPTED, SENT) is resent; one
in doubt never is (only the bank's status settles it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, RowMapping

from gateway.payments.machine import Event, State
from gateway.payments.service import Refused, transition
from gateway.store import repo
from gateway.store.tables import outbox, vouchers
from protocols.messages import VoucherKey

#: How an approver may resolve a voucher in doubt, and the machine event each applies.
RESOLUTIONS: Final = {
    "paid": Event.OPERATOR_PAID,
    "failed": Event.OPERATOR_FAILED,
    "not_received": Event.OPERATOR_NOT_RECEIVED,
}
EVIDENCE_LEN_MIN: Final = 4
EVIDENCE_LEN_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The voucher's state afterwards and what to tell the live feed."""

    state: State
    events: list[tuple[str, dict[str, Any]]]
    bank: str


def _row(conn: Connection, key: VoucherKey) -> RowMapping:
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
        raise Refused(f"unknown voucher {key}")
    return row


def _event(row: RowMapping, state: State) -> tuple[str, dict[str, Any]]:
    key = VoucherKey(row["adm_div_code"], row["st_year"], row["vt_code"], row["voucher_no"])
    return (
        "voucher",
        {"key": str(key), "bank": row["bank_code"], "state": state.value, "amount_fen": row["amount_fen"]},
    )


def _last_bank_status(conn: Connection, voucher_id: int) -> dict[str, Any] | None:
    """The bank's latest 9102 answer about the voucher since it went in doubt (its history's `status_pending`
    entry: XStatus and XAddWord, when and under which MsgId), or None if the bank has not answered yet."""
    found: dict[str, Any] | None = None
    for entry in repo.history(conn, voucher_id):
        if entry.event == Event.DEADLINE.value:
            found = None  # an answer from before an earlier doubt says nothing about this one
        elif entry.event == Event.STATUS_PENDING.value and entry.actor.startswith("bank:"):
            said = json.loads(entry.detail)
            found = {
                "x_status": said.get("x_status"),
                "x_add_word": said.get("x_add_word"),
                "at": entry.at.isoformat(),
                "msg_id": entry.msg_id,
            }
    return found


def resolve_in_doubt(
    conn: Connection,
    key: VoucherKey,
    resolution: str,
    actor: str,
    now: datetime,
    *,
    evidence: str,
    x_agent_business_no: str | None = None,
    x_pay_date: date | None = None,
) -> ActionResult:
    """Settle a voucher in doubt with what the bank's status said.

    Args:
        resolution: "paid" (needs the bank's serial and pay date), "failed", or "not_received" (queued again,
            same MsgId).
        evidence: what the bank's status was and where it came from (kept in the history).

    Raises:
        Refused: unknown voucher, not in doubt, unknown resolution, or missing evidence or payment details.
    """
    event = RESOLUTIONS.get(resolution)
    if event is None:
        raise Refused(f"unknown resolution {resolution!r}; one of {', '.join(RESOLUTIONS)}")
    evidence = evidence.strip()
    if not EVIDENCE_LEN_MIN <= len(evidence) <= EVIDENCE_LEN_MAX:
        raise Refused(f"say what the bank's status was ({EVIDENCE_LEN_MIN}-{EVIDENCE_LEN_MAX} characters)")
    row = _row(conn, key)
    old = State(row["state"])
    if old is not State.IN_DOUBT:
        raise Refused(f"voucher {key} is {old.value}, not in doubt")
    changes: dict[str, Any] = {"deadline_at": None}
    detail: dict[str, Any] = {
        "resolution": resolution,
        "evidence": evidence,
        "by": "operator",
        "bank_status": _last_bank_status(conn, row["id"]),
    }
    if event is Event.OPERATOR_PAID:
        serial = (x_agent_business_no or "").strip()
        if not serial or x_pay_date is None:
            raise Refused("a payment needs the bank's serial (XAgentBusinessNo) and its pay date")
        changes |= {"x_agent_business_no": serial[:42], "x_pay_date": x_pay_date, "x_pay_amt_fen": row["amount_fen"]}
        detail |= {"x_agent_business_no": serial[:42], "x_pay_date": x_pay_date.isoformat()}
    elif event is Event.OPERATOR_FAILED:
        changes["reason"] = evidence
    new = transition(conn, row, event, now, actor, detail, None, **changes)  # every resolution applies to IN_DOUBT
    # withdraw the open status queries: the answer is known
    conn.execute(
        update(outbox)
        .where(outbox.c.voucher_id == row["id"], outbox.c.msg_no == "9101", outbox.c.state.in_(("PENDING", "SENT")))
        .values(state="NACKED", add_word=f"resolved by {actor}")
    )
    if event is Event.OPERATOR_FAILED and row["vt_code"] == "8202":
        repo.release_quota(conn, row["adm_div_code"], row["st_year"], row["agency_code"], row["amount_fen"], now)
    if event is Event.OPERATOR_NOT_RECEIVED:
        conn.execute(
            update(outbox)
            .where(outbox.c.voucher_id == row["id"], outbox.c.msg_no == row["vt_code"])
            .values(state="PENDING", next_attempt_at=now)
        )
    return ActionResult(new, [_event(row, new)], row["bank_code"])


def resend(conn: Connection, key: VoucherKey, actor: str, now: datetime) -> ActionResult:
    """Make a voucher's unacknowledged outbound message due now (same MsgId, same bytes).

    Raises:
        Refused: unknown voucher, already acknowledged or settled, in doubt, or nothing to resend.
    """
    row = _row(conn, key)
    state = State(row["state"])
    if state is State.IN_DOUBT:
        raise Refused(f"voucher {key} is in doubt: only the bank's status settles it (never resent blindly)")
    if state not in (State.ACCEPTED, State.SENT):
        raise Refused(f"voucher {key} is {state.value}: nothing to resend")
    result = conn.execute(
        update(outbox)
        .where(
            outbox.c.voucher_id == row["id"],
            outbox.c.msg_no == row["vt_code"],
            outbox.c.state.in_(("PENDING", "SENT")),
        )
        .values(next_attempt_at=now)
    )
    if result.rowcount == 0:
        raise Refused(f"voucher {key} has no unacknowledged message to resend")
    repo.append_history(
        conn,
        voucher_id=row["id"],
        at=now,
        event="resend_requested",
        from_state=state.value,
        to_state=state.value,
        actor=actor,
        detail={"by": "operator", "msg_id": row["msg_id"]},
        msg_id=row["msg_id"],
    )
    return ActionResult(state, [_event(row, state)], row["bank_code"])
