"""Tracking tokens and the short links built from them.

Every queued message gets one token: a keyed hash of its idempotency key, so the same
decision always gets the same token (a replayed send links to the same row), and nobody
without the secret can guess another customer's token from theirs. The token is the only
thing in a tracked URL: it names the message, and the message holds where to go.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

#: 12 bytes = 96 bits: far beyond guessing (even at a billion tries a second), and only
#: 16 characters, which keeps `link` short enough for an SMS.
TOKEN_BYTES = 12
TOKEN_CHARS = 16
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16}$"
TOKEN_RE = re.compile(TOKEN_PATTERN)
#: `link` is a template field; the template checks assume it is at most this long.
MAX_LINK_CHARS = 60


def new_tracking_token(idempotency_key: str, secret: str | bytes) -> str:
    """A short, URL-safe, unguessable token, the same for the same key and secret."""
    if not idempotency_key:
        raise ValueError("idempotency_key must not be empty")
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the tracking secret must not be empty")
    digest = hmac.new(key, idempotency_key.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).decode()


def _base(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ValueError("the public base URL must be an absolute http(s) URL")
    return base


def _token(token: str) -> str:
    if not TOKEN_RE.fullmatch(token):
        raise ValueError("not a tracking token")
    return token


def tracked_link(base_url: str, token: str) -> str:
    """The click-tracking link for a message: `<base>/c/<token>`, at most 60 characters
    (it is the template's `link` field, printed in SMS texts)."""
    link = f"{_base(base_url)}/c/{_token(token)}"
    if len(link) > MAX_LINK_CHARS:
        raise ValueError(
            f"tracked links must be at most {MAX_LINK_CHARS} characters; the public base URL "
            f"leaves {len(link)}: use a shorter host"
        )
    return link


def email_link(base_url: str, token: str, index: int) -> str:
    """The tracked replacement of an email's `index`-th link."""
    return f"{_base(base_url)}/c/{_token(token)}/{index}"


def open_pixel_url(base_url: str, token: str) -> str:
    return f"{_base(base_url)}/o/{_token(token)}.gif"


def open_report_url(base_url: str, token: str) -> str:
    """Where a web push service worker or an app reports an open (POST, no key needed:
    the token is the capability)."""
    return f"{_base(base_url)}/o/{_token(token)}"


def unsubscribe_url(base_url: str, token: str) -> str:
    """The message's one-click unsubscribe endpoint (RFC 8058), also the template's
    `unsubscribe_url`."""
    return f"{_base(base_url)}/u/{_token(token)}"
