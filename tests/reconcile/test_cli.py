"""`tgw reconcile` end to end on a small instance: the breaks found are those injected; re-running is idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway import cli
from gateway.demo import create_instance
from gateway.store.db import create_engine_for, transaction
from gateway.store.tables import recon_breaks, recon_runs
from reconciliation.model import BreakClass
from tests.reconcile.helpers import (
    BANK,
    CHECK_DATE,
    seed_ledger,
    spoilt_statement,
    true_statement,
    write_4006,
    write_text,
)

INJECTED = {
    BreakClass.MISSING_AT_BANK: 1,
    BreakClass.MISSING_IN_LEDGER: 2,
    BreakClass.STATUS_MISMATCH: 1,
    BreakClass.AMOUNT_MISMATCH: 1,
    BreakClass.DUPLICATE: 1,
}


def _tgw(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_tgw_reconcile_reports_the_injected_breaks(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = create_instance(tmp_path / "instance", [(BANK, "standard")], database=db_url)
    engine = create_engine_for(db_url)
    try:
        seed_ledger(engine, 16, failed=2, returned=1)
        lines, injected = spoilt_statement(engine, INJECTED, seed=11)
        spoilt = write_text(tmp_path / "spoilt.txt", lines, injected.declared(lines))
        clean = write_text(tmp_path / "clean.txt", true_statement(engine))
        argv = ["reconcile", "--config", str(cfg.path), "--date", f"{CHECK_DATE:%Y%m%d}", "--bank", BANK]
        argv += ["--format", "text", "--json"]  # the standard dialect declares 4006; the standard text layout

        code, out = _tgw(capsys, *argv, "--statement", str(spoilt))
        assert code == 1
        summary = json.loads(out)
        assert summary["breaks"] == {cls.value: n for cls, n in INJECTED.items()}
        reports = summary["reports"]
        assert all(Path(p).is_file() for p in reports.values())
        assert Path(reports["html"]).parent == cfg.directory / "reports"
        assert "不平" in Path(reports["html"]).read_text(encoding="utf-8")
        assert len(Path(reports["csv"]).read_text(encoding="utf-8").splitlines()) == 1 + sum(INJECTED.values())

        code, again = _tgw(capsys, *argv, "--statement", str(spoilt), "--report-dir", str(tmp_path / "r2"))
        assert code == 1
        assert json.loads(again)["breaks"] == summary["breaks"]
        with transaction(engine, read_only=True) as conn:
            assert conn.execute(select(func.count()).select_from(recon_runs)).scalar_one() == 1
            assert conn.execute(select(func.count()).select_from(recon_breaks)).scalar_one() == sum(INJECTED.values())

        code, out = _tgw(capsys, *argv[:-1], "--statement", str(clean))
        assert code == 0, out
        assert "平 balanced" in out
        with transaction(engine, read_only=True) as conn:
            assert conn.execute(select(func.count()).select_from(recon_breaks)).scalar_one() == 0
    finally:
        engine.dispose()


def test_an_unreadable_statement_exits_2_naming_the_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = create_instance(tmp_path / "instance", [(BANK, "standard")], database=db_url)
    bad = tmp_path / "bad.txt"
    bad.write_text("H|20261123|1|10.00\n5201|X|S|20261123|10.0|0|6222\n", encoding="utf-8")
    argv = ["reconcile", "--config", str(cfg.path), "--date", "20261123", "--format", "text"]
    code = cli.main([*argv, "--statement", str(bad)])
    assert code == 2
    assert "line 2" in capsys.readouterr().err


def test_a_4006_statement_that_agrees_exits_0(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = create_instance(tmp_path / "instance", [(BANK, "standard")], database=db_url)
    engine = create_engine_for(db_url)
    try:
        seed_ledger(engine, 6, failed=1, returned=1)
        page = write_4006(tmp_path / "4006-page1.xml", true_statement(engine))
    finally:
        engine.dispose()
    argv = ["reconcile", "--config", str(cfg.path), "--date", f"{CHECK_DATE:%Y%m%d}", "--format", "4006", "--json"]
    code, out = _tgw(capsys, *argv, "--statement", str(page))
    assert code == 0, out
    summary = json.loads(out)
    assert summary["breaks"] == {} and summary["matched"] == 7 and summary["reconciled_vouchers"] == 6
