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
#: Unix seconds have 10 digits until the year 2286; longer is no timestamp of ours.
MAX_TIMESTAMP_CHARS = 12
#: Signatures offered at once (one per secret being rotated); more are not looked at.
MAX_SIGNATURES = 8


class SignatureError(ValueError):
    """The request is not signed by the shop (or too old); the message says which."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return _signature(secret, str(timestamp), body)


def _signature(secret: str, timestamp: str, body: bytes) -> str:
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
    if len(timestamp) > MAX_TIMESTAMP_CHARS or not (timestamp.isascii() and timestamp.isdigit()):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds")
    # The signature is checked on the timestamp's text as sent, before it is read as a
    # number: nothing a stranger sends is parsed beyond the look of its digits.
    # Compared as bytes: a header may carry any character, which compare_digest refuses
    # to compare as text.
    offered = [part.strip().encode("utf-8", "replace")
               for part in signature.split(",", MAX_SIGNATURES)]
    if not any(
        hmac.compare_digest(_signature(secret, timestamp, body).encode(), candidate)
        for secret in secrets for candidate in offered
    ):
        raise SignatureError("signature does not match")
    if abs(int(now.timestamp()) - int(timestamp)) > MAX_SIGNATURE_AGE_S:
        raise SignatureError(f"signature timestamp is more than {MAX_SIGNATURE_AGE_S}s off")
