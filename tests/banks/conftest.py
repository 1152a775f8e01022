"""Fixtures of the bank dialect tests: throwaway keys of each kind for the bank, and an attacker's."""

from __future__ import annotations

import pytest

from tests.vectors.attacks.generate import Keys, make_keys


@pytest.fixture(scope="session")
def bank_keys() -> dict[str, Keys]:
    """The bank's signing keys by kind ("rsa", "ec"), each with a self-signed certificate."""
    return {kind: make_keys(kind, f"bank-{kind}") for kind in ("rsa", "ec")}


@pytest.fixture(scope="session")
def attacker_keys() -> dict[str, Keys]:
    """Another party's keys by kind: what they sign must not verify with the bank's pinned certificate."""
    return {kind: make_keys(kind, f"attacker-{kind}") for kind in ("rsa", "ec")}
