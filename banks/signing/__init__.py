"""Signature schemes of the bank dialects, one small module each, chosen by name in a declaration.

* `xmldsig-enveloped` (:mod:`banks.signing.xmldsig`): PROTOCOL.md §6, enveloped XMLDSig, RSA or ECDSA.
* `rsa-sha256-detached` (:mod:`banks.signing.rsa_detached`): RSA-SHA256 PKCS#1 v1.5 over the frame body,
  base64 in a head element.
* `ecdsa-p256-detached` (:mod:`banks.signing.ecdsa_detached`): ECDSA P-256 SHA-256 (raw r || s) over the
  frame body, base64 in a head element.
"""

from __future__ import annotations

from typing import Final

from banks.signing.base import KeyTypeMismatch, SignatureScheme
from banks.signing.detached import DetachedSignature
from banks.signing.ecdsa_detached import EcdsaP256Detached
from banks.signing.rsa_detached import RsaSha256Detached
from banks.signing.xmldsig import EnvelopedXmlDsig

#: The detached schemes by name: they need a head element to carry the value.
DETACHED: Final[dict[str, type[DetachedSignature]]] = {
    RsaSha256Detached.name: RsaSha256Detached,
    EcdsaP256Detached.name: EcdsaP256Detached,
}
#: Every scheme name a declaration may use.
SCHEME_NAMES: Final = frozenset({EnvelopedXmlDsig.name, *DETACHED})


def make_scheme(name: str, *, dialect: str, root: str, head: str, element: str | None) -> SignatureScheme:
    """The scheme `name` as the dialect `dialect` with this layout uses it.

    Args:
        name: One of :data:`SCHEME_NAMES`.
        dialect: The dialect's code (for error messages).
        root: The dialect's root element.
        head: Its head element.
        element: For a detached scheme, the head element that carries the value; None for XMLDSig.

    Raises:
        ValueError: An unknown name, or `element` given to XMLDSig or missing for a detached scheme.
    """
    if name == EnvelopedXmlDsig.name:
        if element is not None:
            raise ValueError(f"{name} carries its signature as ds:Signature; it takes no element")
        return EnvelopedXmlDsig(dialect)
    detached = DETACHED.get(name)
    if detached is None:
        raise ValueError(f"unknown signature scheme {name!r}; known: {', '.join(sorted(SCHEME_NAMES))}")
    if element is None:
        raise ValueError(f"{name} needs the head element that carries the signature value")
    return detached(dialect, root=root, head=head, element=element)


__all__ = ["DETACHED", "SCHEME_NAMES", "KeyTypeMismatch", "SignatureScheme", "make_scheme"]
