"""Keyed pseudonyms: the only form in which a device identity leaves the gateway.

Keyed BLAKE2b (RFC 7693 keyed mode) rather than HMAC-SHA256: it is a proper MAC
on its own, and one call is cheaper than HMAC's two hash passes, which matters
at gateway rates. The digest is truncated to 128 bits and tagged with the key
id, so keys can rotate while old and new pseudonyms stay distinguishable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date

from shared.errors import ContractError

#: 128 bits: collisions stay negligible even across billions of devices.
PSEUDONYM_BYTES = 16
#: BLAKE2b keys are at most 64 bytes; fewer than 16 would be guessable.
MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 64

KEY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
PSEUDONYM_PATTERN = re.compile(r"^([a-z0-9][a-z0-9-]{0,15}):([0-9a-f]{32})$")

_STABLE_PERSON = b"vitrina-stable"
_DAILY_PERSON = b"vitrina-daily"


@dataclass(frozen=True, slots=True)
class TenantKey:
    """One of a tenant's pseudonymization keys. `secret` never goes on the wire."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.fullmatch(self.key_id):
            raise ContractError("key id must be 1-16 characters of a-z, 0-9 and '-'")
        if not MIN_KEY_BYTES <= len(self.secret) <= MAX_KEY_BYTES:
            raise ContractError(
                f"key {self.key_id!r} must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes long"
            )

    @classmethod
    def from_text(cls, key_id: str, secret_text: str) -> TenantKey:
        """Build from a secret written as hex or base64 (as it appears in config files)."""
        text = secret_text.strip()
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            try:
                secret = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ContractError(f"key {key_id!r} is neither hex nor base64") from None
        return cls(key_id=key_id, secret=secret)


class Pseudonymizer:
    """Turns canonical identifiers into `key_id:hex` pseudonyms under one tenant key.

    The keyed hash states are built once and copied per call: copying a primed
    BLAKE2b state is several times cheaper than re-keying.
    """

    __slots__ = ("_daily", "_stable", "key_id")

    def __init__(self, key: TenantKey) -> None:
        self.key_id = key.key_id
        self._stable = hashlib.blake2b(
            key=key.secret, digest_size=PSEUDONYM_BYTES, person=_STABLE_PERSON
        )
        self._daily = hashlib.blake2b(
            key=key.secret, digest_size=PSEUDONYM_BYTES, person=_DAILY_PERSON
        )

    def stable(self, canonical: str) -> str:
        """Pseudonym that stays the same for as long as the key does (linkable)."""
        state = self._stable.copy()
        state.update(canonical.encode())
        return f"{self.key_id}:{state.hexdigest()}"

    def daily(self, canonical: str, day: date) -> str:
        """Pseudonym that changes every day: for randomized and non-customer devices."""
        state = self._daily.copy()
        state.update(day.isoformat().encode())
        state.update(b"|")
        state.update(canonical.encode())
        return f"{self.key_id}:{state.hexdigest()}"


def split_pseudonym(pseudonym: str) -> tuple[str, str]:
    """Return (key_id, digest) of a pseudonym; ContractError if it is malformed."""
    match = PSEUDONYM_PATTERN.fullmatch(pseudonym)
    if match is None:
        raise ContractError("pseudonym must be '<key id>:<32 hex digits>'")
    return match.group(1), match.group(2)
