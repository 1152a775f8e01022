"""Inbound idempotency (one answer per sender and MsgId, PROTOCOL.md §7) and the byte-exact message archive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from gateway.store import repo
from gateway.store.db import transaction
from gateway.store.errors import DuplicateMessage
from gateway.store.tables import inbound
from protocols import samples

NOW = datetime(2026, 11, 23, 2, 30, 1)
DIGEST = "ab" * 32


def _answer(msg_id: str = "20261123ICBC00000017", bank: str = "ICBC", result: int = 90000) -> dict[str, Any]:
    return {
        "bank_code": bank,
        "msg_id": msg_id,
        "msg_no": "5201",
        "content_digest": DIGEST,
        "result": result,
        "add_word": "",
        "reply_msg_no": "9120",
        "received_at": NOW,
    }


def test_an_answer_is_recorded_and_found(db_engine: Engine) -> None:
    """The answer given to a MsgId is found again by sender and MsgId, and only by that sender."""
    with transaction(db_engine) as conn:
        assert repo.find_inbound(conn, "ICBC", "20261123ICBC00000017") is None
        repo.record_inbound(conn, **_answer(result=91006))
    with transaction(db_engine, read_only=True) as conn:
        found = repo.find_inbound(conn, "ICBC", "20261123ICBC00000017")
        assert repo.find_inbound(conn, "CCB", "20261123ICBC00000017") is None
    assert found is not None
    assert (found.result, found.content_digest, found.reply_msg_no, found.received_at) == (91006, DIGEST, "9120", NOW)


def test_the_same_msg_id_twice_is_refused_and_the_transaction_goes_on(db_engine: Engine) -> None:
    """A second record of a sender's MsgId raises DuplicateMessage without spoiling the transaction;
    the same MsgId from another bank is a different message."""
    with transaction(db_engine) as conn:
        repo.record_inbound(conn, **_answer())
    with transaction(db_engine) as conn:
        with pytest.raises(DuplicateMessage) as info:
            repo.record_inbound(conn, **{**_answer(), "content_digest": "cd" * 32})
        assert (info.value.bank_code, info.value.msg_id) == ("ICBC", "20261123ICBC00000017")
        repo.record_inbound(conn, **_answer(bank="CCB"))
    with transaction(db_engine, read_only=True) as conn:
        first = repo.find_inbound(conn, "ICBC", "20261123ICBC00000017")
        assert first is not None and first.content_digest == DIGEST  # the first answer stands
        assert repo.find_inbound(conn, "CCB", "20261123ICBC00000017") is not None


def test_the_database_itself_enforces_msg_id_per_sender(db_engine: Engine) -> None:
    """A raw INSERT around the repository cannot record a sender's MsgId twice (the unique constraint)."""
    with transaction(db_engine) as conn:
        conn.execute(inbound.insert().values(**_answer()))
    with pytest.raises(IntegrityError), transaction(db_engine) as conn:
        conn.execute(inbound.insert().values(**_answer()))


def test_archive_keeps_bytes_verification_and_result(db_engine: Engine) -> None:
    """Every message is archived byte for byte (NUL, GBK, CR LF and all), with what we made of it."""
    raw = "<?xml version='1.0' encoding='GBK'?><Message>南宁</Message>\r\n\x00".encode("gbk")
    with transaction(db_engine) as conn:
        voucher_id = repo.insert_voucher(
            conn, samples.direct_voucher(), bank_code="ICBC", submitted_by="system:test", at=NOW
        )
        signed = repo.archive_message(
            conn,
            at=NOW,
            direction="in",
            bank_code="ICBC",
            raw=raw,
            connection_id="c1",
            msg_id="M1",
            msg_no="5201",
            voucher_id=voucher_id,
            verified=True,
            verify_detail="ok",
            result_code=90000,
        )
        unreadable = repo.archive_message(
            conn, at=NOW, direction="in", bank_code="ICBC", raw=b"\xff\xfe garbage", result_code=91001
        )
        repo.archive_message(conn, at=NOW, direction="out", bank_code="ICBC", raw=b"reply", msg_id="M1")
        repo.archive_message(conn, at=NOW, direction="in", bank_code="CCB", raw=b"other")
        with pytest.raises(ValueError, match="direction"):
            repo.archive_message(conn, at=NOW, direction="sideways", bank_code="ICBC", raw=b"")
    with transaction(db_engine, read_only=True) as conn:
        record = repo.get_archived(conn, signed)
        bad = repo.get_archived(conn, unreadable)
        by_msg = repo.archived_messages(conn, msg_id="M1")
        by_voucher = repo.archived_messages(conn, voucher_id=voucher_id)
        by_bank = repo.archived_messages(conn, bank_code="ICBC")
        assert repo.get_archived(conn, 999) is None
    assert record is not None and record.raw == raw
    assert (record.verified, record.verify_detail, record.result_code, record.connection_id) == (
        True,
        "ok",
        90000,
        "c1",
    )
    assert bad is not None and (bad.verified, bad.msg_id, bad.result_code) == (None, None, 91001)
    assert [(m.direction, m.raw) for m in by_msg] == [("in", raw), ("out", b"reply")]
    assert [m.id for m in by_voucher] == [signed]
    assert len(by_bank) == 3
