"""The card service on the reactor: the operations the API and the demo call, and the deadline watch.

Each operation runs one store transaction on the hub's store thread (:meth:`gateway.hub.Hub.run_in_store`),
then does what follows on the reactor: the hub's listeners hear the events, and the banks' dispatchers are
kicked when repayment vouchers were queued. Time is the hub's injected clock: `hub.now()` for timestamps and
`hub.work_date()` (the instance's time zone) for deadlines and voucher dates.

The deadline watch (:class:`CardWatch`) looks every `[cards] check_interval_s`: it settles repayments whose
voucher ended without a receipt that could (:func:`gateway.cards.service.settle_stranded`), logs each record
that became due or overdue once (WARNING), emits a `cards_due` event when the numbers change, and keeps the
latest metric-ready counts in :attr:`CardWatch.counts` (:func:`gateway.cards.queries.counts`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection
from twisted.internet import defer
from twisted.internet.task import LoopingCall

from gateway.cards import queries, service
from gateway.cards.provider import DashboardCards
from gateway.cards.service import ArchiveReader, Ref, RepayResult, RepaySettings
from gateway.config import Config

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger("gateway.cards")

#: Records logged one by one per check; beyond that, one line says how many more.
LOG_LINES_MAX: Final = 20


def archive_reader(hub: Hub) -> ArchiveReader:
    """Reads an archived frame body of a bank back with the bank's dialect and pinned certificate."""

    def read(bank: str, raw: bytes) -> Any:
        return hub.dialects[bank].decode(raw, hub.verifiers[bank]).message

    return read


def repay_settings(config: Config) -> RepaySettings:
    """The instance's side of a repayment run (node, division, bank names, voucher size)."""
    return RepaySettings(
        node=config.node,
        adm_div_code=service.adm_div_code_of(config.cards.adm_div_code, config.node),
        banks={code: bank.name for code, bank in config.banks.items()},
        max_details=config.cards.max_details,
    )


def approve(hub: Hub, agency: str, refs: Sequence[Ref], actor: str) -> defer.Deferred[list[Ref]]:
    """Approve records for repayment (all or none); fails with ValidationError naming every problem."""
    adm_div_code = service.adm_div_code_of(hub.config.cards.adm_div_code, hub.config.node)
    d = hub.run_in_store(service.approve, agency, list(refs), actor, hub.now(), hub.work_date(), adm_div_code)
    return d.addCallback(_emit_reviewed, hub, agency, "APPROVED")


def reject(hub: Hub, agency: str, refs: Sequence[Ref], reason: str, actor: str) -> defer.Deferred[list[Ref]]:
    """Reject records with a reason (all or none); fails with ValidationError naming every problem."""
    d = hub.run_in_store(service.reject, agency, list(refs), reason, actor, hub.now())
    return d.addCallback(_emit_reviewed, hub, agency, "REJECTED")


def _emit_reviewed(refs: list[Ref], hub: Hub, agency: str, state: str) -> list[Ref]:
    hub.emit("cards", {"kind": "reviewed", "agency": agency, "state": state, "records": len(refs)})
    return refs


def repay(hub: Hub, actor: str, *, agency: str | None = None, bank: str | None = None) -> defer.Deferred[RepayResult]:
    """Make and queue the repayment vouchers of approved records, then wake the banks' dispatchers."""
    d: defer.Deferred[RepayResult] = hub.run_in_store(
        _repay, repay_settings(hub.config), archive_reader(hub), actor, hub.now(), hub.work_date(), agency, bank
    )

    def queued(result: RepayResult) -> RepayResult:
        for kind, data in result.events:
            hub.emit(kind, data)
        for code in sorted({v.bank for v in result.vouchers}):
            hub.kick(code)
        return result

    return d.addCallback(queued)


def _repay(
    conn: Connection,
    settings: RepaySettings,
    reader: ArchiveReader,
    actor: str,
    now: datetime,
    today: date,
    agency: str | None,
    bank: str | None,
) -> RepayResult:
    return service.repay(conn, settings, reader, actor, now, today, agency=agency, bank=bank)


# --- the deadline watch -----------------------------------------------------------------------------------------


class CardWatch:
    """Raises records approaching or past their repayment deadline; settles repayments stranded without receipt."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.config.cards
        #: the latest metric-ready counts (:func:`gateway.cards.queries.counts`); empty before the first check
        self.counts: dict[str, int] = {}
        self._raised: dict[int, str] = {}  # record id → "due" / "overdue", as last logged
        self._loop = LoopingCall(self.check)
        self._loop.clock = hub.clock

    def start(self) -> None:
        self._loop.start(self.settings.check_interval_s, now=True).addErrback(
            lambda f: log.error("card deadline watch stopped: %s", f.getTraceback())
        )

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def check(self) -> defer.Deferred[dict[str, int]]:
        """One look at the deadlines (and stranded repayments); fires with the counts."""
        today = self.hub.work_date()
        d: defer.Deferred[tuple[service.Events, list[Any], dict[str, int]]] = self.hub.run_in_store(
            _watch_step, self.hub.now(), today, self.settings.due_lead_days
        )
        result: defer.Deferred[dict[str, int]] = d.addCallback(self._checked, today)
        result.addErrback(self._failed)
        return result

    def _failed(self, failure: Any) -> dict[str, int]:
        log.error("card deadline check failed: %s", failure.getErrorMessage())
        return self.counts

    def _checked(self, step: tuple[service.Events, list[Any], dict[str, int]], today: date) -> dict[str, int]:
        events, deadlines, counts = step
        for kind, data in events:
            self.hub.emit(kind, data)
        raised = {record_id: status for record_id, status, _ in deadlines}
        newly = [(status, entry) for record_id, status, entry in deadlines if self._raised.get(record_id) != status]
        for status, entry in newly[:LOG_LINES_MAX]:
            log.warning(
                "official card spending %s %s: %s yuan, card %s (%s), agency %s, deadline %s (%+d days), %s",
                entry["ref"],
                "is OVERDUE" if status == "overdue" else "is due",
                entry["amount"],
                entry["card"],
                entry["card_holder"],
                entry["agency_code"],
                entry["limit_date"],
                entry["days_left"],
                entry["state"],
            )
        if len(newly) > LOG_LINES_MAX:
            log.warning(
                "… and %d more official card spending records became due or overdue", len(newly) - LOG_LINES_MAX
            )
        self._raised = raised
        keys = ("due", "due_fen", "overdue", "overdue_fen")
        if {k: counts.get(k) for k in keys} != {k: self.counts.get(k) for k in keys}:
            self.hub.emit("cards_due", {"today": today.isoformat(), **{k: counts[k] for k in keys}})
        self.counts = counts
        return counts


def _watch_step(
    conn: Connection, now: datetime, today: date, lead_days: int
) -> tuple[service.Events, list[Any], dict[str, int]]:
    events = service.settle_stranded(conn, now)
    return events, queries.open_deadlines(conn, today, lead_days), queries.counts(conn, today, lead_days)


_WATCHES: weakref.WeakKeyDictionary[Any, CardWatch] = weakref.WeakKeyDictionary()


def start_watch(hub: Hub) -> CardWatch:
    """Start the deadline watch of a hub (`gateway.app.start` calls this; one per hub), and attach the card
    provider the dashboard reads (`hub.cards`)."""
    watch = _WATCHES.get(hub)
    if watch is None:
        watch = _WATCHES[hub] = CardWatch(hub)
        watch.start()
        # the operators' dashboard finds its card provider under this attribute (gateway.dashboard.providers)
        adm_div_code = service.adm_div_code_of(hub.config.cards.adm_div_code, hub.config.node)
        setattr(hub, "cards", DashboardCards(adm_div_code, hub.work_date))  # noqa: B010
    return watch


def stop_watch(hub: Hub) -> None:
    """Stop a hub's deadline watch, if it has one (`Running.stop` calls this)."""
    watch = _WATCHES.pop(hub, None)
    if watch is not None:
        watch.stop()


def watch_of(hub: Hub) -> CardWatch | None:
    """The hub's running deadline watch (for metrics), or None."""
    return _WATCHES.get(hub)
