"""The demo's reconciliation of the day (issue 6 §6): the gateway, the simulated banks and the feeder in the suite's
shared reactor, real mutual TLS on loopback; after the vouchers settle, every bank's day is reconciled over the
link (4005, paged 4006, run stored, 2507). Without discrepancies every bank balances; with them, what the banks
injected and what the reconciliation found agree class by class. On SQLite and PostgreSQL; seeded (the seed is in
every assertion message).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from random import Random
from typing import Any, Final

import pytest
from rich.console import Console
from sqlalchemy import select
from twisted.internet import defer, task

from gateway import demo
from gateway.commands.demo import print_summary
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import recon_breaks
from protocols.messages import StatementDetail
from reconciliation.matcher import carry_over, reconcile
from reconciliation.model import BreakClass, Totals
from reconciliation.ports import TempFileScratch
from simulators.bank import SpoiltStatement
from tests.reactor_thread import call, reactor
from tests.reconciliation.conftest import BANK, CHECK_DATE, ledger_of, make_lines, statement_of

SEED: Final = 20261124
VOUCHERS: Final = 45
#: Small pages, so that every statement comes over the link in several.
PAGE_SIZE: Final = 4
WAIT_S: Final = 120.0
CLASSES: Final = [cls.value for cls in BreakClass]
FLAGS: Final = ("--discrepancies", "--json")
#: A seed whose first statement moves a cut-off timing line to the next day (not only to the day before).
SPOILER_SEED: Final = 3


def _within(fn: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Run `fn` on the reactor thread and wait for its Deferred, failing after `timeout_s`."""

    def inside() -> defer.Deferred[Any]:
        d = defer.maybeDeferred(fn)
        d.addTimeout(timeout_s, reactor)
        return d

    return call(inside)


@defer.inlineCallbacks
def _until(sim: demo.Simulation, test: Callable[[], bool], timeout_s: float = 30.0) -> Any:
    """Poll `test` on the reactor's clock (not a sleep of the test thread); fail after `timeout_s`."""
    deadline = sim.reactor.seconds() + timeout_s
    while not test():
        if sim.reactor.seconds() > deadline:
            raise AssertionError(f"seed {sim.seed}: still waiting after {timeout_s:g} s")
        yield task.deferLater(sim.reactor, 0.02, lambda: None)


def _simulate(
    directory: Path, database: str, *, seed: int, discrepancies: bool, with_cards: bool = True
) -> tuple[dict[str, Any], demo.Simulation]:
    """A demo run in the shared reactor: feed, settle, reconcile the day; its summary and the simulation."""
    cfg = demo.create_instance(directory, demo.parse_banks(None), database=database)
    sim = demo.Simulation(
        cfg,
        reactor,
        seed=seed,
        rules=demo.demo_rules(return_after_s=0.2),
        with_cards=with_cards,
        discrepancies=discrepancies,
    )
    options = demo.DemoOptions(
        directory=directory, seed=seed, banks=tuple(demo.parse_banks(None)), discrepancies=discrepancies
    )

    @defer.inlineCallbacks
    def run() -> Any:
        yield sim.start()
        yield sim.feed(VOUCHERS)
        yield sim.wait_settled()
        yield sim.settle_cards()
        yield sim.reconcile()
        totals = yield sim.store_totals()
        # the 2507 goes through the outbox after the run is stored: wait until every bank has it
        yield _until(sim, lambda: all(b.reconcile_results for b in sim.banks))
        return demo.summary(sim, totals, options, interrupted=False)

    try:
        result = _within(run)
    finally:
        _within(sim.stop)
    return result, sim


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch, reactor_thread: Any) -> None:
    """The shared reactor running, and the demo banks' statements in pages of :data:`PAGE_SIZE`."""
    monkeypatch.setattr(demo, "STATEMENT_PAGE_SIZE", PAGE_SIZE)


def _check_runs(summary: dict[str, Any], sim: demo.Simulation) -> None:
    """What holds with or without discrepancies: one stored run per bank and date, its 2507 at the bank."""
    seed = summary["seed"]
    recon = summary["reconciliation"]
    assert set(recon) == set(demo.DEFAULT_BANKS), seed
    for bank in sim.banks:
        code = bank.setup.code
        entry = recon[code]
        assert entry["error"] is None, f"seed {seed} {code}: {entry['error']}"
        assert entry["notes"] == [], f"seed {seed} {code}"
        assert list(entry["breaks"]) == list(entry["injected"]) == CLASSES, seed
        assert [r["check_date"] for r in entry["runs"]] == entry["check_dates"], seed
        for run in entry["runs"]:
            check_date = date.fromisoformat(run["check_date"])
            sent = bank.statements[check_date]
            assert sent.pages == -(-max(sent.lines, 1) // PAGE_SIZE) > 1, f"seed {seed} {code}: paged"
            assert run["statement"]["count"] == sent.lines, seed
            assert run["result_msg_id"], f"seed {seed} {code}: the 2507 was queued"
            result = bank.reconcile_results[check_date]
            assert result.x_diff_num == sum(run["breaks"].values()), f"seed {seed} {code}"
            assert result.x_check_result == (1 if any(run["breaks"].values()) else 0), seed
        # the ledger's side is the gateway's: every voucher the bank executed, and every return
        assert entry["ledger"]["count"] == len(bank.ledger.outcomes()) + len(bank.ledger.returns()), seed


def test_without_discrepancies_every_bank_balances(db_url: str, tmp_path: Path, small_pages: None) -> None:
    summary, sim = _simulate(tmp_path / "instance", db_url, seed=SEED, discrepancies=False)
    _check_runs(summary, sim)
    assert summary["discrepancies"] is False
    for code, entry in summary["reconciliation"].items():
        message = f"seed {SEED} {code}: {entry}"
        assert entry["breaks"] == entry["injected"] == dict.fromkeys(CLASSES, 0), message
        assert entry["agrees"] is True, message
        assert entry["ledger"] == entry["statement"], message
        assert entry["matched"] == entry["ledger"]["count"] > 0, message
        assert all(run["open_breaks"] == 0 for run in entry["runs"]), message


def test_with_discrepancies_every_class_is_injected_and_found_as_that_class(
    db_url: str, tmp_path: Path, small_pages: None
) -> None:
    summary, sim = _simulate(tmp_path / "instance", db_url, seed=SEED, discrepancies=True)
    _check_runs(summary, sim)
    assert summary["discrepancies"] is True
    for code, entry in summary["reconciliation"].items():
        injected, found = entry["injected"], entry["breaks"]
        message = f"seed {SEED} {code}: injected {injected}, found {found}"
        assert all(injected[cls] >= 1 for cls in CLASSES), message
        assert found == injected, message
        assert entry["agrees"] is True, message
        # every line the statement lacks, adds or repeats shows in the counts of the two sides
        added = injected["missing_in_ledger"] + injected["duplicate"] - injected["missing_at_bank"]
        assert entry["statement"]["count"] == entry["ledger"]["count"] + added, message
        assert (
            entry["matched"]
            == entry["ledger"]["count"]
            - sum(injected[c] for c in ("missing_at_bank", "status_mismatch", "amount_mismatch", "payee_mismatch"))
            - injected["cutoff_timing"]
        ), message


def _break_keys(database: str) -> list[tuple[str, str, str]]:
    engine = create_engine_for(database)
    try:
        with transaction(engine, read_only=True) as conn:
            b = recon_breaks.c
            rows = conn.execute(select(b.bank_code, b.break_class, b.break_key)).all()
    finally:
        engine.dispose()
    return sorted((r.bank_code, r.break_class, r.break_key) for r in rows)


def test_the_same_seed_injects_the_same_discrepancies_and_finds_the_same_breaks(
    tmp_path: Path, small_pages: None
) -> None:
    runs = []
    for name in ("first", "second"):
        directory = tmp_path / name
        database = f"sqlite:///{directory / 'gateway.db'}"
        # without the card cycle: its review rounds follow the wall clock, so its repayments (statement lines)
        # differ from run to run; the feeder's vouchers and the banks' decisions do not
        summary, _ = _simulate(directory, database, seed=SEED + 1, discrepancies=True, with_cards=False)
        runs.append((summary, _break_keys(database)))
    (first, first_keys), (second, second_keys) = runs
    assert first["vouchers_sha256"] == second["vouchers_sha256"], SEED + 1
    for code in demo.DEFAULT_BANKS:
        a, b = first["reconciliation"][code], second["reconciliation"][code]
        assert a["injected"] == b["injected"] and a["breaks"] == b["breaks"], f"seed {SEED + 1} {code}"
    assert len(first_keys) == sum(sum(e["breaks"].values()) for e in first["reconciliation"].values())
    assert first_keys == second_keys, f"seed {SEED + 1}: the same lines spoilt, the same breaks"


# --- `tgw demo --discrepancies` as a user runs it ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--vouchers", "40", "--seed", str(SEED), "--rate", "0", *FLAGS],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 0, f"seed {SEED}: {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_tgw_demo_discrepancies_prints_injected_and_found_per_bank(cli_run: dict[str, Any]) -> None:
    assert cli_run["seed"] == SEED and cli_run["discrepancies"] is True
    recon = cli_run["reconciliation"]
    assert set(recon) == set(demo.DEFAULT_BANKS)
    for code, entry in recon.items():
        assert entry["error"] is None, f"seed {SEED} {code}: {entry['error']}"
        assert all(entry["injected"][cls] >= 1 for cls in CLASSES), f"seed {SEED} {code}: {entry['injected']}"
        assert entry["breaks"] == entry["injected"], f"seed {SEED} {code}"
        assert entry["agrees"] is True


def test_the_terminal_summary_shows_the_reconciliation(cli_run: dict[str, Any]) -> None:
    console = Console(record=True, width=160)
    print_summary(cli_run, console)
    text = console.export_text()
    assert "reconciliation 日终对账" in text
    assert "every discrepancy injected was found as its class, and nothing else" in text
    for cls in BreakClass:
        assert cls.label in text
    assert text.count("一致 agrees") == len(demo.DEFAULT_BANKS)

    spoilt = json.loads(json.dumps(cli_run))  # a copy where one bank found one break too few
    entry = spoilt["reconciliation"]["CCB"]
    entry["breaks"]["duplicate"] -= 1
    entry["agrees"] = False
    console = Console(record=True, width=160)
    print_summary(spoilt, console)
    text = console.export_text()
    assert "不一致 differs" in text and "the breaks found differ from the discrepancies injected" in text


# --- the demo banks' spoiler, across midnight (pure) ---------------------------------------------------------------


def _reconcile(lines: list[StatementDetail], spoilt: SpoiltStatement, check_date: date, carried: list[Any]) -> Any:
    return reconcile(
        ledger_of(lines),
        statement_of(spoilt.lines, check_date=check_date, declared=Totals(*spoilt.declared)),
        bank=BANK,
        check_date=check_date,
        scratch=TempFileScratch(),
        carried=carried,
    )


def test_the_demo_spoiler_lists_the_lines_it_moved_to_the_next_day_on_the_next_statement() -> None:
    """A demo that runs across midnight: the cut-off timing lines of D come again on D+1's statement and clear
    D's timing breaks there; each day's breaks are exactly that day's injected discrepancies."""
    seed = SPOILER_SEED
    day1, day2 = CHECK_DATE, CHECK_DATE + timedelta(days=1)
    lines1 = make_lines(demo.LARGE_STATEMENT_LINES + 10, Random(seed), day1)
    lines2 = [
        replace(x, voucher_no=x.voucher_no[:4] + "9" + x.voucher_no[5:]) for x in make_lines(12, Random(seed), day2)
    ]
    spoil = demo.demo_spoiler(seed)
    first, second = spoil(lines1, day1), spoil(lines2, day2)
    assert first.injected == {cls.value: n for cls, n in demo.DISCREPANCIES.items()}, seed
    assert second.injected == {cls.value: n for cls, n in demo.DISCREPANCIES_SMALL.items()}, seed
    assert demo.demo_spoiler(seed)(lines1, day1) == first, f"seed {seed}: the same statement every time"

    result1 = _reconcile(lines1, first, day1, [])
    assert {cls.value: n for cls, n in result1.counts().items()} == first.injected, seed
    open1 = carry_over([], result1).open
    keys1 = {(x.vt_code, x.voucher_no) for x in lines1}
    moved = [x for x in second.lines if (x.vt_code, x.voucher_no) in keys1]
    assert moved and all(x.x_pay_date == day2 for x in moved), f"seed {seed}: a line moved to the next day"

    result2 = _reconcile(lines2, second, day2, open1)
    assert {cls.value: n for cls, n in result2.counts().items()} == second.injected, seed
    assert len(result2.cleared) == result2.carried_in.count == len(moved), seed
    assert all(b.break_class is BreakClass.CUTOFF_TIMING for b in result2.cleared)


def test_a_statement_too_short_for_every_class_is_refused_by_the_spoiler() -> None:
    with pytest.raises(ValueError, match="not enough suitable lines"):
        demo.demo_spoiler(SEED)(make_lines(5, Random(SEED), CHECK_DATE), CHECK_DATE)


def test_the_terminal_summary_says_when_nothing_could_be_injected(cli_run: dict[str, Any]) -> None:
    short = json.loads(json.dumps(cli_run))  # as if every statement had been too short to spoil
    for entry in short["reconciliation"].values():
        entry["injected"] = entry["breaks"] = dict.fromkeys(CLASSES, 0)
        entry["notes"] = ["2026-11-24: not enough suitable lines for 1 × amount_mismatch"]
    console = Console(record=True, width=160)
    print_summary(short, console)
    text = console.export_text()
    assert "nothing was injected: a statement needs six lines or more" in text
    assert "every discrepancy injected was found" not in text
    assert text.count("statement sent without discrepancies") == len(demo.DEFAULT_BANKS)
