"""VAPID keys (RFC 8292): one P-256 key pair per tenant, identifying its web push sender.

Browsers bind a push subscription to the `applicationServerKey` given at subscribe time,
so a tenant's key must outlive every subscription made with it: generate once, store,
reuse. These are plain functions over key material or a file path; where the key lives
(file, database column, secret store) is the caller's choice.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class VapidKeyError(ValueError):
    """The key material is not a P-256 private key."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class VapidKeys:
    #: PKCS#8 PEM of the private key; kept out of repr so it never lands in a log line.
    private_pem: bytes = field(repr=False)
    #: The public key as browsers want it for `applicationServerKey`: base64url of the
    #: uncompressed P-256 point (65 bytes).
    application_server_key: str


def _from_private_key(key: ec.EllipticCurvePrivateKey) -> VapidKeys:
    if not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError(f"VAPID keys are P-256, got {key.curve.name}")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return VapidKeys(private_pem=pem, application_server_key=b64url(point))


def generate_vapid_keys() -> VapidKeys:
    return _from_private_key(ec.generate_private_key(ec.SECP256R1()))


def vapid_keys_from_pem(pem: bytes | str) -> VapidKeys:
    """Rebuild the keys from stored PEM; raises VapidKeyError for anything but P-256."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise VapidKeyError(f"not a PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise VapidKeyError(f"VAPID keys are EC P-256, got {type(key).__name__}")
    return _from_private_key(key)


def save_vapid_keys(keys: VapidKeys, path: str | Path) -> Path:
    """Write the private key PEM atomically, readable by the owner only."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(keys.private_pem)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_vapid_keys(path: str | Path) -> VapidKeys:
    return vapid_keys_from_pem(Path(path).read_bytes())


def load_or_create_vapid_keys(path: str | Path) -> VapidKeys:
    """The tenant's keys from `path`, generated and saved on first use."""
    target = Path(path)
    if target.exists():
        return load_vapid_keys(target)
    keys = generate_vapid_keys()
    save_vapid_keys(keys, target)
    return keys
