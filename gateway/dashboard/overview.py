"""The overview page and its live feed over server-sent events (`/events`), fed by the hub's listeners.

The hub calls its listeners with ("voucher", {key, bank, state, amount_fen…}) and ("link", {bank, sessions});
:class:`LiveFeed` relays each to every open `/events` stream at once, and shortly after (debounced by
:data:`SUMMARY_DELAY_S`) re-reads the numbers from the store and pushes the overview's fragments, rendered here
(escaped, the same HTML the page was served with), which the page's small script swaps in. So the browser never
builds markup from data, and a page without script still shows a correct overview when loaded.

Payments per minute are counted from this node's events (a sliding window); everything else comes from the
database. Streams send a comment every :data:`HEARTBEAT_S` (proxies keep them open, dead ones are noticed) and
re-check the session every :data:`SESSION_RECHECK_S`: a stream ends when its session does.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection
from twisted.internet import defer
from twisted.internet.task import LoopingCall

from gateway import metrics
from gateway.auth.accounts import SessionInfo
from gateway.dashboard import charts, providers, reconciliation
from gateway.dashboard.html import STATE_ORDER, Html, L, h, join, local, state_badge, table, yuan
from gateway.dashboard.server import Page, Request, security_headers, send
from gateway.payments import queries
from gateway.store.tables import archive, outbox, vouchers

if TYPE_CHECKING:
    from gateway.dashboard.server import Dashboard

log = logging.getLogger(__name__)

SUMMARY_DELAY_S: Final = 0.5
HEARTBEAT_S: Final = 15.0
SESSION_RECHECK_S: Final = 60.0
STREAMS_MAX: Final = 200
RECENT_MAX: Final = 30
IN_DOUBT_SHOWN: Final = 20
CERT_WARN_DAYS: Final = 30


# --- the numbers (store thread) --------------------------------------------------------------------------------


def overview_data(conn: Connection, banks: list[str], day_start: datetime) -> dict[str, Any]:
    """Everything the overview shows from the database; `day_start` is local midnight as naive UTC."""
    o, v, a = outbox.c, vouchers.c, archive.c
    queue = {
        (bank, state): n
        for bank, state, n in conn.execute(
            select(o.bank_code, o.state, func.count())
            .where(o.state.in_(("PENDING", "SENT")))
            .group_by(o.bank_code, o.state)
        )
    }
    in_doubt = [
        queries.summary(r)
        for r in conn.execute(
            select(vouchers).where(v.state == "IN_DOUBT").order_by(v.updated_at).limit(IN_DOUBT_SHOWN)
        ).mappings()
    ]
    in_doubt_total = conn.execute(select(func.count()).select_from(vouchers).where(v.state == "IN_DOUBT")).scalar_one()
    last_in = {}
    for bank in banks:
        last_in[bank] = conn.execute(
            select(a.at).where(a.bank_code == bank, a.direction == "in").order_by(a.id.desc()).limit(1)
        ).scalar_one_or_none()
    hours = [day_start + timedelta(hours=n) for n in range(25)]
    columns = []
    for n in range(24):
        within = (v.created_at >= hours[n]) & (v.created_at < hours[n + 1])
        paid = (v.state == "PAID") & (v.updated_at >= hours[n]) & (v.updated_at < hours[n + 1])
        columns += [func.sum(case((within, 1), else_=0)), func.sum(case((paid, 1), else_=0))]
    row = conn.execute(select(*columns).where(v.created_at >= day_start)).one()
    submitted = [int(row[2 * n] or 0) for n in range(24)]
    paid_hourly = [int(row[2 * n + 1] or 0) for n in range(24)]
    return {
        "counts": queries.counts(conn),
        "queue": queue,
        "in_doubt": in_doubt,
        "in_doubt_total": in_doubt_total,
        "last_in": last_in,
        "submitted": submitted,
        "paid": paid_hourly,
    }


# --- rendering --------------------------------------------------------------------------------------------------


def _tile(tile_id: str, label: Html, value: object, note: Html | str = "") -> Html:
    return h(
        '<div class="tile" id="{}"><div class="tile-label">{}</div><div class="tile-value">{}</div>'
        '<div class="tile-note">{}</div></div>',
        tile_id,
        label,
        value,
        note,
    )


async def fragments(dash: Dashboard) -> dict[str, Html]:
    """The overview's live parts, by element id."""
    hub = dash.hub
    banks = list(hub.config.banks)
    local_now = datetime.fromtimestamp(hub.clock.seconds(), dash.tz)
    midnight = datetime.combine(local_now.date(), time(0), dash.tz)
    day_start = _naive_utc(midnight)
    data = await dash.store(overview_data, banks, day_start)
    cards = providers.cards_of(hub)
    recon = providers.reconciliation_of(hub)
    cards_due: list[dict[str, Any]] | None = None
    recon_runs: list[dict[str, Any]] | None = None
    if cards is not None:
        cards_due = await dash.store(
            lambda conn: cards.repayments(conn, due_before=local_now.date() + timedelta(days=3), overdue_on=None)
        )
    if recon is not None:
        recon_runs = await dash.store(recon.latest)
    counts: dict[str, dict[str, int]] = data["counts"]
    totals = {s: sum(c.get(s, 0) for c in counts.values()) for s in STATE_ORDER}
    per_min, per_5min = dash.live.paid_rate()
    pending = sum(n for (_, st), n in data["queue"].items() if st == "PENDING")
    unacked = sum(n for (_, st), n in data["queue"].items() if st == "SENT")
    na = L("尚未接入", "not yet available")
    kpis = join(
        [
            _tile(
                "kpi-rate",
                L("每分钟支付", "Payments / min"),
                per_min,
                h("{} {}", L("近5分钟均值", "5-min avg"), f"{per_5min:.1f}"),
            ),
            _tile(
                "kpi-today",
                L("今日凭证", "Vouchers today"),
                sum(data["submitted"]),
                h("{} {}", L("已支付", "paid"), sum(data["paid"])),
            ),
            _tile(
                "kpi-queue", L("待发送队列", "Queue depth"), pending, h("{} {}", L("未确认", "unacknowledged"), unacked)
            ),
            _tile("kpi-doubt", L("状态待查", "In doubt"), data["in_doubt_total"], L("需向银行查询", "ask the bank")),
            _tile(
                "kpi-cards",
                L("公务卡待还款", "Card repayments due"),
                len(cards_due) if cards_due is not None else "—",
                L("三日内到期", "due within 3 days") if cards_due is not None else na,
            ),
            _tile("kpi-recon", L("昨日对账", "Last night's reconciliation"), *reconciliation.overview_kpi(recon_runs)),
        ]
    )
    now = hub.now()
    certs = {c.bank: c for c in metrics.certificates(hub) if c.name == "bank"}
    rows = []
    for code in banks:
        live = len(hub.live_sessions(code))
        open_n = len(hub.sessions.get(code, []))
        status = (
            h('<span class="badge up">{}</span>', L("在线", "online"))
            if live
            else h('<span class="badge down">{}</span>', L("离线", "offline"))
        )
        cert = certs.get(code)
        if cert is None:
            cert_cell: Html = h('<span class="warn">{}</span>', L("证书缺失", "missing"))
        else:
            days = cert.days_left(now)
            cert_cell = h(
                '<span class="{}">{} ({} {})</span>',
                "warn" if days < CERT_WARN_DAYS else "",
                local(cert.not_after, dash.tz, "%Y-%m-%d"),
                int(days),
                L("天", "days"),
            )
        rows.append(
            [
                h("<b>{}</b> {}", code, hub.config.banks[code].name if hub.config.banks[code].name != code else ""),
                status,
                f"{live} / {open_n}",
                local(data["last_in"].get(code), dash.tz) or "—",
                cert_cell,
                data["queue"].get((code, "PENDING"), 0),
                data["queue"].get((code, "SENT"), 0),
            ]
        )
    bank_table = table(
        [
            L("银行", "Bank"),
            L("链路", "Link"),
            L("会话 已签到/已连接", "Sessions signed on / open"),
            L("最后报文", "Last message"),
            L("证书到期", "Certificate expiry"),
            L("待发送", "Queued"),
            L("未确认", "Unacked"),
        ],
        rows,
        cls="banks",
    )
    state_table = table(
        [L("状态", "State"), L("笔数", "Count")],
        [[state_badge(s), totals[s]] for s in STATE_ORDER if totals[s]],
        cls="states",
        empty=L("暂无凭证", "No vouchers yet"),
    )
    doubt_rows = [
        [
            h('<a href="/vouchers/{}">{}</a>', d["key"], d["key"]),
            d["bank"],
            h('<span class="amount">{}</span>', yuan(d["amount_fen"])),
            local(d["updated_at"], dash.tz),
        ]
        for d in data["in_doubt"]
    ]
    doubt = table(
        [L("凭证", "Voucher"), L("银行", "Bank"), L("金额", "Amount"), L("自", "Since")],
        doubt_rows,
        empty=L("没有状态待查的凭证", "Nothing in doubt"),
    )
    if cards_due is None:
        cards_html = h(
            '<p class="na">{}</p>', L("公务卡服务尚未接入", "The official-card service is not yet available")
        )
    else:
        cards_html = table(
            [L("持卡人", "Holder"), L("单位", "Agency"), L("金额", "Amount"), L("还款期限", "Due")],
            [[c["holder"], c["agency_code"], yuan(c["amount_fen"]), c["due_date"]] for c in cards_due[:10]],
            empty=L("近期无到期还款", "Nothing due soon"),
        )
    recon_html = reconciliation.overview_tile(recon_runs)
    return {
        "kpis": kpis,
        "bank-links": bank_table,
        "state-counts": state_table,
        "chart-throughput": charts.throughput(data["submitted"], data["paid"], local_now.hour),
        "chart-states": charts.states_by_bank(counts, banks),
        "in-doubt": doubt,
        "cards-due": cards_html,
        "recon-last": recon_html,
    }


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


class Overview(Page):
    """`/overview`: the day at a glance, kept current by `/events`."""

    title = ("总览", "Overview")
    active = "/overview"
    scripts = True

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        parts = await fragments(self.dash)

        def section(zh: str, en: str, element: str, cls: str = "") -> Html:
            return h(
                '<section class="card {}"><h2>{}</h2><div id="{}">{}</div></section>',
                cls,
                L(zh, en),
                element,
                parts[element],
            )

        body = h(
            '<div id="live" data-live="1"><span id="live-status" class="live-off">{}</span></div>'
            '<div class="tiles" id="kpis">{}</div>'
            '<div class="grid">{}{}{}{}{}{}{}'
            '<section class="card wide"><h2>{}</h2><ul id="feed" class="feed"></ul></section></div>',
            L("实时连接中…", "connecting…"),
            parts["kpis"],
            section("银行链路", "Bank links", "bank-links", "wide"),
            section("今日吞吐量（按小时）", "Throughput today, by hour", "chart-throughput", "wide"),
            section("各银行凭证状态", "Voucher states by bank", "chart-states", "wide"),
            section("凭证状态", "Vouchers by state", "state-counts"),
            section("状态待查", "In doubt", "in-doubt"),
            section("公务卡还款", "Card repayments due", "cards-due"),
            section("昨日对账", "Last night's reconciliation", "recon-last"),
            L("实时动态", "Live activity"),
        )
        send(request, 200, self.page(session, body))


# --- the live feed ----------------------------------------------------------------------------------------------


class Stream:
    """One open `/events` response."""

    def __init__(self, request: Request, session_token: str) -> None:
        self.request = request
        self.session_token = session_token
        self.closed = False

    def send(self, event: str, data: Any) -> None:
        if self.closed:
            return
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
        self.request.write(f"event: {event}\ndata: {payload}\n\n".encode())

    def comment(self, text: str) -> None:
        if not self.closed:
            self.request.write(f": {text}\n\n".encode())

    def close(self, *, disconnect: bool = False) -> None:
        """End the response (a browser would reconnect after `retry`); with `disconnect`, close the connection
        too (the gateway is stopping: an idle keep-alive connection must not hold it up)."""
        channel = getattr(self.request, "channel", None)  # finishing a request lets go of its channel
        if not self.closed:
            self.closed = True
            if not self.request.finished and not getattr(self.request, "_disconnected", False):
                self.request.finish()
        if disconnect and channel is not None:
            channel.loseConnection()  # after what was written (the end of the chunked response) is flushed


class LiveFeed:
    """Relays hub events to the open streams and pushes fresh overview fragments after them."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.clock = dash.hub.clock
        self.streams: set[Stream] = set()
        self.stopped = False  # closed with the gateway: no new streams
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self._paid: deque[float] = deque()
        self._summary: Any = None
        self._summary_running = False
        self._heartbeat = LoopingCall(self.heartbeat)
        self._heartbeat.clock = self.clock
        self._beats = 0
        dash.hub.listeners.append(self.on_event)

    def close(self) -> None:
        """Stop listening, end every open stream and close its connection (:meth:`gateway.app.Running.stop`
        calls this, so that a gateway with browsers watching stops at once)."""
        self.stopped = True
        if self.on_event in self.dash.hub.listeners:
            self.dash.hub.listeners.remove(self.on_event)
        for stream in list(self.streams):
            try:
                stream.close(disconnect=True)
            except Exception as exc:  # one broken connection must not keep the others open
                log.warning("could not end a live stream: %s", exc)
        self.streams.clear()
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._summary is not None and self._summary.active():
            self._summary.cancel()

    def paid_rate(self) -> tuple[int, float]:
        """Payments seen in the last minute, and the average per minute over the last five."""
        now = self.clock.seconds()
        while self._paid and self._paid[0] < now - 300:
            self._paid.popleft()
        last_min = sum(1 for t in self._paid if t >= now - 60)
        return last_min, len(self._paid) / 5

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "voucher":
            item = {
                "key": str(data.get("key", "")),
                "bank": str(data.get("bank", "")),
                "state": str(data.get("state", "")),
                "amount": yuan(data["amount_fen"]) if isinstance(data.get("amount_fen"), int) else "",
                "at": local(self.dash.hub.now(), self.dash.tz, "%H:%M:%S"),
            }
            if item["state"] == "PAID":
                self._paid.append(self.clock.seconds())
            self.recent.appendleft(item)
            self.broadcast("voucher", item)
        elif kind == "link":
            self.broadcast("link", {"bank": str(data.get("bank", "")), "sessions": data.get("sessions", 0)})
        else:
            return
        self.schedule_summary()

    def broadcast(self, event: str, data: Any) -> None:
        for stream in list(self.streams):
            try:
                stream.send(event, data)
            except Exception:  # a connection that went away between two writes
                self.detach(stream)

    def schedule_summary(self) -> None:
        if not self.streams or (self._summary is not None and self._summary.active()):
            return
        self._summary = self.clock.callLater(SUMMARY_DELAY_S, self.push_summary)

    def push_summary(self) -> defer.Deferred[None] | None:
        if self._summary_running:  # one reading at a time; the next event schedules another
            self._summary = self.clock.callLater(SUMMARY_DELAY_S, self.push_summary)
            return None
        self._summary_running = True

        async def run() -> None:
            try:
                parts = await fragments(self.dash)
                self.broadcast("summary", {"fragments": {k: str(v) for k, v in parts.items()}})
            finally:
                self._summary_running = False

        d = defer.ensureDeferred(run())
        d.addErrback(lambda f: log.error("overview refresh failed: %s", f.getErrorMessage()))
        return d

    def attach(self, stream: Stream) -> None:
        self.streams.add(stream)
        if not self._heartbeat.running:
            self._heartbeat.start(HEARTBEAT_S, now=False)

    def detach(self, stream: Stream) -> None:
        self.streams.discard(stream)
        stream.closed = True
        if not self.streams and self._heartbeat.running:
            self._heartbeat.stop()

    def heartbeat(self) -> None:
        self._beats += 1
        recheck = self._beats % max(1, int(SESSION_RECHECK_S // HEARTBEAT_S)) == 0
        for stream in list(self.streams):
            stream.comment("ping")
            if recheck:
                self._recheck(stream)

    def _recheck(self, stream: Stream) -> None:
        from gateway.auth import accounts

        d = self.dash.store(accounts.lookup_session, stream.session_token, self.dash.now())

        def check(found: Any) -> None:
            if found is None:
                stream.send("signed-out", {})
                self.detach(stream)
                stream.request.finish()

        d.addCallbacks(check, lambda f: log.warning("session re-check failed: %s", f.getErrorMessage()))


class Events(Page):
    """`/events`: the server-sent event stream of the overview."""

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        from gateway.dashboard.server import SESSION_COOKIE

        live = self.dash.live
        if live.stopped:
            send(request, 503, b"the gateway is stopping", b"text/plain")
            return
        if len(live.streams) >= STREAMS_MAX:
            send(request, 503, b"too many live streams", b"text/plain")
            return
        security_headers(request)
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"x-accel-buffering", b"no")
        stream = Stream(request, (request.getCookie(SESSION_COOKIE) or b"").decode("ascii", "replace"))
        request.write(b"retry: 3000\n\n")
        live.attach(stream)
        for item in reversed(live.recent):
            stream.send("voucher", item)
        request.notifyFinish().addBoth(lambda _: live.detach(stream))
        live.schedule_summary()
