"""The resolution workflow of reconciliation breaks on the store (SQLite and PostgreSQL): every rule, four eyes,
the audit history, the voucher corrections through the voucher's hash-chained history, and re-runs of a date
that keep what people did."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from gateway.config import PaymentSettings
from gateway.payments import service
from gateway.reconcile import resolution
from gateway.reconcile.resolution import REASONS, NotFound, Refused, Workflow, replay
from gateway.store import repo
from gateway.store.db import transaction
from gateway.store.errors import ConcurrentUpdate
from gateway.store.tables import audit_log, outbox, quotas, recon_break_events, recon_breaks, vouchers
from protocols import samples
from protocols.messages import ReturnNotice, StatementDetail, Voucher
from reconciliation.model import BreakClass, Totals
from tests.gateway.conftest import NODE, NOW_NAIVE
from tests.reconcile.helpers import (
    BANK,
    CHECK_DATE,
    WORKFLOW_BREAKS,
    break_ids,
    break_row,
    key_of,
    receipt_for,
    run_file,
    seed_ledger,
    true_statement,
    workflow_statement,
    write_text,
)

LATER = NOW_NAIVE + timedelta(hours=1)
ALICE, BOB, CAROL = "operator:alice", "operator:bob", "operator:carol"


@dataclass
class Case:
    """A stored run with the breaks of WORKFLOW_BREAKS over seed_ledger(8, failed=1, returned=1)."""

    engine: Engine
    vouchers: list[Voucher]
    statement: Path
    run_id: int
    ids: dict[tuple[str, str], int]

    def id(self, cls: BreakClass, n: int | None = None) -> int:
        """The break of class `cls` (about voucher `n`, for the classes with several)."""
        if cls is BreakClass.SUMMARY_MISMATCH:
            return self.ids[(cls.value, "statement")]
        if cls is BreakClass.MISSING_IN_LEDGER:
            return self.ids[(cls.value, "5201-5201450199999999")]
        assert n is not None
        return self.ids[(cls.value, key_of(self.vouchers[n]))]

    def do(self, fn: Callable[..., Any], *args: Any) -> Any:
        with transaction(self.engine) as conn:
            return fn(conn, *args)

    def rerun(self, path: Path | None = None) -> int:
        day = run_file(self.engine, path or self.statement, now=LATER)
        self.run_id = day.run_id
        self.ids = break_ids(self.engine, day.run_id)
        return day.run_id


def make_case(engine: Engine, tmp_path: Path) -> Case:
    vs = seed_ledger(engine, 8, failed=1, returned=1)
    lines, declared = workflow_statement(engine, vs)
    path = write_text(tmp_path / "statement.txt", lines, declared)
    day = run_file(engine, path)
    assert day.result.counts() == {cls: WORKFLOW_BREAKS.get(cls, 0) for cls in BreakClass}
    return Case(engine, vs, path, day.run_id, break_ids(engine, day.run_id))


@pytest.fixture
def case(db_engine: Engine, tmp_path: Path) -> Case:
    return make_case(db_engine, tmp_path)


def events(engine: Engine, break_id: int | None = None) -> list[dict[str, Any]]:
    e = recon_break_events.c
    query = select(recon_break_events).order_by(e.id)
    if break_id is not None:
        query = query.where(e.break_id == break_id)
    with transaction(engine, read_only=True) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def voucher(engine: Engine, v: Voucher) -> dict[str, Any]:
    with transaction(engine, read_only=True) as conn:
        row = conn.execute(select(vouchers).where(vouchers.c.voucher_no == v.voucher_no)).mappings().one()
        return dict(row)


def history(engine: Engine, v: Voucher) -> tuple[list[repo.HistoryEntry], bool]:
    with transaction(engine, read_only=True) as conn:
        voucher_id = conn.execute(select(vouchers.c.id).where(vouchers.c.voucher_no == v.voucher_no)).scalar_one()
        return repo.history(conn, voucher_id), repo.verify_chain(conn, voucher_id)


def snapshot(engine: Engine) -> tuple[Any, ...]:
    """Everything a workflow step may change."""
    with transaction(engine, read_only=True) as conn:
        return (
            conn.execute(select(recon_breaks).order_by(recon_breaks.c.id)).all(),
            conn.execute(select(recon_break_events).order_by(recon_break_events.c.id)).all(),
            conn.execute(select(vouchers).order_by(vouchers.c.id)).all(),
            conn.execute(select(func.count()).select_from(repo.voucher_history)).scalar_one(),
            conn.execute(select(quotas)).all(),
        )


def refused(case: Case, fn: Callable[..., Any], *args: Any, match: str) -> None:
    """The step is refused with a message matching `match`, and nothing changes."""
    before = snapshot(case.engine)
    with pytest.raises(Refused, match=match):
        case.do(fn, *args)
    assert snapshot(case.engine) == before


def workflow_agrees_with_events(engine: Engine, break_id: int) -> None:
    """The workflow columns are exactly the replay of the break's events."""
    with transaction(engine, read_only=True) as conn:
        row = conn.execute(select(recon_breaks).where(recon_breaks.c.id == break_id)).mappings().one()
        found = resolution.events_of(conn, row)
    replayed = replay({**e, "detail": json.dumps(e["detail"])} for e in found)
    assert Workflow.of(row) == replayed


# --- assign, comment -------------------------------------------------------------------------------------------------


def test_assign_and_comment_append_to_the_history(case: Case) -> None:
    b = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    case.do(resolution.assign, b, BOB, ALICE, NOW_NAIVE)
    case.do(resolution.comment, b, "银行称系手续费扣收 fee deducted", BOB, LATER)
    case.do(resolution.assign, b, CAROL, BOB, LATER)
    row = break_row(case.engine, b)
    assert row["assigned_to"] == CAROL and row["state"] == "OPEN" and row["resolution_state"] is None
    found = events(case.engine, b)
    assert [(e["event"], e["actor"], json.loads(e["detail"])) for e in found] == [
        ("assigned", ALICE, {"from": None, "to": BOB}),
        ("commented", BOB, {"text": "银行称系手续费扣收 fee deducted"}),
        ("assigned", BOB, {"from": BOB, "to": CAROL}),
    ]
    assert {(e["bank_code"], e["check_date"], e["break_class"], e["break_key"]) for e in found} == {
        (BANK, CHECK_DATE, "amount_mismatch", key_of(case.vouchers[4]))
    }
    assert found[0]["at"] == NOW_NAIVE and found[1]["at"] == LATER
    workflow_agrees_with_events(case.engine, b)


def test_bad_assignments_and_comments_are_refused(case: Case) -> None:
    b = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    refused(case, resolution.assign, b, "  ", ALICE, NOW_NAIVE, match="whom")
    refused(case, resolution.assign, b, "x" * 65, ALICE, NOW_NAIVE, match="at most 64")
    refused(case, resolution.comment, b, "", ALICE, NOW_NAIVE, match="comment is empty")
    refused(case, resolution.comment, b, "x" * 2001, ALICE, NOW_NAIVE, match="longer than 2000")
    with pytest.raises(NotFound, match="no break 999999"):
        case.do(resolution.comment, 999_999, "hello", ALICE, NOW_NAIVE)


# --- resolving with a reason that changes nothing ------------------------------------------------------------------


@pytest.mark.parametrize("code", [r.code for r in REASONS if not r.needs_approval])
def test_a_reason_that_changes_nothing_closes_the_break_at_once(case: Case, code: str) -> None:
    b = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    before = voucher(case.engine, case.vouchers[4])
    assert case.do(resolution.propose, b, code, "银行确认 confirmed by phone", ALICE, LATER) == "RESOLVED"
    row = break_row(case.engine, b)
    assert (row["state"], row["closed_reason"], row["closed_on"]) == ("CLOSED", "resolved", LATER.date())
    assert (row["resolution"], row["resolution_state"], row["proposed_by"]) == (code, "RESOLVED", ALICE)
    assert row["resolution_note"] == "银行确认 confirmed by phone" and row["decided_by"] is None
    assert [(e["event"], json.loads(e["detail"])) for e in events(case.engine, b)] == [
        ("resolved", {"reason": code, "note": "银行确认 confirmed by phone"})
    ]
    assert voucher(case.engine, case.vouchers[4]) == before  # no voucher changes
    workflow_agrees_with_events(case.engine, b)
    # a closed break takes no more steps
    refused(case, resolution.comment, b, "too late", BOB, LATER, match="closed")
    refused(case, resolution.assign, b, BOB, BOB, LATER, match="closed")
    refused(case, resolution.propose, b, "VERIFIED", "", BOB, LATER, match="closed")
    refused(case, resolution.approve, b, BOB, LATER, match="closed")


def test_reason_codes_are_checked(case: Case) -> None:
    b = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    refused(case, resolution.propose, b, "FORGOTTEN", "", ALICE, NOW_NAIVE, match="unknown reason code 'FORGOTTEN'")
    refused(case, resolution.propose, b, "", "", ALICE, NOW_NAIVE, match="unknown reason code")
    refused(case, resolution.propose, b, "OTHER", "   ", ALICE, NOW_NAIVE, match="note is empty")
    refused(case, resolution.propose, b, "VERIFIED", "x" * 2001, ALICE, NOW_NAIVE, match="longer than 2000")
    assert case.do(resolution.propose, b, "other", "对方行更正 see letter 12", ALICE, NOW_NAIVE) == "RESOLVED"
    assert break_row(case.engine, b)["resolution"] == "OTHER"


def test_a_summary_mismatch_takes_only_reasons_without_a_voucher_event(case: Case) -> None:
    b = case.id(BreakClass.SUMMARY_MISMATCH)
    for code in ("CONFIRMED_PAID", "CONFIRMED_FAILED", "CONFIRMED_RETURNED"):
        refused(case, resolution.propose, b, code, "", ALICE, NOW_NAIVE, match="no single voucher")
    assert case.do(resolution.propose, b, "BANK_CORRECTION", "", ALICE, NOW_NAIVE) == "RESOLVED"


def test_a_voucher_the_gateway_does_not_hold_takes_no_correction(case: Case) -> None:
    b = case.id(BreakClass.MISSING_IN_LEDGER)
    refused(case, resolution.propose, b, "CONFIRMED_PAID", "", ALICE, NOW_NAIVE, match="no voucher of the gateway")
    assert case.do(resolution.propose, b, "VERIFIED", "", ALICE, NOW_NAIVE) == "RESOLVED"


# --- four eyes -------------------------------------------------------------------------------------------------------


def test_confirmed_paid_needs_a_second_operator_then_corrects_the_voucher(case: Case) -> None:
    v = case.vouchers[0]  # failed in the ledger, paid on the statement
    b = case.id(BreakClass.STATUS_MISMATCH, 0)
    assert voucher(case.engine, v)["state"] == "FAILED"
    assert case.do(resolution.propose, b, "CONFIRMED_PAID", "银行回单 bank's advice 0815", ALICE, NOW_NAIVE) == (
        "PROPOSED"
    )
    row = break_row(case.engine, b)
    assert (row["state"], row["resolution_state"], row["proposed_by"], row["proposed_at"]) == (
        "OPEN",
        "PROPOSED",
        ALICE,
        NOW_NAIVE,
    )
    assert voucher(case.engine, v)["state"] == "FAILED"  # nothing applied yet
    refused(case, resolution.approve, b, ALICE, LATER, match="four eyes")
    refused(case, resolution.reject, b, "no", ALICE, LATER, match="four eyes")
    refused(case, resolution.propose, b, "VERIFIED", "", BOB, LATER, match="awaits a second operator")

    corrected = case.do(resolution.approve, b, BOB, LATER)
    assert corrected is not None and (str(corrected.key), corrected.state.value) == (str(v.key), "PAID")
    row = break_row(case.engine, b)
    assert (row["state"], row["closed_reason"], row["resolution_state"]) == ("CLOSED", "resolved", "APPROVED")
    assert (row["proposed_by"], row["decided_by"], row["decided_at"]) == (ALICE, BOB, LATER)
    after = voucher(case.engine, v)
    assert after["state"] == "PAID"
    assert (after["x_agent_business_no"], after["x_pay_date"], after["x_pay_amt_fen"]) == (
        f"{BANK}{v.voucher_no}",
        CHECK_DATE,
        v.pay_amt_fen,
    )
    entries, chain_ok = history(case.engine, v)
    assert chain_ok
    last = entries[-1]
    assert (last.event, last.from_state, last.to_state, last.actor, last.at) == (
        "recon_paid",
        "FAILED",
        "PAID",
        BOB,
        LATER,
    )
    detail = json.loads(last.detail)
    assert detail["break_id"] == b and detail["reason"] == "CONFIRMED_PAID"
    assert (detail["proposed_by"], detail["approved_by"]) == (ALICE, BOB)
    assert detail["break"] == f"status_mismatch {key_of(v)}" and detail["note"] == "银行回单 bank's advice 0815"
    assert [(e["event"], e["actor"]) for e in events(case.engine, b)] == [("proposed", ALICE), ("approved", BOB)]
    workflow_agrees_with_events(case.engine, b)


def test_confirmed_failed_and_confirmed_returned(case: Case) -> None:
    paid_failed = case.id(BreakClass.STATUS_MISMATCH, 2)  # paid in the ledger, failed on the statement
    missing = case.id(BreakClass.MISSING_AT_BANK, 3)
    case.do(resolution.propose, paid_failed, "CONFIRMED_FAILED", "收款账户冻结", ALICE, NOW_NAIVE)
    case.do(resolution.propose, missing, "CONFIRMED_RETURNED", "退票通知未达", BOB, NOW_NAIVE)
    case.do(resolution.approve, paid_failed, CAROL, LATER)
    case.do(resolution.approve, missing, CAROL, LATER)
    failed, returned = voucher(case.engine, case.vouchers[2]), voucher(case.engine, case.vouchers[3])
    assert (failed["state"], failed["reason"], failed["x_pay_amt_fen"]) == ("FAILED", "收款账户冻结", 0)
    assert failed["x_pay_date"] == CHECK_DATE  # the failure stays on the check date's ledger
    assert (returned["state"], returned["returned_fen"]) == ("RETURNED", case.vouchers[3].pay_amt_fen)
    for n, event in ((2, "recon_failed"), (3, "recon_returned")):
        entries, chain_ok = history(case.engine, case.vouchers[n])
        assert chain_ok and entries[-1].event == event and entries[-1].actor == CAROL


def test_a_correction_that_does_not_apply_is_refused_when_proposed(case: Case) -> None:
    b = case.id(BreakClass.STATUS_MISMATCH, 0)  # the voucher is FAILED
    refused(case, resolution.propose, b, "CONFIRMED_RETURNED", "", ALICE, NOW_NAIVE, match="it is FAILED")
    refused(case, resolution.propose, b, "CONFIRMED_FAILED", "", ALICE, NOW_NAIVE, match="it is FAILED")
    # paid needs the statement to show it paid: the missing-at-bank voucher has no statement line
    refused(
        case,
        resolution.propose,
        case.id(BreakClass.MISSING_AT_BANK, 3),
        "CONFIRMED_PAID",
        "",
        ALICE,
        NOW_NAIVE,
        match="it is PAID",
    )


def test_an_approval_is_refused_when_the_voucher_moved_on(case: Case) -> None:
    v = case.vouchers[2]
    b = case.id(BreakClass.STATUS_MISMATCH, 2)
    case.do(resolution.propose, b, "CONFIRMED_FAILED", "", ALICE, NOW_NAIVE)
    notice = ReturnNotice(
        adm_div_code=v.adm_div_code,
        st_year=v.st_year,
        vt_code="2252",
        voucher_no="2252450100000777",
        ori_vt_code=v.vt_code,
        original_voucher_no=v.voucher_no,
        pay_amt_fen=-v.pay_amt_fen,
        x_pay_date=CHECK_DATE,
        x_agent_business_no=f"{BANK}R777",
        remark="退票",
    )
    case.do(service.apply_return, BANK, notice, "N00000777", NOW_NAIVE, f"bank:{BANK}")
    assert voucher(case.engine, v)["state"] == "RETURNED"
    refused(case, resolution.approve, b, BOB, LATER, match="it is RETURNED")
    assert break_row(case.engine, b)["resolution_state"] == "PROPOSED"
    # the second operator turns it down instead; it may be proposed again
    case.do(resolution.reject, b, "已退票 returned meanwhile", BOB, LATER)
    row = break_row(case.engine, b)
    assert (row["state"], row["resolution_state"], row["decided_by"]) == ("OPEN", "REJECTED", BOB)
    assert json.loads(events(case.engine, b)[-1]["detail"]) == {
        "reason": "CONFIRMED_FAILED",
        "why": "已退票 returned meanwhile",
        "proposed_by": ALICE,
    }
    assert case.do(resolution.propose, b, "VERIFIED", "returned by 2252", BOB, LATER) == "RESOLVED"
    workflow_agrees_with_events(case.engine, b)


def test_only_a_proposal_can_be_approved_or_rejected(case: Case) -> None:
    b = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    refused(case, resolution.approve, b, BOB, NOW_NAIVE, match="nothing to approve")
    refused(case, resolution.reject, b, "why", BOB, NOW_NAIVE, match="nothing to reject")
    c = case.id(BreakClass.STATUS_MISMATCH, 0)
    case.do(resolution.propose, c, "CONFIRMED_PAID", "", ALICE, NOW_NAIVE)
    refused(case, resolution.reject, c, "  ", BOB, NOW_NAIVE, match="reason for the rejection is empty")
    case.do(resolution.reject, c, "no evidence", BOB, NOW_NAIVE)
    refused(case, resolution.approve, c, CAROL, NOW_NAIVE, match="nothing to approve .REJECTED.")
    with pytest.raises(NotFound):
        case.do(resolution.approve, 999_999, BOB, NOW_NAIVE)


def test_a_voucher_changed_under_the_approval_refuses_it(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    b = case.id(BreakClass.STATUS_MISMATCH, 2)
    case.do(resolution.propose, b, "CONFIRMED_FAILED", "", ALICE, NOW_NAIVE)

    def raced(*args: Any, **kwargs: Any) -> Any:
        raise ConcurrentUpdate("vouchers", 1, 1, 2)

    monkeypatch.setattr(resolution, "transition", raced)
    refused(case, resolution.approve, b, BOB, LATER, match="changed meanwhile")
    assert break_row(case.engine, b)["resolution_state"] == "PROPOSED"


def test_two_approvals_racing_on_postgresql_apply_once(pg_db_engine: Engine, tmp_path: Path) -> None:
    """The second approval waits on the first one's row lock, then finds the break closed: refused."""
    case = make_case(pg_db_engine, tmp_path)
    b = case.id(BreakClass.STATUS_MISMATCH, 2)
    case.do(resolution.propose, b, "CONFIRMED_FAILED", "", ALICE, NOW_NAIVE)
    outcome: list[BaseException | None] = []
    with transaction(pg_db_engine) as first:
        resolution.approve(first, b, BOB, LATER)

        def second() -> None:
            try:
                case.do(resolution.approve, b, CAROL, LATER)
                outcome.append(None)
            except BaseException as exc:  # reported below
                outcome.append(exc)

        racer = threading.Thread(target=second)
        racer.start()
        waiting = 0
        for _ in range(5000):  # until the second approval waits on the first one's row lock
            with transaction(pg_db_engine, read_only=True) as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            if waiting or not racer.is_alive():
                break
        assert waiting == 1, "the second approval never waited for the first"
    racer.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], Refused), outcome
    approvals = [e for e in events(pg_db_engine, b) if e["event"] == "approved"]
    assert [e["actor"] for e in approvals] == [BOB]
    entries, chain_ok = history(pg_db_engine, case.vouchers[2])
    assert chain_ok and [e.event for e in entries].count("recon_failed") == 1


def test_refusals_are_recorded_in_the_audit_log(case: Case) -> None:
    case.do(resolution.record_refusal, LATER, BOB, "approve", 7, "four eyes")
    with transaction(case.engine, read_only=True) as conn:
        row = conn.execute(select(audit_log)).mappings().one()
    assert (row["actor"], row["action"], row["outcome"], row["target"]) == (BOB, "recon.approve", "refused", "break:7")
    assert json.loads(row["detail"]) == {"message": "four eyes"}


# --- quota (8202) ------------------------------------------------------------------------------------------------


def _authorized_failed(engine: Engine, granted_fen: int) -> Voucher:
    v = samples.authorized_voucher()
    with transaction(engine) as conn:
        repo.grant_quota(conn, v.adm_div_code, v.st_year, v.agency_code, granted_fen, NOW_NAIVE)
        service.submit(conn, [(BANK, v)], "operator:test", NOW_NAIVE, NODE, [BANK])
        items = service.claim_outbox(conn, BANK, NOW_NAIVE, 10, "test-node", False)
        service.mark_sent(conn, BANK, {i.id: b"<sent/>" for i in items}, NOW_NAIVE, PaymentSettings())
        service.apply_receipt(conn, BANK, receipt_for(v, paid=False), "R8202", NOW_NAIVE, f"bank:{BANK}")
    return v


def _used(engine: Engine, v: Voucher) -> int:
    with transaction(engine, read_only=True) as conn:
        quota = repo.get_quota(conn, v.adm_div_code, v.st_year, v.agency_code)
        assert quota is not None
        return quota.used_fen


def _paid_line(v: Voucher) -> StatementDetail:
    return StatementDetail(
        vt_code=v.vt_code,
        voucher_no=v.voucher_no,
        x_agent_business_no=f"{BANK}{v.voucher_no}",
        x_pay_date=CHECK_DATE,
        amt_fen=v.pay_amt_fen,
        pro_state=0,
        payee_acct_no=v.payee_acct_no,
    )


@pytest.mark.parametrize("enough", [True, False], ids=["quota-left", "quota-spent"])
def test_confirmed_paid_spends_an_authorized_payments_quota_again(
    db_engine: Engine, tmp_path: Path, enough: bool
) -> None:
    v = _authorized_failed(db_engine, v_amount := samples.authorized_voucher().pay_amt_fen)
    assert _used(db_engine, v) == 0  # the failure gave it back
    if not enough:
        with transaction(db_engine) as conn:
            repo.use_quota(conn, v.adm_div_code, v.st_year, v.agency_code, 1, NOW_NAIVE)
    run_file(db_engine, write_text(tmp_path / "s.txt", [_paid_line(v)]))
    (b,) = break_ids(db_engine).values()
    with transaction(db_engine) as conn:
        resolution.propose(conn, b, "CONFIRMED_PAID", "", ALICE, NOW_NAIVE)
    if enough:
        with transaction(db_engine) as conn:
            resolution.approve(conn, b, BOB, LATER)
        assert _used(db_engine, v) == v_amount
        assert voucher(db_engine, v)["state"] == "PAID"
    else:
        with pytest.raises(Refused, match="quota no longer covers"), transaction(db_engine) as conn:
            resolution.approve(conn, b, BOB, LATER)
        assert _used(db_engine, v) == 1 and voucher(db_engine, v)["state"] == "FAILED"
        assert break_row(db_engine, b)["resolution_state"] == "PROPOSED"


def test_confirmed_failed_gives_an_authorized_payments_quota_back(db_engine: Engine, tmp_path: Path) -> None:
    v = samples.authorized_voucher()
    with transaction(db_engine) as conn:
        repo.grant_quota(conn, v.adm_div_code, v.st_year, v.agency_code, v.pay_amt_fen, NOW_NAIVE)
        service.submit(conn, [(BANK, v)], "operator:test", NOW_NAIVE, NODE, [BANK])
        items = service.claim_outbox(conn, BANK, NOW_NAIVE, 10, "test-node", False)
        service.mark_sent(conn, BANK, {i.id: b"<sent/>" for i in items}, NOW_NAIVE, PaymentSettings())
        service.apply_receipt(conn, BANK, receipt_for(v), "R8202", NOW_NAIVE, f"bank:{BANK}")
    assert _used(db_engine, v) == v.pay_amt_fen
    run_file(db_engine, write_text(tmp_path / "s.txt", []))  # the bank lists nothing: missing at bank
    (b,) = break_ids(db_engine).values()
    with transaction(db_engine) as conn:
        resolution.propose(conn, b, "CONFIRMED_FAILED", "", ALICE, NOW_NAIVE)
    with transaction(db_engine) as conn:
        resolution.approve(conn, b, BOB, LATER)
    assert _used(db_engine, v) == 0 and voucher(db_engine, v)["state"] == "FAILED"


def test_settling_a_voucher_in_doubt_withdraws_its_status_queries(db_engine: Engine, tmp_path: Path) -> None:
    v = samples.direct_voucher("5201450100000991", (12_345,))
    settings = PaymentSettings()
    with transaction(db_engine) as conn:
        service.submit(conn, [(BANK, v)], "operator:test", NOW_NAIVE, NODE, [BANK])
        items = service.claim_outbox(conn, BANK, NOW_NAIVE, 10, "test-node", False)
        service.mark_sent(conn, BANK, {i.id: b"<sent/>" for i in items}, NOW_NAIVE, settings)
    with transaction(db_engine) as conn:
        service.tick(conn, NOW_NAIVE + timedelta(days=2), settings, NODE)
    assert voucher(db_engine, v)["state"] == "IN_DOUBT"
    run_file(db_engine, write_text(tmp_path / "s.txt", [_paid_line(v)]))
    (b,) = break_ids(db_engine).values()
    assert break_row(db_engine, b)["break_class"] == "missing_in_ledger"
    with transaction(db_engine) as conn:
        resolution.propose(conn, b, "CONFIRMED_PAID", "", ALICE, NOW_NAIVE)
    with transaction(db_engine) as conn:
        resolution.approve(conn, b, BOB, LATER)
    assert voucher(db_engine, v)["state"] == "PAID"
    with transaction(db_engine, read_only=True) as conn:
        queries = conn.execute(select(outbox.c.state).where(outbox.c.msg_no == "9101")).scalars().all()
    assert queries and set(queries) == {"NACKED"}
    assert history(db_engine, v)[1]


# --- a seeded random walk: whatever is tried, the columns are the replay of the events --------------------------

WALK_SEEDS = (3, 17, 2026)


@pytest.mark.parametrize("seed", WALK_SEEDS, ids=[f"seed{s}" for s in WALK_SEEDS])
def test_a_random_walk_keeps_the_workflow_equal_to_its_history(case: Case, seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    ids = sorted(case.ids.values())
    actors = (ALICE, BOB, CAROL)
    correcting = [r.code for r in REASONS if r.needs_approval]
    codes = [r.code for r in REASONS] + correcting * 4 + ["NOPE"]  # corrections often, so that approvals happen
    steps: list[Callable[[int, str], tuple[Callable[..., Any], tuple[Any, ...]]]] = [
        lambda b, a: (resolution.assign, (b, rng.choice(actors), a)),
        lambda b, a: (resolution.comment, (b, rng.choice(["", "checked"]), a)),
        lambda b, a: (resolution.propose, (b, rng.choice(codes), rng.choice(["", "note"]), a)),
        lambda b, a: (resolution.propose, (b, rng.choice(codes), rng.choice(["", "note"]), a)),
        lambda b, a: (resolution.approve, (b, a)),
        lambda b, a: (resolution.approve, (b, a)),
        lambda b, a: (resolution.reject, (b, rng.choice(["", "no"]), a)),
    ]
    done = 0
    for n in range(80):
        b, actor = rng.choice(ids), rng.choice(actors)
        fn, args = rng.choice(steps)(b, actor)
        at = NOW_NAIVE + timedelta(minutes=n)
        before = snapshot(case.engine)
        try:
            case.do(fn, *args, at)
            done += 1
        except Refused:
            assert snapshot(case.engine) == before, f"seed {seed}: a refused step changed something"
        for i in ids:
            workflow_agrees_with_events(case.engine, i)
    for i in ids:
        found = [e for e in events(case.engine, i) if e["event"] == "approved"]
        proposals = [e for e in events(case.engine, i) if e["event"] == "proposed"]
        for approval in found:  # four eyes: never approved by the one who proposed it last
            proposer = [p for p in proposals if p["id"] < approval["id"]][-1]["actor"]
            assert approval["actor"] != proposer, f"seed {seed}"
    kinds = sorted(e["event"] for e in events(case.engine))
    print(f"seed {seed}: {done} of 80 steps allowed; events {dict((k, kinds.count(k)) for k in set(kinds))}")
    assert done > 0, f"seed {seed}: no step was allowed"
    for v in case.vouchers:
        assert history(case.engine, v)[1], f"seed {seed}: a voucher's chain does not verify"


# --- re-runs keep the workflow --------------------------------------------------------------------------------------


def test_rerunning_the_date_keeps_the_workflow(case: Case) -> None:
    assigned = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    proposed = case.id(BreakClass.STATUS_MISMATCH, 0)
    resolved = case.id(BreakClass.SUMMARY_MISMATCH)
    rejected = case.id(BreakClass.STATUS_MISMATCH, 2)
    case.do(resolution.assign, assigned, BOB, ALICE, NOW_NAIVE)
    case.do(resolution.comment, assigned, "asked the bank", BOB, NOW_NAIVE)
    case.do(resolution.propose, proposed, "CONFIRMED_PAID", "advice 0815", ALICE, NOW_NAIVE)
    case.do(resolution.propose, resolved, "BANK_CORRECTION", "", ALICE, NOW_NAIVE)
    case.do(resolution.propose, rejected, "CONFIRMED_FAILED", "", ALICE, NOW_NAIVE)
    case.do(resolution.reject, rejected, "not proven", CAROL, NOW_NAIVE)
    before = {
        b: {k: v for k, v in break_row(case.engine, b).items() if k not in ("id", "run_id")} for b in case.ids.values()
    }
    history_before = events(case.engine)

    old_ids = dict(case.ids)
    case.rerun()
    assert set(case.ids) == set(old_ids)  # new rows (SQLite may give them the old ids again)
    for identity, new_id in case.ids.items():
        after = {k: v for k, v in break_row(case.engine, new_id).items() if k not in ("id", "run_id")}
        assert after == before[old_ids[identity]], identity
    moved = events(case.engine)
    assert [(e["id"], e["event"], e["actor"], e["detail"]) for e in moved] == [
        (e["id"], e["event"], e["actor"], e["detail"]) for e in history_before
    ]
    new_of = {old_ids[k]: case.ids[k] for k in case.ids}
    assert [e["break_id"] for e in moved] == [new_of[e["break_id"]] for e in history_before]

    # the resolved break stayed closed; the pending proposal can be decided on the new row
    p = case.ids[("status_mismatch", key_of(case.vouchers[0]))]
    refused(case, resolution.approve, p, ALICE, LATER, match="four eyes")
    case.do(resolution.approve, p, BOB, LATER)
    assert voucher(case.engine, case.vouchers[0])["state"] == "PAID"


def test_a_break_the_rerun_no_longer_finds_keeps_its_events(case: Case, tmp_path: Path) -> None:
    b = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    case.do(resolution.assign, b, BOB, ALICE, NOW_NAIVE)
    case.do(resolution.comment, b, "asked the bank", BOB, NOW_NAIVE)
    case.rerun(write_text(tmp_path / "true.txt", true_statement(case.engine)))
    assert case.ids == {}
    kept = events(case.engine)
    assert [(e["event"], e["break_id"]) for e in kept] == [("assigned", None), ("commented", None)]
    case.rerun()  # the spoilt statement again: the break is found again, with its history
    again = case.id(BreakClass.AMOUNT_MISMATCH, 4)
    assert break_row(case.engine, again)["assigned_to"] == BOB
    assert [e["break_id"] for e in events(case.engine)] == [again, again]


def test_a_resolved_break_found_again_by_a_rerun_stays_closed_even_after_a_later_date(
    case: Case, tmp_path: Path
) -> None:
    """A break resolved on the day of a later run is not opened again by re-running that later date."""
    b = case.id(BreakClass.MISSING_AT_BANK, 3)
    next_day = CHECK_DATE + timedelta(days=1)
    resolved_at = NOW_NAIVE.replace(year=next_day.year, month=next_day.month, day=next_day.day)
    case.do(resolution.propose, b, "VERIFIED", "", ALICE, resolved_at)
    assert break_row(case.engine, b)["closed_on"] == next_day
    empty = write_text(tmp_path / "next.txt", [], day=next_day)
    for _ in range(2):
        run_file(case.engine, empty, next_day)
        row = break_row(case.engine, b)
        assert (row["state"], row["closed_reason"]) == ("CLOSED", "resolved")


def test_an_open_break_found_again_on_a_later_date_carries_its_workflow(case: Case, tmp_path: Path) -> None:
    summary = case.id(BreakClass.SUMMARY_MISMATCH)
    case.do(resolution.assign, summary, BOB, ALICE, NOW_NAIVE)
    next_day = CHECK_DATE + timedelta(days=1)
    spoilt = write_text(tmp_path / "next.txt", [], Totals(0, 10_00), day=next_day)
    day2 = run_file(case.engine, spoilt, next_day)
    (carried,) = break_ids(case.engine, day2.run_id).values()
    row = break_row(case.engine, carried)
    assert (row["opened_on"], row["assigned_to"], row["state"]) == (CHECK_DATE, BOB, "OPEN")
    assert break_row(case.engine, summary)["closed_reason"] == "found again"
    assert [e["break_id"] for e in events(case.engine)] == [carried]
    case.do(resolution.comment, carried, "the bank re-sends", BOB, LATER)
    # re-running the later date with a statement that agrees: the first row is open again, with all of it
    run_file(case.engine, write_text(tmp_path / "next-ok.txt", [], day=next_day), next_day)
    row = break_row(case.engine, summary)
    assert (row["state"], row["assigned_to"]) == ("OPEN", BOB)
    assert [(e["event"], e["break_id"]) for e in events(case.engine)] == [("assigned", summary), ("commented", summary)]
