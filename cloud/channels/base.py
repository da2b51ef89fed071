"""What a delivery channel is: one adapter says everything the rest of the orchestrator
needs to know about a way of reaching a customer.

A channel adapter names the channel and says

- which consent the customer must have given for it (`consent`);
- where a customer's address for it comes from (`address`: a field of the customer's
  own row, or the devices they registered of one kind);
- what shape its templates take (`form`) and what they are measured against when an
  admin saves one (`measures`);
- which settings turn it on (`settings_model`, under `[channels.<name>]`);
- how one queued message becomes a payload for one address (`payload`), and who sends
  payloads (`open_sender`), batched up to `max_batch`;
- what the provider's answers mean for the message (`acceptance_is_delivery`, delivery
  receipts that arrive later: `ReceiptChannel`).

The adapters are registered in one place (`cloud.channels.registry`), and nothing else
in the orchestrator decides anything by channel name: adding a channel is a module with
its adapter, and a line there.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, StringConstraints
from sqlalchemy import Engine

from cloud.channels.results import SendResult
from cloud.outbound import OutboundPolicy

#: A channel's name as messages, templates, consents and settings spell it.
CHANNEL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,15}$"
ChannelName = Annotated[str, StringConstraints(pattern=CHANNEL_NAME_PATTERN)]


class ContentForm(StrEnum):
    """The parts a channel's templates have (and its rendered messages carry)."""

    #: A notification: title, body, an image and a deep link.
    NOTIFICATION = "notification"
    #: An email: subject, HTML and a text part.
    EMAIL = "email"
    #: A text: one part of plain text.
    TEXT = "text"


class TemplateMeasure(StrEnum):
    """What a channel's templates are measured against, at their longest, when saved."""

    #: The title and body lengths a notification shows (the tenant's push limits).
    NOTIFICATION_CHARS = "notification_chars"
    #: The bytes a web push payload may carry before encryption.
    WEB_PUSH_BYTES = "web_push_bytes"
    #: The SMS segments a text may take (and numbers formatted for GSM-7).
    SMS_SEGMENTS = "sms_segments"


@dataclass(frozen=True, slots=True)
class ProfileAddress:
    """The address is a field of the customer's own row."""

    field: Literal["email", "phone"]


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """The addresses are the customer's active devices of one kind (a message goes to
    each, and counts as sent when any of them takes it)."""

    kind: str


AddressSource = ProfileAddress | DeviceAddress


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address of one message: an email address or phone number, or a device's
    token or push endpoint with its keys."""

    address: str
    device_id: int | None = None
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """A claimed message as a channel sees it: what was decided and rendered when it was
    queued, and the tracked links it is sent with (None: it has no tracking token)."""

    message_id: int
    tenant: str
    idempotency_key: str
    #: The readable summary (push title, email subject) and body.
    title: str
    body: str
    #: The rendered parts as stored (`cloud.messages.content`).
    content: Mapping[str, Any]
    #: How long the provider should keep trying to deliver it.
    ttl_s: int
    links: TrackedLinks | None

    def data(self) -> dict[str, str]:
        """Key/values for the app or service worker: the queued data, the message id and
        where to report an open."""
        data = {str(key): str(value) for key, value in dict(self.content.get("data") or {}).items()}
        data["message_id"] = str(self.message_id)
        if self.links is not None:
            data["open_url"] = self.links.open_report
        return data

    def part(self, name: str, default: str) -> str:
        value = self.content.get(name)
        return default if value is None else str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackedLinks:
    """A message's tracking addresses (`cloud.messages.tokens`)."""

    #: Where the message's own link goes through; None when it links nowhere.
    click: str | None
    #: Where an app or service worker reports an open (POST).
    open_report: str
    #: An email's open pixel.
    open_pixel: str
    #: One-click unsubscribe (RFC 8058).
    unsubscribe: str
    #: The tracked replacement of each link stored with an email, in order.
    email_links: Sequence[str] = ()


class UnsendableError(Exception):
    """This message can never be sent as stored (retrying cannot help): failed for good
    with `code`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class SenderEnvironment:
    """What opening a sender may use besides its channel's settings."""

    engine: Engine
    #: Where customers reach this API (tracked links, receipt callbacks).
    public_base_url: str
    now: Callable[[], datetime]
    #: Where a sender may send when the address comes from a tenant or an app (a Web
    #: Push endpoint): `outbound.policy()` of the settings.
    outbound: OutboundPolicy


P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)
S = TypeVar("S", bound=BaseModel)


class ChannelSender(Protocol[P_contra]):
    def deliver(self, tenant: str, payloads: Sequence[P_contra]) -> list[SendResult]:
        """One result per payload, in order; never raises for a per-address error."""
        ...

    def close(self) -> None: ...


class DeploymentSender(Generic[P]):
    """A channel sender whose provider account is the deployment's, whatever the tenant
    (FCM's project, the SMTP relay, the SMS account): it sends every tenant's batch the
    same way."""

    def __init__(
        self, deliver: Callable[[Sequence[P]], list[SendResult]],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._deliver, self._close = deliver, close

    def deliver(self, tenant: str, payloads: Sequence[P]) -> list[SendResult]:
        return self._deliver(payloads)

    def close(self) -> None:
        self._close()


@dataclass(frozen=True, slots=True)
class CapDefault:
    """A channel's default frequency cap: at most `max` marketing messages per `per`."""

    max: int
    per: timedelta


class ChannelAdapter(abc.ABC, Generic[S, P]):
    """One delivery channel (see the module docstring). Subclasses set the class
    attributes and implement `payload` and `open_sender`."""

    name: str
    #: The consent kind a marketing message on this channel needs.
    consent: str
    #: The provider recorded on every attempt.
    provider: str
    form: ContentForm
    measures: frozenset[TemplateMeasure] = frozenset()
    address: AddressSource
    settings_model: type[S]
    #: Payloads per provider call.
    max_batch: int = 500
    #: The provider's acceptance means the message reached the device (no receipt comes).
    acceptance_is_delivery: bool = False
    #: Every message carries a one-click unsubscribe link, which must be https.
    needs_https_links: bool = False
    #: The frequency cap applied unless the tenant's settings say otherwise.
    default_cap: CapDefault | None = None
    #: What customers miss while the channel has no settings: said at start-up and in
    #: the configuration reference.
    unconfigured: str = "messages on it are not sent"

    @abc.abstractmethod
    def payload(self, outbound: Outbound, recipient: Recipient) -> P | None:
        """The payload for one address; None when this address cannot take it. Raises
        `UnsendableError` when the message itself can never be sent."""

    @abc.abstractmethod
    def open_sender(self, settings: S, environment: SenderEnvironment) -> ChannelSender[P]:
        """A sender for these settings; the caller closes it."""


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """A provider's later word on a message it accepted."""

    provider_message_id: str
    #: queued, sending, sent, delivered, undelivered, failed.
    status: str
    error_code: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_RECEIPT_STATUSES

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


#: Receipt statuses after which no other receipt follows.
FINAL_RECEIPT_STATUSES = frozenset({"delivered", "undelivered", "failed"})


class InvalidReceiptError(ValueError):
    """The callback is not a genuine, well-formed delivery receipt."""


class ReceiptChannel(abc.ABC, Generic[S]):
    """A channel whose provider posts delivery receipts later, to
    `/receipts/<channel>`."""

    #: The request header that carries the provider's signature of a receipt.
    signature_header: str

    @abc.abstractmethod
    def receipt_url(self, settings: S, public_base_url: str) -> str:
        """The URL the provider was given (and signs receipts with)."""

    @abc.abstractmethod
    def parse_receipt(
        self, settings: S, *, url: str, form: Mapping[str, str], signature: str
    ) -> DeliveryReceipt:
        """Check and parse a receipt callback; raises InvalidReceiptError."""
