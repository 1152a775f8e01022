"""The dependency rule (docs/architecture.md): lower layers never import upper ones or I/O, never read the clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LAYERS = {  # package -> packages it may import from this project
    "protocols": set(),
    "certs": {"protocols"},
    "banks": {"protocols", "certs"},
    "reconciliation": {"protocols", "banks", "certs"},
    "simulators": {"protocols", "banks", "certs"},
    "gateway": {"protocols", "banks", "certs", "reconciliation", "simulators"},
}
PURE = ("protocols", "banks", "reconciliation")  # reconciliation/bench.py is a benchmark tool, exempt below
EXEMPT = {"reconciliation/bench.py"}
# threading is allowed: lxml parsers are kept per thread (protocols/xmlsafe.py), which is not I/O.
FORBIDDEN_IN_PURE = {"twisted", "sqlalchemy", "socket", "random", "asyncio"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_flow_downward(package: str) -> None:
    """A package imports only the project packages below it."""
    others = set(LAYERS) - LAYERS[package] - {package}
    offenders = {str(p.relative_to(ROOT)): _imports(p) & others for p in _modules(package)}
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("package", PURE)
def test_pure_layers_do_no_io_and_read_no_clock(package: str) -> None:
    """protocols/ and banks/ import no reactor, database, socket or global randomness, and read no clock."""
    for path in _modules(package):
        if str(path.relative_to(ROOT)) in EXEMPT:
            continue
        assert not (_imports(path) & FORBIDDEN_IN_PURE), path
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in CLOCK_CALLS and isinstance(node.value, ast.Name):
                assert node.value.id not in {"datetime", "date", "time"}, f"{path}:{node.lineno} reads the clock"
