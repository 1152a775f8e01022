"""Outbox: messages are claimed and resent oldest first, keep their MsgId and first bytes, and settle once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from gateway.store import repo
from gateway.store.db import transaction
from protocols import samples
from protocols.messages import Message, Payload

NOW = datetime(2026, 11, 23, 2, 30, 1)
SECOND = timedelta(seconds=1)


def _message(payload: Payload, seq: int) -> Message:
    return samples.message(payload, samples.NODE, seq)


def _enqueue(conn: Connection, n: int, bank: str = "ICBC") -> list[int]:
    payloads = [samples.direct_voucher(f"52014501{k:08d}") for k in range(n)]
    return [
        repo.enqueue_outbox(conn, _message(p, k), bank_code=bank, at=NOW)
        for k, p in enumerate(payloads, 1 if bank == "ICBC" else 101)
    ]


def test_the_document_round_trips_the_message(db_engine: Engine) -> None:
    """The stored document gives back the very message, MsgId included, for every kind we send."""
    messages = [
        _message(samples.direct_voucher(), 1),
        _message(samples.quota_notice(), 2),
        _message(samples.reconcile_result(), 3),
    ]
    with transaction(db_engine) as conn:
        ids = [repo.enqueue_outbox(conn, m, bank_code="ICBC", at=NOW) for m in messages]
        records = repo.pending_outbox(conn, "ICBC")
    assert [r.id for r in records] == ids
    assert [r.message() for r in records] == messages
    assert [(r.msg_id, r.msg_no, r.state, r.attempts, r.wire) for r in records] == [
        (m.head.msg_id, m.head.msg_no, "PENDING", 0, None) for m in messages
    ]


def test_claim_takes_due_rows_oldest_first_up_to_the_limit(db_engine: Engine) -> None:
    """A claim returns the bank's due rows in id order, marks them with the node and leases them."""
    with transaction(db_engine) as conn:
        ids = _enqueue(conn, 3)
        _enqueue(conn, 1, bank="CCB")
        claimed = repo.claim_due_outbox(conn, "ICBC", NOW, 2, "node-a")
        assert [r.id for r in claimed] == ids[:2]
        assert {(r.claimed_by, r.next_attempt_at) for r in claimed} == {("node-a", NOW + 30 * SECOND)}
        # leased rows are not due again; the third one is
        assert [r.id for r in repo.claim_due_outbox(conn, "ICBC", NOW + 10 * SECOND, 10, "node-b")] == [ids[2]]
        assert repo.claim_due_outbox(conn, "ICBC", NOW + 29 * SECOND, 10, "node-b") == []
        # a node that died mid-send loses its lease
        again = repo.claim_due_outbox(conn, "ICBC", NOW + 30 * SECOND, 10, "node-b")
        assert [(r.id, r.claimed_by) for r in again] == [(ids[0], "node-b"), (ids[1], "node-b")]


def test_send_ack_nack_and_resend_keep_msg_id_and_first_bytes(db_engine: Engine) -> None:
    """SENT stores the first wire bytes; a resend counts an attempt but keeps them; answers settle once."""
    with transaction(db_engine) as conn:
        first, second = _enqueue(conn, 2)
        assert [r.id for r in repo.claim_due_outbox(conn, "ICBC", NOW, 10, "node-a")] == [first, second]
        for outbox_id in (first, second):
            assert repo.mark_outbox_sent(conn, outbox_id, NOW, wire=b"first bytes", retry_at=NOW + 60 * SECOND)
        # no answer within a minute: the row is due again and resent with the same MsgId and bytes
        assert repo.claim_due_outbox(conn, "ICBC", NOW + 59 * SECOND, 10, "node-a") == []
        due = repo.claim_due_outbox(conn, "ICBC", NOW + 60 * SECOND, 10, "node-a")
        assert [(r.id, r.state, r.wire) for r in due] == [
            (first, "SENT", b"first bytes"),
            (second, "SENT", b"first bytes"),
        ]
        assert repo.mark_outbox_sent(conn, first, NOW + 60 * SECOND, wire=b"other", retry_at=NOW + 180 * SECOND)
        record = repo.find_outbox(conn, "ICBC", due[0].msg_id)
        assert record is not None
        assert (record.attempts, record.wire, record.last_sent_at) == (2, b"first bytes", NOW + 60 * SECOND)
        # the bank's answers
        assert repo.mark_outbox_acked(conn, first, NOW + 61 * SECOND)
        assert not repo.mark_outbox_acked(conn, first, NOW + 62 * SECOND)  # a duplicate 9120
        assert repo.mark_outbox_nacked(conn, second, NOW + 61 * SECOND, result_code=91002, add_word="PayAmt")
        assert not repo.mark_outbox_sent(conn, first, NOW + 70 * SECOND, wire=b"x", retry_at=NOW)
        assert not repo.retry_outbox(conn, second, NOW)
        settled = {r.id: r for r in (repo.find_outbox(conn, "ICBC", m) for m in (due[0].msg_id, due[1].msg_id)) if r}
    assert (settled[first].state, settled[first].result_code, settled[first].acked_at) == (
        "ACKED",
        90000,
        NOW + 61 * SECOND,
    )
    assert (settled[second].state, settled[second].result_code, settled[second].add_word) == (
        "NACKED",
        91002,
        "PayAmt",
    )


def test_pending_outbox_is_every_unanswered_message_in_id_order(db_engine: Engine) -> None:
    """On reconnection: PENDING and SENT rows of that bank, oldest first; answered ones and other banks not."""
    with transaction(db_engine) as conn:
        ids = _enqueue(conn, 4)
        _enqueue(conn, 1, bank="CCB")
        repo.mark_outbox_sent(conn, ids[2], NOW, wire=b"w", retry_at=NOW + 60 * SECOND)
        repo.mark_outbox_sent(conn, ids[0], NOW, wire=b"w", retry_at=NOW + 60 * SECOND)
        repo.mark_outbox_acked(conn, ids[1], NOW)
        assert [(r.id, r.state) for r in repo.pending_outbox(conn, "ICBC")] == [
            (ids[0], "SENT"),
            (ids[2], "SENT"),
            (ids[3], "PENDING"),
        ]
        # a 91099 from the bank: back to PENDING, unclaimed, due later
        assert repo.retry_outbox(conn, ids[0], NOW + 5 * SECOND)
        record = repo.find_outbox(conn, "ICBC", repo.pending_outbox(conn, "ICBC")[0].msg_id)
        assert record is not None and (record.state, record.claimed_by, record.wire) == ("PENDING", None, b"w")
        assert repo.find_outbox(conn, "CCB", record.msg_id) is None  # another bank cannot answer our message


def test_claims_by_two_nodes_skip_each_others_rows(pg_db_engine: Engine) -> None:
    """PostgreSQL: while node A's claim is uncommitted, node B's claim skips A's locked rows (SKIP LOCKED)."""
    with transaction(pg_db_engine) as conn:
        ids = _enqueue(conn, 3)
    with transaction(pg_db_engine) as node_a:
        assert [r.id for r in repo.claim_due_outbox(node_a, "ICBC", NOW, 2, "node-a")] == ids[:2]
        with transaction(pg_db_engine) as node_b:
            node_b.exec_driver_sql("SET LOCAL lock_timeout = '5s'")  # without SKIP LOCKED: fail, do not hang
            assert [r.id for r in repo.claim_due_outbox(node_b, "ICBC", NOW, 10, "node-b")] == [ids[2]]
    with transaction(pg_db_engine, read_only=True) as conn:
        assert [r.claimed_by for r in repo.pending_outbox(conn, "ICBC")] == ["node-a", "node-a", "node-b"]
