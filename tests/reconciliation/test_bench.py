"""The benchmark runs end to end on small sizes, measures in processes of its own, and copes without pandas."""

from __future__ import annotations

import importlib
import json
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reconciliation import bench
from reconciliation.model import BreakClass, LedgerEntry, Status


def in_process(contender: str, directory: Path) -> dict[str, Any]:
    return bench.CONTENDERS[contender](directory)


def test_the_benchmark_runs_in_processes_of_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures_file = tmp_path / "figures.json"
    assert (
        bench.main(["--sizes", "2000", "--repeat", "2", "--workdir", str(tmp_path), "--json", str(figures_file)]) == 0
    )
    out = capsys.readouterr().out
    assert "     2,000  ours " in out and "injected: 8" in out
    [figures] = json.loads(figures_file.read_text(encoding="utf-8"))
    ours = figures["ours"]
    assert figures["lines"] == 2000 and ours["runs"] == 2 and ours["breaks"] == figures["injected"]
    assert ours["matched"] == 2000 - 5 and ours["seconds_min"] <= ours["seconds_median"] <= ours["seconds_max"]
    assert 0 < ours["peak_rss_mib"] < 500 and "pandas" in figures
    if "error" not in figures["pandas"]:  # each round's ratio to pandas, then their median
        assert ours["cpu_ratio_to_pandas"] > 0 and ours["wall_ratio_to_pandas"] > 0
    assert list(tmp_path.iterdir()) == [figures_file]  # the data went in a temporary directory, now gone


def test_without_pandas_the_reference_is_skipped_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def no_pandas(name: str, package: str | None = None) -> ModuleType:
        if name == "pandas":
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(bench, "spawn", in_process)
    monkeypatch.setattr(importlib, "import_module", no_pandas)
    assert bench.main(["--sizes", "1500", "--repeat", "1", "--per-class", "2", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "  pandas       pandas is not installed" in out and out.rstrip().endswith("`pip install pandas`).")


def test_the_pandas_reference_counts_what_it_can_see(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    injected = bench.generate(tmp_path, 3000, seed=5, per_class=3)
    found = bench.run_pandas(tmp_path)
    assert found["breaks"]["ledger_only"] == injected["missing_at_bank"]
    assert found["breaks"]["amount"] == injected["amount_mismatch"]
    assert found["breaks"]["pay_date"] == injected["cutoff_timing"]


def test_every_statement_format_finds_what_was_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "spawn", in_process)
    figures_file = tmp_path / "f.json"
    argv = [
        "--sizes",
        "1200",
        "--repeat",
        "1",
        "--formats",
        "text,4006,camt053",
        "--no-pandas",
        "--json",
        str(figures_file),
    ]
    assert bench.main([*argv, "--workdir", str(tmp_path)]) == 0
    [figures] = json.loads(figures_file.read_text(encoding="utf-8"))
    for contender in ("ours", "ours-4006", "ours-camt053"):
        assert figures[contender]["breaks"] == figures["injected"], contender


def test_an_unknown_format_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--formats", "text,csv"])
    assert "unknown statement formats: csv" in capsys.readouterr().err


def test_in_process_runs_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "spawn", in_process)
    assert bench.main(["--sizes", "1000", "--repeat", "1", "--no-pandas", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("     1,000")] == ["ours"]


def test_a_statement_in_voucher_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    injected = bench.generate(tmp_path, 1200, seed=3, per_class=2, key_order=True)
    header, *lines = (tmp_path / "statement.txt").read_text(encoding="utf-8").splitlines()
    keys = [line.split("|")[:2] for line in lines]
    assert keys == sorted(keys) and len(lines) == int(header.split("|")[2]) > 1000
    measured = bench.run_ours(tmp_path)
    assert measured["breaks"] == injected
    assert bench.main(["--sizes", "600", "--repeat", "1", "--statement-order", "key", "--no-pandas"]) == 0
    assert "statement in key order" in capsys.readouterr().out


def test_a_failing_contender_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_spawn = bench.spawn
    monkeypatch.setattr(bench, "generate", lambda directory, size, **_: {cls.value: 0 for cls in BreakClass})
    monkeypatch.setattr(bench, "spawn", lambda contender, directory: real_spawn(contender, directory / "missing"))
    assert bench.main(["--sizes", "10", "--repeat", "1", "--workdir", str(tmp_path)]) == 0
    assert "ours         ours failed:" in capsys.readouterr().out


def test_the_worker_prints_its_measurement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench.generate(tmp_path, 500, seed=1, per_class=1)
    assert bench.main(["--worker", "ours", "--workdir", str(tmp_path)]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["matched"] == 495 and measured["cpu_seconds"] > 0
    assert bench.FileLedger(tmp_path / "ledger.txt").control_totals(bench.BANK, bench.CHECK_DATE) is None


def test_the_file_ledger_reads_every_entry_across_blocks_and_refuses_a_torn_file(tmp_path: Path) -> None:
    rows = [f"450100|2026|5201|V{i:06d}|S{i}|{i + 1}|{i % 3}|622{i}|2026112{3 + i % 2}\n" for i in range(3000)]
    (tmp_path / "ledger.txt").write_text("".join(rows), encoding="utf-8")  # some 150 KiB: several blocks
    entries = list(bench.FileLedger(tmp_path / "ledger.txt").entries(bench.BANK, bench.CHECK_DATE))
    assert len(entries) == 3000
    assert entries[2999] == LedgerEntry(
        "450100", 2026, "5201", "V002999", "S2999", 3000, Status.FAILED, "6222999", date(2026, 11, 24)
    )
    assert [e.voucher_no for e in entries] == [f"V{i:06d}" for i in range(3000)]
    for torn in ("".join(rows)[:-1], "".join(rows).replace("|622", "", 1)):
        (tmp_path / "ledger.txt").write_text(torn, encoding="utf-8")
        with pytest.raises(ValueError, match=r"last line|9 fields"):
            list(bench.FileLedger(tmp_path / "ledger.txt").entries(bench.BANK, bench.CHECK_DATE))
