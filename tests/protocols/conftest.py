"""Fixtures of the protocol tests: throwaway RSA-2048 and ECDSA P-256 keys with self-signed certificates."""

from __future__ import annotations

import pytest

from tests.vectors.attacks.generate import Keys, make_keys


@pytest.fixture(scope="session")
def rsa_keys() -> Keys:
    """An RSA-2048 signing key of the sender."""
    return make_keys("rsa", "sender-rsa")


@pytest.fixture(scope="session")
def ec_keys() -> Keys:
    """An ECDSA P-256 signing key of the sender."""
    return make_keys("ec", "sender-ec")


@pytest.fixture(scope="session")
def other_keys() -> dict[str, Keys]:
    """An attacker's keys of each kind, to sign what the sender's pinned key must not accept."""
    return {kind: make_keys(kind, f"attacker-{kind}") for kind in ("rsa", "ec")}


@pytest.fixture(scope="session")
def all_keys(rsa_keys: Keys, ec_keys: Keys) -> dict[str, Keys]:
    """The sender's keys by kind, for property tests that draw the kind (hypothesis does not mix well with
    parametrized fixtures under pytest-twisted)."""
    return {"rsa": rsa_keys, "ec": ec_keys}


@pytest.fixture(scope="session", params=["rsa", "ec"])
def keys(request: pytest.FixtureRequest, rsa_keys: Keys, ec_keys: Keys) -> Keys:
    """Each of the sender's keys in turn: every test that takes it runs for RSA and for ECDSA."""
    return rsa_keys if request.param == "rsa" else ec_keys
