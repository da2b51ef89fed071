"""API keys: how they are made, stored, checked and revoked.

A key reads `vk_<key id>_<secret>`: the key id (12 hex digits) is public and finds the
row; the secret (32 random bytes, base64url) proves possession. The whole key is shown
once, when it is created, and only its SHA-256 is stored.

Why a plain SHA-256 and not a password hash (bcrypt, scrypt, Argon2): those are slow on
purpose, so that guessing a human-chosen password from a stolen hash takes years. A
256-bit random secret cannot be guessed whatever the speed of the hash, so slowness
would buy nothing, and it would cost every API request tens of milliseconds of CPU and
make the key check a lever for exhausting the server. Hashes are compared with
`hmac.compare_digest`, whose time does not depend on where two values differ.

Functions take keyword arguments, work in the caller's session and leave committing to
the caller, except `authenticate`, which records when a key was last used.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from cloud.auth.models import ApiKey, Role

KEY_PREFIX = "vk"
#: 48 bits: enough that ids of one deployment never collide in practice (a collision is
#: caught anyway), short enough to read out in a listing.
KEY_ID_BYTES = 6
#: 256 bits of randomness: what makes a fast hash safe to store (see the module docstring).
SECRET_BYTES = 32
KEY_PATTERN = re.compile(r"^vk_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
#: The last-used time is written at most this often per key: a busy app key would
#: otherwise turn every read into a write on one hot row, and a minute is fine enough
#: to tell a key in use from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: Creating a key retries this many times should a random key id already exist.
KEY_ID_ATTEMPTS = 3


class AuthenticationError(Exception):
    """A key that does not authenticate. `reason` is for logs and metrics (missing,
    malformed, unknown, mismatch, revoked); `str(error)` is what the caller is told,
    and it never says which of unknown or mismatch it was."""

    def __init__(self, reason: str, message: str = "invalid API key") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its role, and its tenant (None for an operator)."""

    key_id: str
    role: Role
    tenant: str | None


def generate_key() -> str:
    """A new key; nothing is stored (`create_key` stores its hash)."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    return f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def key_id_of(key: str) -> str | None:
    """The key id of a well-formed key, None for anything else."""
    match = KEY_PATTERN.fullmatch(key)
    return match.group("key_id") if match else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_role_and_tenant(role: Role, tenant: str | None) -> None:
    """Operator keys belong to no tenant; admin and app keys to exactly one."""
    if (role is Role.OPERATOR) != (tenant is None):
        raise ValueError(
            "an operator key belongs to no tenant" if role is Role.OPERATOR
            else f"an {role.value} key needs a tenant"
        )


def create_key(
    session: Session, *, role: Role, tenant: str | None, name: str = "", created_by: str,
    now: datetime,
) -> tuple[ApiKey, str]:
    """Store a new key and return its row and the key (to be shown once, then forgotten)."""
    check_role_and_tenant(role, tenant)
    for _ in range(KEY_ID_ATTEMPTS):
        key = generate_key()
        key_id = key_id_of(key)
        assert key_id is not None
        if find_key(session, key_id=key_id) is None:
            break
    else:  # pragma: no cover - 48 random bits colliding three times running
        raise RuntimeError("could not draw an unused key id")
    row = ApiKey(
        key_id=key_id, tenant=tenant, role=role, name=name, secret_hash=hash_key(key),
        created_at=now, created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row, key


def find_key(session: Session, *, key_id: str) -> ApiKey | None:
    return session.exec(select(ApiKey).where(ApiKey.key_id == key_id)).first()


def list_keys(session: Session, *, tenant: str | None = None) -> Sequence[ApiKey]:
    """Keys of `tenant`, or every key (operator keys included) when `tenant` is None;
    oldest first, revoked ones too (they are the record of who had access)."""
    query = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    return session.exec(query).all()


def revoke_key(
    session: Session, *, key_id: str, now: datetime, tenant: str | None = None
) -> ApiKey | None:
    """Revoke a key (of `tenant`, when given); None if there is no such key. Revoking
    twice keeps the first time."""
    row = find_key(session, key_id=key_id)
    if row is None or (tenant is not None and row.tenant != tenant):
        return None
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.flush()
    return row


def authenticate(
    session: Session, *, key: str, now: datetime, operator_key_hash: str | None = None
) -> Principal:
    """The principal a presented key stands for, or AuthenticationError.

    `operator_key_hash` is the deployment's bootstrap key from settings, checked before
    the table so that a fresh database can be given its first keys. A stored key's
    last-used time is committed here (at most once per `LAST_USED_RESOLUTION`).
    """
    key_id = key_id_of(key)
    if key_id is None:
        raise AuthenticationError("malformed")
    digest = hash_key(key)
    if operator_key_hash is not None and hmac.compare_digest(digest, operator_key_hash):
        return Principal(key_id=key_id, role=Role.OPERATOR, tenant=None)
    row = find_key(session, key_id=key_id)
    if row is None:
        raise AuthenticationError("unknown")
    if not hmac.compare_digest(digest, row.secret_hash):
        raise AuthenticationError("mismatch")
    # Told only to a caller who holds the real key: it helps them, and reveals nothing.
    if row.revoked_at is not None:
        raise AuthenticationError("revoked", "API key has been revoked")
    _record_use(session, row=row, now=now)
    return Principal(key_id=row.key_id, role=Role(row.role), tenant=row.tenant)


def _record_use(session: Session, *, row: ApiKey, now: datetime) -> None:
    """One conditional UPDATE: of concurrent requests on one key, one writes and the
    others match nothing (instead of queueing behind each other's row lock to write)."""
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_RESOLUTION:
        return
    session.exec(
        update(ApiKey)
        .where(col(ApiKey.id) == row.id)
        .where(or_(
            col(ApiKey.last_used_at).is_(None),
            col(ApiKey.last_used_at) <= now - LAST_USED_RESOLUTION,
        ))
        .values(last_used_at=now)
    )
    session.commit()
