"""`tgw demo` end to end, as a user runs it: a subprocess, real mutual TLS on loopback, SQLite, seeded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from banks import registry
from gateway import demo
from gateway.cli import main
from gateway.dbthread import in_transaction
from gateway.payments import queries
from gateway.store.db import create_engine_for

SEED = 7
VOUCHERS = 30
FINAL = {"PAID", "FAILED", "REJECTED", "RETURNED", "CANCELLED"}


def _tgw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _demo(directory: Path) -> dict[str, Any]:
    done = _tgw(
        "demo",
        "--vouchers",
        str(VOUCHERS),
        "--seed",
        str(SEED),
        "--json",
        "--dir",
        str(directory),
        cwd=directory.parent,
    )
    assert done.returncode == 0, f"seed {SEED}: {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _stored(directory: Path) -> list[dict[str, Any]]:
    engine = create_engine_for(f"sqlite:///{directory / 'gateway.db'}")
    try:
        page = in_transaction(engine, queries.list_vouchers, queries.VoucherFilter(limit=1000))
    finally:
        engine.dispose()
    return sorted(page["vouchers"], key=lambda v: v["key"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The same seeded demo, twice: each run's summary and the vouchers in its store."""
    out = []
    for name in ("first", "second"):
        directory = tmp_path_factory.mktemp("demo") / name
        out.append((_demo(directory), _stored(directory)))
    return out


def test_every_submitted_voucher_is_final_and_the_counts_add_up(runs: list[Any]) -> None:
    summary, stored = runs[0]
    assert summary["seed"] == SEED
    repayments = summary["cards"]["repayment_vouchers"]  # official-card repayments, beside the feeder's vouchers
    assert summary["vouchers_submitted"] == summary["vouchers_final"] == VOUCHERS + repayments == len(stored)
    assert set(summary["states"]) <= FINAL
    assert sum(summary["states"].values()) == VOUCHERS + repayments
    assert {v["state"] for v in stored} <= FINAL
    assert set(summary["banks"]) == set(demo.DEFAULT_BANKS)
    for code, bank in summary["banks"].items():
        assert sum(bank["states"].values()) == bank["vouchers"] == bank["final"], code
        assert bank["vouchers"] == sum(1 for v in stored if v["bank"] == code), code
    assert sum(b["vouchers"] for b in summary["banks"].values()) == VOUCHERS + repayments
    for state, n in summary["states"].items():
        assert n == sum(b["states"].get(state, 0) for b in summary["banks"].values())
    assert summary["quota_notices"] == len(demo.DEFAULT_BANKS)
    fed = [v for v in stored if v["business_type_code"] != "2"]  # not the official-card repayments
    assert summary["amount_fen_submitted"] == sum(v["amount_fen"] for v in fed)
    assert summary["elapsed_s"] > 0 and summary["throughput_per_s"] > 0
    assert summary["interrupted"] is False


def test_the_bank_ledgers_paid_what_the_gateway_recorded_as_paid(runs: list[Any]) -> None:
    summary, stored = runs[0]
    assert summary["ledgers_agree"] is True
    for code, bank in summary["banks"].items():
        paid_in_store = sum(v["amount_fen"] for v in stored if v["bank"] == code and v["state"] in ("PAID", "RETURNED"))
        returned_in_store = sum(v["returned_fen"] for v in stored if v["bank"] == code)
        assert bank["ledger"]["paid_fen"] == bank["paid_fen"] == paid_in_store, code
        assert bank["ledger"]["returned_fen"] == bank["returned_fen"] == returned_in_store, code
        assert bank["ledger"]["executed"] == bank["vouchers"], code
        assert bank["ledger"]["refused"] == bank["states"].get("FAILED", 0), code


def test_the_demo_ends_with_a_reconciliation_of_the_day_that_balances_for_every_bank(runs: list[Any]) -> None:
    summary, stored = runs[0]
    assert summary["discrepancies"] is False
    assert set(summary["reconciliation"]) == set(demo.DEFAULT_BANKS)
    for code, entry in summary["reconciliation"].items():
        assert entry["error"] is None, f"seed {SEED} {code}: {entry['error']}"
        assert not any(entry["breaks"].values()) and not any(entry["injected"].values()), f"seed {SEED} {code}"
        assert entry["agrees"] is True
        final = [v for v in stored if v["bank"] == code and v["state"] in ("PAID", "FAILED", "RETURNED")]
        returns = summary["banks"][code]["ledger"]["returns"]
        assert entry["ledger"]["count"] == entry["statement"]["count"] == entry["matched"] == len(final) + returns
        assert [run["result_msg_id"] is not None for run in entry["runs"]] == [True] * len(entry["check_dates"])


def test_the_same_seed_generates_the_same_vouchers_and_the_banks_decide_the_same(runs: list[Any]) -> None:
    """The feeder's vouchers and the banks' decisions on them. Not the official-card repayments: the budget units
    review and repay every two seconds of wall-clock time (`gateway.cards.demo`), and the last review round is let
    finish before the day is reconciled, so how many repayment vouchers a short run makes depends on its timing."""
    (first, first_stored), (second, second_stored) = runs

    def decisions(stored: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (v["key"], v["bank"], v["amount_fen"], v["payee_acct_no"], v["state"], v["returned_fen"])
            for v in stored
            if v["business_type_code"] != "2"  # not a repayment
        ]

    assert len(decisions(first_stored)) == VOUCHERS
    assert decisions(first_stored) == decisions(second_stored)
    assert first["vouchers_sha256"] == second["vouchers_sha256"]
    assert first["amount_fen_submitted"] == second["amount_fen_submitted"]


def test_demo_banks_speak_their_own_dialect_when_one_is_registered() -> None:
    for code, dialect in demo.parse_banks(None):
        assert dialect == (code.lower() if code.lower() in registry.DIALECTS else "standard")
    assert demo.parse_banks("X1:standard,X2") == [("X1", "standard"), ("X2", "standard")]
    with pytest.raises(demo.DemoError, match="unknown dialect"):
        demo.parse_banks("X1:klingon")
    with pytest.raises(demo.DemoError, match="once"):
        demo.parse_banks("X1,X1")


def test_simulate_bank_refuses_to_start_without_a_running_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["init", str(tmp_path / "i"), "--bank", "ICBC", "--key-type", "ec", "--bank-port", "0", "--web-port", "0"])
        == 0
    )
    config = str(tmp_path / "i" / "gateway.toml")
    assert main(["simulate", "bank", "--config", config, "--bank", "ICBC"]) == 2
    assert "run.json" in capsys.readouterr().err
    assert main(["simulate", "bank", "--config", config, "--bank", "NOPE"]) == 2
    assert "not a bank" in capsys.readouterr().err


def test_the_demo_fails_when_a_ledger_or_a_reconciliation_disagrees() -> None:
    """`tgw demo` exits 1 unless the ledgers agree and every bank's reconciliation found what was injected."""
    from gateway.commands.demo import demo_agrees

    good = {"ledgers_agree": True, "reconciliation": {"ICBC": {"agrees": True}, "CCB": {"agrees": True}}}
    assert demo_agrees(good)
    assert not demo_agrees({**good, "ledgers_agree": False})
    assert not demo_agrees({**good, "reconciliation": {"ICBC": {"agrees": True}, "CCB": {"agrees": False}}})
    assert not demo_agrees({**good, "reconciliation": {"ICBC": {"agrees": True}, "CCB": {"error": "timed out"}}})
