"""VAPID keys: generated once, stored, reloaded identically."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cloud.channels.vapid import (
    VapidKeyError,
    b64url_decode,
    generate_vapid_keys,
    load_or_create_vapid_keys,
    load_vapid_keys,
    save_vapid_keys,
    vapid_keys_from_pem,
)


def test_application_server_key_is_the_uncompressed_p256_point() -> None:
    keys = generate_vapid_keys()

    point = b64url_decode(keys.application_server_key)

    assert len(point) == 65
    assert point[0] == 4
    assert "=" not in keys.application_server_key
    assert "PRIVATE" not in repr(keys)


def test_save_and_load_round_trip_owner_only(tmp_path: Path) -> None:
    keys = generate_vapid_keys()

    path = save_vapid_keys(keys, tmp_path / "tenant-a" / "vapid.pem")

    assert path.stat().st_mode & 0o777 == 0o600
    assert load_vapid_keys(path) == keys
    assert vapid_keys_from_pem(keys.private_pem.decode()) == keys


def test_load_or_create_makes_the_key_once(tmp_path: Path) -> None:
    path = tmp_path / "vapid.pem"

    first = load_or_create_vapid_keys(path)
    second = load_or_create_vapid_keys(path)

    assert first == second
    assert list(tmp_path.iterdir()) == [path]


def test_other_key_kinds_are_refused() -> None:
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    p384_pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    with pytest.raises(VapidKeyError, match="EC P-256"):
        vapid_keys_from_pem(rsa_pem)
    with pytest.raises(VapidKeyError, match="P-256, got secp384r1"):
        vapid_keys_from_pem(p384_pem)
    with pytest.raises(VapidKeyError, match="not a PEM"):
        vapid_keys_from_pem(b"garbage")
