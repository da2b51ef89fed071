"""What the rest of the orchestrator hands to mobile push, and what it gets back.

The engine decides *that* a customer gets a push; this contract is all it knows
about *how*. The FCM implementation lives beside it (`cloud.channels.fcm`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One notification to one device token."""

    token: str
    title: str
    body: str
    #: Stable per (customer, scenario step): a replayed trigger must not send twice.
    idempotency_key: str
    image_url: str | None = None
    deep_link: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    ttl_s: int = 3600


#: The address is gone for good (app uninstalled, token of another sender, subscription
#: expired): the caller should forget it, not only give up on this message.
DEAD_ADDRESS_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
#: The provider may accept the same message later: worth another try after a wait.
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED", "DEADLINE_EXCEEDED"})


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one message. `permanent` errors (dead token) must not be retried.

    Three kinds of failure: `permanent` (this message can never be delivered to this
    address; `address_dead` says whether to drop the address too), `transient` (retry,
    no sooner than `retry_after_s` if set), and neither (configuration or credentials:
    retrying now is pointless, an operator has to act; the message is still deliverable).
    """

    token: str
    ok: bool
    provider_message_id: str | None = None
    error_code: str | None = None
    permanent: bool = False
    retry_after_s: float | None = None

    @property
    def transient(self) -> bool:
        return not self.ok and not self.permanent and self.error_code in TRANSIENT_CODES

    @property
    def address_dead(self) -> bool:
        return not self.ok and self.error_code in DEAD_ADDRESS_CODES


class PushSender(Protocol):
    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """Send a batch; one result per message, in order. Never raises for a per-token error."""
        ...


class FcmSettings(BaseModel):
    """Firebase Cloud Messaging (HTTP v1) settings.

    `endpoint` replaces https://fcm.googleapis.com for a local FCM-compatible server;
    the OAuth token endpoint comes from the service-account file's `token_uri`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: str = Field(min_length=1)
    credentials_file: str = Field(min_length=1, description="service-account JSON path")
    endpoint: HttpUrl | None = None
    timeout_s: float = Field(default=10.0, gt=0)
