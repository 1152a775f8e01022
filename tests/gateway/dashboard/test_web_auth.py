"""The dashboard's gatekeeping, request by request, on SQLite and PostgreSQL: sign-in (with login CSRF), session
cookie flags, pages behind the session, CSRF and Origin checks on actions, roles, audit, /metrics access, escaping.

The hub runs on the fake clock with the synchronous store (tests/gateway/conftest.py), so each request completes
inside `render`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from gateway import metrics
from gateway.auth import accounts
from gateway.auth.passwords import ScryptParams, hash_password
from gateway.dashboard import mount
from gateway.dashboard.server import Dashboard
from gateway.hub import Hub
from gateway.payments import service
from protocols import samples

PASSWORD = "correct horse battery"
FAST = ScryptParams(n=2**10, r=8, p=1)


class Req(DummyRequest):
    """A request as Twisted's Site would hand it to the page, with cookies and headers."""

    def __init__(
        self,
        method: str,
        path: str,
        args: dict[str, str] | None = None,
        *,
        cookies: dict[bytes, bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        route, _, query = path.partition("?")
        segments = route.lstrip("/").split("/")
        super().__init__([s.encode() for s in segments[1:]])
        self.prepath = [segments[0].encode()]
        self.method = method.encode()
        self.uri = path.encode()
        self.path = route.encode()
        self.args = {}
        for pair in filter(None, query.split("&")):
            k, _, v = pair.partition("=")
            self.args[k.encode()] = [v.encode()]
        for k, v in (args or {}).items():
            self.args[k.encode()] = [v.encode()]
        self.received_cookies = dict(cookies or {})
        self.set_cookies: dict[bytes, tuple[bytes, dict[str, Any]]] = {}
        for k, v in (headers or {}).items():
            self.requestHeaders.setRawHeaders(k.encode(), [v.encode()])
        self.startedWriting = False

    def getCookie(self, key: bytes) -> bytes | None:
        return self.received_cookies.get(key)

    def addCookie(self, k: bytes, v: bytes, **kwargs: Any) -> None:
        self.set_cookies[k] = (v, kwargs)

    def isSecure(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.startedWriting = True
        super().write(data)

    @property
    def body(self) -> str:
        return b"".join(self.written).decode("utf-8")

    def header(self, name: str) -> str | None:
        values = self.responseHeaders.getRawHeaders(name.encode())
        return values[0].decode() if values else None


@pytest.fixture
def site(hub: Hub) -> Iterator[tuple[Resource, Dashboard]]:
    root = mount(Resource(), hub)
    dash: Dashboard = root.dashboard  # type: ignore[attr-defined]
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("anna", "approver"), ("adam", "admin")):
        hub.db.run(
            lambda conn, n=name, r=role: accounts.create_operator(
                conn, n, n.title(), r, hash_password(PASSWORD, FAST), hub.now()
            )
        )
    yield root, dash
    dash.live.close()
    dash.metrics.close()


def serve(root: Resource, req: Req) -> Req:
    page = root.children[req.prepath[0]]
    page.render(req)
    assert req.finished, "the store is synchronous here: every request completes at once"
    return req


def audit(hub: Hub) -> list[tuple[str, str, str]]:
    page = hub.db.run(accounts.list_audit).result
    return [(e["actor"], e["action"], e["outcome"]) for e in reversed(page["entries"])]


def sign_in(root: Resource, username: str, password: str = PASSWORD) -> dict[bytes, bytes]:
    form = serve(root, Req("GET", "/login"))
    login_token, flags = form.set_cookies[b"tgw_login"]
    assert flags["httpOnly"] and flags["sameSite"] == b"Strict"
    csrf = re.search(r'name="_csrf" value="([^"]+)"', form.body)
    assert csrf is not None and csrf.group(1).encode() == login_token
    done = serve(
        root,
        Req(
            "POST",
            "/login",
            {"_csrf": csrf.group(1), "username": username, "password": password, "next": "/transactions"},
            cookies={b"tgw_login": login_token},
        ),
    )
    assert done.responseCode == 303, done.body
    assert done.header("location") == "/transactions"
    token, flags = done.set_cookies[b"tgw_session"]
    assert flags["httpOnly"] and flags["sameSite"] == b"Strict" and flags["path"] == b"/" and not flags["secure"]
    return {b"tgw_session": token}


def csrf_of(root: Resource, cookies: dict[bytes, bytes]) -> str:
    page = serve(root, Req("GET", "/overview", cookies=cookies))
    found = re.search(r'name="_csrf" value="([^"]+)"', page.body)
    assert found is not None
    return found.group(1)


def submit(hub: Hub, no: str, bank: str = "CCB", **changes: Any) -> str:
    voucher = dataclasses.replace(samples.direct_voucher(), voucher_no=no, **changes)
    [done] = hub.db.run(
        service.submit, [(bank, voucher)], "finance:test", hub.now(), hub.config.node, list(hub.config.banks)
    ).result
    return str(done.key)


def state(hub: Hub, key: str) -> str:
    from gateway.payments import queries
    from protocols.messages import VoucherKey

    return str(hub.db.run(queries.get_voucher, VoucherKey.parse(key)).result["state"])


def test_everything_but_sign_in_needs_a_session(site: tuple[Resource, Dashboard]) -> None:
    root, _ = site
    for path in ("/overview", "/transactions", "/banks", "/cards", "/reconciliation", "/audit", "/events", "/"):
        req = serve(root, Req("GET", path))
        assert req.responseCode == 303 and req.header(
            "location",
        ).startswith("/login?next="), path  # type: ignore[union-attr]
    assert serve(root, Req("POST", "/vouchers/450100-2026-5201-X/cancel")).responseCode == 401
    assert serve(root, Req("GET", "/metrics")).responseCode == 401
    assert serve(root, Req("GET", "/static/app.js")).responseCode == 401
    css = serve(root, Req("GET", "/static/app.css"))
    assert css.responseCode == 200 and "Noto Sans CJK SC" in css.body
    login = serve(root, Req("GET", "/login"))
    assert login.responseCode == 200 and "登录" in login.body
    assert "script-src 'self'" in (login.header("content-security-policy") or "")
    assert login.header("x-frame-options") == "DENY" and login.header("cache-control") == "no-store"


def test_sign_in_wrong_password_unknown_user_and_login_csrf(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    form = serve(root, Req("GET", "/login"))
    token = form.set_cookies[b"tgw_login"][0]
    wrong = serve(
        root,
        Req(
            "POST",
            "/login",
            {"_csrf": token.decode(), "username": "otto", "password": "not it at all"},
            cookies={b"tgw_login": token},
        ),
    )
    assert wrong.responseCode == 401 and b"tgw_session" not in wrong.set_cookies and "用户名或密码错误" in wrong.body
    nobody = serve(
        root,
        Req(
            "POST",
            "/login",
            {"_csrf": token.decode(), "username": "zed", "password": PASSWORD},
            cookies={b"tgw_login": token},
        ),
    )
    assert nobody.responseCode == 401
    forged = serve(
        root,
        Req(
            "POST",
            "/login",
            {"_csrf": "guess", "username": "otto", "password": PASSWORD},
            cookies={b"tgw_login": token},
        ),
    )
    assert forged.responseCode == 403 and b"tgw_session" not in forged.set_cookies
    assert audit(hub) == [
        ("operator:otto", "login", "refused"),
        ("anonymous", "login", "refused"),
        ("anonymous", "login", "refused"),
    ]
    sign_in(root, "otto")
    assert audit(hub)[-1] == ("operator:otto", "login", "ok")


def test_next_is_a_local_path_only(site: tuple[Resource, Dashboard]) -> None:
    from gateway.dashboard.server import safe_next

    assert safe_next("/vouchers/x?y=1") == "/vouchers/x?y=1"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil", "javascript:alert(1)"):
        assert safe_next(evil) == "/overview"


def test_actions_need_the_csrf_token_and_a_same_origin(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    key = submit(hub, "CSRF1")
    cookies = sign_in(root, "otto")
    csrf = csrf_of(root, cookies)
    path = f"/vouchers/{quote(key)}/cancel"
    assert serve(root, Req("POST", path, {"reason": "x"}, cookies=cookies)).responseCode == 403
    assert serve(root, Req("POST", path, {"reason": "x", "_csrf": csrf + "x"}, cookies=cookies)).responseCode == 403
    cross = Req(
        "POST",
        path,
        {"reason": "x", "_csrf": csrf},
        cookies=cookies,
        headers={"Origin": "http://evil.example", "Host": "gw"},
    )
    assert serve(root, cross).responseCode == 403
    assert state(hub, key) == "ACCEPTED"
    same = Req(
        "POST",
        path,
        {"reason": "录入错误", "_csrf": csrf},
        cookies=cookies,
        headers={"Origin": "http://gw", "Host": "gw"},
    )
    done = serve(root, same)
    assert (
        done.responseCode == 303
        and done.header(
            "location",
        )
        == f"/vouchers/{quote(key)}?done=cancel"
    )  # type: ignore[comparison-overlap]
    assert state(hub, key) == "CANCELLED"
    assert [a for a in audit(hub) if a[1] != "login"] == [
        ("operator:otto", "csrf", "refused"),
        ("operator:otto", "csrf", "refused"),
        ("operator:otto", "csrf", "refused"),
        ("operator:otto", "voucher.cancel", "ok"),
    ]


def test_roles_decide_and_refusals_are_audited(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    key = submit(hub, "ROLE1")
    viewer = sign_in(root, "vera")
    csrf = csrf_of(root, viewer)
    refused = serve(root, Req("POST", f"/vouchers/{quote(key)}/cancel", {"_csrf": csrf, "reason": "x"}, cookies=viewer))
    assert refused.responseCode == 403 and "权限不足" in refused.body and 'id="refused"' in refused.body
    assert state(hub, key) == "ACCEPTED"
    assert serve(root, Req("GET", "/audit", cookies=viewer)).responseCode == 403
    operator = sign_in(root, "otto")
    csrf_o = csrf_of(root, operator)
    # resolving needs an approver, even for an operator
    resolve = serve(
        root,
        Req(
            "POST",
            f"/vouchers/{quote(key)}/resolve",
            {"_csrf": csrf_o, "resolution": "failed", "evidence": "bank says"},
            cookies=operator,
        ),
    )
    assert resolve.responseCode == 403
    approver = sign_in(root, "anna")
    not_in_doubt = serve(
        root,
        Req(
            "POST",
            f"/vouchers/{quote(key)}/resolve",
            {"_csrf": csrf_of(root, approver), "resolution": "failed", "evidence": "bank says"},
            cookies=approver,
        ),
    )
    assert not_in_doubt.responseCode == 409 and "not in doubt" in not_in_doubt.body
    refusals = [a for a in audit(hub) if a[2] == "refused" and a[1] != "login"]
    assert refusals == [
        ("operator:vera", "voucher.cancel", "refused"),
        ("operator:vera", "page.view", "refused"),
        ("operator:otto", "voucher.resolve", "refused"),
        ("operator:anna", "voucher.resolve", "refused"),
    ]
    admin = sign_in(root, "adam")
    page = serve(root, Req("GET", "/audit", cookies=admin))
    assert page.responseCode == 200 and "voucher.resolve" in page.body


def test_logout_ends_the_session(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    cookies = sign_in(root, "otto")
    csrf = csrf_of(root, cookies)
    assert serve(root, Req("POST", "/logout", cookies=cookies)).responseCode == 403  # no token: not even sign-out
    out = serve(root, Req("POST", "/logout", {"_csrf": csrf}, cookies=cookies))
    assert out.responseCode == 303 and out.header("location") == "/login"
    assert serve(root, Req("GET", "/overview", cookies=cookies)).responseCode == 303
    assert audit(hub)[-1] == ("operator:otto", "logout", "ok")


def test_metrics_need_a_session_or_the_scrape_token(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    token, digest = metrics.new_token()
    hub.db.run(metrics.store_token_digest, digest)
    assert serve(root, Req("GET", "/metrics", headers={"Authorization": f"Bearer {token}x"})).responseCode == 401
    assert (
        serve(root, Req("GET", "/metrics", headers={"Authorization": f"Bearer {hub.config.api_token}"})).responseCode
        == 401
    )
    ok = serve(root, Req("GET", "/metrics", headers={"Authorization": f"Bearer {token}"}))
    assert ok.responseCode == 200 and ok.header("content-type").startswith("text/plain; version=0.0.4")  # type: ignore[union-attr]
    assert 'tgw_outbox_depth{bank="ICBC",state="PENDING"}' in ok.body
    assert 'tgw_certificate_days_left{bank="ICBC",cert="bank"' in ok.body
    viewer = sign_in(root, "vera")
    assert serve(root, Req("GET", "/metrics", cookies=viewer)).responseCode == 200


def test_everything_shown_is_escaped(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    key = submit(hub, "XSS1", payee_acct_name="<script>alert('x')</script>")
    cookies = sign_in(root, "vera")
    listing = serve(root, Req("GET", "/transactions?voucher_no=XSS1", cookies=cookies))
    assert "<script>alert" not in listing.body and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in listing.body
    assert "¥125,000.00" in listing.body
    page = serve(root, Req("GET", f"/vouchers/{quote(key)}", cookies=cookies))
    assert page.responseCode == 200 and "<script>alert" not in page.body and "撤销凭证" in page.body
