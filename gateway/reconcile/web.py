"""`/api/reconciliation/…`: stored runs, their reports, breaks and the resolution workflow, routed here by the API
of :mod:`gateway.web` (which has checked the bearer token).

| method | path (under /api/reconciliation) | what |
|---|---|---|
| GET | /runs | runs; filters `date` (YYYYMMDD or YYYY-MM-DD), `bank` |
| GET | /runs/ID | one run with its break counts (by class, by state, by resolution state) |
| GET | /runs/ID/report | its report: HTML, or `?format=csv` (the breaks) or `json` |
| GET | /breaks | breaks, oldest first; filters `run`, `bank`, `class`, `state` (OPEN, CLOSED, or a resolution |
|     |         | state PROPOSED, APPROVED, REJECTED, RESOLVED), `assigned_to`, `limit`, `offset` |
| GET | /breaks/ID | one break with both sides and its history |
| POST | /breaks/ID/assign | `{"to": "operator:alice"}` |
| POST | /breaks/ID/comment | `{"text": "…"}` |
| POST | /breaks/ID/resolve | `{"reason": "VERIFIED", "note": "…"}`: RESOLVED at once, or PROPOSED when it changes a |
|      |                    | voucher (then a second actor approves) |
| POST | /breaks/ID/approve | `{}`: by an actor other than the proposer (four eyes) |
| POST | /breaks/ID/reject | `{"reason": "…"}`: by an actor other than the proposer |
| GET | /reasons | the reason codes |
| POST | /requests | a statement asked for over the link (:mod:`gateway.reconcile.link`, when present) |

The actor is `api:` and the `X-Actor` header (`api:finance` without it), checked as for submissions; four eyes
compares actors. A step the workflow refuses is answered 409 with the message, an unknown run or break 404, a
body that is not a JSON object or a field of the wrong type 400; every refusal is recorded in the audit log
(`recon.<step>`, outcome `refused`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Generator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection
from twisted.internet import defer

from gateway.apiutil import actor_of, json_object, query_arg
from gateway.reconcile import resolution
from gateway.reconcile.provider import REPORT_TYPES, StoreReconciliation
from gateway.reconcile.resolution import NotFound, Refused

if TYPE_CHECKING:
    from gateway.hub import Hub

MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
JSON_TYPE: Final = b"application/json; charset=utf-8"

#: Answer: HTTP status, body (JSON-ready data, or text), content type.
Answer = tuple[int, Any, bytes]


def _arg(request: Any, name: str) -> str | None:
    return query_arg(request, name)


def _int_arg(request: Any, name: str, default: int | None) -> int | None:
    value = _arg(request, name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value[:40]!r}") from None
    if number < 0:
        raise ValueError(f"{name} must not be negative, not {number}")
    return number


def _date_arg(request: Any, name: str) -> date | None:
    value = _arg(request, name)
    if not value:
        return None
    try:
        if len(value) == 8 and value.isdigit():
            return datetime.strptime(value, "%Y%m%d").date()
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date (YYYYMMDD or YYYY-MM-DD), not {value[:40]!r}") from None


def _body(request: Any) -> dict[str, Any]:
    return json_object(request, MAX_BODY_BYTES)


def _field(body: dict[str, Any], name: str, *, required: bool) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f'"{name}" is required and is a text' if value is None else f'"{name}" is a text')
    return value


def _actor(request: Any) -> str:
    return actor_of(request)


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 18 else None


def _not_found(what: str) -> Answer:
    return 404, {"error": "not_found", "message": what}, JSON_TYPE


@defer.inlineCallbacks
def route(hub: Hub, request: Any, method: str, path: list[str]) -> Generator[Any, Any, Answer]:
    """Answer one `/api/reconciliation/…` call: (HTTP status, body, content type)."""
    recon = StoreReconciliation()
    if path[:1] == ["requests"]:  # statements over the link (4005/4006), another module's
        if importlib.util.find_spec("gateway.reconcile.link") is None:
            return _not_found("statement requests over the link are not available yet")
        link = importlib.import_module("gateway.reconcile.link")
        answer: tuple[Any, ...] = yield link.route(hub, request, method, path[1:])
        return (answer[0], answer[1], answer[2] if len(answer) == 3 else JSON_TYPE)
    if method == "GET":
        if path == ["runs"]:
            check_date, bank = _date_arg(request, "date"), _arg(request, "bank") or None
            runs = yield hub.run_in_store(lambda conn: recon.runs(conn, check_date=check_date, bank=bank))
            return 200, {"runs": runs}, JSON_TYPE
        if path == ["reasons"]:
            return 200, {"reasons": recon.reasons()}, JSON_TYPE
        if path == ["breaks"]:
            run_id, limit = _int_arg(request, "run", None), _int_arg(request, "limit", DEFAULT_LIMIT)
            offset = _int_arg(request, "offset", 0) or 0
            if limit is not None and limit > MAX_LIMIT:
                raise ValueError(f"limit must be at most {MAX_LIMIT}, not {limit}")

            def read(conn: Connection) -> list[dict[str, Any]]:
                return recon.breaks(
                    conn,
                    run_id,
                    kind=_arg(request, "class") or None,
                    state=_arg(request, "state") or None,
                    bank=_arg(request, "bank") or None,
                    assigned_to=_arg(request, "assigned_to") or None,
                    limit=limit,
                    offset=offset,
                )

            found = yield hub.run_in_store(read)
            return 200, {"breaks": found, "limit": limit, "offset": offset}, JSON_TYPE
        if len(path) == 2 and path[0] == "runs":
            run_id = _id(path[1])
            run = None if run_id is None else (yield hub.run_in_store(recon.run, run_id))
            return (200, run, JSON_TYPE) if run is not None else _not_found(f"no reconciliation run {path[1]}")
        if len(path) == 3 and path[0] == "runs" and path[2] == "report":
            run_id = _id(path[1])
            fmt = _arg(request, "format") or "html"
            if fmt not in REPORT_TYPES:
                raise ValueError(f"format is one of {', '.join(REPORT_TYPES)}, not {fmt[:20]!r}")
            if run_id is None:
                return _not_found(f"no reconciliation run {path[1]}")
            try:
                text = yield hub.run_in_store(recon.report, run_id, fmt)
            except NotFound as exc:
                return _not_found(str(exc))
            return 200, text.encode("utf-8"), REPORT_TYPES[fmt].encode()
        if len(path) == 2 and path[0] == "breaks":
            break_id = _id(path[1])
            found = None if break_id is None else (yield hub.run_in_store(recon.break_detail, break_id))
            return (200, found, JSON_TYPE) if found is not None else _not_found(f"no break {path[1]}")
    if method == "POST" and len(path) == 3 and path[0] == "breaks" and path[2] in _STEPS:
        done: Answer = yield _step(hub, request, path[1], path[2])
        return done
    return _not_found(f"{method} /api/reconciliation/{'/'.join(path)}")


def _assign(conn: Connection, break_id: int, body: dict[str, Any], actor: str, now: datetime) -> dict[str, Any]:
    resolution.assign(conn, break_id, _field(body, "to", required=True), actor, now)
    return {}


def _comment(conn: Connection, break_id: int, body: dict[str, Any], actor: str, now: datetime) -> dict[str, Any]:
    resolution.comment(conn, break_id, _field(body, "text", required=True), actor, now)
    return {}


def _resolve(conn: Connection, break_id: int, body: dict[str, Any], actor: str, now: datetime) -> dict[str, Any]:
    reason, note = _field(body, "reason", required=True), _field(body, "note", required=False)
    return {"state": resolution.propose(conn, break_id, reason, note, actor, now)}


def _approve(conn: Connection, break_id: int, body: dict[str, Any], actor: str, now: datetime) -> dict[str, Any]:
    corrected = resolution.approve(conn, break_id, actor, now)
    if corrected is None:
        return {"state": "APPROVED"}
    voucher = {
        "key": str(corrected.key),
        "bank": corrected.bank,
        "state": corrected.state.value,
        "amount_fen": corrected.amount_fen,
    }
    return {"state": "APPROVED", "voucher": voucher}


def _reject(conn: Connection, break_id: int, body: dict[str, Any], actor: str, now: datetime) -> dict[str, Any]:
    resolution.reject(conn, break_id, _field(body, "reason", required=True), actor, now)
    return {"state": "REJECTED"}


_STEPS: Final[dict[str, Callable[[Connection, int, dict[str, Any], str, datetime], dict[str, Any]]]] = {
    "assign": _assign,
    "comment": _comment,
    "resolve": _resolve,
    "approve": _approve,
    "reject": _reject,
}


@defer.inlineCallbacks
def _step(hub: Hub, request: Any, id_text: str, step: str) -> Generator[Any, Any, Answer]:
    """One workflow step in one transaction, answered with the break as it is afterwards; a refusal is recorded."""
    actor = _actor(request)
    body = _body(request)
    break_id = _id(id_text)
    if break_id is None:
        return _not_found(f"no break {id_text}")
    recon, fn, now = StoreReconciliation(), _STEPS[step], hub.now()

    def run(conn: Connection) -> dict[str, Any]:
        done = fn(conn, break_id, body, actor, now)
        return done | {"break": recon.break_detail(conn, break_id)}

    try:
        done = yield hub.run_in_store(run)
    except Refused as exc:
        yield hub.run_in_store(resolution.record_refusal, now, actor, step, break_id, str(exc))
        if isinstance(exc, NotFound):
            return _not_found(str(exc))
        return 409, {"error": "refused", "message": str(exc)}, JSON_TYPE
    voucher = done.get("voucher")
    if voucher is not None:  # the live feed hears of every voucher change
        hub.emit("voucher", voucher)
    return 200, done, JSON_TYPE
