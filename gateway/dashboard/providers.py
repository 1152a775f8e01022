"""The services the dashboard shows but does not own: official cards and reconciliation (not built yet).

The card service (`gateway/cards/`) and the nightly reconciliation (`reconciliation/` with its gateway port) are
being written beside the dashboard. Their pages and overview tiles are built against the interfaces below; until
a provider is attached to the hub (`hub.cards = …`, `hub.reconciliation = …`), each shows a clear "not yet
available" state. To plug one in, implement the protocol (functions take a connection on the store thread, like
every store function) and set the attribute where the hub is built (`gateway.app.start`).

Shapes (plain dictionaries, amounts in fen, dates ISO text):

- card spending: ``{"agency_code", "agency_name", "count", "amount_fen"}``
- card repayment: ``{"id", "card_no_masked", "holder", "agency_code", "amount_fen", "due_date", "state"}``
- reconciliation run: ``{"id", "bank", "check_date", "state", "matched", "breaks", "open_breaks", "counts",
  "ledger_count", "ledger_fen", "statement_count", "statement_fen", "result_sent", "started_at", "finished_at"}``
- break: ``{"id", "run_id", "bank", "check_date", "kind", "voucher_key", "bank_serial", "ledger_fen", "bank_fen",
  "difference_fen", "age_days", "state", "assigned_to", "resolution", "resolution_state", "proposed_by",
  "approved_by"}`` (`approved_by`: the second operator who decided, approved or rejected)
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.engine import Connection


@runtime_checkable
class CardsProvider(Protocol):
    """What the official-card pages need from the card service."""

    def spending_by_agency(self, conn: Connection, since: date, until: date) -> list[dict[str, Any]]: ...

    def repayments(self, conn: Connection, *, due_before: date | None, overdue_on: date | None) -> list[dict[str, Any]]:
        """Repayments awaiting approval or execution; `overdue_on` selects those past their deadline on that day."""
        ...

    def decide(self, conn: Connection, repayment_id: int, approve: bool, actor: str, reason: str, now: Any) -> str:
        """Approve or reject one repayment (approver); returns its new state."""
        ...


@runtime_checkable
class ReconciliationProvider(Protocol):
    """What the reconciliation pages need from the nightly run's port (`gateway.reconcile.provider`).

    Workflow methods raise :class:`gateway.reconcile.resolution.Refused` with a message for the operator when a
    step is not allowed (unknown break, wrong state, the proposer approving their own resolution, …); the pages
    show that message and change nothing.
    """

    def runs(self, conn: Connection, *, check_date: date | None, bank: str | None) -> list[dict[str, Any]]: ...

    def latest(self, conn: Connection) -> list[dict[str, Any]]:
        """The latest run of every bank (the overview's "last night's reconciliation"), in run shape."""
        ...

    def breaks(
        self,
        conn: Connection,
        run_id: int | None,
        *,
        kind: str | None,
        state: str | None,
        bank: str | None = None,
        assigned_to: str | None = None,
    ) -> list[dict[str, Any]]:
        """Breaks of one run (or of every run with `run_id` None), oldest first, filtered."""
        ...

    def break_detail(self, conn: Connection, break_id: int) -> dict[str, Any] | None:
        """One break in break shape plus `"ledger"`, `"bank"` (the two sides, or None), `"detail"`, `"resolution"`,
        `"resolution_state"`, `"note"` and `"events"` (``[{"at", "actor", "event", "detail"}]``, oldest first)."""
        ...

    def report_html(self, conn: Connection, run_id: int) -> str:
        """The run's HTML report (already escaped by the report writer)."""
        ...

    def reasons(self) -> list[dict[str, Any]]:
        """The reason codes: ``{"code", "zh", "en", "needs_approval"}``."""
        ...

    def assign(self, conn: Connection, break_id: int, assignee: str, actor: str, now: Any) -> None: ...

    def comment(self, conn: Connection, break_id: int, text: str, actor: str, now: Any) -> None: ...

    def propose(self, conn: Connection, break_id: int, resolution: str, note: str, actor: str, now: Any) -> str:
        """Resolve with a reason code: returns "RESOLVED" (applied at once) or "PROPOSED" (awaits approval)."""
        ...

    def approve(self, conn: Connection, break_id: int, actor: str, now: Any) -> None:
        """Second pair of eyes: must refuse when `actor` proposed the resolution."""
        ...

    def reject(self, conn: Connection, break_id: int, reason: str, actor: str, now: Any) -> None:
        """The second operator turns the proposal down; the break stays open."""
        ...


def cards_of(hub: Any) -> CardsProvider | None:
    """The hub's card service, if one is attached and has the expected shape."""
    found = getattr(hub, "cards", None)
    return found if isinstance(found, CardsProvider) else None


def reconciliation_of(hub: Any) -> ReconciliationProvider | None:
    """The hub's reconciliation port, if one is attached and has the expected shape."""
    found = getattr(hub, "reconciliation", None)
    return found if isinstance(found, ReconciliationProvider) else None
