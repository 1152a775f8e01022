"""A bank's official-card system (公务卡系统) pushing card spending to the gateway as 7101 reports.

Banks report official-card spending twice over: in real time, one transaction (or a small burst) per report as
the card is used, and once a day as a batch of everything the card system booked that day, which repeats most of
what was pushed in real time and adds what the real-time link missed. The gateway must take both and keep one
record per `SpendId` (PROTOCOL.md §5.4). Some spending also reaches the bank's report late (a merchant's
delayed settlement), so that its repayment deadline is near, or already past, when the finance side first sees it.

A :class:`CardPusher` does that for one :class:`~simulators.bank.SimulatedBank`, in whatever dialect the bank
speaks (the bank encodes and signs; a dialect that does not carry 7101 is skipped), with records drawn from the
finance-side :class:`~simulators.feeder.Feeder` (its cards, merchants and amounts). Arrivals are a Poisson
process of `rate_per_s`; every random choice comes from the `random.Random` it is given, so a seed reproduces
which records are pushed and how. The "day" of the daily batch is `batch_every_s` seconds of the simulation.

It runs on its own clock (the reactor by default), not on the bank's: a demo that waits for the bank's timed
work to finish is not held up by a card system that never stops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from random import Random
from typing import Any, Final

from protocols.messages import MAX_SPEND_RECORDS, CardSpending, SpendRecord
from simulators.bank import SimulatedBank
from simulators.feeder import Feeder

log = logging.getLogger(__name__)

#: Real-time reports of a city's agent bank in a sped-up simulation: one every two seconds or so.
DEFAULT_RATE_PER_S: Final = 0.5
#: A simulated day, for the daily batch.
DEFAULT_BATCH_EVERY_S: Final = 20.0
#: Share of spending the real-time link reports (the rest arrives only with the daily batch).
DEFAULT_REALTIME_SHARE: Final = 0.85
#: Share of spending reported late, 25–59 days after the transaction.
DEFAULT_LATE_SHARE: Final = 0.08
#: Most records in one real-time report (a burst: hotel and restaurant on one bill).
MAX_BURST: Final = 3


@dataclass
class PushStats:
    """What a pusher sent, for the demo's summary and the tests."""

    records: int = 0  # distinct spending records made
    reports: int = 0  # 7101 messages sent (real time and batches)
    realtime_reports: int = 0
    batches: int = 0
    repeated: int = 0  # records sent again in a batch after their real-time report (duplicates by design)
    late: int = 0  # records reported 25–59 days after the transaction


class CardPusher:
    """Pushes one bank's card spending to the gateway (see the module docstring).

    Args:
        bank: the simulated bank whose link carries the reports.
        feeder: where the cards, merchants and amounts come from (its `card_spending`).
        rng: the seeded source of every choice made here.
        clock: `callLater` and `seconds`; default the bank's reactor.
        rate_per_s: mean real-time spending events per second.
        batch_every_s: length of a simulated day: every that many seconds the day's batch is sent.
        realtime_share: share of spending pushed in real time.
        late_share: share of spending that reaches the bank 25–59 days after the transaction.
    """

    def __init__(
        self,
        bank: SimulatedBank,
        feeder: Feeder,
        rng: Random,
        *,
        clock: Any = None,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        batch_every_s: float = DEFAULT_BATCH_EVERY_S,
        realtime_share: float = DEFAULT_REALTIME_SHARE,
        late_share: float = DEFAULT_LATE_SHARE,
    ) -> None:
        if rate_per_s <= 0 or batch_every_s <= 0:
            raise ValueError("rate_per_s and batch_every_s are positive")
        if not (0 <= realtime_share <= 1 and 0 <= late_share <= 1):
            raise ValueError("realtime_share and late_share are within 0..1")
        self.bank = bank
        self.feeder = feeder
        self.rng = rng
        self.clock = clock if clock is not None else bank.reactor
        self.rate_per_s = rate_per_s
        self.batch_every_s = batch_every_s
        self.realtime_share = realtime_share
        self.late_share = late_share
        self.stats = PushStats()
        self.supported = bank.dialect.supports(CardSpending)
        self._day: list[tuple[SpendRecord, bool]] = []  # (record, pushed in real time)
        self._calls: list[Any] = []
        self._running = False

    @property
    def code(self) -> str:
        return self.bank.setup.code

    def start(self) -> None:
        """Begin pushing; a dialect without 7101 pushes nothing (logged once)."""
        if not self.supported:
            log.warning(
                "%s: the %s dialect carries no 7101; no card spending is pushed", self.code, self.bank.dialect.code
            )
            return
        self._running = True
        self._schedule(self.rng.expovariate(self.rate_per_s), self._spend)
        self._schedule(self.batch_every_s, self._batch)

    def stop(self) -> None:
        self._running = False
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []

    def _schedule(self, delay_s: float, fn: Any) -> None:
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(self.clock.callLater(delay_s, fn))

    def spend(self) -> list[SpendRecord]:
        """One spending event: 1–3 records of the bank's cards, today (or, late, 25–59 days ago)."""
        today = self.bank.today()
        late = self.rng.random() < self.late_share
        txn_date = today - timedelta(days=self.rng.randint(25, 59)) if late else today
        burst = 1 if self.rng.random() < 0.8 else self.rng.randint(2, MAX_BURST)
        records = list(self.feeder.card_spending(self.code, txn_date, burst))
        self.stats.records += len(records)
        self.stats.late += len(records) if late else 0
        return records

    def _spend(self) -> None:
        if not self._running:
            return
        records = self.spend()
        realtime = self.rng.random() < self.realtime_share
        self._day += [(r, realtime) for r in records]
        if realtime:
            self.push(records)
            self.stats.realtime_reports += 1
        self._schedule(self.rng.expovariate(self.rate_per_s), self._spend)

    def _batch(self) -> None:
        if not self._running:
            return
        self.send_batch()
        self._schedule(self.batch_every_s, self._batch)

    def send_batch(self) -> int:
        """The day's batch: every record of the day, in reports of at most :data:`MAX_SPEND_RECORDS`; returns how
        many records it carried. The day starts afresh."""
        day, self._day = self._day, []
        records = [r for r, _ in day]
        for start in range(0, len(records), MAX_SPEND_RECORDS):
            self.push(records[start : start + MAX_SPEND_RECORDS])
        if records:
            self.stats.batches += 1
            self.stats.repeated += sum(1 for _, realtime in day if realtime)
        return len(records)

    def push(self, records: Sequence[SpendRecord]) -> str:
        """Send one 7101 with these records (kept until the gateway acknowledges it); returns its MsgId."""
        self.stats.reports += 1
        return self.bank.request(CardSpending(records=tuple(records)))
