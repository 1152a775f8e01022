"""scrypt password hashing: format, verification, parameters carried in the hash, policy."""

from __future__ import annotations

import time

import pytest

from gateway.auth import passwords
from gateway.auth.passwords import DEFAULT, ScryptParams, hash_password, needs_rehash, verify_password

FAST = ScryptParams(n=2**10, r=8, p=1)


def test_default_parameters_are_memory_hard() -> None:
    """The default costs 128 MiB per derivation (OWASP's scrypt minimum), and a real hash verifies."""
    assert DEFAULT.memory_bytes == 128 * 1024 * 1024
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$131072$8$1$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)


def test_same_password_gets_a_new_salt_each_time() -> None:
    a, b = hash_password("密码很长很长很长的", FAST), hash_password("密码很长很长很长的", FAST)
    assert a != b
    assert verify_password("密码很长很长很长的", a) and verify_password("密码很长很长很长的", b)


def test_known_vector() -> None:
    """A fixed salt gives a fixed hash (RFC 7914's scrypt, as OpenSSL computes it)."""
    stored = hash_password("password", ScryptParams(16, 1, 1), salt=b"NaCl")
    assert stored == hash_password("password", ScryptParams(16, 1, 1), salt=b"NaCl")
    assert verify_password("password", stored)


@pytest.mark.parametrize(
    "stored",
    ["", "bcrypt$x", "scrypt$1024$8$1$!!$AA==", "scrypt$1000$8$1$AA==$AA==", "scrypt$2097152$8$1$AA==$AA==", "x$y"],
)
def test_malformed_or_excessive_hashes_never_verify(stored: str) -> None:
    """A corrupted row (or one asking for gigabytes) is a failed login, not a crash or an exhausted host."""
    assert not verify_password("anything at all", stored)
    assert needs_rehash(stored)


def test_weaker_parameters_verify_but_ask_for_a_rehash() -> None:
    stored = hash_password("an old password", FAST)
    assert verify_password("an old password", stored)
    assert needs_rehash(stored)
    assert not needs_rehash(hash_password("x" * 12, FAST), FAST)


def test_overlong_passwords_are_refused_without_hashing() -> None:
    stored = hash_password("p" * 20, FAST)
    assert not verify_password("p" * (passwords.PASSWORD_LEN_MAX + 1), stored)


def test_policy() -> None:
    with pytest.raises(passwords.PasswordPolicyError):
        passwords.check_policy("short")
    with pytest.raises(passwords.PasswordPolicyError):
        passwords.check_policy("x" * 257)
    passwords.check_policy("long enough pass")


def test_dummy_verify_takes_as_long_as_a_real_one() -> None:
    """Unknown users are answered after the same work as known ones (no enumeration by timing)."""
    stored = hash_password("a real password", FAST)
    passwords.dummy_verify("warm up", FAST)
    t0 = time.perf_counter()
    for _ in range(5):
        verify_password("wrong password", stored)
    real = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(5):
        passwords.dummy_verify("wrong password", FAST)
    dummy = time.perf_counter() - t0
    assert dummy > real / 4
