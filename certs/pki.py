"""The gateway's PKI as a pure library: keys, the bank CA, gateway and bank certificates, CRLs, PEM files.

Everything here is built with `cryptography`; nothing shells out to the openssl CLI. Time is injected: every
function that needs "now" takes an aware `now` (converted to UTC), and nothing reads the wall clock. The only
randomness is what `cryptography` itself uses for keys, signatures and certificate serials.

What the certificates carry (PROTOCOL.md §1 and §6):

* **Bank CA** – self-signed; basicConstraints CA with path length 0 (it issues leaves directly, never
  intermediates); keyUsage keyCertSign + cRLSign; subject key identifier. Valid :data:`CA_VALIDITY`.
* **Gateway TLS server certificate** – SAN DNS ``localhost`` and IP ``127.0.0.1``, ``::1`` by default;
  EKU serverAuth.
* **Gateway message-signing certificate** – CN is the gateway's node code (``450100000000``); keyUsage
  digitalSignature + nonRepudiation; no EKU (it signs XML, it never speaks TLS).
* **Bank client certificate** – CN is the bank code, O is :data:`BANK_ORGANIZATION`, SAN URI
  ``urn:tgw:bank:<CODE>``; EKU clientAuth; keyUsage digitalSignature (+ keyEncipherment for RSA). The bank
  signs its XML with the same key by default, hence digitalSignature.

Every leaf also has basicConstraints CA:FALSE, a subject key identifier and the CA's authority key
identifier, and is valid from ``now - 5 min`` (:data:`BACKDATE`, for peers whose clocks run a little behind)
to ``now + validity`` (default :data:`DEFAULT_LEAF_VALIDITY`). A leaf may not outlive its CA: issuing one
that would raises :class:`IssuanceError` rather than silently shortening it.

Bank identity (:func:`bank_code_of`) is what the gateway binds a TLS peer to; see its docstring for the rule.

Every error this module raises on purpose is a :class:`PkiError`; file errors name the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BACKDATE",
    "BANK_ORGANIZATION",
    "BANK_URI_PREFIX",
    "CA_VALIDITY",
    "DEFAULT_CRL_VALIDITY",
    "DEFAULT_LEAF_VALIDITY",
    "GATEWAY_ORGANIZATION",
    "BankIdentityError",
    "CrlError",
    "InvalidCodeError",
    "IssuanceError",
    "KeyType",
    "NotIssuedByCaError",
    "PassphraseRequiredError",
    "PkiError",
    "PkiFileError",
    "PrivateKey",
    "PublicKey",
    "RevokedEntry",
    "UnexpectedPassphraseError",
    "WrongPassphraseError",
    "bank_code_of",
    "build_crl",
    "create_ca",
    "describe_key",
    "generate_key",
    "is_revoked",
    "issue_bank_cert",
    "issue_server_cert",
    "issue_signing_cert",
    "key_type_of",
    "load_certificate",
    "load_certificate_chain",
    "load_crl",
    "load_private_key",
    "parse_reason",
    "save_certificates",
    "save_crl",
    "save_private_key",
    "validate_bank_code",
    "validate_node_code",
    "verify_crl",
    "verify_issued_by",
]

# --- constants ---------------------------------------------------------------------------------------------

#: Organization of the CA, the gateway's TLS certificate and its signing certificate.
GATEWAY_ORGANIZATION = "Treasury Payment Gateway"
#: The fixed organization (O) of every bank client certificate; see :func:`bank_code_of` for why it matters.
BANK_ORGANIZATION = "Treasury Payment Gateway Agent Bank"
#: A bank certificate names its bank as the SAN URI ``urn:tgw:bank:<CODE>``.
BANK_URI_PREFIX = "urn:tgw:bank:"

#: Ten years (3652 days, leap days included).
CA_VALIDITY = timedelta(days=3652)
#: Default leaf lifetime: 825 days, the longest a TLS server certificate may have in common client policies.
DEFAULT_LEAF_VALIDITY = timedelta(days=825)
#: Certificates start this long before "now", so that a peer whose clock is slightly behind accepts them.
BACKDATE = timedelta(minutes=5)
#: Default time from a CRL's thisUpdate to its nextUpdate.
DEFAULT_CRL_VALIDITY = timedelta(days=30)

# A bank code is a node code (protocols/schema.py `NodeCode`); the gateway's own node code is 12 digits (§3).
_BANK_CODE_RE = re.compile(r"[A-Za-z0-9]{1,20}")
_NODE_CODE_RE = re.compile(r"[0-9]{12}")
_RSA_KEY_BITS = 2048
_RSA_MIN_BITS = 2048
_SUPPORTED_CURVES = (ec.SECP256R1, ec.SECP384R1)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
Passphrase = bytes | str


class KeyType(StrEnum):
    """The key algorithms the gateway issues: RSA-2048 or ECDSA on P-256."""

    RSA = "rsa"
    EC = "ec"


# --- errors ------------------------------------------------------------------------------------------------


class PkiError(Exception):
    """Base of every error this package raises on purpose."""


class PkiFileError(PkiError):
    """A PKI file is missing, unreadable or not what it should be; `path` names it.

    Attributes:
        path: The file concerned.
    """

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class PassphraseRequiredError(PkiFileError):
    """The private key file is encrypted and no passphrase was given."""


class WrongPassphraseError(PkiFileError):
    """The private key file is encrypted and the passphrase given does not decrypt it."""


class UnexpectedPassphraseError(PkiFileError):
    """A passphrase was given for a private key file that is not encrypted (probably the wrong file)."""


class InvalidCodeError(PkiError):
    """A bank code or node code that does not have the form PROTOCOL.md requires."""


class IssuanceError(PkiError):
    """A certificate cannot be issued as asked (unsupported key, leaf outliving its CA, no names…)."""


class BankIdentityError(PkiError):
    """A certificate names a bank inconsistently (CN and SAN URI disagree, several bank URIs, bad code)."""


class NotIssuedByCaError(PkiError):
    """A certificate or CRL was not issued by the CA it was checked against."""


class CrlError(PkiError):
    """A CRL cannot be built or does not apply to the certificate it is asked about."""


# --- time and names ----------------------------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    """Return `now` in UTC; a naive datetime is a programming error (we would have to guess its zone)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC), not a naive one")
    return now.astimezone(UTC)


def validate_bank_code(code: str) -> str:
    """Return `code` if it is a valid bank code (``[A-Za-z0-9]{1,20}``, the standard's node code form).

    Raises:
        InvalidCodeError: It is not.
    """
    if not isinstance(code, str) or not _BANK_CODE_RE.fullmatch(code):
        raise InvalidCodeError(f"invalid bank code {code!r}: expected 1 to 20 ASCII letters or digits")
    return code


def validate_node_code(code: str) -> str:
    """Return `code` if it is a valid gateway node code (12 digits, PROTOCOL.md §3).

    Raises:
        InvalidCodeError: It is not.
    """
    if not isinstance(code, str) or not _NODE_CODE_RE.fullmatch(code):
        raise InvalidCodeError(f"invalid node code {code!r}: expected 12 digits (e.g. 450100000000)")
    return code


def _name(common_name: str, organization: str) -> x509.Name:
    """A subject ``O=…, CN=…`` (conventional order: the organization first, printed ``CN=…,O=…`` by RFC 4514)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


# --- keys --------------------------------------------------------------------------------------------------


def generate_key(key_type: KeyType | str) -> PrivateKey:
    """Generate a new private key: RSA-2048 (e = 65537) or ECDSA on P-256.

    Args:
        key_type: ``"rsa"`` or ``"ec"`` (or the :class:`KeyType` member).

    Raises:
        ValueError: Unknown key type.
    """
    kind = KeyType(key_type)
    if kind is KeyType.RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_KEY_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def key_type_of(key: PrivateKey | CertificatePublicKeyTypes) -> KeyType:
    """The :class:`KeyType` of a private or public key (such as ``cert.public_key()``).

    Raises:
        IssuanceError: Neither RSA nor EC.
    """
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeyType.RSA
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return KeyType.EC
    raise IssuanceError(f"unsupported key type {type(key).__name__}")


def describe_key(key: object) -> str:
    """A short human description of a key, e.g. ``rsa 2048`` or ``ec secp256r1``."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ec {key.curve.name}"
    return type(key).__name__


def _public(key: PrivateKey | PublicKey) -> PublicKey:
    """The public half of `key`, after checking that the gateway accepts its algorithm and size."""
    public: PublicKey = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < _RSA_MIN_BITS:
            raise IssuanceError(f"RSA key of {public.key_size} bits; at least {_RSA_MIN_BITS} required")
        return public
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, _SUPPORTED_CURVES):
            raise IssuanceError(f"EC curve {public.curve.name} is not supported (P-256 or P-384)")
        return public
    raise IssuanceError(f"unsupported key type {type(public).__name__}")


# --- certificates ------------------------------------------------------------------------------------------


def create_ca(
    ca_key: PrivateKey,
    now: datetime,
    *,
    common_name: str = "Treasury Gateway Bank CA",
    organization: str = GATEWAY_ORGANIZATION,
    validity: timedelta = CA_VALIDITY,
) -> x509.Certificate:
    """Create the self-signed bank CA certificate.

    Args:
        ca_key: The CA's private key.
        now: The current time (aware).
        common_name: The CA's CN.
        organization: The CA's O.
        validity: Lifetime from `now` (default ten years).

    Returns:
        A certificate with basicConstraints CA (path length 0), keyUsage keyCertSign + cRLSign (both
        critical), and subject and authority key identifiers.
    """
    now = _utc(now)
    public = _public(ca_key)
    name = _name(common_name, organization)
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


def _key_usage(*, digital_signature: bool, content_commitment: bool, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_builder(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject_key: PrivateKey | PublicKey,
    subject: x509.Name,
    now: datetime,
    validity: timedelta,
) -> x509.CertificateBuilder:
    """The parts every leaf shares: names, key, serial, validity, CA:FALSE, SKI and AKI."""
    now = _utc(now)
    public = _public(subject_key)
    if ca_cert.public_key() != ca_key.public_key():
        raise IssuanceError("the CA private key does not belong to the CA certificate")
    not_after = now + validity
    if validity <= timedelta(0):
        raise IssuanceError(f"validity must be positive, not {validity}")
    if not_after > ca_cert.not_valid_after_utc:
        raise IssuanceError(
            f"a certificate valid until {not_after:%Y-%m-%d} would outlive its CA "
            f"(valid until {ca_cert.not_valid_after_utc:%Y-%m-%d}); use a shorter validity or a new CA"
        )
    if now < ca_cert.not_valid_before_utc:
        raise IssuanceError(f"the CA is not yet valid at {now:%Y-%m-%d %H:%M:%S}Z")
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(aki, critical=False)
    )


def issue_server_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject_key: PrivateKey | PublicKey,
    now: datetime,
    *,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str | IPv4Address | IPv6Address] = ("127.0.0.1", "::1"),
    common_name: str | None = None,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
) -> x509.Certificate:
    """Issue the gateway's TLS server certificate.

    Args:
        ca_cert: The bank CA certificate.
        ca_key: The bank CA private key.
        subject_key: The server's key (private or public half).
        now: The current time (aware).
        hostnames: SAN DNS names (default ``localhost``).
        ips: SAN IP addresses (default ``127.0.0.1`` and ``::1``).
        common_name: The subject CN; default the first host name, else the first IP.
        validity: Lifetime from `now`.

    Returns:
        A certificate with those SANs, EKU serverAuth, keyUsage digitalSignature (+ keyEncipherment for RSA).

    Raises:
        IssuanceError: No names at all, or an invalid IP address.
    """
    try:
        addresses = [ip if not isinstance(ip, str) else ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise IssuanceError(str(exc)) from exc
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(a) for a in addresses]
    if not names:
        raise IssuanceError("a server certificate needs at least one host name or IP address")
    cn = common_name or (hostnames[0] if hostnames else str(addresses[0]))
    is_rsa = key_type_of(subject_key) is KeyType.RSA
    builder = (
        _leaf_builder(ca_cert, ca_key, subject_key, _name(cn, GATEWAY_ORGANIZATION), now, validity)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            _key_usage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa),
            critical=True,
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def issue_signing_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject_key: PrivateKey | PublicKey,
    node_code: str,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
) -> x509.Certificate:
    """Issue the finance bureau's (the gateway's) message-signing certificate.

    Args:
        ca_cert: The bank CA certificate.
        ca_key: The bank CA private key.
        subject_key: The signing key (private or public half).
        node_code: The gateway's node code, 12 digits; it becomes the CN.
        now: The current time (aware).
        validity: Lifetime from `now`.

    Returns:
        A certificate with CN = `node_code`, O = :data:`GATEWAY_ORGANIZATION`, keyUsage digitalSignature +
        nonRepudiation (critical) and no EKU.
    """
    validate_node_code(node_code)
    builder = _leaf_builder(
        ca_cert, ca_key, subject_key, _name(node_code, GATEWAY_ORGANIZATION), now, validity
    ).add_extension(_key_usage(digital_signature=True, content_commitment=True, key_encipherment=False), critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def issue_bank_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject_key: PrivateKey | PublicKey,
    bank_code: str,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
) -> x509.Certificate:
    """Issue a bank's TLS client certificate (also its default message-signing certificate, §6).

    Args:
        ca_cert: The bank CA certificate.
        ca_key: The bank CA private key.
        subject_key: The bank's key (private or public half).
        bank_code: The bank code, e.g. ``ICBC``.
        now: The current time (aware).
        validity: Lifetime from `now`.

    Returns:
        A certificate with CN = `bank_code`, O = :data:`BANK_ORGANIZATION`, SAN URI ``urn:tgw:bank:<CODE>``,
        EKU clientAuth, keyUsage digitalSignature (+ keyEncipherment for RSA).
    """
    validate_bank_code(bank_code)
    is_rsa = key_type_of(subject_key) is KeyType.RSA
    builder = (
        _leaf_builder(ca_cert, ca_key, subject_key, _name(bank_code, BANK_ORGANIZATION), now, validity)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(BANK_URI_PREFIX + bank_code)]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            _key_usage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa),
            critical=True,
        )
    )
    return builder.sign(ca_key, hashes.SHA256())


def bank_code_of(cert: x509.Certificate) -> str | None:
    """The bank code a certificate identifies, or None if it is not a bank certificate.

    The rule (PROTOCOL.md §1: a certificate identifies exactly one bank code):

    1. If the SAN has a ``urn:tgw:bank:`` URI, it is the bank code; there must be exactly one such URI.
       If the subject also has a CN, the CN must equal the code exactly (case-sensitive).
    2. Without such a URI, the CN is the bank code only if the subject's O is :data:`BANK_ORGANIZATION`;
       otherwise the certificate is not a bank certificate and the answer is None. The O check keeps the
       gateway's own certificates (CN ``450100000000`` or ``localhost``) from ever reading as a bank.

    An inconsistent certificate raises instead of returning None, so that the gateway can log *why* a
    peer was refused; either way the peer is not bound to any bank. This function does not check the
    signature, validity or revocation: the TLS handshake does that.

    Raises:
        BankIdentityError: The CN and the URI disagree; several bank URIs or CNs; a code of the wrong form.
    """
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if len(cns) > 1:
        raise BankIdentityError(f"certificate subject has {len(cns)} CNs; a bank certificate has one")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    bank_uris = [u for u in uris if u.lower().startswith(BANK_URI_PREFIX)]
    if len(bank_uris) > 1:
        raise BankIdentityError(f"certificate names several banks: {', '.join(bank_uris)}")
    if bank_uris:
        code = bank_uris[0][len(BANK_URI_PREFIX) :]
        if not bank_uris[0].startswith(BANK_URI_PREFIX) or not _BANK_CODE_RE.fullmatch(code):
            raise BankIdentityError(f"malformed bank URI {bank_uris[0]!r}")
        if cns and cns[0] != code:
            raise BankIdentityError(f"certificate CN {cns[0]!r} disagrees with its bank URI {bank_uris[0]!r}")
        return code
    if cns and orgs == [BANK_ORGANIZATION]:
        if not _BANK_CODE_RE.fullmatch(cns[0]):
            raise BankIdentityError(f"bank certificate CN {cns[0]!r} is not a bank code")
        return cns[0]
    return None


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Check that `cert` was signed by `ca_cert`'s key and names it as issuer (no validity or policy checks).

    Raises:
        NotIssuedByCaError: It was not.
    """
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise NotIssuedByCaError(
            f"certificate {cert.subject.rfc4514_string()} (serial {cert.serial_number}) was not issued by "
            f"{ca_cert.subject.rfc4514_string()}: {exc or 'bad signature'}"
        ) from exc


# --- revocation --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate as it goes into a CRL.

    Attributes:
        serial: The certificate's serial number.
        revoked_at: When it was revoked (aware).
        reason: The CRL reason code; ``unspecified`` is written as no reason extension (RFC 5280 §5.3.1).
    """

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def parse_reason(text: str | x509.ReasonFlags) -> x509.ReasonFlags:
    """A CRL reason from its RFC 5280 name (``keyCompromise``) or Python name (``key_compromise``).

    Case, hyphens and underscores are ignored. ``removeFromCRL`` is refused: it only exists in delta CRLs.

    Raises:
        CrlError: Unknown or refused reason.
    """
    if isinstance(text, x509.ReasonFlags):
        reason = text
    else:
        wanted = text.replace("-", "").replace("_", "").lower()
        matches = [r for r in x509.ReasonFlags if wanted in (r.value.lower(), r.name.replace("_", "").lower())]
        if not matches:
            names = ", ".join(r.value for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl)
            raise CrlError(f"unknown revocation reason {text!r}; one of: {names}")
        reason = matches[0]
    if reason is x509.ReasonFlags.remove_from_crl:
        raise CrlError("removeFromCRL is only meaningful in delta CRLs, which this CA does not publish")
    return reason


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revoked_entries: Iterable[RevokedEntry],
    now: datetime,
    next_update_after: timedelta = DEFAULT_CRL_VALIDITY,
    *,
    crl_number: int | None = None,
) -> x509.CertificateRevocationList:
    """Build and sign a full CRL.

    Args:
        ca_cert: The CA certificate (its subject is the CRL issuer).
        ca_key: The CA private key.
        revoked_entries: The revoked certificates (any order; a serial may appear once).
        now: The CRL's thisUpdate (aware).
        next_update_after: nextUpdate is ``now + next_update_after``.
        crl_number: The CRL number (must grow with every CRL); default the Unix time of `now`, which grows
            as long as the CA's clock does.

    Returns:
        A CRL with CRL number and authority key identifier extensions (RFC 5280 §5.2), one entry per
        revoked certificate, each with its reason code unless the reason is ``unspecified``.

    Raises:
        CrlError: A serial listed twice, a non-positive interval, or a removeFromCRL reason.
    """
    now = _utc(now)
    if next_update_after <= timedelta(0):
        raise CrlError(f"next_update_after must be positive, not {next_update_after}")
    if ca_cert.public_key() != ca_key.public_key():
        raise CrlError("the CA private key does not belong to the CA certificate")
    number = int(now.timestamp()) if crl_number is None else crl_number
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + next_update_after)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(aki, critical=False)
    )
    seen: set[int] = set()
    for entry in sorted(revoked_entries, key=lambda e: e.serial):
        if entry.serial in seen:
            raise CrlError(f"serial {entry.serial} is listed twice")
        seen.add(entry.serial)
        reason = parse_reason(entry.reason)
        revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(_utc(entry.revoked_at))
        if reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(ca_key, hashes.SHA256())


def verify_crl(crl: x509.CertificateRevocationList, ca_cert: x509.Certificate) -> None:
    """Check that `crl` was issued and signed by `ca_cert` (freshness is the caller's business).

    Raises:
        NotIssuedByCaError: Another issuer, or a bad signature.
    """
    if crl.issuer != ca_cert.subject:
        raise NotIssuedByCaError(
            f"CRL issued by {crl.issuer.rfc4514_string()}, not by {ca_cert.subject.rfc4514_string()}"
        )
    public = ca_cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
        raise NotIssuedByCaError(f"CRL signature does not verify with {ca_cert.subject.rfc4514_string()}")


def is_revoked(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    """Whether `crl` lists `cert`.

    The CRL's issuer must be the certificate's issuer: a CRL from another CA says nothing about this
    certificate, and answering False would be a silent pass. Use :func:`verify_crl` first to check its
    signature; its freshness (nextUpdate) is the caller's business, since this function has no clock.

    Raises:
        CrlError: The CRL is from another issuer.
    """
    if crl.issuer != cert.issuer:
        raise CrlError(
            f"CRL issued by {crl.issuer.rfc4514_string()} cannot answer for a certificate issued by "
            f"{cert.issuer.rfc4514_string()}"
        )
    return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


# --- files -------------------------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int, *, overwrite: bool = True) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename) with exactly `mode`.

    With ``overwrite=False`` the final step is a hard link, which fails if `path` exists, so that two
    writers can never both believe they created the file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise PkiFileError(path, "already exists; refusing to overwrite it") from None
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_file(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PkiFileError(path, "no such file") from None
    except OSError as exc:
        raise PkiFileError(path, f"cannot read: {exc.strerror or exc}") from exc


def _passphrase_bytes(passphrase: Passphrase | None) -> bytes | None:
    if passphrase is None:
        return None
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise PkiError("an empty passphrase is not a passphrase; give none or a non-empty one")
    return data


def save_certificates(
    path: Path | str, certs: x509.Certificate | Sequence[x509.Certificate], *, overwrite: bool = True
) -> None:
    """Write one certificate, or a chain (leaf first), as PEM (mode 0644).

    Raises:
        PkiFileError: ``overwrite=False`` and the file exists.
    """
    items = [certs] if isinstance(certs, x509.Certificate) else list(certs)
    if not items:
        raise PkiError("no certificate to save")
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in items)
    _write_file(Path(path), data, 0o644, overwrite=overwrite)


def load_certificate_chain(path: Path | str) -> list[x509.Certificate]:
    """Read every certificate of a PEM file, in file order (by convention the leaf first).

    Raises:
        PkiFileError: Missing, unreadable, or holding no PEM certificate.
    """
    data = _read_file(path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiFileError(path, f"not a PEM certificate file ({exc})") from exc
    if not certs:  # pragma: no cover - cryptography raises on an empty file already
        raise PkiFileError(path, "holds no certificate")
    return certs


def load_certificate(path: Path | str) -> x509.Certificate:
    """Read the first certificate of a PEM file (a chain file yields its leaf).

    Raises:
        PkiFileError: Missing, unreadable, or holding no PEM certificate.
    """
    return load_certificate_chain(path)[0]


def save_private_key(
    path: Path | str, key: PrivateKey, passphrase: Passphrase | None = None, *, overwrite: bool = True
) -> None:
    """Write a private key as PKCS#8 PEM with mode 0600, encrypted if a passphrase is given.

    Encryption is `BestAvailableEncryption` (with today's `cryptography`: PBES2, AES-256-CBC).

    Raises:
        PkiError: Empty passphrase.
        PkiFileError: ``overwrite=False`` and the file exists.
    """
    secret = _passphrase_bytes(passphrase)
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption() if secret is None else serialization.BestAvailableEncryption(secret)
    )
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_file(Path(path), data, 0o600, overwrite=overwrite)


def _looks_encrypted(data: bytes) -> bool:
    """Whether a PEM private key is encrypted: PKCS#8 ``ENCRYPTED PRIVATE KEY`` or an OpenSSL DEK header."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key(path: Path | str, passphrase: Passphrase | None = None) -> PrivateKey:
    """Read a PEM private key (RSA or EC), decrypting it with `passphrase` if it is encrypted.

    Raises:
        PassphraseRequiredError: The key is encrypted and no passphrase was given.
        WrongPassphraseError: The passphrase does not decrypt it.
        UnexpectedPassphraseError: A passphrase was given but the key is not encrypted.
        PkiFileError: Missing, unreadable, not a PEM private key, or neither RSA nor EC.
    """
    data = _read_file(path)
    secret = _passphrase_bytes(passphrase)
    encrypted = _looks_encrypted(data)
    if encrypted and secret is None:
        raise PassphraseRequiredError(path, "private key is encrypted; a passphrase is required")
    if not encrypted and secret is not None and b"PRIVATE KEY-----" in data:
        raise UnexpectedPassphraseError(path, "private key is not encrypted, but a passphrase was given")
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except TypeError as exc:  # pragma: no cover - pre-empted by the checks above
        raise PkiFileError(path, str(exc)) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        if encrypted:
            raise WrongPassphraseError(path, "wrong passphrase for the encrypted private key") from exc
        raise PkiFileError(path, f"not a PEM private key ({exc})") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PkiFileError(path, f"unsupported private key type {type(key).__name__}; RSA or EC expected")
    return key


def save_crl(path: Path | str, crl: x509.CertificateRevocationList) -> None:
    """Write a CRL as PEM (mode 0644), atomically."""
    _write_file(Path(path), crl.public_bytes(serialization.Encoding.PEM), 0o644)


def load_crl(path: Path | str) -> x509.CertificateRevocationList:
    """Read a PEM CRL.

    Raises:
        PkiFileError: Missing, unreadable, or not a PEM CRL.
    """
    data = _read_file(path)
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise PkiFileError(path, f"not a PEM CRL ({exc})") from exc
