"""Archiving several messages in one statement (`repo.archive_messages`, used for the gateway's replies) keeps
them exactly as `archive_message` does, and refuses a bad batch whole."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine

from gateway.store import repo
from gateway.store.db import transaction

NOW = datetime(2026, 11, 23, 2, 30, 1)


def test_a_batch_is_archived_byte_for_byte_in_order(db_engine: Engine) -> None:
    raw = "<?xml version='1.0' encoding='GBK'?><Message>南宁</Message>\r\n\x00".encode("gbk")
    with transaction(db_engine) as conn:
        repo.archive_messages(
            conn,
            [
                {"at": NOW, "direction": "out", "bank_code": "ICBC", "raw": raw, "msg_id": "R1", "msg_no": "9120"},
                {"at": NOW, "direction": "out", "bank_code": "ICBC", "raw": b"second", "connection_id": "c9"},
            ],
        )
        repo.archive_messages(conn, [])
    with transaction(db_engine, read_only=True) as conn:
        rows = repo.archived_messages(conn, bank_code="ICBC")
    assert [(r.direction, r.raw, r.msg_id, r.msg_no, r.connection_id) for r in rows] == [
        ("out", raw, "R1", "9120", None),
        ("out", b"second", None, None, "c9"),
    ]
    assert [(r.verified, r.result_code, r.voucher_id) for r in rows] == [(None, None, None)] * 2
    assert rows[0].at == NOW


@pytest.mark.parametrize(
    ("bad", "error"),
    [({"direction": "sideways"}, ValueError), ({"colour": "red"}, TypeError)],
)
def test_a_bad_entry_refuses_the_whole_batch(db_engine: Engine, bad: dict[str, str], error: type[Exception]) -> None:
    good = {"at": NOW, "direction": "out", "bank_code": "ICBC", "raw": b"ok"}
    with transaction(db_engine) as conn:
        with pytest.raises(error):
            repo.archive_messages(conn, [good, {**good, **bad}])
        assert repo.archived_messages(conn, bank_code="ICBC") == []
