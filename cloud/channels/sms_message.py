"""One text to one phone number: what the SMS channel hands its provider."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmsMessage:
    to: str
    body: str
    idempotency_key: str
