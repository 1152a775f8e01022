"""Repository functions over the store's tables: small, explicit SQL, each taking a connection.

The caller owns the transaction (:func:`gateway.store.db.transaction`, or the store thread of
:mod:`gateway.dbthread`): these functions never begin, commit or roll back, so several of them compose into one
atomic business step (a voucher, its history entry and its outbox row commit together or not at all). Time is
always passed in (`at`, `now`); aware datetimes are converted to naive UTC, naive ones are taken as UTC.

Concurrency, the same on SQLite and PostgreSQL (READ COMMITTED):

- Uniqueness is decided by the database, not by a prior SELECT: inserts that may collide use
  `INSERT … ON CONFLICT DO NOTHING RETURNING id` and raise a :mod:`gateway.store.errors` exception (or return
  False) without aborting the caller's transaction.
- Vouchers use optimistic concurrency: :func:`update_voucher` is `UPDATE … WHERE id = ? AND version = ?` and
  raises :class:`~gateway.store.errors.ConcurrentUpdate` when someone else got there first.
- Quota is spent with one conditional `UPDATE … WHERE granted_fen - used_fen >= :amount`: on PostgreSQL a
  concurrent spender waits for the row lock and re-checks the condition; on SQLite writers are serialized by
  `BEGIN IMMEDIATE`. A CHECK constraint (`used_fen <= granted_fen`) backs it up.
- The history chain of a voucher is extended under the voucher's row lock (`SELECT … FOR UPDATE`), so two
  transactions never compute the same `seq` or fork the chain.
- Outbox rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (several gateway nodes), and by
  a plain SELECT on SQLite, where the claiming transaction is already the only writer.

Records come back as frozen dataclasses named after their table (:class:`VoucherRecord`, …) whose fields are
the table's columns; :func:`get_voucher_row` returns the raw `RowMapping` for code that works on rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Connection, Table, and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping

from gateway.store.errors import (
    ConcurrentUpdate,
    DuplicateMessage,
    DuplicateVoucher,
    NotFound,
    QuotaExceeded,
    QuotaUnderflow,
)
from gateway.store.tables import (
    VOUCHER_STATES,
    archive,
    inbound,
    meta,
    outbox,
    quota_notices,
    quotas,
    voucher_history,
    vouchers,
)
from protocols import jsonform
from protocols.messages import PAYLOAD_TYPES, Head, Message, Payload, QuotaNotice, Voucher, VoucherKey

__all__ = [
    "DEADLINE_STATES",
    "GENESIS_HASH",
    "OUTBOX_LEASE_S_DEFAULT",
    "PAGE_SIZE_MAX",
    "ArchiveRecord",
    "ChainBreak",
    "HistoryEntry",
    "InboundRecord",
    "OutboxRecord",
    "QuotaRecord",
    "VoucherPage",
    "VoucherRecord",
    "append_history",
    "apply_quota_notice",
    "archive_message",
    "archived_messages",
    "chain_hash",
    "claim_due_outbox",
    "counts_by_state",
    "enqueue_outbox",
    "find_chain_break",
    "find_inbound",
    "find_outbox",
    "get_archived",
    "get_meta",
    "get_quota",
    "get_voucher",
    "get_voucher_by_key",
    "get_voucher_row",
    "grant_quota",
    "history",
    "insert_voucher",
    "list_vouchers",
    "mark_outbox_acked",
    "mark_outbox_nacked",
    "mark_outbox_sent",
    "message_from_document",
    "message_to_document",
    "pending_outbox",
    "record_inbound",
    "record_quota_notice",
    "release_quota",
    "retry_outbox",
    "set_meta",
    "update_voucher",
    "update_voucher_state",
    "use_quota",
    "verify_chain",
    "vouchers_past_deadline",
]

#: `prev_hash` of a voucher's first history entry.
GENESIS_HASH: Final = "0" * 64
#: Voucher states that wait for the bank and therefore have a deadline.
DEADLINE_STATES: Final = ("SENT", "DELIVERED", "IN_DOUBT")
#: How long a claimed outbox row stays invisible to other claims (a node that dies mid-send loses it after this).
OUTBOX_LEASE_S_DEFAULT: Final = 30
#: Most rows one page of :func:`list_vouchers` (or :func:`archived_messages`) returns.
PAGE_SIZE_MAX: Final = 1000

#: Outbox states of a message the bank has not answered yet.
_UNACKED: Final = ("PENDING", "SENT")
#: Columns :func:`update_voucher` may change; the key, the amount, the creation and the version are fixed.
_VOUCHER_UPDATABLE: Final = frozenset(
    {
        "state",
        "msg_id",
        "x_agent_business_no",
        "x_pay_date",
        "x_pay_amt_fen",
        "returned_fen",
        "reason",
        "sent_at",
        "deadline_at",
    }
)
_PAYLOAD_BY_NAME: Final[dict[str, type[Payload]]] = {t.__name__: t for t in PAYLOAD_TYPES}

R = TypeVar("R")


# --- records ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoucherRecord:
    """A row of `vouchers`."""

    id: int
    adm_div_code: str
    st_year: int
    vt_code: str
    voucher_no: str
    bank_code: str
    business_type_code: str
    agency_code: str
    agency_name: str
    payee_acct_no: str
    payee_acct_name: str
    amount_fen: int
    state: str
    document: str
    msg_id: str | None
    x_agent_business_no: str | None
    x_pay_date: date | None
    x_pay_amt_fen: int | None
    returned_fen: int
    reason: str | None
    submitted_by: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    deadline_at: datetime | None
    version: int

    @property
    def key(self) -> VoucherKey:
        """The voucher key (PROTOCOL.md §7)."""
        return VoucherKey(self.adm_div_code, self.st_year, self.vt_code, self.voucher_no)

    def voucher(self) -> Voucher:
        """The canonical voucher, decoded from `document`."""
        decoded: Voucher = jsonform.from_json(Voucher, json.loads(self.document))
        return decoded


@dataclass(frozen=True, slots=True)
class VoucherPage:
    """One page of :func:`list_vouchers` and the number of vouchers matching the filters on all pages."""

    items: tuple[VoucherRecord, ...]
    total: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A row of `voucher_history`; `detail` is the canonical JSON text exactly as hashed."""

    id: int
    voucher_id: int
    seq: int
    at: datetime
    event: str
    from_state: str | None
    to_state: str
    actor: str
    detail: str
    msg_id: str | None
    prev_hash: str
    hash: str

    def detail_data(self) -> Any:
        """`detail`, parsed."""
        return json.loads(self.detail)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where a voucher's history stops proving itself, and why."""

    voucher_id: int
    seq: int  # the first entry that fails (for a missing entry: the seq that should be there)
    reason: str


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A row of `outbox`."""

    id: int
    bank_code: str
    msg_id: str
    msg_no: str
    voucher_id: int | None
    document: str
    wire: bytes | None
    state: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_sent_at: datetime | None
    acked_at: datetime | None
    result_code: int | None
    add_word: str | None
    claimed_by: str | None

    def message(self) -> Message:
        """The canonical message, decoded from `document` (its head keeps the MsgId across resends)."""
        return message_from_document(self.document)


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A row of `inbound`: the answer given to one MsgId of one sender."""

    id: int
    bank_code: str
    msg_id: str
    msg_no: str
    content_digest: str
    result: int
    add_word: str
    reply_msg_no: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """A row of `archive` (the electronic voucher library)."""

    id: int
    at: datetime
    direction: str
    bank_code: str
    connection_id: str | None
    msg_id: str | None
    msg_no: str | None
    voucher_id: int | None
    raw: bytes
    verified: bool | None
    verify_detail: str | None
    result_code: int | None


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    """A row of `quotas`."""

    adm_div_code: str
    st_year: int
    agency_code: str
    granted_fen: int
    used_fen: int
    updated_at: datetime

    @property
    def available_fen(self) -> int:
        """What can still be spent."""
        return self.granted_fen - self.used_fen


# --- helpers ---------------------------------------------------------------------------------------------------


def _record(cls: Callable[..., R], row: RowMapping) -> R:
    return cls(**row)


def _utc(at: datetime) -> datetime:
    """Naive UTC, as stored: aware values are converted, naive ones are taken to be UTC already."""
    if at.tzinfo is None:
        return at
    return at.astimezone(UTC).replace(tzinfo=None)


def _utc_opt(at: datetime | None) -> datetime | None:
    return None if at is None else _utc(at)


def _positive(amount_fen: int) -> int:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise ValueError(f"amount_fen must be a positive integer number of fen, not {amount_fen!r}")
    return amount_fen


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which knows `ON CONFLICT` (both backends spell it the same way)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the store runs on SQLite and PostgreSQL, not {conn.dialect.name}")


def _is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable in a history detail")


def _canonical_json(data: object) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same data always gives the same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= PAGE_SIZE_MAX:
        raise ValueError(f"limit must be within 1..{PAGE_SIZE_MAX}, not {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")


# --- vouchers --------------------------------------------------------------------------------------------------


def _key_condition(key: VoucherKey) -> ColumnElement[bool]:
    return and_(
        vouchers.c.adm_div_code == key.adm_div_code,
        vouchers.c.st_year == key.st_year,
        vouchers.c.vt_code == key.vt_code,
        vouchers.c.voucher_no == key.voucher_no,
    )


_VOUCHER_INSERTS: dict[str, Any] = {}  # per dialect: INSERT … ON CONFLICT DO NOTHING RETURNING id


def insert_voucher(
    conn: Connection,
    voucher: Voucher,
    *,
    bank_code: str,
    submitted_by: str,
    at: datetime,
    msg_id: str | None = None,
    deadline_at: datetime | None = None,
    state: str = "ACCEPTED",
    event: str = "submitted",
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Record a voucher and the first entry of its history, in the caller's transaction.

    Args:
        conn: a connection in a transaction.
        voucher: the canonical voucher; its JSON form becomes `document`.
        bank_code: the agent bank that pays it.
        submitted_by: who submitted it ("operator:alice", "finance:feeder"); also the history's actor.
        at: now (UTC); `created_at` and `updated_at`.
        msg_id: MsgId of its outbound message, if already known.
        deadline_at: when an answer is due, if already known.
        state: its first state.
        event: the first history entry's event.
        detail: the first history entry's detail (default: the bank).

    Returns:
        The new voucher's id.

    Raises:
        DuplicateVoucher: the voucher key is already recorded (the transaction stays usable).
    """
    if state not in VOUCHER_STATES:
        raise ValueError(f"unknown voucher state {state!r}")
    at = _utc(at)
    stmt = _VOUCHER_INSERTS.get(conn.dialect.name)
    if stmt is None:
        stmt = _VOUCHER_INSERTS[conn.dialect.name] = (
            _insert(conn, vouchers)
            .on_conflict_do_nothing(index_elements=["adm_div_code", "st_year", "vt_code", "voucher_no"])
            .returning(vouchers.c.id)
        )
    params = {
        "adm_div_code": voucher.adm_div_code,
        "st_year": voucher.st_year,
        "vt_code": voucher.vt_code,
        "voucher_no": voucher.voucher_no,
        "bank_code": bank_code,
        "business_type_code": voucher.business_type_code,
        "agency_code": voucher.agency_code,
        "agency_name": voucher.agency_name,
        "payee_acct_no": voucher.payee_acct_no,
        "payee_acct_name": voucher.payee_acct_name,
        "amount_fen": voucher.pay_amt_fen,
        "state": state,
        "document": json.dumps(jsonform.to_json(voucher), ensure_ascii=False, separators=(",", ":")),
        "msg_id": msg_id,
        "returned_fen": 0,
        "submitted_by": submitted_by,
        "created_at": at,
        "updated_at": at,
        "deadline_at": _utc_opt(deadline_at),
        "version": 1,
    }
    voucher_id = conn.execute(stmt, params).scalar_one_or_none()
    if voucher_id is None:
        existing = conn.execute(select(vouchers.c.id).where(_key_condition(voucher.key))).scalar_one_or_none()
        raise DuplicateVoucher(str(voucher.key), existing)
    append_history(
        conn,
        voucher_id,
        at=at,
        event=event,
        from_state=None,
        to_state=state,
        actor=submitted_by,
        detail={"bank": bank_code} if detail is None else detail,
        msg_id=msg_id,
        locked=True,  # the row was inserted in this transaction
    )
    return int(voucher_id)


def get_voucher(conn: Connection, voucher_id: int) -> VoucherRecord | None:
    """The voucher with this id, or None."""
    row = conn.execute(select(vouchers).where(vouchers.c.id == voucher_id)).mappings().first()
    return None if row is None else _record(VoucherRecord, row)


# Statements of the payment path, built once: SQLAlchemy then skips building the construct and its cache key on
# every call (memoized on the object) and goes straight to the compiled form in the engine's cache.
_VOUCHER_BY_ID: Final = select(vouchers).where(vouchers.c.id == bindparam("p_id"))
_VOUCHER_VERSION: Final = select(vouchers.c.version).where(vouchers.c.id == bindparam("p_id"))
_VOUCHER_LOCK: Final = select(vouchers.c.id).where(vouchers.c.id == bindparam("p_id")).with_for_update()
_LAST_HISTORY: Final = (
    select(voucher_history.c.seq, voucher_history.c.hash)
    .where(voucher_history.c.voucher_id == bindparam("p_id"))
    .order_by(voucher_history.c.seq.desc())
    .limit(1)
)
_HISTORY_INSERT: Final = voucher_history.insert().returning(voucher_history.c.id)
_ARCHIVE_INSERT: Final = archive.insert().returning(archive.c.id)
_VOUCHER_UPDATES: dict[tuple[str, ...], Any] = {}


def _voucher_update(columns: tuple[str, ...]) -> Any:
    """`UPDATE vouchers SET <columns>, updated_at, version = version + 1 WHERE id = :p_id AND version = :p_version`
    (parameters `p_<column>`, `p_updated_at`), built once per set of columns."""
    stmt = _VOUCHER_UPDATES.get(columns)
    if stmt is None:
        stmt = (
            update(vouchers)
            .where(vouchers.c.id == bindparam("p_id"), vouchers.c.version == bindparam("p_version"))
            .values(
                {
                    **{name: bindparam(f"p_{name}", type_=vouchers.c[name].type) for name in columns},
                    "updated_at": bindparam("p_updated_at", type_=vouchers.c.updated_at.type),
                    "version": vouchers.c.version + 1,
                }
            )
        )
        _VOUCHER_UPDATES[columns] = stmt
    return stmt


def get_voucher_row(conn: Connection, voucher_id: int) -> RowMapping:
    """The voucher with this id as a row mapping (column name → value).

    Raises:
        NotFound: no such voucher.
    """
    row = conn.execute(_VOUCHER_BY_ID, {"p_id": voucher_id}).mappings().first()
    if row is None:
        raise NotFound(f"voucher {voucher_id}")
    return row


def get_voucher_by_key(conn: Connection, key: VoucherKey) -> VoucherRecord | None:
    """The voucher with this key (`AdmDivCode`+`StYear`+`VtCode`+`VoucherNo`), or None."""
    row = conn.execute(select(vouchers).where(_key_condition(key))).mappings().first()
    return None if row is None else _record(VoucherRecord, row)


def update_voucher(conn: Connection, voucher_id: int, expected_version: int, at: datetime, **changes: Any) -> int:
    """Change a voucher if nobody else changed it since the caller read `expected_version`.

    One `UPDATE … WHERE id = :id AND version = :expected_version` that also sets `updated_at` and bumps
    `version`. A state change must be accompanied by :func:`append_history` in the same transaction
    (:func:`find_chain_break` checks that the voucher's state is the last entry's `to_state`).

    Args:
        conn: a connection in a transaction.
        voucher_id: the voucher.
        expected_version: the `version` the caller read.
        at: now (UTC); the new `updated_at`.
        **changes: columns to set: state, msg_id, x_agent_business_no, x_pay_date, x_pay_amt_fen,
            returned_fen, reason, sent_at, deadline_at.

    Returns:
        The new version.

    Raises:
        ConcurrentUpdate: the version moved on (the row was changed by another transaction).
        NotFound: no such voucher.
        TypeError: a column that cannot be changed this way.
        ValueError: an unknown state.
    """
    unknown = set(changes) - _VOUCHER_UPDATABLE
    if unknown:
        raise TypeError(f"update_voucher cannot change {', '.join(sorted(unknown))}")
    if "state" in changes and changes["state"] not in VOUCHER_STATES:
        raise ValueError(f"unknown voucher state {changes['state']!r}")
    for name in ("sent_at", "deadline_at"):
        if name in changes:
            changes[name] = _utc_opt(changes[name])
    columns = tuple(sorted(changes))
    params = {f"p_{name}": changes[name] for name in columns}
    params.update(p_id=voucher_id, p_version=expected_version, p_updated_at=_utc(at))
    result = conn.execute(_voucher_update(columns), params)
    if result.rowcount != 1:
        actual = conn.execute(_VOUCHER_VERSION, {"p_id": voucher_id}).scalar_one_or_none()
        if actual is None:
            raise NotFound(f"voucher {voucher_id}")
        raise ConcurrentUpdate("vouchers", voucher_id, expected_version, actual)
    return expected_version + 1


#: The brief's name for :func:`update_voucher`.
update_voucher_state = update_voucher


def list_vouchers(
    conn: Connection,
    state: str | None = None,
    bank_code: str | None = None,
    agency_code: str | None = None,
    voucher_no: str | None = None,
    min_fen: int | None = None,
    max_fen: int | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> VoucherPage:
    """Search vouchers, newest first, with the number matching on all pages.

    Args:
        conn: a connection in a transaction (a read-only one is enough).
        state: exact state.
        bank_code: exact bank.
        agency_code: exact budget unit.
        voucher_no: exact `VoucherNo`.
        min_fen: smallest amount, inclusive.
        max_fen: largest amount, inclusive.
        date_from: first day (UTC) of `created_at`, inclusive.
        date_to: last day (UTC) of `created_at`, inclusive.
        limit: page size, 1 to :data:`PAGE_SIZE_MAX`.
        offset: rows to skip.

    Returns:
        The page and the total.
    """
    _page(limit, offset)
    conditions: list[ColumnElement[bool]] = []
    if state is not None:
        conditions.append(vouchers.c.state == state)
    if bank_code is not None:
        conditions.append(vouchers.c.bank_code == bank_code)
    if agency_code is not None:
        conditions.append(vouchers.c.agency_code == agency_code)
    if voucher_no is not None:
        conditions.append(vouchers.c.voucher_no == voucher_no)
    if min_fen is not None:
        conditions.append(vouchers.c.amount_fen >= min_fen)
    if max_fen is not None:
        conditions.append(vouchers.c.amount_fen <= max_fen)
    if date_from is not None:
        conditions.append(vouchers.c.created_at >= datetime.combine(date_from, time()))
    if date_to is not None:
        conditions.append(vouchers.c.created_at < datetime.combine(date_to + timedelta(days=1), time()))
    total = conn.execute(select(func.count()).select_from(vouchers).where(*conditions)).scalar_one()
    rows = conn.execute(
        select(vouchers).where(*conditions).order_by(vouchers.c.id.desc()).limit(limit).offset(offset)
    ).mappings()
    return VoucherPage(tuple(_record(VoucherRecord, row) for row in rows), int(total))


def counts_by_state(conn: Connection, bank_code: str | None = None) -> dict[str, int]:
    """How many vouchers are in each state (states with none are left out), for one bank or all."""
    query = select(vouchers.c.state, func.count()).group_by(vouchers.c.state)
    if bank_code is not None:
        query = query.where(vouchers.c.bank_code == bank_code)
    return {state: int(count) for state, count in conn.execute(query)}


def vouchers_past_deadline(
    conn: Connection, now: datetime, *, states: Sequence[str] = DEADLINE_STATES, limit: int = 500
) -> list[VoucherRecord]:
    """Vouchers waiting for the bank whose `deadline_at` has come (`<= now`), earliest deadline first."""
    _page(limit, 0)
    rows = conn.execute(
        select(vouchers)
        .where(vouchers.c.state.in_(list(states)), vouchers.c.deadline_at <= _utc(now))
        .order_by(vouchers.c.deadline_at, vouchers.c.id)
        .limit(limit)
    ).mappings()
    return [_record(VoucherRecord, row) for row in rows]


# --- history: append-only, hash-chained ------------------------------------------------------------------------


def chain_hash(
    *,
    voucher_id: int,
    seq: int,
    at: datetime,
    event: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    detail: str,
    msg_id: str | None,
    prev_hash: str,
) -> str:
    """The hash of one history entry: SHA-256 (hex) of the UTF-8 canonical JSON object of its fields.

    The object has the keys `actor`, `at` (ISO 8601 with microseconds, naive UTC), `detail` (the stored JSON
    text itself), `event`, `from_state`, `msg_id`, `prev_hash`, `seq`, `to_state`, `voucher_id`, sorted, with no
    whitespace and non-ASCII characters as they are; an auditor can recompute it with any JSON library.
    """
    fields = {
        "voucher_id": voucher_id,
        "seq": seq,
        "at": at.isoformat(timespec="microseconds"),
        "event": event,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "detail": detail,
        "msg_id": msg_id,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_canonical_json(fields).encode("utf-8")).hexdigest()


def append_history(
    conn: Connection,
    voucher_id: int,
    at: datetime,
    event: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    detail: Mapping[str, Any],
    msg_id: str | None = None,
    *,
    locked: bool = False,
) -> HistoryEntry:
    """Append one entry to a voucher's history, chained to the previous one by its hash.

    Takes the voucher's row lock first (PostgreSQL), so concurrent appends for one voucher queue up and the
    chain never forks; on SQLite the transaction is already the only writer. A caller that has already locked
    the row in this transaction (an `UPDATE` of it, as :func:`update_voucher` does, which also proved that it
    exists) passes `locked=True` and saves that statement.

    Args:
        conn: a connection in a transaction.
        voucher_id: the voucher.
        at: when it happened (UTC).
        event: what happened (a `gateway.payments.machine.Event` value, or "submitted", "resent" …).
        from_state: the state before (None for the first entry).
        to_state: the state after (the same as before for an event that changes no state).
        actor: who or what caused it: "operator:alice", "bank:ICBC", "system:deadline".
        detail: JSON-able facts about it; stored as canonical JSON text (dates as ISO text).
        msg_id: the MsgId of the message that caused it, if any.
        locked: the caller holds the voucher's row lock in this transaction (it updated the row).

    Returns:
        The entry as stored.

    Raises:
        NotFound: no such voucher.
    """
    if not locked and conn.execute(_VOUCHER_LOCK, {"p_id": voucher_id}).first() is None:
        raise NotFound(f"voucher {voucher_id}")
    last = conn.execute(_LAST_HISTORY, {"p_id": voucher_id}).first()
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (last.seq + 1, last.hash)
    fields: dict[str, Any] = {
        "voucher_id": voucher_id,
        "seq": seq,
        "at": _utc(at),
        "event": event,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "detail": _canonical_json(dict(detail)),
        "msg_id": msg_id,
        "prev_hash": prev_hash,
    }
    fields["hash"] = chain_hash(**fields)
    entry_id = conn.execute(_HISTORY_INSERT, fields).scalar_one()
    return HistoryEntry(id=int(entry_id), **fields)


def history(conn: Connection, voucher_id: int) -> list[HistoryEntry]:
    """A voucher's history, oldest first."""
    rows = conn.execute(
        select(voucher_history).where(voucher_history.c.voucher_id == voucher_id).order_by(voucher_history.c.seq)
    ).mappings()
    return [_record(HistoryEntry, row) for row in rows]


def find_chain_break(conn: Connection, voucher_id: int) -> ChainBreak | None:
    """Check a voucher's history; None if it proves itself, else the first place where it does not.

    Checked: entries are numbered 1, 2, … without gaps; each `prev_hash` is the previous entry's `hash` (the
    first one's is :data:`GENESIS_HASH`); each `hash` is :func:`chain_hash` of the entry's stored fields; and the
    chain ends where the voucher stands (its `state` is the last entry's `to_state`), so that removing the
    newest entries or changing the state behind the history's back is caught too. A voucher always has at least
    the entry written when it was recorded.

    Raises:
        NotFound: no such voucher.
    """
    state = conn.execute(select(vouchers.c.state).where(vouchers.c.id == voucher_id)).scalar_one_or_none()
    if state is None:
        raise NotFound(f"voucher {voucher_id}")
    entries = history(conn, voucher_id)
    prev_hash = GENESIS_HASH
    for expected_seq, entry in enumerate(entries, 1):
        if entry.seq != expected_seq:
            return ChainBreak(voucher_id, expected_seq, f"entry {expected_seq} is missing (found {entry.seq})")
        if entry.prev_hash != prev_hash:
            return ChainBreak(voucher_id, entry.seq, "prev_hash is not the previous entry's hash")
        recomputed = chain_hash(
            voucher_id=entry.voucher_id,
            seq=entry.seq,
            at=entry.at,
            event=entry.event,
            from_state=entry.from_state,
            to_state=entry.to_state,
            actor=entry.actor,
            detail=entry.detail,
            msg_id=entry.msg_id,
            prev_hash=entry.prev_hash,
        )
        if entry.hash != recomputed:
            return ChainBreak(voucher_id, entry.seq, "hash does not match the entry's content")
        prev_hash = entry.hash
    if not entries:
        return ChainBreak(voucher_id, 1, "the voucher has no history")
    if entries[-1].to_state != state:
        return ChainBreak(
            voucher_id, entries[-1].seq, f"the voucher is {state} but its last entry says {entries[-1].to_state}"
        )
    return None


def verify_chain(conn: Connection, voucher_id: int) -> bool:
    """Whether a voucher's history proves itself (:func:`find_chain_break` says where it does not)."""
    return find_chain_break(conn, voucher_id) is None


# --- outbox ----------------------------------------------------------------------------------------------------


def message_to_document(message: Message) -> str:
    """The outbox `document` of a message: `{"head": …, "type": payload class name, "body": …}` in JSON form.

    The head carries the MsgId, so every resend keeps it; `type` tells the payload classes that share a
    `MsgNo` apart (a 5201 voucher and its receipt).
    """
    return json.dumps(
        {
            "head": jsonform.to_json(message.head),
            "type": type(message.body).__name__,
            "body": jsonform.to_json(message.body),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def message_from_document(document: str) -> Message:
    """The message of an outbox `document` (see :func:`message_to_document`).

    Raises:
        protocols.errors.ValidationError: the document does not describe a valid message.
        KeyError: an unknown payload type.
    """
    data = json.loads(document)
    head: Head = jsonform.from_json(Head, data["head"])
    body: Payload = jsonform.from_json(_PAYLOAD_BY_NAME[data["type"]], data["body"])
    return Message(head, body)


def enqueue_outbox(
    conn: Connection, message: Message, *, bank_code: str, at: datetime, voucher_id: int | None = None
) -> int:
    """Queue an outbound message (PENDING, due at once), in the same transaction as the change that caused it.

    Returns:
        The outbox row's id.
    """
    at = _utc(at)
    stmt = (
        outbox.insert()
        .values(
            bank_code=bank_code,
            msg_id=message.head.msg_id,
            msg_no=message.head.msg_no,
            voucher_id=voucher_id,
            document=message_to_document(message),
            state="PENDING",
            attempts=0,
            next_attempt_at=at,
            created_at=at,
        )
        .returning(outbox.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def claim_due_outbox(
    conn: Connection,
    bank_code: str,
    now: datetime,
    limit: int,
    node_id: str,
    *,
    lease_s: int = OUTBOX_LEASE_S_DEFAULT,
) -> list[OutboxRecord]:
    """Claim the bank's messages that are due: PENDING, or SENT and unanswered past `next_attempt_at`; oldest first.

    The claim marks the rows `claimed_by = node_id` and pushes `next_attempt_at` out by the lease, so that no
    other node (or later claim) takes them while this node sends; :func:`mark_outbox_sent` then sets the real
    resend time. On PostgreSQL rows locked by another node's claim are skipped (`FOR UPDATE SKIP LOCKED`).

    Args:
        conn: a connection in a transaction.
        bank_code: the bank whose session this node holds.
        now: the current time (UTC).
        limit: most rows to claim.
        node_id: this gateway node.
        lease_s: how long the claim keeps other claims away.

    Returns:
        The claimed rows as they are after the claim, in id order.
    """
    now = _utc(now)
    query = (
        select(outbox.c.id)
        .where(
            outbox.c.bank_code == bank_code,
            outbox.c.state.in_(_UNACKED),
            outbox.c.next_attempt_at <= now,
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    if not _is_sqlite(conn):
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(claimed_by=node_id, next_attempt_at=now + timedelta(seconds=lease_s))
    )
    rows = conn.execute(select(outbox).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)).mappings()
    return [_record(OutboxRecord, row) for row in rows]


def pending_outbox(conn: Connection, bank_code: str) -> list[OutboxRecord]:
    """Every unacknowledged message of the bank (PENDING and SENT), in id order: to resend on reconnection."""
    rows = conn.execute(
        select(outbox).where(outbox.c.bank_code == bank_code, outbox.c.state.in_(_UNACKED)).order_by(outbox.c.id)
    ).mappings()
    return [_record(OutboxRecord, row) for row in rows]


def find_outbox(conn: Connection, bank_code: str, msg_id: str) -> OutboxRecord | None:
    """The message we sent to `bank_code` with this MsgId (what a 9120's `MsgRef` names), or None."""
    row = (
        conn.execute(select(outbox).where(outbox.c.bank_code == bank_code, outbox.c.msg_id == msg_id))
        .mappings()
        .first()
    )
    return None if row is None else _record(OutboxRecord, row)


def mark_outbox_sent(conn: Connection, outbox_id: int, at: datetime, *, wire: bytes, retry_at: datetime) -> bool:
    """Record a send: SENT, one more attempt, and the wire bytes if this was the first send (kept thereafter).

    Args:
        conn: a connection in a transaction.
        outbox_id: the row.
        at: when it was handed to the transport (UTC).
        wire: the signed bytes sent; stored only if none are stored yet, so resends stay byte-identical.
        retry_at: when to send again if no answer has come.

    Returns:
        False if the row was already answered (ACKED or NACKED) and nothing changed.
    """
    result = conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id, outbox.c.state.in_(_UNACKED))
        .values(
            state="SENT",
            attempts=outbox.c.attempts + 1,
            last_sent_at=_utc(at),
            wire=func.coalesce(outbox.c.wire, wire),
            next_attempt_at=_utc(retry_at),
        )
    )
    return result.rowcount == 1


def _settle(conn: Connection, outbox_id: int, state: str, at: datetime, result_code: int, add_word: str | None) -> bool:
    result = conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id, outbox.c.state.in_(_UNACKED))
        .values(state=state, acked_at=_utc(at), result_code=result_code, add_word=add_word)
    )
    return result.rowcount == 1


def mark_outbox_acked(
    conn: Connection, outbox_id: int, at: datetime, *, result_code: int = 90000, add_word: str | None = None
) -> bool:
    """The bank accepted the message (9120 with 90000). False if it was already answered (a duplicate)."""
    return _settle(conn, outbox_id, "ACKED", at, result_code, add_word)


def mark_outbox_nacked(conn: Connection, outbox_id: int, at: datetime, *, result_code: int, add_word: str) -> bool:
    """The bank refused the message for good (or we withdrew it). False if it was already answered."""
    return _settle(conn, outbox_id, "NACKED", at, result_code, add_word)


def retry_outbox(conn: Connection, outbox_id: int, next_attempt_at: datetime) -> bool:
    """Put an unanswered message back to PENDING, unclaimed, due at `next_attempt_at` (a 91099, a lost session).

    Returns:
        False if it was already answered and nothing changed.
    """
    result = conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id, outbox.c.state.in_(_UNACKED))
        .values(state="PENDING", claimed_by=None, next_attempt_at=_utc(next_attempt_at))
    )
    return result.rowcount == 1


# --- inbound: idempotency by MsgId per sender (PROTOCOL.md §7) ------------------------------------------------


def find_inbound(conn: Connection, bank_code: str, msg_id: str) -> InboundRecord | None:
    """The answer already given to this sender's MsgId, or None if it is new."""
    row = (
        conn.execute(select(inbound).where(inbound.c.bank_code == bank_code, inbound.c.msg_id == msg_id))
        .mappings()
        .first()
    )
    return None if row is None else _record(InboundRecord, row)


def record_inbound(
    conn: Connection,
    *,
    bank_code: str,
    msg_id: str,
    msg_no: str,
    content_digest: str,
    result: int,
    add_word: str,
    reply_msg_no: str,
    received_at: datetime,
) -> int:
    """Record the answer given to a sender's MsgId, in the transaction that applied the message.

    Returns:
        The row's id.

    Raises:
        DuplicateMessage: the MsgId was recorded meanwhile (a concurrent copy of the same message won):
            roll back, then answer as :func:`find_inbound` says. The transaction stays usable.
    """
    stmt = (
        _insert(conn, inbound)
        .values(
            bank_code=bank_code,
            msg_id=msg_id,
            msg_no=msg_no,
            content_digest=content_digest,
            result=result,
            add_word=add_word,
            reply_msg_no=reply_msg_no,
            received_at=_utc(received_at),
        )
        .on_conflict_do_nothing(index_elements=["bank_code", "msg_id"])
        .returning(inbound.c.id)
    )
    inbound_id = conn.execute(stmt).scalar_one_or_none()
    if inbound_id is None:
        raise DuplicateMessage(bank_code, msg_id)
    return int(inbound_id)


# --- archive: the electronic voucher library -----------------------------------------------------------------


def archive_message(
    conn: Connection,
    *,
    at: datetime,
    direction: str,
    bank_code: str,
    raw: bytes,
    connection_id: str | None = None,
    msg_id: str | None = None,
    msg_no: str | None = None,
    voucher_id: int | None = None,
    verified: bool | None = None,
    verify_detail: str | None = None,
    result_code: int | None = None,
) -> int:
    """Archive one message byte for byte, in or out, with its verification and the result we answered.

    Returns:
        The archive row's id.
    """
    if direction not in ("in", "out"):
        raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
    params = {
        "at": _utc(at),
        "direction": direction,
        "bank_code": bank_code,
        "connection_id": connection_id,
        "msg_id": msg_id,
        "msg_no": msg_no,
        "voucher_id": voucher_id,
        "raw": raw,
        "verified": verified,
        "verify_detail": verify_detail,
        "result_code": result_code,
    }
    return int(conn.execute(_ARCHIVE_INSERT, params).scalar_one())


_ARCHIVE_COLUMNS = (
    "at",
    "direction",
    "bank_code",
    "connection_id",
    "msg_id",
    "msg_no",
    "voucher_id",
    "raw",
    "verified",
    "verify_detail",
    "result_code",
)


def archive_messages(conn: Connection, messages: Sequence[Mapping[str, Any]]) -> None:
    """Archive several messages in one `executemany`: each a mapping of :func:`archive_message`'s arguments
    (`at`, `direction`, `bank_code` and `raw` required, the others default to None)."""
    if not messages:
        return
    rows = []
    for message in messages:
        unknown = set(message) - set(_ARCHIVE_COLUMNS)
        if unknown:
            raise TypeError(f"archive_messages: unknown {', '.join(sorted(unknown))}")
        if message["direction"] not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {message['direction']!r}")
        row = {name: message.get(name) for name in _ARCHIVE_COLUMNS}
        row["at"] = _utc(message["at"])
        rows.append(row)
    conn.execute(archive.insert(), rows)


def get_archived(conn: Connection, archive_id: int) -> ArchiveRecord | None:
    """One archived message, or None."""
    row = conn.execute(select(archive).where(archive.c.id == archive_id)).mappings().first()
    return None if row is None else _record(ArchiveRecord, row)


def archived_messages(
    conn: Connection,
    *,
    bank_code: str | None = None,
    msg_id: str | None = None,
    voucher_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ArchiveRecord]:
    """Archived messages matching every given filter, oldest first (a voucher's signed messages, a MsgId's)."""
    _page(limit, offset)
    conditions: list[ColumnElement[bool]] = []
    if bank_code is not None:
        conditions.append(archive.c.bank_code == bank_code)
    if msg_id is not None:
        conditions.append(archive.c.msg_id == msg_id)
    if voucher_id is not None:
        conditions.append(archive.c.voucher_id == voucher_id)
    rows = conn.execute(
        select(archive).where(*conditions).order_by(archive.c.id).limit(limit).offset(offset)
    ).mappings()
    return [_record(ArchiveRecord, row) for row in rows]


# --- quotas ----------------------------------------------------------------------------------------------------


def _quota_key(adm_div_code: str, st_year: int, agency_code: str) -> ColumnElement[bool]:
    return and_(quotas.c.adm_div_code == adm_div_code, quotas.c.st_year == st_year, quotas.c.agency_code == agency_code)


def get_quota(conn: Connection, adm_div_code: str, st_year: int, agency_code: str) -> QuotaRecord | None:
    """An agency's quota for a year, or None if it was never granted any."""
    row = conn.execute(select(quotas).where(_quota_key(adm_div_code, st_year, agency_code))).mappings().first()
    return None if row is None else _record(QuotaRecord, row)


def grant_quota(
    conn: Connection, adm_div_code: str, st_year: int, agency_code: str, amount_fen: int, at: datetime
) -> QuotaRecord:
    """Add `amount_fen` to an agency's granted quota (creating it), in one upsert.

    Raises:
        ValueError: `amount_fen` is not positive.
    """
    stmt = _insert(conn, quotas).values(
        adm_div_code=adm_div_code,
        st_year=st_year,
        agency_code=agency_code,
        granted_fen=_positive(amount_fen),
        used_fen=0,
        updated_at=_utc(at),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["adm_div_code", "st_year", "agency_code"],
        set_={
            "granted_fen": quotas.c.granted_fen + stmt.excluded.granted_fen,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    row = conn.execute(stmt.returning(*quotas.c)).mappings().one()
    return _record(QuotaRecord, row)


_USE_QUOTA: Final = (
    update(quotas)
    .where(
        quotas.c.adm_div_code == bindparam("p_adm_div_code"),
        quotas.c.st_year == bindparam("p_st_year"),
        quotas.c.agency_code == bindparam("p_agency_code"),
        quotas.c.granted_fen - quotas.c.used_fen >= bindparam("p_amount", type_=quotas.c.used_fen.type),
    )
    .values(
        used_fen=quotas.c.used_fen + bindparam("p_amount", type_=quotas.c.used_fen.type),
        updated_at=bindparam("p_at", type_=quotas.c.updated_at.type),
    )
)


def use_quota(
    conn: Connection, adm_div_code: str, st_year: int, agency_code: str, amount_fen: int, at: datetime
) -> None:
    """Spend `amount_fen` of an agency's quota, or refuse: never more than granted, even under concurrency.

    Raises:
        QuotaExceeded: granted − used is smaller than `amount_fen` (nothing was spent).
        ValueError: `amount_fen` is not positive.
    """
    _positive(amount_fen)
    params = {
        "p_adm_div_code": adm_div_code,
        "p_st_year": st_year,
        "p_agency_code": agency_code,
        "p_amount": amount_fen,
        "p_at": _utc(at),
    }
    result = conn.execute(_USE_QUOTA, params)
    if result.rowcount != 1:
        quota = get_quota(conn, adm_div_code, st_year, agency_code)
        available = 0 if quota is None else quota.available_fen
        raise QuotaExceeded(f"{adm_div_code}-{st_year}-{agency_code}", amount_fen, available)


def release_quota(
    conn: Connection, adm_div_code: str, st_year: int, agency_code: str, amount_fen: int, at: datetime
) -> None:
    """Give back `amount_fen` of spent quota (a refused, failed, cancelled or returned payment).

    Raises:
        QuotaUnderflow: less than `amount_fen` is in use (nothing was changed).
        ValueError: `amount_fen` is not positive.
    """
    _positive(amount_fen)
    result = conn.execute(
        update(quotas)
        .where(_quota_key(adm_div_code, st_year, agency_code), quotas.c.used_fen >= amount_fen)
        .values(used_fen=quotas.c.used_fen - amount_fen, updated_at=_utc(at))
    )
    if result.rowcount != 1:
        quota = get_quota(conn, adm_div_code, st_year, agency_code)
        raise QuotaUnderflow(
            f"{adm_div_code}-{st_year}-{agency_code}", amount_fen, 0 if quota is None else quota.used_fen
        )


def record_quota_notice(conn: Connection, notice: QuotaNotice, at: datetime) -> bool:
    """Record a 5106 quota notice once per (`AdmDivCode`, `StYear`, `VoucherNo`).

    Returns:
        True if it is new; False if that notice was already recorded (grant nothing then).
    """
    stmt = (
        _insert(conn, quota_notices)
        .values(
            adm_div_code=notice.adm_div_code,
            st_year=notice.st_year,
            voucher_no=notice.voucher_no,
            document=json.dumps(jsonform.to_json(notice), ensure_ascii=False, separators=(",", ":")),
            total_fen=sum(line.quota_amt_fen for line in notice.lines),
            created_at=_utc(at),
        )
        .on_conflict_do_nothing(index_elements=["adm_div_code", "st_year", "voucher_no"])
        .returning(quota_notices.c.id)
    )
    return conn.execute(stmt).scalar_one_or_none() is not None


def apply_quota_notice(conn: Connection, notice: QuotaNotice, at: datetime) -> bool:
    """Record a 5106 and grant each of its lines, once: applying the same notice again grants nothing.

    Returns:
        True if the notice was new and its quota granted; False if it had been applied before.
    """
    if not record_quota_notice(conn, notice, at):
        return False
    for line in notice.lines:
        grant_quota(conn, notice.adm_div_code, notice.st_year, line.agency_code, line.quota_amt_fen, at)
    return True


# --- meta ------------------------------------------------------------------------------------------------------


def get_meta(conn: Connection, key: str) -> str | None:
    """A stored setting (the node code, …), or None."""
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def set_meta(conn: Connection, key: str, value: str) -> None:
    """Store a setting, replacing any previous value."""
    stmt = _insert(conn, meta).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}))
