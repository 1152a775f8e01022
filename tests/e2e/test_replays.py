"""Duplicates and replays from a raw bank client: resent receipts change nothing, contradictions are refused.

The raw client plays the bank: it receives the voucher, acknowledges it and answers with receipts it builds
and signs itself, so that a test can resend the very same bytes, re-sign the same content, or contradict.
"""

from __future__ import annotations

from typing import Any

from protocols.messages import Message, Reply, Voucher, VoucherKey
from tests.e2e.harness import E2E, RawBank, direct_voucher, events_of, inbound_rows, receipt_for


def _reply(message: Message) -> Reply:
    assert isinstance(message.body, Reply), message
    return message.body


def _delivered(e2e: E2E, raw: RawBank, voucher: Voucher) -> VoucherKey:
    """Submit `voucher`, take it off the raw link and acknowledge it; wait until the gateway has it DELIVERED."""
    (key,) = e2e.submit(voucher)
    message = raw.expect("5201")
    assert message.body == voucher, "the bank must receive exactly the voucher submitted"
    raw.ack(message)
    e2e.wait_state(key, "DELIVERED")
    return key


def _paid(e2e: E2E, raw: RawBank, voucher: Voucher) -> tuple[VoucherKey, Any, str, bytes]:
    key = _delivered(e2e, raw, voucher)
    msg_id, document = raw.build(receipt_for(voucher, serial="ICBC2026112400000042"))
    reply = raw.request(document, msg_id)
    assert _reply(reply).result == 90000
    assert e2e.voucher(key)["state"] == "PAID", "a 90000 is given only once the receipt is recorded"
    return key, reply, msg_id, document


def test_the_same_receipt_resent_with_the_same_msg_id_gets_the_same_reply_and_changes_nothing(e2e: E2E) -> None:
    """Byte-identical, re-signed (same Body) and new-MsgId copies of a receipt: same answer, one payment recorded."""
    e2e.start()
    raw = e2e.raw()
    voucher = direct_voucher("5201450100000201")
    key, first, msg_id, document = _paid(e2e, raw, voucher)
    before = e2e.voucher(key)

    again = raw.request(document, msg_id)  # the very same bytes
    assert (_reply(again), again.head.msg_ref) == (_reply(first), first.head.msg_ref)
    resigned = raw.request(receipt_for(voucher, serial="ICBC2026112400000042"), msg_id)  # new SendTime, signature
    assert (_reply(resigned), resigned.head.msg_ref) == (_reply(first), msg_id)
    fresh = raw.request(receipt_for(voucher, serial="ICBC2026112400000042"))  # the same receipt, a new MsgId
    assert _reply(fresh).result == 90000

    after = e2e.voucher(key)
    assert after["timeline"] == before["timeline"] and after["state"] == "PAID" and after["chain_ok"]
    assert len(e2e.store(inbound_rows, msg_id)) == 1
    copies = [r for r in e2e.archive(direction="in", msg_no="5201")]
    assert len(copies) == 4, "every copy received is archived, applied or not"
    assert not events_of(e2e.events, "alert")


def test_a_receipt_contradicting_a_final_state_is_refused_91006_and_raised(e2e: E2E) -> None:
    """After PAID, a refusal receipt or one with another bank serial gets 91006; the voucher stays as it was."""
    e2e.start()
    raw = e2e.raw()
    voucher = direct_voucher("5201450100000202")
    key, _, _, _ = _paid(e2e, raw, voucher)
    before = e2e.voucher(key)
    for contradiction in (
        receipt_for(voucher, paid=False),
        receipt_for(voucher, serial="ICBC2026112400000043"),
    ):
        reply = _reply(raw.request(contradiction))
        assert reply.result == 91006 and "contradicts" in reply.add_word, reply
    after = e2e.voucher(key)
    assert after["timeline"] == before["timeline"] and after["x_agent_business_no"] == "ICBC2026112400000042"
    assert len(events_of(e2e.events, "alert")) == 2


def test_a_duplicated_acknowledgement_changes_nothing(e2e: E2E) -> None:
    """The bank's 9120 for the voucher arriving twice leaves one ack in the history and no alert."""
    e2e.start()
    raw = e2e.raw()
    voucher = direct_voucher("5201450100000203")
    (key,) = e2e.submit(voucher)
    message = raw.expect("5201")
    raw.ack(message)
    raw.ack(message)
    # A link's frames are handled in order: once the receipt is answered, both acknowledgements were handled.
    assert _reply(raw.request(receipt_for(voucher))).result == 90000
    found = e2e.voucher(key)
    assert [t["event"] for t in found["timeline"]].count("ack") == 1
    assert found["state"] == "PAID" and found["chain_ok"]
    assert not events_of(e2e.events, "alert")
