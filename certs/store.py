"""An instance's development PKI on disk: the CA, the gateway's keys, one directory per bank, the CRL.

Layout of a :class:`PkiDirectory` (keys are mode 0600; the rest 0644)::

    ca.pem  ca-key.pem                               the bank CA
    gateway-tls-cert.pem  gateway-tls-key.pem        the gateway's TLS server certificate and key
    gateway-signing-cert.pem  gateway-signing-key.pem  the finance bureau's message-signing certificate
    crl.pem                                          the current CRL (empty after init)
    revoked.json                                     revocation state the CRL is rebuilt from
    banks/<CODE>/cert.pem  banks/<CODE>/key.pem      one client certificate and key per bank

Decisions:

* One passphrase per directory. If `init` is given one, every key it writes is encrypted with it, and the
  methods that need the CA key (or write a new key) take the same passphrase.
* Re-issuing a bank replaces its two files; the previous certificate stays valid until revoked (by serial).
* Revoking the same serial twice is idempotent: the first revocation (date and reason) stands.
* ``revoked.json`` holds the CRL number and the entries; serials are decimal strings, because JSON numbers
  beyond 2**53 do not survive every parser and serials are up to 159 bits.
* Writers take an exclusive ``flock`` on ``.lock`` so that two concurrent revocations do not lose one.
* Nothing here reads the clock: ``now`` is a parameter, as in :mod:`certs.pki`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from certs import pki
from certs.pki import KeyType, Passphrase, PkiError, PkiFileError, PrivateKey, RevokedEntry

__all__ = ["BankFiles", "CaExistsError", "PkiDirectory", "RevocationStateError"]

_STATE_FORMAT = 1


class CaExistsError(PkiError):
    """`init` was asked to create a CA where one already exists."""


class RevocationStateError(PkiFileError):
    """``revoked.json`` is missing or not in the expected form."""


@dataclass(frozen=True)
class BankFiles:
    """The files of one bank's credentials.

    Attributes:
        code: The bank code.
        cert_path: Its client certificate (PEM).
        key_path: Its private key (PEM, mode 0600).
    """

    code: str
    cert_path: Path
    key_path: Path


class PkiDirectory:
    """A development PKI kept in one directory (see the module docstring for the layout).

    Args:
        path: The directory; `init` creates it if needed.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # --- paths -------------------------------------------------------------------------------------------

    @property
    def ca_cert_path(self) -> Path:
        """The CA certificate."""
        return self.path / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        """The CA private key."""
        return self.path / "ca-key.pem"

    @property
    def gateway_tls_cert_path(self) -> Path:
        """The gateway's TLS server certificate."""
        return self.path / "gateway-tls-cert.pem"

    @property
    def gateway_tls_key_path(self) -> Path:
        """The gateway's TLS server key."""
        return self.path / "gateway-tls-key.pem"

    @property
    def gateway_signing_cert_path(self) -> Path:
        """The gateway's message-signing certificate (CN = node code)."""
        return self.path / "gateway-signing-cert.pem"

    @property
    def gateway_signing_key_path(self) -> Path:
        """The gateway's message-signing key."""
        return self.path / "gateway-signing-key.pem"

    @property
    def crl_path(self) -> Path:
        """The current CRL."""
        return self.path / "crl.pem"

    @property
    def revoked_path(self) -> Path:
        """The revocation state (JSON)."""
        return self.path / "revoked.json"

    @property
    def banks_path(self) -> Path:
        """The directory holding one subdirectory per bank."""
        return self.path / "banks"

    def bank_dir(self, code: str) -> Path:
        """The directory of one bank (the code is validated, so it cannot escape `banks/`)."""
        return self.banks_path / pki.validate_bank_code(code)

    def bank_cert_path(self, code: str) -> Path:
        """A bank's client certificate."""
        return self.bank_dir(code) / "cert.pem"

    def bank_key_path(self, code: str) -> Path:
        """A bank's private key."""
        return self.bank_dir(code) / "key.pem"

    def bank_files(self, code: str) -> BankFiles:
        """A bank's certificate and key paths together."""
        return BankFiles(code, self.bank_cert_path(code), self.bank_key_path(code))

    def bank_codes(self) -> list[str]:
        """The banks that have a certificate here, sorted."""
        if not self.banks_path.is_dir():
            return []
        return sorted(p.parent.name for p in self.banks_path.glob("*/cert.pem"))

    def exists(self) -> bool:
        """Whether a CA has been created here."""
        return self.ca_cert_path.exists() or self.ca_key_path.exists()

    # --- loading -----------------------------------------------------------------------------------------

    def load_ca_cert(self) -> x509.Certificate:
        """The CA certificate."""
        return pki.load_certificate(self.ca_cert_path)

    def load_ca(self, passphrase: Passphrase | None = None) -> tuple[x509.Certificate, PrivateKey]:
        """The CA certificate and private key.

        Raises:
            PkiFileError: A file is missing or the key does not match the certificate.
            PassphraseRequiredError: The key is encrypted and no passphrase was given.
            WrongPassphraseError: The passphrase is wrong.
        """
        cert = self.load_ca_cert()
        key = pki.load_private_key(self.ca_key_path, passphrase)
        if cert.public_key() != key.public_key():
            raise PkiFileError(self.ca_key_path, f"does not belong to the CA certificate {self.ca_cert_path}")
        return cert, key

    def load_bank_cert(self, code: str) -> x509.Certificate:
        """A bank's current client certificate."""
        return pki.load_certificate(self.bank_cert_path(code))

    def load_bank_key(self, code: str, passphrase: Passphrase | None = None) -> PrivateKey:
        """A bank's private key."""
        return pki.load_private_key(self.bank_key_path(code), passphrase)

    def crl(self) -> x509.CertificateRevocationList:
        """The current CRL, after checking that the CA signed it.

        Raises:
            PkiFileError: Missing or unreadable.
            NotIssuedByCaError: Not signed by this directory's CA.
        """
        crl = pki.load_crl(self.crl_path)
        pki.verify_crl(crl, self.load_ca_cert())
        return crl

    def revoked_entries(self) -> list[RevokedEntry]:
        """Every revocation recorded in ``revoked.json``, in recording order."""
        return self._read_state()[1]

    # --- writing -----------------------------------------------------------------------------------------

    def init(
        self,
        node_code: str,
        bank_codes: Iterable[str],
        key_type: KeyType | str,
        now: datetime,
        passphrase: Passphrase | None = None,
        *,
        hostnames: tuple[str, ...] = ("localhost",),
        ips: tuple[str, ...] = ("127.0.0.1", "::1"),
        leaf_validity: timedelta = pki.DEFAULT_LEAF_VALIDITY,
    ) -> None:
        """Create the CA, the gateway's certificates, one certificate per bank and an empty CRL.

        Everything is generated in memory first and written afterwards; the CA files are created with
        "fail if it exists" semantics, so an existing CA is never overwritten, even by a concurrent `init`.

        Args:
            node_code: The gateway's node code (12 digits); the signing certificate's CN.
            bank_codes: The banks to issue client certificates for.
            key_type: ``"rsa"`` or ``"ec"``, for every key written.
            now: The current time (aware).
            passphrase: If given, every private key is encrypted with it.
            hostnames: The TLS certificate's DNS names.
            ips: The TLS certificate's IP addresses.
            leaf_validity: Lifetime of the leaf certificates.

        Raises:
            CaExistsError: The directory already holds a CA.
            InvalidCodeError: A malformed node or bank code, a duplicate bank, or a bank named like the node.
        """
        pki.validate_node_code(node_code)
        codes = [pki.validate_bank_code(c) for c in bank_codes]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise pki.InvalidCodeError(f"bank codes given more than once: {', '.join(duplicates)}")
        if node_code in codes:
            raise pki.InvalidCodeError(f"bank code {node_code} is the gateway's own node code")
        pki._passphrase_bytes(passphrase)  # an empty passphrase fails now, before any key is generated
        if self.exists():
            raise CaExistsError(f"{self.path} already holds a CA ({self.ca_cert_path}); refusing to overwrite")

        ca_key = pki.generate_key(key_type)
        ca_cert = pki.create_ca(ca_key, now, common_name=f"Treasury Gateway Bank CA {node_code}")
        tls_key = pki.generate_key(key_type)
        tls_cert = pki.issue_server_cert(
            ca_cert, ca_key, tls_key, now, hostnames=hostnames, ips=ips, validity=leaf_validity
        )
        sig_key = pki.generate_key(key_type)
        sig_cert = pki.issue_signing_cert(ca_cert, ca_key, sig_key, node_code, now, validity=leaf_validity)
        banks = []
        for code in codes:
            key = pki.generate_key(key_type)
            banks.append((code, pki.issue_bank_cert(ca_cert, ca_key, key, code, now, validity=leaf_validity), key))
        crl = pki.build_crl(ca_cert, ca_key, [], now, pki.DEFAULT_CRL_VALIDITY, crl_number=1)

        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            try:
                pki.save_private_key(self.ca_key_path, ca_key, passphrase, overwrite=False)
            except PkiFileError as exc:
                raise CaExistsError(f"{self.path} already holds a CA; refusing to overwrite it") from exc
            pki.save_certificates(self.ca_cert_path, ca_cert, overwrite=False)
            pki.save_private_key(self.gateway_tls_key_path, tls_key, passphrase)
            pki.save_certificates(self.gateway_tls_cert_path, tls_cert)
            pki.save_private_key(self.gateway_signing_key_path, sig_key, passphrase)
            pki.save_certificates(self.gateway_signing_cert_path, sig_cert)
            for code, cert, key in banks:
                self._write_bank(code, cert, key, passphrase)
            self._write_state(1, [])
            pki.save_crl(self.crl_path, crl)

    def issue_bank(
        self,
        code: str,
        key_type: KeyType | str | None,
        now: datetime,
        *,
        passphrase: Passphrase | None = None,
        validity: timedelta = pki.DEFAULT_LEAF_VALIDITY,
    ) -> x509.Certificate:
        """Issue (or re-issue) a bank's client certificate with a new key, replacing its files.

        A previous certificate of the same bank is not revoked: revoke it by serial if it must stop working.

        Args:
            code: The bank code.
            key_type: ``"rsa"`` or ``"ec"``; None means the CA key's type.
            now: The current time (aware).
            passphrase: Unlocks the CA key and encrypts the new key (one passphrase per directory).
            validity: Lifetime of the certificate.

        Returns:
            The new certificate.
        """
        pki.validate_bank_code(code)
        ca_cert, ca_key = self.load_ca(passphrase)
        key = pki.generate_key(key_type if key_type is not None else pki.key_type_of(ca_key))
        cert = pki.issue_bank_cert(ca_cert, ca_key, key, code, now, validity=validity)
        with self._locked():
            self._write_bank(code, cert, key, passphrase)
        return cert

    def revoke(
        self,
        cert_or_serial: x509.Certificate | int,
        reason: x509.ReasonFlags | str,
        now: datetime,
        *,
        passphrase: Passphrase | None = None,
        crl_validity: timedelta = pki.DEFAULT_CRL_VALIDITY,
    ) -> RevokedEntry:
        """Record a revocation and rewrite ``crl.pem``.

        Args:
            cert_or_serial: The certificate (it must have been issued by this CA) or its serial number.
            reason: The CRL reason (``keyCompromise``, ``superseded``, …; see :func:`certs.pki.parse_reason`).
            now: The revocation time and the new CRL's thisUpdate (aware).
            passphrase: Unlocks the CA key.
            crl_validity: The new CRL's nextUpdate is ``now + crl_validity``.

        Returns:
            The entry now in the CRL (for a serial already revoked, the original entry, unchanged).

        Raises:
            NotIssuedByCaError: The certificate is not from this CA.
            PkiError: The serial is the CA's own, or not positive.
        """
        reason_flag = pki.parse_reason(reason)
        ca_cert, ca_key = self.load_ca(passphrase)
        if isinstance(cert_or_serial, x509.Certificate):
            pki.verify_issued_by(cert_or_serial, ca_cert)
            serial = cert_or_serial.serial_number
        else:
            serial = cert_or_serial
        if serial <= 0:
            raise PkiError(f"serial numbers are positive; {serial} is not")
        if serial == ca_cert.serial_number:
            raise PkiError("the CA cannot revoke itself; create a new CA instead")
        with self._locked():
            number, entries = self._read_state()
            for existing in entries:
                if existing.serial == serial:
                    return existing
            entry = RevokedEntry(serial, pki._utc(now), reason_flag)
            entries.append(entry)
            crl = pki.build_crl(ca_cert, ca_key, entries, now, crl_validity, crl_number=number + 1)
            self._write_state(number + 1, entries)
            pki.save_crl(self.crl_path, crl)
        return entry

    def publish_crl(
        self,
        now: datetime,
        *,
        passphrase: Passphrase | None = None,
        crl_validity: timedelta = pki.DEFAULT_CRL_VALIDITY,
    ) -> x509.CertificateRevocationList:
        """Re-sign the CRL with the recorded entries and a new thisUpdate/nextUpdate (before it goes stale).

        Returns:
            The new CRL, also written to ``crl.pem``.
        """
        ca_cert, ca_key = self.load_ca(passphrase)
        with self._locked():
            number, entries = self._read_state()
            crl = pki.build_crl(ca_cert, ca_key, entries, now, crl_validity, crl_number=number + 1)
            self._write_state(number + 1, entries)
            pki.save_crl(self.crl_path, crl)
        return crl

    # --- internals ---------------------------------------------------------------------------------------

    def _write_bank(self, code: str, cert: x509.Certificate, key: PrivateKey, passphrase: Passphrase | None) -> None:
        bank_dir = self.bank_dir(code)
        bank_dir.mkdir(parents=True, exist_ok=True)
        # Key first: a crash between the two writes leaves a new key beside the old certificate, which
        # load-time key/cert matching detects, rather than a certificate whose key was never written.
        pki.save_private_key(self.bank_key_path(code), key, passphrase)
        pki.save_certificates(self.bank_cert_path(code), cert)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive advisory lock on ``.lock`` in the directory while writing."""
        fd = os.open(self.path / ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read_state(self) -> tuple[int, list[RevokedEntry]]:
        path = self.revoked_path
        try:
            raw: Any = json.loads(pki._read_file(path))
            if raw.get("format") != _STATE_FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            number = int(raw["crl_number"])
            entries = [
                RevokedEntry(
                    serial=int(item["serial"]),
                    revoked_at=datetime.fromisoformat(item["revoked_at"]),
                    reason=x509.ReasonFlags(item["reason"]),
                )
                for item in raw["revoked"]
            ]
        except PkiFileError as exc:
            raise RevocationStateError(path, str(exc).removeprefix(f"{path}: ")) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RevocationStateError(path, f"malformed revocation state ({exc})") from exc
        return number, entries

    def _write_state(self, crl_number: int, entries: list[RevokedEntry]) -> None:
        state = {
            "format": _STATE_FORMAT,
            "crl_number": crl_number,
            "revoked": [
                {"serial": str(e.serial), "revoked_at": e.revoked_at.isoformat(), "reason": e.reason.value}
                for e in entries
            ],
        }
        data = (json.dumps(state, indent=2) + "\n").encode("utf-8")
        pki._write_file(self.revoked_path, data, 0o644)
