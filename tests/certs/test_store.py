"""certs.store.PkiDirectory: the files `init` writes, re-issuing, revocation state and the CRL on disk."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certs import pki
from certs.store import CaExistsError, PkiDirectory, RevocationStateError
from tests.certs.conftest import NODE, NOW

LATER = NOW + timedelta(days=1)

EXPECTED_FILES = [
    "banks/CCB/cert.pem",
    "banks/CCB/key.pem",
    "banks/ICBC/cert.pem",
    "banks/ICBC/key.pem",
    "ca-key.pem",
    "ca.pem",
    "crl.pem",
    "gateway-signing-cert.pem",
    "gateway-signing-key.pem",
    "gateway-tls-cert.pem",
    "gateway-tls-key.pem",
    "revoked.json",
]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.fixture(scope="module")
def ec_store(tmp_path_factory: pytest.TempPathFactory) -> PkiDirectory:
    """An EC PKI with ICBC and CCB, initialised once for the read-only tests of this module."""
    store = PkiDirectory(tmp_path_factory.mktemp("pki") / "dev")
    store.init(NODE, ["ICBC", "CCB"], "ec", NOW)
    return store


def test_init_creates_every_file(ec_store: PkiDirectory) -> None:
    """init writes the CA, the gateway's two pairs, one pair per bank, an empty CRL and revoked.json."""
    assert _files(ec_store.path) == EXPECTED_FILES
    assert ec_store.bank_codes() == ["CCB", "ICBC"]
    assert ec_store.exists()


def test_init_key_files_are_0600(ec_store: PkiDirectory) -> None:
    """Every private key file is mode 0600; certificates and the CRL are world-readable 0644."""
    for name in _files(ec_store.path):
        mode = stat.S_IMODE((ec_store.path / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("key.pem") else 0o644), name


def test_init_files_hold_what_their_names_say(ec_store: PkiDirectory) -> None:
    """Each certificate matches its key, chains to the CA and carries the expected identity."""
    ca = ec_store.load_ca_cert()
    pairs = [
        (ec_store.gateway_tls_cert_path, ec_store.gateway_tls_key_path, None),
        (ec_store.gateway_signing_cert_path, ec_store.gateway_signing_key_path, None),
        (ec_store.bank_cert_path("ICBC"), ec_store.bank_key_path("ICBC"), "ICBC"),
        (ec_store.bank_cert_path("CCB"), ec_store.bank_key_path("CCB"), "CCB"),
    ]
    for cert_path, key_path, bank in pairs:
        cert = pki.load_certificate(cert_path)
        assert cert.public_key() == pki.load_private_key(key_path).public_key()
        pki.verify_issued_by(cert, ca)
        assert pki.bank_code_of(cert) == bank
        assert pki.key_type_of(cert.public_key()) is pki.KeyType.EC
    signing = pki.load_certificate(ec_store.gateway_signing_cert_path)
    assert signing.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == NODE
    ca_cert, ca_key = ec_store.load_ca()
    assert ca_cert == ca and ca_key.public_key() == ca.public_key()


def test_init_crl_is_empty_and_signed(ec_store: PkiDirectory) -> None:
    """The initial CRL is signed by the CA, lists nothing and has CRL number 1."""
    crl = ec_store.crl()
    assert len(crl) == 0
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert ec_store.revoked_entries() == []


def test_init_refuses_existing_ca(ec_store: PkiDirectory) -> None:
    """A second init on the same directory fails and leaves the CA untouched."""
    before = ec_store.ca_cert_path.read_bytes()
    with pytest.raises(CaExistsError):
        ec_store.init(NODE, ["BOC"], "ec", LATER)
    assert ec_store.ca_cert_path.read_bytes() == before
    assert not ec_store.bank_dir("BOC").exists()


def test_init_refuses_when_only_ca_key_exists(tmp_path: Path) -> None:
    """A stray ca-key.pem is enough to refuse: it may be the only copy of a CA key."""
    (tmp_path / "ca-key.pem").write_text("precious\n")
    with pytest.raises(CaExistsError):
        PkiDirectory(tmp_path).init(NODE, ["ICBC"], "ec", NOW)
    assert (tmp_path / "ca-key.pem").read_text() == "precious\n"


@pytest.mark.parametrize(
    ("node", "banks"),
    [("4501", ["ICBC"]), (NODE, ["ICBC", "ICBC"]), (NODE, ["../etc"]), (NODE, [NODE])],
    ids=["short-node", "duplicate-bank", "path-bank", "bank-is-node"],
)
def test_init_validates_codes_before_writing(tmp_path: Path, node: str, banks: list[str]) -> None:
    """Bad node or bank codes are refused before anything is written."""
    with pytest.raises(pki.InvalidCodeError):
        PkiDirectory(tmp_path / "dev").init(node, banks, "ec", NOW)
    assert not (tmp_path / "dev").exists()


def test_init_rsa_with_passphrase(tmp_path: Path) -> None:
    """With a passphrase, every key is encrypted, the CA needs it, and issue_bank encrypts the new key too."""
    store = PkiDirectory(tmp_path)
    store.init(NODE, ["ICBC"], pki.KeyType.RSA, NOW, passphrase="pw")
    for name in _files(tmp_path):
        if name.endswith("key.pem"):
            assert (tmp_path / name).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), name
    with pytest.raises(pki.PassphraseRequiredError, match="ca-key"):
        store.load_ca()
    with pytest.raises(pki.WrongPassphraseError):
        store.issue_bank("CCB", None, LATER, passphrase="nope")
    cert = store.issue_bank("CCB", None, LATER, passphrase="pw")
    assert pki.key_type_of(cert.public_key()) is pki.KeyType.RSA  # None means: like the CA
    assert store.load_bank_key("CCB", "pw").public_key() == cert.public_key()
    with pytest.raises(pki.PassphraseRequiredError, match="CCB"):
        store.load_bank_key("CCB")


def test_issue_bank_replaces_files_and_keeps_old_cert_valid(tmp_path: Path) -> None:
    """Re-issuing a bank writes a new key and certificate; the old one still chains and is not revoked."""
    store = PkiDirectory(tmp_path)
    store.init(NODE, ["ICBC"], "ec", NOW)
    old = store.load_bank_cert("ICBC")
    old_key = store.load_bank_key("ICBC")
    new = store.issue_bank("ICBC", "rsa", LATER)
    assert store.load_bank_cert("ICBC") == new != old
    assert store.load_bank_key("ICBC").public_key() == new.public_key() != old_key.public_key()
    assert pki.key_type_of(new.public_key()) is pki.KeyType.RSA
    assert new.not_valid_before_utc == LATER - pki.BACKDATE
    pki.verify_issued_by(old, store.load_ca_cert())
    assert not pki.is_revoked(store.crl(), old)
    assert stat.S_IMODE(store.bank_key_path("ICBC").stat().st_mode) == 0o600


def test_issue_bank_new_bank_and_missing_ca(tmp_path: Path) -> None:
    """issue_bank adds a bank to an existing PKI, and fails with a file error naming ca.pem when there is none."""
    with pytest.raises(pki.PkiFileError, match=r"ca\.pem"):
        PkiDirectory(tmp_path / "empty").issue_bank("ICBC", "ec", NOW)
    store = PkiDirectory(tmp_path / "dev")
    store.init(NODE, ["ICBC"], "ec", NOW)
    store.issue_bank("ABC", "ec", LATER)
    assert store.bank_codes() == ["ABC", "ICBC"]
    assert pki.bank_code_of(store.load_bank_cert("ABC")) == "ABC"


def test_revoke_rewrites_crl(tmp_path: Path) -> None:
    """Revoking a bank certificate records it and rewrites crl.pem, which lists it and nothing else."""
    store = PkiDirectory(tmp_path)
    store.init(NODE, ["ICBC", "CCB"], "ec", NOW)
    icbc, ccb = store.load_bank_cert("ICBC"), store.load_bank_cert("CCB")
    entry = store.revoke(icbc, "keyCompromise", LATER)
    assert entry == pki.RevokedEntry(icbc.serial_number, LATER, x509.ReasonFlags.key_compromise)
    crl = store.crl()
    assert pki.is_revoked(crl, icbc)
    assert not pki.is_revoked(crl, ccb)
    assert not pki.is_revoked(crl, pki.load_certificate(store.gateway_tls_cert_path))
    assert crl.last_update_utc == LATER
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    state = json.loads(store.revoked_path.read_text())
    assert state["revoked"] == [
        {"serial": str(icbc.serial_number), "revoked_at": LATER.isoformat(), "reason": "keyCompromise"}
    ]
    assert store.revoked_entries() == [entry]


def test_revoke_by_serial_is_idempotent(tmp_path: Path) -> None:
    """Revoking a serial twice keeps the first entry and does not list it twice."""
    store = PkiDirectory(tmp_path)
    store.init(NODE, ["ICBC"], "ec", NOW)
    serial = store.load_bank_cert("ICBC").serial_number
    first = store.revoke(serial, x509.ReasonFlags.superseded, LATER)
    again = store.revoke(serial, "keyCompromise", LATER + timedelta(hours=1))
    assert again == first
    assert [r.serial_number for r in store.crl()] == [serial]


def test_revoke_refuses_foreign_cert_and_ca_serial(tmp_path: Path) -> None:
    """A certificate of another CA, the CA's own serial and a non-positive serial cannot be revoked here."""
    one, two = PkiDirectory(tmp_path / "one"), PkiDirectory(tmp_path / "two")
    one.init(NODE, ["ICBC"], "ec", NOW)
    two.init(NODE, ["ICBC"], "ec", NOW)
    with pytest.raises(pki.NotIssuedByCaError):
        one.revoke(two.load_bank_cert("ICBC"), "unspecified", LATER)
    with pytest.raises(pki.PkiError, match="itself"):
        one.revoke(one.load_ca_cert().serial_number, "unspecified", LATER)
    with pytest.raises(pki.PkiError, match="positive"):
        one.revoke(0, "unspecified", LATER)
    assert one.revoked_entries() == []


def test_publish_crl_refreshes_next_update(tmp_path: Path) -> None:
    """publish_crl re-signs the same entries with a new thisUpdate and a higher CRL number."""
    store = PkiDirectory(tmp_path)
    store.init(NODE, ["ICBC"], "ec", NOW)
    store.revoke(store.load_bank_cert("ICBC"), "superseded", NOW)
    later = NOW + timedelta(days=29)
    crl = store.publish_crl(later)
    assert store.crl() == crl
    assert crl.last_update_utc == later
    assert crl.next_update_utc == later + pki.DEFAULT_CRL_VALIDITY
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert [r.serial_number for r in crl] == [store.load_bank_cert("ICBC").serial_number]


def test_corrupt_revocation_state_is_reported(tmp_path: Path) -> None:
    """A damaged revoked.json raises RevocationStateError naming it, and crl.pem is left as it was."""
    store = PkiDirectory(tmp_path)
    store.init(NODE, ["ICBC"], "ec", NOW)
    before = store.crl_path.read_bytes()
    store.revoked_path.write_text('{"format": 1, "crl_number": "x"}')
    with pytest.raises(RevocationStateError, match=r"revoked\.json"):
        store.revoke(store.load_bank_cert("ICBC"), "superseded", LATER)
    assert store.crl_path.read_bytes() == before


def test_crl_signed_by_another_ca_is_refused(tmp_path: Path) -> None:
    """crl() refuses a crl.pem that this directory's CA did not sign."""
    one, two = PkiDirectory(tmp_path / "one"), PkiDirectory(tmp_path / "two")
    one.init(NODE, [], "ec", NOW)
    two.init(NODE, [], "ec", NOW)
    one.crl_path.write_bytes(two.crl_path.read_bytes())
    with pytest.raises(pki.NotIssuedByCaError):
        one.crl()


def test_bank_paths_cannot_escape(tmp_path: Path) -> None:
    """Bank paths are built from validated codes only."""
    store = PkiDirectory(tmp_path)
    assert store.bank_cert_path("ICBC") == tmp_path / "banks" / "ICBC" / "cert.pem"
    with pytest.raises(pki.InvalidCodeError):
        store.bank_cert_path("../ca")
