"""The card service: every step of the official-card cycle as one function over one database transaction.

Like :mod:`gateway.payments.service`, each function takes an open connection (the caller owns the transaction:
:mod:`gateway.dbthread` commits when it returns, rolls back when it raises), an explicit `now` (naive UTC) and,
where dates matter, an explicit `today` (the gateway's work date), and returns what the reactor side needs.
State changes go through the table in :mod:`gateway.cards.machine` and are written to `card_events`.

The cycle (docs/cards.md):

1. **Spending in** (:func:`apply_spending`, called by the payment service for a verified 7101): records are
   de-duplicated by (bank, `SpendId`); a real-time push and the daily batch are the same message, so the batch
   simply finds most of its records already there. The card number is kept only masked and as a keyed hash.
2. **Review** (:func:`approve`, :func:`reject`): only the agency's own records, each once, and approval holds
   the agency's quota for the records (:func:`gateway.store.repo.use_quota`), so approvals never exceed it.
3. **Repayment out** (:func:`repay`): approved records grouped per bank, agency and card
   (:func:`gateway.cards.plan.plan_repayments`) become 8202 vouchers with `BusinessTypeCode` 2, submitted
   through :func:`gateway.payments.service.submit` (the same outbox, the same exactly-once pipeline). The held
   quota is handed over to the voucher in the same transaction (released, then used again by `submit`). The
   card number is read back from the signed 7101 in the message archive, and checked against the hash.
4. **Result in** (:func:`apply_repayment_receipt`, called by the payment service in the receipt's
   transaction): per detail, REPAID, or back to APPROVED with the bank's reason. The payment service releases
   the quota of what was not paid (`PayAmt` − `XPayAmt`), which :func:`gateway.cards.plan.settle` has checked
   to be exactly the failed details. :func:`settle_stranded` brings back the records of a voucher that failed
   as a whole without a receipt (refused by the bank's 9120, cancelled, or settled by a status reply).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping

from gateway.cards import plan
from gateway.cards.machine import Event, IllegalTransition, State, next_state
from gateway.payments import service as payments
from gateway.store import repo
from gateway.store.errors import QuotaExceeded, StoreError
from gateway.store.tables import archive, card_events, card_spending, meta, outbox, quota_notices, vouchers
from protocols import jsonform
from protocols.errors import Problem, ResultCode, ValidationError
from protocols.messages import CardSpending, Message, QuotaNotice, Receipt, SpendRecord, Voucher, VoucherKey

log = logging.getLogger(__name__)

Events = list[tuple[str, dict[str, Any]]]
#: Reads an archived inbound frame body of a bank back into its verified message (the bank's dialect and pinned
#: certificate: :func:`gateway.cards.runtime.archive_reader`).
ArchiveReader = Callable[[str, bytes], Message]

#: Where the card-hash key lives (the `meta` table; see :func:`hash_key` for why there).
HASH_KEY_META: Final = "cards.card_hash_key"
#: Most records one approval or rejection may name.
MAX_REFS: Final = 1000
#: Spending ids looked up per query (keeps `IN (…)` lists short on both backends).
_CHUNK: Final = 500
#: Fields of a spending record that must agree when a bank reports the same `SpendId` again.
_SAME_RECORD: Final = (
    "card_hash",
    "card_holder",
    "agency_code",
    "merchant_name",
    "amount_fen",
    "txn_date",
    "txn_time",
    "auth_code",
    "limit_date",
)
OK: Final = int(ResultCode.OK)


class StateChanged(StoreError):
    """A record changed state between reading and writing it (its row lock should have prevented that)."""


# --- references and helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """A spending record's reference: its bank and `SpendId` (unique per bank, PROTOCOL.md §5.4); `BANK:ID`."""

    bank: str
    spend_id: str

    def __str__(self) -> str:
        return f"{self.bank}:{self.spend_id}"

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse `BANK:SPENDID`.

        Raises:
            ValueError: not two non-empty parts separated by a colon.
        """
        bank, sep, spend_id = text.partition(":")
        if not sep or not bank or not spend_id:
            raise ValueError(f"not a spending reference (BANK:SPENDID): {text!r}")
        return cls(bank, spend_id)


def ref_of(row: RowMapping) -> Ref:
    return Ref(row["bank_code"], row["spend_id"])


def adm_div_code_of(configured: str, node: str) -> str:
    """The `AdmDivCode` of repayments: the configured one, or the node code's first six digits."""
    return configured or node[:6]


def _insert(conn: Connection, table: Any) -> postgresql.Insert | sqlite.Insert:
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def hash_key(conn: Connection) -> bytes:
    """The instance's key for card hashes, made on first use (32 random bytes, in `meta`).

    Why in the database and not in a file: every node of a cluster must group cards alike, and the database is
    the one thing they share. It protects nothing the database would not give away anyway (the archive holds the
    signed 7101s with the numbers); what it does is keep the hashes shown in lists and exports from being
    reversed by trying every card number of a BIN without the key.
    """
    value = repo.get_meta(conn, HASH_KEY_META)
    if value is None:
        conn.execute(
            _insert(conn, meta)
            .values(key=HASH_KEY_META, value=secrets.token_hex(32))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        value = repo.get_meta(conn, HASH_KEY_META)
        assert value is not None
    return bytes.fromhex(value)


def _transition(
    conn: Connection,
    row: RowMapping,
    event: Event,
    now: datetime,
    actor: str,
    detail: Mapping[str, Any],
    *,
    msg_id: str | None = None,
    about_voucher: int | None = None,
    **changes: Any,
) -> State:
    """Apply `event` to a record: the state machine, a compare-and-set update of the state and `changes`, an event
    row (naming the message and the voucher it is about)."""
    old = State(row["state"])
    new = next_state(old, event)
    result = conn.execute(
        update(card_spending)
        .where(card_spending.c.id == row["id"], card_spending.c.state == old.value)
        .values(state=new.value, updated_at=now, **changes)
    )
    if result.rowcount != 1:
        raise StateChanged(f"spending record {ref_of(row)} is no longer {old.value}")
    conn.execute(
        insert(card_events).values(
            spending_id=row["id"],
            at=now,
            event=event.value,
            from_state=old.value,
            to_state=new.value,
            actor=actor,
            detail=_json(detail),
            msg_id=msg_id,
            voucher_id=about_voucher,
        )
    )
    return new


def _rows_by_refs(conn: Connection, refs: Iterable[Ref], *, lock: bool) -> dict[Ref, RowMapping]:
    by_bank: dict[str, list[str]] = {}
    for ref in refs:
        by_bank.setdefault(ref.bank, []).append(ref.spend_id)
    found: dict[Ref, RowMapping] = {}
    for bank, ids in by_bank.items():
        for start in range(0, len(ids), _CHUNK):
            query = select(card_spending).where(
                card_spending.c.bank_code == bank, card_spending.c.spend_id.in_(ids[start : start + _CHUNK])
            )
            if lock and conn.dialect.name != "sqlite":
                query = query.with_for_update()
            for row in conn.execute(query).mappings():
                found[ref_of(row)] = row
    return found


# --- 1. spending in ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """What one 7101 changed: new records, repeats of known ones, and conflicting repeats (kept as first seen)."""

    new: int
    duplicates: int
    conflicts: tuple[str, ...]


def apply_spending(
    conn: Connection, bank: str, spending: CardSpending, msg_id: str, now: datetime
) -> tuple[Events, bool, int | None]:
    """Record a bank's spending report (7101), verified by the hub: the payment service's `_apply` calls this.

    A `SpendId` the bank reported before is a duplicate and changes nothing: the daily batch repeats the real-time
    pushes. One reported again with different content keeps what was first recorded and is raised as an alert
    (the report is still acknowledged: its other records are good, and the first version is the one the finance
    side may already have approved).

    Returns:
        The payment service's `(events, kick, voucher_id)`: a `cards` event, no dispatcher kick, no voucher.
    """
    received = record_spending(conn, bank, spending.records, msg_id, now)
    data: dict[str, Any] = {
        "kind": "received",
        "bank": bank,
        "msg_id": msg_id,
        "new": received.new,
        "duplicates": received.duplicates,
        "conflicts": len(received.conflicts),
    }
    events: Events = [("cards", data)]
    if received.conflicts:
        shown = ", ".join(received.conflicts[:10])
        reason = f"7101 {msg_id}: {len(received.conflicts)} SpendId(s) reported again with other content: {shown}"
        log.warning("%s: %s (the first report is kept)", bank, reason)
        events.append(("alert", {"bank": bank, "msg_id": msg_id, "reason": reason[:200]}))
    log.info("%s: 7101 %s: %d new spending records, %d already known", bank, msg_id, received.new, received.duplicates)
    return events, False, None


def record_spending(
    conn: Connection, bank: str, records: Sequence[SpendRecord], msg_id: str, now: datetime
) -> Received:
    """Insert the records not yet known for `bank` (state RECEIVED), each with its first event."""
    key = hash_key(conn)
    rows = [_spending_row(key, bank, r, msg_id, now) for r in records]
    existing = _rows_by_refs(conn, (Ref(bank, r["spend_id"]) for r in rows), lock=False)
    fresh = [r for r in rows if Ref(bank, r["spend_id"]) not in existing]
    inserted: dict[str, int] = {}
    if fresh:
        conn.execute(
            _insert(conn, card_spending).on_conflict_do_nothing(index_elements=["bank_code", "spend_id"]), fresh
        )
        # a concurrent report of the same SpendId may have won a race: ours are the rows carrying our MsgId
        ids = [r["spend_id"] for r in fresh]
        for start in range(0, len(ids), _CHUNK):
            for spend_id, spending_id in conn.execute(
                select(card_spending.c.spend_id, card_spending.c.id).where(
                    card_spending.c.bank_code == bank,
                    card_spending.c.spend_id.in_(ids[start : start + _CHUNK]),
                    card_spending.c.msg_id == msg_id,
                )
            ):
                inserted[spend_id] = spending_id
        if inserted:
            conn.execute(
                insert(card_events),
                [
                    {
                        "spending_id": spending_id,
                        "at": now,
                        "event": "received",
                        "from_state": None,
                        "to_state": State.RECEIVED.value,
                        "actor": f"bank:{bank}",
                        "detail": _json({"msg_id": msg_id}),
                        "msg_id": msg_id,
                        "voucher_id": None,
                    }
                    for spending_id in inserted.values()
                ],
            )
    conflicts = tuple(
        r["spend_id"]
        for r in rows
        if (old := existing.get(Ref(bank, r["spend_id"]))) is not None and any(old[f] != r[f] for f in _SAME_RECORD)
    )
    return Received(len(inserted), len(rows) - len(inserted), conflicts)


def _spending_row(key: bytes, bank: str, r: SpendRecord, msg_id: str, now: datetime) -> dict[str, Any]:
    return {
        "bank_code": bank,
        "spend_id": r.spend_id,
        "card_masked": plan.mask_card(r.card_no),
        "card_hash": plan.card_hash(key, r.card_no),
        "card_holder": r.card_holder,
        "agency_code": r.agency_code,
        "merchant_name": r.merchant_name,
        "amount_fen": r.amt_fen,
        "txn_date": r.txn_date,
        "txn_time": f"{r.txn_time:%H%M%S}",
        "auth_code": r.auth_code,
        "limit_date": r.limit_date,
        "state": State.RECEIVED.value,
        "msg_id": msg_id,
        "repay_attempts": 0,
        "repay_failures": 0,
        "quota_held_fen": 0,
        "received_at": now,
        "updated_at": now,
    }


# --- 2. review -------------------------------------------------------------------------------------------------


def _reviewable(conn: Connection, agency: str, refs: Sequence[Ref]) -> list[RowMapping]:
    """The named records, locked, if every one is the agency's and not reviewed yet; else every problem named."""
    if not refs:
        raise ValidationError([Problem("refs", "name at least one spending record (BANK:SPENDID)")])
    if len(refs) > MAX_REFS:
        raise ValidationError([Problem("refs", f"at most {MAX_REFS} records at once, not {len(refs)}")])
    rows = _rows_by_refs(conn, refs, lock=True)
    problems: list[Problem] = []
    seen: set[Ref] = set()
    for ref in refs:
        row = rows.get(ref)
        if ref in seen:
            problems.append(Problem(str(ref), "named twice"))
        elif row is None:
            problems.append(Problem(str(ref), "no such spending record"))
        elif row["agency_code"] != agency:
            problems.append(Problem(str(ref), f"not a spending record of agency {agency}"))
        elif row["state"] != State.RECEIVED.value:
            problems.append(Problem(str(ref), f"already reviewed: {row['state']}"))
        seen.add(ref)
    if problems:
        raise ValidationError(problems)
    return [rows[ref] for ref in refs]


def approve(
    conn: Connection,
    agency: str,
    refs: Sequence[Ref],
    actor: str,
    now: datetime,
    today: date,
    adm_div_code: str,
) -> list[Ref]:
    """Approve records for repayment (all or none), holding the agency's quota of `today`'s year for them.

    Raises:
        ValidationError: a record that is not the agency's, unknown, reviewed already, named twice; or their sum
            exceeds the agency's remaining quota. Nothing is changed then.
    """
    rows = _reviewable(conn, agency, refs)
    total_fen = sum(row["amount_fen"] for row in rows)
    try:
        repo.use_quota(conn, adm_div_code, today.year, agency, total_fen, now)
    except QuotaExceeded as exc:
        raise ValidationError(
            [
                Problem(
                    "quota",
                    f"approving {len(rows)} record(s) of {total_fen} fen exceeds agency {agency}'s quota: "
                    f"{exc.available_fen} fen left of {adm_div_code}-{today.year}",
                )
            ]
        ) from None
    for row in rows:
        _transition(
            conn,
            row,
            Event.APPROVE,
            now,
            actor,
            {"quota_year": today.year, "amount_fen": row["amount_fen"]},
            reviewed_by=actor,
            reviewed_at=now,
            reason=None,
            quota_year=today.year,
            quota_held_fen=row["amount_fen"],
        )
    return [ref_of(row) for row in rows]


def reject(conn: Connection, agency: str, refs: Sequence[Ref], reason: str, actor: str, now: datetime) -> list[Ref]:
    """Reject records (all or none) with a reason: personal spending the cardholder repays.

    Raises:
        ValidationError: no reason, or a record that is not the agency's, unknown, or reviewed already.
    """
    reason = reason.strip()
    if not 1 <= len(reason) <= 200:
        raise ValidationError([Problem("reason", "a rejection gives its reason (1-200 characters)")])
    rows = _reviewable(conn, agency, refs)
    for row in rows:
        _transition(
            conn, row, Event.REJECT, now, actor, {"reason": reason}, reviewed_by=actor, reviewed_at=now, reason=reason
        )
    return [ref_of(row) for row in rows]


# --- 3. repayment out ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepaySettings:
    """What a repayment run needs to know about the instance."""

    node: str
    adm_div_code: str
    banks: Mapping[str, str]  # configured bank code → its name (`PayAcctBankName`, `PayeeAcctBankName`)
    max_details: int = 50


@dataclass(frozen=True, slots=True)
class RepaymentVoucher:
    """One repayment voucher made by :func:`repay`."""

    key: VoucherKey
    bank: str
    agency: str
    card: str  # masked
    records: int
    amount_fen: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": str(self.key),
            "bank": self.bank,
            "agency": self.agency,
            "card": self.card,
            "records": self.records,
            "amount_fen": self.amount_fen,
        }


@dataclass(frozen=True, slots=True)
class Skipped:
    """A group of approved records that could not be repaid now, and why (they stay APPROVED)."""

    bank: str
    agency: str
    card: str
    refs: tuple[str, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "bank": self.bank,
            "agency": self.agency,
            "card": self.card,
            "refs": list(self.refs),
            "reason": self.reason,
        }


@dataclass
class RepayResult:
    """What :func:`repay` did."""

    vouchers: list[RepaymentVoucher] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    events: Events = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"vouchers": [v.to_json() for v in self.vouchers], "skipped": [s.to_json() for s in self.skipped]}


def repay(
    conn: Connection,
    settings: RepaySettings,
    reader: ArchiveReader,
    actor: str,
    now: datetime,
    today: date,
    *,
    agency: str | None = None,
    bank: str | None = None,
) -> RepayResult:
    """Turn approved records into repayment vouchers and submit them (PROTOCOL.md §5.1, `BusinessTypeCode` 2).

    Each voucher is made in its own savepoint: a group that cannot be repaid (no zero-balance account known for
    the agency, a card number that cannot be read back, not enough quota for records whose earlier repayment
    failed) is reported in `skipped` and its records stay APPROVED, while the other groups go ahead.

    Args:
        conn: a connection in a transaction.
        settings: the instance's node, division, banks and the voucher size limit.
        reader: reads an archived 7101 back (the bank's dialect, its pinned certificate).
        actor: who asked ("api:finance", "demo:cards").
        now: the current time (UTC).
        today: the work date: `VouDate` and `StYear` of the vouchers.
        agency: only this agency's records.
        bank: only this bank's records.
    """
    query = select(card_spending).where(card_spending.c.state == State.APPROVED.value)
    if agency is not None:
        query = query.where(card_spending.c.agency_code == agency)
    if bank is not None:
        query = query.where(card_spending.c.bank_code == bank)
    query = query.order_by(card_spending.c.id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)  # a concurrent run takes the others
    rows = {row["id"]: row for row in conn.execute(query).mappings()}
    approved = [
        plan.Approved(r["id"], r["bank_code"], r["agency_code"], r["card_hash"], r["amount_fen"]) for r in rows.values()
    ]
    result = RepayResult()
    accounts: dict[tuple[str, str], plan.AgencyAccount | None] = {}
    reports: dict[tuple[str, str], dict[str, SpendRecord]] = {}
    key = hash_key(conn) if rows else b""
    for group in plan.plan_repayments(approved, settings.max_details):
        members = [rows[r.id] for r in group.records]
        card = members[0]["card_masked"]
        refs = tuple(str(ref_of(m)) for m in members)

        def skip(reason: str, group: plan.Group = group, card: str = card, refs: tuple[str, ...] = refs) -> None:
            result.skipped.append(Skipped(group.bank_code, group.agency_code, card, refs, reason))
            log.warning("repayment of %s at %s (card %s) skipped: %s", group.agency_code, group.bank_code, card, reason)

        if group.bank_code not in settings.banks:
            skip(f"bank {group.bank_code} is not configured")
            continue
        account_key = (group.bank_code, group.agency_code)
        if account_key not in accounts:
            accounts[account_key] = agency_account(
                conn, group.bank_code, settings.adm_div_code, group.agency_code, settings.banks[group.bank_code]
            )
        account = accounts[account_key]
        if account is None:
            skip(f"no zero-balance account known for agency {group.agency_code} (send its 5106 quota notice first)")
            continue
        try:
            lines = [_line(conn, reader, reports, key, m) for m in members]
        except _Unreadable as exc:
            skip(str(exc))
            continue
        voucher = plan.repayment_voucher(
            adm_div_code=settings.adm_div_code,
            st_year=today.year,
            vou_date=today,
            voucher_no=plan.repayment_voucher_no(today, members[0]["id"], members[0]["repay_attempts"] + 1),
            account=account,
            card_holder=members[0]["card_holder"],
            card_bank_name=settings.banks[group.bank_code],
            lines=lines,
        )
        savepoint = conn.begin_nested()
        try:
            for member in members:
                if member["quota_held_fen"] > 0:  # hand the held quota over to the voucher, which uses it again
                    repo.release_quota(
                        conn,
                        settings.adm_div_code,
                        member["quota_year"],
                        member["agency_code"],
                        member["quota_held_fen"],
                        now,
                    )
            (submitted,) = payments.submit(
                conn, [(group.bank_code, voucher)], actor, now, settings.node, list(settings.banks)
            )
        except ValidationError as exc:
            savepoint.rollback()
            skip("; ".join(f"{p.field}: {p.message}" for p in exc.problems)[:500])
            continue
        for n, member in enumerate(members, 1):
            _transition(
                conn,
                member,
                Event.REPAY,
                now,
                actor,
                {"voucher": str(submitted.key), "detail": str(n)},
                about_voucher=submitted.id,
                voucher_id=submitted.id,
                reason=None,
                detail_id=str(n),
                repay_attempts=member["repay_attempts"] + 1,
                quota_held_fen=0,
            )
        savepoint.commit()
        made = RepaymentVoucher(submitted.key, group.bank_code, group.agency_code, card, len(members), group.amount_fen)
        result.vouchers.append(made)
        result.events.append(("voucher", {"key": str(submitted.key), "bank": group.bank_code, "state": "ACCEPTED"}))
        result.events.append(("cards", {"kind": "repaying", **made.to_json()}))
    return result


class _Unreadable(Exception):
    """A record's card number cannot be read back from the archive."""


def _line(
    conn: Connection,
    reader: ArchiveReader,
    reports: dict[tuple[str, str], dict[str, SpendRecord]],
    key: bytes,
    row: RowMapping,
) -> plan.Line:
    """The voucher line of a record, with the card number read back from the 7101 that reported it."""
    bank, msg_id = row["bank_code"], row["msg_id"]
    if (bank, msg_id) not in reports:
        raw = conn.execute(
            select(archive.c.raw)
            .where(
                archive.c.bank_code == bank,
                archive.c.msg_id == msg_id,
                archive.c.direction == "in",
                archive.c.result_code == OK,
            )
            .order_by(archive.c.id)
            .limit(1)
        ).scalar_one_or_none()
        records: dict[str, SpendRecord] = {}
        if raw is not None:
            try:
                body = reader(bank, bytes(raw)).body
            except Exception as exc:  # a rotated bank certificate, a dialect gone: say so, repay the rest
                log.error("cannot read back 7101 %s of %s from the archive: %s", msg_id, bank, exc)
                body = None
            if isinstance(body, CardSpending):
                records = {r.spend_id: r for r in body.records}
        reports[(bank, msg_id)] = records
    record = reports[(bank, msg_id)].get(row["spend_id"])
    if record is None:
        raise _Unreadable(f"{ref_of(row)}: its 7101 {msg_id} cannot be read back from the message archive")
    if plan.card_hash(key, record.card_no) != row["card_hash"] or record.amt_fen != row["amount_fen"]:
        raise _Unreadable(f"{ref_of(row)}: the archived 7101 {msg_id} does not match the record")
    return plan.Line(row["spend_id"], row["amount_fen"], record.card_no)


def agency_account(
    conn: Connection, bank: str, adm_div_code: str, agency: str, bank_name: str
) -> plan.AgencyAccount | None:
    """The agency's zero-balance account at `bank`, from the newest 5106 quota notice that names it.

    Notices forwarded to this bank (the outbox) come first, since the account is held there; then any recorded
    notice of the division. `PayAcctName` follows the banks' convention (`<agency name>零余额账户`); the quota
    line carries no branch name, so the bank's configured name stands for it.
    """
    sent = (
        conn.execute(
            select(outbox.c.document)
            .where(outbox.c.bank_code == bank, outbox.c.msg_no == "5106")
            .order_by(outbox.c.id.desc())
        )
        .scalars()
        .all()
    )
    recorded = (
        conn.execute(
            select(quota_notices.c.document)
            .where(quota_notices.c.adm_div_code == adm_div_code)
            .order_by(quota_notices.c.id.desc())
        )
        .scalars()
        .all()
    )
    candidates = [json.loads(doc).get("body") for doc in sent] + [json.loads(doc) for doc in recorded]
    for notice in map(_notice, candidates):
        if notice is None or notice.adm_div_code != adm_div_code:
            continue
        for line in notice.lines:
            if line.agency_code == agency:
                return plan.AgencyAccount(
                    agency_code=agency,
                    agency_name=line.agency_name,
                    pay_acct_no=line.pay_acct_no,
                    pay_acct_name=f"{line.agency_name}零余额账户",
                    pay_acct_bank_name=bank_name,
                    fund_type_code=line.fund_type_code,
                    exp_func_code=line.exp_func_code,
                )
    return None


def _notice(data: Any) -> QuotaNotice | None:
    try:
        notice: QuotaNotice = jsonform.from_json(QuotaNotice, data)
    except ValidationError:
        return None
    return notice


# --- 4. result in ------------------------------------------------------------------------------------------------


def apply_repayment_receipt(
    conn: Connection, voucher: RowMapping, receipt: Receipt, msg_id: str, now: datetime, actor: str
) -> Events:
    """Per-detail results of a repayment voucher's receipt, in the receipt's transaction (the payment service's
    `apply_receipt` calls this once the voucher is settled, and again for a repeat that agrees with it).

    Paid details' records become REPAID; failed ones go back to APPROVED with the bank's reason, their quota
    released by the payment service (`PayAmt` − `XPayAmt`, checked here to be the failed details' sum). Records
    settled before (a repeated receipt) are left alone.

    Raises:
        gateway.payments.service.Refused: the receipt's details do not fit the voucher (91006, nothing applied).
    """
    rows = _repaying(conn, voucher["id"])
    if not rows:
        return []
    details = {d.id: d.pay_amt_fen for d in voucher_of(voucher).details}
    try:
        settlement = plan.settle(details, receipt)
    except plan.SettlementError as exc:
        raise payments.Refused(f"repayment {receipt.key}: {exc}") from None
    return _settle_rows(conn, voucher, rows, settlement, now, actor, msg_id, receipt.x_agent_business_no)


def voucher_of(row: RowMapping) -> Voucher:
    """The canonical voucher of a `vouchers` row."""
    decoded: Voucher = jsonform.from_json(Voucher, json.loads(row["document"]))
    return decoded


def _repaying(conn: Connection, voucher_id: int) -> list[RowMapping]:
    query = select(card_spending).where(
        card_spending.c.voucher_id == voucher_id, card_spending.c.state == State.REPAYING.value
    )
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return list(conn.execute(query.order_by(card_spending.c.id)).mappings())


def _settle_rows(
    conn: Connection,
    voucher: RowMapping,
    rows: Sequence[RowMapping],
    settlement: plan.Settlement,
    now: datetime,
    actor: str,
    msg_id: str | None,
    serial: str | None,
) -> Events:
    key = VoucherKey(voucher["adm_div_code"], voucher["st_year"], voucher["vt_code"], voucher["voucher_no"])
    repaid_fen = failed_fen = repaid = failed = 0
    for row in rows:
        detail = row["detail_id"]
        if detail in settlement.paid:
            _transition(
                conn,
                row,
                Event.REPAID,
                now,
                actor,
                {"voucher": str(key), "detail": detail, "serial": serial},
                msg_id=msg_id,
                about_voucher=voucher["id"],
                repaid_at=now,
            )
            repaid += 1
            repaid_fen += row["amount_fen"]
        else:
            reason = settlement.failed.get(detail, "还款失败")
            _transition(
                conn,
                row,
                Event.REPAY_FAILED,
                now,
                actor,
                {"voucher": str(key), "detail": detail, "reason": reason},
                msg_id=msg_id,
                about_voucher=voucher["id"],
                reason=reason,
                repay_failures=row["repay_failures"] + 1,
            )
            failed += 1
            failed_fen += row["amount_fen"]
    if failed:
        log.warning("repayment %s: %d of %d records failed (%d fen)", key, failed, len(rows), failed_fen)
    data = {
        "kind": "settled",
        "key": str(key),
        "bank": voucher["bank_code"],
        "agency": voucher["agency_code"],
        "repaid": repaid,
        "repaid_fen": repaid_fen,
        "failed": failed,
        "failed_fen": failed_fen,
    }
    return [("cards", data)]


def settle_stranded(conn: Connection, now: datetime) -> Events:
    """Records still REPAYING whose voucher was settled without a receipt that could settle them.

    A voucher refused by the bank's 9120 (REJECTED), cancelled before sending, or refused by a status reply
    (FAILED) repaid nothing: its records go back to APPROVED with the voucher's reason (the payment service has
    released the voucher's quota). A voucher a status reply reported paid in full repaid every record. One
    reported paid in part waits for its receipt, which the bank sends until it is acknowledged.
    """
    c = vouchers.c
    query = (
        select(vouchers)
        .where(
            c.id.in_(
                select(card_spending.c.voucher_id).where(card_spending.c.state == State.REPAYING.value).distinct()
            ),
            or_(
                c.state.in_(("REJECTED", "CANCELLED", "FAILED")),
                and_(c.state == "PAID", c.x_pay_amt_fen == c.amount_fen),
            ),
        )
        .order_by(c.id)
        .limit(500)
    )
    events: Events = []
    for voucher in conn.execute(query).mappings().all():
        rows = _repaying(conn, voucher["id"])
        if not rows:
            continue
        details = [row["detail_id"] for row in rows]
        if voucher["state"] == "PAID":
            settlement = plan.Settlement(frozenset(details), {})
        else:
            reason = voucher["reason"] or f"repayment voucher {voucher['state'].lower()}"
            settlement = plan.Settlement(frozenset(), dict.fromkeys(details, reason))
        events += _settle_rows(
            conn, voucher, rows, settlement, now, "system:cards", None, voucher["x_agent_business_no"]
        )
    return events


__all__ = [
    "IllegalTransition",
    "Ref",
    "RepayResult",
    "RepaySettings",
    "apply_repayment_receipt",
    "apply_spending",
    "approve",
    "reject",
    "repay",
    "settle_stranded",
]
