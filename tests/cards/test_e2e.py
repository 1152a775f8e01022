"""The official-card cycle over real mutual TLS, on SQLite and PostgreSQL (driven by `tests/cards/e2e_cycle.py`).

Spending in over TLS (real time, the same MsgId twice, the daily batch) → the finance side's `tgw cards` (list,
approve with the rules, reject) → `tgw cards repay` → 8202s over TLS → the simulated bank pays and fails one
detail (a closed card) → the failed record is back to approved with the reason and its quota restored; what the
gateway says was repaid is what the bank's ledger paid; card numbers only ever masked outside the archive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
A, B, C, D, E, F = (f"ICBCE2E000{n}" for n in range(1, 7))


@pytest.fixture
def seen(db_url: str, tmp_path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.cards.e2e_cycle", "--dir", str(tmp_path / "instance"), "--database", db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_the_card_cycle_over_tls(seen: dict[str, Any]) -> None:
    amounts = seen["amounts"]
    # spending in: six records, whatever was pushed twice; every report acknowledged 90000
    assert seen["after_push"] == {s: ["RECEIVED", None] for s in (A, B, C, D, E, F)}
    assert set(seen["results_from_gateway"]) == {"90000"}
    # review: only the agency's own, never twice, never beyond the quota
    listed = seen["list_health"]
    assert listed["code"] == 0 and listed["json"]["total"] == 4
    assert {r["spend_id"] for r in listed["json"]["records"]} == {A, B, C, F}
    assert (
        seen["approve_other_agency"][0] == 1 and f"ICBC:{D}: not a spending record" in seen["approve_other_agency"][2]
    )
    assert seen["approve_health"][0] == 0
    assert seen["approve_twice"][0] == 1 and "already reviewed" in seen["approve_twice"][2]
    assert seen["approve_beyond_quota"][0] == 1 and "quota" in seen["approve_beyond_quota"][2]
    assert seen["approve_education"][0] == seen["reject_education"][0] == 0
    assert seen["quota_after_review"] == {"102003": amounts[A] + amounts[B] + amounts[C], "101001": amounts[D]}
    # repayment out: one voucher per agency and card
    repay = seen["repay"]["json"]
    assert seen["repay"]["code"] == 0 and repay["skipped"] == []
    assert sorted((v["agency"], v["card"], v["records"]) for v in repay["vouchers"]) == [
        ("101001", "628288*********0003", 1),
        ("102003", "628288*********0001", 2),
        ("102003", "628288*********0002", 1),
    ]
    # result in: B's detail failed at the bank; B is approved, not repaid, with the reason; its quota came back
    assert seen["after_repay"] == {
        A: ["REPAID", None],
        B: ["APPROVED", "卡片已销户"],
        C: ["REPAID", None],
        D: ["REPAID", None],
        E: ["REJECTED", "个人消费"],
        F: ["RECEIVED", None],
    }
    assert seen["quota_after_repay"] == {"102003": amounts[A] + amounts[C], "101001": amounts[D]}
    repaid_fen = sum(amounts[s] for s, (state, _) in seen["after_repay"].items() if state == "REPAID")
    assert seen["ledger_paid_fen"] == repaid_fen == sum(x for _, _, x in seen["vouchers"].values())
    assert sorted(seen["ledger_details"].values()) == [
        [["1", True, None]],
        [["1", True, None]],
        [["1", True, None], ["2", False, "卡片已销户"]],
    ]
    assert seen["api_summary"]["counts"]["repay_failures"] == 1
    assert seen["api_summary"]["counts"]["fen_REPAID"] == repaid_fen
    # deadlines: B (5 days) is due now; 40 days on, B and F (open) are overdue, the repaid ones are not
    due_now = json.loads(seen["due_now"][1])
    assert [r["spend_id"] for r in due_now["due"]] == [B] and due_now["overdue"] == []
    due_later = json.loads(seen["due_later"][1])
    assert sorted(r["spend_id"] for r in due_later["overdue"]) == [B, F]
    # card numbers: in the signed archive, nowhere in what the CLI and the API print
    assert seen["archive_has_card_numbers"]
    printed = json.dumps({k: v for k, v in seen.items() if k != "cards"}, ensure_ascii=False)
    assert "628288*********0001" in printed
    for number in seen["cards"]:
        assert number not in printed
