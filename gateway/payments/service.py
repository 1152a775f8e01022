"""The payment service: every business step as one function over one database transaction.

Each function takes an open :class:`~sqlalchemy.engine.Connection` (the caller, :mod:`gateway.dbthread`, owns
the transaction: it commits when the function returns and rolls back when it raises), an explicit `now`, and
returns what the reactor side must do next (the reply to send, events for the dashboard, whether to kick the
dispatcher). Nothing here touches the network; state changes go through the table in
:mod:`gateway.payments.machine` and are written to the hash-chained history.

Guarantees implemented here (DESIGN.md "Guarantees", PROTOCOL.md §7):
- a bank's `MsgId` is its idempotency key: the same content gets the same answer, other content 91005;
- the voucher key is paid at most once (a unique constraint, and the state machine);
- the voucher and its outbound message are written in one transaction (the transactional outbox);
- a voucher in doubt is settled by asking the bank (9101), never by resending blindly.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping

from banks.dialect import Inbound
from gateway.config import PaymentSettings
from gateway.payments.machine import Event, IllegalTransition, State, next_state
from gateway.store import repo
from gateway.store.db import is_sqlite
from gateway.store.errors import QuotaExceeded
from gateway.store.tables import inbound, outbox, vouchers
from protocols import codec, jsonform, rules, schema
from protocols.errors import Problem, ResultCode, ValidationError
from protocols.messages import (
    CardSpending,
    Head,
    Message,
    Payload,
    QuotaNotice,
    Receipt,
    ReconcileResult,
    Reply,
    ReturnNotice,
    Statement,
    StatementRequest,
    StatusQuery,
    StatusReply,
    Voucher,
    VoucherKey,
)

Events = list[tuple[str, dict[str, Any]]]
OK = int(ResultCode.OK)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to answer a bank's request with, and what else follows from it."""

    result: int
    add_word: str = ""
    events: Events = field(default_factory=list)
    kick: bool = False


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An outbound message claimed for sending; `wire` is set when it was sent before (resend: same bytes)."""

    id: int
    msg_id: str
    message: Message
    wire: bytes | None


@dataclass(frozen=True, slots=True)
class Marked:
    """What :func:`mark_sent` recorded as sent (the ids the dispatcher may write), and the events it caused."""

    ids: frozenset[int]
    events: Events = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A voucher accepted by :func:`submit`."""

    key: VoucherKey
    bank: str
    id: int


class Refused(Exception):
    """A business rule refuses the request (91006); nothing it would have changed is kept."""

    def __init__(self, add_word: str) -> None:
        super().__init__(add_word)
        self.add_word = add_word[:200]


# --- statements of the payment path, built once --------------------------------------------------------------
# (SQLAlchemy then skips building each construct and its cache key per call: see gateway/store/repo.py)

_VOUCHER_BY_KEY = select(vouchers).where(
    vouchers.c.adm_div_code == bindparam("p_adm_div_code"),
    vouchers.c.st_year == bindparam("p_st_year"),
    vouchers.c.vt_code == bindparam("p_vt_code"),
    vouchers.c.voucher_no == bindparam("p_voucher_no"),
)
_INBOUND_SEEN = select(inbound).where(
    inbound.c.bank_code == bindparam("p_bank"), inbound.c.msg_id == bindparam("p_msg_id")
)
_INBOUND_INSERT = insert(inbound)
_OUTBOX_INSERT = insert(outbox)
_OUTBOX_BY_MSG_ID = select(outbox).where(
    outbox.c.bank_code == bindparam("p_bank"), outbox.c.msg_id == bindparam("p_msg_id")
)
_OUTBOX_SETTLE = (
    update(outbox)
    .where(outbox.c.id == bindparam("p_id"))
    .values(
        state=bindparam("p_state"),
        acked_at=bindparam("p_at"),
        result_code=bindparam("p_result"),
        add_word=bindparam("p_add_word"),
    )
)
_OUTBOX_RECEIPTED = (
    update(outbox)
    .where(
        outbox.c.voucher_id == bindparam("p_voucher_id"),
        outbox.c.msg_no == bindparam("p_msg_no"),
        outbox.c.state.in_(("PENDING", "SENT")),
    )
    .values(state="ACKED", acked_at=bindparam("p_at"), result_code=OK)
)
_OUTBOX_SENT = (
    update(outbox)
    .where(outbox.c.id == bindparam("p_id"), outbox.c.state.in_(("PENDING", "SENT")))
    .values(
        state="SENT",
        attempts=bindparam("p_attempts"),
        wire=bindparam("p_wire"),
        last_sent_at=bindparam("p_at"),
        next_attempt_at=bindparam("p_next"),
    )
)
_OUTBOX_BY_IDS = select(outbox).where(outbox.c.id.in_(bindparam("p_ids", expanding=True)))
_OUTBOX_CLAIMED = (
    update(outbox).where(outbox.c.id.in_(bindparam("p_ids", expanding=True))).values(claimed_by=bindparam("p_node"))
)
_OUTBOX_CLAIMS: dict[tuple[bool, bool], Any] = {}


def _claim_query(resend: bool, lock: bool) -> Any:
    """Due outbox rows of a bank, oldest first (parameters p_bank, p_now, p_limit), built once per variant."""
    stmt = _OUTBOX_CLAIMS.get((resend, lock))
    if stmt is None:
        due = and_(outbox.c.state.in_(("PENDING", "SENT")), outbox.c.next_attempt_at <= bindparam("p_now"))
        condition = or_(due, outbox.c.state == "SENT") if resend else due
        stmt = (
            select(outbox)
            .where(outbox.c.bank_code == bindparam("p_bank"), condition)
            .order_by(outbox.c.id)
            .limit(bindparam("p_limit"))
        )
        if lock:
            stmt = stmt.with_for_update(skip_locked=True)
        _OUTBOX_CLAIMS[(resend, lock)] = stmt
    return stmt


# --- helpers --------------------------------------------------------------------------------------------------


def new_msg_id(prefix: str, now: datetime) -> str:
    """A MsgId for a gateway-originated message: prefix, date, 16 random hex digits (25 characters)."""
    return f"{prefix}{now:%Y%m%d}{secrets.token_hex(8).upper()}"


def _transition(
    conn: Connection,
    row: RowMapping,
    event: Event,
    now: datetime,
    actor: str,
    detail: dict[str, Any] | None = None,
    msg_id: str | None = None,
    **changes: Any,
) -> State:
    """Apply `event` to the voucher `row`: state machine, optimistic update, history entry."""
    old = State(row["state"])
    new = next_state(old, event)
    repo.update_voucher(conn, row["id"], row["version"], now, state=new.value, **changes)
    repo.append_history(
        conn,
        voucher_id=row["id"],
        at=now,
        event=event.value,
        from_state=old.value,
        to_state=new.value,
        actor=actor,
        detail=detail or {},
        msg_id=msg_id,
        locked=True,  # update_voucher's UPDATE holds the row lock (and found the row)
    )
    return new


#: The one way a voucher changes state (also used by the operators' actions, gateway/payments/operator_actions.py).
transition = _transition


def _voucher_by_key(conn: Connection, key: VoucherKey) -> RowMapping | None:
    params = {
        "p_adm_div_code": key.adm_div_code,
        "p_st_year": key.st_year,
        "p_vt_code": key.vt_code,
        "p_voucher_no": key.voucher_no,
    }
    return conn.execute(_VOUCHER_BY_KEY, params).mappings().first()


def _event(row: RowMapping, state: State | str, **extra: Any) -> tuple[str, dict[str, Any]]:
    key = VoucherKey(row["adm_div_code"], row["st_year"], row["vt_code"], row["voucher_no"])
    return (
        "voucher",
        {"key": str(key), "bank": row["bank_code"], "state": str(state), "amount_fen": row["amount_fen"], **extra},
    )


def enqueue(
    conn: Connection,
    bank: str,
    node: str,
    payload: Payload,
    now: datetime,
    work_date: Any,
    voucher_id: int | None = None,
    prefix: str = "V",
    msg_id: str | None = None,
) -> str:
    """Put an outbound message into the outbox (same transaction as the change that caused it)."""
    msg_id = msg_id or new_msg_id(prefix, now)
    head = Head(
        msg_no=payload.msg_no,
        msg_id=msg_id,
        msg_ref=msg_id,
        src=node,
        des=bank,
        work_date=work_date,
        send_time=now + timedelta(hours=8),
    )  # SendTime is China Standard Time (PROTOCOL.md §3)
    document = json.dumps(
        {"head": jsonform.to_json(head), "type": type(payload).__name__, "body": jsonform.to_json(payload)},
        ensure_ascii=False,
    )
    conn.execute(
        _OUTBOX_INSERT,
        {
            "bank_code": bank,
            "msg_id": msg_id,
            "msg_no": payload.msg_no,
            "voucher_id": voucher_id,
            "document": document,
            "state": "PENDING",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    return msg_id


_PAYLOAD_TYPES: dict[str, type[Payload]] = {
    t.__name__: t for t in (Voucher, StatusQuery, QuotaNotice, StatementRequest, ReconcileResult)
}


def _outbox_message(document: str) -> Message:
    data = json.loads(document)
    return Message(
        jsonform.from_json(Head, data["head"]), jsonform.from_json(_PAYLOAD_TYPES[data["type"]], data["body"])
    )


def check_voucher(voucher: Voucher) -> list[Problem]:
    """Schema and business rules of a voucher submitted by the finance side: exactly what a bank would check
    of the 5201/8202 it becomes (PROTOCOL.md §5.1), each problem naming its field (`Body/Voucher/…`)."""
    head = Head(
        msg_no=voucher.msg_no,
        msg_id="x",
        msg_ref="x",
        src="x",
        des="x",
        work_date=voucher.vou_date,
        send_time=datetime(2000, 1, 1),
    )  # a placeholder head: the real one is made at enqueue; its problems are not the voucher's
    message = Message(head, voucher)
    try:
        problems = schema.check(codec.to_tree(message), Voucher)
    except ValueError as exc:  # a value that cannot even be written as XML (a control character, say)
        problems = [Problem(f"Body/{Voucher.ELEMENT}", str(exc))]
    problems += rules.check(message)
    return [p for p in problems if not p.field.startswith("Head/")]


# --- finance side ---------------------------------------------------------------------------------------------


def submit(
    conn: Connection, items: Sequence[tuple[str, Voucher]], actor: str, now: datetime, node: str, banks: Sequence[str]
) -> list[Submitted]:
    """Accept vouchers (all or none): validate, check duplicates and quota, record them with their outbox rows.

    Raises:
        ValidationError: naming every problem of every voucher (nothing is recorded).
    """
    problems: list[Problem] = []
    seen: set[VoucherKey] = set()
    for n, (bank, voucher) in enumerate(items, 1):
        at = f"vouchers[{n}]"
        if bank not in banks:
            problems.append(Problem(f"{at}/bank", f"unknown bank {bank!r}; configured: {', '.join(banks)}"))
        problems += [Problem(f"{at}/{p.field}", p.message) for p in check_voucher(voucher)]
        if voucher.key in seen or _voucher_by_key(conn, voucher.key) is not None:
            problems.append(Problem(f"{at}/VoucherNo", f"voucher {voucher.key} was already submitted"))
        seen.add(voucher.key)
    if problems:
        raise ValidationError(problems)
    accepted = []
    for n, (bank, voucher) in enumerate(items, 1):
        if voucher.vt_code == "8202":
            try:
                repo.use_quota(
                    conn, voucher.adm_div_code, voucher.st_year, voucher.agency_code, voucher.pay_amt_fen, now
                )
            except QuotaExceeded as exc:
                raise ValidationError([Problem(f"vouchers[{n}]/PayAmt", f"quota exceeded: {exc}")]) from None
        msg_id = new_msg_id("V", now)
        voucher_id = repo.insert_voucher(
            conn, voucher, bank_code=bank, submitted_by=actor, at=now, msg_id=msg_id, detail={"bank": bank}
        )
        enqueue(conn, bank, node, voucher, now, voucher.vou_date, voucher_id, msg_id=msg_id)
        accepted.append(Submitted(voucher.key, bank, voucher_id))
    return accepted


def submit_quota_notice(conn: Connection, bank: str, notice: QuotaNotice, actor: str, now: datetime, node: str) -> str:
    """Grant the quota lines of a 5106 (once per notice) and forward the notice to the bank."""
    problems = [
        p
        for p in rules.check(
            Message(
                Head(
                    msg_no="5106",
                    msg_id="x",
                    msg_ref="x",
                    src="x",
                    des="x",
                    work_date=notice.vou_date,
                    send_time=datetime(2000, 1, 1),
                ),
                notice,
            )
        )
        if not p.field.startswith("Head/")
    ]
    if problems:
        raise ValidationError(problems)
    if not repo.record_quota_notice(conn, notice, now):
        raise ValidationError(
            [Problem("QuotaNotice/VoucherNo", f"quota notice {notice.voucher_no} was already applied")]
        )
    for line in notice.lines:
        repo.grant_quota(conn, notice.adm_div_code, notice.st_year, line.agency_code, line.quota_amt_fen, now)
    return enqueue(conn, bank, node, notice, now, notice.vou_date)


def cancel(conn: Connection, key: VoucherKey, actor: str, reason: str, now: datetime) -> State:
    """Withdraw a voucher that has not been sent yet.

    Raises:
        Refused: unknown voucher, or it has already gone to the bank.
    """
    row = _voucher_by_key(conn, key)
    if row is None:
        raise Refused(f"unknown voucher {key}")
    try:
        new = _transition(conn, row, Event.CANCEL, now, actor, {"reason": reason})
    except IllegalTransition as exc:
        raise Refused(str(exc)) from None
    conn.execute(
        update(outbox)
        .where(outbox.c.voucher_id == row["id"], outbox.c.state == "PENDING")
        .values(state="NACKED", add_word="cancelled before sending")
    )
    _release_quota_of(conn, row, row["amount_fen"], now)
    return new


def _release_quota_of(conn: Connection, row: RowMapping, amount_fen: int, now: datetime) -> None:
    if row["vt_code"] == "8202" and amount_fen > 0:
        repo.release_quota(conn, row["adm_div_code"], row["st_year"], row["agency_code"], amount_fen, now)


# --- bank side: requests ----------------------------------------------------------------------------------------


def archive_inbound(
    conn: Connection,
    bank: str,
    connection_id: str,
    item: Inbound,
    now: datetime,
    result: int | None = None,
    voucher_id: int | None = None,
) -> None:
    """Archive a verified inbound message byte for byte (PROTOCOL.md §6)."""
    head = item.message.head
    repo.archive_message(
        conn,
        at=now,
        direction="in",
        bank_code=bank,
        raw=item.raw,
        connection_id=connection_id,
        msg_id=head.msg_id,
        msg_no=head.msg_no,
        voucher_id=voucher_id,
        verified=True,
        verify_detail="ok",
        result_code=result,
    )


def archive_rejection(
    conn: Connection,
    bank: str,
    connection_id: str,
    raw: bytes,
    msg_id: str,
    msg_no: str,
    verified: bool | None,
    detail: str,
    result: int,
    reply: bytes,
    now: datetime,
    reply_msg_id: str | None = None,
    reply_msg_no: str | None = None,
) -> None:
    """Every rejection is recorded: the document as received, why, and the reply we sent (its signed document)."""
    repo.archive_message(
        conn,
        at=now,
        direction="in",
        bank_code=bank,
        raw=raw,
        connection_id=connection_id,
        msg_id=msg_id or None,
        msg_no=msg_no or None,
        verified=verified,
        verify_detail=detail[:2000],
        result_code=result,
    )
    archive_outbound_frame(conn, bank, connection_id, reply, now, reply_msg_id, reply_msg_no)


def archive_outbound_frame(
    conn: Connection,
    bank: str,
    connection_id: str | None,
    document: bytes,
    now: datetime,
    msg_id: str | None = None,
    msg_no: str | None = None,
    voucher_id: int | None = None,
) -> None:
    """Archive what we sent, byte for byte: the signed document (without the frame's length header)."""
    repo.archive_message(
        conn,
        at=now,
        direction="out",
        bank_code=bank,
        raw=document,
        connection_id=connection_id,
        msg_id=msg_id,
        msg_no=msg_no,
        voucher_id=voucher_id,
    )


@dataclass(frozen=True, slots=True)
class OutboundFrame:
    """A document we sent, to be archived (see :func:`archive_outbound_frames`)."""

    bank: str
    connection_id: str | None
    document: bytes
    at: datetime
    msg_id: str | None = None
    msg_no: str | None = None


def archive_outbound_frames(conn: Connection, frames: Sequence[OutboundFrame]) -> None:
    """Archive several sent documents byte for byte in one statement (`executemany`)."""
    repo.archive_messages(
        conn,
        [
            {
                "at": f.at,
                "direction": "out",
                "bank_code": f.bank,
                "raw": f.document,
                "connection_id": f.connection_id,
                "msg_id": f.msg_id,
                "msg_no": f.msg_no,
            }
            for f in frames
        ],
    )


def handle_request(conn: Connection, bank: str, connection_id: str, item: Inbound, now: datetime) -> Outcome:
    """A bank's request (receipt, return, …): idempotent by MsgId, applied and recorded in this transaction."""
    head = item.message.head
    seen = conn.execute(_INBOUND_SEEN, {"p_bank": bank, "p_msg_id": head.msg_id}).mappings().first()
    if seen is not None:
        if seen["content_digest"] == item.content_digest:
            archive_inbound(conn, bank, connection_id, item, now, seen["result"])
            return Outcome(seen["result"], seen["add_word"])
        archive_inbound(conn, bank, connection_id, item, now, int(ResultCode.MSGID_REUSED))
        return Outcome(int(ResultCode.MSGID_REUSED), f"MsgId {head.msg_id} was used for other content")
    savepoint = conn.begin_nested()
    try:
        events, kick, voucher_id = _apply(conn, bank, item.message, now)
        savepoint.commit()
        result, add_word = OK, ""
    except Refused as exc:
        savepoint.rollback()
        events, kick, voucher_id = (
            [("alert", {"bank": bank, "msg_id": head.msg_id, "reason": exc.add_word})],
            False,
            None,
        )
        result, add_word = int(ResultCode.REFUSED), exc.add_word
    conn.execute(
        _INBOUND_INSERT,
        {
            "bank_code": bank,
            "msg_id": head.msg_id,
            "msg_no": head.msg_no,
            "content_digest": item.content_digest,
            "result": result,
            "add_word": add_word,
            "reply_msg_no": "9120",
            "received_at": now,
        },
    )
    archive_inbound(conn, bank, connection_id, item, now, result, voucher_id)
    return Outcome(result, add_word, events, kick)


def _apply(conn: Connection, bank: str, message: Message, now: datetime) -> tuple[Events, bool, int | None]:
    body = message.body
    actor = f"bank:{bank}"
    if isinstance(body, Receipt):
        return apply_receipt(conn, bank, body, message.head.msg_id, now, actor)
    if isinstance(body, ReturnNotice):
        return apply_return(conn, bank, body, message.head.msg_id, now, actor)
    if isinstance(body, CardSpending):  # official cards (issue 5): gateway/cards/service.py
        from gateway.cards import service as cards

        return cards.apply_spending(conn, bank, body, message.head.msg_id, now)
    if isinstance(body, Statement):  # a page of a statement over the link (issue 6): gateway/reconcile/link.py
        from gateway.reconcile import link

        return link.apply_statement(conn, bank, body, message.head.msg_id, now)
    raise Refused(f"a bank does not send {body.msg_no} ({type(body).__name__}) to the gateway")


def _own_voucher(conn: Connection, bank: str, key: VoucherKey) -> RowMapping:
    row = _voucher_by_key(conn, key)
    if row is None or row["bank_code"] != bank:
        raise Refused(f"unknown voucher {key}")
    return row


def apply_receipt(
    conn: Connection,
    bank: str,
    receipt: Receipt,
    msg_id: str,
    now: datetime,
    actor: str,
) -> tuple[Events, bool, int | None]:
    """A receipt (回单): PAID or FAILED, exactly once; a repeat that agrees changes nothing (PROTOCOL.md §5.2)."""
    row = _own_voucher(conn, bank, receipt.key)
    if receipt.pay_amt_fen != row["amount_fen"]:
        raise Refused(f"PayAmt {receipt.pay_amt_fen} fen differs from the voucher's {row['amount_fen']} fen")
    paid = receipt.x_result == "S"
    state = State(row["state"])
    if state in (State.PAID, State.FAILED, State.RETURNED):
        agrees = (state is not State.FAILED) == paid and (
            not paid or row["x_agent_business_no"] == receipt.x_agent_business_no
        )
        if agrees:
            return _card_results(conn, row, receipt, msg_id, now, actor), False, row["id"]
        raise Refused(f"receipt contradicts the recorded result {state.value} of {receipt.key}")
    detail = {
        "x_result": receipt.x_result,
        "x_agent_business_no": receipt.x_agent_business_no,
        "x_pay_amt_fen": receipt.x_pay_amt_fen,
        "x_add_word": receipt.x_add_word,
    }
    try:
        new = _transition(
            conn,
            row,
            Event.PAID if paid else Event.FAILED,
            now,
            actor,
            detail,
            msg_id,
            x_agent_business_no=receipt.x_agent_business_no,
            x_pay_date=receipt.x_pay_date,
            x_pay_amt_fen=receipt.x_pay_amt_fen,
            reason=receipt.x_add_word,
            deadline_at=None,
        )
    except IllegalTransition as exc:
        raise Refused(str(exc)) from None
    if not paid:
        _release_quota_of(conn, row, row["amount_fen"], now)
    elif receipt.x_pay_amt_fen < row["amount_fen"]:
        _release_quota_of(conn, row, row["amount_fen"] - receipt.x_pay_amt_fen, now)
    # a receipt proves delivery: the voucher's message needs no more resending
    conn.execute(_OUTBOX_RECEIPTED, {"p_voucher_id": row["id"], "p_msg_no": row["vt_code"], "p_at": now})
    events = [
        _event(row, new, serial=receipt.x_agent_business_no),
        *_card_results(conn, row, receipt, msg_id, now, actor),
    ]
    return events, True, row["id"]


def _card_results(
    conn: Connection, row: RowMapping, receipt: Receipt, msg_id: str, now: datetime, actor: str
) -> Events:
    """Official cards (issue 5): a card repayment's per-detail results move its spending records."""
    if row["business_type_code"] != "2":
        return []
    from gateway.cards import service as cards

    return cards.apply_repayment_receipt(conn, row, receipt, msg_id, now, actor)


def apply_return(
    conn: Connection,
    bank: str,
    notice: ReturnNotice,
    msg_id: str,
    now: datetime,
    actor: str,
) -> tuple[Events, bool, int | None]:
    """A 2252: part or all of a paid voucher came back; never more than was paid (PROTOCOL.md §5.3)."""
    row = _own_voucher(conn, bank, notice.original_key)
    amount = -notice.pay_amt_fen
    # The same notice under a new MsgId is already applied: answered 90000, nothing changes. Looked for before
    # the state, because a notice that returned everything has itself moved the voucher out of PAID.
    for entry in repo.history(conn, row["id"]):
        if entry.event.startswith("returned") and json.loads(entry.detail).get("notice") == notice.voucher_no:
            return [], False, row["id"]
    if row["state"] != State.PAID.value:
        raise Refused(f"voucher {notice.original_key} is {row['state']}, only a paid voucher can be returned")
    paid = row["x_pay_amt_fen"] or 0
    returned = row["returned_fen"] + amount
    if returned > paid:
        raise Refused(f"returns of {returned} fen would exceed the {paid} fen paid")
    event = Event.RETURNED_ALL if returned == paid else Event.RETURNED_PART
    new = _transition(
        conn,
        row,
        event,
        now,
        actor,
        {
            "notice": notice.voucher_no,
            "amount_fen": amount,
            "reason": notice.remark,
            "x_agent_business_no": notice.x_agent_business_no,
            "x_pay_date": notice.x_pay_date.isoformat(),  # the bank's booking day: the return's statement date
        },
        msg_id,
        returned_fen=returned,
    )
    _release_quota_of(conn, row, amount, now)
    return [_event(row, new, returned_fen=returned)], False, row["id"]


# --- bank side: replies to what we sent ---------------------------------------------------------------------------


def handle_bank_reply(conn: Connection, bank: str, connection_id: str, item: Inbound, now: datetime) -> Outcome:
    """A 9120 or 9102 answering one of our messages: settle the outbox row, move the voucher."""
    head, body = item.message.head, item.message.body
    archive_inbound(conn, bank, connection_id, item, now)
    row = conn.execute(_OUTBOX_BY_MSG_ID, {"p_bank": bank, "p_msg_id": head.msg_ref}).mappings().first()
    if row is None:
        return Outcome(OK, events=[("alert", {"bank": bank, "reason": f"reply to unknown MsgId {head.msg_ref!r}"})])
    events: Events = []
    if isinstance(body, Reply):
        if body.result == ResultCode.TEMPORARY:
            return Outcome(OK)  # the bank asks us to resend later: the row stays SENT and its backoff runs
        state = "ACKED" if body.result == OK else "NACKED"
        if row["state"] != "SENT":
            # A duplicate answer (ACKED/NACKED), or a late one for a message that is no longer waiting for it:
            # stopped in doubt (NACKED), or put back to PENDING by a 9102 "never received" — settling that row
            # would leave its voucher ACCEPTED with nothing to send. The resend gets its own answer.
            return Outcome(OK)
        conn.execute(
            _OUTBOX_SETTLE,
            {"p_id": row["id"], "p_state": state, "p_at": now, "p_result": body.result, "p_add_word": body.add_word},
        )
        if row["msg_no"] in ("4005", "2507"):  # a statement request or result (gateway/reconcile/link.py)
            from gateway.reconcile import link

            events += link.bank_answered(conn, bank, row["msg_no"], row["msg_id"], body.result, body.add_word, now)
        if row["voucher_id"] is not None and row["msg_no"] in ("5201", "8202"):
            voucher = repo.get_voucher_row(conn, row["voucher_id"])
            event = Event.ACK if body.result == OK else Event.NAK
            try:
                new = _transition(
                    conn,
                    voucher,
                    event,
                    now,
                    f"bank:{bank}",
                    {"result": body.result, "add_word": body.add_word},
                    head.msg_id,
                    **({"reason": body.add_word} if event is Event.NAK else {}),
                )
            except IllegalTransition:
                return Outcome(OK)  # e.g. the receipt overtook the acknowledgement: nothing to change
            if new is State.REJECTED:
                _release_quota_of(conn, voucher, voucher["amount_fen"], now)
            events.append(_event(voucher, new))
        return Outcome(OK, events=events)
    assert isinstance(body, StatusReply)
    conn.execute(update(outbox).where(outbox.c.id == row["id"]).values(state="ACKED", acked_at=now, result_code=OK))
    return Outcome(OK, events=apply_status(conn, bank, body, head.msg_id, now), kick=True)


def apply_status(conn: Connection, bank: str, status: StatusReply, msg_id: str, now: datetime) -> Events:
    """The bank's answer about a voucher in doubt (docs/protocol.md, 9101/9102)."""
    row = _voucher_by_key(conn, status.key)
    if row is None or row["bank_code"] != bank or row["state"] != State.IN_DOUBT.value:
        return []
    actor = f"bank:{bank}"
    detail = {"x_status": status.x_status, "x_add_word": status.x_add_word}
    if status.x_status == 2:
        assert status.x_pay_amt_fen is not None
        new = _transition(
            conn,
            row,
            Event.PAID,
            now,
            actor,
            detail,
            msg_id,
            x_agent_business_no=status.x_agent_business_no,
            x_pay_date=status.x_pay_date,
            x_pay_amt_fen=status.x_pay_amt_fen,
            deadline_at=None,
        )
        _release_quota_of(conn, row, row["amount_fen"] - status.x_pay_amt_fen, now)  # paid in part, as a receipt
    elif status.x_status == 3:
        new = _transition(
            conn, row, Event.FAILED, now, actor, detail, msg_id, reason=status.x_add_word, deadline_at=None
        )
        _release_quota_of(conn, row, row["amount_fen"], now)
    elif status.x_status == 0:
        # The bank never received it: sending it again (same MsgId, same bytes) is now safe.
        new = _transition(conn, row, Event.STATUS_NOT_RECEIVED, now, actor, detail, msg_id, deadline_at=None)
        conn.execute(
            update(outbox)
            .where(outbox.c.voucher_id == row["id"], outbox.c.msg_no == row["vt_code"])
            .values(state="PENDING", next_attempt_at=now)
        )
    else:
        new = _transition(conn, row, Event.STATUS_PENDING, now, actor, detail, msg_id)
    return [_event(row, new)]


# --- the dispatcher's store work ----------------------------------------------------------------------------------


def claim_outbox(
    conn: Connection, bank: str, now: datetime, limit: int, node_id: str, resend: bool
) -> list[OutboxItem]:
    """Outbound messages due for `bank`: new ones, unacknowledged ones past their backoff, and on a fresh
    sign-on (`resend`) every unacknowledged one, oldest first, with their MsgId and first bytes kept."""
    query = _claim_query(resend, lock=not is_sqlite(conn))
    rows = conn.execute(query, {"p_bank": bank, "p_now": now, "p_limit": limit}).mappings().all()
    if rows:
        conn.execute(_OUTBOX_CLAIMED, {"p_ids": [r["id"] for r in rows], "p_node": node_id})
    return [OutboxItem(r["id"], r["msg_id"], _outbox_message(r["document"]), r["wire"]) for r in rows]


def resend_delay_s(settings: PaymentSettings, attempts: int) -> float:
    """How long a message sent `attempts` times waits for its answer before it is sent again: the ack timeout
    after the first send, then `resend_backoff_initial_s` doubling up to `resend_backoff_max_s`."""
    if attempts <= 1:
        return settings.ack_timeout_s
    return float(min(settings.resend_backoff_max_s, settings.resend_backoff_initial_s * 2 ** (attempts - 2)))


def mark_sent(conn: Connection, bank: str, wires: dict[int, bytes], now: datetime, settings: PaymentSettings) -> Marked:
    """Record the claimed messages as sent (before they are written: a reply can never overtake the record).

    Only rows still waiting to go (PENDING, or SENT and unanswered) are marked: a row cancelled, stopped in
    doubt or settled since it was claimed keeps its state, and is not in the returned ids, so the dispatcher
    does not write it.
    """
    events: Events = []
    marked: set[int] = set()
    for row in conn.execute(_OUTBOX_BY_IDS, {"p_ids": list(wires)}).mappings().all():
        attempts = row["attempts"] + 1
        updated = conn.execute(
            _OUTBOX_SENT,
            {
                "p_id": row["id"],
                "p_attempts": attempts,
                "p_wire": row["wire"] or wires[row["id"]],
                "p_at": now,
                "p_next": now + timedelta(seconds=resend_delay_s(settings, attempts)),
            },
        )
        if updated.rowcount != 1:
            continue  # changed since the claim (a cancel, the deadline, an answer): not sent
        marked.add(row["id"])
        archive_outbound_frame(conn, bank, None, wires[row["id"]], now, row["msg_id"], row["msg_no"], row["voucher_id"])
        if row["voucher_id"] is not None and row["msg_no"] in ("5201", "8202"):
            voucher = repo.get_voucher_row(conn, row["voucher_id"])
            if voucher["state"] == State.ACCEPTED.value:
                new = _transition(
                    conn,
                    voucher,
                    Event.DISPATCH,
                    now,
                    "system:dispatcher",
                    {"attempt": attempts},
                    row["msg_id"],
                    sent_at=now,
                    deadline_at=now + timedelta(seconds=settings.receipt_deadline_s),
                )
                events.append(_event(voucher, new))
            elif voucher["state"] == State.SENT.value:
                repo.append_history(
                    conn,
                    voucher_id=voucher["id"],
                    at=now,
                    event="resent",
                    from_state="SENT",
                    to_state="SENT",
                    actor="system:dispatcher",
                    detail={"attempt": attempts},
                    msg_id=row["msg_id"],
                )
    return Marked(frozenset(marked), events)


def still_unanswered(conn: Connection, bank: str, msg_ids: set[str]) -> set[str]:
    """Of `msg_ids` (written to `bank`), those whose outbox row is still SENT, that is still awaiting its answer
    (the dispatcher's in-flight window forgets the others)."""
    still: set[str] = set()
    ids = sorted(msg_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        still.update(
            conn.execute(
                select(outbox.c.msg_id).where(
                    outbox.c.bank_code == bank, outbox.c.msg_id.in_(chunk), outbox.c.state == "SENT"
                )
            ).scalars()
        )
    return still


def tick(conn: Connection, now: datetime, settings: PaymentSettings, node: str = "") -> Events:
    """Vouchers past their deadline go IN_DOUBT and the bank is asked (9101); in-doubt ones are asked again."""
    events: Events = []
    late = (
        conn.execute(
            select(vouchers)
            .where(
                vouchers.c.state.in_((State.SENT.value, State.DELIVERED.value, State.IN_DOUBT.value)),
                vouchers.c.deadline_at <= now,
            )
            .order_by(vouchers.c.id)
            .limit(500)
        )
        .mappings()
        .all()
    )
    for row in late:
        next_ask = now + timedelta(seconds=settings.status_query_interval_s)
        if row["state"] != State.IN_DOUBT.value:
            new = _transition(conn, row, Event.DEADLINE, now, "system:deadline", {}, None, deadline_at=next_ask)
            # In doubt: stop resending the voucher itself; only the bank's answer settles it.
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.voucher_id == row["id"],
                    outbox.c.msg_no == row["vt_code"],
                    outbox.c.state.in_(("PENDING", "SENT")),
                )
                .values(state="NACKED", add_word="in doubt: asking the bank (9101)")
            )
            events.append(_event(row, new))
        else:
            repo.update_voucher(conn, row["id"], row["version"], now, deadline_at=next_ask)
        open_query = conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.voucher_id == row["id"],
                outbox.c.msg_no == "9101",
                outbox.c.state.in_(("PENDING", "SENT")),
            )
        ).scalar_one()
        if not open_query:
            query = StatusQuery(
                adm_div_code=row["adm_div_code"],
                st_year=row["st_year"],
                vt_code=row["vt_code"],
                voucher_no=row["voucher_no"],
            )
            enqueue(
                conn,
                row["bank_code"],
                node or _node(conn),
                query,
                now,
                (now + timedelta(hours=8)).date(),
                row["id"],
                prefix="Q",
            )
    return events


def _node(conn: Connection) -> str:
    return repo.get_meta(conn, "node") or "450100000000"
