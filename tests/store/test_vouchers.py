"""Vouchers: recorded once per key, changed only from the version read, found by the operators' filters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.store import repo
from gateway.store.db import transaction
from gateway.store.errors import ConcurrentUpdate, DuplicateVoucher, NotFound
from gateway.store.tables import vouchers
from protocols import samples
from protocols.messages import VoucherKey

NOW = datetime(2026, 11, 23, 2, 30, 1, 123456)


def _add(conn: Connection, voucher_no: str, *, bank: str = "ICBC", at: datetime = NOW, amount_fen: int = 0) -> int:
    amounts = (amount_fen,) if amount_fen else (10_000_000, 2_500_000)
    return repo.insert_voucher(
        conn,
        samples.direct_voucher(voucher_no, amounts),
        bank_code=bank,
        submitted_by="operator:alice",
        at=at,
    )


def test_insert_and_read_back(db_engine: Engine) -> None:
    """A recorded voucher reads back with its key columns, amount, document and a first history entry."""
    voucher = samples.direct_voucher()
    with transaction(db_engine) as conn:
        voucher_id = repo.insert_voucher(
            conn, voucher, bank_code="ICBC", submitted_by="operator:alice", at=NOW, msg_id="V1"
        )
    with transaction(db_engine, read_only=True) as conn:
        record = repo.get_voucher(conn, voucher_id)
        by_key = repo.get_voucher_by_key(conn, voucher.key)
        entries = repo.history(conn, voucher_id)
    assert record is not None and record == by_key
    assert record.key == voucher.key
    assert (record.state, record.version, record.amount_fen, record.returned_fen) == ("ACCEPTED", 1, 12_500_000, 0)
    assert (record.created_at, record.updated_at, record.msg_id) == (NOW, NOW, "V1")
    assert record.voucher() == voucher  # the JSON document is lossless
    assert record.agency_name == "南宁市教育局"
    assert [(e.seq, e.event, e.from_state, e.to_state, e.actor) for e in entries] == [
        (1, "submitted", None, "ACCEPTED", "operator:alice")
    ]


def test_the_voucher_key_is_unique(db_engine: Engine) -> None:
    """The same key twice is refused with DuplicateVoucher, and the transaction stays usable."""
    with transaction(db_engine) as conn:
        first = _add(conn, "5201450100000001")
    with transaction(db_engine) as conn:
        with pytest.raises(DuplicateVoucher) as info:
            _add(conn, "5201450100000001", bank="CCB")
        assert info.value.existing_id == first
        assert info.value.key == "450100-2026-5201-5201450100000001"
        _add(conn, "5201450100000002")  # the same transaction goes on
    with transaction(db_engine, read_only=True) as conn:
        assert repo.list_vouchers(conn).total == 2


def test_the_database_itself_enforces_the_voucher_key(db_engine: Engine) -> None:
    """Even a raw INSERT around the repository cannot record a key twice (the unique constraint)."""
    with transaction(db_engine) as conn:
        _add(conn, "5201450100000001")
        row = dict(repo.get_voucher_row(conn, 1))
    del row["id"]
    with pytest.raises(IntegrityError), transaction(db_engine) as conn:
        conn.execute(vouchers.insert().values(**row))


def test_optimistic_concurrency_refuses_a_stale_version(db_engine: Engine) -> None:
    """Two writers read version 1; the first update wins, the second gets ConcurrentUpdate and changes nothing."""
    with transaction(db_engine) as conn:
        voucher_id = _add(conn, "5201450100000001")
    later = NOW + timedelta(minutes=1)
    with transaction(db_engine) as conn:
        assert repo.update_voucher(conn, voucher_id, 1, later, state="SENT", sent_at=later) == 2
    with pytest.raises(ConcurrentUpdate) as info, transaction(db_engine) as conn:
        repo.update_voucher_state(conn, voucher_id, 1, later, state="CANCELLED")
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)
    with transaction(db_engine, read_only=True) as conn:
        record = repo.get_voucher(conn, voucher_id)
    assert record is not None
    assert (record.state, record.version, record.sent_at, record.updated_at) == ("SENT", 2, later, later)


def test_update_refuses_fixed_columns_unknown_states_and_missing_vouchers(db_engine: Engine) -> None:
    """The key, the amount and the version are not for update_voucher; states come from the list."""
    with transaction(db_engine) as conn:
        voucher_id = _add(conn, "5201450100000001")
        with pytest.raises(TypeError, match="amount_fen"):
            repo.update_voucher(conn, voucher_id, 1, NOW, amount_fen=1)
        with pytest.raises(ValueError, match="state"):
            repo.update_voucher(conn, voucher_id, 1, NOW, state="LOST")
        with pytest.raises(NotFound):
            repo.update_voucher(conn, voucher_id + 1, 1, NOW, reason="x")
        with pytest.raises(NotFound):
            repo.get_voucher_row(conn, voucher_id + 1)
        assert repo.get_voucher(conn, voucher_id + 1) is None
        assert repo.get_voucher_by_key(conn, VoucherKey("450100", 2026, "5201", "nope")) is None


def test_receipt_fields_and_aware_times_are_stored_as_naive_utc(db_engine: Engine) -> None:
    """An aware time is stored as the same instant in naive UTC; the receipt's X fields round-trip."""
    beijing = timezone(timedelta(hours=8))
    with transaction(db_engine) as conn:
        voucher_id = _add(conn, "5201450100000001")
        repo.update_voucher(
            conn,
            voucher_id,
            1,
            datetime(2026, 11, 23, 18, 0, tzinfo=beijing),
            state="PAID",
            x_agent_business_no="ICBC202611230001",
            x_pay_date=date(2026, 11, 23),
            x_pay_amt_fen=12_500_000,
            deadline_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        )
        record = repo.get_voucher(conn, voucher_id)
    assert record is not None
    assert record.updated_at == datetime(2026, 11, 23, 10, 0)
    assert record.deadline_at == datetime(2026, 11, 23, 12, 0)
    assert (record.x_agent_business_no, record.x_pay_date, record.x_pay_amt_fen) == (
        "ICBC202611230001",
        date(2026, 11, 23),
        12_500_000,
    )


def test_list_vouchers_filters_pages_and_counts(db_engine: Engine) -> None:
    """Every filter narrows the list; the total counts all pages; newest first."""
    with transaction(db_engine) as conn:
        _add(conn, "A1", bank="ICBC", amount_fen=100, at=datetime(2026, 11, 21, 23, 59))
        _add(conn, "A2", bank="ICBC", amount_fen=200, at=datetime(2026, 11, 22, 0, 0))
        _add(conn, "A3", bank="CCB", amount_fen=300, at=datetime(2026, 11, 22, 23, 59, 59, 999999))
        _add(conn, "A4", bank="CCB", amount_fen=400, at=datetime(2026, 11, 23, 0, 0))
        other = replace(samples.direct_voucher("A5", (500,)), agency_code="202002")
        repo.insert_voucher(conn, other, bank_code="ICBC", submitted_by="finance:feeder", at=NOW)
        repo.update_voucher(conn, 1, 1, NOW, state="PAID")

    def numbers(**filters: Any) -> tuple[list[str], int]:
        with transaction(db_engine, read_only=True) as conn:
            page = repo.list_vouchers(conn, **filters)
        return [v.voucher_no for v in page.items], page.total

    assert numbers() == (["A5", "A4", "A3", "A2", "A1"], 5)
    assert numbers(limit=2, offset=1) == (["A4", "A3"], 5)
    assert numbers(state="PAID") == (["A1"], 1)
    assert numbers(bank_code="CCB") == (["A4", "A3"], 2)
    assert numbers(agency_code="202002") == (["A5"], 1)
    assert numbers(voucher_no="A3") == (["A3"], 1)
    assert numbers(min_fen=200, max_fen=400) == (["A4", "A3", "A2"], 3)
    assert numbers(date_from=date(2026, 11, 22), date_to=date(2026, 11, 22)) == (["A3", "A2"], 2)
    assert numbers(bank_code="ICBC", min_fen=150) == (["A5", "A2"], 2)
    with pytest.raises(ValueError), transaction(db_engine, read_only=True) as conn:
        repo.list_vouchers(conn, limit=0)


def test_counts_by_state(db_engine: Engine) -> None:
    """Counts per state, for all banks or one."""
    with transaction(db_engine) as conn:
        for n in range(3):
            _add(conn, f"I{n}", bank="ICBC")
        _add(conn, "C0", bank="CCB")
        repo.update_voucher(conn, 1, 1, NOW, state="SENT")
        assert repo.counts_by_state(conn) == {"ACCEPTED": 3, "SENT": 1}
        assert repo.counts_by_state(conn, bank_code="ICBC") == {"ACCEPTED": 2, "SENT": 1}
        assert repo.counts_by_state(conn, bank_code="ABC") == {}


def test_vouchers_past_deadline(db_engine: Engine) -> None:
    """Only vouchers waiting for the bank whose deadline has come, earliest deadline first."""
    with transaction(db_engine) as conn:
        ids = [_add(conn, f"D{n}") for n in range(5)]
        repo.update_voucher(conn, ids[0], 1, NOW, state="SENT", deadline_at=NOW + timedelta(seconds=1))
        repo.update_voucher(conn, ids[1], 1, NOW, state="DELIVERED", deadline_at=NOW - timedelta(hours=1))
        repo.update_voucher(conn, ids[2], 1, NOW, state="IN_DOUBT", deadline_at=NOW)
        repo.update_voucher(conn, ids[3], 1, NOW, state="PAID", deadline_at=NOW - timedelta(hours=2))
        repo.update_voucher(conn, ids[4], 1, NOW, deadline_at=NOW - timedelta(hours=3))  # still ACCEPTED
        assert [v.id for v in repo.vouchers_past_deadline(conn, NOW)] == [ids[1], ids[2]]
        later = NOW + timedelta(seconds=1)
        assert [v.id for v in repo.vouchers_past_deadline(conn, later)] == [ids[1], ids[2], ids[0]]
        assert [v.id for v in repo.vouchers_past_deadline(conn, later, states=("SENT",))] == [ids[0]]


def test_meta_settings(db_engine: Engine) -> None:
    """Settings are stored, replaced and read back."""
    with transaction(db_engine) as conn:
        assert repo.get_meta(conn, "node") is None
        repo.set_meta(conn, "node", "450100000000")
        repo.set_meta(conn, "node", "450200000000")
        assert repo.get_meta(conn, "node") == "450200000000"
