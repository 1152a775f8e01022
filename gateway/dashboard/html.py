"""Server-side HTML for the dashboard: escaping by default, bilingual labels, yuan amounts, the page layout.

Escaping (the one rule): every value that goes into markup passes through :func:`esc`, except :class:`Html`, which
is markup this module built. Templates are string literals formatted with :func:`h`, which escapes every argument
that is not already :class:`Html`. So a payee name like ``<script>`` is shown, never run.

Labels are Chinese with English beside (:func:`L`), for people who work in Chinese and for the rest of us.
Amounts are integer fen shown as yuan with thousands separators (:func:`yuan`); times are stored as naive UTC and
shown in the instance's time zone (:func:`local`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo


class Html(str):
    """Markup that is safe to emit as it is (built here, from escaped parts)."""

    __slots__ = ()


def esc(value: object) -> Html:
    """`value` as markup: :class:`Html` unchanged, anything else as escaped text (None as empty)."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def h(template: str, *args: object, **kwargs: object) -> Html:
    """Fill a literal template with escaped arguments (`{}` / `{name}` placeholders, as `str.format`)."""
    return Html(template.format(*(esc(a) for a in args), **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[object], sep: str = "") -> Html:
    """Markup of several parts (each escaped unless already markup)."""
    return Html(sep.join(esc(p) for p in parts))


def L(zh: str, en: str) -> Html:
    """A bilingual label: Chinese, with English beside it in a quieter style."""
    return h('<span class="zh">{}</span> <span class="en">{}</span>', zh, en)


def yuan(fen: int | None) -> str:
    """Integer fen as yuan with thousands separators: 123456789 → "¥1,234,567.89"."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{frac:02d}"


def local(at: datetime | str | None, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored (naive UTC) time in the instance's time zone."""
    if at is None or at == "":
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo("UTC"))
    return at.astimezone(tz).strftime(fmt)


#: Voucher states in Chinese.
STATE_ZH: Final = {
    "ACCEPTED": "已受理",
    "SENT": "已发送",
    "DELIVERED": "已送达",
    "PAID": "已支付",
    "FAILED": "支付失败",
    "REJECTED": "银行拒绝",
    "IN_DOUBT": "状态待查",
    "RETURNED": "已退回",
    "CANCELLED": "已撤销",
}
STATE_ORDER: Final = tuple(STATE_ZH)
#: Chart colours per state (also the CSS classes `st-<STATE>`).
STATE_COLOUR: Final = {
    "ACCEPTED": "#8aa4c8",
    "SENT": "#4a78b5",
    "DELIVERED": "#2f5f9e",
    "PAID": "#2e8b57",
    "FAILED": "#c0392b",
    "REJECTED": "#e67e22",
    "IN_DOUBT": "#d4a017",
    "RETURNED": "#8e44ad",
    "CANCELLED": "#95a5a6",
}
VT_ZH: Final = {"5201": "直接支付", "8202": "授权支付"}


def state_badge(state: str) -> Html:
    """A voucher state as a coloured badge: 已支付 PAID."""
    return h(
        '<span class="badge st-{s}" data-state="{s}">{zh} <span class="en">{s}</span></span>',
        s=state,
        zh=STATE_ZH.get(state, state),
    )


def json_attr(data: Any) -> str:
    """JSON text for a data attribute (escaped by :func:`h` like any other value)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


#: The navigation: path, permission name needed to see the link (None: everyone signed in), Chinese, English.
NAV: Final = (
    ("/overview", None, "总览", "Overview"),
    ("/transactions", None, "交易查询", "Transactions"),
    ("/cards", None, "公务卡", "Official cards"),
    ("/reconciliation", None, "对账", "Reconciliation"),
    ("/banks", None, "银行与证书", "Banks & certificates"),
    ("/audit", "audit.read", "审计日志", "Audit log"),
)


def layout(
    title_zh: str,
    title_en: str,
    body: Html,
    *,
    user: str | None,
    role: str | None,
    role_zh: str | None = None,
    csrf: str | None = None,
    active: str = "",
    can: Iterable[str] = (),
    scripts: bool = False,
) -> bytes:
    """A whole page, UTF-8 encoded."""
    can = set(can)
    nav = Html("")
    account = Html("")
    if user is not None:
        links = [
            h('<a href="{}"{}>{}</a>', path, Html(' class="active"') if path == active else Html(""), L(zh, en))
            for path, perm, zh, en in NAV
            if perm is None or perm in can
        ]
        nav = h('<nav class="nav">{}</nav>', join(links))
        account = h(
            '<div class="account"><span class="who" id="who" data-role="{role}">{user} · {role_zh} '
            '<span class="en">{role}</span></span>'
            '<form method="post" action="/logout"><input type="hidden" name="_csrf" value="{csrf}">'
            '<button type="submit" class="link">{label}</button></form></div>',
            user=user,
            role=role,
            role_zh=role_zh or "",
            csrf=csrf or "",
            label=L("退出", "Sign out"),
        )
    script = Html('<script src="/static/app.js" defer></script>') if scripts else Html("")
    page = h(
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title_zh} {title_en} · 财政支付网关</title>"
        '<link rel="stylesheet" href="/static/app.css">{script}</head>'
        '<body><header class="top"><a class="brand" href="/overview">财政银行业务数据交换平台 '
        '<span class="en">Treasury payment gateway</span></a>{nav}{account}</header>'
        "<main><h1>{heading}</h1>{body}</main></body></html>",
        title_zh=title_zh,
        title_en=title_en,
        script=script,
        nav=nav,
        account=account,
        heading=L(title_zh, title_en),
        body=body,
    )
    return page.encode("utf-8")


def message_box(kind: str, text: Html | str) -> Html:
    """A notice above the content: kind is "ok", "error" or "info"."""
    return h('<div class="notice {}" role="status">{}</div>', kind, text)


def table(
    headers: Iterable[Html | str], rows: Iterable[Iterable[object]], *, cls: str = "", empty: Html | None = None
) -> Html:
    """A table; cells are escaped unless they are :class:`Html`."""
    head = join(h("<th>{}</th>", x) for x in headers)
    body = [h("<tr>{}</tr>", join(h("<td>{}</td>", c) for c in row)) for row in rows]
    if not body and empty is not None:
        return h('<p class="empty">{}</p>', empty)
    return h('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', cls, head, join(body))
