"""Transactions: the searchable voucher list, one voucher's page (timeline, messages, signed XML) and its actions.

Actions, each a POST with the session's CSRF token, checked against the role table and audited:

| path | permission | what |
|---|---|---|
| `/vouchers/KEY/cancel` | `voucher.cancel` (operator) | withdraw before sending (`service.cancel`) |
| `/vouchers/KEY/resend` | `voucher.resend` (operator) | to a reconnected bank, same MsgId (`operator_actions.resend`) |
| `/vouchers/KEY/resolve` | `voucher.resolve` (approver) | settle a voucher in doubt with the bank's status |

Every action form is shown to everyone signed in, marked with the role it needs: the server decides, and a refusal
is an audited 403 page, not a missing button.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlencode

from gateway.auth.accounts import SessionInfo
from gateway.auth.roles import Permission
from gateway.dashboard.html import (
    STATE_ORDER,
    STATE_ZH,
    VT_ZH,
    Html,
    L,
    h,
    join,
    local,
    message_box,
    state_badge,
    table,
    yuan,
)
from gateway.dashboard.server import Page, Request, arg, pager_links, quoted, redirect, send
from gateway.payments import operator_actions, queries, service
from gateway.store.tables import archive, vouchers
from protocols.messages import VoucherKey

PAGE_SIZE: Final = 50
XML_SHOWN_BYTES_MAX: Final = 2 * 1024 * 1024


def _fen(text: str) -> int | None:
    """Yuan as typed ("1,234.5") to fen; None if empty or not a number."""
    text = text.replace(",", "").replace("¥", "").strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return int((value * 100).to_integral_value())


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


class Transactions(Page):
    """`/transactions`: search and filter, newest first, paged."""

    title = ("交易查询", "Transactions")
    active = "/transactions"
    FIELDS: Final = ("voucher_no", "agency", "payee", "bank", "state", "date_from", "date_to", "min_yuan", "max_yuan")

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        params = {name: arg(request, name) for name in self.FIELDS}
        try:
            page_no = max(1, int(arg(request, "page", "1")))
        except ValueError:
            page_no = 1
        f = queries.VoucherFilter(
            state=params["state"] or None,
            bank=params["bank"] or None,
            agency=params["agency"] or None,
            voucher_no=params["voucher_no"] or None,
            payee=params["payee"] or None,
            min_fen=_fen(params["min_yuan"]),
            max_fen=_fen(params["max_yuan"]),
            date_from=_date(params["date_from"]),
            date_to=_date(params["date_to"]),
            limit=PAGE_SIZE,
            offset=(page_no - 1) * PAGE_SIZE,
        )
        found = await self.dash.store(queries.list_vouchers, f)
        banks = list(self.dash.hub.config.banks)

        def field(name: str, zh: str, en: str, kind: str = "text") -> Html:
            return h(
                '<label>{}<input name="{}" id="f-{}" type="{}" value="{}"></label>',
                L(zh, en),
                name,
                name,
                kind,
                params[name],
            )

        def options(values: list[tuple[str, str]], chosen: str) -> Html:
            return join(
                h('<option value="{}"{}>{}</option>', v, Html(" selected") if v == chosen else Html(""), label)
                for v, label in values
            )

        form = h(
            '<form class="filters" method="get" action="/transactions" id="search">'
            "{}{}{}"
            '<label>{}<select name="bank" id="f-bank">{}</select></label>'
            '<label>{}<select name="state" id="f-state">{}</select></label>'
            "{}{}{}{}"
            '<button type="submit" id="search-button">{}</button> <a href="/transactions">{}</a></form>',
            field("voucher_no", "凭证号", "Voucher no."),
            field("agency", "预算单位代码", "Agency code"),
            field("payee", "收款人", "Payee"),
            L("银行", "Bank"),
            options([("", "全部 all"), *((b, b) for b in banks)], params["bank"]),
            L("状态", "State"),
            options([("", "全部 all"), *((s, f"{STATE_ZH[s]} {s}") for s in STATE_ORDER)], params["state"]),
            field("date_from", "起始日期", "From", "date"),
            field("date_to", "截止日期", "To", "date"),
            field("min_yuan", "最低金额(元)", "Min ¥"),
            field("max_yuan", "最高金额(元)", "Max ¥"),
            L("查询", "Search"),
            L("清除", "Clear"),
        )
        rows = [
            [
                h('<a class="vlink" href="/vouchers/{}">{}</a>', quoted(v["key"]), v["voucher_no"]),
                h("{} {}", VT_ZH.get(v["vt_code"], ""), v["vt_code"]),
                v["bank"],
                h("{}<br><small>{}</small>", v["agency_name"], v["agency_code"]),
                h("{}<br><small>{}</small>", v["payee_acct_name"], v["payee_acct_no"]),
                h('<span class="amount">{}</span>', yuan(v["amount_fen"])),
                state_badge(v["state"]),
                local(v["created_at"], self.dash.tz),
            ]
            for v in found["vouchers"]
        ]
        result = table(
            [
                L("凭证号", "Voucher no."),
                L("类型", "Type"),
                L("银行", "Bank"),
                L("预算单位", "Agency"),
                L("收款人", "Payee"),
                L("金额", "Amount"),
                L("状态", "State"),
                L("创建时间", "Created"),
            ],
            rows,
            cls="vouchers",
            empty=L("没有符合条件的凭证", "No voucher matches"),
        )
        body = h(
            '{}<p class="count" id="result-count">{} <b>{}</b> {}</p>{}{}',
            form,
            L("共", "Found"),
            found["total"],
            L("笔", "vouchers"),
            result,
            pager_links("/transactions", params, page_no, found["total"], PAGE_SIZE),
        )
        send(request, 200, self.page(session, body))


#: Notices after an action (the action redirects here with `?done=`).
DONE: Final = {
    "cancel": ("凭证已撤销", "The voucher was cancelled"),
    "resend": ("已安排重发（相同报文标识）", "Queued to be sent again, same MsgId"),
    "resolve": ("已按银行状态处理", "Resolved with the bank's status"),
}
NEEDS: Final = {
    Permission.CANCEL: ("操作员", "operator"),
    Permission.RESEND: ("操作员", "operator"),
    Permission.RESOLVE: ("审批员", "approver"),
}


class Vouchers(Page):
    """`/vouchers/KEY`, `/vouchers/KEY/messages/ID` and the POST actions under `/vouchers/KEY/…`."""

    title = ("凭证详情", "Voucher")
    active = "/transactions"

    def _key(self, request: Request) -> VoucherKey | None:
        if not request.postpath or not request.postpath[0]:
            return None
        try:
            return VoucherKey.parse(request.postpath[0].decode("utf-8", "replace"))
        except ValueError:
            return None

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        key = self._key(request)
        rest = [p.decode("utf-8", "replace") for p in request.postpath[1:]]
        if key is None:
            send(request, 404, self.message_page(session, "error", L("没有这张凭证", "No such voucher")))
            return
        if len(rest) == 2 and rest[0] == "messages" and rest[1].isdigit():
            await self.message(request, session, key, int(rest[1]))
            return
        await self.show(request, session, key)

    async def show(
        self,
        request: Request,
        session: SessionInfo | None,
        key: VoucherKey,
        *,
        error: str | Html = "",
        status: int = 200,
    ) -> None:
        assert session is not None
        found = await self.dash.store(queries.get_voucher, key)
        if found is None:
            send(request, 404, self.message_page(session, "error", L("没有这张凭证", "No such voucher")))
            return
        done = DONE.get(arg(request, "done"))
        notice = message_box("ok", L(*done)) if done else Html("")
        if error:
            notice = message_box("error", error)
        facts = [
            (L("凭证号", "Voucher no."), found["voucher_no"]),
            (L("凭证键", "Key"), found["key"]),
            (L("类型", "Type"), f"{VT_ZH.get(found['vt_code'], '')} {found['vt_code']}"),
            (L("状态", "State"), state_badge(found["state"])),
            (L("银行", "Bank"), found["bank"]),
            (L("预算单位", "Agency"), f"{found['agency_name']} ({found['agency_code']})"),
            (L("收款人", "Payee"), f"{found['payee_acct_name']} · {found['payee_acct_no']}"),
            (L("金额", "Amount"), h('<span class="amount" id="amount">{}</span>', yuan(found["amount_fen"]))),
            (L("报文标识", "MsgId"), found["msg_id"] or "—"),
            (L("银行流水号", "Bank serial"), found["x_agent_business_no"] or "—"),
            (L("支付日期", "Pay date"), found["x_pay_date"] or "—"),
            (L("已退回", "Returned"), yuan(found["returned_fen"]) if found["returned_fen"] else "—"),
            (L("原因", "Reason"), found["reason"] or "—"),
            (L("应答期限", "Answer due"), local(found["deadline_at"], self.dash.tz) or "—"),
            (L("创建时间", "Created"), local(found["created_at"], self.dash.tz)),
            (L("对账", "Reconciliation"), _reconciliation(found.get("reconciliation"))),
        ]
        facts_html = h('<dl class="facts">{}</dl>', join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in facts))
        timeline = table(
            [
                L("序号", "#"),
                L("时间", "When"),
                L("事件", "Event"),
                L("状态变化", "State"),
                L("操作方", "By"),
                L("详情", "Detail"),
            ],
            [
                [
                    t["seq"],
                    local(t["at"], self.dash.tz),
                    t["event"],
                    h("{} → {}", STATE_ZH.get(t["from"] or "", t["from"] or "—"), state_badge(t["to"])),
                    t["actor"],
                    h("<code>{}</code>", json.dumps(t["detail"], ensure_ascii=False)),
                ]
                for t in found["timeline"]
            ],
            cls="timeline",
        )
        quoted_key = quoted(found["key"])

        def verified(value: bool | None, detail: str | None) -> Html:
            if value is True:
                return h('<span class="ok">✔ {}</span>', L("验签通过", "verified"))
            if value is False:
                return h('<span class="bad">✘ {}</span> <small>{}</small>', L("验签失败", "failed"), detail or "")
            return h('<span class="muted">— {}</span> <small>{}</small>', L("未验签", "not checked"), detail or "")

        messages = table(
            [
                L("时间", "When"),
                L("方向", "Direction"),
                L("报文", "Type"),
                L("报文标识", "MsgId"),
                L("验签", "Signature"),
                L("应答码", "Result"),
                L("原文", "Signed XML"),
            ],
            [
                [
                    local(m["at"], self.dash.tz),
                    L("收", "in") if m["direction"] == "in" else L("发", "out"),
                    m["msg_no"] or "?",
                    m["msg_id"] or "",
                    verified(m["verified"], m["verify_detail"]),
                    m["result"] if m["result"] is not None else "",
                    h(
                        '<a href="/vouchers/{}/messages/{}">{} ({} B)</a>',
                        quoted_key,
                        m["id"],
                        L("查看", "view"),
                        m["bytes"],
                    ),
                ]
                for m in found["messages"]
            ],
            cls="messages",
            empty=L("尚无报文往来", "No messages yet"),
        )
        body = h(
            '{}<div class="grid"><section class="card">{}</section><section class="card">'
            '<h2>{}</h2>{}</section></div><section class="card wide"><h2>{}</h2>{}</section>'
            '<section class="card wide"><h2>{}</h2>{}</section>',
            notice,
            facts_html,
            L("操作", "Actions"),
            self.actions(session, found),
            L("处理过程", "Timeline"),
            timeline,
            L("往来报文", "Messages exchanged"),
            messages,
        )
        send(request, status, self.page(session, body, title=("凭证详情", f"Voucher {found['voucher_no']}")))

    def actions(self, session: SessionInfo, found: dict[str, Any]) -> Html:
        state = found["state"]
        csrf = session.csrf_token
        key = quoted(found["key"])
        forms: list[Html] = []

        def needs(permission: Permission) -> Html:
            zh, en = NEEDS[permission]
            return h('<small class="needs-role">{}</small>', L(f"需{zh}权限", f"needs {en}"))

        if state == "ACCEPTED":
            forms.append(
                h(
                    '<form method="post" action="/vouchers/{k}/cancel" class="action" id="cancel-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<label>{rl}<input name="reason" id="cancel-reason"></label>'
                    '<button type="submit" id="cancel-button" class="danger">{b}</button> {n}</form>',
                    k=key,
                    c=csrf,
                    rl=L("撤销原因", "Reason"),
                    b=L("撤销凭证", "Cancel voucher"),
                    n=needs(Permission.CANCEL),
                )
            )
        if state in ("ACCEPTED", "SENT"):
            live = bool(self.dash.hub.live_sessions(found["bank"]))
            forms.append(
                h(
                    '<form method="post" action="/vouchers/{k}/resend" class="action" id="resend-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<button type="submit" id="resend-button">{b}</button> '
                    "{n} <small>{s}</small></form>",
                    k=key,
                    c=csrf,
                    b=L("重发（相同报文标识）", "Resend (same MsgId)"),
                    n=needs(Permission.RESEND),
                    s=L("银行在线", "bank online")
                    if live
                    else L("银行离线，重连后可重发", "bank offline: resend after it reconnects"),
                )
            )
        if state == "IN_DOUBT":
            forms.append(
                h(
                    '<form method="post" action="/vouchers/{k}/resolve" class="action" id="resolve-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<label>{rl}<select name="resolution" id="resolution">'
                    '<option value="paid">已支付 paid</option><option value="failed">未支付 failed</option>'
                    '<option value="not_received">银行未收到 not received (send again)</option></select></label>'
                    '<label>{el}<input name="evidence" id="evidence" required></label>'
                    '<label>{sl}<input name="serial" id="serial"></label>'
                    '<label>{dl}<input name="pay_date" id="pay-date" type="date"></label>'
                    '<button type="submit" id="resolve-button">{b}</button> {n}</form>',
                    k=key,
                    c=csrf,
                    rl=L("银行状态", "Bank's status"),
                    el=L("依据（状态回执/电话确认）", "Evidence"),
                    sl=L("银行流水号", "Bank serial"),
                    dl=L("支付日期", "Pay date"),
                    b=L("按银行状态处理", "Resolve"),
                    n=needs(Permission.RESOLVE),
                )
            )
        if not forms:
            return h('<p class="muted">{}</p>', L("当前状态无可执行操作", "No action applies in this state"))
        return join(forms)

    async def message(self, request: Request, session: SessionInfo | None, key: VoucherKey, archive_id: int) -> None:
        from sqlalchemy import select

        def read(conn: Any) -> Any:
            row = (
                conn.execute(
                    select(
                        archive, vouchers.c.adm_div_code, vouchers.c.st_year, vouchers.c.vt_code, vouchers.c.voucher_no
                    )
                    .join(vouchers, vouchers.c.id == archive.c.voucher_id)
                    .where(archive.c.id == archive_id)
                )
                .mappings()
                .first()
            )
            return row

        row = await self.dash.store(read)
        if row is None or VoucherKey(row["adm_div_code"], row["st_year"], row["vt_code"], row["voucher_no"]) != key:
            send(request, 404, self.message_page(session, "error", L("没有这条报文", "No such message")))
            return
        raw = bytes(row["raw"])
        if arg(request, "raw") == "1":
            request.setHeader(
                b"content-disposition", f'attachment; filename="{row["msg_id"] or archive_id}.xml"'.encode()
            )
            send(request, 200, raw, b"application/octet-stream")
            return
        text = _decode(raw[:XML_SHOWN_BYTES_MAX])
        body = h(
            '<p><a href="/vouchers/{k}">← {back}</a> · <a href="/vouchers/{k}/messages/{i}?raw=1">{dl}</a></p>'
            '<dl class="facts"><dt>{d}</dt><dd>{dir}</dd><dt>MsgNo</dt><dd>{no}</dd><dt>MsgId</dt><dd>{mid}</dd>'
            '<dt>{v}</dt><dd>{ver}</dd></dl><pre class="xml" id="signed-xml">{x}</pre>',
            k=quoted(str(key)),
            back=L("返回凭证", "Back to the voucher"),
            i=archive_id,
            dl=L("下载原文", "Download the exact bytes"),
            d=L("方向", "Direction"),
            dir=row["direction"],
            no=row["msg_no"] or "?",
            mid=row["msg_id"] or "",
            v=L("验签", "Signature"),
            ver={True: "✔ verified", False: "✘ failed", None: "— not checked"}[row["verified"]],
            x=text,
        )
        send(request, 200, self.page(session, body, title=("签名报文", "Signed message")))

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        assert session is not None
        key = self._key(request)
        rest = [p.decode("utf-8", "replace") for p in request.postpath[1:]]
        action = rest[0] if len(rest) == 1 else ""
        if key is None or action not in ("cancel", "resend", "resolve"):
            send(request, 404, self.message_page(session, "error", L("没有这个操作", "No such action")))
            return
        permission = {"cancel": Permission.CANCEL, "resend": Permission.RESEND, "resolve": Permission.RESOLVE}[action]
        audit_action = f"voucher.{action}"
        if not await self.require(request, session, permission, audit_action, str(key)):
            return
        actor, now, hub = session.operator.actor, self.dash.now(), self.dash.hub
        detail: dict[str, Any] = {}
        found = await self.dash.store(queries.get_voucher, key)
        if found is None:
            send(request, 404, self.message_page(session, "error", L("没有这张凭证", "No such voucher")))
            return
        try:
            if action == "cancel":
                detail["reason"] = arg(request, "reason")
                await self.dash.store(service.cancel, key, actor, detail["reason"], now)
                hub.emit(
                    "voucher",
                    {"key": str(key), "state": "CANCELLED", "bank": found["bank"], "amount_fen": found["amount_fen"]},
                )
            elif action == "resend":
                if not hub.live_sessions(found["bank"]):
                    raise service.Refused(f"bank {found['bank']} is not connected: resend after it reconnects")
                result = await self.dash.store(operator_actions.resend, key, actor, now)
                hub.kick(result.bank)
            else:
                detail = {
                    "resolution": arg(request, "resolution"),
                    "evidence": arg(request, "evidence"),
                    "serial": arg(request, "serial"),
                    "pay_date": arg(request, "pay_date"),
                }
                result = await self.dash.store(
                    _resolve,
                    key,
                    detail["resolution"],
                    actor,
                    now,
                    detail["evidence"],
                    detail["serial"],
                    _date(detail["pay_date"]),
                )
                for kind, data in result.events:
                    hub.emit(kind, data)
                if result.state.value == "ACCEPTED":
                    hub.kick(result.bank)
        except service.Refused as exc:
            await self.dash.audit(request, actor, audit_action, "refused", str(key), {**detail, "why": exc.add_word})
            await self.show(
                request, session, key, error=h("{}: {}", L("无法执行", "Refused"), exc.add_word), status=409
            )
            return
        await self.dash.audit(request, actor, audit_action, "ok", str(key), detail)
        redirect(request, f"/vouchers/{quoted(str(key))}?{urlencode({'done': action})}")


def _resolve(
    conn: Any, key: VoucherKey, resolution: str, actor: str, now: Any, evidence: str, serial: str, pay_date: date | None
) -> Any:
    return operator_actions.resolve_in_doubt(
        conn, key, resolution, actor, now, evidence=evidence, x_agent_business_no=serial or None, x_pay_date=pay_date
    )


def _decode(raw: bytes) -> str:
    """The archived bytes as text: UTF-8, else the encoding the XML declares (GBK and GB18030 banks)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for encoding in ("gb18030",):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _reconciliation(recon: dict[str, Any] | None) -> Html:
    """Where the nightly reconciliation left the voucher: reconciled by a run, in a break, or not yet."""
    if not recon or recon["state"] == "NOT_RECONCILED":
        return h('<span class="muted" id="reconciliation">{}</span>', L("未对账", "not reconciled yet"))
    if recon["state"] == "BREAK":
        open_ = [b for b in recon["breaks"] if b["state"] == "OPEN"]
        return h(
            '<span class="bad" id="reconciliation">{}</span> {}',
            L("差错", "break"),
            join(
                h('<a href="/reconciliation/breaks/{}">{} ({})</a> ', b["id"], b["class"], b["check_date"])
                for b in open_
            ),
        )
    return h(
        '<span class="ok" id="reconciliation">{}</span> <a href="/reconciliation/{}">{}</a>',
        L("已对账", "reconciled"),
        recon["run_id"],
        recon["check_date"],
    )
