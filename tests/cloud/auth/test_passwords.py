"""Members' passwords: argon2id at the recommended cost, upgraded when the cost rises, and
a missing account costing what a real one does."""

from __future__ import annotations

import time

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from cloud.auth import passwords

pytestmark = pytest.mark.real_password_cost


def test_hashes_are_argon2id_with_a_salt_each() -> None:
    first, second = passwords.hash_password("pass phrase one"), passwords.hash_password(
        "pass phrase one")
    assert first.startswith("$argon2id$")
    assert "m=65536" in first  # the recommended memory cost, 64 MiB
    assert first != second
    assert passwords.verify("pass phrase one", first) == (True, None)
    assert passwords.verify("pass phrase two", first)[0] is False


def test_a_hash_made_at_a_lower_cost_verifies_and_comes_back_rehashed() -> None:
    cheap = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    old = cheap.hash("an older pass phrase")
    matches, rehashed = passwords.verify("an older pass phrase", old)
    assert matches
    assert rehashed is not None
    assert "m=65536" in rehashed


def test_an_unknown_account_costs_a_verification() -> None:
    real = passwords.hash_password("the right pass phrase")
    started = time.perf_counter()
    passwords.verify("a wrong pass phrase", real)
    known = time.perf_counter() - started
    passwords.verify_nobody("warm up")
    started = time.perf_counter()
    assert passwords.verify_nobody("a wrong pass phrase") is False
    unknown = time.perf_counter() - started
    assert unknown > known / 3  # the same work, give or take a noisy machine
