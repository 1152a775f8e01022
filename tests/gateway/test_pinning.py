"""A bank's pinned certificates (gateway/pinning.py): the configured one and the kept previous ones, less the revoked;
a signature verifies with any of them and with nothing else; the set survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine
from twisted.internet.task import Clock

from banks.standard import STANDARD_DIALECT
from certs.pki import load_certificate
from certs.store import PkiDirectory
from gateway import pinning
from gateway.config import Config
from protocols.errors import SignatureInvalid, SignatureMissing
from protocols.messages import Ping
from protocols.signature import DS_NS
from tests.gateway.conftest import NOW, Bank, make_bank, make_hub


def _rotate(config: Config, code: str = "ICBC") -> tuple[Bank, Bank]:
    """The bank's side before and after it is issued a new certificate, the previous one kept."""
    before = make_bank(config, code)
    signing_cert = config.banks[code].signing_cert
    kept = pinning.keep_previous(signing_cert)
    assert kept is not None
    PkiDirectory(config.directory / "pki").issue_bank(code, None, NOW)
    return before, make_bank(config, code)


def _serial(path: Path) -> int:
    return load_certificate(path).serial_number


def _verifies(verifier: pinning.PinnedVerifier, bank: Bank) -> bool:
    try:
        STANDARD_DIALECT.decode(bank.document(Ping()), verifier)
    except SignatureInvalid:
        return False
    return True


def test_both_certificates_verify_until_one_is_revoked(config: Config) -> None:
    signing_cert, crl = config.banks["ICBC"].signing_cert, config.crl
    first = pinning.pinned_for("ICBC", signing_cert, crl)
    old_serial = _serial(signing_cert)
    assert first.serials == {old_serial}
    old, new = _rotate(config)
    new_serial = _serial(signing_cert)
    assert (signing_cert.parent / "previous" / f"{old_serial:x}.pem").exists()
    both = pinning.pinned_for("ICBC", signing_cert, crl)
    assert both.serials == {old_serial, new_serial}
    assert both.certificates[0].serial_number == new_serial  # the configured one is tried first
    assert _verifies(both, old) and _verifies(both, new)
    assert not _verifies(first, new), "a set read before the issue does not know the new certificate"
    assert not _verifies(both, make_bank(config, "CCB")), "another bank's key is not pinned for ICBC"
    PkiDirectory(config.directory / "pki").revoke(old_serial, "superseded", NOW)
    after = pinning.pinned_for("ICBC", signing_cert, crl)
    assert after.serials == {new_serial} and _verifies(after, new) and not _verifies(after, old)


def test_every_certificate_revoked_leaves_nothing_that_verifies(config: Config) -> None:
    signing_cert = config.banks["ICBC"].signing_cert
    bank = make_bank(config, "ICBC")
    PkiDirectory(config.directory / "pki").revoke(_serial(signing_cert), "keyCompromise", NOW)
    empty = pinning.pinned_for("ICBC", signing_cert, config.crl)
    assert empty.serials == frozenset() and empty.signature_method  # still says which key type the bank uses
    with pytest.raises(SignatureInvalid, match="every one it holds is revoked"):
        STANDARD_DIALECT.decode(bank.document(Ping()), empty)


def test_a_document_off_the_profile_is_refused_as_such_not_tried_with_every_key(config: Config) -> None:
    old, _ = _rotate(config)
    both = pinning.pinned_for("ICBC", config.banks["ICBC"].signing_cert, config.crl)
    root = etree.fromstring(old.document(Ping()))
    [signature] = root.findall(f"{{{DS_NS}}}Signature")
    root.remove(signature)
    unsigned = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    with pytest.raises(SignatureMissing):
        STANDARD_DIALECT.decode(unsigned, both)


def test_keep_previous_is_idempotent_and_needs_a_certificate(config: Config, tmp_path: Path) -> None:
    signing_cert = config.banks["ICBC"].signing_cert
    first = pinning.keep_previous(signing_cert)
    again = pinning.keep_previous(signing_cert)
    assert first is not None and again is not None and first.serial_number == again.serial_number
    assert len(list((signing_cert.parent / "previous").iterdir())) == 1
    assert pinning.keep_previous(tmp_path / "nothing.pem") is None


def test_the_pinned_set_survives_a_restart(config: Config, db_engine: Engine, clock: Clock) -> None:
    old, new = _rotate(config)
    hub = make_hub(config, db_engine, clock)  # a gateway started after the issue
    verifier = hub.verifiers["ICBC"]
    assert isinstance(verifier, pinning.PinnedVerifier)
    assert _verifies(verifier, old) and _verifies(verifier, new)
