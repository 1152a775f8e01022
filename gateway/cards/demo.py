"""The official-card cycle in `tgw demo`: banks push spending, the finance side reviews and repays it.

:func:`start_card_cycle` is what the demo calls once its gateway and simulated banks run. It starts, per bank,
a :class:`~simulators.cards.CardPusher` (real-time 7101s and a daily batch that repeats them), puts a rule in
front of each bank's rules that fails some repayment details (`fail_details`: a closed card), and plays the
budget units on the hub's clock: every `review_every_s` it approves most new spending (rejecting some as
personal), then repays what is approved through the API's own code path (:mod:`gateway.cards.runtime`). A couple
of agencies are slow to review (every `slow_review_every_s`), so that spending reported late shows as due and
overdue in the summary and in the deadline watch's log.
:meth:`CardCycle.summary` gives the numbers for the demo's summary, from the store.

Like :mod:`gateway.demo`, this is the command line's engine: only the demo imports it (DESIGN.md "The house").
Determinism: every choice draws from the `rng` given (one generator per pusher, derived from it), so a seed
gives the same spending and the same review decisions; timing does not change which records exist.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from random import Random
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, func, select
from twisted.internet import defer
from twisted.internet.task import LoopingCall

from gateway.cards import queries, runtime
from gateway.cards.service import Ref
from gateway.store.tables import card_spending, vouchers
from protocols.errors import ValidationError
from simulators.bank import SimulatedBank
from simulators.cards import DEFAULT_BATCH_EVERY_S, DEFAULT_RATE_PER_S, CardPusher, PushStats
from simulators.feeder import Feeder
from simulators.names import AGENCIES
from simulators.rules import FailDetails, Match, Rule, RuleSet

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger(__name__)

ACTOR: Final = "demo:cards"
#: Why the demo's budget units reject some spending.
REJECT_REASON: Final = "个人消费，由持卡人自行还款"
#: Why the demo's banks fail some repayment details.
FAIL_REASON: Final = "卡片已销户"
#: Most new records one review round looks at.
REVIEW_BATCH_MAX: Final = 500
#: China Standard Time, for "repaid after the deadline" (stored times are UTC, LimitDate is a local date).
CST: Final = timedelta(hours=8)


@dataclass
class CardCycle:
    """A running card cycle: its pushers and its reviewer; :meth:`stop` ends both."""

    hub: Hub
    pushers: list[CardPusher]
    rng: Random
    approve_share: float
    #: agencies that review only every `slow_review_every_s` (their late spending shows as due and overdue)
    slow_agencies: frozenset[str] = frozenset()
    slow_review_every_s: float = 30.0
    review: LoopingCall | None = None
    _slow_reviewed_at: float | None = None
    rounds: int = 0
    approvals_refused: int = 0  # review rounds in which an agency's approval was refused (quota)
    _busy: bool = False
    errors: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for pusher in self.pushers:
            pusher.stop()
        if self.review is not None and self.review.running:
            self.review.stop()

    @property
    def pushed(self) -> PushStats:
        total = PushStats()
        for p in self.pushers:
            for name in total.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(p.stats, name))
        return total

    # --- the budget units ----------------------------------------------------------------------------------

    def review_round(self) -> defer.Deferred[None] | None:
        """Approve or reject the new spending of every agency, then repay what is approved (one at a time)."""
        if self._busy:
            return None
        self._busy = True
        d = self._review()
        d.addErrback(self._failed)

        def done(_: Any) -> None:
            self._busy = False
            self.rounds += 1

        d.addBoth(done)
        return d

    def _failed(self, failure: Any) -> None:
        message = failure.getErrorMessage()
        self.errors.append(message)
        log.warning("card review round failed: %s", message)

    @defer.inlineCallbacks
    def _review(self) -> Any:
        hub = self.hub
        pending: dict[str, list[Ref]] = yield hub.run_in_store(_received_by_agency, REVIEW_BATCH_MAX)
        now = hub.clock.seconds()
        slow_turn = self._slow_reviewed_at is None or now - self._slow_reviewed_at >= self.slow_review_every_s
        if self._slow_reviewed_at is None or slow_turn:
            self._slow_reviewed_at = now
        for agency in sorted(pending):
            if agency in self.slow_agencies and not slow_turn:
                continue
            approve: list[Ref] = []
            reject: list[Ref] = []
            for ref in pending[agency]:
                (approve if self.rng.random() < self.approve_share else reject).append(ref)
            if reject:
                yield runtime.reject(hub, agency, reject, REJECT_REASON, ACTOR)
            if approve:
                try:
                    yield runtime.approve(hub, agency, approve, ACTOR)
                except ValidationError as exc:  # the agency's quota is spent: its records wait
                    self.approvals_refused += 1
                    log.info("demo: approval for %s refused: %s", agency, exc)
        yield runtime.repay(hub, ACTOR)
        watch = runtime.watch_of(hub)
        if watch is not None:  # the demo's days are seconds: look at the deadlines after every round
            yield watch.check()

    # --- results ---------------------------------------------------------------------------------------------

    def summary(self) -> defer.Deferred[dict[str, Any]]:
        """The card lines of the demo's summary, from the store (the truth) and the pushers."""
        hub = self.hub
        d: defer.Deferred[dict[str, int]] = hub.run_in_store(_counts, hub.work_date(), hub.config.cards.due_lead_days)

        def shape(counts: dict[str, int]) -> dict[str, Any]:
            pushed = self.pushed
            return {
                "spending_received": counts["received"],
                "approved": counts["records_APPROVED"] + counts["records_REPAYING"] + counts["records_REPAID"],
                "rejected": counts["records_REJECTED"],
                "repaid": counts["records_REPAID"],
                "repaid_fen": counts["fen_REPAID"],
                "awaiting_repayment": counts["records_APPROVED"] + counts["records_REPAYING"],
                "failed": counts["repay_failures"],
                "overdue": counts["overdue"],
                "due": counts["due"],
                "repaid_after_deadline": counts["repaid_after_deadline"],
                "repayment_vouchers": counts["repayment_vouchers"],
                "reports_pushed": pushed.reports,
                "records_pushed": pushed.records,
                "records_repeated_in_batches": pushed.repeated,
                "review_rounds": self.rounds,
            }

        return d.addCallback(shape)


def _received_by_agency(conn: Connection, limit: int) -> dict[str, list[Ref]]:
    c = card_spending.c
    rows = conn.execute(
        select(c.agency_code, c.bank_code, c.spend_id).where(c.state == "RECEIVED").order_by(c.id).limit(limit)
    ).all()
    out: dict[str, list[Ref]] = {}
    for agency, bank, spend_id in rows:
        out.setdefault(agency, []).append(Ref(bank, spend_id))
    return out


def _counts(conn: Connection, today: Any, lead_days: int) -> dict[str, int]:
    counts = queries.counts(conn, today, lead_days)
    c = card_spending.c
    repaid = conn.execute(select(c.limit_date, c.repaid_at).where(c.state == "REPAID")).all()
    counts["repaid_after_deadline"] = sum(1 for limit, at in repaid if (at + CST).date() > limit)
    counts["repayment_vouchers"] = int(
        conn.execute(
            select(func.count()).select_from(vouchers).where(vouchers.c.business_type_code == "2")
        ).scalar_one()
    )
    return counts


def card_failure_rule(probability: float) -> Rule:
    """The demo banks' rule for repayments: each detail fails with `probability` (a closed card)."""
    return Rule(
        Match(business_type_code="2"),
        (FailDetails(reason=FAIL_REASON, probability=probability),),
        "closed official cards",
    )


def start_card_cycle(
    hub: Hub,
    banks: Sequence[SimulatedBank],
    rng: Random,
    *,
    feeder: Feeder | None = None,
    rate_per_s: float = DEFAULT_RATE_PER_S,
    batch_every_s: float = DEFAULT_BATCH_EVERY_S,
    review_every_s: float = 2.0,
    approve_share: float = 0.9,
    fail_detail_probability: float = 0.05,
    slow_agencies: int = 2,
    slow_review_every_s: float = 30.0,
) -> CardCycle:
    """Start the card cycle of a demo: spending pushed by every bank, reviewed and repaid by the finance side.

    Args:
        hub: the running gateway's hub (its clock, store and banks).
        banks: the in-process simulated banks; each gets a pusher and the repayment failure rule.
        rng: the seeded generator; the pushers' generators and the review decisions derive from it.
        feeder: the card population and merchants (default: a feeder of these banks seeded from `rng`).
        rate_per_s: real-time spending events per second, per bank.
        batch_every_s: a simulated day: the daily batch goes every that many seconds.
        review_every_s: how often the budget units review new spending and repay what they approved.
        approve_share: share of spending approved (the rest is rejected as personal).
        fail_detail_probability: share of repayment details the banks fail (a closed card).
        slow_agencies: how many agencies review only every `slow_review_every_s` (so that spending reported
            late waits, and the deadline watch raises it).
        slow_review_every_s: how often the slow agencies review.

    Returns:
        The running cycle; call :meth:`CardCycle.stop` before stopping the banks, and
        :meth:`CardCycle.summary` for the summary's numbers.
    """
    today = hub.work_date()
    codes = [b.setup.code for b in banks]
    if feeder is None:
        feeder = Feeder(Random(rng.getrandbits(64)), st_year=today.year, banks=codes or ["ICBC"])
    pushers = []
    for bank in banks:
        rule = card_failure_rule(fail_detail_probability)
        bank.rules = RuleSet([rule, *bank.rules.rules], bank.rules.faults)
        pusher = CardPusher(
            bank, feeder, Random(rng.getrandbits(64)), rate_per_s=rate_per_s, batch_every_s=batch_every_s
        )
        pusher.start()
        pushers.append(pusher)
    review_rng = Random(rng.getrandbits(64))
    slow = frozenset(review_rng.sample(sorted(a.code for a in AGENCIES), min(slow_agencies, len(AGENCIES))))
    cycle = CardCycle(hub, pushers, review_rng, approve_share, slow, slow_review_every_s)
    cycle.review = LoopingCall(cycle.review_round)
    cycle.review.clock = hub.clock
    cycle.review.start(review_every_s, now=False).addErrback(lambda f: log.error("card review stopped: %s", f))
    return cycle
