"""The card cycle the demo starts (`start_card_cycle`): pushers, the budget units' review and repayment, summary.

On a hub with the synchronous store and a fake clock; the simulated bank is reduced to what the cycle uses, and
its 7101s go into the gateway exactly as the hub would hand them over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from random import Random
from typing import Any

from sqlalchemy import select

from banks.standard import STANDARD_DIALECT
from gateway.cards.demo import FAIL_REASON, REJECT_REASON, start_card_cycle
from gateway.hub import Hub
from gateway.payments import service as payments
from gateway.store.tables import vouchers
from protocols.messages import CardSpending, Payload
from simulators.feeder import Feeder
from simulators.rules import FailDetails, RuleSet
from tests.cards.conftest import NODE, TODAY, Cards


@dataclass
class Setup:
    code: str = "ICBC"


@dataclass
class FakeBank:
    """A simulated bank as the card cycle sees it; its 7101s are applied by the gateway's payment service."""

    cards: Cards
    reactor: Any
    setup: Setup = field(default_factory=Setup)
    dialect: Any = STANDARD_DIALECT
    rules: RuleSet = field(default_factory=RuleSet)
    pushed: int = 0

    def today(self) -> date:
        return TODAY

    def request(self, payload: Payload) -> str:
        assert isinstance(payload, CardSpending)
        self.pushed += 1
        outcome = self.cards.push(self.setup.code, payload.records)
        assert outcome.result == 90000, outcome.add_word
        return f"M{self.pushed}"


def test_the_demo_cycle_pushes_reviews_and_repays(hub: Hub, signed: Cards) -> None:
    feeder = Feeder(Random(3), st_year=TODAY.year, banks=["ICBC"])
    signed.tx(payments.submit_quota_notice, "ICBC", feeder.quota_notice("ICBC", TODAY), "demo", signed.now, NODE)
    bank = FakeBank(signed, hub.clock)
    cycle = start_card_cycle(
        hub,
        [bank],
        Random(5),
        feeder=feeder,
        rate_per_s=2.0,
        batch_every_s=5.0,
        review_every_s=1.0,  # type: ignore[list-item]
    )
    assert isinstance(bank.rules.rules[0].actions[0], FailDetails)  # repayments fail some details, by rule
    assert bank.rules.rules[0].actions[0].reason == FAIL_REASON
    for _ in range(200):
        hub.clock.advance(0.05)
    summary = cycle.summary().result
    cycle.stop()
    pushed = bank.pushed
    hub.clock.advance(60)
    assert bank.pushed == pushed  # stopped: nothing more is pushed or reviewed
    assert summary["spending_received"] == cycle.pushed.records > 0
    assert summary["reports_pushed"] == pushed and summary["records_repeated_in_batches"] > 0
    assert summary["review_rounds"] >= 9
    assert summary["approved"] > 0 and summary["rejected"] > 0
    # nothing was executed (no bank on the wire): every approved record is in a repayment voucher on its way
    assert summary["awaiting_repayment"] == summary["approved"] and summary["repaid"] == 0
    states = signed.tx(lambda conn: conn.execute(select(vouchers.c.business_type_code, vouchers.c.state)).all())
    assert len(states) == summary["repayment_vouchers"] > 0 and {s for s in states} == {("2", "ACCEPTED")}
    assert {r["state"] for r in signed.records()} <= {"REPAYING", "REJECTED", "RECEIVED"}
    assert {r["reason"] for r in signed.records() if r["state"] == "REJECTED"} == {REJECT_REASON}
    assert cycle.errors == []
