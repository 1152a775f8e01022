"""Banks and certificates: each bank's link and pinned certificate with its expiry; revoke and issue (admin).

The bank CA lives in the instance's `pki/` directory (:class:`certs.store.PkiDirectory`). Revoking rewrites
`crl.pem`, which the TLS listener re-reads when it changes: new connections with the revoked certificate fail
the handshake at once. Issuing writes a new certificate and key for the bank under `pki/banks/CODE/`, to hand to
the bank by a secure channel; the gateway verifies a bank's signatures with the certificate it pinned when it
started, so the new one is used for signatures after a restart (see the page's note). Both run off the reactor
thread (key generation and file locks) and are audited. A passphrase-protected CA cannot be used from the web:
the page says so, and `tgw pki` does it on the host.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509

from certs.pki import PkiError, parse_reason
from gateway import metrics
from gateway.auth.accounts import SessionInfo
from gateway.auth.roles import Permission
from gateway.dashboard.html import Html, L, h, join, local, message_box, table
from gateway.dashboard.server import Page, Request, arg, redirect, send

REASONS: Final = ("keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified")
CERT_WARN_DAYS: Final = 30


class Banks(Page):
    """`/banks`, `POST /banks/CODE/revoke`, `POST /banks/CODE/issue`."""

    title = ("银行与证书", "Banks & certificates")
    active = "/banks"

    async def get(
        self, request: Request, session: SessionInfo | None, notice: Html | None = None, status: int = 200
    ) -> None:
        assert session is not None
        hub = self.dash.hub
        now = hub.now()
        try:
            revoked = {e.serial: e for e in await self.dash.in_thread(self.dash.pki.revoked_entries)}
        except PkiError:
            revoked = {}
        done = arg(request, "done")
        if notice is None and done:
            notice = message_box(
                "ok",
                {
                    "revoke": L(
                        "证书已吊销，新的吊销列表已生效", "Revoked; the new CRL is in force for new connections"
                    ),
                    "issue": L(
                        "新证书已签发；请安全交付银行。网关重启后用新证书验签",
                        "New certificate issued: deliver it to the bank securely; signatures are checked with it "
                        "after the gateway restarts",
                    ),
                }.get(done, ""),
            )
        sections = []
        for code, bank in hub.config.banks.items():
            info = metrics.read_cert("bank", code, bank.signing_cert)
            live, open_n = len(hub.live_sessions(code)), len(hub.sessions.get(code, []))
            if info is None:
                cert_html: Html = message_box(
                    "error", L("证书文件缺失或无法读取", "Certificate file missing or unreadable")
                )
                serial_hex = ""
            else:
                days = info.days_left(now)
                serial_hex = format(info.serial, "x")
                cert_html = h(
                    '<dl class="facts"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd><code>{}</code></dd><dt>{}</dt><dd>{}</dd>'
                    '<dt>{}</dt><dd class="{}" id="days-{}">{} ({} {})</dd><dt>{}</dt><dd>{}</dd></dl>',
                    L("主题", "Subject"),
                    info.subject,
                    L("序列号", "Serial"),
                    serial_hex,
                    L("生效", "Valid from"),
                    local(info.not_before, self.dash.tz, "%Y-%m-%d"),
                    L("到期", "Expires"),
                    "warn" if days < CERT_WARN_DAYS else "",
                    code,
                    local(info.not_after, self.dash.tz, "%Y-%m-%d"),
                    int(days),
                    L("天", "days left"),
                    L("吊销状态", "Revocation"),
                    h(
                        '<span class="bad">{} {}</span>',
                        L("已吊销", "revoked"),
                        local(revoked[info.serial].revoked_at, self.dash.tz),
                    )
                    if info.serial in revoked
                    else L("有效", "not revoked"),
                )
            reasons = join(h('<option value="{}">{}</option>', r, r) for r in REASONS)
            actions = h(
                '<form method="post" action="/banks/{c}/revoke" class="action">'
                '<input type="hidden" name="_csrf" value="{t}"><input type="hidden" name="serial" value="{s}">'
                '<label>{rl}<select name="reason">{r}</select></label>'
                '<button type="submit" class="danger" id="revoke-{c}">{rb}</button></form>'
                '<form method="post" action="/banks/{c}/issue" class="action">'
                '<input type="hidden" name="_csrf" value="{t}">'
                '<button type="submit" id="issue-{c}">{ib}</button> <small class="needs-role">{n}</small></form>',
                c=code,
                t=session.csrf_token,
                s=serial_hex,
                rl=L("原因", "Reason"),
                r=reasons,
                rb=L("吊销当前证书", "Revoke the current certificate"),
                ib=L("签发新证书", "Issue a new certificate"),
                n=L("需管理员权限", "needs admin"),
            )
            sections.append(
                h(
                    '<section class="card" id="bank-{}"><h2>{} <small>{} · {}</small></h2>'
                    "<p>{} {} / {}</p>{}{}</section>",
                    code,
                    code,
                    bank.name,
                    bank.dialect,
                    L("会话 已签到/已连接", "Sessions signed on / open"),
                    live,
                    open_n,
                    cert_html,
                    actions,
                )
            )
        own = [
            metrics.read_cert(n, "", p)
            for n, p in (("gateway-tls", hub.config.tls_cert), ("gateway-signing", hub.config.signing_cert))
        ]
        own_table = table(
            [L("证书", "Certificate"), L("主题", "Subject"), L("到期", "Expires"), L("剩余天数", "Days left")],
            [
                [c.name, c.subject, local(c.not_after, self.dash.tz, "%Y-%m-%d"), int(c.days_left(now))]
                for c in own
                if c
            ],
        )
        revoked_table = table(
            [L("序列号", "Serial"), L("吊销时间", "Revoked at"), L("原因", "Reason")],
            [
                [format(e.serial, "x"), local(e.revoked_at.replace(tzinfo=None), self.dash.tz), e.reason.value]
                for e in revoked.values()
            ],
            empty=L("没有吊销记录", "Nothing revoked"),
        )
        body = h(
            '{}<div class="grid">{}</div><section class="card wide"><h2>{}</h2>{}</section>'
            '<section class="card wide"><h2>{}</h2>{}</section>',
            notice or Html(""),
            join(sections),
            L("网关自身证书", "The gateway's own certificates"),
            own_table,
            L("吊销列表", "Revocation list"),
            revoked_table,
        )
        send(request, status, self.page(session, body))

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        assert session is not None
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        if len(parts) != 2 or parts[0] not in self.dash.hub.config.banks or parts[1] not in ("revoke", "issue"):
            send(request, 404, self.message_page(session, "error", L("没有这个操作", "No such action")))
            return
        code, action = parts
        permission = Permission.CERT_REVOKE if action == "revoke" else Permission.CERT_ISSUE
        if not await self.require(request, session, permission, f"cert.{action}", code):
            return
        now = datetime.fromtimestamp(self.dash.hub.clock.seconds(), UTC)
        pki = self.dash.pki
        detail: dict[str, Any] = {}
        try:
            if action == "revoke":
                reason = arg(request, "reason", "unspecified")
                serial = int(arg(request, "serial"), 16)
                current = metrics.read_cert("bank", code, self.dash.hub.config.banks[code].signing_cert)
                if current is None or current.serial != serial:
                    raise PkiError("the certificate changed since the page was shown; reload and try again")
                parse_reason(reason)
                detail = {"serial": format(serial, "x"), "reason": reason}
                await self.dash.in_thread(pki.revoke, serial, reason, now)
            else:
                cert: x509.Certificate = await self.dash.in_thread(pki.issue_bank, code, None, now)
                detail = {"serial": format(cert.serial_number, "x"), "not_after": cert.not_valid_after_utc.isoformat()}
        except (PkiError, ValueError) as exc:
            await self.dash.audit(
                request, session.operator.actor, f"cert.{action}", "failed", code, {**detail, "error": str(exc)}
            )
            await self.get(
                request,
                session,
                notice=message_box("error", h("{}: {}", L("未完成", "Not done"), str(exc))),
                status=409,
            )
            return
        await self.dash.audit(request, session.operator.actor, f"cert.{action}", "ok", code, detail)
        redirect(request, f"/banks?done={action}")
