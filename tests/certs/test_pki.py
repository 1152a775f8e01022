"""certs.pki: keys, certificate contents and chains, bank identity, CRLs, PEM files and their errors."""

from __future__ import annotations

import ast
import stat
from datetime import datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import DNSName
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs import pki
from tests.certs.conftest import NODE, NOW, Issued, keys

T = TypeVar("T", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def _verify_signature(cert: x509.Certificate, ca: x509.Certificate) -> None:
    """Check the signature by hand with the CA public key (independently of verify_directly_issued_by)."""
    public = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def _custom_cert(issued: Issued, subject: list[tuple[x509.ObjectIdentifier, str]], uris: list[str]) -> x509.Certificate:
    """A certificate from the test CA with an arbitrary subject and SAN URIs (to build bad identities)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(oid, value) for oid, value in subject]))
        .issuer_name(issued.ca.subject)
        .public_key(issued.bank_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False
        )
    return builder.sign(issued.ca_key, hashes.SHA256())


# --- keys --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "expected"), [("rsa", "rsa 2048"), ("ec", "ec secp256r1")])
def test_generate_key_types(key_type: str, expected: str) -> None:
    """ "rsa" gives RSA-2048, "ec" gives ECDSA P-256, and key_type_of reads the type back."""
    key = pki.generate_key(key_type)
    assert pki.describe_key(key) == expected
    assert pki.key_type_of(key) is pki.KeyType(key_type)
    assert pki.key_type_of(key.public_key()) is pki.KeyType(key_type)


def test_generate_key_rejects_unknown_type() -> None:
    """A key type other than rsa or ec is refused."""
    with pytest.raises(ValueError):
        pki.generate_key("dsa")


def test_weak_rsa_key_cannot_be_certified(issued: Issued) -> None:
    """An RSA key under 2048 bits is never certified."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(pki.IssuanceError, match="1024 bits"):
        pki.issue_bank_cert(issued.ca, issued.ca_key, weak, "ICBC", NOW)


# --- the CA ------------------------------------------------------------------------------------------------


def test_ca_extensions_and_validity(issued: Issued) -> None:
    """The CA is self-signed, CA:TRUE critical, keyCertSign+cRLSign only, has an SKI and lasts ten years."""
    ca = issued.ca
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = _ext(ca, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature and not ku.value.key_encipherment
    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(issued.ca_key.public_key())
    assert ca.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert ca.not_valid_after_utc == NOW + pki.CA_VALIDITY
    assert timedelta(days=3652) <= pki.CA_VALIDITY
    assert ca.serial_number > 0


def test_serials_are_random() -> None:
    """Two CAs made at the same instant from the same key get different serials."""
    key = keys(pki.KeyType.EC)[0]
    assert pki.create_ca(key, NOW).serial_number != pki.create_ca(key, NOW).serial_number


def test_naive_now_is_refused() -> None:
    """A naive datetime is a programming error, not silently taken as local time or UTC."""
    with pytest.raises(ValueError, match="aware"):
        pki.create_ca(keys(pki.KeyType.EC)[0], datetime(2026, 11, 23, 10, 0))


# --- leaves ------------------------------------------------------------------------------------------------


def _common_leaf_checks(cert: x509.Certificate, issued: Issued) -> None:
    _verify_signature(cert, issued.ca)
    pki.verify_issued_by(cert, issued.ca)
    assert cert.issuer == issued.ca.subject
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(issued.ca, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.KeyUsage).critical
    assert not _ext(cert, x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + pki.DEFAULT_LEAF_VALIDITY
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"


def test_server_cert_contents(issued: Issued) -> None:
    """The TLS server certificate names localhost, 127.0.0.1 and ::1, is for serverAuth and chains to the CA."""
    cert = issued.server
    _common_leaf_checks(cert, issued)
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ip_address("127.0.0.1"), ip_address("::1")]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature
    assert ku.key_encipherment is (issued.key_type is pki.KeyType.RSA)
    assert pki.bank_code_of(cert) is None


def test_server_cert_custom_names(issued: Issued) -> None:
    """Host names and IPs are parameters; the CN follows the first host name."""
    cert = pki.issue_server_cert(
        issued.ca, issued.ca_key, issued.server_key, NOW, hostnames=["gw.example.cn"], ips=["10.0.0.5"]
    )
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example.cn"]
    assert san.get_values_for_type(x509.IPAddress) == [ip_address("10.0.0.5")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw.example.cn"


def test_server_cert_needs_a_name(issued: Issued) -> None:
    """A server certificate without any host name or IP is refused, as is a malformed IP."""
    with pytest.raises(pki.IssuanceError):
        pki.issue_server_cert(issued.ca, issued.ca_key, issued.server_key, NOW, hostnames=[], ips=[])
    with pytest.raises(pki.IssuanceError):
        pki.issue_server_cert(issued.ca, issued.ca_key, issued.server_key, NOW, ips=["300.1.1.1"])


def test_signing_cert_contents(issued: Issued) -> None:
    """The bureau's signing certificate: CN = node code, digitalSignature + nonRepudiation, not a bank."""
    cert = issued.signing
    _common_leaf_checks(cert, issued)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NODE
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.ExtendedKeyUsage)
    assert pki.bank_code_of(cert) is None


def test_signing_cert_requires_12_digit_node_code(issued: Issued) -> None:
    """A node code that is not 12 digits is refused."""
    with pytest.raises(pki.InvalidCodeError):
        pki.issue_signing_cert(issued.ca, issued.ca_key, issued.signing_key, "4501", NOW)


def test_bank_cert_contents(issued: Issued) -> None:
    """A bank certificate: CN = code, fixed O, SAN URI, clientAuth, digitalSignature (+ keyEncipherment RSA)."""
    cert = issued.bank
    _common_leaf_checks(cert, issued)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ICBC"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == pki.BANK_ORGANIZATION
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:tgw:bank:ICBC"]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and not ku.content_commitment
    assert ku.key_encipherment is (issued.key_type is pki.KeyType.RSA)


@pytest.mark.parametrize("code", ["", "IC BC", "../x", "工行", "A" * 21, "ICBC\n"])
def test_bank_code_form_is_checked(issued: Issued, code: str) -> None:
    """Bank codes are 1-20 ASCII letters or digits; anything else never reaches a certificate."""
    with pytest.raises(pki.InvalidCodeError):
        pki.issue_bank_cert(issued.ca, issued.ca_key, issued.bank_key, code, NOW)


def test_leaf_validity_is_configurable(issued: Issued) -> None:
    """The leaf lifetime is a parameter."""
    cert = pki.issue_bank_cert(issued.ca, issued.ca_key, issued.bank_key, "ICBC", NOW, validity=timedelta(days=30))
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)


def test_leaf_may_not_outlive_its_ca(issued: Issued) -> None:
    """Issuing a leaf that would expire after the CA fails instead of silently shortening it."""
    late = NOW + pki.CA_VALIDITY - timedelta(days=10)
    with pytest.raises(pki.IssuanceError, match="outlive"):
        pki.issue_bank_cert(issued.ca, issued.ca_key, issued.bank_key, "ICBC", late)


def test_ca_key_must_match_ca_cert(issued: Issued) -> None:
    """Signing with a key that is not the CA's is refused (the result would never verify)."""
    with pytest.raises(pki.IssuanceError, match="does not belong"):
        pki.issue_bank_cert(issued.ca, issued.bank_key, issued.bank_key, "ICBC", NOW)


def test_foreign_certificate_is_not_issued_by_ca(issued: Issued) -> None:
    """verify_issued_by refuses a certificate from another CA with the same name."""
    other_key = keys(issued.key_type)[3]
    other_ca = pki.create_ca(other_key, NOW)
    foreign = pki.issue_bank_cert(other_ca, other_key, issued.bank_key, "ICBC", NOW)
    with pytest.raises(pki.NotIssuedByCaError):
        pki.verify_issued_by(foreign, issued.ca)


# --- path validation with cryptography's verifier ----------------------------------------------------------


def test_policy_verifier_accepts_server_cert_for_localhost(issued: Issued) -> None:
    """cryptography's web-PKI verifier builds server cert -> CA for "localhost" and refuses another name."""
    builder = PolicyBuilder().store(Store([issued.ca])).time(NOW)
    chain = builder.build_server_verifier(DNSName("localhost")).verify(issued.server, [])
    assert chain == [issued.server, issued.ca]
    with pytest.raises(VerificationError):
        builder.build_server_verifier(DNSName("gw.example.cn")).verify(issued.server, [])


def test_policy_verifier_accepts_bank_client_cert(issued: Issued) -> None:
    """The client verifier builds bank cert -> CA and reports the bank URI as the peer's identity."""
    verified = PolicyBuilder().store(Store([issued.ca])).time(NOW).build_client_verifier().verify(issued.bank, [])
    assert verified.chain == [issued.bank, issued.ca]
    assert verified.subjects == [x509.UniformResourceIdentifier("urn:tgw:bank:ICBC")]


def test_policy_verifier_refuses_wrong_purpose_and_expiry(issued: Issued) -> None:
    """A server cert is not a client cert, and a bank cert is refused after it expires."""
    builder = PolicyBuilder().store(Store([issued.ca]))
    with pytest.raises(VerificationError):
        builder.time(NOW).build_client_verifier().verify(issued.server, [])
    after = issued.bank.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(VerificationError):
        builder.time(after).build_client_verifier().verify(issued.bank, [])


# --- bank identity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ICBC", "CCB", "102", "abc123"])
def test_bank_code_round_trip(issued: Issued, code: str) -> None:
    """The code a bank certificate is issued for is the code bank_code_of reads back, for both key types."""
    cert = pki.issue_bank_cert(issued.ca, issued.ca_key, issued.bank_key, code, NOW)
    assert pki.bank_code_of(cert) == code


def test_bank_code_cn_and_uri_disagree(issued: Issued) -> None:
    """A certificate whose CN says one bank and whose SAN URI says another raises: it binds to no bank."""
    cert = _custom_cert(
        issued,
        [(NameOID.ORGANIZATION_NAME, pki.BANK_ORGANIZATION), (NameOID.COMMON_NAME, "ICBC")],
        ["urn:tgw:bank:CCB"],
    )
    with pytest.raises(pki.BankIdentityError, match="disagrees"):
        pki.bank_code_of(cert)


def test_bank_code_is_case_sensitive(issued: Issued) -> None:
    """ "icbc" in the CN does not agree with "ICBC" in the URI."""
    cert = _custom_cert(issued, [(NameOID.COMMON_NAME, "icbc")], ["urn:tgw:bank:ICBC"])
    with pytest.raises(pki.BankIdentityError):
        pki.bank_code_of(cert)


def test_bank_code_from_uri_without_cn(issued: Issued) -> None:
    """The SAN URI alone identifies the bank."""
    cert = _custom_cert(issued, [(NameOID.ORGANIZATION_NAME, "Someone")], ["urn:tgw:bank:BOC"])
    assert pki.bank_code_of(cert) == "BOC"


def test_bank_code_from_cn_needs_bank_organization(issued: Issued) -> None:
    """Without the URI, the CN counts only under the bank organization; any other subject is not a bank."""
    bank = _custom_cert(issued, [(NameOID.ORGANIZATION_NAME, pki.BANK_ORGANIZATION), (NameOID.COMMON_NAME, "ABC")], [])
    other = _custom_cert(issued, [(NameOID.ORGANIZATION_NAME, "Elsewhere"), (NameOID.COMMON_NAME, "ABC")], [])
    assert pki.bank_code_of(bank) == "ABC"
    assert pki.bank_code_of(other) is None


@pytest.mark.parametrize(
    "uris",
    [["urn:tgw:bank:ICBC", "urn:tgw:bank:CCB"], ["urn:tgw:bank:"], ["urn:tgw:bank:IC/BC"], ["URN:TGW:BANK:ICBC"]],
)
def test_bank_code_malformed_uris(issued: Issued, uris: list[str]) -> None:
    """Several bank URIs, an empty or malformed code, or an oddly cased prefix all raise."""
    cert = _custom_cert(issued, [], uris)
    with pytest.raises(pki.BankIdentityError):
        pki.bank_code_of(cert)


def test_bank_code_ignores_unrelated_uris(issued: Issued) -> None:
    """Other URIs in the SAN do not count as bank identities."""
    cert = _custom_cert(issued, [(NameOID.COMMON_NAME, "ICBC")], ["https://icbc.example", "urn:tgw:bank:ICBC"])
    assert pki.bank_code_of(cert) == "ICBC"


# --- CRLs --------------------------------------------------------------------------------------------------


def test_crl_lists_revoked_and_not_others(issued: Issued) -> None:
    """A CRL lists the revoked bank certificate with its reason, and not the server or signing certificate."""
    entry = pki.RevokedEntry(issued.bank.serial_number, NOW, x509.ReasonFlags.key_compromise)
    crl = pki.build_crl(issued.ca, issued.ca_key, [entry], NOW, timedelta(days=7))
    pki.verify_crl(crl, issued.ca)
    assert pki.is_revoked(crl, issued.bank)
    assert not pki.is_revoked(crl, issued.server)
    assert not pki.is_revoked(crl, issued.signing)
    revoked = crl.get_revoked_certificate_by_serial_number(issued.bank.serial_number)
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert revoked.revocation_date_utc == NOW
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(days=7)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == int(NOW.timestamp())
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(issued.ca, x509.SubjectKeyIdentifier).value.digest


def test_empty_crl(issued: Issued) -> None:
    """An empty CRL is valid and revokes nothing."""
    crl = pki.build_crl(issued.ca, issued.ca_key, [], NOW, timedelta(days=1), crl_number=1)
    pki.verify_crl(crl, issued.ca)
    assert len(crl) == 0
    assert not pki.is_revoked(crl, issued.bank)


def test_crl_unspecified_reason_has_no_extension(issued: Issued) -> None:
    """An unspecified reason is written as no reasonCode extension (RFC 5280 §5.3.1)."""
    crl = pki.build_crl(issued.ca, issued.ca_key, [pki.RevokedEntry(issued.bank.serial_number, NOW)], NOW)
    revoked = crl.get_revoked_certificate_by_serial_number(issued.bank.serial_number)
    assert revoked is not None
    assert len(revoked.extensions) == 0


def test_crl_refuses_duplicates_and_bad_interval(issued: Issued) -> None:
    """A serial listed twice and a non-positive nextUpdate interval are refused."""
    entry = pki.RevokedEntry(issued.bank.serial_number, NOW)
    with pytest.raises(pki.CrlError, match="twice"):
        pki.build_crl(issued.ca, issued.ca_key, [entry, entry], NOW)
    with pytest.raises(pki.CrlError):
        pki.build_crl(issued.ca, issued.ca_key, [], NOW, timedelta(0))


def test_crl_from_another_ca_cannot_answer(issued: Issued) -> None:
    """is_revoked raises for a CRL of another issuer instead of answering False; verify_crl refuses it."""
    other_key = keys(issued.key_type)[3]
    other_ca = pki.create_ca(other_key, NOW, common_name="Another CA")
    crl = pki.build_crl(other_ca, other_key, [], NOW)
    with pytest.raises(pki.CrlError):
        pki.is_revoked(crl, issued.bank)
    with pytest.raises(pki.NotIssuedByCaError):
        pki.verify_crl(crl, issued.ca)


def test_crl_signed_by_wrong_key_fails_verification(issued: Issued) -> None:
    """A CRL with the CA's name but another key's signature does not verify."""
    impostor_key = keys(issued.key_type)[3]
    impostor = pki.create_ca(impostor_key, NOW)  # same default name as the real CA
    crl = pki.build_crl(impostor, impostor_key, [], NOW)
    with pytest.raises(pki.NotIssuedByCaError, match="signature"):
        pki.verify_crl(crl, issued.ca)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("keyCompromise", x509.ReasonFlags.key_compromise),
        ("key_compromise", x509.ReasonFlags.key_compromise),
        ("Superseded", x509.ReasonFlags.superseded),
        ("cessation-of-operation", x509.ReasonFlags.cessation_of_operation),
    ],
)
def test_parse_reason(text: str, reason: x509.ReasonFlags) -> None:
    """Reasons are accepted by RFC name or Python name, ignoring case, hyphens and underscores."""
    assert pki.parse_reason(text) is reason


@pytest.mark.parametrize("text", ["stolen", "removeFromCRL"])
def test_parse_reason_refuses(text: str) -> None:
    """Unknown reasons and the delta-CRL-only removeFromCRL are refused."""
    with pytest.raises(pki.CrlError):
        pki.parse_reason(text)


# --- files -------------------------------------------------------------------------------------------------


def test_certificate_and_chain_round_trip(tmp_path: Path, issued: Issued) -> None:
    """Certificates and chains survive PEM files; load_certificate yields the chain's first (leaf)."""
    path = tmp_path / "chain.pem"
    pki.save_certificates(path, [issued.bank, issued.ca])
    assert pki.load_certificate_chain(path) == [issued.bank, issued.ca]
    assert pki.load_certificate(path) == issued.bank
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_crl_file_round_trip(tmp_path: Path, issued: Issued) -> None:
    """A CRL survives a PEM file."""
    crl = pki.build_crl(issued.ca, issued.ca_key, [pki.RevokedEntry(7, NOW)], NOW)
    pki.save_crl(tmp_path / "crl.pem", crl)
    assert pki.load_crl(tmp_path / "crl.pem") == crl


def test_unencrypted_key_round_trip(tmp_path: Path, issued: Issued) -> None:
    """An unencrypted key file is PKCS#8 PEM, mode 0600, and loads back to the same key."""
    path = tmp_path / "key.pem"
    pki.save_private_key(path, issued.bank_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pki.load_private_key(path).public_key() == issued.bank_key.public_key()


def test_encrypted_key_round_trip(tmp_path: Path, issued: Issued) -> None:
    """An encrypted key file is not readable as plain PEM and loads back with the right passphrase."""
    path = tmp_path / "key.pem"
    pki.save_private_key(path, issued.bank_key, "口令 secret")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = pki.load_private_key(path, "口令 secret".encode())
    assert loaded.public_key() == issued.bank_key.public_key()


def test_encrypted_key_without_passphrase(tmp_path: Path) -> None:
    """Loading an encrypted key with no passphrase raises PassphraseRequiredError naming the file."""
    path = tmp_path / "ca-key.pem"
    pki.save_private_key(path, keys(pki.KeyType.EC)[0], b"secret")
    with pytest.raises(pki.PassphraseRequiredError, match=r"ca-key\.pem") as info:
        pki.load_private_key(path)
    assert info.value.path == path
    assert isinstance(info.value, pki.PkiError)


def test_encrypted_key_wrong_passphrase(tmp_path: Path) -> None:
    """Loading an encrypted key with a wrong passphrase raises WrongPassphraseError naming the file."""
    path = tmp_path / "ca-key.pem"
    pki.save_private_key(path, keys(pki.KeyType.EC)[0], b"secret")
    with pytest.raises(pki.WrongPassphraseError, match=r"ca-key\.pem"):
        pki.load_private_key(path, b"guess")


def test_passphrase_for_plain_key(tmp_path: Path) -> None:
    """A passphrase given for an unencrypted key is reported, not silently ignored."""
    path = tmp_path / "key.pem"
    pki.save_private_key(path, keys(pki.KeyType.EC)[0])
    with pytest.raises(pki.UnexpectedPassphraseError, match="not encrypted"):
        pki.load_private_key(path, b"secret")


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    """An empty passphrase is neither encryption nor its absence: it is refused."""
    with pytest.raises(pki.PkiError, match="empty"):
        pki.save_private_key(tmp_path / "key.pem", keys(pki.KeyType.EC)[0], "")
    assert not (tmp_path / "key.pem").exists()


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    """Missing and malformed files raise PkiFileError with the path in the message."""
    missing = tmp_path / "nope.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem\n")
    for load in (pki.load_certificate, pki.load_crl, pki.load_private_key):
        with pytest.raises(pki.PkiFileError, match=r"nope\.pem"):
            load(missing)
        with pytest.raises(pki.PkiFileError, match=r"garbage\.pem"):
            load(garbage)


def test_unsupported_key_type_in_file(tmp_path: Path) -> None:
    """An Ed25519 key file is refused as unsupported, naming the file."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "ed.pem"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(pki.PkiFileError, match=r"ed\.pem.*unsupported"):
        pki.load_private_key(path)


def test_save_without_overwrite_refuses_existing(tmp_path: Path, issued: Issued) -> None:
    """overwrite=False never replaces an existing file and leaves no temporary file behind."""
    path = tmp_path / "ca.pem"
    pki.save_certificates(path, issued.ca, overwrite=False)
    with pytest.raises(pki.PkiFileError, match="already exists"):
        pki.save_certificates(path, issued.bank, overwrite=False)
    assert pki.load_certificate(path) == issued.ca
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem"]


# --- the rules of the package ------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["pki.py", "store.py"])
def test_library_reads_no_clock_and_runs_no_processes(module: str) -> None:
    """The library modules never read the wall clock, use global randomness or shell out (to openssl)."""
    source = (Path(__file__).parents[2] / "certs" / module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"subprocess", "random", "time", "secrets"}
    called = {
        node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not called & {"now", "utcnow", "today", "time", "system", "popen"}


def test_ca_must_already_be_valid(issued: Issued) -> None:
    """A leaf cannot be issued at a time before its CA's validity starts."""
    with pytest.raises(pki.IssuanceError, match="not yet valid"):
        pki.issue_bank_cert(issued.ca, issued.ca_key, issued.bank_key, "ICBC", NOW - timedelta(days=1))
