"""Interoperability: the openssl CLI accepts what certs/ writes (chains, purposes, CRLs, encrypted keys).

The library never runs openssl; these tests do, as an independent implementation. Verification time is
pinned with ``-attime`` so that the outcome does not depend on the machine's clock.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from certs.store import PkiDirectory
from tests.certs.conftest import NODE, NOW

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed"),
]

AT = str(int((NOW + timedelta(hours=1)).timestamp()))


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module", params=["rsa", "ec"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PkiDirectory:
    """A PKI per key type with ICBC revoked and CCB in good standing."""
    directory = PkiDirectory(tmp_path_factory.mktemp(f"pki-{request.param}"))
    directory.init(NODE, ["ICBC", "CCB"], request.param, NOW)
    directory.revoke(directory.load_bank_cert("ICBC"), "keyCompromise", NOW)
    return directory


def test_openssl_verifies_bank_cert(store: PkiDirectory) -> None:
    """`openssl verify -CAfile ca.pem banks/ICBC/cert.pem` accepts the bank certificate as a TLS client."""
    result = _openssl(
        "verify", "-attime", AT, "-purpose", "sslclient", "-CAfile", store.ca_cert_path, store.bank_cert_path("ICBC")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_openssl_verifies_server_cert_for_localhost(store: PkiDirectory) -> None:
    """openssl accepts the gateway certificate as a TLS server for localhost and 127.0.0.1, not for another host."""
    base = ("verify", "-attime", AT, "-purpose", "sslserver", "-CAfile", store.ca_cert_path)
    assert _openssl(*base, "-verify_hostname", "localhost", store.gateway_tls_cert_path).returncode == 0
    assert _openssl(*base, "-verify_ip", "127.0.0.1", store.gateway_tls_cert_path).returncode == 0
    assert _openssl(*base, "-verify_hostname", "gw.example.cn", store.gateway_tls_cert_path).returncode != 0


def test_openssl_refuses_server_cert_as_client(store: PkiDirectory) -> None:
    """The purposes are real: the server certificate is not accepted as a TLS client certificate."""
    result = _openssl(
        "verify", "-attime", AT, "-purpose", "sslclient", "-CAfile", store.ca_cert_path, store.gateway_tls_cert_path
    )
    assert result.returncode != 0


def test_openssl_parses_crl(store: PkiDirectory) -> None:
    """`openssl crl` parses crl.pem, verifies its signature with the CA and sees ICBC's serial and reason."""
    result = _openssl("crl", "-in", store.crl_path, "-noout", "-text", "-CAfile", store.ca_cert_path)
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stderr + result.stdout
    serial_hex = f"{store.load_bank_cert('ICBC').serial_number:X}"
    assert serial_hex in result.stdout.replace(":", "").upper()
    assert "Key Compromise" in result.stdout


def test_openssl_crl_check(store: PkiDirectory) -> None:
    """With the CRL, openssl refuses the revoked ICBC certificate and still accepts CCB."""
    base = ("verify", "-attime", AT, "-crl_check", "-CAfile", store.ca_cert_path, "-CRLfile", store.crl_path)
    revoked = _openssl(*base, store.bank_cert_path("ICBC"))
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    assert _openssl(*base, store.bank_cert_path("CCB")).returncode == 0


def test_openssl_reads_encrypted_key(tmp_path: Path) -> None:
    """openssl decrypts a key written with a passphrase, and fails with a wrong one."""
    directory = PkiDirectory(tmp_path)
    directory.init(NODE, ["ICBC"], "ec", NOW, passphrase="pw")
    key = directory.bank_key_path("ICBC")
    assert _openssl("pkey", "-in", key, "-noout", "-passin", "pass:pw").returncode == 0
    assert _openssl("pkey", "-in", key, "-noout", "-passin", "pass:wrong").returncode != 0
