"""Voucher history: append-only and hash-chained; the chain verifies, and any edit behind its back is found."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, update

from gateway.store import repo
from gateway.store.db import transaction
from gateway.store.errors import NotFound
from gateway.store.tables import voucher_history, vouchers
from protocols import samples

NOW = datetime(2026, 11, 23, 2, 30, 1, 123456)


def _paid_voucher(conn: Connection) -> int:
    """A voucher that went ACCEPTED → SENT → DELIVERED → PAID, each step with its history entry."""
    voucher_id = repo.insert_voucher(
        conn, samples.direct_voucher(), bank_code="ICBC", submitted_by="operator:alice", at=NOW, msg_id="V1"
    )
    steps: list[tuple[str, str, str, str, dict[str, Any], str]] = [
        ("dispatch", "ACCEPTED", "SENT", "system:dispatcher", {"attempt": 1}, "V1"),
        ("ack", "SENT", "DELIVERED", "bank:ICBC", {"result": 90000, "add_word": ""}, "B1"),
        ("receipt_paid", "DELIVERED", "PAID", "bank:ICBC", {"x_pay_date": date(2026, 11, 23), "附言": "已付"}, "B2"),
    ]
    for n, (event, old, new, actor, detail, msg_id) in enumerate(steps, 1):
        at = NOW + timedelta(minutes=n)
        repo.update_voucher(conn, voucher_id, n, at, state=new)
        repo.append_history(conn, voucher_id, at, event, old, new, actor, detail, msg_id)
    return voucher_id


def test_entries_are_numbered_and_chained(db_engine: Engine) -> None:
    """seq runs 1..n, the first prev_hash is 64 zeros, each prev_hash is the previous hash; it verifies."""
    with transaction(db_engine) as conn:
        voucher_id = _paid_voucher(conn)
    with transaction(db_engine, read_only=True) as conn:
        entries = repo.history(conn, voucher_id)
        assert repo.verify_chain(conn, voucher_id)
        assert repo.find_chain_break(conn, voucher_id) is None
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert [e.to_state for e in entries] == ["ACCEPTED", "SENT", "DELIVERED", "PAID"]
    assert entries[0].prev_hash == repo.GENESIS_HASH == "0" * 64
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert len({e.hash for e in entries}) == 4
    assert entries[3].detail_data() == {"x_pay_date": "2026-11-23", "附言": "已付"}
    assert entries[3].at == NOW + timedelta(minutes=3)


def test_the_hash_is_reproducible_from_the_documented_form(db_engine: Engine) -> None:
    """An auditor recomputes an entry's hash with hashlib and json alone, from the stored row."""
    with transaction(db_engine) as conn:
        entry = repo.history(conn, _paid_voucher(conn))[3]
    canonical = json.dumps(
        {
            "voucher_id": entry.voucher_id,
            "seq": entry.seq,
            "at": entry.at.isoformat(timespec="microseconds"),
            "event": entry.event,
            "from_state": entry.from_state,
            "to_state": entry.to_state,
            "actor": entry.actor,
            "detail": entry.detail,
            "msg_id": entry.msg_id,
            "prev_hash": entry.prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == entry.hash


def test_an_edited_detail_is_found(db_engine: Engine) -> None:
    """Changing a row's detail behind the repository's back breaks the chain at that row."""
    with transaction(db_engine) as conn:
        voucher_id = _paid_voucher(conn)
    with transaction(db_engine) as conn:
        conn.execute(
            update(voucher_history)
            .where(voucher_history.c.voucher_id == voucher_id, voucher_history.c.seq == 3)
            .values(detail='{"add_word":"","result":91006}')
        )
    with transaction(db_engine, read_only=True) as conn:
        assert not repo.verify_chain(conn, voucher_id)
        assert repo.find_chain_break(conn, voucher_id) == repo.ChainBreak(
            voucher_id, 3, "hash does not match the entry's content"
        )


def test_a_rehashed_edit_is_found_by_the_next_entry(db_engine: Engine) -> None:
    """Recomputing the edited row's own hash does not help: the next entry's prev_hash no longer matches."""
    with transaction(db_engine) as conn:
        voucher_id = _paid_voucher(conn)
        entry = repo.history(conn, voucher_id)[1]
        forged_at = entry.at - timedelta(hours=1)
        forged = repo.chain_hash(
            voucher_id=voucher_id,
            seq=2,
            at=forged_at,
            event=entry.event,
            from_state=entry.from_state,
            to_state=entry.to_state,
            actor=entry.actor,
            detail=entry.detail,
            msg_id=entry.msg_id,
            prev_hash=entry.prev_hash,
        )
        conn.execute(update(voucher_history).where(voucher_history.c.id == entry.id).values(at=forged_at, hash=forged))
        brk = repo.find_chain_break(conn, voucher_id)
    assert brk is not None and (brk.seq, brk.reason) == (3, "prev_hash is not the previous entry's hash")


def test_removed_entries_are_found(db_engine: Engine) -> None:
    """A missing middle entry is a gap; a missing newest entry leaves the chain short of the voucher's state."""
    with transaction(db_engine) as conn:
        middle = _paid_voucher(conn)
        conn.execute(delete(voucher_history).where(voucher_history.c.voucher_id == middle, voucher_history.c.seq == 2))
        assert repo.find_chain_break(conn, middle) == repo.ChainBreak(middle, 2, "entry 2 is missing (found 3)")
    with transaction(db_engine) as conn:
        conn.execute(delete(voucher_history).where(voucher_history.c.voucher_id == middle, voucher_history.c.seq > 2))
        brk = repo.find_chain_break(conn, middle)
        assert brk is not None and brk.reason == "the voucher is PAID but its last entry says ACCEPTED"
        conn.execute(delete(voucher_history).where(voucher_history.c.voucher_id == middle))
        assert repo.find_chain_break(conn, middle) == repo.ChainBreak(middle, 1, "the voucher has no history")


def test_a_state_changed_without_history_is_found(db_engine: Engine) -> None:
    """Moving the voucher's state without a history entry shows up at the end of the chain."""
    with transaction(db_engine) as conn:
        voucher_id = _paid_voucher(conn)
        conn.execute(update(vouchers).where(vouchers.c.id == voucher_id).values(state="RETURNED"))
        brk = repo.find_chain_break(conn, voucher_id)
    assert brk == repo.ChainBreak(voucher_id, 4, "the voucher is RETURNED but its last entry says PAID")


def test_chains_are_per_voucher(db_engine: Engine) -> None:
    """Each voucher has its own chain from seq 1; tampering with one leaves the other valid."""
    with transaction(db_engine) as conn:
        first = _paid_voucher(conn)
        second = repo.insert_voucher(
            conn, samples.direct_voucher("5201450100000999"), bank_code="CCB", submitted_by="system:test", at=NOW
        )
        entry = repo.append_history(conn, second, NOW, "cancel", "ACCEPTED", "ACCEPTED", "operator:bob", {})
        assert (entry.seq, entry.prev_hash) == (2, repo.history(conn, second)[0].hash)
        conn.execute(update(voucher_history).where(voucher_history.c.voucher_id == first).values(actor="x"))
        assert not repo.verify_chain(conn, first)
        assert repo.verify_chain(conn, second)


def test_history_of_a_missing_voucher(db_engine: Engine) -> None:
    """Appending to or verifying a voucher that does not exist raises NotFound."""
    with transaction(db_engine) as conn:
        with pytest.raises(NotFound):
            repo.append_history(conn, 42, NOW, "x", None, "ACCEPTED", "test", {})
        with pytest.raises(NotFound):
            repo.verify_chain(conn, 42)
        assert repo.history(conn, 42) == []
