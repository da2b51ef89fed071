"""Why a message is not (yet) out, in words: held for quiet hours, suppressed for want of
consent, expired, failed, or waiting for its channel to be configured.

A message row keeps its status and a code (`error_code`, `not_before`); the API answers
with both the code and a sentence (`Reason`), so that a developer looking at a message
that never arrived reads why without knowing the codes, and a program can still act on
the code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cloud.customers.consent import NO_CONSENT, NO_LOCATION_CONSENT, REFUSED
from cloud.messages.models import Message, MessageStatus, Reason

#: Why a message waits in the queue: nothing sends its channel on this deployment.
CHANNEL_NOT_CONFIGURED = "NOT_CONFIGURED"
#: Why a message is held: the customer's quiet hours (the one thing that holds a send).
QUIET_HOURS = "quiet_hours"
#: Failed because the customer has no address on the channel (no device, no email...).
NO_ADDRESS = "no_address"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "later"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_SUPPRESSED: dict[str, Callable[[Message], str]] = {
    NO_CONSENT: lambda message: (
        f"suppressed: the customer's latest consent answer on {message.channel} is not a yes "
        "(checked again when the message was due)"),
    NO_LOCATION_CONSENT: lambda message: (
        "suppressed: a store visit or a geofence started it, and the customer has not "
        "granted location_marketing"),
    REFUSED: lambda message: (
        f"suppressed: the customer said no on {message.channel} after this request began"),
}


def message_reason(message: Message) -> Reason | None:
    """Why `message` is where it is; None for one that went out (or is simply due)."""
    status, code = message.status, message.error_code
    if status == MessageStatus.HELD:
        return Reason(code=QUIET_HOURS, text=(
            "held for the customer's quiet hours (not dropped): it goes out at "
            f"{_when(message.not_before)}"))
    if status == MessageStatus.SUPPRESSED:
        describe = _SUPPRESSED.get(code or "")
        text = describe(message) if describe else f"suppressed ({code})"
        return Reason(code=code or "suppressed", text=text)
    if status == MessageStatus.EXPIRED:
        return Reason(code="expired", text=(
            f"expired at {_when(message.expires_at)} before it could be sent"))
    if status == MessageStatus.FAILED:
        return _failed(message)
    if status == MessageStatus.PENDING and code == CHANNEL_NOT_CONFIGURED:
        return Reason(code=code, text=(
            f"waiting: the {message.channel} channel is not configured on this deployment "
            "(see the orchestrator's start-up log); tried again until it is or the message "
            "expires"))
    if status == MessageStatus.PENDING and code:
        return Reason(code=code, text=(
            f"waiting to be tried again after a failed attempt ({code}), from "
            f"{_when(message.next_attempt_at)}"))
    return None


def _failed(message: Message) -> Reason:
    code = message.error_code or "failed"
    if code == NO_ADDRESS:
        return Reason(code=code, text=(
            f"failed: the customer has no active address on {message.channel} (no device "
            "registered, or the profile field is empty)"))
    if code.startswith("gave_up:"):
        return Reason(code=code, text=(
            f"failed: given up after {message.attempts} attempts ({code.split(':', 1)[1]})"))
    return Reason(code=code, text=f"failed: the provider refused it for good ({code})")
