"""The nightly scheduler (gateway.reconcile.scheduler.NightlyScheduler) on a fake clock, over the real store.

The reconciler is a recording callable (the unit boundary: `reconcile(bank, check_date, actor)` returning a
Deferred); the store is the test database on SQLite and PostgreSQL, reached through the synchronous
`InlineDatabase`, so that `task.Clock.advance` runs everything that falls due, store work included. Two
schedulers on one database each have their own engine, as two gateway processes do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from types import SimpleNamespace
from typing import Any, Final
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert
from twisted.internet import defer, task

from gateway.config import ReconSettings
from gateway.dbthread import InlineDatabase
from gateway.reconcile.scheduler import (
    ACTOR,
    DONE,
    FAILED,
    STORE_POLL_S,
    NightlyScheduler,
    ScheduleRow,
    first_date,
    nightly_of,
    schedule_rows,
    start_nightly,
    stop_nightly,
)
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import recon_runs

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
BANKS: Final = ("CCB", "ICBC")
SETTINGS: Final = ReconSettings(retry_after_s=900.0, lease_s=600.0, max_attempts=3)
HOUR: Final = 3600.0


class Clock(task.Clock):
    """A fake clock that fails a busy loop (many calls due at once without time passing) instead of hanging."""

    BUSY_MAX: Final = 200

    def __init__(self) -> None:
        super().__init__()
        self._instant = -1.0
        self._immediate = 0

    def callLater(self, delay: float, fn: Any, *args: Any, **kw: Any) -> Any:
        if delay <= 0:
            if self._instant != self.seconds():
                self._instant, self._immediate = self.seconds(), 0
            self._immediate += 1
            if self._immediate > self.BUSY_MAX:
                raise AssertionError(f"busy loop: {self._immediate} calls due at once at {self.seconds()}")
        return super().callLater(delay, fn, *args, **kw)


def at(y: int, m: int, d: int, hh: int, mm: int = 0, ss: int = 0) -> float:
    """Seconds of a Shanghai wall time."""
    return datetime(y, m, d, hh, mm, ss, tzinfo=SHANGHAI).timestamp()


@dataclass(eq=False)
class Host:
    """What the scheduler uses of the hub: configuration, store, node id, listeners."""

    config: Any
    db: InlineDatabase
    node_id: str
    clock: Clock
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def kinds(self) -> list[str]:
        return [data["kind"] for kind, data in self.events if kind == "reconciliation"]


class Reconciler:
    """Records each call; answers at once with a summary, or fails the first `failures[bank]` calls of a bank, or
    (hold=True) returns a Deferred the test fires."""

    def __init__(self, *, failures: dict[str, int] | None = None, hold: bool = False) -> None:
        self.calls: list[tuple[str, date, str]] = []
        self.failures = dict(failures or {})
        self.hold = hold
        self.held: dict[tuple[str, date], defer.Deferred[dict[str, Any]]] = {}

    def __call__(self, bank: str, check_date: date, actor: str) -> defer.Deferred[dict[str, Any]]:
        self.calls.append((bank, check_date, actor))
        if self.failures.get(bank, 0) > 0:
            self.failures[bank] -= 1
            return defer.fail(RuntimeError(f"{bank}: no statement"))
        if self.hold:
            d: defer.Deferred[dict[str, Any]] = defer.Deferred()
            self.held[(bank, check_date)] = d
            return d
        return defer.succeed({"bank": bank, "check_date": check_date.isoformat(), "breaks": 0})

    def dates(self) -> list[tuple[str, date]]:
        return [(bank, day) for bank, day, _ in self.calls]


@dataclass
class World:
    """One database, one fake clock, and whatever schedulers (gateway processes) run on them."""

    url: str
    engine: Engine
    clock: Clock
    engines: list[Engine] = field(default_factory=list)
    schedulers: list[NightlyScheduler] = field(default_factory=list)

    def host(self, node: str, settings: ReconSettings = SETTINGS, banks: tuple[str, ...] = BANKS) -> Host:
        engine = create_engine_for(self.url)
        self.engines.append(engine)
        config = SimpleNamespace(reconciliation=settings, banks={code: object() for code in banks})
        return Host(config, InlineDatabase(engine), node, self.clock)

    def scheduler(self, node: str, reconcile: Reconciler, **settings: Any) -> tuple[NightlyScheduler, Host]:
        host = self.host(node, ReconSettings(**{**_asdict(SETTINGS), **settings}))
        scheduler = NightlyScheduler(host, reconcile, self.clock)  # type: ignore[arg-type]
        self.schedulers.append(scheduler)
        scheduler.start()
        self.clock.advance(0)
        return scheduler, host

    def to(self, seconds: float, step: float = HOUR) -> None:
        """Advance the clock to `seconds`, in steps (as a live reactor would pass through the time)."""
        while self.clock.seconds() < seconds:
            self.clock.advance(min(step, seconds - self.clock.seconds()))

    def rows(self, day: date) -> dict[str, ScheduleRow]:
        with transaction(self.engine, read_only=True) as conn:
            return schedule_rows(conn, day)


def _asdict(settings: ReconSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in ReconSettings.__dataclass_fields__}


#: The instance has worked since this date (its nightly runs reconcile no earlier date: first_date).
FIRST_DAY: Final = date(2026, 11, 1)


@pytest.fixture
def world(db_url: str, db_engine: Engine) -> Iterator[World]:
    clock = Clock()
    w = World(db_url, db_engine, clock)
    with transaction(db_engine) as conn:
        assert first_date(conn, FIRST_DAY) == FIRST_DAY
    try:
        yield w
    finally:
        for scheduler in w.schedulers:
            scheduler.stop()
        for engine in w.engines:
            engine.dispose()


def test_fires_at_two_in_shanghai_for_yesterday_once_per_bank(world: World) -> None:
    world.clock.advance(at(2026, 11, 23, 10, 0))
    recorder = Reconciler()
    scheduler, host = world.scheduler("node-a", recorder)
    # started at 10:00 without having run today's job: yesterday's runs at once
    assert recorder.calls == [("CCB", date(2026, 11, 22), ACTOR), ("ICBC", date(2026, 11, 22), ACTOR)]
    world.to(at(2026, 11, 24, 1, 59, 59), step=60)
    assert len(recorder.calls) == 2
    world.clock.advance(1)  # 02:00:00 Asia/Shanghai, 18:00 UTC the day before
    assert recorder.dates()[2:] == [("CCB", date(2026, 11, 23)), ("ICBC", date(2026, 11, 23))]
    rows = world.rows(date(2026, 11, 23))
    assert {b: (r.outcome, r.attempts, r.claimed_by) for b, r in rows.items()} == {
        "CCB": (DONE, 1, "node-a"),
        "ICBC": (DONE, 1, "node-a"),
    }
    assert rows["ICBC"].claimed_at == datetime(2026, 11, 23, 18, 0)
    assert '"breaks":0' in (rows["ICBC"].detail or "")
    world.to(at(2026, 11, 27, 12, 0), step=600)  # three more nights, woken every ten minutes
    assert recorder.dates()[4:] == [(b, date(2026, 11, d)) for d in (24, 25, 26) for b in BANKS]
    assert len(set(recorder.dates())) == len(recorder.calls)  # nothing twice
    assert scheduler.state()["next_check_date"] == "2026-11-27"
    assert scheduler.state()["next_at"] == datetime(2026, 11, 28, 2, 0, tzinfo=SHANGHAI).astimezone(UTC).isoformat()
    assert host.kinds()[:4] == ["nightly_due", "nightly_started", "nightly_done", "nightly_started"]
    finished = [d for k, d in host.events if d["kind"] == "nightly_finished"]
    assert [d["check_date"] for d in finished] == ["2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert finished[1]["outcomes"] == {"CCB": DONE, "ICBC": DONE}


def test_the_configured_time_and_zone(world: World) -> None:
    world.clock.advance(datetime(2026, 11, 23, 23, 0, tzinfo=UTC).timestamp())  # after 19:30 UTC: nothing owed
    recorder = Reconciler()
    world.scheduler("node-a", recorder, nightly_at=time(19, 30), timezone="UTC")
    assert recorder.dates() == [("CCB", date(2026, 11, 22)), ("ICBC", date(2026, 11, 22))]
    world.to(datetime(2026, 11, 24, 19, 29, tzinfo=UTC).timestamp(), step=60)
    assert len(recorder.calls) == 2
    world.to(datetime(2026, 11, 24, 19, 30, tzinfo=UTC).timestamp(), step=60)
    assert recorder.dates()[2:] == [("CCB", date(2026, 11, 23)), ("ICBC", date(2026, 11, 23))]


def test_a_restart_on_the_same_database_runs_nothing_again(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 1, 0))
    first = Reconciler()
    scheduler, _ = world.scheduler("host:100", first)
    world.to(at(2026, 11, 24, 9, 0))
    assert first.dates() == [(b, d) for d in (date(2026, 11, 22), date(2026, 11, 23)) for b in BANKS]
    scheduler.stop()
    for restart_at in (at(2026, 11, 24, 9, 0, 1), at(2026, 11, 24, 23, 59), at(2026, 11, 24, 1, 30)):
        world.clock.advance(max(0.0, restart_at - world.clock.seconds()))
        again = Reconciler()
        restarted, host = world.scheduler("host:200", again)  # a new process: another pid
        assert again.calls == []
        assert host.kinds()[-1] == "nightly_finished"
        restarted.stop()
    assert {r.claimed_by for r in world.rows(date(2026, 11, 23)).values()} == {"host:100"}


def test_a_failed_bank_is_retried_after_retry_after_s_until_it_succeeds(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 1, 0))
    recorder = Reconciler()
    world.scheduler("node-a", recorder)  # 2026-11-22 at once, done
    recorder.failures["ICBC"] = 2  # 2026-11-23 fails twice for ICBC
    world.to(at(2026, 11, 24, 2, 0))
    day = date(2026, 11, 23)
    assert recorder.dates()[-2:] == [("CCB", day), ("ICBC", day)]
    row = world.rows(day)["ICBC"]
    assert (row.outcome, row.finished_at, row.attempts) == (FAILED, None, 1)
    assert row.detail == "RuntimeError: ICBC: no statement"
    world.to(at(2026, 11, 24, 2, 0) + SETTINGS.retry_after_s - 1, step=60)
    assert recorder.dates().count(("ICBC", day)) == 1
    world.clock.advance(1)
    assert recorder.dates().count(("ICBC", day)) == 2
    world.to(at(2026, 11, 24, 2, 0) + 2 * SETTINGS.retry_after_s)
    assert recorder.dates().count(("ICBC", day)) == 3
    rows = world.rows(day)
    assert (rows["ICBC"].outcome, rows["ICBC"].attempts) == (DONE, 3)
    assert (rows["CCB"].outcome, rows["CCB"].attempts) == (DONE, 1)
    assert recorder.dates().count(("CCB", day)) == 1


def test_a_bank_that_keeps_failing_is_given_up_after_max_attempts(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 2, 0))
    recorder = Reconciler(failures={"ICBC": 100})
    _, host = world.scheduler("node-a", recorder)
    world.to(at(2026, 11, 25, 1, 0), step=60)
    day = date(2026, 11, 23)
    assert recorder.dates().count(("ICBC", day)) == SETTINGS.max_attempts
    row = world.rows(day)["ICBC"]
    assert (row.outcome, row.attempts) == (FAILED, SETTINGS.max_attempts) and row.finished_at is not None
    failed = [d for k, d in host.events if d["kind"] == "nightly_failed"]
    assert [d["retry_in_s"] for d in failed] == [SETTINGS.retry_after_s, SETTINGS.retry_after_s, None]
    finished = [d for k, d in host.events if d["kind"] == "nightly_finished"]
    assert finished[-1]["outcomes"] == {"CCB": DONE, "ICBC": FAILED}


def test_two_schedulers_on_one_database_call_once_per_bank_and_date(world: World) -> None:
    world.clock.advance(at(2026, 11, 23, 12, 0))
    a, b = Reconciler(), Reconciler()
    world.scheduler("node-a", a)
    world.scheduler("node-b", b)
    world.to(at(2026, 11, 30, 12, 0), step=300)
    calls = sorted(a.dates() + b.dates())
    expected = sorted((bank, date(2026, 11, d)) for d in range(22, 30) for bank in BANKS)
    assert calls == expected
    assert all(
        r.outcome == DONE and r.attempts == 1 for d in range(22, 30) for r in world.rows(date(2026, 11, d)).values()
    )


def test_a_run_whose_process_died_is_taken_over_after_its_lease(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 2, 0))
    held, other = Reconciler(hold=True), Reconciler()
    dying, _ = world.scheduler("node-a", held)  # claims both banks of 11-23, its runs never end
    world.scheduler("node-b", other)
    assert sorted(held.held) == [("CCB", date(2026, 11, 23)), ("ICBC", date(2026, 11, 23))]
    assert other.calls == []
    dying.stop()  # the process dies: no more renewals
    world.to(world.clock.seconds() + SETTINGS.lease_s - 1, step=60)
    assert other.calls == []
    world.to(world.clock.seconds() + 1, step=60)
    assert sorted(other.dates()) == [("CCB", date(2026, 11, 23)), ("ICBC", date(2026, 11, 23))]
    rows = world.rows(date(2026, 11, 23))
    assert {(r.claimed_by, r.attempts, r.outcome) for r in rows.values()} == {("node-b", 2, DONE)}
    held.held[("ICBC", date(2026, 11, 23))].callback({"late": True})  # the dead process's result arrives late
    assert world.rows(date(2026, 11, 23))["ICBC"].claimed_by == "node-b"


def test_a_long_run_keeps_its_claim_by_renewing_the_lease(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 2, 0))
    held, other = Reconciler(hold=True), Reconciler()
    world.scheduler("node-a", held)
    world.scheduler("node-b", other)
    world.to(world.clock.seconds() + 5 * SETTINGS.lease_s, step=60)  # five leases long, renewed every third
    assert other.calls == []
    day = date(2026, 11, 23)
    assert world.rows(day)["ICBC"].lease_until > datetime.fromtimestamp(world.clock.seconds(), UTC).replace(tzinfo=None)
    for d in held.held.values():
        d.callback({"breaks": 1})
    rows = world.rows(day)
    assert {(r.claimed_by, r.attempts, r.outcome) for r in rows.values()} == {("node-a", 1, DONE)}
    world.to(world.clock.seconds() + 5 * SETTINGS.lease_s, step=60)
    assert other.calls == []


def test_a_store_that_is_away_is_tried_again(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.clock.advance(at(2026, 11, 24, 2, 0))
    recorder = Reconciler()
    host = world.host("node-a")
    scheduler = NightlyScheduler(host, recorder, world.clock)  # type: ignore[arg-type]
    world.schedulers.append(scheduler)
    real_run = host.db.run
    outage = {"on": True}

    def run(fn: Any, *args: Any) -> Any:
        if outage["on"]:
            from gateway.store.db import StoreUnavailable

            return defer.fail(StoreUnavailable("connection refused"))
        return real_run(fn, *args)

    host.db.run = run  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="gateway.reconcile.nightly")
    scheduler.start()
    world.clock.advance(0)
    assert recorder.calls == [] and "connection refused" in caplog.text
    world.to(world.clock.seconds() + SETTINGS.retry_after_s - 1, step=60)
    assert caplog.text.count("connection refused") == 1  # no busy loop: it waits retry_after_s
    outage["on"] = False
    world.to(world.clock.seconds() + SETTINGS.retry_after_s, step=60)
    assert recorder.dates() == [("CCB", date(2026, 11, 23)), ("ICBC", date(2026, 11, 23))]


def test_start_nightly_follows_the_configuration(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 9, 0))
    off = world.host("node-a", ReconSettings(nightly_enabled=False))
    assert start_nightly(off, Reconciler()) is None  # type: ignore[arg-type]
    assert start_nightly(world.host("node-b")) is None  # type: ignore[arg-type]  # no link reconciler
    on = world.host("node-c")
    recorder = Reconciler()
    scheduler = start_nightly(on, recorder)  # type: ignore[arg-type]
    assert scheduler is not None and nightly_of(on) is scheduler
    assert start_nightly(on, recorder) is scheduler  # type: ignore[arg-type]  # one per hub
    world.clock.advance(0)
    assert recorder.dates() == [("CCB", date(2026, 11, 23)), ("ICBC", date(2026, 11, 23))]
    stop_nightly(on)  # type: ignore[arg-type]
    assert nightly_of(on) is None
    world.to(at(2026, 11, 26, 9, 0))
    assert len(recorder.calls) == 2  # stopped: nothing more
    linked = world.host("node-d")
    linked.link_reconciler = SimpleNamespace(reconcile=Reconciler())  # type: ignore[attr-defined]
    found = start_nightly(linked)  # type: ignore[arg-type]
    assert found is not None and found.reconcile is linked.link_reconciler.reconcile  # type: ignore[attr-defined]
    stop_nightly(linked)  # type: ignore[arg-type]


def test_a_new_gateway_reconciles_from_its_first_day_on(db_url: str, db_engine: Engine) -> None:
    """On a database where no scheduler ran before, started at 10:00: yesterday is not its day (its ledger is
    empty), so nothing runs until 02:00 tomorrow, which reconciles today, its first day."""
    w = World(db_url, db_engine, Clock())
    try:
        w.clock.advance(at(2026, 11, 24, 10, 0))
        recorder = Reconciler()
        _, host = w.scheduler("node-a", recorder)
        assert recorder.calls == [] and host.kinds() == []
        w.to(at(2026, 11, 25, 1, 59))
        assert recorder.calls == []
        w.to(at(2026, 11, 25, 2, 0))
        assert recorder.dates() == [("CCB", date(2026, 11, 24)), ("ICBC", date(2026, 11, 24))]
        w.schedulers[0].stop()
        w.to(at(2026, 11, 27, 9, 0))  # down for two nights; restarted: the first day stays 11-24
        later = Reconciler()
        w.scheduler("node-b", later)
        assert later.dates() == [("CCB", date(2026, 11, 26)), ("ICBC", date(2026, 11, 26))]
        with transaction(db_engine) as conn:
            assert first_date(conn, date(2030, 1, 1)) == date(2026, 11, 24)
    finally:
        for scheduler in w.schedulers:
            scheduler.stop()
        for engine in w.engines:
            engine.dispose()


def _store_run(engine: Engine, bank: str, day: date, finished: float) -> int:
    """A run stored as another process's reconciler stores it (gateway.reconcile.store_port)."""
    at_utc = datetime.fromtimestamp(finished, UTC).replace(tzinfo=None)
    with transaction(engine) as conn:
        return int(
            conn.execute(
                insert(recon_runs)
                .values(
                    bank_code=bank,
                    check_date=day,
                    started_at=at_utc,
                    finished_at=at_utc,
                    source="4006 over the link",
                    status="DONE",
                    counts="{}",
                    break_count=2,
                )
                .returning(recon_runs.c.id)
            ).scalar_one()
        )


def test_a_run_stored_by_another_process_finishes_the_claim(world: World) -> None:
    """The claimant's reconciler waits (the bank's statement went to the process the bank is connected to); the
    run appears in the store: the claim is DONE within STORE_POLL_S, and the reconciler's late answer (here a
    timeout) changes nothing."""
    world.clock.advance(at(2026, 11, 24, 2, 0))
    held = Reconciler(hold=True)
    _, host = world.scheduler("node-a", held)
    day = date(2026, 11, 23)
    assert sorted(held.held) == [("CCB", day), ("ICBC", day)]
    _store_run(world.engine, "ICBC", day, at(2026, 11, 24, 2, 0) - 60)  # an older run of the date: not this one
    world.clock.advance(STORE_POLL_S)
    assert world.rows(day)["ICBC"].finished_at is None
    world.clock.advance(1)
    run_id = _store_run(world.engine, "CCB", day, world.clock.seconds())  # CCB reconciled elsewhere
    world.clock.advance(STORE_POLL_S)
    rows = world.rows(day)
    assert (rows["CCB"].outcome, rows["ICBC"].outcome) == (DONE, None)
    assert f'"run_id":{run_id}' in (rows["CCB"].detail or "")
    held.held[("CCB", day)].errback(RuntimeError("no complete statement within 600 s"))
    assert world.rows(day)["CCB"].outcome == DONE
    done = [d for k, d in host.events if d["kind"] == "nightly_done"]
    assert [d["bank"] for d in done] == ["CCB"]


def test_a_failed_reconciler_whose_run_was_stored_is_done(world: World) -> None:
    world.clock.advance(at(2026, 11, 24, 2, 0))
    held = Reconciler(hold=True)
    world.scheduler("node-a", held)
    day = date(2026, 11, 23)
    world.clock.advance(1)
    _store_run(world.engine, "ICBC", day, world.clock.seconds())
    held.held[("ICBC", day)].errback(RuntimeError("statement timeout"))  # before the next look in the store
    row = world.rows(day)["ICBC"]
    assert (row.outcome, row.attempts) == (DONE, 1) and row.finished_at is not None
    assert "statement timeout" in (row.detail or "") and '"found_in_store":true' in (row.detail or "")
    held.held[("CCB", day)].errback(RuntimeError("statement timeout"))  # no run stored: a real failure
    row = world.rows(day)["CCB"]
    assert (row.outcome, row.finished_at) == (FAILED, None)
    world.to(world.clock.seconds() + SETTINGS.retry_after_s, step=60)
    assert held.dates().count(("CCB", day)) == 2 and held.dates().count(("ICBC", day)) == 1
