"""The `rsa-sha256-detached` scheme: RSA-SHA256 (PKCS#1 v1.5) over the frame body, base64 in a head element.

PKCS#1 v1.5 is deterministic: the same document and key give the same value. See :mod:`banks.signing.detached`
for what exactly is signed and how it is verified. A signer or pinned certificate with an ECDSA key is refused.
"""

from __future__ import annotations

from typing import ClassVar

from banks.signing.detached import DetachedSignature
from protocols.signature import RSA_SHA256


class RsaSha256Detached(DetachedSignature):
    """RSA-SHA256 PKCS#1 v1.5, detached, in a head element."""

    name: ClassVar[str] = "rsa-sha256-detached"
    methods: ClassVar[frozenset[str]] = frozenset({RSA_SHA256})
