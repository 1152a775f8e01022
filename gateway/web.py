"""The finance-side HTTP JSON API on the gateway's web port (Twisted web).

Every `/api/` call needs `Authorization: Bearer <api_token>` (from `gateway.toml`); `/healthz` does not.

| method | path | what |
|---|---|---|
| GET | /healthz | liveness |
| POST | /api/vouchers | submit one or a batch: `{"bank": "ICBC", "voucher": {...}}`, `{"vouchers": [...]}`, or an XML
  voucher document (`Content-Type: application/xml`, `?bank=CODE` unless its Head/Des names the bank) |
| GET | /api/vouchers | list; filters `state`, `bank`, `agency`, `voucher_no`, `payee`, `min_fen`, `max_fen`,
  `limit`, `offset` |
| GET | /api/vouchers/KEY | one voucher with its timeline and messages |
| POST | /api/vouchers/KEY/cancel | withdraw before sending (`{"reason": "…"}`) |
| POST | /api/quota-notices | grant quota and forward the 5106: `{"bank": "ICBC", "notice": {...}}` |
| GET | /api/banks | configured banks and their live sessions |
| GET | /api/archive/ID | one archived message, byte for byte (`application/xml`) |
| * | /api/cards/… | official cards: spending, review, repayment, deadlines (:mod:`gateway.cards.web`) |
| * | /api/reconciliation/… | runs, reports, breaks and their resolution (:mod:`gateway.reconcile.web`) |

A submission may name its submitter in `X-Actor` (1–48 of `A-Z a-z 0-9 _ . @ -`; recorded as `api:<actor>`,
`api:finance` without it); any other value is refused (400). A negative `limit` or `offset` is 400, a request
body over :data:`MAX_BODY_BYTES` 413.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from gateway.apiutil import actor_of, query_arg
from gateway.cards import web as cards_web
from gateway.payments import queries, service
from gateway.reconcile import web as reconcile_web
from gateway.submission import SubmissionError, parse_submission
from protocols import jsonform
from protocols.errors import ValidationError
from protocols.messages import QuotaNotice, VoucherKey

if TYPE_CHECKING:
    from gateway.hub import Hub

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 8 * 1024 * 1024
#: `X-Actor`, who submits (recorded as `api:<actor>` in the history, a 64-character column).


class BodyTooLarge(ValueError):
    """A request body over :data:`MAX_BODY_BYTES` (413)."""


def _send(request: Request, status: int, data: Any, content_type: bytes = b"application/json; charset=utf-8") -> None:
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", b"no-store")
    body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    request.write(body)
    request.finish()


def _problems(exc: ValidationError) -> dict[str, Any]:
    return {"error": "invalid", "problems": [{"field": p.field, "message": p.message} for p in exc.problems]}


class Api(Resource):
    """`/api/…`: token-protected JSON endpoints."""

    isLeaf = True

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def render(self, request: Request) -> Any:
        token = self.hub.config.api_token.encode()
        auth = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(auth, b"Bearer " + token):
            _send(request, 401, {"error": "unauthorized", "message": "Authorization: Bearer <api_token> required"})
            return NOT_DONE_YET
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method.decode()
        d = defer.maybeDeferred(self._route, request, method, path)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Any, request: Request) -> None:
        if failure.check(ValidationError):
            _send(request, 400, _problems(failure.value))
        elif failure.check(BodyTooLarge):
            _send(request, 413, {"error": "too_large", "message": str(failure.value)})
        elif failure.check(SubmissionError):
            _send(request, 400, {"error": "invalid", "message": str(failure.value)})
        elif failure.check(service.Refused):
            _send(request, 409, {"error": "refused", "message": failure.value.add_word})
        elif failure.check(ValueError):
            _send(request, 400, {"error": "invalid", "message": str(failure.value)})
        else:
            log.error("API failure: %s", failure.getTraceback())
            _send(
                request,
                503 if "StoreUnavailable" in failure.type.__name__ else 500,
                {"error": "internal", "message": failure.getErrorMessage()},
            )

    def _body(self, request: Request) -> bytes:
        assert request.content is not None
        data = request.content.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
        return data

    def _actor(self, request: Request) -> str:
        return actor_of(request)

    def _arg(self, request: Request, name: str) -> str | None:
        return query_arg(request, name)

    @defer.inlineCallbacks
    def _route(self, request: Request, method: str, path: list[str]) -> Any:
        hub = self.hub
        if path[:1] == ["cards"]:  # official cards (issue 5)
            status, data = yield cards_web.route(hub, request, method, path[1:])
            _send(request, status, data)
        elif path[:1] == ["reconciliation"]:  # reconciliation runs, reports, breaks and their workflow (issue 6)
            status, data, content_type = yield reconcile_web.route(hub, request, method, path[1:])
            _send(request, status, data, content_type)
        elif path == ["vouchers"] and method == "POST":
            actor = self._actor(request)
            items = parse_submission(
                self._body(request),
                request.getHeader(b"content-type") or b"",
                self._arg(request, "bank"),
                list(hub.config.banks),
            )
            accepted = yield hub.run_in_store(
                service.submit, items, actor, hub.now(), hub.config.node, list(hub.config.banks)
            )
            for item in accepted:
                hub.emit("voucher", {"key": str(item.key), "bank": item.bank, "state": "ACCEPTED"})
            for bank in {a.bank for a in accepted}:
                hub.kick(bank)
            _send(request, 201, {"accepted": [{"key": str(a.key), "bank": a.bank} for a in accepted]})
        elif path == ["vouchers"] and method == "GET":

            def num(name: str) -> int | None:
                value = self._arg(request, name)
                return None if value is None else int(value)

            def count(name: str, default: int) -> int:
                value = num(name)
                if value is not None and value < 0:
                    raise ValueError(f"{name} must not be negative, not {value}")
                return value or default

            f = queries.VoucherFilter(
                state=self._arg(request, "state"),
                bank=self._arg(request, "bank"),
                agency=self._arg(request, "agency"),
                voucher_no=self._arg(request, "voucher_no"),
                payee=self._arg(request, "payee"),
                min_fen=num("min_fen"),
                max_fen=num("max_fen"),
                limit=count("limit", 50),
                offset=count("offset", 0),
            )
            _send(request, 200, (yield hub.run_in_store(queries.list_vouchers, f)))
        elif len(path) == 2 and path[0] == "vouchers" and method == "GET":
            found = yield hub.run_in_store(queries.get_voucher, VoucherKey.parse(path[1]))
            if found is None:
                _send(request, 404, {"error": "not_found", "message": f"no voucher {path[1]}"})
            else:
                _send(request, 200, found)
        elif len(path) == 3 and path[0] == "vouchers" and path[2] == "cancel" and method == "POST":
            body = json.loads(self._body(request) or b"{}")
            state = yield hub.run_in_store(
                service.cancel, VoucherKey.parse(path[1]), "api:finance", str(body.get("reason", "")), hub.now()
            )
            _send(request, 200, {"key": path[1], "state": str(state)})
        elif path == ["quota-notices"] and method == "POST":
            body = json.loads(self._body(request))
            notice = jsonform.from_json(QuotaNotice, body.get("notice"), "notice")
            bank = body.get("bank")
            if bank not in hub.config.banks:
                raise ValueError(f"unknown bank {bank!r}")
            msg_id = yield hub.run_in_store(
                service.submit_quota_notice, bank, notice, "api:finance", hub.now(), hub.config.node
            )
            hub.kick(bank)
            _send(request, 201, {"msg_id": msg_id})
        elif path == ["banks"] and method == "GET":
            _send(
                request,
                200,
                {
                    "banks": [
                        {
                            "code": code,
                            "dialect": b.dialect,
                            "sessions": len(hub.sessions.get(code, [])),
                            "signed_on": len(hub.live_sessions(code)),
                        }
                        for code, b in hub.config.banks.items()
                    ]
                },
            )
        elif len(path) == 2 and path[0] == "archive" and method == "GET":
            raw = yield hub.run_in_store(queries.archived_message, int(path[1]))
            if raw is None:
                _send(request, 404, {"error": "not_found"})
            else:
                _send(request, 200, raw, b"application/octet-stream")
        else:
            _send(request, 404, {"error": "not_found", "message": f"{method} /api/{'/'.join(path)}"})


class Health(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return b'{"status": "ok"}'


def build_root(hub: Hub) -> Resource:
    """The web port's resource tree."""
    root = Resource()
    root.putChild(b"api", Api(hub))
    root.putChild(b"healthz", Health())
    from gateway.dashboard import mount  # issue 7: the operators' dashboard (pages, /events, /metrics)

    mount(root, hub)
    return root
