"""`/api/reconciliation/…` through the gateway's resource tree (twisted.web's DummyRequest, a hub whose store is
the test database, synchronous): runs, reports, breaks and the resolution workflow answered as HTTP, on SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from twisted.internet.task import Clock
from twisted.web.resource import getChildForRequest
from twisted.web.test._util import _render
from twisted.web.test.requesthelper import DummyRequest

from gateway import config as configuration
from gateway import web
from gateway.dashboard.providers import ReconciliationProvider, reconciliation_of
from gateway.hub import Hub
from gateway.reconcile import web as reconcile_web
from gateway.reconcile.provider import StoreReconciliation
from gateway.store.db import transaction
from gateway.store.tables import audit_log, recon_break_events, vouchers
from protocols.messages import Voucher
from reconciliation.model import BreakClass
from tests.gateway.conftest import NOW, TOKEN, make_hub, pki_template, write_instance  # noqa: F401  (a fixture)
from tests.reconcile.helpers import (
    BANK,
    CHECK_DATE,
    WORKFLOW_BREAKS,
    key_of,
    run_file,
    seed_ledger,
    workflow_statement,
    write_text,
)


class Response:
    def __init__(self, request: DummyRequest) -> None:
        assert request.finished, "the API left the request unfinished"
        self.code: int = request.responseCode or 200
        self.body = b"".join(request.written)
        self.content_type = (request.responseHeaders.getRawHeaders(b"content-type") or [b""])[0]

    def json(self) -> Any:
        assert self.content_type.startswith(b"application/json"), self.content_type
        return json.loads(self.body)


def call(
    hub: Hub,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    actor: str | None = None,
    **args: str,
) -> Response:
    request = DummyRequest([s.encode() for s in path.strip("/").split("/")])
    request.method = method.encode()
    request.uri = path.encode()
    data = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, dict) else (body or b"")
    request.content = BytesIO(data)
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {TOKEN}".encode()])
    if actor is not None:
        request.requestHeaders.setRawHeaders(b"x-actor", [actor.encode()])
    request.args = {k.encode(): [v.encode()] for k, v in args.items()}
    _render(getChildForRequest(web.build_root(hub), request), request)
    return Response(request)


@pytest.fixture
def hub(pki_template: Path, db_engine: Engine, tmp_path: Path) -> Hub:  # noqa: F811  (the fixture, imported)
    """The gateway's hub on the test database (synchronous store) and a fake clock at NOW."""
    clock = Clock()
    clock.advance(NOW.timestamp())
    return make_hub(configuration.load(write_instance(tmp_path / "instance", pki_template)), db_engine, clock)


@pytest.fixture
def seeded(db_engine: Engine, tmp_path: Path) -> tuple[int, list[Voucher]]:
    """A stored run of ICBC with the breaks of WORKFLOW_BREAKS; returns its id and the vouchers."""
    vs = seed_ledger(db_engine, 8, failed=1, returned=1)
    lines, declared = workflow_statement(db_engine, vs)
    return run_file(db_engine, write_text(tmp_path / "s.txt", lines, declared)).run_id, vs


def break_id(hub: Hub, cls: BreakClass, key: str) -> int:
    found = call(hub, "GET", "/api/reconciliation/breaks", **{"class": cls.value}).json()["breaks"]
    (b,) = [b for b in found if b["key"] == key]
    return int(b["id"])


def refusals(engine: Engine) -> list[tuple[str, str, str | None, str]]:
    with transaction(engine, read_only=True) as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.outcome == "refused").order_by(audit_log.c.id))
        return [(r.actor, r.action, r.target, json.loads(r.detail)["message"]) for r in rows]


def test_the_store_provider_is_the_dashboards_provider() -> None:
    provider = StoreReconciliation()
    assert isinstance(provider, ReconciliationProvider)

    class HubLike:
        reconciliation = provider

    assert reconciliation_of(HubLike()) is provider


# --- runs and reports ----------------------------------------------------------------------------------------------


def test_runs_and_one_run(hub: Hub, seeded: tuple[int, list[Voucher]]) -> None:
    run_id, _ = seeded
    runs = call(hub, "GET", "/api/reconciliation/runs").json()["runs"]
    assert [(r["id"], r["bank"], r["check_date"], r["breaks"], r["open_breaks"]) for r in runs] == [
        (run_id, BANK, CHECK_DATE.isoformat(), 6, 6)
    ]
    assert call(hub, "GET", "/api/reconciliation/runs", date=f"{CHECK_DATE:%Y%m%d}").json()["runs"] == runs
    assert call(hub, "GET", "/api/reconciliation/runs", date=CHECK_DATE.isoformat(), bank=BANK).json()["runs"] == runs
    assert call(hub, "GET", "/api/reconciliation/runs", date="20261124").json()["runs"] == []
    assert call(hub, "GET", "/api/reconciliation/runs", bank="CCB").json()["runs"] == []
    bad = call(hub, "GET", "/api/reconciliation/runs", date="2026-13-40")
    assert bad.code == 400 and "date" in bad.json()["message"]

    one = call(hub, "GET", f"/api/reconciliation/runs/{run_id}").json()
    assert one["counts"] == {cls.value: WORKFLOW_BREAKS.get(cls, 0) for cls in BreakClass}
    assert one["break_states"] == {"OPEN": 6, "CLOSED": 0} and one["resolution_states"]["none"] == 6
    assert one["declared"]["count"] == one["statement_count"] and one["result_sent"] is False
    for missing in (f"/api/reconciliation/runs/{run_id + 1000}", "/api/reconciliation/runs/x1"):
        assert call(hub, "GET", missing).code == 404


def test_reports_of_a_stored_run(hub: Hub, seeded: tuple[int, list[Voucher]]) -> None:
    run_id, _ = seeded
    page = call(hub, "GET", f"/api/reconciliation/runs/{run_id}/report")
    assert page.code == 200 and page.content_type.startswith(b"text/html")
    text = page.body.decode()
    assert "不平" in text and BANK in text and "汇总不符" in text
    rows = list(
        csv.DictReader(
            io.StringIO(call(hub, "GET", f"/api/reconciliation/runs/{run_id}/report", format="csv").body.decode())
        )
    )
    assert sorted(r["class"] for r in rows) == sorted(c.value for c, n in WORKFLOW_BREAKS.items() for _ in range(n))
    document = call(hub, "GET", f"/api/reconciliation/runs/{run_id}/report", format="json").json()
    assert document["bank"] == BANK and len(document["breaks"]) == 6 and len(document["open"]) == 6
    assert call(hub, "GET", f"/api/reconciliation/runs/{run_id}/report", format="pdf").code == 400
    assert call(hub, "GET", f"/api/reconciliation/runs/{run_id + 1000}/report").code == 404


# --- breaks ---------------------------------------------------------------------------------------------------------


def test_breaks_filters(hub: Hub, seeded: tuple[int, list[Voucher]]) -> None:
    run_id, vs = seeded
    every = call(hub, "GET", "/api/reconciliation/breaks").json()["breaks"]
    assert len(every) == 6 and {b["run_id"] for b in every} == {run_id}
    assert call(hub, "GET", "/api/reconciliation/breaks", run=str(run_id)).json()["breaks"] == every
    assert call(hub, "GET", "/api/reconciliation/breaks", run=str(run_id + 1000)).json()["breaks"] == []
    status = call(hub, "GET", "/api/reconciliation/breaks", **{"class": "status_mismatch"}).json()["breaks"]
    assert sorted(b["key"] for b in status) == sorted(key_of(vs[i]) for i in (0, 2))
    assert all(b["voucher_key"] == str(vs[int(b["key"][-1]) - 1].key) for b in status)
    assert len(call(hub, "GET", "/api/reconciliation/breaks", state="open").json()["breaks"]) == 6
    assert call(hub, "GET", "/api/reconciliation/breaks", state="CLOSED").json()["breaks"] == []
    assert call(hub, "GET", "/api/reconciliation/breaks", bank="CCB").json()["breaks"] == []
    page = call(hub, "GET", "/api/reconciliation/breaks", limit="2", offset="1").json()
    assert [b["id"] for b in page["breaks"]] == [b["id"] for b in every[1:3]]
    b = break_id(hub, BreakClass.AMOUNT_MISMATCH, key_of(vs[4]))
    assert call(hub, "POST", f"/api/reconciliation/breaks/{b}/assign", {"to": "operator:bob"}).code == 200
    mine = call(hub, "GET", "/api/reconciliation/breaks", assigned_to="operator:bob").json()["breaks"]
    assert [x["id"] for x in mine] == [b]
    for bad in ({"class": "nonsense"}, {"state": "HALF"}, {"run": "x"}, {"limit": "-1"}, {"limit": "100000"}):
        answer = call(hub, "GET", "/api/reconciliation/breaks", **bad)
        assert answer.code == 400, bad


def test_one_break_with_its_sides(hub: Hub, seeded: tuple[int, list[Voucher]]) -> None:
    _, vs = seeded
    b = break_id(hub, BreakClass.STATUS_MISMATCH, key_of(vs[0]))
    found = call(hub, "GET", f"/api/reconciliation/breaks/{b}").json()
    assert (found["bank_code"], found["kind"], found["voucher_key"]) == (BANK, "status_mismatch", str(vs[0].key))
    assert (found["ledger"]["status"], found["bank"]["status"]) == ("FAILED", "PAID")
    assert found["events"] == [] and found["state"] == "OPEN"
    assert call(hub, "GET", "/api/reconciliation/breaks/999999").code == 404
    assert call(hub, "GET", "/api/reconciliation/breaks/abc").code == 404


# --- the workflow -----------------------------------------------------------------------------------------------


def test_four_eyes_over_the_api(hub: Hub, db_engine: Engine, seeded: tuple[int, list[Voucher]]) -> None:
    _, vs = seeded
    heard: list[tuple[str, dict[str, Any]]] = []
    hub.listeners.append(lambda kind, data: heard.append((kind, data)))
    b = break_id(hub, BreakClass.STATUS_MISMATCH, key_of(vs[0]))
    url = f"/api/reconciliation/breaks/{b}"

    assert call(hub, "POST", f"{url}/assign", {"to": "operator:bob"}, actor="alice").json()["break"]["assigned_to"] == (
        "operator:bob"
    )
    assert call(hub, "POST", f"{url}/comment", {"text": "银行来函"}, actor="bob").code == 200
    proposed = call(hub, "POST", f"{url}/resolve", {"reason": "CONFIRMED_PAID", "note": "advice 0815"}, actor="bob")
    assert proposed.code == 200 and proposed.json()["state"] == "PROPOSED"
    assert proposed.json()["break"]["proposed_by"] == "api:bob"

    same = call(hub, "POST", f"{url}/approve", {}, actor="bob")
    assert same.code == 409 and "four eyes" in same.json()["message"]
    assert refusals(db_engine) == [("api:bob", "recon.approve", f"break:{b}", same.json()["message"])]

    approved = call(hub, "POST", f"{url}/approve", actor="carol")  # an empty body is {}
    assert approved.code == 200, approved.body
    answer = approved.json()
    assert answer["voucher"] == {"key": str(vs[0].key), "bank": BANK, "state": "PAID", "amount_fen": vs[0].pay_amt_fen}
    assert (answer["break"]["state"], answer["break"]["resolution_state"], answer["break"]["approved_by"]) == (
        "CLOSED",
        "APPROVED",
        "api:carol",
    )
    assert [(e["event"], e["actor"]) for e in answer["break"]["events"]] == [
        ("assigned", "api:alice"),
        ("commented", "api:bob"),
        ("proposed", "api:bob"),
        ("approved", "api:carol"),
    ]
    assert ("voucher", answer["voucher"]) in heard
    timeline = call(hub, "GET", f"/api/vouchers/{vs[0].key}").json()["timeline"]
    assert (timeline[-1]["event"], timeline[-1]["actor"]) == ("recon_paid", "api:carol")
    again = call(hub, "POST", f"{url}/comment", {"text": "late"}, actor="carol")
    assert again.code == 409 and "closed" in again.json()["message"]


def test_resolve_at_once_and_reject(hub: Hub, db_engine: Engine, seeded: tuple[int, list[Voucher]]) -> None:
    _, vs = seeded
    summary = break_id(hub, BreakClass.SUMMARY_MISMATCH, "statement")
    refused = call(hub, "POST", f"/api/reconciliation/breaks/{summary}/resolve", {"reason": "CONFIRMED_PAID"})
    assert refused.code == 409 and "no single voucher" in refused.json()["message"]
    done = call(hub, "POST", f"/api/reconciliation/breaks/{summary}/resolve", {"reason": "BANK_CORRECTION"})
    assert done.json()["state"] == "RESOLVED" and done.json()["break"]["state"] == "CLOSED"

    b = break_id(hub, BreakClass.STATUS_MISMATCH, key_of(vs[2]))
    url = f"/api/reconciliation/breaks/{b}"
    call(hub, "POST", f"{url}/resolve", {"reason": "CONFIRMED_FAILED"}, actor="alice")
    assert call(hub, "POST", f"{url}/reject", {}, actor="bob").code == 400  # no reason: malformed
    rejected = call(hub, "POST", f"{url}/reject", {"reason": "证据不足"}, actor="bob")
    assert rejected.code == 200 and rejected.json()["break"]["resolution_state"] == "REJECTED"
    assert rejected.json()["break"]["state"] == "OPEN"
    with transaction(db_engine, read_only=True) as conn:
        state = conn.execute(select(vouchers.c.state).where(vouchers.c.voucher_no == vs[2].voucher_no)).scalar_one()
    assert state == "PAID"  # nothing applied


def test_malformed_calls_are_400_and_change_nothing(
    hub: Hub, db_engine: Engine, seeded: tuple[int, list[Voucher]]
) -> None:
    _, vs = seeded
    b = break_id(hub, BreakClass.AMOUNT_MISMATCH, key_of(vs[4]))
    url = f"/api/reconciliation/breaks/{b}"
    cases: list[tuple[str, bytes | dict[str, Any], str | None]] = [
        ("assign", b"{not json", None),
        ("assign", b"[1, 2]", None),
        ("assign", {}, None),
        ("assign", {"to": 7}, None),
        ("comment", {"text": None}, None),
        ("resolve", {"note": "x"}, None),
        ("comment", {"text": "ok"}, "not a name!"),
    ]
    for step, body, actor in cases:
        answer = call(hub, "POST", f"{url}/{step}", body, actor=actor)
        assert answer.code == 400, (step, body, actor, answer.body)
    with transaction(db_engine, read_only=True) as conn:
        assert conn.execute(select(recon_break_events)).all() == []
    unknown = call(hub, "POST", "/api/reconciliation/breaks/999999/comment", {"text": "hello"}, actor="dave")
    assert unknown.code == 404
    assert refusals(db_engine) == [("api:dave", "recon.comment", "break:999999", "no break 999999")]
    assert call(hub, "GET", f"{url}/approve").code == 404
    assert call(hub, "POST", f"{url}/explode", {}).code == 404
    assert call(hub, "GET", "/api/reconciliation/reasons").json()["reasons"][0] == {
        "code": "TIMING",
        "zh": "跨日时差",
        "en": "Cut-off timing, clears on a later statement",
        "needs_approval": False,
    }


def test_statement_requests_answer_404_until_the_link_module_exists(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_web.importlib.util, "find_spec", lambda name: None)
    answer = call(hub, "POST", "/api/reconciliation/requests", {"bank": BANK, "date": "20261123"})
    assert answer.code == 404 and "not available" in answer.json()["message"]


def test_latest_runs_and_the_age_of_open_breaks(db_engine: Engine, tmp_path: Path) -> None:
    """The provider the dashboard reads: the latest run per bank; an open break ages with the bank's later runs."""
    vs = seed_ledger(db_engine, 8, failed=1, returned=1)
    lines, declared = workflow_statement(db_engine, vs)
    first = run_file(db_engine, write_text(tmp_path / "d1.txt", lines, declared))
    next_day = CHECK_DATE + timedelta(days=1)
    second = run_file(db_engine, write_text(tmp_path / "d2.txt", [], day=next_day), next_day)
    recon = StoreReconciliation()
    with transaction(db_engine, read_only=True) as conn:
        latest = recon.latest(conn)
        every = recon.runs(conn, check_date=None, bank=None)
        old = recon.breaks(conn, first.run_id, kind="missing_at_bank", state="open")
        html = recon.report_html(conn, second.run_id)
    assert [(r["id"], r["check_date"], r["breaks"]) for r in latest] == [(second.run_id, next_day.isoformat(), 0)]
    assert [r["id"] for r in every] == [second.run_id, first.run_id]  # newest first
    assert [(b["key"], b["age_days"]) for b in old] == [(key_of(vs[3]), 1)]
    assert "最久未决差异" in html and key_of(vs[3]) in html  # the day-2 report lists day 1's open breaks


def test_statement_requests_are_routed_to_the_link_module(hub: Hub) -> None:
    answer = call(hub, "GET", "/api/reconciliation/requests", bank=BANK)
    assert answer.code == 200, answer.body
    assert answer.json() == {"requests": []}  # the link module's answer (gateway.reconcile.link.route)
