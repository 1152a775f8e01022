"""A bank's pinned certificates: the ones the gateway verifies that bank's signatures with (PROTOCOL.md §6).

A bank's signing certificate is configured per bank (`[banks.CODE] signing_cert`, by default its TLS client
certificate `pki/banks/CODE/cert.pem`). When the bank is issued a new certificate (the dashboard's "issue", admin),
the new certificate replaces that file and the one it replaces is kept beside it, as
`pki/banks/CODE/previous/SERIAL.pem` (serial in hex), because the PKI's rule is that a re-issued bank's previous
certificate stays valid until it is revoked (`certs/store.py`): the bank moves its systems to the new key when it
is ready, and both keys are accepted meanwhile.

The pinned set of a bank is therefore: the configured certificate, then the kept previous ones, newest first,
less every serial in the CRL (`pki/crl.pem`). :class:`PinnedVerifier` accepts a signature that verifies with any
certificate of the set and nothing else; `KeyInfo` is still never read. The hub loads the set at start and again
whenever the dashboard issues or revokes (:meth:`gateway.hub.Hub.reload_pinned`), so both take effect without a
restart. A bank whose every certificate is revoked has an empty set: nothing it signs verifies (91003), and its
TLS handshakes fail anyway.

This module reads files; it is used off the hot path only (at start, and after an issue or a revocation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from lxml import etree

from certs.pki import PkiError, load_certificate, load_crl, save_certificates
from protocols.errors import SignatureInvalid
from protocols.signature import Verifier

log = logging.getLogger(__name__)

PREVIOUS_DIR: Final = "previous"


class PinnedVerifier(Verifier):
    """Verifies with a bank's pinned certificates: a signature is good if any certificate of the set verifies it.

    Only a bad signature value or digest (:class:`SignatureInvalid`) moves on to the next certificate; a document
    off the profile is refused at once, as by one :class:`Verifier`. `signature_method` is the configured (first)
    certificate's; a set mixing key types still verifies each signature with the certificates of its type.

    Args:
        bank: The bank code (for messages).
        certificates: The pinned set, most likely signer first; it may be empty (every certificate revoked).
        configured: The bank's configured certificate (gives `signature_method` when the set is empty).
    """

    def __init__(self, bank: str, certificates: Sequence[x509.Certificate], configured: x509.Certificate) -> None:
        self.bank = bank
        self.certificates: tuple[x509.Certificate, ...] = tuple(certificates)
        self.serials: frozenset[int] = frozenset(c.serial_number for c in self.certificates)
        self._each = [Verifier(c) for c in self.certificates]
        self.signature_method = Verifier(configured).signature_method

    def _none(self) -> SignatureInvalid:
        return SignatureInvalid(f"no certificate of {self.bank} is pinned: every one it holds is revoked")

    def verify_value(self, value: bytes, data: bytes) -> None:
        last: SignatureInvalid = self._none()
        for verifier in self._each:
            try:
                verifier.verify_value(value, data)
                return
            except SignatureInvalid as exc:
                last = exc
        raise last

    def verify_tree(self, root: etree._Element) -> etree._Element:
        last: SignatureInvalid = self._none()
        for verifier in self._each:
            try:
                return verifier.verify_tree(root)  # on failure the tree is left as it was: the next one may try
            except SignatureInvalid as exc:
                last = exc
        raise last


def previous_dir(signing_cert: Path) -> Path:
    """Where a bank's replaced certificates are kept: `previous/` beside its configured certificate."""
    return signing_cert.parent / PREVIOUS_DIR


def keep_previous(signing_cert: Path) -> x509.Certificate | None:
    """Keep the bank's current certificate as `previous/SERIAL.pem` before it is replaced; returns it (None if
    there is no readable certificate to keep). Idempotent."""
    try:
        current = load_certificate(signing_cert)
    except PkiError:
        return None
    directory = previous_dir(signing_cert)
    directory.mkdir(exist_ok=True)
    target = directory / f"{current.serial_number:x}.pem"
    if not target.exists():
        save_certificates(target, current)
    return current


def revoked_serials(crl_path: Path) -> frozenset[int]:
    """The serials the CRL lists (empty without a CRL file)."""
    if not crl_path.exists():
        return frozenset()
    return frozenset(r.serial_number for r in load_crl(crl_path))


def known_certificates(bank: str, signing_cert: Path) -> list[x509.Certificate]:
    """The bank's configured certificate, then the kept previous ones, newest first (revoked or not).

    Raises:
        PkiError: The configured certificate cannot be read (a kept one that cannot be read is skipped, logged).
    """
    configured = load_certificate(signing_cert)
    kept: list[x509.Certificate] = []
    directory = previous_dir(signing_cert)
    for path in sorted(directory.glob("*.pem")) if directory.is_dir() else ():
        try:
            kept.append(load_certificate(path))
        except PkiError as exc:
            log.warning("%s: a kept certificate cannot be read, not pinned: %s", bank, exc)
    kept.sort(key=lambda c: c.not_valid_before_utc, reverse=True)
    known: list[x509.Certificate] = []
    for cert in (configured, *kept):
        if all(k.serial_number != cert.serial_number for k in known):
            known.append(cert)
    return known


def pinned_for(bank: str, signing_cert: Path, crl_path: Path) -> PinnedVerifier:
    """The bank's pinned set, read from its files (see the module docstring).

    Raises:
        PkiError: The configured certificate or the CRL cannot be read.
    """
    known = known_certificates(bank, signing_cert)
    revoked = revoked_serials(crl_path)
    return PinnedVerifier(bank, [c for c in known if c.serial_number not in revoked], known[0])
