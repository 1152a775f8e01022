"""reconciliation/ keeps the dependency rule of docs/architecture.md (tests/test_layers.py checks protocols/ and
banks/ the same way): no reactor, database, socket or global randomness, no clock.

bench.py is the exception by design: a benchmark reads the clock and starts processes; nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_layers import CLOCK_CALLS, FORBIDDEN_IN_PURE, _imports

ROOT = Path(__file__).parent.parent.parent / "reconciliation"
PURE_MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "bench.py")


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_do_no_io_and_read_no_clock(path: Path) -> None:
    assert not (_imports(path) & (FORBIDDEN_IN_PURE | {"gateway", "simulators", "subprocess", "time"})), path
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_CALLS and isinstance(node.value, ast.Name):
            assert node.value.id not in {"datetime", "date", "time"}, f"{path}:{node.lineno} reads the clock"


def test_nothing_imports_the_benchmark() -> None:
    for path in PURE_MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "reconciliation.bench" not in modules, path
