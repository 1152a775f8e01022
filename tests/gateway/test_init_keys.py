"""`tgw init` gives every bank a key its dialect can sign with, and the gateway a signer for each dialect."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from banks import registry
from certs.pki import load_certificate
from gateway import cli
from gateway import config as configuration
from gateway.hub import signer_for, signing_pair_for


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_mixed_dialects_get_keys_they_accept(tmp_path: Path, key_type: str) -> None:
    """ICBC (detached RSA) and CCB (detached ECDSA) in one instance: each bank key and each gateway signer fits."""
    directory = tmp_path / "instance"
    argv = ["init", str(directory), "--bank", "ICBC:icbc", "--bank", "CCB:ccb", "--bank", "BOCOM:bocom"]
    assert cli.main([*argv, "--key-type", key_type, "--bank-port", "0", "--web-port", "0"]) == 0
    cfg = configuration.load(directory / "gateway.toml")
    kinds = {code: type(load_certificate(bank.signing_cert).public_key()) for code, bank in cfg.banks.items()}
    assert issubclass(kinds["ICBC"], rsa.RSAPublicKey)
    assert issubclass(kinds["CCB"], ec.EllipticCurvePublicKey)
    for code, bank in cfg.banks.items():
        signer = signer_for(cfg, code)
        assert signer.signature_method in registry.get(bank.dialect).signature_methods
        cert_path, _ = signing_pair_for(cfg, code)
        assert cert_path in {cfg.signing_cert, cfg.alt_signing_cert}
    # BOCOM (enveloped XMLDSig) accepts both types, so it is signed with the instance's default key.
    assert signing_pair_for(cfg, "BOCOM")[0] == cfg.signing_cert
