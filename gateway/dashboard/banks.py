"""Banks and certificates: each bank's link and pinned certificates with their expiry; revoke and issue (admin).

The bank CA lives in the instance's `pki/` directory (:class:`certs.store.PkiDirectory`). Both actions run their
file and key work off the reactor thread, take effect in the running gateway at once, and are audited:

- **Revoke** (a certificate of the bank: the current one or a kept previous one) rewrites `crl.pem`, which the TLS
  listener re-reads when it changes, so new handshakes with that certificate fail; then the bank's pinned set is
  read again without it (its signatures stop verifying) and the bank's open sessions whose TLS peer presented it
  are cut at once (:meth:`gateway.hub.Hub.close_sessions`, audited as `link.close`). Sessions on the bank's other
  certificates stay up.
- **Issue** keeps the bank's current certificate under `pki/banks/CODE/previous/` (:mod:`gateway.pinning`), writes
  a new certificate and key of the same key type (the bank's dialect takes that type) to `pki/banks/CODE/`, to hand
  to the bank by a secure channel, and pins the new one beside the old one: the bank signs on with either, and
  signatures with either verify, until the old one is revoked. No restart.

A passphrase-protected CA cannot be used from the web: the page says so, and `tgw pki` does it on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509

from certs.pki import PkiError, key_type_of, parse_reason
from certs.store import PkiDirectory
from gateway import metrics, pinning
from gateway.auth.accounts import SessionInfo
from gateway.auth.roles import Permission
from gateway.dashboard.html import Html, L, h, join, local, message_box, table
from gateway.dashboard.server import Page, Request, arg, redirect, send
from gateway.hub import Hub, peer_serial

REASONS: Final = ("keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified")
CERT_WARN_DAYS: Final = 30


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a revocation did: the serial (hex), its reason, and the connections cut."""

    serial: str
    reason: str
    closed: list[str]


def _certificates(hub: Hub, code: str) -> list[x509.Certificate]:
    """The bank's certificates: the configured one, then the kept previous ones (blocking: files)."""
    return pinning.known_certificates(code, hub.config.banks[code].signing_cert)


async def revoke_certificate(
    hub: Hub, pki: PkiDirectory, in_thread: Any, code: str, serial: int, reason: str, now: datetime, actor: str
) -> Revoked:
    """Revoke one of `code`'s certificates and act on it in the running gateway (see the module docstring).

    Args:
        in_thread: runs blocking work off the reactor (:meth:`gateway.dashboard.server.Dashboard.in_thread`).

    Raises:
        PkiError: not a certificate of this bank, an unknown reason, or the CA cannot be used (nothing changed).
    """
    parse_reason(reason)
    known = await in_thread(_certificates, hub, code)
    if serial not in {c.serial_number for c in known}:
        raise PkiError(
            "the certificate changed since the page was shown (not one of this bank's); reload and try again"
        )
    await in_thread(pki.revoke, serial, reason, now)
    hub.reload_pinned(code)
    closed = hub.close_sessions(code, serial, reason=f"certificate {serial:x} revoked ({reason})", actor=actor)
    return Revoked(format(serial, "x"), reason, closed)


def _issue_keeping_previous(hub: Hub, pki: PkiDirectory, code: str, now: datetime) -> x509.Certificate:
    signing_cert = hub.config.banks[code].signing_cert
    if signing_cert.resolve() != pki.bank_cert_path(code).resolve():
        raise PkiError(
            f"{code}'s signing certificate is configured at {signing_cert}, outside the bank CA's directory: "
            "issue it with `tgw pki issue-bank` and configure it by hand"
        )
    current = pinning.keep_previous(signing_cert)
    key_type = key_type_of(current.public_key()) if current is not None else None
    return pki.issue_bank(code, key_type, now)


async def issue_certificate(hub: Hub, pki: PkiDirectory, in_thread: Any, code: str, now: datetime) -> x509.Certificate:
    """Issue `code` a new certificate and key (the current key type) and pin it beside the current one.

    Raises:
        PkiError: the CA cannot be used (passphrase-protected), or the bank's certificate lives elsewhere.
    """
    cert: x509.Certificate = await in_thread(_issue_keeping_previous, hub, pki, code, now)
    hub.reload_pinned(code)
    return cert


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
                        "证书已吊销：使用该证书的连接已断开，新连接握手失败，其签名不再通过验签",
                        "Revoked: the links on that certificate were cut, new handshakes with it fail, and its "
                        "signatures no longer verify",
                    ),
                    "issue": L(
                        "新证书已签发并立即生效（无需重启）；请安全交付银行。旧证书在吊销前仍然有效",
                        "New certificate issued and in force at once (no restart): deliver it to the bank securely. "
                        "The previous one stays valid until you revoke it",
                    ),
                }.get(done, ""),
            )
        sections = []
        for code, bank in hub.config.banks.items():
            try:
                known: list[x509.Certificate] = await self.dash.in_thread(_certificates, hub, code)
            except PkiError:
                known = []
            sessions = hub.sessions.get(code, [])
            live, open_n = len(hub.live_sessions(code)), len(sessions)
            by_serial: dict[int | None, int] = {}
            for s in sessions:
                serial_of = peer_serial(s)
                by_serial[serial_of] = by_serial.get(serial_of, 0) + 1
            pinned: frozenset[int] = getattr(hub.verifiers.get(code), "serials", frozenset())
            if not known:
                cert_html: Html = message_box(
                    "error", L("证书文件缺失或无法读取", "Certificate file missing or unreadable")
                )
                serial_hex = ""
            else:
                current = known[0]
                days = (current.not_valid_after_utc.replace(tzinfo=None) - now).total_seconds() / 86400
                serial_hex = format(current.serial_number, "x")
                cert_html = h(
                    '<dl class="facts"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd><code>{}</code></dd><dt>{}</dt><dd>{}</dd>'
                    '<dt>{}</dt><dd class="{}" id="days-{}">{} ({} {})</dd><dt>{}</dt><dd>{}</dd></dl>',
                    L("主题", "Subject"),
                    current.subject.rfc4514_string(),
                    L("序列号", "Serial"),
                    serial_hex,
                    L("生效", "Valid from"),
                    local(current.not_valid_before_utc.replace(tzinfo=None), self.dash.tz, "%Y-%m-%d"),
                    L("到期", "Expires"),
                    "warn" if days < CERT_WARN_DAYS else "",
                    code,
                    local(current.not_valid_after_utc.replace(tzinfo=None), self.dash.tz, "%Y-%m-%d"),
                    int(days),
                    L("天", "days left"),
                    L("吊销状态", "Revocation"),
                    self._revocation(current.serial_number, revoked),
                )
            reasons = join(h('<option value="{}">{}</option>', r, r) for r in REASONS)
            older = [  # the kept previous certificates not revoked yet (revoked ones are in the CRL below)
                [
                    h("<code>{}</code>", format(c.serial_number, "x")),
                    local(c.not_valid_before_utc.replace(tzinfo=None), self.dash.tz, "%Y-%m-%d"),
                    local(c.not_valid_after_utc.replace(tzinfo=None), self.dash.tz, "%Y-%m-%d"),
                    L("验签有效", "pinned") if c.serial_number in pinned else L("未固定", "not pinned"),
                    by_serial.get(c.serial_number, 0),
                    h(
                        '<form method="post" action="/banks/{c}/revoke" class="action inline">'
                        '<input type="hidden" name="_csrf" value="{t}"><input type="hidden" name="serial" value="{s}">'
                        '<input type="hidden" name="reason" value="superseded">'
                        '<button type="submit" class="danger" id="revoke-{c}-{s}">{b}</button></form>',
                        c=code,
                        t=session.csrf_token,
                        s=format(c.serial_number, "x"),
                        b=L("吊销（已被取代）", "Revoke (superseded)"),
                    ),
                ]
                for c in known[1:]
                if c.serial_number not in revoked
            ]
            previous_html = (
                h(
                    '<h3>{}</h3><p class="hint">{}</p>{}',
                    L("以前的证书（吊销前仍有效）", "Previous certificates (valid until revoked)"),
                    L(
                        "银行换用新证书后，请吊销旧证书",
                        "Revoke a previous certificate once the bank has moved to the new one",
                    ),
                    table(
                        [
                            L("序列号", "Serial"),
                            L("生效", "Valid from"),
                            L("到期", "Expires"),
                            L("验签", "Signatures"),
                            L("连接", "Sessions"),
                            "",
                        ],
                        older,
                        cls="previous-certs",
                    ),
                )
                if older
                else Html("")
            )
            current_sessions = by_serial.get(known[0].serial_number, 0) if known else 0
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
                    "<p>{} {} / {} <small>({} {})</small></p>{}{}{}</section>",
                    code,
                    code,
                    bank.name,
                    bank.dialect,
                    L("会话 已签到/已连接", "Sessions signed on / open"),
                    live,
                    open_n,
                    L("使用当前证书", "on the current certificate"),
                    current_sessions,
                    cert_html,
                    previous_html,
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

    def _revocation(self, serial: int, revoked: dict[int, Any]) -> Html:
        if serial in revoked:
            return h(
                '<span class="bad">{} {}</span>',
                L("已吊销", "revoked"),
                local(revoked[serial].revoked_at.replace(tzinfo=None), self.dash.tz),
            )
        return L("有效", "not revoked")

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
        hub, actor = self.dash.hub, session.operator.actor
        now = datetime.fromtimestamp(hub.clock.seconds(), UTC)
        detail: dict[str, Any] = {}
        try:
            if action == "revoke":
                reason = arg(request, "reason", "unspecified")
                detail = {"serial": arg(request, "serial"), "reason": reason}
                serial = int(arg(request, "serial"), 16)
                done = await revoke_certificate(
                    hub, self.dash.pki, self.dash.in_thread, code, serial, reason, now, actor
                )
                detail = {"serial": done.serial, "reason": done.reason, "sessions_closed": done.closed}
            else:
                cert = await issue_certificate(hub, self.dash.pki, self.dash.in_thread, code, now)
                detail = {"serial": format(cert.serial_number, "x"), "not_after": cert.not_valid_after_utc.isoformat()}
        except (PkiError, ValueError) as exc:
            await self.dash.audit(request, actor, f"cert.{action}", "failed", code, {**detail, "error": str(exc)})
            await self.get(
                request,
                session,
                notice=message_box("error", h("{}: {}", L("未完成", "Not done"), str(exc))),
                status=409,
            )
            return
        await self.dash.audit(request, actor, f"cert.{action}", "ok", code, detail)
        redirect(request, f"/banks?done={action}")
