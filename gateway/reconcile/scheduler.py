"""The nightly reconciliation (日终对账) in `tgw run`: when it runs, for which date, and which gateway runs it.

Issue 6 §7, docs/reconciliation.md ("Scheduling"). Three parts:

* **The decision** (pure, no clock of its own): :func:`next_run` says, given the local time, the configured
  `nightly_at` and time zone and the last check date this process ran, when the next run fires and for which
  check date: the previous calendar day of the local date it fires on (the previous work date). A process that
  starts has run nothing yet: it runs the latest date that is due at once (started after `nightly_at`, that is
  yesterday; started before it, the day before, whose run is normally finished already, so nothing happens),
  unless that date is before the gateway's first day on this database (:func:`first_date`).
  After that, one date after the other, each at `nightly_at` on the following local day; after a long pause
  (a suspended machine) the missed dates are caught up in order, none skipped, none twice.
* **The claims** (store functions, each one transaction): one `recon_schedule` row per bank and check date. The
  first process to insert it runs it (:func:`claim`, `INSERT … ON CONFLICT DO NOTHING`, so exactly one of any
  number of racing processes gets the row); it renews its lease while it runs (:func:`renew`) and records the
  outcome (:func:`finish`, or :func:`fail`, which holds a failed bank back for `retry_after_s` and ends it as
  FAILED after `max_attempts`). A claim whose lease ran out unfinished (its process died, or a failed bank's
  wait is over) is taken over by one process (`UPDATE … WHERE lease_until <= now AND finished_at IS NULL`,
  attempts + 1). A finished row is never run again: not after a restart, not by another process.
* **The scheduler** (Twisted): :class:`NightlyScheduler` sleeps on the hub's clock until the next decision is
  due or a claim's lease runs out, then claims every configured bank's run of the pending dates, calls the
  injected `reconcile(bank, check_date, actor)` for each it won, records the outcome, and emits
  `("reconciliation", {...})` hub events for the dashboard. :func:`start_nightly` / :func:`stop_nightly` are
  what `gateway.app` calls.

Times in the store are naive UTC (as everywhere in the store); the decision works on aware datetimes.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from gateway.config import Config, ReconSettings
from gateway.store.tables import meta, recon_runs, recon_schedule

if TYPE_CHECKING:
    from gateway.dbthread import Database
    from gateway.hub import Hub

log = logging.getLogger("gateway.reconcile.nightly")

ONE_DAY: Final = timedelta(days=1)
#: The outcomes recorded in `recon_schedule.outcome`.
DONE: Final = "DONE"
FAILED: Final = "FAILED"
#: Who the nightly run acts as (the `actor` given to the reconciler, kept with the run).
ACTOR: Final = "nightly"
#: `recon_schedule.claimed_by` holds at most this many characters.
NODE_MAX: Final = 64
#: A recorded detail (the run's summary, an error) is cut to this many characters.
DETAIL_MAX: Final = 4000
#: The `meta` key of the first check date the nightly run reconciles (:func:`first_date`).
FIRST_DATE_META: Final = "nightly_first_date"
#: While a run is under way, the store is asked this often whether it was stored (by whichever process).
STORE_POLL_S: Final = 5.0
#: The scheduler looks again at least this often, so that a changed wall clock is noticed within the hour.
SLEEP_MAX_S: Final = 3600.0

#: The reconciler's side: `reconcile(bank, check_date, actor)` fires with the run's summary once it is stored,
#: and fails on an error or a timeout (gateway.reconcile.link.LinkReconciler.reconcile).
Reconcile = Callable[[str, date, str], "defer.Deferred[dict[str, Any]]"]


# --- the decision (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NextRun:
    """When the next nightly run fires (aware, UTC) and the check date it reconciles."""

    at: datetime
    check_date: date


def fire_time(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant (aware, UTC) at which the local clock of `tz` shows `at` on `day`.

    A wall time that does not exist that day (a daylight-saving gap) is read with the offset in force before the
    gap, i.e. as late as the gap is long (02:30 on a spring-forward night of New York is 03:30 daylight time); a
    wall time that exists twice (the autumn fold) is its first occurrence.
    """
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def latest_due(now: datetime, at: time, tz: ZoneInfo) -> date:
    """The check date of the latest nightly run due at or before `now` (aware): the day before the latest local
    day whose `at` has passed."""
    day = now.astimezone(tz).date()
    while fire_time(day, at, tz) > now:
        day -= ONE_DAY
    return day - ONE_DAY


def next_run(now: datetime, at: time, tz: ZoneInfo, last_done: date | None) -> NextRun:
    """The next nightly run after the check date `last_done` (None: this process has run none yet).

    Returns a run due at `now` (run it at once) when one is owed: on the first call, the latest date due
    (:func:`latest_due`); after that the date after `last_done` once `at` has passed on the local day after it.
    Otherwise the run's future instant and date.

    Raises:
        ValueError: `now` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("next_run needs an aware time, not a naive one")
    if last_done is None:
        return NextRun(now.astimezone(UTC), latest_due(now, at, tz))
    check_date = last_done + ONE_DAY
    return NextRun(max(now.astimezone(UTC), fire_time(check_date + ONE_DAY, at, tz)), check_date)


# --- the claims (store functions, one transaction each) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One bank's claim of one check date, as stored."""

    bank_code: str
    check_date: date
    claimed_by: str
    claimed_at: datetime
    lease_until: datetime
    attempts: int
    finished_at: datetime | None
    outcome: str | None
    detail: str | None


def _insert(conn: Connection) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(recon_schedule)


def _this(bank: str, check_date: date) -> Any:
    c = recon_schedule.c
    return and_(c.bank_code == bank, c.check_date == check_date)


def claim(
    conn: Connection,
    bank: str,
    check_date: date,
    node: str,
    now: datetime,
    lease: timedelta,
    max_attempts: int = 3,
) -> bool:
    """Take the run of `bank` for `check_date` for `node`; True for exactly one of any number of callers.

    The first caller inserts the row (attempt 1). Later callers win only a takeover: the row is unfinished, its
    lease ran out (`lease_until <= now`: its process died, or it failed and waited `retry_after_s`) and fewer
    than `max_attempts` attempts were made; the winner's UPDATE makes it attempt + 1 with a fresh lease. An
    unfinished row whose lease ran out after its last attempt is closed here as FAILED (it would otherwise stay
    open forever), and nobody wins it.

    `now` is naive UTC; the row's lease runs until `now + lease`.
    """
    c = recon_schedule.c
    node = node[:NODE_MAX]
    inserted = conn.execute(
        _insert(conn)
        .values(
            bank_code=bank,
            check_date=check_date,
            claimed_by=node,
            claimed_at=now,
            lease_until=now + lease,
            attempts=1,
        )
        .on_conflict_do_nothing(index_elements=["bank_code", "check_date"])
        .returning(c.attempts)
    )
    if inserted.first() is not None:
        return True
    open_and_expired = and_(_this(bank, check_date), c.finished_at.is_(None), c.lease_until <= now)
    taken = conn.execute(
        update(recon_schedule)
        .where(open_and_expired, c.attempts < max_attempts)
        .values(claimed_by=node, claimed_at=now, lease_until=now + lease, attempts=c.attempts + 1)
    )
    if taken.rowcount == 1:
        return True
    conn.execute(
        update(recon_schedule)
        .where(open_and_expired, c.attempts >= max_attempts, c.outcome.is_(None))
        .values(
            finished_at=now,
            outcome=FAILED,
            detail=literal("the last attempt, by ") + c.claimed_by + literal(", did not finish within its lease"),
        )
    )
    conn.execute(  # the last attempt failed and its row waited out retry_after_s: nothing more to try
        update(recon_schedule)
        .where(open_and_expired, c.attempts >= max_attempts, c.outcome.is_not(None))
        .values(finished_at=now)
    )
    return False


def renew(conn: Connection, bank: str, check_date: date, node: str, now: datetime, lease: timedelta) -> bool:
    """Extend `node`'s lease of a run it is running to `now + lease`; False when the run is no longer its own
    (another process took it over after the lease ran out)."""
    c = recon_schedule.c
    renewed = conn.execute(
        update(recon_schedule)
        .where(_this(bank, check_date), c.claimed_by == node[:NODE_MAX], c.finished_at.is_(None))
        .values(lease_until=now + lease)
    )
    return renewed.rowcount == 1


def finish(conn: Connection, bank: str, check_date: date, node: str, outcome: str, detail: str, now: datetime) -> bool:
    """Record the outcome of `node`'s run (DONE, or FAILED for good); False when the run is not its own."""
    c = recon_schedule.c
    finished = conn.execute(
        update(recon_schedule)
        .where(_this(bank, check_date), c.claimed_by == node[:NODE_MAX], c.finished_at.is_(None))
        .values(finished_at=now, outcome=outcome[:16], detail=detail[:DETAIL_MAX])
    )
    return finished.rowcount == 1


Verdict = Literal["retry", "gave_up", "lost"]


def fail(
    conn: Connection,
    bank: str,
    check_date: date,
    node: str,
    detail: str,
    now: datetime,
    retry_after: timedelta,
    max_attempts: int,
) -> Verdict:
    """Record that `node`'s attempt failed.

    Returns "retry" when attempts remain (the row stays open, FAILED with the error, and its lease is set to
    `now + retry_after`: then any process may take it over, :func:`claim`), "gave_up" when that was the last
    attempt (the row is finished as FAILED), "lost" when the run was not `node`'s any more.
    """
    c = recon_schedule.c
    mine = and_(_this(bank, check_date), c.claimed_by == node[:NODE_MAX], c.finished_at.is_(None))
    last = conn.execute(
        update(recon_schedule)
        .where(mine, c.attempts >= max_attempts)
        .values(finished_at=now, outcome=FAILED, detail=detail[:DETAIL_MAX])
    )
    if last.rowcount == 1:
        return "gave_up"
    again = conn.execute(
        update(recon_schedule)
        .where(mine, c.attempts < max_attempts)
        .values(outcome=FAILED, detail=detail[:DETAIL_MAX], lease_until=now + retry_after)
    )
    return "retry" if again.rowcount == 1 else "lost"


def first_date(conn: Connection, today: date) -> date:
    """The first check date the nightly run reconciles: the local date on which a nightly scheduler first ran on
    this database (recorded then, under `meta` key :data:`FIRST_DATE_META`; `today` is that date if none is).

    A gateway reconciles only days it worked: for a day before it ran, its ledger is empty and a bank's statement
    of that day (another system's payments, or none) has nothing to be compared with. So a new gateway started
    at 10:00 does not ask its banks for yesterday's statement; its first nightly run, at `nightly_at` tomorrow,
    reconciles its first day.
    """
    conn.execute(
        (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(meta)
        .values(key=FIRST_DATE_META, value=today.isoformat())
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return date.fromisoformat(conn.execute(select(meta.c.value).where(meta.c.key == FIRST_DATE_META)).scalar_one())


def stored_run(conn: Connection, bank: str, check_date: date, since: datetime) -> dict[str, Any] | None:
    """The run of `bank` for `check_date` if one finished at or after `since` (naive UTC), by whichever process
    or person ran it: its id, finish time, break count; else None."""
    r = recon_runs.c
    row = conn.execute(
        select(r.id, r.finished_at, r.break_count).where(
            r.bank_code == bank, r.check_date == check_date, r.status == "DONE", r.finished_at >= since
        )
    ).first()
    if row is None:
        return None
    return {
        "run_id": row.id,
        "finished_at": row.finished_at.isoformat(),
        "break_count": row.break_count,
        "found_in_store": True,
    }


def fail_unless_stored(
    conn: Connection,
    bank: str,
    check_date: date,
    node: str,
    detail: str,
    since: datetime,
    now: datetime,
    retry_after: timedelta,
    max_attempts: int,
) -> Verdict | dict[str, Any]:
    """`node`'s attempt since `since` failed, unless the run was stored meanwhile (another process ran it, its
    reconciler heard the statement first): then it is finished as DONE and the run returned; otherwise
    :func:`fail`."""
    run = stored_run(conn, bank, check_date, since)
    if run is not None:
        done = {**run, "note": f"this process's reconciler failed ({detail}); the run was stored all the same"}
        if finish(conn, bank, check_date, node, DONE, _summary(done), now):
            return run
        return "lost"
    return fail(conn, bank, check_date, node, detail, now, retry_after, max_attempts)


def schedule_rows(conn: Connection, check_date: date) -> dict[str, ScheduleRow]:
    """The claims of one check date, by bank."""
    rows = conn.execute(select(recon_schedule).where(recon_schedule.c.check_date == check_date)).mappings()
    return {row["bank_code"]: ScheduleRow(**row) for row in rows}


def recent_rows(conn: Connection, since: date) -> list[ScheduleRow]:
    """The claims of check dates from `since` on, newest date first, then by bank (for the dashboard)."""
    c = recon_schedule.c
    rows = conn.execute(
        select(recon_schedule).where(c.check_date >= since).order_by(c.check_date.desc(), c.bank_code)
    ).mappings()
    return [ScheduleRow(**row) for row in rows]


# --- the scheduler (Twisted) --------------------------------------------------------------------------------------


class SchedulerHost(Protocol):
    """What the scheduler needs of the hub: the configuration, the store thread, its node id, its listeners."""

    @property
    def config(self) -> Config: ...

    @property
    def db(self) -> Database: ...

    @property
    def node_id(self) -> str: ...

    def emit(self, kind: str, data: dict[str, Any]) -> None: ...


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _seconds(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def _summary(result: Mapping[str, Any] | Any) -> str:
    return json.dumps(result, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)[:DETAIL_MAX]


def _error(failure: Failure) -> str:
    return f"{failure.type.__name__}: {failure.getErrorMessage()}"[:DETAIL_MAX]  # type: ignore[union-attr]


class NightlyScheduler:
    """Runs the nightly reconciliation of every configured bank on the hub's clock (module docstring).

    `reconcile(bank, check_date, actor)` is the reconciler (gateway.reconcile.link.LinkReconciler.reconcile in
    `tgw run`); `clock` is the hub's reactor, or a `task.Clock` in tests.
    """

    def __init__(self, hub: SchedulerHost, reconcile: Reconcile, clock: IReactorTime) -> None:
        self.hub = hub
        self.reconcile = reconcile
        self.clock = clock
        self.settings: ReconSettings = hub.config.reconciliation
        self.tz = ZoneInfo(self.settings.timezone)
        self.node = hub.node_id[:NODE_MAX]
        self.banks: tuple[str, ...] = tuple(sorted(hub.config.banks))
        self.lease = timedelta(seconds=self.settings.lease_s)
        self.retry_after = timedelta(seconds=self.settings.retry_after_s)
        #: The latest check date this process has started (None until its first run).
        self.last_fired: date | None = None
        #: The first check date to reconcile (:func:`first_date`), read from the store on the first look.
        self.first_date: date | None = None
        #: Check dates started and not yet finished for every bank (each pass claims what is open of them).
        self.pending: set[date] = set()
        #: The runs this process is running now, by (bank, check date).
        self.running: dict[tuple[str, date], _Job] = {}
        self._timer: IDelayedCall | None = None
        self._busy = False
        self._again = False
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Look at once (on the next turn of the clock), then whenever something is due."""
        if self._started:
            return
        self._started = True
        log.info(
            "nightly reconciliation at %s %s for banks %s (node %s)",
            self.settings.nightly_at.strftime("%H:%M"),
            self.settings.timezone,
            ", ".join(self.banks) or "-",
            self.node,
        )
        self._arm(0.0)

    def stop(self) -> None:
        """Stop looking and renewing. Runs under way are left to finish or fail unrecorded: their leases run
        out and another process (or this one, restarted) takes them over."""
        self._started = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for job in list(self.running.values()):
            self._end(job)

    def state(self) -> dict[str, Any]:
        """What the scheduler is doing, for the dashboard and the logs."""
        upcoming = next_run(self._now(), self.settings.nightly_at, self.tz, self.last_fired)
        return {
            "node": self.node,
            "nightly_at": self.settings.nightly_at.strftime("%H:%M"),
            "timezone": self.settings.timezone,
            "next_at": upcoming.at.isoformat(),
            "next_check_date": upcoming.check_date.isoformat(),
            "pending": sorted(d.isoformat() for d in self.pending),
            "running": sorted(f"{bank} {day.isoformat()}" for bank, day in self.running),
        }

    # --- waking up --------------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return _utc(self.clock.seconds())

    def _arm(self, delay_s: float) -> None:
        """Wake in `delay_s` seconds (or earlier, if already armed earlier)."""
        if not self._started:
            return
        delay_s = max(0.0, min(delay_s, SLEEP_MAX_S))
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.clock.seconds() + delay_s:
                return
            self._timer.cancel()
        self._timer = self.clock.callLater(delay_s, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if not self._started:
            return
        if self._busy:  # a pass is under way (waiting for the store): look again when it is done
            self._again = True
            return
        self._busy = True
        d = defer.ensureDeferred(self._step())
        d.addErrback(self._step_failed)
        d.addCallback(self._stepped)

    def _step_failed(self, failure: Failure) -> float:
        log.error(
            "nightly reconciliation: a pass failed (looking again in %gs): %s",
            self.settings.retry_after_s,
            _error(failure),
        )
        return self.clock.seconds() + self.settings.retry_after_s

    def _stepped(self, recheck_at: float | None) -> None:
        self._busy = False
        if not self._started:
            return
        if self._again:
            self._again = False
            self._arm(0.0)
            return
        now = self.clock.seconds()
        wake_at = next_run(_utc(now), self.settings.nightly_at, self.tz, self.last_fired).at.timestamp()
        if wake_at <= now:  # due, yet the step could not start it (the store is away): not in a busy loop
            wake_at = now + self.settings.retry_after_s
        if recheck_at is not None:
            wake_at = min(wake_at, recheck_at)
        self._arm(wake_at - now)

    async def _step(self) -> float | None:
        """Start what is due, then one pass over every pending date; returns when to look again for them."""
        now = self._now()
        if self.first_date is None:
            self.first_date = await self.hub.db.run(first_date, now.astimezone(self.tz).date())
        while True:
            upcoming = next_run(now, self.settings.nightly_at, self.tz, self.last_fired)
            if upcoming.at > now:
                break
            self.last_fired = upcoming.check_date
            if upcoming.check_date < self.first_date:
                log.info(
                    "nightly reconciliation: %s is before this gateway's first day (%s), not reconciled",
                    upcoming.check_date,
                    self.first_date,
                )
                continue
            self.pending.add(upcoming.check_date)
            log.info("nightly reconciliation of %s is due (banks %s)", upcoming.check_date, ", ".join(self.banks))
            self.hub.emit(
                "reconciliation",
                {"kind": "nightly_due", "check_date": upcoming.check_date.isoformat(), "banks": list(self.banks)},
            )
        recheck: float | None = None
        for day in sorted(self.pending):
            at = await self._pass(day)
            if at is not None:
                recheck = at if recheck is None else min(recheck, at)
        return recheck

    async def _pass(self, day: date) -> float | None:
        """Claim what is open of `day`'s runs and start those won; returns when to look at `day` again (None:
        finished for every bank, or only waiting for runs of this process, which wake the scheduler when done)."""
        now = _naive(self._now())
        for bank in self.banks:
            if (bank, day) in self.running or not self._started:
                continue
            try:
                won = await self.hub.db.run(claim, bank, day, self.node, now, self.lease, self.settings.max_attempts)
            except Exception as exc:  # the store is away: the next look tries again
                log.error("nightly reconciliation: cannot claim %s %s: %s", bank, day, exc)
                continue
            if won:
                self._launch(bank, day)
            else:
                log.debug("nightly reconciliation of %s %s: taken or finished elsewhere", bank, day)
        rows = await self.hub.db.run(schedule_rows, day)
        waits = []
        for bank in self.banks:
            row = rows.get(bank)
            if row is None:  # the claim failed (store unavailable)
                waits.append(_seconds(now) + self.settings.retry_after_s)
            elif row.finished_at is None and (bank, day) not in self.running:
                waits.append(_seconds(row.lease_until))
        if all(bank in rows and rows[bank].finished_at is not None for bank in self.banks):
            self.pending.discard(day)
            outcomes = {bank: rows[bank].outcome for bank in self.banks}
            log.info("nightly reconciliation of %s finished: %s", day, outcomes)
            self.hub.emit(
                "reconciliation", {"kind": "nightly_finished", "check_date": day.isoformat(), "outcomes": outcomes}
            )
            return None
        return min(waits) if waits else None

    # --- one bank's run -----------------------------------------------------------------------------------------

    def _launch(self, bank: str, day: date) -> None:
        job = _Job(bank, day, _naive(self._now()))
        self.running[(bank, day)] = job
        log.info("nightly reconciliation of %s %s: started by %s", bank, day, self.node)
        self.hub.emit(
            "reconciliation",
            {"kind": "nightly_started", "bank": bank, "check_date": day.isoformat(), "node": self.node},
        )
        job.renewal = self.clock.callLater(self.settings.lease_s / 3, self._renew, job)
        job.poll = self.clock.callLater(STORE_POLL_S, self._poll, job)
        d: defer.Deferred[Any] = defer.maybeDeferred(self.reconcile, bank, day, ACTOR)
        d.addCallbacks(self._settle, self._settle_failed, callbackArgs=(job,), errbackArgs=(job,))

    def _renew(self, job: _Job) -> None:
        """Extend the lease of a run under way (every third of a lease)."""
        job.renewal = None
        if job.settled or not self._started:
            return
        d = self.hub.db.run(renew, job.bank, job.day, self.node, _naive(self._now()), self.lease)

        def renewed(kept: bool) -> None:
            if not kept:
                log.error(
                    "nightly reconciliation of %s %s: the claim was taken over by another process", job.bank, job.day
                )
            elif not job.settled and self._started:
                job.renewal = self.clock.callLater(self.settings.lease_s / 3, self._renew, job)

        def unrenewed(failure: Failure) -> None:  # the store is away: try again a third of a lease later
            log.error("nightly reconciliation of %s %s: lease not renewed: %s", job.bank, job.day, _error(failure))
            if not job.settled and self._started:
                job.renewal = self.clock.callLater(self.settings.lease_s / 3, self._renew, job)

        d.addCallbacks(renewed, unrenewed)

    def _poll(self, job: _Job) -> None:
        """Look in the store for the run: the reconciler of another process may have run it (the bank's
        statement reached the process the bank is connected to), which this process's reconciler would only
        learn from its timeout."""
        job.poll = None
        if job.settled or not self._started:
            return
        d = self.hub.db.run(stored_run, job.bank, job.day, job.since)

        def looked(run: dict[str, Any] | None) -> None:
            if run is not None:
                self._settle(run, job)
            elif not job.settled and self._started:
                job.poll = self.clock.callLater(STORE_POLL_S, self._poll, job)

        def failed(failure: Failure) -> None:
            if not job.settled and self._started:
                job.poll = self.clock.callLater(STORE_POLL_S, self._poll, job)

        d.addCallbacks(looked, failed)

    def _end(self, job: _Job) -> bool:
        """Settle `job` once (the reconciler's answer or the run found in the store, whichever comes first);
        False when it was settled already or the scheduler stopped (nothing more is recorded then)."""
        if job.settled:
            return False
        job.settled = True
        for call in (job.renewal, job.poll):
            if call is not None and call.active():
                call.cancel()
        if not self._started:
            self.running.pop((job.bank, job.day), None)
            return False
        return True

    def _ended(self, _: Any, job: _Job) -> None:
        self.running.pop((job.bank, job.day), None)
        self._arm(0.0)

    def _settle(self, result: Any, job: _Job) -> None:
        if not self._end(job):
            return
        bank, day = job.bank, job.day
        log.info("nightly reconciliation of %s %s: done", bank, day)
        d = self.hub.db.run(finish, bank, day, self.node, DONE, _summary(result), _naive(self._now()))

        def recorded(mine: bool) -> None:
            if not mine:
                log.error("nightly reconciliation of %s %s: done, but the claim was another's by then", bank, day)
            self.hub.emit(
                "reconciliation",
                {
                    "kind": "nightly_done",
                    "bank": bank,
                    "check_date": day.isoformat(),
                    "node": self.node,
                    "result": result if isinstance(result, dict) else {},
                },
            )

        d.addCallback(recorded)
        d.addErrback(lambda f: log.error("nightly reconciliation of %s %s: not recorded: %s", bank, day, _error(f)))
        d.addBoth(self._ended, job)

    def _settle_failed(self, failure: Failure, job: _Job) -> None:
        if not self._end(job):
            return
        bank, day = job.bank, job.day
        detail = _error(failure)
        d: defer.Deferred[Verdict | dict[str, Any]] = self.hub.db.run(
            fail_unless_stored,
            bank,
            day,
            self.node,
            detail,
            job.since,
            _naive(self._now()),
            self.retry_after,
            self.settings.max_attempts,
        )

        def recorded(verdict: Verdict | dict[str, Any]) -> None:
            if isinstance(verdict, dict):  # another process ran it meanwhile
                log.info(
                    "nightly reconciliation of %s %s: done (run %s, found in the store)",
                    bank,
                    day,
                    verdict.get("run_id"),
                )
                self.hub.emit(
                    "reconciliation",
                    {
                        "kind": "nightly_done",
                        "bank": bank,
                        "check_date": day.isoformat(),
                        "node": self.node,
                        "result": verdict,
                    },
                )
                return
            if verdict == "retry":
                log.warning(
                    "nightly reconciliation of %s %s failed (%s); trying again in %gs",
                    bank,
                    day,
                    detail,
                    self.settings.retry_after_s,
                )
            else:
                log.error(
                    "nightly reconciliation of %s %s failed%s: %s",
                    bank,
                    day,
                    " for good" if verdict == "gave_up" else " (the claim was another process's by then)",
                    detail,
                )
            self.hub.emit(
                "reconciliation",
                {
                    "kind": "nightly_failed",
                    "bank": bank,
                    "check_date": day.isoformat(),
                    "node": self.node,
                    "error": detail,
                    "retry_in_s": self.settings.retry_after_s if verdict == "retry" else None,
                },
            )

        d.addCallback(recorded)
        d.addErrback(lambda f: log.error("nightly reconciliation of %s %s: not recorded: %s", bank, day, _error(f)))
        d.addBoth(self._ended, job)


@dataclass(eq=False)
class _Job:
    """One bank's run of one date under way in this process."""

    bank: str
    day: date
    since: datetime  # naive UTC: when it was claimed (a run stored after this is this attempt's)
    settled: bool = False
    renewal: IDelayedCall | None = None
    poll: IDelayedCall | None = None


# --- in `tgw run` -------------------------------------------------------------------------------------------------

_SCHEDULERS: weakref.WeakKeyDictionary[Any, NightlyScheduler] = weakref.WeakKeyDictionary()


def start_nightly(hub: Hub, reconcile: Reconcile | None = None) -> NightlyScheduler | None:
    """Start the nightly run of a hub (`gateway.app.start` calls this after the hub started), with `reconcile`
    or the hub's link reconciler (`hub.link_reconciler.reconcile`). None when `[reconciliation]
    nightly_enabled` is false or there is no reconciler."""
    if not hub.config.reconciliation.nightly_enabled:
        log.info("nightly reconciliation is off ([reconciliation] nightly_enabled = false)")
        return None
    if reconcile is None:
        reconciler = getattr(hub, "link_reconciler", None)
        if reconciler is None:
            log.warning("nightly reconciliation not scheduled: this gateway has no link reconciler")
            return None
        reconcile = reconciler.reconcile
    scheduler = _SCHEDULERS.get(hub)
    if scheduler is None:
        scheduler = _SCHEDULERS[hub] = NightlyScheduler(hub, reconcile, hub.clock)
        scheduler.start()
    return scheduler


def stop_nightly(hub: Hub) -> None:
    """Stop a hub's nightly run, if it has one (`Running.stop` calls this)."""
    scheduler = _SCHEDULERS.pop(hub, None)
    if scheduler is not None:
        scheduler.stop()


def nightly_of(hub: Any) -> NightlyScheduler | None:
    """The hub's running scheduler, or None."""
    return _SCHEDULERS.get(hub)
