"""The card service as the operators' dashboard sees it (`gateway.dashboard.providers.CardsProvider`).

Attached to the hub as `hub.cards` by :func:`gateway.cards.runtime.start_watch`. Every method runs on the store
thread with the caller's connection, like every store function; card numbers are only ever masked here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from gateway.cards import service
from gateway.cards.machine import OPEN, State
from gateway.store.tables import card_spending, quota_notices


class DashboardCards:
    """Official-card spending and repayments for the dashboard's pages and overview."""

    def __init__(self, adm_div_code: str, today: Callable[[], date]) -> None:
        self.adm_div_code = adm_div_code
        self.today = today

    def spending_by_agency(self, conn: Connection, since: date, until: date) -> list[dict[str, Any]]:
        """Spending per agency with transaction dates in `since`..`until` (inclusive), largest first."""
        c = card_spending.c
        rows = conn.execute(
            select(c.agency_code, func.count(), func.sum(c.amount_fen))
            .where(c.txn_date >= since, c.txn_date <= until)
            .group_by(c.agency_code)
            .order_by(func.sum(c.amount_fen).desc())
        ).all()
        names = _agency_names(conn)
        return [
            {"agency_code": agency, "agency_name": names.get(agency, agency), "count": int(n), "amount_fen": int(fen)}
            for agency, n, fen in rows
        ]

    def repayments(self, conn: Connection, *, due_before: date | None, overdue_on: date | None) -> list[dict[str, Any]]:
        """Records awaiting approval or repayment (not reimbursed yet), soonest deadline first."""
        c = card_spending.c
        query = select(card_spending).where(c.state.in_(sorted(OPEN)))
        if due_before is not None:
            query = query.where(c.limit_date <= due_before)
        if overdue_on is not None:
            query = query.where(c.limit_date < overdue_on)
        rows = conn.execute(query.order_by(c.limit_date, c.id).limit(1000)).mappings()
        return [
            {
                "id": r["id"],
                "ref": f"{r['bank_code']}:{r['spend_id']}",
                "card_no_masked": r["card_masked"],
                "holder": r["card_holder"],
                "agency_code": r["agency_code"],
                "amount_fen": r["amount_fen"],
                "due_date": r["limit_date"].isoformat(),
                "state": r["state"],
                "reason": r["reason"],
            }
            for r in rows
        ]

    def decide(self, conn: Connection, repayment_id: int, approve: bool, actor: str, reason: str, now: Any) -> str:
        """Approve (holding quota) or reject one record on its agency's behalf; returns its new state.

        Raises:
            ValidationError: unknown record, reviewed already, beyond the quota, or a rejection without reason.
        """
        row = conn.execute(select(card_spending).where(card_spending.c.id == repayment_id)).mappings().first()
        ref = service.Ref(row["bank_code"], row["spend_id"]) if row is not None else service.Ref("?", str(repayment_id))
        agency = row["agency_code"] if row is not None else ""
        at = now if isinstance(now, datetime) else datetime.fromisoformat(str(now))
        if approve:
            service.approve(conn, agency, [ref], actor, at, self.today(), self.adm_div_code)
            return State.APPROVED.value
        service.reject(conn, agency, [ref], reason, actor, at)
        return State.REJECTED.value


def _agency_names(conn: Connection) -> dict[str, str]:
    """Agency code → name, from the quota notices (the only place the gateway learns agency names)."""
    names: dict[str, str] = {}
    for document in conn.execute(select(quota_notices.c.document).order_by(quota_notices.c.id)).scalars():
        for line in json.loads(document).get("DetailList", []):
            if isinstance(line, dict) and "AgencyCode" in line and "AgencyName" in line:
                names[str(line["AgencyCode"])] = str(line["AgencyName"])
    return names
