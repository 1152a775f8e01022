"""Suite-wide test configuration: hypothesis profiles (derandomized under CI=true)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.conftest_db", "tests.reactor_thread"]

settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Stop the shared reactor thread, if a test started it (tests/reactor_thread.py)."""
    from tests import reactor_thread

    reactor_thread.stop()
