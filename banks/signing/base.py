"""What a signature scheme of a bank dialect is, and the key operations the schemes share.

A scheme signs the serialized document of a dialect and verifies an inbound one with the certificate pinned
for the sender; what it returns from verification is the tree to decode, and nothing outside what was
verified is in it (signxml's "see what is signed", STYLE.md §6). Every failure is a
:class:`~protocols.errors.SignatureError` (91003) or, for an unreadable document, an
:class:`~protocols.errors.XmlError` (91001).

The schemes sign with the key held by a :class:`protocols.signature.Signer` and verify with the key pinned in
a :class:`protocols.signature.Verifier`, the same objects the gateway and the simulated bank already hold for
the standard dialect, so a dialect needs no key handling of its own.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Final

from lxml import etree

from protocols.errors import LocalError, SignatureInvalid
from protocols.signature import ECDSA_SHA256, RSA_SHA256, Signer, Verifier
from protocols.xmlsafe import XmlLimits

#: A readable name for each signature method URI of protocols.signature.
KEY_NAMES: Final = {RSA_SHA256: "RSA (RSA-SHA256)", ECDSA_SHA256: "ECDSA P-256 (ECDSA-SHA256)"}
#: The `tgw init --key-type` value that makes keys of each kind.
KEY_TYPE_OPTIONS: Final = {RSA_SHA256: "rsa", ECDSA_SHA256: "ec"}


class KeyTypeMismatch(LocalError):
    """We were asked to sign for a dialect whose scheme does not accept our key's type (a configuration error)."""


def sign_value(signer: Signer, data: bytes) -> bytes:
    """The raw signature value of `data` by the signer's key: RSA-SHA256 PKCS#1 v1.5, or ECDSA-SHA256 as the
    raw r || s of RFC 4051 §3.3 (64 bytes for P-256).

    """
    return signer.sign_value(data)


def verify_value(verifier: Verifier, value: bytes, data: bytes) -> None:
    """Check a raw signature value (as :func:`sign_value` makes it) of `data` with the pinned key.

    Raises:
        SignatureInvalid: The value does not verify with the pinned key.
    """
    verifier.verify_value(value, data)


class SignatureScheme(abc.ABC):
    """How the documents of a dialect are signed and verified.

    Attributes:
        name: The scheme's name in a declaration (`signature.scheme`).
        methods: The signature methods (``protocols.signature`` URIs, which stand for the key types) the
            scheme signs and verifies with; a signer or a pinned certificate of another type is refused.
    """

    name: ClassVar[str]
    methods: ClassVar[frozenset[str]]

    def __init__(self, dialect: str) -> None:
        """A scheme as one dialect uses it; `dialect` (its code) names it in errors."""
        self.dialect = dialect

    def check_signer(self, signer: Signer) -> None:
        """Refuse a signer whose key this scheme cannot use, naming what is needed.

        Raises:
            KeyTypeMismatch: The key is of another type.
        """
        if signer.signature_method not in self.methods:
            raise KeyTypeMismatch(
                f"the {self.dialect} dialect signs with {self.name}, which needs "
                f"{' or '.join(KEY_NAMES[m] for m in sorted(self.methods))}; the signing key is "
                f"{KEY_NAMES.get(signer.signature_method, signer.signature_method)} (keys of the right type: "
                f"`tgw init --key-type {' or '.join(KEY_TYPE_OPTIONS[m] for m in sorted(self.methods))}`)"
            )

    def check_verifier(self, verifier: Verifier) -> None:
        """Refuse a pinned certificate whose key this scheme cannot use (nothing could ever verify).

        Raises:
            SignatureInvalid: The pinned key is of another type.
        """
        if verifier.signature_method not in self.methods:
            raise SignatureInvalid(
                f"the {self.dialect} dialect signs with {self.name}, but the certificate pinned for the sender holds "
                f"{KEY_NAMES.get(verifier.signature_method, verifier.signature_method)}"
            )

    @abc.abstractmethod
    def sign_tree(self, root: etree._Element, encoding: str, signer: Signer) -> bytes:
        """Serialize an unsigned document (already indented as it is to be sent) and sign it."""

    @abc.abstractmethod
    def sign_bytes(self, document: bytes, signer: Signer, limits: XmlLimits) -> bytes:
        """Sign an existing unsigned document given as bytes, keeping its bytes (integrators' tools).

        Raises:
            XmlError: The document cannot be parsed safely.
            SignatureProfileViolation: It is already signed, or has no place for the signature.
        """

    @abc.abstractmethod
    def verify(self, data: bytes, verifier: Verifier, limits: XmlLimits) -> etree._Element:
        """Parse an untrusted document, verify it with the pinned key, and return the tree to decode.

        The returned tree holds exactly what was verified, without the signature.

        Raises:
            XmlError: The document cannot be parsed safely (91001).
            SignatureError: The signature is missing, duplicated, misplaced, off-profile or invalid (91003).
        """

    @abc.abstractmethod
    def strip(self, root: etree._Element) -> None:
        """Remove any signature from a parsed tree, unverified, to check the rest (integrators' tools)."""
