"""The reconciliation pages request by request, on SQLite and PostgreSQL, over the real provider
(`gateway.reconcile.provider.StoreReconciliation`) and a real run stored by `run_day`: runs by date and bank, a
run with its filters and reports, a break with both sides and its history, the resolution workflow for every role
(four eyes, refusals shown and audited, nothing changed by a refusal), and the overview's tile.

The store holds `tests/reconcile/helpers.seed_ledger(8, failed=1, returned=1)` reconciled against
`workflow_statement`: voucher 0 failed but the bank says paid, voucher 2 paid but the bank says failed (status
mismatches), voucher 3 missing at the bank, voucher 4's amount off, a line the gateway does not hold, and a
declared total that is off: six breaks of ICBC on 2026-11-23 (the hub's clock stands on that day, 10:30).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from twisted.web.resource import Resource

from gateway.auth import accounts
from gateway.dashboard.html import yuan
from gateway.dashboard.server import Dashboard
from gateway.hub import Hub
from gateway.reconcile.provider import StoreReconciliation
from gateway.store.db import transaction
from gateway.store.tables import recon_break_events, vouchers
from protocols.messages import Voucher
from reconciliation.model import BreakClass
from tests.gateway.dashboard.test_web_auth import Req, csrf_of, serve, sign_in
from tests.gateway.dashboard.test_web_auth import site as site
from tests.reconcile.helpers import (
    BANK,
    CHECK_DATE,
    break_ids,
    key_of,
    run_file,
    seed_ledger,
    workflow_statement,
    write_text,
)

DAY = CHECK_DATE.isoformat()


@dataclass
class Recon:
    root: Resource
    dash: Dashboard
    hub: Hub
    engine: Engine
    vouchers: list[Voucher]
    run_id: int
    ids: dict[tuple[str, str], int]

    def break_id(self, cls: BreakClass, n: int | None = None) -> int:
        if cls is BreakClass.SUMMARY_MISMATCH:
            return self.ids[(cls.value, "statement")]
        if cls is BreakClass.MISSING_IN_LEDGER:
            return self.ids[(cls.value, "5201-5201450199999999")]
        assert n is not None
        return self.ids[(cls.value, key_of(self.vouchers[n]))]

    def get(self, path: str, who: dict[bytes, bytes]) -> Req:
        return serve(self.root, Req("GET", path, cookies=who))

    def post(self, path: str, who: dict[bytes, bytes], **form: str) -> Req:
        return serve(self.root, Req("POST", path, {"_csrf": csrf_of(self.root, who), **form}, cookies=who))

    def voucher_state(self, n: int) -> str:
        with transaction(self.engine, read_only=True) as conn:
            return str(
                conn.execute(
                    select(vouchers.c.state).where(vouchers.c.voucher_no == self.vouchers[n].voucher_no)
                ).scalar_one()
            )

    def detail(self, break_id: int) -> dict[str, Any]:
        with transaction(self.engine, read_only=True) as conn:
            found = StoreReconciliation().break_detail(conn, break_id)
        assert found is not None
        return found

    def event_count(self) -> int:
        with transaction(self.engine, read_only=True) as conn:
            return int(conn.execute(select(func.count()).select_from(recon_break_events)).scalar_one())

    def audit(self, action_prefix: str = "recon.") -> list[tuple[str, str, str, str, dict[str, Any]]]:
        with transaction(self.engine, read_only=True) as conn:
            entries = accounts.list_audit(conn)["entries"]
        return [
            (e["actor"], e["action"], e["outcome"], e["target"] or "", e["detail"])
            for e in reversed(entries)
            if e["action"].startswith(action_prefix)
        ]


@pytest.fixture
def recon(site: tuple[Resource, Dashboard], hub: Hub, db_engine: Engine, tmp_path: Path) -> Recon:
    root, dash = site
    vs = seed_ledger(db_engine, 8, failed=1, returned=1)
    lines, declared = workflow_statement(db_engine, vs)
    day = run_file(db_engine, write_text(tmp_path / "statement.txt", lines, declared))
    hub.reconciliation = StoreReconciliation()  # type: ignore[attr-defined]  # as gateway.app.start attaches it
    return Recon(root, dash, hub, db_engine, vs, day.run_id, break_ids(db_engine, day.run_id))


def _text(html: str) -> str:
    """The page's text without its tags (for assertions on what a person reads)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_without_a_provider_the_pages_say_not_available(site: tuple[Resource, Dashboard], hub: Hub) -> None:
    root, _ = site
    assert not hasattr(hub, "reconciliation")
    viewer = sign_in(root, "vera")
    page = serve(root, Req("GET", "/reconciliation", cookies=viewer))
    assert page.responseCode == 200 and 'id="not-available"' in page.body and "日终对账尚未接入" in page.body
    overview = serve(root, Req("GET", "/overview", cookies=viewer))
    assert 'id="recon-na"' in overview.body and "Reconciliation is not yet available" in overview.body
    operator = sign_in(root, "otto")
    action = serve(
        root,
        Req(
            "POST",
            "/reconciliation/breaks/1/comment",
            {"_csrf": csrf_of(root, operator), "text": "x"},
            cookies=operator,
        ),
    )
    assert action.responseCode == 404


def test_runs_of_a_date_by_bank(recon: Recon) -> None:
    viewer = sign_in(recon.root, "vera")
    yesterday = recon.get("/reconciliation", viewer)  # the default: yesterday in the instance's zone (11-22)
    assert yesterday.responseCode == 200
    assert 'value="2026-11-22"' in yesterday.body and 'id="no-runs"' in yesterday.body
    page = recon.get(f"/reconciliation?date={DAY}", viewer)
    assert page.responseCode == 200 and f'id="run-{recon.run_id}"' in page.body
    text = _text(page.body)
    assert "不平 6 breaks" in text and 'data-balanced="0"' in page.body
    assert "状态不符 status mismatch 2" in text and "平台单边 missing at bank 1" in text
    assert "汇总不符 summary mismatch 1" in text and "银行单边 missing in ledger 1" in text
    assert 'data-sent="0"' in page.body  # no 2507 sent for a file reconciled by hand
    with transaction(recon.engine, read_only=True) as conn:
        (run,) = StoreReconciliation().runs(conn, check_date=CHECK_DATE, bank=None)
    assert run["ledger_fen"] > 1000_00 and yuan(run["ledger_fen"]) in text  # yuan, with thousands separators
    assert yuan(run["statement_fen"]) in text and f'id="run-open-{recon.run_id}">6<' in page.body
    same = recon.get("/reconciliation?date=20261123&bank=ICBC", viewer)  # YYYYMMDD too, and a bank filter
    assert same.responseCode == 200 and f'id="run-{recon.run_id}"' in same.body
    other = recon.get(f"/reconciliation?date={DAY}&bank=CCB", viewer)
    assert other.responseCode == 200 and 'id="no-runs"' in other.body
    for bad, message in (("date=2026-13-45", "Not a date"), ("bank=NOPE", "No such bank")):
        refused = recon.get(f"/reconciliation?{bad}", viewer)
        assert refused.responseCode == 400 and message in refused.body


def test_a_run_its_filters_and_reports(recon: Recon) -> None:
    viewer = sign_in(recon.root, "vera")
    page = recon.get(f"/reconciliation/{recon.run_id}", viewer)
    assert page.responseCode == 200
    assert 'id="break-count">6<' in page.body and page.body.count('class="break-link"') == 6
    assert 'id="run-summary"' in page.body and "Statement declares" in page.body
    assert 'id="report-html"' in page.body and 'id="report-csv"' in page.body and 'id="report-json"' in page.body
    missing = recon.break_id(BreakClass.MISSING_AT_BANK, 3)
    assert f'href="/reconciliation/breaks/{missing}"' in page.body
    one = recon.get(f"/reconciliation/{recon.run_id}?kind=missing_at_bank", viewer)
    assert one.responseCode == 200 and 'id="break-count">1<' in one.body and f'id="break-{missing}"' in one.body
    two = recon.get(f"/reconciliation/{recon.run_id}?kind=status_mismatch&state=OPEN", viewer)
    assert 'id="break-count">2<' in two.body
    none = recon.get(f"/reconciliation/{recon.run_id}?state=CLOSED", viewer)
    assert 'id="break-count">0<' in none.body and 'id="no-breaks"' in none.body
    nobody = recon.get(f"/reconciliation/{recon.run_id}?assigned_to=operator:otto", viewer)
    assert 'id="break-count">0<' in nobody.body
    bad = recon.get(f"/reconciliation/{recon.run_id}?kind=nonsense&state=WHATEVER", viewer)
    assert bad.responseCode == 400 and "No such break class" in bad.body and "No such state" in bad.body
    assert recon.get(f"/reconciliation/{recon.run_id + 99}", viewer).responseCode == 404
    assert recon.get("/reconciliation/nothing/here", viewer).responseCode == 404

    report = recon.get(f"/reconciliation/{recon.run_id}/report", viewer)
    assert report.responseCode == 200 and "对账报告 Reconciliation report" in report.body
    csp = report.header("content-security-policy") or ""
    assert "style-src 'sha256-" in csp and "script-src" not in csp and "default-src 'none'" in csp
    csv = recon.get(f"/reconciliation/{recon.run_id}/report.csv", viewer)
    assert csv.responseCode == 200 and csv.header("content-type") == "text/csv; charset=utf-8"
    assert key_of(recon.vouchers[3]) in csv.body or recon.vouchers[3].voucher_no in csv.body
    js = recon.get(f"/reconciliation/{recon.run_id}/report.json", viewer)
    assert js.responseCode == 200 and js.header("content-type") == "application/json"
    assert '"bank": "ICBC"' in js.body or '"bank":"ICBC"' in js.body
    assert recon.get(f"/reconciliation/{recon.run_id + 99}/report", viewer).responseCode == 404


def test_a_break_shows_both_sides_and_its_history(recon: Recon) -> None:
    viewer = sign_in(recon.root, "vera")
    amount = recon.break_id(BreakClass.AMOUNT_MISMATCH, 4)
    page = recon.get(f"/reconciliation/breaks/{amount}", viewer)
    assert page.responseCode == 200
    text = _text(page.body)
    paid = recon.vouchers[4].pay_amt_fen
    assert f"¥{paid // 100:,}.{paid % 100:02d}" in text and f"¥{(paid - 100) // 100:,}.{(paid - 100) % 100:02d}" in text
    assert 'class="bad"' in page.body  # the differing field is marked
    assert "金额不符 amount mismatch" in text and BANK in text and "尚无处理记录" in text
    assert f'href="/vouchers/{recon.detail(amount)["voucher_key"]}"' in page.body
    missing = recon.get(f"/reconciliation/breaks/{recon.break_id(BreakClass.MISSING_AT_BANK, 3)}", viewer)
    assert "无此记录 absent" in _text(missing.body)
    summary = recon.get(f"/reconciliation/breaks/{recon.break_id(BreakClass.SUMMARY_MISMATCH)}", viewer)
    assert "no detail on either side" in summary.body and "Declared" in summary.body
    assert recon.get("/reconciliation/breaks/99999", viewer).responseCode == 404
    everything = recon.get("/reconciliation/breaks?state=OPEN&bank=ICBC", viewer)
    assert 'id="break-count">6<' in everything.body


def test_four_eyes_workflow_by_role(recon: Recon) -> None:
    """Operator assigns, comments and proposes; the proposer (an approver too) may not approve; another does."""
    target = recon.break_id(BreakClass.STATUS_MISMATCH, 2)  # paid in the ledger, the bank says failed
    path = f"/reconciliation/breaks/{target}"
    viewer, operator = sign_in(recon.root, "vera"), sign_in(recon.root, "otto")
    approver, admin = sign_in(recon.root, "anna"), sign_in(recon.root, "adam")
    seen: list[tuple[str, dict[str, Any]]] = []
    recon.hub.listeners.append(lambda kind, data: seen.append((kind, data)))

    # a viewer sees the forms (marked with the role) but is refused, audited, nothing recorded
    assert 'id="comment-form"' in recon.get(path, viewer).body
    assert recon.post(f"{path}/comment", viewer, text="看看").responseCode == 403
    assert recon.event_count() == 0

    done = recon.post(f"{path}/assign", operator, assignee="operator:anna")
    assert done.responseCode == 303 and done.header("location") == f"{path}?done=assign"
    assert recon.detail(target)["assigned_to"] == "operator:anna"
    assert recon.post(f"{path}/assign", operator, assignee="operator:vera").responseCode == 409  # a viewer
    assert (
        recon.post(f"{path}/comment", operator, text="银行回单显示未付 the bank's slip says unpaid").responseCode == 303
    )
    assert recon.post(f"{path}/comment", operator, text="").responseCode == 409
    assert recon.post(f"{path}/comment", operator, text="x" * 2001).responseCode == 409
    assert recon.post(f"{path}/propose", operator, resolution="NOT_A_CODE").responseCode == 409
    mine = recon.get(f"/reconciliation/{recon.run_id}?assigned_to=operator:anna", sign_in(recon.root, "vera"))
    assert 'id="break-count">1<' in mine.body

    # the operator may propose but not approve; the approver proposes again after a rejection
    proposed = recon.post(f"{path}/propose", operator, resolution="CONFIRMED_FAILED", note="回单 slip 123")
    assert proposed.header("location") == f"{path}?done=proposed"
    shown = recon.get(f"{path}?done=proposed", viewer)
    assert 'data-rs="PROPOSED"' in shown.body and 'id="approve-form"' in shown.body and "待复核" in shown.body
    assert recon.post(f"{path}/approve", operator).responseCode == 403
    assert recon.post(f"{path}/reject", approver, reason="").responseCode == 409  # a rejection needs a reason
    assert recon.post(f"{path}/reject", approver, reason="回单不清楚 the slip is unreadable").responseCode == 303
    assert recon.detail(target)["resolution_state"] == "REJECTED" and recon.voucher_state(2) == "PAID"
    assert (
        recon.post(f"{path}/propose", approver, resolution="CONFIRMED_FAILED", note="新回单 new slip").responseCode
        == 303
    )

    # four eyes: the proposer's own approval is refused by the provider, shown, audited, and changes nothing
    events_before = recon.event_count()
    own = recon.post(f"{path}/approve", approver)
    assert own.responseCode == 409 and 'id="recon-refused"' in own.body and "four eyes" in own.body
    assert recon.detail(target)["resolution_state"] == "PROPOSED" and recon.voucher_state(2) == "PAID"
    assert recon.event_count() == events_before

    # a different person with the approver's permission approves: the voucher is corrected, the break closed
    approved = recon.post(f"{path}/approve", admin)
    assert approved.responseCode == 303 and approved.header("location") == f"{path}?done=approve"
    assert recon.voucher_state(2) == "FAILED"
    after = recon.detail(target)
    assert (after["state"], after["resolution_state"], after["proposed_by"], after["approved_by"]) == (
        "CLOSED",
        "APPROVED",
        "operator:anna",
        "operator:adam",
    )
    page = recon.get(path, viewer)
    text = _text(page.body)
    assert 'data-rs="APPROVED"' in page.body and 'id="propose-form"' not in page.body
    assert 'id="closed-note"' in page.body and 'id="comment-form"' not in page.body
    for event in ("assigned", "commented", "proposed", "rejected", "approved"):
        assert event in text
    assert ("voucher", {"key": after["voucher_key"], "bank": BANK, "state": "FAILED"}) in [
        (k, {x: d.get(x) for x in ("key", "bank", "state")}) for k, d in seen
    ]
    # a closed break takes no more steps
    assert recon.post(f"{path}/comment", operator, text="太晚了 too late").responseCode == 409

    steps = [(a, act, o, t) for a, act, o, t, _ in recon.audit()]
    target_s = str(target)
    assert steps == [
        ("operator:vera", "recon.comment", "refused", target_s),
        ("operator:otto", "recon.assign", "ok", target_s),
        ("operator:otto", "recon.assign", "refused", target_s),
        ("operator:otto", "recon.comment", "ok", target_s),
        ("operator:otto", "recon.comment", "refused", target_s),
        ("operator:otto", "recon.comment", "refused", target_s),
        ("operator:otto", "recon.propose", "refused", target_s),
        ("operator:otto", "recon.propose", "ok", target_s),
        ("operator:otto", "recon.approve", "refused", target_s),
        ("operator:anna", "recon.reject", "refused", target_s),
        ("operator:anna", "recon.reject", "ok", target_s),
        ("operator:anna", "recon.propose", "ok", target_s),
        ("operator:anna", "recon.approve", "refused", target_s),
        ("operator:adam", "recon.approve", "ok", target_s),
        ("operator:otto", "recon.comment", "refused", target_s),
    ]
    details = {(a, act, o): d for a, act, o, _, d in recon.audit()}
    assert details[("operator:vera", "recon.comment", "refused")]["needs"] == "recon.propose"
    assert "four eyes" in details[("operator:anna", "recon.approve", "refused")]["why"]
    assert details[("operator:otto", "recon.propose", "ok")] == {
        "resolution": "CONFIRMED_FAILED",
        "note": "回单 slip 123",
        "state": "PROPOSED",
    }


def test_a_resolution_that_changes_nothing_closes_at_once(recon: Recon) -> None:
    operator = sign_in(recon.root, "otto")
    target = recon.break_id(BreakClass.MISSING_IN_LEDGER)
    path = f"/reconciliation/breaks/{target}"
    assert recon.post(f"{path}/propose", operator, resolution="OTHER").responseCode == 409  # OTHER needs a note
    done = recon.post(f"{path}/propose", operator, resolution="BANK_CORRECTION", note="银行将更正 bank corrects")
    assert done.header("location") == f"{path}?done=resolved"
    assert (recon.detail(target)["state"], recon.detail(target)["resolution_state"]) == ("CLOSED", "RESOLVED")
    # a state-changing reason on a break that names no voucher is refused by the provider
    summary = recon.break_id(BreakClass.SUMMARY_MISMATCH)
    refused = recon.post(f"/reconciliation/breaks/{summary}/propose", operator, resolution="CONFIRMED_PAID")
    assert refused.responseCode == 409 and 'id="refusal"' in refused.body
    assert recon.detail(summary)["resolution_state"] is None
    viewer = sign_in(recon.root, "vera")
    run = recon.get(f"/reconciliation?date={DAY}", viewer)
    assert "不平 6 breaks" in _text(run.body)  # the night did not balance; 5 breaks are still open
    assert f'id="run-open-{recon.run_id}">5<' in run.body


def test_csrf_is_checked_on_the_workflow(recon: Recon) -> None:
    operator = sign_in(recon.root, "otto")
    target = recon.break_id(BreakClass.MISSING_AT_BANK, 3)
    forged = serve(
        recon.root,
        Req("POST", f"/reconciliation/breaks/{target}/comment", {"_csrf": "forged", "text": "x"}, cookies=operator),
    )
    assert forged.responseCode == 403 and recon.event_count() == 0
    assert [(a, act, o) for a, act, o, _, _ in recon.audit("csrf")] == [("operator:otto", "csrf", "refused")]


def test_overview_tile_links_each_banks_latest_run(recon: Recon) -> None:
    viewer = sign_in(recon.root, "vera")
    page = recon.get("/overview", viewer)
    tile = page.body.split('id="recon-last"', 1)[1].split("</section>", 1)[0]
    assert f'href="/reconciliation/{recon.run_id}"' in tile and DAY in tile
    assert 'data-balanced="0"' in tile and "不平" in tile
    kpi = page.body.split('id="kpi-recon"', 1)[1].split('<div class="tile"', 1)[0]
    assert "1 / 1" in kpi and "open breaks" in kpi
