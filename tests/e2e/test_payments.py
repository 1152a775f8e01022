"""Payments end to end: a simulated bank over mutual TLS pays, resends, answers late, twice or never, returns.

Every test runs on SQLite and on PostgreSQL against an instance made by `tgw init`; deadlines are configured
short in gateway.toml, and every wait is on an event or a condition (never a sleep).
"""

from __future__ import annotations

from typing import Any

from banks.standard import STANDARD_DIALECT
from certs.pki import load_certificate
from gateway.payments import queries
from gateway.store import repo
from protocols.messages import Reply, VoucherKey
from protocols.signature import Verifier
from simulators.bank import SimulatedBank
from simulators.rules import (
    AnswerTwice,
    Disconnect,
    DropAck,
    Match,
    NeverAnswer,
    ReturnAfter,
    Rule,
    RuleSet,
)
from tests.e2e.harness import (
    E2E,
    archive_rows,
    authorized_voucher,
    direct_voucher,
    events_of,
    quota_notice,
    return_for,
)

#: Deadlines short enough that a test waits about a second for them, never sleeping.
FAST_DEADLINES: dict[str, Any] = {
    "receipt_deadline_s": 1.0,
    "tick_s": 0.1,
    "status_query_interval_s": 0.5,
    "ack_timeout_s": 30.0,  # longer than the deadline: in doubt, the gateway asks before anything is resent
}


def bank_verifier(e2e: E2E, code: str = "ICBC") -> Verifier:
    """Verifies what a bank signs, with its certificate as configured (pinned) in the instance."""
    return Verifier(load_certificate(e2e.instance.bank_cert(code)))


def _ledger_outcomes(bank: SimulatedBank, key: VoucherKey) -> list[Any]:
    return [o for o in bank.ledger.outcomes() if o.key == key]


def _events(found: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["event"], t["to"]) for t in found["timeline"]]


def test_a_direct_and_an_authorized_voucher_are_paid_verified_and_archived(e2e: E2E) -> None:
    """5201 and 8202 (after its 5106 quota) end PAID with the bank's serial and date, a sound chain, all archived."""
    e2e.start()
    bank = e2e.bank()
    notice_msg_id = e2e.submit_quota(quota_notice())
    e2e.until_store(
        lambda conn: any(r["msg_id"] == notice_msg_id and r["direction"] == "out" for r in archive_rows(conn)),
        what="the 5106 to go out",
    )
    e2e.wait_bank(bank, lambda b: b.ledger.quota_fen("4501020300000088") > 0, "the bank to apply the quota")
    direct, authorized = direct_voucher("5201450100000001"), authorized_voucher("8202450100000001")
    keys = e2e.submit(direct, authorized)
    paid = [e2e.wait_state(key, "PAID") for key in keys]

    for voucher, found in zip((direct, authorized), paid, strict=True):
        outcome = _ledger_outcomes(bank, voucher.key)
        assert len(outcome) == 1 and outcome[0].paid_fen == voucher.pay_amt_fen
        assert found["x_agent_business_no"] == outcome[0].serial
        assert found["x_pay_date"] == outcome[0].pay_date.isoformat()
        assert found["chain_ok"], f"the history of {voucher.key} does not verify"
        assert _events(found) == [
            ("submitted", "ACCEPTED"),
            ("dispatch", "SENT"),
            ("ack", "DELIVERED"),
            ("receipt_paid", "PAID"),
        ]
    quota = e2e.store(repo.get_quota, "450100", 2026, "102003")
    assert quota is not None and quota.used_fen == authorized.pay_amt_fen

    # The archive: every message both ways, byte for byte; what came in verified, what went out verifies.
    e2e.wait_bank(bank, lambda b: not b.unacked, "the gateway to acknowledge every receipt")
    rows = e2e.archive()
    verifiers = {"in": bank_verifier(e2e), "out": e2e.instance.gateway_verifier()}
    decoded = []
    for row in rows:
        decoded.append(
            (row["direction"], STANDARD_DIALECT.decode(bytes(row["raw"]), verifiers[row["direction"]]).message)
        )
        assert row["verified"] is (True if row["direction"] == "in" else None), row
        assert row["msg_id"] == decoded[-1][1].head.msg_id and row["msg_no"] == decoded[-1][1].head.msg_no, row
    sent = {m.head.msg_id: m for d, m in decoded if d == "out"}
    received = {m.head.msg_id: m for d, m in decoded if d == "in"}
    kinds_in = sorted(m.head.msg_no for m in received.values())
    kinds_out = sorted(m.head.msg_no for m in sent.values())
    assert kinds_in == ["5201", "8202", "9006", "9120", "9120", "9120"], kinds_in
    assert kinds_out == ["5106", "5201", "8202", "9007", "9120", "9120"], kinds_out
    for message in received.values():  # each bank request got its reply, each gateway message its answer
        if message.head.msg_no in ("5201", "8202", "9006"):
            assert any(m.head.msg_ref == message.head.msg_id for m in sent.values()), message.head
        else:
            assert message.head.msg_ref in sent, message.head
    assert not events_of(e2e.events, "alert")


def _assert_in_order(events: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    """`expected` happened in this order, with nothing of it twice (other events, such as an acknowledgement
    arriving after a deadline on a busy machine, may come between)."""
    rest = iter(events)
    missing = [step for step in expected if step not in rest]
    assert not missing, f"{missing} not in order in {events}"
    assert sum(1 for e, _ in events if e in ("receipt_paid", "receipt_failed")) == 1, events


def _outbound_vouchers(e2e: E2E, voucher_id: int) -> list[dict[str, Any]]:
    return [r for r in e2e.archive(direction="out", voucher_id=voucher_id) if r["msg_no"] in ("5201", "8202")]


def _receipts_applied(found: dict[str, Any]) -> int:
    return sum(1 for t in found["timeline"] if t["event"] in ("receipt_paid", "receipt_failed"))


def test_a_receipt_answered_twice_pays_once(e2e: E2E) -> None:
    """The bank sends its receipt twice under two MsgIds: both are answered 90000, the voucher is paid once."""
    e2e.start()
    bank = e2e.bank(rules=RuleSet([Rule(Match(), AnswerTwice())]))
    voucher = direct_voucher("5201450100000002")
    (key,) = e2e.submit(voucher)
    e2e.wait_state(key, "PAID")
    e2e.wait_bank(bank, lambda b: b.stats.receipts_sent == 2 and not b.unacked, "both receipts to be answered")
    found = e2e.voucher(key)
    assert _receipts_applied(found) == 1 and found["chain_ok"]
    assert bank.stats.rejected_by_gateway == 0 and bank.stats.results == {90000: 2}  # the gateway's replies
    receipts = [r for r in e2e.archive(direction="in", voucher_id=found["id"]) if r["msg_no"] == "5201"]
    assert len({r["msg_id"] for r in receipts}) == 2 and all(r["result_code"] == 90000 for r in receipts)
    assert len(_ledger_outcomes(bank, key)) == 1


def test_a_voucher_lost_with_the_connection_is_resent_with_the_same_msg_id_and_paid_once(e2e: E2E) -> None:
    """The bank drops the link on the voucher without acking; after it signs on again the same bytes go again."""
    e2e.start()
    bank = e2e.bank(rules=RuleSet([Rule(Match(attempt_max=1), Disconnect())]))
    (key,) = e2e.submit(direct_voucher("5201450100000003"))
    found = e2e.wait_state(key, "PAID")
    assert bank.stats.connections == 2
    sends = _outbound_vouchers(e2e, found["id"])
    assert len(sends) == 2 and sends[0]["msg_id"] == sends[1]["msg_id"] == found["msg_id"]
    assert bytes(sends[0]["raw"]) == bytes(sends[1]["raw"]), "a resend must carry the very same signed bytes"
    assert _events(found) == [
        ("submitted", "ACCEPTED"),
        ("dispatch", "SENT"),
        ("resent", "SENT"),
        ("ack", "DELIVERED"),
        ("receipt_paid", "PAID"),
    ]
    assert found["chain_ok"] and len(_ledger_outcomes(bank, key)) == 1


def test_a_voucher_paid_before_the_connection_dropped_is_not_paid_again(e2e: E2E) -> None:
    """The bank pays, then drops the link before acking: the resend and both receipts settle it exactly once."""
    e2e.start()
    bank = e2e.bank(rules=RuleSet([Rule(Match(attempt_max=1), Disconnect(execute=True))]))
    voucher = direct_voucher("5201450100000004")
    (key,) = e2e.submit(voucher)
    e2e.wait_state(key, "PAID")
    e2e.wait_bank(bank, lambda b: b.stats.receipts_sent == 2 and not b.unacked, "the resend to be answered too")
    found = e2e.voucher(key)
    outcomes = _ledger_outcomes(bank, key)
    assert len(outcomes) == 1 and found["x_agent_business_no"] == outcomes[0].serial
    assert _receipts_applied(found) == 1 and found["chain_ok"]
    assert bank.stats.rejected_by_gateway == 0
    sends = _outbound_vouchers(e2e, found["id"])
    assert len(sends) == 2 and len({bytes(s["raw"]) for s in sends}) == 1


def test_in_doubt_a_voucher_the_bank_paid_is_settled_paid_by_asking(e2e: E2E) -> None:
    """The bank acks and pays but never sends the receipt: past the deadline IN_DOUBT, a 9101, the 9102 says PAID."""
    e2e.start(payments=FAST_DEADLINES)
    bank = e2e.bank(rules=RuleSet([Rule(Match(), NeverAnswer(execute=True))]))
    (key,) = e2e.submit(direct_voucher("5201450100000005"))
    found = e2e.wait_state(key, "PAID")
    _assert_in_order(
        _events(found),
        [("submitted", "ACCEPTED"), ("dispatch", "SENT"), ("deadline", "IN_DOUBT"), ("receipt_paid", "PAID")],
    )
    assert found["timeline"][-1]["detail"]["x_status"] == 2
    outcomes = _ledger_outcomes(bank, key)
    assert len(outcomes) == 1 and found["x_agent_business_no"] == outcomes[0].serial
    assert found["x_pay_date"] == outcomes[0].pay_date.isoformat()
    assert len(_outbound_vouchers(e2e, found["id"])) == 1, "a voucher in doubt must not be resent"
    assert [r["msg_no"] for r in e2e.archive(direction="out", voucher_id=found["id"])].count("9101") >= 1
    assert e2e.archive(direction="in", msg_no="9102") and found["chain_ok"]
    assert bank.stats.receipts_sent == 0 and bank.stats.status_replies >= 1


def test_in_doubt_a_voucher_the_bank_never_received_is_resent_after_asking_and_paid_once(e2e: E2E) -> None:
    """The voucher is lost unacked: IN_DOUBT, the 9102 says never received, back to ACCEPTED, the same bytes again."""
    e2e.start(payments=FAST_DEADLINES)
    bank = e2e.bank(rules=RuleSet([Rule(Match(attempt_max=1), DropAck())]))
    (key,) = e2e.submit(direct_voucher("5201450100000006"))
    found = e2e.wait_state(key, "PAID")
    _assert_in_order(
        _events(found),
        [
            ("submitted", "ACCEPTED"),
            ("dispatch", "SENT"),
            ("deadline", "IN_DOUBT"),
            ("status_not_received", "ACCEPTED"),
            ("dispatch", "SENT"),
            ("receipt_paid", "PAID"),
        ],
    )
    assert [e for e, _ in _events(found)].count("status_not_received") == 1
    sends = _outbound_vouchers(e2e, found["id"])
    assert len(sends) == 2 and sends[0]["msg_id"] == sends[1]["msg_id"] and sends[0]["raw"] == sends[1]["raw"]
    (status,) = [r for r in e2e.archive(direction="in", msg_no="9102")]
    assert sends[0]["id"] < status["id"] < sends[1]["id"], "the gateway must ask before it sends again"
    assert len(_ledger_outcomes(bank, key)) == 1 and found["chain_ok"]


def test_in_doubt_a_voucher_the_bank_holds_stays_in_doubt_until_the_bank_says_paid(e2e: E2E) -> None:
    """Received but not executed (9102 status 1): still IN_DOUBT, asked again, never resent; paid once when done."""
    e2e.start(payments=FAST_DEADLINES)
    bank = e2e.bank(rules=RuleSet([Rule(Match(), NeverAnswer(execute=False))]))
    voucher = direct_voucher("5201450100000007")
    (key,) = e2e.submit(voucher)

    def asked_twice(conn: Any) -> bool:
        found = queries_get(conn, key)
        return sum(1 for t in found["timeline"] if t["event"] == "status_pending") >= 2

    e2e.until_store(asked_twice, what=f"{key} to be asked twice and still held by the bank")
    assert e2e.voucher(key)["state"] == "IN_DOUBT" and bank.stats.vouchers == 1
    e2e.rt.call(lambda: bank.ledger.pay(bank.vouchers[str(key)], bank.today()))  # the bank executes it at last
    found = e2e.wait_state(key, "PAID")
    outcomes = _ledger_outcomes(bank, key)
    assert len(outcomes) == 1 and found["x_agent_business_no"] == outcomes[0].serial
    assert len(_outbound_vouchers(e2e, found["id"])) == 1 and bank.stats.vouchers == 1
    assert _receipts_applied(found) == 1 and found["chain_ok"]


def test_returns_partial_then_full_make_the_voucher_returned_and_never_exceed_what_was_paid(e2e: E2E) -> None:
    """A 2252 for part keeps it PAID, one for more than is left is refused 91006, the rest makes it RETURNED."""
    e2e.start()
    rule = Rule(Match(), ReturnAfter(after_s=0.05, amount_fen=2_500_000))
    bank = e2e.bank(rules=RuleSet([rule]))
    voucher = direct_voucher("5201450100000008")
    (key,) = e2e.submit(voucher)

    def partly_returned(conn: Any) -> Any:
        found = queries_get(conn, key)
        return found if found["returned_fen"] == 2_500_000 else None

    found = e2e.until_store(partly_returned, what=f"{key} to be returned in part")
    assert found["state"] == "PAID"

    raw = e2e.raw()  # a second connection of the same bank, sending a notice for more than is left
    left_fen = voucher.pay_amt_fen - 2_500_000
    msg_id = raw.send(return_for(voucher, left_fen + 1, "2252450100009999"))
    reply = raw.reply_to(msg_id).body
    assert isinstance(reply, Reply) and (reply.result, reply.ori_msg_no) == (91006, "2252"), reply
    assert "exceed" in reply.add_word, reply.add_word
    assert e2e.voucher(key)["returned_fen"] == 2_500_000

    e2e.rt.call(bank.return_payment, key, left_fen)
    found = e2e.wait_state(key, "RETURNED")
    assert found["returned_fen"] == voucher.pay_amt_fen == bank.ledger.returned_fen(key)
    assert [e for e, _ in _events(found)][-3:] == ["receipt_paid", "returned_part", "returned_all"]
    assert found["chain_ok"]
    assert len(events_of(e2e.events, "alert")) == 1  # the refused notice was raised to the operators


def queries_get(conn: Any, key: VoucherKey) -> dict[str, Any]:
    found = queries.get_voucher(conn, key)
    assert found is not None
    return found
