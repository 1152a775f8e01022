"""The official-card and reconciliation pages, over :mod:`gateway.dashboard.providers`.

Until the card service and the reconciliation port are attached to the hub, each page says so plainly. With a
provider attached, they list what the issue asks for: card spending by agency, due and overdue repayments with
approve/reject (approver); reconciliation runs by date and bank, their breaks with filters, the HTML report, and
the resolution workflow with four-eyes approval (operator proposes, a different approver approves): the latter
live in :mod:`gateway.dashboard.reconciliation`, re-exported here where the dashboard mounts its pages.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from gateway.auth.accounts import SessionInfo
from gateway.auth.roles import Permission
from gateway.dashboard import providers
from gateway.dashboard.html import Html, L, h, message_box, table, yuan
from gateway.dashboard.reconciliation import Reconciliation as Reconciliation
from gateway.dashboard.server import Page, Request, arg, redirect, send


def _not_yet(what_zh: str, what_en: str, interface: str) -> Html:
    return h(
        '<div id="not-available">{}<p>{}</p></div>',
        message_box("info", L(f"{what_zh}尚未接入", f"{what_en} is not yet available")),
        h(
            "{} <code>{}</code>",
            L("接入后此处显示相关数据；接口约定见", "Once attached, this page shows it; the expected interface is"),
            interface,
        ),
    )


def _day(text: str, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        return default


class Cards(Page):
    """`/cards`: spending by agency, repayments due and overdue, approve or reject (approver)."""

    title = ("公务卡", "Official cards")
    active = "/cards"

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        cards = providers.cards_of(self.dash.hub)
        if cards is None:
            body = _not_yet("公务卡服务", "The official-card service", "gateway.dashboard.providers.CardsProvider")
            send(request, 200, self.page(session, body))
            return
        assert session is not None
        today = datetime.fromtimestamp(self.dash.hub.clock.seconds(), self.dash.tz).date()
        since = _day(arg(request, "since"), today.replace(day=1))
        spending = await self.dash.store(lambda conn: cards.spending_by_agency(conn, since, today))
        due = await self.dash.store(
            lambda conn: cards.repayments(conn, due_before=today + timedelta(days=7), overdue_on=None)
        )
        overdue = await self.dash.store(lambda conn: cards.repayments(conn, due_before=None, overdue_on=today))

        def decide(r: dict[str, Any]) -> Html:
            return h(
                '<form method="post" action="/cards/{i}/decide" class="inline">'
                '<input type="hidden" name="_csrf" value="{c}"><button name="decision" value="approve">{a}</button>'
                '<button name="decision" value="reject" class="danger">{r}</button>'
                "</form>",
                i=r["id"],
                c=session.csrf_token,
                a=L("批准", "Approve"),
                r=L("拒绝", "Reject"),
            )

        heads = [
            L("卡号", "Card"),
            L("持卡人", "Holder"),
            L("单位", "Agency"),
            L("金额", "Amount"),
            L("期限", "Due"),
            L("状态", "State"),
            "",
        ]

        def rows(items: list[dict[str, Any]]) -> list[list[object]]:
            return [
                [
                    r["card_no_masked"],
                    r["holder"],
                    r["agency_code"],
                    yuan(r["amount_fen"]),
                    r["due_date"],
                    r["state"],
                    decide(r),
                ]
                for r in items
            ]

        body = h(
            '<section class="card wide"><h2>{}</h2>{}</section><section class="card wide"><h2>{}</h2>{}</section>'
            '<section class="card wide"><h2>{}</h2>{}</section>',
            L("按单位消费", "Spending by agency"),
            table(
                [L("单位", "Agency"), L("笔数", "Count"), L("金额", "Amount")],
                [[f"{s['agency_name']} ({s['agency_code']})", s["count"], yuan(s["amount_fen"])] for s in spending],
                empty=L("无消费", "No spending"),
            ),
            L("七日内到期", "Due within 7 days"),
            table(heads, rows(due), empty=L("无", "None")),
            L("已逾期", "Overdue"),
            table(heads, rows(overdue), empty=L("无", "None")),
        )
        send(request, 200, self.page(session, body))

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        assert session is not None
        cards = providers.cards_of(self.dash.hub)
        parts = [p.decode() for p in request.postpath]
        if cards is None or len(parts) != 2 or not parts[0].isdigit() or parts[1] != "decide":
            send(request, 404, self.message_page(session, "error", L("没有这个操作", "No such action")))
            return
        if not await self.require(request, session, Permission.CARD_DECIDE, "card.decide", parts[0]):
            return
        approve = arg(request, "decision") == "approve"
        state = await self.dash.store(
            lambda conn: cards.decide(
                conn, int(parts[0]), approve, session.operator.actor, arg(request, "reason"), self.dash.now()
            )
        )
        await self.dash.audit(
            request, session.operator.actor, "card.decide", "ok", parts[0], {"approve": approve, "state": state}
        )
        redirect(request, "/cards")
