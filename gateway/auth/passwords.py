"""Password hashing with scrypt (`hashlib.scrypt`), a memory-hard KDF from the standard library.

Why scrypt and not argon2: it is in the standard library (OpenSSL underneath), so it adds no dependency, and it is
memory-hard, which is what makes guessing on GPUs and ASICs expensive. Parameters follow the OWASP Password
Storage Cheat Sheet's minimum for scrypt: N = 2**17, r = 8, p = 1, i.e. 128 MiB and about 0.3 s on one core of a
development machine. They are stored in every hash, so raising :data:`DEFAULT` later needs no migration: a hash
made with weaker parameters still verifies, and :func:`needs_rehash` tells the caller to store a new one.

Format (one line, ASCII): ``scrypt$<N>$<r>$<p>$<salt, base64>$<key, base64>`` with a 16-byte random salt and a
32-byte key. Verification compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT", "PASSWORD_LEN_MAX", "PASSWORD_LEN_MIN", "ScryptParams", "hash_password", "needs_rehash"]

#: Shortest password accepted (NIST SP 800-63B: at least 8; we ask for 10).
PASSWORD_LEN_MIN: Final = 10
#: Longest password accepted: bounds the work an attacker can make one login attempt cost.
PASSWORD_LEN_MAX: Final = 256
SALT_BYTES: Final = 16
KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt's cost parameters: CPU/memory cost `n` (a power of two), block size `r`, parallelism `p`."""

    n: int
    r: int
    p: int

    @property
    def memory_bytes(self) -> int:
        """The memory one derivation needs (128 · r · n)."""
        return 128 * self.r * self.n


#: OWASP's minimum for scrypt (128 MiB per derivation).
DEFAULT: Final = ScryptParams(n=2**17, r=8, p=1)
#: Parameters we refuse to run, whatever a stored hash says (a corrupted row must not exhaust memory).
_N_MAX: Final = 2**20
_R_MAX: Final = 32
_P_MAX: Final = 16


class PasswordPolicyError(ValueError):
    """The new password is too short or too long."""


def check_policy(password: str) -> None:
    """Refuse passwords outside :data:`PASSWORD_LEN_MIN` … :data:`PASSWORD_LEN_MAX` characters.

    Raises:
        PasswordPolicyError: with the reason.
    """
    if len(password) < PASSWORD_LEN_MIN:
        raise PasswordPolicyError(f"a password needs at least {PASSWORD_LEN_MIN} characters")
    if len(password) > PASSWORD_LEN_MAX:
        raise PasswordPolicyError(f"a password has at most {PASSWORD_LEN_MAX} characters")


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.memory_bytes + 32 * 1024 * 1024,
        dklen=KEY_BYTES,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams = DEFAULT, *, salt: bytes | None = None) -> str:
    """The storable hash of `password` (a new random salt unless one is given, for test vectors)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _derive(password, salt, params)
    return f"scrypt${params.n}${params.r}${params.p}${_b64(salt)}${_b64(key)}"


def parse(stored: str) -> tuple[ScryptParams, bytes, bytes]:
    """Split a stored hash into its parameters, salt and key.

    Raises:
        ValueError: not a hash of ours, or parameters beyond what we are willing to compute.
    """
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an scrypt hash")
    n, r, p = (int(x) for x in parts[1:4])
    if not (1 < n <= _N_MAX and n & (n - 1) == 0 and 0 < r <= _R_MAX and 0 < p <= _P_MAX):
        raise ValueError("scrypt parameters out of range")
    return ScryptParams(n, r, p), base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (constant-time comparison); False for a malformed hash."""
    if len(password) > PASSWORD_LEN_MAX:
        return False
    try:
        params, salt, key = parse(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_derive(password, salt, params), key)


def needs_rehash(stored: str, params: ScryptParams = DEFAULT) -> bool:
    """Whether `stored` was made with other parameters than `params` (store a new hash after a good login)."""
    try:
        return parse(stored)[0] != params
    except ValueError:
        return True


#: A hash of a random password, verified when the username is unknown so that the answer takes as long as for a
#: known one (no user enumeration by timing). Computed lazily, once.
_DUMMY: dict[ScryptParams, str] = {}


def dummy_verify(password: str, params: ScryptParams = DEFAULT) -> None:
    """Spend the time a real verification would, for a user that does not exist."""
    if params not in _DUMMY:
        _DUMMY[params] = hash_password(os.urandom(16).hex(), params)
    verify_password(password, _DUMMY[params])
