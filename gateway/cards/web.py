"""`/api/cards/…`: the finance side's official-card endpoints, routed here by the API of :mod:`gateway.web`.

The API resource has already checked the bearer token; errors propagate to it and are answered as everywhere
else (a ValidationError 400 with every problem, ValueError 400, Refused 409). Card numbers appear only masked.

| method | path | what |
|---|---|---|
| GET | /api/cards | spending records; filters `agency`, `state` (a state; `open`, the default: not reimbursed; |
|     |            | `all`), `bank`, `limit`, `offset` |
| GET | /api/cards/due | records due within `lead_days` (default `[cards] due_lead_days`) or overdue; filter `agency` |
| GET | /api/cards/summary | metric-ready counts: records and fen per state, due, overdue, repayment failures |
| GET | /api/cards/REF | one record (`BANK:SPENDID`) with its events |
| POST | /api/cards/approve | `{"agency": "102003", "refs": ["ICBC:…", …]}`: all or none; holds the agency's quota |
| POST | /api/cards/reject | `{"agency": "102003", "refs": […], "reason": "个人消费"}`: all or none |
| POST | /api/cards/repay | `{"agency": "102003"?, "bank": "ICBC"?}`: vouchers for the approved records (201) |
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from twisted.internet import defer

from gateway.apiutil import json_object, query_arg
from gateway.cards import queries, runtime
from gateway.cards.service import Ref
from gateway.store.tables import ACTOR_LEN

if TYPE_CHECKING:
    from gateway.hub import Hub

MAX_BODY_BYTES: Final = 1024 * 1024


def _arg(request: Any, name: str) -> str | None:
    return query_arg(request, name)


def _int(request: Any, name: str, default: int) -> int:
    value = _arg(request, name)
    return default if value is None else int(value)


def _body(request: Any) -> dict[str, Any]:
    return json_object(request, MAX_BODY_BYTES)


def _refs(body: dict[str, Any]) -> list[Ref]:
    refs = body.get("refs")
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ValueError('"refs" is a list of spending references ("BANK:SPENDID")')
    return [Ref.parse(r) for r in refs]


def _agency(body: dict[str, Any]) -> str:
    agency = body.get("agency")
    if not isinstance(agency, str) or not agency:
        raise ValueError('"agency" names the agency whose records these are')
    return agency


def _optional(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f'"{name}" is a text')
    return value or None


@defer.inlineCallbacks
def route(hub: Hub, request: Any, method: str, path: list[str]) -> Generator[Any, Any, tuple[int, Any]]:
    """Answer one `/api/cards/…` call: returns (HTTP status, JSON-ready data)."""
    settings = hub.config.cards
    header = request.getHeader(b"x-actor")
    actor = f"api:{header.decode('utf-8', 'replace') if header else 'finance'}"[:ACTOR_LEN]  # the history's column
    if not path and method == "GET":
        f = queries.CardFilter(
            agency=_arg(request, "agency"),
            state=_arg(request, "state") or queries.OPEN_FILTER,
            bank=_arg(request, "bank"),
            limit=_int(request, "limit", 100),
            offset=_int(request, "offset", 0),
        )
        page = yield hub.run_in_store(queries.list_spending, f, hub.work_date(), settings.due_lead_days)
        return 200, page
    if path == ["due"] and method == "GET":
        lead_days = _int(request, "lead_days", settings.due_lead_days)
        if lead_days < 0:
            raise ValueError("lead_days must not be negative")
        report = yield hub.run_in_store(queries.due_report, hub.work_date(), lead_days, _arg(request, "agency"))
        return 200, report
    if path == ["summary"] and method == "GET":
        counts = yield hub.run_in_store(queries.counts, hub.work_date(), settings.due_lead_days)
        return 200, {"today": hub.work_date().isoformat(), "lead_days": settings.due_lead_days, "counts": counts}
    if path == ["approve"] and method == "POST":
        body = _body(request)
        approved = yield runtime.approve(hub, _agency(body), _refs(body), actor)
        return 200, {"state": "APPROVED", "refs": [str(r) for r in approved]}
    if path == ["reject"] and method == "POST":
        body = _body(request)
        reason = body.get("reason")
        if not isinstance(reason, str):
            raise ValueError('"reason" says why the records are rejected')
        rejected = yield runtime.reject(hub, _agency(body), _refs(body), reason, actor)
        return 200, {"state": "REJECTED", "refs": [str(r) for r in rejected]}
    if path == ["repay"] and method == "POST":
        body = _body(request)
        result = yield runtime.repay(hub, actor, agency=_optional(body, "agency"), bank=_optional(body, "bank"))
        return 201, result.to_json()
    if len(path) == 1 and method == "GET":
        ref = Ref.parse(path[0])
        found = yield hub.run_in_store(queries.get_spending, ref.bank, ref.spend_id, hub.work_date())
        if found is None:
            return 404, {"error": "not_found", "message": f"no spending record {ref}"}
        return 200, found
    return 404, {"error": "not_found", "message": f"{method} /api/cards/{'/'.join(path)}"}
