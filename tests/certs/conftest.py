"""Shared PKI fixtures: a fixed clock and, per key type, one CA with its gateway and bank certificates.

Keys are generated once per session (RSA generation is the slow part); certificates are cheap and built per
fixture from those keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography import x509

from certs import pki

NOW = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
NODE = "450100000000"


@dataclass(frozen=True)
class Issued:
    """One key type's CA and leaves, all issued at :data:`NOW`."""

    key_type: pki.KeyType
    ca_key: pki.PrivateKey
    ca: x509.Certificate
    server_key: pki.PrivateKey
    server: x509.Certificate
    signing_key: pki.PrivateKey
    signing: x509.Certificate
    bank_key: pki.PrivateKey
    bank: x509.Certificate


_KEYS: dict[pki.KeyType, list[pki.PrivateKey]] = {}


def keys(key_type: pki.KeyType, count: int = 4) -> list[pki.PrivateKey]:
    """`count` keys of a type, generated once per session and reused."""
    pool = _KEYS.setdefault(key_type, [])
    while len(pool) < count:
        pool.append(pki.generate_key(key_type))
    return pool[:count]


@pytest.fixture(params=[pki.KeyType.RSA, pki.KeyType.EC], ids=["rsa", "ec"])
def issued(request: pytest.FixtureRequest) -> Issued:
    """A CA, a server, a signing and an ICBC bank certificate, for each key type."""
    key_type: pki.KeyType = request.param
    ca_key, server_key, signing_key, bank_key = keys(key_type)
    ca = pki.create_ca(ca_key, NOW)
    return Issued(
        key_type=key_type,
        ca_key=ca_key,
        ca=ca,
        server_key=server_key,
        server=pki.issue_server_cert(ca, ca_key, server_key, NOW),
        signing_key=signing_key,
        signing=pki.issue_signing_cert(ca, ca_key, signing_key, NODE, NOW),
        bank_key=bank_key,
        bank=pki.issue_bank_cert(ca, ca_key, bank_key, "ICBC", NOW),
    )
