"""The reconciliation pages (issue 7 §5) over :class:`gateway.dashboard.providers.ReconciliationProvider`.

| path | permission | what |
|---|---|---|
| `/reconciliation?date=&bank=` | `view` | the runs of a check date by bank (default: yesterday, local time) |
| `/reconciliation/RUN?kind=&state=&assigned_to=` | `view` | one run: totals, its breaks filtered, the reports |
| `/reconciliation/RUN/report` (`.csv`, `.json` when offered) | `view` | the run's report as the writer made it |
| `/reconciliation/breaks?…` | `view` | breaks of every run (the work list: open, assigned to me) |
| `/reconciliation/breaks/ID` | `view` | one break: both sides, detail, age, assignment, resolution, history |
| `POST /reconciliation/breaks/ID/assign`, `/comment`, `/propose` | `recon.propose` (operator) | work on it |
| `POST /reconciliation/breaks/ID/approve`, `/reject` | `recon.approve` (approver) | the second pair of eyes |

Four eyes: a resolution that changes a voucher's state is only *proposed*; a different person with the approver
role approves or rejects it. The provider decides (it refuses the proposer's own approval, a wrong state, an
unknown reason); the page shows its refusal, answers 409, audits it, and nothing changes (the provider's work runs
in one transaction that the refusal rolls back). Every form is shown to everyone signed in, marked with the role
it needs, as on the voucher page: the server decides, a refusal by role is an audited 403.
"""

from __future__ import annotations

import hashlib
import json
import re
from base64 import b64encode
from datetime import date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from gateway.auth import accounts
from gateway.auth.accounts import SessionInfo
from gateway.auth.roles import Permission, Role
from gateway.dashboard import providers
from gateway.dashboard.html import Html, L, h, join, local, message_box, table, yuan
from gateway.dashboard.server import Page, Request, arg, quoted, redirect, security_headers, send
from gateway.reconcile.resolution import TEXT_MAX, NotFound, Refused
from reconciliation.model import BreakClass, Status

NONE: Final = "'none'"
#: Longest comment, note or rejection reason accepted from a form (the workflow's own limit).
TEXT_LEN_MAX: Final = TEXT_MAX
#: Breaks listed on one page (the report and the CSV have them all).
BREAKS_SHOWN_MAX: Final = 500

BREAK_STATES: Final = {"OPEN": ("未结", "open"), "CLOSED": ("已结", "closed")}
RESOLUTION_STATES: Final = {
    "PROPOSED": ("待复核", "proposed, awaiting approval"),
    "APPROVED": ("已批准", "approved"),
    "REJECTED": ("已驳回", "rejected"),
    "RESOLVED": ("已处理", "resolved"),
}
#: The workflow's steps: permission, and the notice shown after it (the page redirects with `?done=`).
STEPS: Final = {
    "assign": Permission.RECON_PROPOSE,
    "comment": Permission.RECON_PROPOSE,
    "propose": Permission.RECON_PROPOSE,
    "approve": Permission.RECON_APPROVE,
    "reject": Permission.RECON_APPROVE,
}
DONE: Final = {
    "assign": ("已指派", "Assigned"),
    "comment": ("已添加备注", "Comment added"),
    "resolved": ("已处理，差错已关闭", "Resolved: the break is closed"),
    "proposed": ("已提交，等待另一位审批员复核", "Proposed: a different approver must approve it"),
    "approve": ("已批准，更正已执行", "Approved: the correction was applied"),
    "reject": ("已驳回，差错仍未结", "Rejected: the break stays open"),
}
NEEDS: Final = {Permission.RECON_PROPOSE: ("操作员", "operator"), Permission.RECON_APPROVE: ("审批员", "approver")}
#: Roles that work on breaks (the assignee list).
WORKERS: Final = (Role.OPERATOR, Role.APPROVER, Role.ADMIN)


# --- small renderers ------------------------------------------------------------------------------------------


def not_available() -> Html:
    """What the pages say until a provider is attached to the hub (`hub.reconciliation`)."""
    return h(
        '<div id="not-available">{}<p>{} <code>gateway.dashboard.providers.ReconciliationProvider</code></p></div>',
        message_box("info", L("日终对账尚未接入", "Reconciliation is not yet available")),
        L("接入后此处显示相关数据；接口约定见", "Once attached, this page shows it; the expected interface is"),
    )


def class_label(kind: str) -> Html:
    """A break class as 金额不符 amount mismatch (the value itself when unknown)."""
    try:
        cls = BreakClass(kind)
    except ValueError:
        return h("{}", kind)
    return h('<span class="kind" data-kind="{}">{}</span>', kind, L(cls.zh, cls.en))


def _labelled(table_: dict[str, tuple[str, str]], value: str | None, css: str) -> Html:
    if not value:
        return Html("")
    zh, en = table_.get(value, (value, value))
    return h(
        '<span class="badge {}-{}" data-{}="{}">{} <span class="en">{}</span></span>', css, value, css, value, zh, en
    )


def break_state(value: str | None) -> Html:
    return _labelled(BREAK_STATES, value, "bs")


def resolution_state(value: str | None) -> Html:
    return _labelled(RESOLUTION_STATES, value, "rs")


def balance_badge(run: dict[str, Any]) -> Html:
    """平 balanced when the run found no break, 不平 with the count otherwise."""
    breaks = int(run.get("breaks") or 0)
    if breaks == 0:
        return h('<span class="badge balanced" data-balanced="1">平 <span class="en">balanced</span></span>')
    return h(
        '<span class="badge unbalanced" data-balanced="0">不平 <span class="en">{} {}</span></span>',
        f"{breaks:,}",
        "break" if breaks == 1 else "breaks",
    )


def _by_class(counts: dict[str, int] | None) -> Html:
    found = [(k, n) for k, n in (counts or {}).items() if n]
    if not found:
        return h('<span class="muted">—</span>')
    order = {c.value: i for i, c in enumerate(BreakClass)}
    found.sort(key=lambda kn: order.get(kn[0], len(order)))
    return join((h("<div>{} {}</div>", class_label(k), f"{n:,}") for k, n in found))


def _sent(run: dict[str, Any]) -> Html:
    if run.get("result_sent"):
        return h('<span class="ok" data-sent="1">✔ {}</span>', L("已发送", "sent"))
    return h('<span class="muted" data-sent="0">— {}</span>', L("未发送", "not sent"))


def _count_amount(count: Any, fen: Any) -> Html:
    return h(
        '{} <small>{}</small> <span class="amount">{}</span>',
        f"{int(count or 0):,}",
        L("笔", "items"),
        yuan(int(fen or 0)),
    )


def _needs(permission: Permission) -> Html:
    zh, en = NEEDS[permission]
    return h('<small class="needs-role">{}</small>', L(f"需{zh}权限", f"needs {en}"))


def _voucher_link(key: str | None) -> Html:
    if not key:
        return h('<span class="muted">—</span>')
    return h('<a href="/vouchers/{}">{}</a>', quoted(key), key)


def _day(text: str, default: date) -> date | None:
    """The date typed in a filter (ISO or YYYYMMDD); `default` when empty, None when it is not a date."""
    text = text.strip()
    if not text:
        return default
    try:
        if len(text) == 8 and text.isdigit():
            return datetime.strptime(text, "%Y%m%d").date()
        return date.fromisoformat(text)
    except ValueError:
        return None


def overview_tile(runs: list[dict[str, Any]] | None) -> Html:
    """The overview's "last night's reconciliation per bank": a row per bank, a 平/不平 badge, links to the runs."""
    if runs is None:
        return h('<p class="na" id="recon-na">{}</p>', L("对账服务尚未接入", "Reconciliation is not yet available"))
    return table(
        [L("银行", "Bank"), L("对账日", "Check date"), L("结果", "Result"), L("相符", "Matched"), L("未结", "Open")],
        [
            [
                h("<b>{}</b>", r["bank"]),
                h('<a href="/reconciliation/{}" class="run-link">{}</a>', r["id"], r["check_date"]),
                balance_badge(r),
                f"{int(r.get('matched') or 0):,}",
                f"{int(r.get('open_breaks') or 0):,}",
            ]
            for r in sorted(runs, key=lambda r: str(r["bank"]))
        ],
        cls="recon-latest",
        empty=L("尚无对账记录", "No reconciliation run yet"),
    )


def overview_kpi(runs: list[dict[str, Any]] | None) -> tuple[object, Html]:
    """The overview's KPI tile: how many of the latest runs did not balance, of how many banks."""
    if runs is None:
        return "—", L("尚未接入", "not yet available")
    unbalanced = sum(1 for r in runs if int(r.get("breaks") or 0))
    open_breaks = sum(int(r.get("open_breaks") or 0) for r in runs)
    return (
        f"{unbalanced} / {len(runs)}",
        h("{} · {} {}", L("不平银行", "banks not balanced"), L("未结差错", "open breaks"), f"{open_breaks:,}"),
    )


# --- the page ----------------------------------------------------------------------------------------------------


class Reconciliation(Page):
    """`/reconciliation` and everything under it (module docstring)."""

    title = ("对账", "Reconciliation")
    active = "/reconciliation"

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        assert session is not None
        recon = providers.reconciliation_of(self.dash.hub)
        if recon is None:
            body = not_available()
            send(request, 200, self.page(session, body))
            return
        parts = [p.decode("utf-8", "replace") for p in request.postpath if p]
        if not parts:
            await self.runs(request, session, recon)
        elif parts == ["breaks"]:
            await self.break_list(request, session, recon, None)
        elif len(parts) == 2 and parts[0] == "breaks" and parts[1].isdigit():
            await self.show_break(request, session, recon, int(parts[1]))
        elif len(parts) == 1 and parts[0].isdigit():
            await self.break_list(request, session, recon, int(parts[0]))
        elif len(parts) == 2 and parts[0].isdigit() and parts[1] in ("report", "report.csv", "report.json"):
            await self.report(request, session, recon, int(parts[0]), parts[1])
        else:
            self.not_found(request, session, L("没有这个页面", "No such page"))

    def not_found(self, request: Request, session: SessionInfo, text: Html) -> None:
        send(request, 404, self.message_page(session, "error", text))

    def _today(self) -> date:
        return datetime.fromtimestamp(self.dash.hub.clock.seconds(), self.dash.tz).date()

    def _banks(self) -> list[str]:
        return sorted(self.dash.hub.config.banks)

    # --- runs of a date ---------------------------------------------------------------------------------------

    async def runs(self, request: Request, session: SessionInfo, recon: providers.ReconciliationProvider) -> None:
        yesterday = self._today() - timedelta(days=1)
        typed = arg(request, "date")
        check_date = _day(typed, yesterday)
        bank = arg(request, "bank")
        notice = Html("")
        if check_date is None:
            notice = message_box("error", h("{}: {}", L("日期无效", "Not a date"), typed))
            check_date = yesterday
        if bank and bank not in self.dash.hub.config.banks:
            notice = message_box("error", h("{}: {}", L("没有这家银行", "No such bank"), bank))
            bank = ""
        found = await self.dash.store(lambda conn: recon.runs(conn, check_date=check_date, bank=bank or None))
        day = check_date
        form = h(
            '<form class="filters" method="get" action="/reconciliation" id="runs-filter">'
            '<label>{dl}<input type="date" name="date" id="f-date" value="{d}"></label>'
            '<label>{bl}<select name="bank" id="f-bank">{opts}</select></label>'
            '<button type="submit" id="runs-button">{go}</button>'
            '<a href="/reconciliation?date={prev}">← {pl}</a><a href="/reconciliation?date={next}">{nl} →</a>'
            '<a href="/reconciliation/breaks?state=OPEN">{ol}</a></form>',
            dl=L("对账日", "Check date"),
            d=day.isoformat(),
            bl=L("银行", "Bank"),
            opts=_options([("", "全部 all"), *((b, b) for b in self._banks())], bank),
            go=L("查询", "Show"),
            prev=(day - timedelta(days=1)).isoformat(),
            pl=L("前一日", "previous day"),
            next=(day + timedelta(days=1)).isoformat(),
            nl=L("后一日", "next day"),
            ol=L("所有未结差错", "All open breaks"),
        )
        rows = [
            [
                h('<b id="run-bank-{}">{}</b>', r["id"], r["bank"]),
                r["check_date"],
                balance_badge(r),
                _count_amount(r.get("ledger_count"), r.get("ledger_fen")),
                _count_amount(r.get("statement_count"), r.get("statement_fen")),
                f"{int(r.get('matched') or 0):,}",
                _by_class(r.get("counts")),
                h('<span id="run-open-{}">{}</span>', r["id"], f"{int(r.get('open_breaks') or 0):,}"),
                _sent(r),
                h(
                    '<a href="/reconciliation/{}" class="run-link" id="run-{}">{}</a>',
                    r["id"],
                    r["id"],
                    L("查看", "open"),
                ),
            ]
            for r in sorted(found, key=lambda r: str(r["bank"]))
        ]
        body = h(
            "{}{}{}",
            notice,
            form,
            table(
                [
                    L("银行", "Bank"),
                    L("对账日", "Check date"),
                    L("结果", "Result"),
                    L("账面 笔数/金额", "Ledger"),
                    L("对账单 笔数/金额", "Statement"),
                    L("相符", "Matched"),
                    L("差错（按类型）", "Breaks by class"),
                    L("未结", "Open"),
                    L("对账结果(2507)", "Result sent (2507)"),
                    "",
                ],
                rows,
                cls="runs",
                empty=h('<span id="no-runs">{} {}</span>', L("该日无对账", "No run on"), day.isoformat()),
            ),
        )
        send(request, 400 if notice else 200, self.page(session, body))

    # --- one run, or breaks across runs -----------------------------------------------------------------------

    async def _run(self, recon: providers.ReconciliationProvider, run_id: int) -> dict[str, Any] | None:
        one = getattr(recon, "run", None)
        if callable(one):
            found: dict[str, Any] | None = await self.dash.store(lambda conn: one(conn, run_id))
            return found
        every = await self.dash.store(lambda conn: recon.runs(conn, check_date=None, bank=None))
        return next((r for r in every if int(r["id"]) == run_id), None)

    async def break_list(
        self, request: Request, session: SessionInfo, recon: providers.ReconciliationProvider, run_id: int | None
    ) -> None:
        run = None
        if run_id is not None:
            run = await self._run(recon, run_id)
            if run is None:
                self.not_found(request, session, L("没有这次对账", "No such reconciliation run"))
                return
        kind = arg(request, "kind")
        state = arg(request, "state")
        assigned_to = arg(request, "assigned_to")
        bank = arg(request, "bank") if run_id is None else ""
        problems = []
        if kind and kind not in {c.value for c in BreakClass}:
            problems.append(h("{}: {}", L("没有这个差错类型", "No such break class"), kind))
            kind = ""
        if state and state not in BREAK_STATES and state not in RESOLUTION_STATES:
            problems.append(h("{}: {}", L("没有这个状态", "No such state"), state))
            state = ""
        if bank and bank not in self.dash.hub.config.banks:
            problems.append(h("{}: {}", L("没有这家银行", "No such bank"), bank))
            bank = ""

        def read(conn: Any) -> tuple[list[dict[str, Any]], list[accounts.Operator]]:
            found = recon.breaks(
                conn,
                run_id,
                kind=kind or None,
                state=state or None,
                bank=bank or None,
                assigned_to=assigned_to or None,
            )
            return found, accounts.list_operators(conn)

        breaks, people = await self.dash.store(read)
        action = "/reconciliation/breaks" if run_id is None else f"/reconciliation/{run_id}"
        bank_field = (
            h(
                '<label>{}<select name="bank" id="f-bank">{}</select></label>',
                L("银行", "Bank"),
                _options([("", "全部 all"), *((b, b) for b in self._banks())], bank),
            )
            if run_id is None
            else Html("")
        )
        form = h(
            '<form class="filters" method="get" action="{action}" id="breaks-filter">{bank}'
            '<label>{kl}<select name="kind" id="f-kind">{kinds}</select></label>'
            '<label>{sl}<select name="state" id="f-state">{states}</select></label>'
            '<label>{al}<select name="assigned_to" id="f-assigned">{people}</select></label>'
            '<button type="submit" id="breaks-button">{go}</button></form>',
            action=action,
            bank=bank_field,
            kl=L("差错类型", "Class"),
            kinds=_options([("", "全部 all"), *((c.value, c.label) for c in BreakClass)], kind),
            sl=L("状态", "State"),
            states=_options(
                [
                    ("", "全部 all"),
                    *((k, f"{zh} {en}") for k, (zh, en) in BREAK_STATES.items()),
                    *((k, f"{zh} {en}") for k, (zh, en) in RESOLUTION_STATES.items()),
                ],
                state,
            ),
            al=L("处理人", "Assigned to"),
            people=_options([("", "全部 anyone"), *_people(people)], assigned_to),
            go=L("筛选", "Filter"),
        )
        shown = breaks[:BREAKS_SHOWN_MAX]
        rows = [
            [
                h(
                    '<a href="/reconciliation/breaks/{}" class="break-link" id="break-{}">#{}</a>',
                    b["id"],
                    b["id"],
                    b["id"],
                ),
                *(
                    []
                    if run_id is not None
                    else [b["bank"], h('<a href="/reconciliation/{}">{}</a>', b["run_id"], b["check_date"])]
                ),
                class_label(b["kind"]),
                _voucher_link(b.get("voucher_key")),
                b.get("bank_serial") or "",
                h('<span class="amount">{}</span>', yuan(b.get("ledger_fen"))),
                h('<span class="amount">{}</span>', yuan(b.get("bank_fen"))),
                h('<span class="amount">{}</span>', yuan(b.get("difference_fen"))),
                b.get("age_days", ""),
                break_state(b.get("state")),
                resolution_state(b.get("resolution_state")),
                b.get("assigned_to") or "",
            ]
            for b in shown
        ]
        more = (
            h('<p class="muted">{} {:,} / {:,}</p>', L("仅显示前", "Showing the first"), len(shown), len(breaks))
            if len(breaks) > len(shown)
            else Html("")
        )
        heads = [
            L("编号", "No."),
            *([] if run_id is not None else [L("银行", "Bank"), L("对账日", "Check date")]),
            L("类型", "Class"),
            L("凭证", "Voucher"),
            L("银行流水", "Bank serial"),
            L("账面", "Ledger"),
            L("银行", "Bank"),
            L("差额", "Difference"),
            L("天数", "Age (days)"),
            L("状态", "State"),
            L("处理", "Resolution"),
            L("处理人", "Assigned to"),
        ]
        listing = h(
            '<section class="card wide"><h2>{} <span id="break-count">{}</span></h2>{}{}{}</section>',
            L("差错", "Breaks"),
            len(breaks),
            form,
            table(heads, rows, cls="breaks", empty=h('<span id="no-breaks">{}</span>', L("无差错", "No breaks"))),
            more,
        )
        notice = join(message_box("error", p) for p in problems)
        if run is None:
            body = h("{}{}", notice, listing)
            title = ("差错列表", "Breaks")
        else:
            body = h("{}{}{}", notice, self.run_summary(recon, run), listing)
            title = ("对账结果", f"Run {run['bank']} {run['check_date']}")
        send(request, 400 if problems else 200, self.page(session, body, title=title))

    def run_summary(self, recon: providers.ReconciliationProvider, run: dict[str, Any]) -> Html:
        run_id = run["id"]
        links = [h('<a href="/reconciliation/{}/report" id="report-html">{}</a>', run_id, L("对账报告", "HTML report"))]
        if callable(getattr(recon, "report", None)):  # StoreReconciliation.report(conn, run_id, "csv" | "json")
            links.append(h('<a href="/reconciliation/{}/report.csv" id="report-csv">CSV</a>', run_id))
            links.append(h('<a href="/reconciliation/{}/report.json" id="report-json">JSON</a>', run_id))
        ledger = (int(run.get("ledger_count") or 0), int(run.get("ledger_fen") or 0))
        statement = (int(run.get("statement_count") or 0), int(run.get("statement_fen") or 0))
        facts = [
            (L("银行", "Bank"), h("<b>{}</b>", run["bank"])),
            (
                L("对账日", "Check date"),
                h('<a href="/reconciliation?{}">{}</a>', urlencode({"date": run["check_date"]}), run["check_date"]),
            ),
            (L("结果", "Result"), balance_badge(run)),
            (L("账面", "Ledger"), _count_amount(*ledger)),
            (L("对账单", "Statement"), _count_amount(*statement)),
            *(
                [(L("对账单声明", "Statement declares"), _count_amount(declared["count"], declared["amount_fen"]))]
                if isinstance(declared := run.get("declared"), dict)
                else []
            ),
            (
                L("差额", "Difference"),
                h(
                    '<span class="{}" id="run-difference">{} / {}</span>',
                    "ok" if ledger == statement else "bad",
                    f"{ledger[0] - statement[0]:,}",
                    yuan(ledger[1] - statement[1]),
                ),
            ),
            (L("相符", "Matched"), f"{int(run.get('matched') or 0):,}"),
            (
                L("差错", "Breaks"),
                h(
                    '{} <span id="run-open">({} {})</span>',
                    f"{int(run.get('breaks') or 0):,}",
                    L("未结", "open"),
                    f"{int(run.get('open_breaks') or 0):,}",
                ),
            ),
            (L("差错（按类型）", "By class"), _by_class(run.get("counts"))),
            (L("对账结果(2507)", "Result sent (2507)"), _sent(run)),
            (L("状态", "Run state"), run.get("state") or ""),
            (L("对账单来源", "Statement"), run.get("source") or "—"),
            (L("开始", "Started"), local(run.get("started_at"), self.dash.tz)),
            (L("完成", "Finished"), local(run.get("finished_at"), self.dash.tz) or "—"),
            (L("报告", "Reports"), join(links, " · ")),
        ]
        return h(
            '<section class="card wide" id="run-summary">{}</section>',
            _facts(facts),
        )

    async def report(
        self, request: Request, session: SessionInfo, recon: providers.ReconciliationProvider, run_id: int, name: str
    ) -> None:
        if await self._run(recon, run_id) is None:
            self.not_found(request, session, L("没有这次对账", "No such reconciliation run"))
            return
        if name == "report":
            text: str = await self.dash.store(lambda conn: recon.report_html(conn, run_id))
            # The writer's page is self-contained with one inline stylesheet: allow exactly that (by hash), no more.
            hashes = " ".join(
                "'sha256-" + b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
                for s in re.findall(r"<style>(.*?)</style>", text, re.S)
            )
            request.responseHeaders.setRawHeaders(  # replaces the pages' policy set in Page.render
                b"content-security-policy",
                [
                    f"default-src 'none'; style-src {hashes or NONE}; frame-ancestors 'none'; base-uri 'none'; "
                    "form-action 'none'".encode()
                ],
            )
            send(request, 200, text.encode("utf-8"))
            return
        fn = getattr(recon, "report", None)
        if not callable(fn):
            self.not_found(request, session, L("没有这种格式的报告", "This report format is not offered"))
            return
        data = await self.dash.store(lambda conn: fn(conn, run_id, name[7:]))
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        security_headers(request)
        request.setHeader(b"content-disposition", f'attachment; filename="reconciliation-{run_id}.{name[7:]}"'.encode())
        send(request, 200, raw, b"text/csv; charset=utf-8" if name.endswith("csv") else b"application/json")

    # --- one break ------------------------------------------------------------------------------------------------

    async def show_break(
        self,
        request: Request,
        session: SessionInfo,
        recon: providers.ReconciliationProvider,
        break_id: int,
        *,
        error: Html | None = None,
        status: int = 200,
    ) -> None:
        def read(conn: Any) -> tuple[dict[str, Any] | None, list[accounts.Operator]]:
            return recon.break_detail(conn, break_id), accounts.list_operators(conn)

        found, people = await self.dash.store(read)
        if found is None:
            self.not_found(request, session, L("没有这个差错", "No such break"))
            return
        reasons = recon.reasons()
        done = DONE.get(arg(request, "done"))
        notice = message_box("ok", L(*done)) if done else Html("")
        if error is not None:
            notice = h('<div id="recon-refused">{}</div>', message_box("error", error))
        reason_names = {r["code"]: (r["zh"], r["en"]) for r in reasons}
        resolution = found.get("resolution")
        # In the detail, "bank" is the bank's side and the bank's code is "bank_code" (providers.py).
        bank_side = found.get("bank") if not isinstance(found.get("bank"), str) else None
        bank_code = found.get("bank_code") or (found["bank"] if isinstance(found.get("bank"), str) else "")
        summary = [
            (L(zh, en), _count_amount(totals["count"], totals["amount_fen"]))
            for name, zh, en in (("declared", "声明", "Declared"), ("computed", "明细合计", "Computed"))
            if isinstance(totals := found.get(name), dict)
        ]
        facts = [
            (L("编号", "Break"), f"#{found['id']}"),
            (L("银行", "Bank"), bank_code),
            (
                L("对账日", "Check date"),
                h('<a href="/reconciliation/{}" id="back-to-run">{}</a>', found["run_id"], found["check_date"]),
            ),
            (L("类型", "Class"), class_label(found["kind"])),
            (L("凭证", "Voucher"), _voucher_link(found.get("voucher_key"))),
            (L("银行流水", "Bank serial"), found.get("bank_serial") or "—"),
            (L("差额", "Difference"), h('<span class="amount">{}</span>', yuan(found.get("difference_fen")))),
            (
                L("天数", "Age"),
                h(
                    "{} {} <small>{} {}</small>",
                    found.get("age_days", ""),
                    L("天", "days"),
                    L("首次发现", "first found"),
                    found.get("opened_on") or found["check_date"],
                ),
            ),
            (L("状态", "State"), h('<span id="break-state">{}</span>', break_state(found.get("state")))),
            (L("处理人", "Assigned to"), h('<span id="assigned-to">{}</span>', found.get("assigned_to") or "—")),
            (
                L("处理", "Resolution"),
                h(
                    '<span id="resolution-state">{}</span> {}',
                    resolution_state(found.get("resolution_state")),
                    L(*reason_names[resolution]) if resolution in reason_names else (resolution or "—"),
                ),
            ),
            (L("提出人", "Proposed by"), h('<span id="proposed-by">{}</span>', found.get("proposed_by") or "—")),
            (L("复核人", "Decided by"), h('<span id="approved-by">{}</span>', found.get("approved_by") or "—")),
            (L("说明", "Note"), found.get("note") or "—"),
            (L("差错详情", "Detail"), h('<span id="break-detail">{}</span>', found.get("detail") or "—")),
            *summary,
        ]
        sides = _sides(found.get("ledger"), bank_side)
        events = table(
            [L("时间", "When"), L("操作人", "Who"), L("事件", "Event"), L("详情", "Detail")],
            [
                [local(e.get("at"), self.dash.tz), e.get("actor", ""), e.get("event", ""), _detail(e.get("detail"))]
                for e in found.get("events") or []
            ],
            cls="events",
            empty=L("尚无处理记录", "Nothing done yet"),
        )
        body = h(
            '{}<div class="grid"><section class="card">{}</section><section class="card"><h2>{}</h2>{}</section></div>'
            '<section class="card wide"><h2>{}</h2>{}</section><section class="card wide"><h2>{}</h2>{}</section>',
            notice,
            _facts(facts),
            L("操作", "Actions"),
            self.actions(session, found, reasons, people),
            L("账面与银行", "Ledger and bank"),
            sides,
            L("处理过程", "History"),
            events,
        )
        send(request, status, self.page(session, body, title=("差错详情", f"Break #{found['id']}")))

    def actions(
        self,
        session: SessionInfo,
        found: dict[str, Any],
        reasons: list[dict[str, Any]],
        people: list[accounts.Operator],
    ) -> Html:
        csrf = session.csrf_token
        base = f"/reconciliation/breaks/{found['id']}"
        forms: list[Html] = []
        is_open = found.get("state") == "OPEN"
        proposed = found.get("resolution_state") == "PROPOSED"
        if proposed:
            forms.append(
                h(
                    '<div class="card four-eyes" id="approval"><p>{w}</p>'
                    '<form method="post" action="{b}/approve" class="action" id="approve-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<button type="submit" id="approve-button">{a}</button> {n}</form>'
                    '<form method="post" action="{b}/reject" class="action" id="reject-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<label>{rl}<input name="reason" id="reject-reason" maxlength="{m}" required></label>'
                    '<button type="submit" id="reject-button" class="danger">{r}</button> {n}</form></div>',
                    w=L(
                        f"此处理由 {found.get('proposed_by') or '?'} 提出，须由另一位审批员复核",
                        f"Proposed by {found.get('proposed_by') or '?'}: another approver must approve or reject it",
                    ),
                    b=base,
                    c=csrf,
                    a=L("批准", "Approve"),
                    rl=L("驳回理由", "Why rejected"),
                    r=L("驳回", "Reject"),
                    m=TEXT_LEN_MAX,
                    n=_needs(Permission.RECON_APPROVE),
                )
            )
        if is_open and not proposed:
            forms.append(
                h(
                    '<form method="post" action="{b}/propose" class="action" id="propose-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<label>{rl}<select name="resolution" id="resolution" required>{opts}</select></label>'
                    '<label>{nl}<input name="note" id="resolution-note" maxlength="{m}"></label>'
                    '<button type="submit" id="propose-button">{go}</button> {n}'
                    '<small class="muted">{hint}</small></form>',
                    b=base,
                    c=csrf,
                    rl=L("处理原因", "Reason code"),
                    opts=_options(
                        [("", "— 请选择 choose —")]
                        + [
                            (
                                r["code"],
                                f"{r['zh']} {r['en']}"
                                + (" ［需复核 needs approval］" if r.get("needs_approval") else ""),
                            )
                            for r in reasons
                        ],
                        "",
                    ),
                    nl=L("说明", "Note"),
                    m=TEXT_LEN_MAX,
                    go=L("处理", "Resolve"),
                    n=_needs(Permission.RECON_PROPOSE),
                    hint=L(
                        "更改凭证状态的处理须另一位审批员批准（双人复核）",
                        "A resolution that changes a voucher's state needs a second person's approval (four eyes)",
                    ),
                )
            )
        if is_open:
            forms.append(
                h(
                    '<form method="post" action="{b}/assign" class="action" id="assign-form">'
                    '<input type="hidden" name="_csrf" value="{c}">'
                    '<label>{al}<select name="assignee" id="assignee">{opts}</select></label>'
                    '<button type="submit" id="assign-button">{go}</button> {n}</form>',
                    b=base,
                    c=csrf,
                    al=L("指派给", "Assign to"),
                    opts=_options(
                        _people([p for p in people if not p.disabled and p.role in WORKERS]),
                        found.get("assigned_to") or session.operator.actor,
                    ),
                    go=L("指派", "Assign"),
                    n=_needs(Permission.RECON_PROPOSE),
                )
            )
        if not is_open:
            return h(
                '<p class="muted" id="closed-note">{} {}</p>',
                L("此差错已结，不能再处理", "This break is closed: no further step applies"),
                f"({found.get('closed_reason') or ''} {found.get('closed_on') or ''})".replace("( )", ""),
            )
        forms.append(
            h(
                '<form method="post" action="{b}/comment" class="action" id="comment-form">'
                '<input type="hidden" name="_csrf" value="{c}">'
                '<label>{cl}<input name="text" id="comment-text" maxlength="{m}" required></label>'
                '<button type="submit" id="comment-button">{go}</button> {n}</form>',
                b=base,
                c=csrf,
                cl=L("备注", "Comment"),
                m=TEXT_LEN_MAX,
                go=L("添加备注", "Add comment"),
                n=_needs(Permission.RECON_PROPOSE),
            )
        )
        return join(forms)

    # --- the workflow's steps -----------------------------------------------------------------------------------

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        assert session is not None
        recon = providers.reconciliation_of(self.dash.hub)
        parts = [p.decode("utf-8", "replace") for p in request.postpath if p]
        if recon is None or len(parts) != 3 or parts[0] != "breaks" or not parts[1].isdigit() or parts[2] not in STEPS:
            send(request, 404, self.message_page(session, "error", L("没有这个操作", "No such action")))
            return
        break_id, step = int(parts[1]), parts[2]
        action = f"recon.{step}"
        if not await self.require(request, session, STEPS[step], action, parts[1]):
            return
        actor, now = session.operator.actor, self.dash.now()
        detail: dict[str, Any] = {}
        outcome = step
        try:
            if step == "assign":
                detail["assignee"] = assignee = arg(request, "assignee")
                if not assignee:
                    raise Refused("choose the person to assign the break to")
                await self.dash.store(lambda conn: _assign(conn, recon, break_id, assignee, actor, now))
            elif step == "comment":
                detail["text"] = text = _form_text(request, "text")
                _text_ok(text, "comment", required=True)
                await self.dash.store(lambda conn: recon.comment(conn, break_id, text, actor, now))
            elif step == "propose":
                detail["resolution"] = code = arg(request, "resolution")
                detail["note"] = note = _form_text(request, "note")
                if code not in {r["code"] for r in recon.reasons()}:
                    raise Refused(
                        f"choose a reason code from the list (not {code!r})" if code else "choose a reason code"
                    )
                _text_ok(note, "note", required=False)
                state = await self.dash.store(lambda conn: recon.propose(conn, break_id, code, note, actor, now))
                detail["state"] = state
                outcome = "proposed" if state == "PROPOSED" else "resolved"
            elif step == "approve":
                await self.dash.store(lambda conn: recon.approve(conn, break_id, actor, now))
            else:
                detail["reason"] = reason = _form_text(request, "reason")
                _text_ok(reason, "reason", required=True)
                await self.dash.store(lambda conn: recon.reject(conn, break_id, reason, actor, now))
        except Refused as exc:
            why = str(exc) or exc.__class__.__name__
            detail = {k: v[:200] + "…" if isinstance(v, str) and len(v) > 200 else v for k, v in detail.items()}
            await self.dash.audit(request, actor, action, "refused", parts[1], {**detail, "why": why})
            if isinstance(exc, NotFound):
                self.not_found(request, session, h("{}: {}", L("没有这个差错", "No such break"), why))
                return
            await self.show_break(
                request,
                session,
                recon,
                break_id,
                error=h('{}: <span id="refusal">{}</span>', L("无法执行", "Refused"), why),
                status=409,
            )
            return
        await self.dash.audit(request, actor, action, "ok", parts[1], detail)
        if step == "approve":
            await self._announce(recon, break_id)
        redirect(request, f"/reconciliation/breaks/{break_id}?{urlencode({'done': outcome})}")

    async def _announce(self, recon: providers.ReconciliationProvider, break_id: int) -> None:
        """After an approved correction, tell the live feed the voucher's new state (as every voucher change does)."""
        from gateway.payments import queries
        from protocols.messages import VoucherKey

        def read(conn: Any) -> dict[str, Any] | None:
            found = recon.break_detail(conn, break_id)
            if not found or not found.get("voucher_key"):
                return None
            try:
                key = VoucherKey.parse(str(found["voucher_key"]))
            except ValueError:
                return None
            voucher: dict[str, Any] | None = queries.get_voucher(conn, key)
            return voucher

        voucher = await self.dash.store(read)
        if voucher is not None:
            self.dash.hub.emit(
                "voucher",
                {
                    "key": voucher["key"],
                    "bank": voucher["bank"],
                    "state": voucher["state"],
                    "amount_fen": voucher["amount_fen"],
                },
            )


# --- helpers -----------------------------------------------------------------------------------------------------


def _assign(
    conn: Any, recon: providers.ReconciliationProvider, break_id: int, assignee: str, actor: str, now: datetime
) -> None:
    """Assign to an active account that works on breaks (a typo would otherwise park the break with nobody)."""
    username = assignee.removeprefix("operator:")
    person = accounts.get_by_username(conn, username)
    if person is None or person.disabled or person.role not in WORKERS:
        raise Refused(f"{assignee!r} is not an active operator, approver or admin")
    recon.assign(conn, break_id, person.actor, actor, now)


def _form_text(request: Request, name: str) -> str:
    """A free-text form field, whole (not cut at the usual field cap: an over-long text is refused, not cut)."""
    values = request.args.get(name.encode()) if request.args else None
    return values[0].decode("utf-8", "replace").strip() if values else ""


def _text_ok(text: str, what: str, *, required: bool) -> None:
    if required and not text:
        raise Refused(f"the {what} is empty")
    if len(text) > TEXT_LEN_MAX:
        raise Refused(f"the {what} is longer than {TEXT_LEN_MAX} characters")


def _options(choices: list[tuple[str, str]] | Any, selected: str) -> Html:
    return join(
        h('<option value="{}"{}>{}</option>', value, Html(" selected") if value == selected else Html(""), label)
        for value, label in choices
    )


def _people(people: list[accounts.Operator]) -> list[tuple[str, str]]:
    return [
        (p.actor, p.display_name if p.display_name == p.username else f"{p.display_name} ({p.username})")
        for p in people
    ]


def _facts(facts: list[tuple[Html, object]]) -> Html:
    return h('<dl class="facts">{}</dl>', join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in facts))


#: The fields of a side of a break, in the order shown.
SIDE_FIELDS: Final = (
    ("serial", "银行流水", "Bank serial"),
    ("amount_fen", "金额", "Amount"),
    ("status", "状态", "Status"),
    ("payee_acct_no", "收款账号", "Payee account"),
    ("pay_date", "支付日期", "Pay date"),
    ("ref", "参考", "Reference"),
)


def _side_value(name: str, value: Any) -> Html:
    if value is None or value == "":
        return h('<span class="muted">—</span>')
    if name.endswith("_fen") and isinstance(value, int):
        return h('<span class="amount">{}</span>', yuan(value))
    if name == "status":  # the provider gives the Status name (PAID, RETURNED, FAILED)
        try:
            return h("{}", Status[value].label if isinstance(value, str) else Status(int(value)).label)
        except (KeyError, ValueError):
            return h("{}", value)
    return h("{}", value)


def _sides(ledger: dict[str, Any] | None, bank: dict[str, Any] | None) -> Html:
    """The two sides field by field; a missing side says so, a field that differs is marked."""
    if ledger is None and bank is None:
        return h(
            '<p class="muted">{}</p>', L("此差错为汇总差异，无明细", "A summary difference: no detail on either side")
        )
    names = [f for f in SIDE_FIELDS]
    known = {n for n, _, _ in SIDE_FIELDS}
    for extra in sorted({*(ledger or {}), *(bank or {})} - known):
        names.append((extra, extra, extra))
    missing = h('<span class="bad">{}</span>', L("无此记录", "absent"))
    rows = []
    for name, zh, en in names:
        left = (ledger or {}).get(name)
        right = (bank or {}).get(name)
        differs = ledger is not None and bank is not None and left != right
        rows.append(
            [
                h('<span class="{}">{}</span>', "bad" if differs else "", L(zh, en)),
                _side_value(name, left) if ledger is not None else missing,
                _side_value(name, right) if bank is not None else missing,
            ]
        )
    return table(
        [L("字段", "Field"), L("账面（网关）", "Ledger (gateway)"), L("银行对账单", "Bank statement")],
        rows,
        cls="sides",
    )


def _detail(value: Any) -> Html:
    if value is None or value == "" or value == {}:
        return Html("")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return h("{}", value)
    if isinstance(value, dict):
        return join((h("<div><small>{}</small> {}</div>", k, v) for k, v in value.items()))
    return h("{}", value)
