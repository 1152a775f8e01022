"""The dashboard's web plumbing: who is signed in, what they may do, CSRF, security headers, audit, page rendering.

Every page is a :class:`Page`. Before a handler runs, :meth:`Page.render` has

1. set the security headers (a strict Content Security Policy: only this origin's script and style, no inline
   script, no frames; `nosniff`; no referrer off-site; `no-store` for pages);
2. found the session from the `tgw_session` cookie (:mod:`gateway.auth.accounts`); without one, a GET goes to
   the sign-in page and anything else gets 401;
3. for a POST, checked the form's `_csrf` against the session's token and, when the browser sends `Origin`,
   that it is this site (refused and audited otherwise);
4. checked the page's permission (:mod:`gateway.auth.roles`); actions check theirs with :meth:`Page.require`,
   which audits a refusal.

Session cookie: random token, `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when the request came over
TLS. In production the web port must be behind TLS (a terminating proxy, or a TLS port): without it the cookie
and passwords cross the network in clear text. The sign-in form itself is protected against login CSRF with a
double-submit cookie.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from twisted.internet import defer, threads
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from certs.store import PkiDirectory
from gateway.auth import accounts, passwords
from gateway.auth.accounts import SessionInfo
from gateway.auth.roles import PERMISSIONS, ROLE_LABELS, Permission, allowed
from gateway.dashboard.html import Html, L, h, layout, message_box
from gateway.metrics import GatewayMetrics

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = b"tgw_session"
LOGIN_COOKIE: Final = b"tgw_login"
#: Sign-ins hashing at once (each scrypt derivation takes 128 MiB).
LOGINS_CONCURRENT_MAX: Final = 2
FORM_FIELD_LEN_MAX: Final = 2000
STATIC_DIR: Final = Path(__file__).with_name("static")
CSP: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

Request = Any  # twisted.web.server.Request: Twisted's API is only partly typed


class Dashboard:
    """What every page shares: the hub, metrics, live feed, PKI directory, sign-in throttle."""

    def __init__(self, hub: Hub) -> None:
        from gateway.dashboard.overview import LiveFeed

        self.hub = hub
        self.tz = hub.tz
        self.metrics = GatewayMetrics(hub)
        self.pki = PkiDirectory(hub.config.ca_cert.parent)
        self.login_slots = defer.DeferredSemaphore(LOGINS_CONCURRENT_MAX)
        self.live = LiveFeed(self)

    def now(self) -> datetime:
        """Now, naive UTC, from the hub's clock."""
        return self.hub.now()

    def store(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run `fn(conn, *args)` in one transaction on the store thread."""
        return self.hub.run_in_store(fn, *args)

    def in_thread(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run blocking work (scrypt, key generation, PKI files) off the reactor thread."""
        reactor = self.hub.clock
        if hasattr(reactor, "getThreadPool"):
            return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)  # type: ignore[arg-type]
        return defer.maybeDeferred(fn, *args)  # a fake clock in unit tests

    async def session_of(self, request: Request) -> SessionInfo | None:
        token = request.getCookie(SESSION_COOKIE)
        if not token:
            return None
        found: SessionInfo | None = await self.store(
            accounts.lookup_session, token.decode("ascii", "replace"), self.now()
        )
        return found

    def audit(
        self,
        request: Request | None,
        actor: str,
        action: str,
        outcome: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> defer.Deferred[Any]:
        """Append to the audit log (errors are logged, never shown to the person acting)."""
        addr = _remote(request) if request is not None else None
        d = self.store(accounts.audit, self.now(), actor, action, outcome, target, detail or {}, addr)
        d.addErrback(lambda f: log.error("could not write the audit log: %s", f.getErrorMessage()))
        return d


def _remote(request: Request) -> str | None:
    peer = request.getClientAddress()
    return getattr(peer, "host", None)


def security_headers(request: Request, *, cache: bool = False) -> None:
    request.setHeader(b"content-security-policy", CSP)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"referrer-policy", b"same-origin")
    request.setHeader(b"cross-origin-opener-policy", b"same-origin")
    request.setHeader(b"cache-control", b"private, max-age=300" if cache else b"no-store")


def arg(request: Request, name: str, default: str = "") -> str:
    """A query or form value (first of its name), stripped, capped at :data:`FORM_FIELD_LEN_MAX` characters."""
    values = request.args.get(name.encode()) if request.args else None
    if not values:
        return default
    return str(values[0].decode("utf-8", "replace").strip()[:FORM_FIELD_LEN_MAX])


def send(request: Request, status: int, body: bytes, content_type: bytes = b"text/html; charset=utf-8") -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", str(len(body)).encode())
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def redirect(request: Request, location: str) -> None:
    """303 See Other to a path on this site."""
    request.setHeader(b"location", location.encode("utf-8"))
    send(request, 303, b"")


def safe_next(target: str) -> str:
    """Where to go after signing in: a local path only (no `//host`, no scheme), else the overview."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and ":" not in target:
        return target
    return "/overview"


class Page(Resource):
    """A dashboard page: authentication, CSRF, permission and error handling around :meth:`get` and :meth:`post`."""

    isLeaf = True
    #: What it takes to see the page at all (None: public, for the sign-in page).
    permission: Permission | None = Permission.VIEW
    title = ("", "")
    active = ""
    scripts = False

    def __init__(self, dash: Dashboard) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.dash = dash

    def render(self, request: Request) -> Any:
        security_headers(request)
        d = defer.ensureDeferred(self._serve(request))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _serve(self, request: Request) -> None:
        session = await self.dash.session_of(request)
        method = request.method
        if self.permission is not None:
            if session is None:
                if method in (b"GET", b"HEAD"):
                    redirect(request, "/login?" + urlencode({"next": request.uri.decode("utf-8", "replace")}))
                else:
                    send(request, 401, self.message_page(None, "error", L("请先登录", "Please sign in first")))
                return
            if not allowed(session.operator.role, self.permission):
                await self.refuse(request, session, self.permission, "page.view", request.path.decode())
                return
        if method == b"POST":
            if not self.csrf_ok(request, session):
                actor = session.operator.actor if session else "anonymous"
                await self.dash.audit(request, actor, "csrf", "refused", request.path.decode(), {})
                send(
                    request,
                    403,
                    self.message_page(
                        session,
                        "error",
                        L("请求已失效，请刷新页面后重试", "Form expired or forged: reload the page and try again"),
                    ),
                )
                return
            await self.post(request, session)
        elif method in (b"GET", b"HEAD"):
            await self.get(request, session)
        else:
            request.setHeader(b"allow", b"GET, HEAD, POST")
            send(request, 405, b"")

    def csrf_ok(self, request: Request, session: SessionInfo | None) -> bool:
        origin = request.getHeader(b"origin")
        if origin is not None:
            scheme = b"https" if request.isSecure() else b"http"
            host = request.getHeader(b"host") or b""
            if origin != scheme + b"://" + host:
                return False
        if session is None:
            return False
        return secrets.compare_digest(arg(request, "_csrf").encode(), session.csrf_token.encode())

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        send(request, 405, b"")

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        send(request, 405, b"")

    async def require(
        self, request: Request, session: SessionInfo, permission: Permission, action: str, target: str
    ) -> bool:
        """Whether the signed-in person may do `permission`; if not, the refusal is audited and answered 403."""
        if allowed(session.operator.role, permission):
            return True
        await self.refuse(request, session, permission, action, target)
        return False

    async def refuse(
        self, request: Request, session: SessionInfo, permission: Permission, action: str, target: str
    ) -> None:
        roles = [r.value for r, perms in PERMISSIONS.items() if permission in perms]
        await self.dash.audit(
            request,
            session.operator.actor,
            action,
            "refused",
            target,
            {"needs": permission.value, "role": session.operator.role.value},
        )
        text = h(
            '{} <span class="needs">{}</span>',
            L("权限不足：此操作需要以下角色之一", "Not permitted: this needs one of the roles"),
            ", ".join(f"{ROLE_LABELS[r]} {r.value}" for r in PERMISSIONS if r.value in roles),
        )
        send(request, 403, self.message_page(session, "error", text, refused=True))

    # --- rendering ----------------------------------------------------------------------------------------------

    def page(self, session: SessionInfo | None, body: Html, *, title: tuple[str, str] | None = None) -> bytes:
        zh, en = title or self.title
        if session is None:
            return layout(zh, en, body, user=None, role=None)
        op = session.operator
        return layout(
            zh,
            en,
            body,
            user=op.display_name if op.display_name == op.username else f"{op.display_name} ({op.username})",
            role=op.role.value,
            role_zh=ROLE_LABELS[op.role],
            csrf=session.csrf_token,
            active=self.active,
            can=[p.value for p in PERMISSIONS[op.role]],
            scripts=self.scripts,
        )

    def message_page(self, session: SessionInfo | None, kind: str, text: Html | str, *, refused: bool = False) -> bytes:
        body = message_box(kind, text)
        if refused:
            body = h(
                '<div id="refused">{}</div><p><a href="/overview">{}</a></p>',
                message_box(kind, text),
                L("返回总览", "Back to the overview"),
            )
        if refused:
            return self.page(session, body, title=("权限不足", "Not permitted"))
        return self.page(session, body, title=("出错了", "Something went wrong") if kind == "error" else None)

    def _failed(self, failure: Any, request: Request) -> None:
        log.error("dashboard page %s failed: %s", request.uri, failure.getTraceback())
        if not request.finished and not request.startedWriting:
            status = 503 if "StoreUnavailable" in failure.type.__name__ else 500
            body = self.message_page(None, "error", L("服务暂时不可用", "The gateway could not answer this request"))
            send(request, status, body)


# --- sign-in and sign-out ----------------------------------------------------------------------------------------


class Login(Page):
    """`/login`: the only page without a session."""

    permission = None
    title = ("登录", "Sign in")

    def form(self, request: Request, error: str | Html = "", username: str = "") -> bytes:
        token = secrets.token_urlsafe(24)
        request.addCookie(
            LOGIN_COOKIE, token.encode(), path=b"/login", httpOnly=True, secure=request.isSecure(), sameSite=b"Strict"
        )
        notice = message_box("error", error) if error else Html("")
        body = h(
            '<form class="login" method="post" action="/login" id="login-form">{notice}'
            '<input type="hidden" name="_csrf" value="{token}">'
            '<input type="hidden" name="next" value="{next}">'
            '<label>{user_label}<input name="username" id="username" autocomplete="username" required '
            'value="{username}"></label><label>{pass_label}<input name="password" id="password" type="password" '
            'autocomplete="current-password" required></label>'
            '<button type="submit" id="login-button">{submit}</button></form>',
            notice=notice,
            token=token,
            next=safe_next(arg(request, "next", "/overview")),
            user_label=L("用户名", "Username"),
            pass_label=L("密码", "Password"),
            username=username,
            submit=L("登录", "Sign in"),
        )
        return self.page(None, body)

    async def _serve(self, request: Request) -> None:
        if request.method == b"POST":
            await self.post(request, None)
        else:
            send(request, 200, self.form(request))

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        cookie = request.getCookie(LOGIN_COOKIE) or b""
        form_token = arg(request, "_csrf").encode()
        username = arg(request, "username").lower()[:64]
        password = arg(request, "password")
        if not cookie or not secrets.compare_digest(cookie, form_token):
            await self.dash.audit(request, "anonymous", "login", "refused", username, {"why": "csrf"})
            send(
                request,
                403,
                self.form(request, L("表单已过期，请重试", "The form expired; please try again"), username),
            )
            return
        now = self.dash.now()
        candidate: accounts.LoginCandidate = await self.dash.store(accounts.login_candidate, username, now)
        await self.dash.login_slots.acquire()
        try:
            if candidate.password_hash is None:
                await self.dash.in_thread(passwords.dummy_verify, password)
                good = False
            else:
                good = await self.dash.in_thread(passwords.verify_password, password, candidate.password_hash)
            new_hash = None
            if good and candidate.password_hash and passwords.needs_rehash(candidate.password_hash):
                new_hash = await self.dash.in_thread(passwords.hash_password, password)
        finally:
            self.dash.login_slots.release()
        op = candidate.operator
        if op is None or candidate.refusal is not None or not good:
            why = candidate.refusal or ("unknown user" if op is None else "wrong password")
            if op is not None and candidate.refusal is None:
                await self.dash.store(accounts.record_login, op.id, False, now)
            await self.dash.audit(
                request, f"operator:{username}" if op else "anonymous", "login", "refused", username, {"why": why}
            )
            text = L(
                "用户名或密码错误，或账户已停用/锁定",
                "Wrong username or password, or the account is disabled or locked",
            )
            send(request, 401, self.form(request, text, username))
            return

        def start(conn: Any) -> tuple[str, SessionInfo]:
            accounts.record_login(conn, op.id, True, now, new_hash)
            accounts.audit(conn, now, op.actor, "login", "ok", op.username, {}, _remote(request))
            return accounts.create_session(
                conn, op.id, now, _remote(request), (request.getHeader(b"user-agent") or b"").decode("utf-8", "replace")
            )

        token, _ = await self.dash.store(start)
        request.addCookie(
            SESSION_COOKIE, token.encode(), path=b"/", httpOnly=True, secure=request.isSecure(), sameSite=b"Strict"
        )
        request.addCookie(LOGIN_COOKIE, b"", path=b"/login", max_age=b"0", httpOnly=True, sameSite=b"Strict")
        redirect(request, safe_next(arg(request, "next", "/overview")))


class Logout(Page):
    """`POST /logout`: ends the session (CSRF-checked like every action)."""

    async def post(self, request: Request, session: SessionInfo | None) -> None:
        assert session is not None
        token = (request.getCookie(SESSION_COOKIE) or b"").decode("ascii", "replace")
        now = self.dash.now()

        def end(conn: Any) -> None:
            accounts.revoke_session(conn, token, now)
            accounts.audit(
                conn, now, session.operator.actor, "logout", "ok", session.operator.username, {}, _remote(request)
            )

        await self.dash.store(end)
        request.addCookie(SESSION_COOKIE, b"", path=b"/", max_age=b"0", httpOnly=True, sameSite=b"Strict")
        redirect(request, "/login")


class Home(Page):
    """`/`: to the overview."""

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        redirect(request, "/overview")


# --- static files ---------------------------------------------------------------------------------------------


#: The only files served from `static/`: name → (content type, public before signing in).
STATIC_FILES: Final = {
    b"app.css": (b"text/css; charset=utf-8", True),
    b"app.js": (b"text/javascript; charset=utf-8", False),
}


class Static(Page):
    """`/static/NAME`: the stylesheet (public: the sign-in page needs it) and the script (signed in only)."""

    permission = None

    async def _serve(self, request: Request) -> None:
        name = request.postpath[0] if len(request.postpath) == 1 else b""
        entry = STATIC_FILES.get(name)
        if entry is None or request.method not in (b"GET", b"HEAD"):
            send(request, 404, b"not found", b"text/plain")
            return
        content_type, public = entry
        if not public and await self.dash.session_of(request) is None:
            send(request, 401, b"sign in first", b"text/plain")
            return
        security_headers(request, cache=True)
        send(request, 200, (STATIC_DIR / name.decode()).read_bytes(), content_type)


# --- metrics and audit ------------------------------------------------------------------------------------------


class MetricsPage(Page):
    """`/metrics`: a signed-in session, or `Authorization: Bearer <token from tgw users metrics-token>`."""

    permission = None

    async def _serve(self, request: Request) -> None:
        from gateway import metrics

        auth = request.getHeader(b"authorization") or b""
        ok = False
        if auth.startswith(b"Bearer "):
            ok = await self.dash.store(metrics.check_token, auth[7:].decode("ascii", "replace").strip())
        elif (session := await self.dash.session_of(request)) is not None:
            ok = allowed(session.operator.role, Permission.VIEW)
        if not ok:
            request.setHeader(b"www-authenticate", b'Bearer realm="tgw-metrics"')
            send(request, 401, b"metrics: sign in, or send the token from `tgw users metrics-token`\n", b"text/plain")
            return
        await self.dash.metrics.refresh()
        send(request, 200, self.dash.metrics.exposition(), metrics.CONTENT_TYPE.encode())


class Audit(Page):
    """`/audit`: the audit log, newest first (admin)."""

    permission = Permission.AUDIT_READ
    title = ("审计日志", "Audit log")
    active = "/audit"
    PAGE: Final = 100

    async def get(self, request: Request, session: SessionInfo | None) -> None:
        from gateway.dashboard.html import local, table

        actor = arg(request, "actor")
        action = arg(request, "action")
        try:
            page_no = max(1, int(arg(request, "page", "1")))
        except ValueError:
            page_no = 1
        found = await self.dash.store(
            lambda conn: accounts.list_audit(
                conn, actor=actor or None, action=action or None, limit=self.PAGE, offset=(page_no - 1) * self.PAGE
            )
        )
        rows = [
            [
                local(e["at"], self.dash.tz),
                e["actor"],
                e["action"],
                e["target"] or "",
                h('<span class="outcome-{}">{}</span>', e["outcome"], e["outcome"]),
                ", ".join(f"{k}={v}" for k, v in sorted(e["detail"].items())),
                e["remote_addr"] or "",
            ]
            for e in found["entries"]
        ]
        form = h(
            '<form class="filters" method="get" action="/audit">'
            '<label>{}<input name="actor" value="{}"></label><label>{}<input name="action" value="{}"></label>'
            '<button type="submit">{}</button></form>',
            L("操作人", "Actor"),
            actor,
            L("操作", "Action"),
            action,
            L("筛选", "Filter"),
        )
        pager = pager_links("/audit", {"actor": actor, "action": action}, page_no, found["total"], self.PAGE)
        body = h(
            "{}<p>{} {}</p>{}{}",
            form,
            L("共", "Total"),
            found["total"],
            table(
                [
                    L("时间", "When"),
                    L("操作人", "Who"),
                    L("操作", "What"),
                    L("对象", "Target"),
                    L("结果", "Outcome"),
                    L("详情", "Detail"),
                    L("地址", "From"),
                ],
                rows,
                cls="audit",
                empty=L("没有记录", "No entries"),
            ),
            pager,
        )
        send(request, 200, self.page(session, body))


def pager_links(path: str, params: dict[str, str], page_no: int, total: int, per_page: int) -> Html:
    """Previous / next links keeping the filters."""
    pages = max(1, (total + per_page - 1) // per_page)
    keep = {k: v for k, v in params.items() if v}

    def link(n: int, label: Html) -> Html:
        return h('<a href="{}?{}">{}</a>', path, urlencode({**keep, "page": n}), label)

    prev = link(page_no - 1, L("上一页", "Previous")) if page_no > 1 else Html("")
    nxt = link(page_no + 1, L("下一页", "Next")) if page_no < pages else Html("")
    return h('<div class="pager">{} <span>{} / {}</span> {}</div>', prev, page_no, pages, nxt)


def quoted(text: str) -> str:
    """A path segment (voucher keys are URL-safe already; this keeps it so)."""
    return quote(text, safe="")
