"""The `ecdsa-p256-detached` scheme: ECDSA P-256 with SHA-256 over the frame body, base64 in a head element.

The value is the **raw r || s** (32 + 32 bytes, big-endian; IEEE P1363, as XMLDSig's RFC 4051 §3.3 and JWS
ES256 write it), not DER: fixed length, one encoding per signature, and nothing to parse. A DER value is
refused as invalid. See :mod:`banks.signing.detached` for what exactly is signed and how it is verified. A
signer or pinned certificate with an RSA key is refused with a clear error.
"""

from __future__ import annotations

from typing import ClassVar

from banks.signing.detached import DetachedSignature
from protocols.signature import ECDSA_SHA256


class EcdsaP256Detached(DetachedSignature):
    """ECDSA P-256 SHA-256, raw r || s, detached, in a head element."""

    name: ClassVar[str] = "ecdsa-p256-detached"
    methods: ClassVar[frozenset[str]] = frozenset({ECDSA_SHA256})
