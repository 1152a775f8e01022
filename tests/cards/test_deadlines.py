"""Repayment deadlines: due and overdue records from an explicit `today`, and the watch driven by a fake clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from gateway.cards import queries
from gateway.cards.runtime import CardWatch, start_watch, stop_watch, watch_of
from gateway.config import CardSettings
from gateway.dbthread import InlineDatabase
from protocols.messages import SpendRecord
from tests.cards.conftest import EDUCATION, HEALTH, Cards

T = TypeVar("T")
TZ = ZoneInfo("Asia/Shanghai")


def _spend_due_in(cards: Cards, *offsets: int, agency: str = HEALTH) -> list[SpendRecord]:
    records = [cards.spend(agency=agency, limit_date=cards.today + timedelta(days=n)) for n in offsets]
    cards.push("ICBC", records)
    return records


def test_due_and_overdue_from_an_explicit_today(cards: Cards) -> None:
    """Overdue: the LimitDate has passed; due: within the lead days, the day itself included."""
    overdue, today, in_five, in_six = _spend_due_in(cards, -1, 0, 5, 6)
    report = cards.tx(queries.due_report, cards.today, 5)
    assert [r["spend_id"] for r in report["overdue"]] == [overdue.spend_id]
    assert [r["spend_id"] for r in report["due"]] == [today.spend_id, in_five.spend_id]
    assert report["counts"] == {"overdue": 1, "overdue_fen": 86_000, "due": 2, "due_fen": 172_000}
    assert report["overdue"][0]["days_left"] == -1 and report["overdue"][0]["deadline"] == "overdue"
    assert in_six.spend_id not in {r["spend_id"] for r in report["due"] + report["overdue"]}
    # a week later everything is overdue; with a lead of 0 only today's deadline is due
    later = cards.tx(queries.due_report, cards.today + timedelta(days=7), 5)
    assert later["counts"]["overdue"] == 4 and later["counts"]["due"] == 0
    assert [r["spend_id"] for r in cards.tx(queries.due_report, cards.today, 0)["due"]] == [today.spend_id]


def test_reimbursed_and_rejected_records_are_not_raised(cards: Cards) -> None:
    """Only records not reimbursed yet count: REPAID and REJECTED never; APPROVED and REPAYING still do."""
    cards.grant(HEALTH, 10_000_000)
    repaid, rejected, approved, received = _spend_due_in(cards, -3, -3, -3, -3)
    cards.reject(HEALTH, [rejected], "个人消费")
    cards.approve(HEALTH, [repaid, approved])
    made = cards.repay().vouchers
    cards.dispatch()
    for voucher in made:
        detail = cards.voucher(voucher.key).details
        failed = {d.id: "卡片已冻结" for d in detail if d.spend_id == approved.spend_id}
        cards.send("ICBC", cards.receipt(voucher.key, failed))
    assert cards.record(approved)["state"] == "APPROVED" and cards.record(repaid)["state"] == "REPAID"
    overdue = {r["spend_id"] for r in cards.tx(queries.due_report, cards.today, 5)["overdue"]}
    assert overdue == {approved.spend_id, received.spend_id}


def test_the_report_filters_by_agency(cards: Cards) -> None:
    mine = _spend_due_in(cards, 1)
    _spend_due_in(cards, 1, agency=EDUCATION)
    report = cards.tx(queries.due_report, cards.today, 5, HEALTH)
    assert [r["spend_id"] for r in report["due"]] == [mine[0].spend_id] and report["counts"]["due"] == 1


# --- the watch on a fake clock ------------------------------------------------------------------------------------


@dataclass(eq=False)
class FakeHub:
    """What the watch uses of a hub: its clock, store, configuration and listeners."""

    db: InlineDatabase
    clock: Clock
    config: SimpleNamespace
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC).replace(tzinfo=None)

    def work_date(self) -> date:
        return datetime.fromtimestamp(self.clock.seconds(), TZ).date()

    def run_in_store(self, fn: Any, *args: Any) -> defer.Deferred[Any]:
        return self.db.run(fn, *args)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))


@pytest.fixture
def watched(cards: Cards) -> FakeHub:
    clock = Clock()
    clock.advance(datetime.combine(cards.today, datetime.min.time(), TZ).timestamp() + 10 * 3600)
    settings = CardSettings(due_lead_days=3, check_interval_s=3600)
    return FakeHub(InlineDatabase(cards.engine), clock, SimpleNamespace(cards=settings, node="450100000000", banks={}))


def test_the_watch_raises_each_record_once_as_it_becomes_due_then_overdue(
    cards: Cards, watched: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """Days pass on the fake clock: a record is logged when it becomes due, again when it becomes overdue, never
    in between; the counts follow; `cards_due` events fire only when the numbers change."""
    (record,) = _spend_due_in(cards, 5)
    caplog.set_level(logging.WARNING, logger="gateway.cards")
    watch = CardWatch(watched)  # type: ignore[arg-type]
    watch.start()
    assert watch.counts["due"] == 0 and caplog.records == []
    watched.clock.advance(86_400)  # 4 days left: not yet
    assert caplog.records == [] and watch.counts["due"] == 0
    watched.clock.advance(86_400)  # 3 days left: due
    assert [r.getMessage() for r in caplog.records][-1].startswith(
        f"official card spending ICBC:{record.spend_id} is due"
    )
    assert "628288*********0001" in caplog.records[-1].getMessage()
    assert watch.counts["due"] == 1 and watch.counts["due_fen"] == record.amt_fen
    for _ in range(3):  # 2, 1, 0 days left: still due, not logged again (hourly checks in between)
        for _ in range(24):
            watched.clock.advance(3600)
    assert len(caplog.records) == 1
    watched.clock.advance(86_400)  # the LimitDate has passed
    assert "is OVERDUE" in caplog.records[-1].getMessage() and len(caplog.records) == 2
    assert (watch.counts["due"], watch.counts["overdue"]) == (0, 1)
    due_events = [data for kind, data in watched.events if kind == "cards_due"]
    assert [(e["due"], e["overdue"]) for e in due_events] == [(0, 0), (1, 0), (0, 1)]
    assert "6282880000000000001" not in caplog.text
    watch.stop()
    watched.clock.advance(86_400 * 3)
    assert len(due_events) == len([1 for kind, _ in watched.events if kind == "cards_due"])


def test_the_watch_settles_repayments_stranded_without_receipt(cards: Cards, watched: FakeHub) -> None:
    """A repayment the bank refused with its 9120 gets no receipt: the watch brings its records back."""
    cards.grant(HEALTH, 1_000_000)
    (record,) = _spend_due_in(cards, 30)
    cards.approve(HEALTH, [record])
    cards.repay()
    msg_id = cards.dispatch()[-1]
    cards.nak("ICBC", msg_id, 91006, "付款账户已冻结")
    watch = CardWatch(watched)  # type: ignore[arg-type]
    watch.start()
    assert cards.record(record)["state"] == "APPROVED" and cards.record(record)["reason"] == "付款账户已冻结"
    assert [data["kind"] for kind, data in watched.events if kind == "cards"] == ["settled"]
    watch.stop()


def test_one_watch_per_hub_and_the_dashboard_provider_is_attached(cards: Cards, watched: FakeHub) -> None:
    watch = start_watch(watched)  # type: ignore[arg-type]
    assert start_watch(watched) is watch and watch_of(watched) is watch  # type: ignore[arg-type]
    provider: Any = getattr(watched, "cards", None)
    assert provider is not None and cards.tx(provider.repayments, due_before=None, overdue_on=None) == []
    stop_watch(watched)  # type: ignore[arg-type]
    assert watch_of(watched) is None  # type: ignore[arg-type]
