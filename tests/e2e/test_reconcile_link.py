"""Reconciliation over the link, end to end over mutual TLS, on SQLite and PostgreSQL: payments flow; the finance
side asks through the API (`POST /api/reconciliation/requests`) or `tgw reconcile` without `--statement`; the
gateway sends the 4005, the simulated bank answers with its statement in small 4006 pages, the gateway
reconciles when the last page is in, stores the run and sends the 2507, which the bank receives.

With a seeded discrepancy plan the simulated bank spoils its statement (`reconciliation.inject`) and records
what it injected; the run's breaks by class must be exactly that.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import urllib.error
import urllib.request
from typing import Any

from gateway.reconcile.discrepancies import parse_counts, spoiler
from protocols.messages import ReconcileResult
from reconciliation.model import BreakClass
from simulators.bank import SimulatedBank
from tests.e2e.harness import E2E, WAIT_S, direct_voucher, run_tgw, tgw_command, today_cst

SEED = random.randrange(2**31)
PAGE_SIZE = 3


def _api(e2e: E2E, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Call the in-process gateway's API from the test thread."""
    assert e2e.gateway is not None and e2e.gateway.running.web_address is not None
    host, port = e2e.gateway.running.web_address
    request = urllib.request.Request(
        f"http://{host}:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {e2e.gateway.config.api_token}", "X-Actor": "e2e"},
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S * 2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _pay(e2e: E2E, bank: SimulatedBank, n: int, *, returned: int = 0) -> None:
    """`n` direct vouchers paid today; the first `returned` of them partly returned (2252) afterwards."""
    keys = e2e.submit(*(direct_voucher(f"5201450100{i:06d}", (100_000 + 37 * i,)) for i in range(1, n + 1)))
    for key in keys:
        e2e.wait_state(key, "PAID")
    for key in keys[:returned]:
        e2e.rt.call(bank.return_payment, key, 1_00, "退票")
        e2e.until_store(lambda conn, k=key: _returned_fen(conn, k) == 1_00, what=f"{key}'s return to be applied")


def _received_2507(e2e: E2E, bank: SimulatedBank) -> ReconcileResult:
    day = today_cst()
    result: ReconcileResult = e2e.wait_bank(bank, lambda b: b.reconcile_results.get(day), "the bank to get the 2507")
    return result


def test_a_statement_over_the_link_reconciles_without_a_break(e2e: E2E) -> None:
    print(f"seed {SEED}")
    e2e.start()
    bank = e2e.bank(seed=SEED)
    e2e.rt.call(setattr, bank, "statement_page_size", PAGE_SIZE)
    _pay(e2e, bank, 8, returned=1)
    day = today_cst()

    status, answer = _api(
        e2e, "POST", "/api/reconciliation/requests", {"bank": "ICBC", "date": f"{day:%Y-%m-%d}", "wait": True}
    )
    assert status == 200, answer
    run, request = answer["run"], answer["request"]
    assert run["breaks"] == {} and run["open_breaks"] == 0, run
    assert run["statement"] == run["ledger"] and run["statement"]["count"] == 9  # 8 payments and the return
    assert request["state"] == "RECONCILED" and request["run_id"] == run["run_id"]
    assert request["pages"] == {"held": math.ceil(9 / PAGE_SIZE), "of": math.ceil(9 / PAGE_SIZE)}

    sent = bank.statements[day]
    assert (sent.pages, sent.lines, sent.injected, sent.request) == (3, 9, {}, request["msg_id"])
    result = _received_2507(e2e, bank)
    assert (result.x_check_result, result.x_diff_num, result.details) == (0, 0, ())
    assert run["result_msg_id"] is not None
    assert e2e.until_store(
        lambda conn: e2e_outbox_state(conn, run["result_msg_id"]) == "ACKED", what="the bank's 9120 to the 2507"
    )

    # the same through the operator's command: a new request, a new statement, the run replaced
    done = run_tgw("reconcile", "--config", e2e.instance.config_path, "--date", f"{day:%Y%m%d}", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["breaks"] == {} and summary["open_breaks"] == 0
    assert summary["result_msg_id"] not in (None, run["result_msg_id"])
    assert summary["request"] != request["msg_id"] and summary["statement"]["count"] == 9
    assert bank.stats.statements_sent == 2
    status, listed = _api(e2e, "GET", f"/api/reconciliation/requests?bank=ICBC&date={day:%Y%m%d}")
    assert status == 200 and [r["state"] for r in listed["requests"]] == ["RECONCILED", "RECONCILED"]
    assert listed["requests"][0]["run"]["run_id"] == summary["run_id"]
    assert listed["requests"][1]["run"] is None  # its run was replaced by the re-run


def _returned_fen(conn: Any, key: Any) -> int:
    from sqlalchemy import select

    from gateway.store.tables import vouchers

    v = vouchers.c
    return int(conn.execute(select(v.returned_fen).where(v.voucher_no == key.voucher_no)).scalar_one())


def e2e_outbox_state(conn: Any, msg_id: str) -> str:
    from sqlalchemy import select

    from gateway.store.tables import outbox

    return str(conn.execute(select(outbox.c.state).where(outbox.c.msg_id == msg_id)).scalar_one())


def test_injected_discrepancies_are_found_class_by_class(e2e: E2E) -> None:
    print(f"seed {SEED}")
    e2e.start()
    bank = e2e.bank(seed=SEED)
    counts = parse_counts(
        "missing_at_bank=1,missing_in_ledger=2,amount_mismatch=1,status_mismatch=1,payee_mismatch=1,"
        "cutoff_timing=1,duplicate=1,summary_mismatch=1"
    )
    e2e.rt.call(setattr, bank, "statement_page_size", PAGE_SIZE)
    e2e.rt.call(setattr, bank, "spoiler", spoiler(counts, SEED))
    _pay(e2e, bank, 14, returned=1)
    day = today_cst()

    done = run_tgw("reconcile", "--config", e2e.instance.config_path, "--date", f"{day:%Y%m%d}", "--json")
    assert done.returncode == 1, done.stderr  # breaks remain
    summary = json.loads(done.stdout)
    injected = bank.statements[day].injected
    assert injected == {cls.value: counts.get(cls, 0) for cls in BreakClass}
    assert summary["breaks"] == {cls: n for cls, n in injected.items() if n}
    assert summary["open_breaks"] == sum(injected.values())
    result = _received_2507(e2e, bank)
    assert (result.x_check_result, result.x_diff_num) == (1, sum(injected.values()))
    reasons = {d.voucher_no: d.x_check_reason for d in result.details}
    assert len(reasons) >= 7 and all(reasons.values())  # every break but the summary's names its voucher

    status, answer = _api(
        e2e, "POST", "/api/reconciliation/requests", {"bank": "ICBC", "date": f"{day:%Y%m%d}", "wait": True}
    )
    assert status == 200 and answer["run"]["breaks"] == summary["breaks"]  # asked again: the same statement


def test_bad_requests_are_refused_and_change_nothing(e2e: E2E) -> None:
    e2e.start()
    for body, word in [
        ({"bank": "NOPE", "date": "20261123"}, "bank"),
        ({"bank": "ICBC", "date": "2026-13-01"}, "date"),
        ({"bank": "ICBC"}, "date"),
        ({"bank": "ICBC", "date": "20261123", "wait": "yes"}, "wait"),
    ]:
        status, answer = _api(e2e, "POST", "/api/reconciliation/requests", body)
        assert status == 400 and word in answer["message"], (body, answer)
    status, listed = _api(e2e, "GET", "/api/reconciliation/requests")
    assert status == 200 and listed == {"requests": []}
    status, answer = _api(e2e, "GET", "/api/reconciliation/requests/S2026")
    assert status == 404


def test_tgw_simulate_bank_injects_and_records_what_it_injected(e2e: E2E) -> None:
    print(f"seed {SEED}")
    gateway = e2e.start()
    argv = [*tgw_command(), "simulate", "bank", "--config", str(e2e.instance.config_path), "--bank", "ICBC"]
    argv += ["--seed", str(SEED), "--statement-page-size", "2", "--discrepancies", "all=1", "--log-level", "WARNING"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        e2e.until(lambda: bool(gateway.hub.live_sessions("ICBC")), "the tgw simulate bank process to sign on")
        keys = e2e.submit(*(direct_voucher(f"5201450100{i:06d}", (200_000 + 11 * i,)) for i in range(1, 13)))
        for key in keys:
            e2e.wait_state(key, "PAID")
        day = today_cst()
        body = {"bank": "ICBC", "date": f"{day:%Y%m%d}", "wait": True}
        status, answer = _api(e2e, "POST", "/api/reconciliation/requests", body)
        assert status == 200, answer
        status_file = e2e.instance.directory / "simulators" / "ICBC.json"

        def recorded() -> dict[str, Any] | None:
            data = json.loads(status_file.read_text(encoding="utf-8")) if status_file.exists() else None
            return data if data is not None and day.isoformat() in data["results"] else None

        data = e2e.until(recorded, "the simulated bank's status file to show the 2507")
        sent = data["statements"][day.isoformat()]
        assert sent["injected"] == {cls.value: 1 for cls in BreakClass} and sent["pages"] == math.ceil(
            sent["lines"] / 2
        )
        assert answer["run"]["breaks"] == sent["injected"]
        assert data["results"][day.isoformat()]["x_diff_num"] == len(BreakClass) and data["seed"] == SEED
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, errors
    bad = subprocess.run([*argv[:-4], "--discrepancies", "amount=1"], capture_output=True, text=True, timeout=WAIT_S)
    assert bad.returncode == 2 and "no break class 'amount'" in bad.stderr
