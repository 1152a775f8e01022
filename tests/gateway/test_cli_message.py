"""`tgw message validate|sign|verify`, run as a bank's developer runs it."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.pki import KeyType, create_ca, generate_key, issue_bank_cert, save_certificates, save_private_key
from gateway.cli import main

VECTORS = Path(__file__).parent.parent / "vectors" / "standard"
NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA, a bank key and certificate, and an unrelated second certificate."""
    d = tmp_path_factory.mktemp("keys")
    ca_key = generate_key(KeyType.RSA)
    ca = create_ca(ca_key, NOW)
    out = {}
    for name in ("bank", "other"):
        key = generate_key(KeyType.EC if name == "other" else KeyType.RSA)
        save_private_key(d / f"{name}-key.pem", key)
        save_certificates(d / f"{name}-cert.pem", issue_bank_cert(ca, ca_key, key, "ICBC", NOW))
        out[name] = d / f"{name}-key.pem"
        out[f"{name}-cert"] = d / f"{name}-cert.pem"
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["message", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_validate_accepts_a_golden_vector(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid message validates with exit 0."""
    code, out = run(capsys, "validate", str(VECTORS / "5201-voucher.xml"))
    assert code == 0 and "valid" in out


def test_validate_lists_every_problem_with_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two broken rules in one voucher are both listed, each with its field, and the exit code is 1."""
    data = (VECTORS / "5201-voucher.xml").read_text(encoding="utf-8")
    data = data.replace("<PayTypeCode>11</PayTypeCode>", "<PayTypeCode>12</PayTypeCode>")
    data = data.replace("<PayAmt>100000.00</PayAmt>", "<PayAmt>100000.01</PayAmt>")
    path = tmp_path / "bad.xml"
    path.write_text(data, encoding="utf-8")
    code, out = run(capsys, "validate", str(path))
    assert code == 1
    assert "Body/Voucher/PayTypeCode" in out and "Body/Voucher/PayAmt" in out


def test_validate_schema_problem_and_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A field of the wrong form is named; a DTD is refused as unreadable; a missing file is a usage error."""
    path = tmp_path / "bad.xml"
    path.write_text(
        (VECTORS / "5201-receipt.xml")
        .read_text(encoding="utf-8")
        .replace("20261123</XPayDate>", "2026-11-23</XPayDate>"),
        encoding="utf-8",
    )
    code, out = run(capsys, "validate", str(path))
    assert code == 1 and "XPayDate" in out
    xxe = tmp_path / "xxe.xml"
    xxe.write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><Message>&x;</Message>'
    )
    code, out = run(capsys, "validate", str(xxe))
    assert code == 1 and "DOCTYPE" in out
    code, out = run(capsys, "validate", str(tmp_path / "missing.xml"))
    assert code == 2 and "cannot read" in out


def test_sign_then_verify_then_tamper(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A signed file verifies with the signer's certificate, not with another, and not once an amount changed."""
    signed = tmp_path / "signed.xml"
    code, _ = run(
        capsys,
        "sign",
        str(VECTORS / "5201-receipt.xml"),
        "--key",
        str(keys["bank"]),
        "--cert",
        str(keys["bank-cert"]),
        "-o",
        str(signed),
    )
    assert code == 0 and b"SignatureValue" in signed.read_bytes()
    code, out = run(capsys, "verify", str(signed), "--cert", str(keys["bank-cert"]))
    assert code == 0 and "signature valid" in out
    code, out = run(capsys, "verify", str(signed), "--cert", str(keys["other-cert"]))
    assert code == 1 and "NOT VERIFIED" in out
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"<XPayAmt>125000.00", b"<XPayAmt>925000.00"))
    code, out = run(capsys, "verify", str(tampered), "--cert", str(keys["bank-cert"]))
    assert code == 1 and "NOT VERIFIED" in out


def test_sign_refuses_invalid_or_signed_input(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid message is not signed; an already signed one is not signed again; an unsigned one does not verify."""
    bad = tmp_path / "bad.xml"
    bad.write_text(
        (VECTORS / "2252-return.xml").read_text(encoding="utf-8").replace("<PayAmt>-", "<PayAmt>"), encoding="utf-8"
    )
    code, out = run(capsys, "sign", str(bad), "--key", str(keys["bank"]), "--cert", str(keys["bank-cert"]))
    assert code == 1 and "PayAmt" in out
    signed = tmp_path / "signed.xml"
    args = ["--key", str(keys["bank"]), "--cert", str(keys["bank-cert"])]
    assert run(capsys, "sign", str(VECTORS / "9005-ping.xml"), *args, "-o", str(signed))[0] == 0
    code, out = run(capsys, "sign", str(signed), *args)
    assert code == 1 and "already signed" in out
    code, out = run(capsys, "verify", str(VECTORS / "9005-ping.xml"), "--cert", str(keys["bank-cert"]))
    assert code == 1 and "no signature" in out


def test_usage_errors(tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown dialect, a key that does not load and a certificate that does not match are usage errors (2)."""
    vector = str(VECTORS / "9005-ping.xml")
    assert run(capsys, "validate", vector, "--dialect", "nonesuch")[0] == 2
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    assert run(capsys, "sign", vector, "--key", str(garbage), "--cert", str(keys["bank-cert"]))[0] == 2
    assert run(capsys, "sign", vector, "--key", str(keys["bank"]), "--cert", str(keys["other-cert"]))[0] == 2
    assert run(capsys, "verify", vector, "--cert", str(garbage))[0] == 2


@pytest.mark.interop
def test_xmlsec1_verifies_what_the_tool_signs(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An independent implementation accepts the tool's output and refuses it after tampering."""
    signed = tmp_path / "signed.xml"
    run(
        capsys,
        "sign",
        str(VECTORS / "5201-voucher.xml"),
        "--key",
        str(keys["bank"]),
        "--cert",
        str(keys["bank-cert"]),
        "-o",
        str(signed),
    )
    cmd = [
        "xmlsec1",
        "--verify",
        "--pubkey-cert-pem",
        str(keys["bank-cert"]),
        "--enabled-key-data",
        "rsa,ecdsa",
        "--enabled-reference-uris",
        "empty",
        str(signed),
    ]
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
    signed.write_bytes(signed.read_bytes().replace("南宁市教育局".encode(), "南宁市公安局".encode()))
    assert subprocess.run(cmd, capture_output=True, check=False).returncode != 0
