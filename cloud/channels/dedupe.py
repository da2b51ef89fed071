"""Identifiers that let a device drop or replace a message sent twice."""

from __future__ import annotations

import hashlib

#: APNs collapse ids and Web Push topics are capped at 64 and 32 characters; 32 hex digits
#: fit both and still make collisions between a customer's messages negligible.
COLLAPSE_ID_HEX = 32


def collapse_id(idempotency_key: str) -> str:
    """A short stable id from the idempotency key: a replayed send replaces, not duplicates."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:COLLAPSE_ID_HEX]
