"""Members' passwords: argon2id through pwdlib, with its recommended parameters.

A stored hash carries its own parameters, so raising them later still verifies the old
hashes, and `verify` says when one should be hashed again (`needs_rehash`). Signing in
with an address nobody has still costs one argon2 verification (`verify_nobody`), so the
time of the answer does not tell which addresses have accounts.
"""

from __future__ import annotations

import functools

from pwdlib import PasswordHash


@functools.cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


@functools.cache
def _nobody(hasher: PasswordHash) -> str:
    """A hash of a password nobody has, made with the hasher in use so that checking it
    costs what checking a member's does."""
    return hasher.hash("the password of a member who does not exist")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify(password: str, hashed: str) -> tuple[bool, str | None]:
    """Whether `password` matches, and a new hash when the stored one's parameters are
    outdated (None otherwise)."""
    return _hasher().verify_and_update(password, hashed)


def verify_nobody(password: str) -> bool:
    """Spend what a real check costs, and fail."""
    hasher = _hasher()
    hasher.verify(password, _nobody(hasher))
    return False
