"""`tgw bench dialects`: every registered dialect measured, and the three banks' dialects paying at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from banks import registry


def test_bench_dialects_reports_every_dialect_and_each_bank(tmp_path: Path) -> None:
    """The JSON has codec rates for every registered dialect and a payment rate for each bank of the run."""
    out = tmp_path / "dialects.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "bench",
            "dialects",
            "--vouchers",
            "30",
            "--seconds",
            "0.02",
            "--runs",
            "1",
            "--json",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert set(results["codec"]) == set(registry.DIALECTS)
    for code, figures in results["codec"].items():
        assert figures["encode_sign_per_s"] > 0 and figures["decode_verify_per_s"] > 0, code
    banks = results["gateway"]["banks"]
    assert {b["dialect"] for b in banks.values()} == {"icbc", "ccb", "bocom"}
    assert sum(b["final"] for b in banks.values()) == 30
    assert all(b["payments_per_s"] > 0 for b in banks.values() if b["vouchers"])
