"""A seeded fault-injection run: a misbehaving bank and link, and still every voucher final and the ledgers equal.

issue 3 item 8, DESIGN.md "Guarantees", PROTOCOL.md §7. The simulated bank's transport drops, duplicates,
reorders and delays what it sends and drops the connection (:class:`~simulators.rules.FaultProfile`); its rules
make it slow (some past the gateway's receipt deadline), refuse some vouchers, answer some twice and some never
(only asking settles those). The gateway runs with short deadlines, so vouchers go in doubt and are settled by
asking (9101/9102), and unacknowledged messages are resent with their `MsgId`. Forty vouchers (5201, and 8202
against a 5106 quota) go out; once every one is final and nothing is left to send or to be answered, the
gateway's ledger must equal the bank's: PAID ⇔ the bank paid it (same serial, date and amount), FAILED ⇔ the
bank refused it, nothing paid twice (the bank's journal), every history chain verifies, the quota used is the
sum of the live 8202 amounts.

What the seed decides: the vouchers (type, amounts), what the bank does with each (by voucher number, so it does
not depend on arrival order), and the stream of transport faults (`Random(seed ^ 0x5EED)`, six draws per
outbound message). Which message meets which fault depends on the order messages happen to be sent in, which
timing may change; the assertions are invariants that must hold for every interleaving, and nothing waits on
the wall clock but the generous limit of the final wait. A failure names the seed and the fault profile, and
lists every disagreement with the voucher's timeline.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from random import Random
from typing import Any, Final

import pytest
from sqlalchemy.engine import Connection

from gateway.store import repo
from gateway.store.db import create_engine_for
from protocols.messages import Ping, Reply, Voucher
from simulators.rules import (
    Action,
    AnswerTwice,
    Delay,
    FaultProfile,
    Match,
    NeverAnswer,
    Refuse,
    Rule,
    RuleSet,
)
from tests.e2e.harness import (
    E2E,
    LedgerSnapshot,
    authorized_voucher,
    direct_voucher,
    inbound_rows,
    ledger_breaks,
    quota_notice,
    receipt_for,
    settled_snapshot,
    until_read,
)

#: The seeds of the run, fixed so CI runs the same plans every time (a failing seed is kept here).
SEEDS: Final = (1, 20260417, 31337)
#: The transport faults of every seed (each outbound message of the bank draws against these).
FAULTS: Final = FaultProfile(drop_prob=0.1, duplicate_prob=0.1, reorder_prob=0.1, delay_ms_max=50, disconnect_prob=0.03)
VOUCHERS: Final = 40
#: Short deadlines: past 1 s without a receipt a voucher is in doubt; unacknowledged messages go again after
#: 0.5 s (doubling, at most every 1.5 s); the ticker looks every 0.1 s and an in-doubt voucher is asked about
#: every 0.3 s.
PAYMENTS: Final[dict[str, Any]] = {
    "receipt_deadline_s": 1.0,
    "ack_timeout_s": 0.5,
    "resend_backoff_max_s": 1.5,
    "tick_s": 0.1,
    "status_query_interval_s": 0.3,
}
#: How long everything may take to settle; correctness never depends on it (only a stuck run reaches it).
SETTLE_S: Final = 120.0
REFUSAL: Final = "收款账户已冻结"
SLOW_S: Final = 0.3  # within the receipt deadline
LATE_S: Final = 1.5  # past it: in doubt, then settled by the receipt or by asking

#: What the bank does with a voucher → (its actions, whether the voucher ends PAID), and how often (weights).
BEHAVIOURS: Final[dict[str, tuple[tuple[Action, ...], bool, int]]] = {
    "pay": ((), True, 35),
    "refuse": ((Refuse(REFUSAL),), False, 12),
    "twice": ((AnswerTwice(),), True, 12),
    "slow": ((Delay(SLOW_S),), True, 10),
    "late": ((Delay(LATE_S),), True, 10),
    "silent": ((NeverAnswer(execute=True),), True, 8),  # paid, never answered: only a 9101 settles it
    "late_refuse": ((Refuse(REFUSAL), Delay(LATE_S)), False, 6),
    "late_twice": ((Delay(LATE_S), AnswerTwice()), True, 7),
}


@dataclasses.dataclass(frozen=True)
class Planned:
    voucher: Voucher
    behaviour: str

    @property
    def key(self) -> str:
        return str(self.voucher.key)

    @property
    def paid(self) -> bool:
        return BEHAVIOURS[self.behaviour][1]


def plan(seed: int) -> list[Planned]:
    """The seed's vouchers (two in five are 8202 against the 5106's 500,000.00 yuan) and the bank's behaviour."""
    rng = Random(seed)
    names = list(BEHAVIOURS)
    weights = [w for _, _, w in BEHAVIOURS.values()]
    planned = []
    for n in range(VOUCHERS):
        if n % 5 in (1, 3):
            voucher = authorized_voucher(f"8202{seed % 10_000:04d}{n:08d}", rng.randrange(10_000, 2_000_000))
        else:
            amounts = tuple(rng.randrange(100, 5_000_000) for _ in range(rng.randint(1, 3)))
            voucher = direct_voucher(f"5201{seed % 10_000:04d}{n:08d}", amounts)
        planned.append(Planned(voucher, rng.choices(names, weights)[0]))
    return planned


def bank_rules(planned: list[Planned]) -> RuleSet:
    """One rule per voucher that does not simply get paid, matched by its number (not by arrival order)."""
    return RuleSet(
        [
            Rule(
                Match(vt_code=p.voucher.vt_code, voucher_no=p.voucher.voucher_no),
                BEHAVIOURS[p.behaviour][0],
                p.behaviour,
            )
            for p in planned
            if p.behaviour != "pay"
        ]
    )


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_under_injected_faults_every_voucher_ends_final_and_the_ledgers_agree(
    e2e: E2E, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Drops, duplicates, reordering, delays, disconnects, slow/refusing/double/silent answers: ledgers equal."""
    caplog.set_level(logging.ERROR, logger="gateway")
    run = f"seed {seed}, {FAULTS}, {e2e.instance.backend}"
    print(f"fault-injection run: {run}")  # shown with the failure: rerun with this seed
    planned = plan(seed)
    expected = {p.key: p.voucher for p in planned}
    e2e.start(payments=PAYMENTS)
    bank = e2e.bank(rules=bank_rules(planned), seed=seed, faults=FAULTS)
    e2e.submit_quota(quota_notice())
    for start in range(0, VOUCHERS, 10):  # four submissions while the first ones are already on the wire
        e2e.submit(*(p.voucher for p in planned[start : start + 10]))

    snapshot: LedgerSnapshot = until_read(
        e2e,
        settled_snapshot(expected),
        f"every voucher to be final and every message answered ({run})",
        timeout_s=SETTLE_S,
    )

    problems = ledger_breaks(snapshot, bank, expected)
    for p in planned:  # and each ended as the bank was told to end it
        want = "PAID" if p.paid else "FAILED"
        if snapshot.vouchers[p.key].state != want:
            problems.append(f"{p.key} ({p.behaviour}): {snapshot.timeline(p.key)}, expected {want}")
    assert not problems, (
        f"{run}: the gateway and the bank disagree:\n  "
        + "\n  ".join(problems)
        + "\nthe gateway's errors meanwhile:\n  "
        + "\n  ".join(gateway_errors(caplog))
    )

    # The run did exercise what it is about (a plan that dodged every fault would prove little).
    events = [e for entry in snapshot.vouchers.values() for e in entry.events]
    assert any(e == "deadline:IN_DOUBT" for e in events), f"{run}: no voucher went in doubt"
    assert bank.stats.status_replies > 0, f"{run}: the gateway never asked the bank about a voucher"
    assert bank.stats.connections > 1, f"{run}: the link never dropped"
    assert bank.stats.receipts_sent > sum(1 for p in planned if p.behaviour != "silent"), f"{run}: no second receipt"
    assert not [o for o in bank.ledger.outcomes() if str(o.key) not in expected], run


def gateway_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The first line of every error the gateway logged (context for a failure message)."""
    return [
        r.getMessage().splitlines()[0][:300]
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("gateway")
    ]


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)  # SQLite's writers queue (see below)
def test_a_receipt_that_meets_a_concurrent_change_of_its_voucher_is_answered_and_the_link_stays_up(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transaction commits a change to the voucher between the receipt's read and its write: the receipt
    is still answered on its link (90000 after a retry, or 91099 and then 90000 when resent), the link stays up,
    and the voucher is paid once.

    Found by the fault-injection run on PostgreSQL (a receipt racing the ticker or the acknowledgement's
    transaction raised ConcurrentUpdate out of the service and the hub aborted the session); fixed by running a
    bank request or reply that lost an optimistic race again (`Hub.run_retrying`). The race is made
    deterministic here: a second connection commits the change the ticker makes (`deadline_at`) at the moment
    the receipt's transaction is about to write. SQLite cannot race this way: its writers queue at `BEGIN
    IMMEDIATE`.
    """
    e2e.start()
    raw = e2e.raw()
    voucher = direct_voucher("5201450100000901")
    (key,) = e2e.submit(voucher)
    raw.ack(raw.expect("5201"))
    e2e.wait_state(key, "DELIVERED")

    other = create_engine_for(e2e.instance.config().database_url)  # a second connection: "the ticker"
    real_update = repo.update_voucher
    fired: list[int] = []

    def update_after_a_concurrent_change(
        conn: Connection, voucher_id: int, expected_version: int, at: Any, **changes: Any
    ) -> int:
        if changes.get("state") == "PAID" and not fired:  # the receipt's transaction, once
            fired.append(voucher_id)
            with other.begin() as ticker:  # commits while the receipt's transaction is open, as the ticker can
                real_update(ticker, voucher_id, expected_version, at, deadline_at=at + timedelta(seconds=60))
        return real_update(conn, voucher_id, expected_version, at, **changes)

    monkeypatch.setattr(repo, "update_voucher", update_after_a_concurrent_change)
    try:
        msg_id, document = raw.build(receipt_for(voucher, serial="ICBC2026112400000901"))
        raw.send_body(document)
        answer = raw.reply_to(msg_id).body  # (before the fix: Closed, the gateway cut the link)
        assert fired, "the concurrent change was not injected"
        assert isinstance(answer, Reply) and answer.result in (90000, 91099), answer
        if answer.result == 91099:  # nothing was recorded: the bank resends the same document
            answer = raw.request(document, msg_id).body
            assert isinstance(answer, Reply) and answer.result == 90000, answer
        pong = raw.request(Ping()).body
        assert isinstance(pong, Reply) and pong.result == 90000, "the link must stay up"
    finally:
        other.dispose()
    found = e2e.voucher(key)
    assert found["state"] == "PAID" and found["chain_ok"]
    assert [t["event"] for t in found["timeline"]].count("receipt_paid") == 1


@pytest.mark.parametrize("instance", ["postgresql"], indirect=True)  # SQLite's writers queue at BEGIN IMMEDIATE
def test_the_same_receipt_handled_twice_at_once_gets_the_same_answer_and_the_link_stays_up(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt is handled on another link and committed while its first handling is between "not seen yet" and
    recording it: the first still gets the same answer as a repeat (PROTOCOL.md §7), the link stays up, and the
    voucher is paid once with one inbound record.

    The race is made deterministic: a second connection runs the whole `handle_request` of the same document (as
    the bank's new link would) right after the first transaction checked the MsgId and before it applies it.
    """
    from gateway.payments import service

    e2e.start()
    raw = e2e.raw()
    voucher = direct_voucher("5201450100000902")
    (key,) = e2e.submit(voucher)
    raw.ack(raw.expect("5201"))
    e2e.wait_state(key, "DELIVERED")

    other = create_engine_for(e2e.instance.config().database_url)  # the bank's other link's transaction
    real_handle, real_apply = service.handle_request, service._apply
    current: list[Any] = []  # the request being handled
    fired: list[bool] = []

    def handle(conn: Connection, bank: str, connection_id: str, item: Any, now: Any) -> Any:
        current[:] = [bank, item, now]
        return real_handle(conn, bank, connection_id, item, now)

    def apply_after_the_other_link(conn: Connection, bank: str, message: Any, now: Any) -> Any:
        if not fired:  # once: the same document, handled and committed on the other link meanwhile
            fired.append(True)
            with other.begin() as elsewhere:
                real_handle(elsewhere, current[0], "other-link", current[1], current[2])
        return real_apply(conn, bank, message, now)

    monkeypatch.setattr(service, "handle_request", handle)
    monkeypatch.setattr(service, "_apply", apply_after_the_other_link)
    try:
        msg_id, document = raw.build(receipt_for(voucher, serial="ICBC2026112400000902"))
        raw.send_body(document)
        answer = raw.reply_to(msg_id).body  # today: Closed, the gateway cut the link
        assert fired, "the concurrent handling was not injected"
        assert isinstance(answer, Reply) and answer.result in (90000, 91099), answer
        if answer.result == 91099:
            answer = raw.request(document, msg_id).body
            assert isinstance(answer, Reply) and answer.result == 90000, answer
        pong = raw.request(Ping()).body
        assert isinstance(pong, Reply) and pong.result == 90000, "the link must stay up"
    finally:
        other.dispose()
    found = e2e.voucher(key)
    assert found["state"] == "PAID" and found["chain_ok"]
    assert [t["event"] for t in found["timeline"]].count("receipt_paid") == 1
    assert len(e2e.store(inbound_rows, msg_id)) == 1
