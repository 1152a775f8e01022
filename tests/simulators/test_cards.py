"""The card pusher of a simulated bank: real-time 7101s at a Poisson rate, a daily batch that repeats them, late
spending; seeded, on a fake clock, through the bank's `request` (the network is the end-to-end tests' business)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from random import Random
from typing import Any

import pytest
from twisted.internet.task import Clock

from banks.standard import STANDARD_DIALECT
from protocols.messages import CardSpending, Payload
from simulators.cards import CardPusher
from simulators.feeder import Feeder
from tests.simulators.wire import assert_valid

DAY = date(2026, 11, 23)


@dataclass
class Setup:
    code: str = "ICBC"


@dataclass
class FakeBank:
    """What the pusher uses of a SimulatedBank."""

    reactor: Clock = field(default_factory=Clock)
    setup: Setup = field(default_factory=Setup)
    dialect: Any = STANDARD_DIALECT
    sent: list[Payload] = field(default_factory=list)

    def today(self) -> date:
        return DAY

    def request(self, payload: Payload) -> str:
        self.sent.append(payload)
        return f"M{len(self.sent)}"


def run(seed: int, seconds: int = 100, **kwargs: Any) -> tuple[FakeBank, CardPusher]:
    bank = FakeBank()
    pusher = CardPusher(bank, Feeder(Random(1)), Random(seed), **kwargs)  # type: ignore[arg-type]
    pusher.start()
    for _ in range(seconds * 10 - 5):  # up to just before the end of the last simulated day
        bank.reactor.advance(0.1)
    pusher.send_batch()  # the day's end
    pusher.stop()
    return bank, pusher


def records_of(bank: FakeBank) -> list[Any]:
    return [r for p in bank.sent if isinstance(p, CardSpending) for r in p.records]


def test_real_time_reports_then_a_daily_batch_that_repeats_them() -> None:
    bank, pusher = run(3, seconds=100, rate_per_s=0.5, batch_every_s=20.0, realtime_share=0.8)
    stats = pusher.stats
    assert stats.batches == 5 and 25 <= stats.realtime_reports <= 80  # ~50 spending events in 100 s
    assert stats.reports == stats.realtime_reports + stats.batches
    distinct = {r.spend_id for r in records_of(bank)}
    assert len(distinct) == stats.records  # every record is in some report (real time or batch)
    assert len(records_of(bank)) == stats.records + stats.repeated  # the batches repeat the real-time ones
    assert 0 < stats.repeated < stats.records
    for payload in bank.sent:
        assert isinstance(payload, CardSpending)
        assert_valid(payload, "bank")


def test_the_same_seed_pushes_the_same_spending() -> None:
    first, _ = run(7)
    again, _ = run(7)
    other, _ = run(8)
    assert first.sent == again.sent and first.sent != other.sent


def test_late_spending_is_reported_with_a_deadline_near_or_past() -> None:
    bank, pusher = run(5, seconds=200, late_share=0.5)
    late = [r for r in records_of(bank) if r.txn_date < DAY]
    assert late and pusher.stats.late > 0
    assert all(timedelta(days=25) <= DAY - r.txn_date <= timedelta(days=59) for r in late)
    assert any(r.limit_date < DAY for r in late) and any(r.limit_date >= DAY for r in late)
    assert all(r.txn_date == DAY for r in records_of(bank) if r not in late)


def test_amounts_are_realistic_card_spending() -> None:
    bank, _ = run(11, seconds=300, rate_per_s=1.0)
    amounts = sorted(r.amt_fen for r in records_of(bank))
    assert amounts[0] >= 100 and amounts[-1] <= 5_000_000  # 1 yuan to 50,000 yuan
    median = amounts[len(amounts) // 2]
    assert 5_000 <= median <= 300_000  # tens to a few thousand yuan: meals, taxis, hotels, tickets


def test_a_dialect_without_7101_pushes_nothing() -> None:
    class NoCards:
        code = "legacy"

        @staticmethod
        def supports(payload_type: type[Payload]) -> bool:
            return payload_type is not CardSpending

    bank = FakeBank(dialect=NoCards())
    pusher = CardPusher(bank, Feeder(Random(1)), Random(1))  # type: ignore[arg-type]
    pusher.start()
    bank.reactor.advance(100)
    assert bank.sent == [] and not pusher.supported


def test_rates_and_shares_are_checked() -> None:
    with pytest.raises(ValueError):
        CardPusher(FakeBank(), Feeder(Random(1)), Random(1), rate_per_s=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CardPusher(FakeBank(), Feeder(Random(1)), Random(1), late_share=1.5)  # type: ignore[arg-type]
