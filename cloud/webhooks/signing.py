"""The signature on every webhook between the shop and Vitrina, both ways.

`X-Vitrina-Timestamp: <unix seconds>` and
`X-Vitrina-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`. The
timestamp is part of what is signed and must be recent, so a captured request cannot be
replayed later; several secrets may be valid at once, so they can be rotated. The shop
signs its events to us this way (`cloud.webhooks.inbound`), and scenario webhooks to the
shop are signed the same way (`cloud.webhooks.outbound`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime

SIGNATURE_HEADER = "X-Vitrina-Signature"
TIMESTAMP_HEADER = "X-Vitrina-Timestamp"
SIGNATURE_VERSION = "v1"
#: Clocks drift and deliveries queue; older than this, a signed request is a replay.
MAX_SIGNATURE_AGE_S = 300


class SignatureError(ValueError):
    """The request is not signed by the shop (or too old); the message says which."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_signature(
    *, secrets: Sequence[str], timestamp: str | None, signature: str | None, body: bytes,
    now: datetime,
) -> None:
    if not secrets:
        raise SignatureError("webhooks are not configured for this tenant (no secret)")
    if not timestamp or not signature:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds") from None
    if abs(now.timestamp() - sent) > MAX_SIGNATURE_AGE_S:
        raise SignatureError(f"signature timestamp is more than {MAX_SIGNATURE_AGE_S}s off")
    offered = [part.strip() for part in signature.split(",")]
    for secret in secrets:
        expected = sign(secret, sent, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise SignatureError("signature does not match")
