"""Before sending: what a round's claimed messages go to, and as what.

The round reads, in the transaction that claims its messages, only what their channels
need: each customer's latest consent answers, their rows for channels addressed from
the customer's own fields (email, phone), their active devices for channels addressed to
devices (FCM tokens, web push subscriptions). Then, with no transaction open, each
message becomes an `Outbound` (what was queued, with its tracked links) and one payload
per address, built by the message's channel adapter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from cloud.bulk import one_of
from cloud.channels import (
    ChannelAdapter,
    DeviceAddress,
    Outbound,
    ProfileAddress,
    Recipient,
    TrackedLinks,
    UnknownChannelError,
    adapter_for,
)
from cloud.customers.consent import Answer, latest_answers
from cloud.customers.models import Customer, Device
from cloud.messages.models import Message
from cloud.messages.tokens import (
    email_link,
    open_pixel_url,
    open_report_url,
    tracked_link,
    unsubscribe_url,
)

#: A push nobody set an expiry for is still worth showing within a day, not after.
DEFAULT_TTL = timedelta(hours=24)
#: Push services need a TTL of at least a little: a message about to expire still gets
#: this long.
MIN_TTL = timedelta(minutes=1)
#: Providers keep an undelivered message at most four weeks (FCM, APNs).
MAX_TTL = timedelta(days=28)


@dataclass(frozen=True, slots=True)
class RoundReads:
    """What the send-time checks and addresses of a round's messages read."""

    answers: dict[tuple[int, str], Answer]
    customers: dict[int, Customer]
    #: Active devices by (customer, device kind), oldest first.
    devices: dict[tuple[int, str], list[Device]]

    @classmethod
    def load(cls, session: Session, messages: Collection[Message]) -> RoundReads:
        if not messages:
            return cls({}, {}, {})
        profile_addressed: set[int] = set()
        device_kinds: set[str] = set()
        device_owners: set[int] = set()
        for message in messages:
            address = _address(message.channel)
            if isinstance(address, ProfileAddress):
                profile_addressed.add(message.customer_id)
            elif isinstance(address, DeviceAddress):
                device_kinds.add(address.kind)
                device_owners.add(message.customer_id)
        return cls(
            answers=latest_answers(session, sorted({m.customer_id for m in messages})),
            customers=_customers(session, sorted(profile_addressed)),
            devices=_devices(session, sorted(device_owners), sorted(device_kinds)),
        )

    def recipients(self, message: Message, adapter: ChannelAdapter[Any, Any]) -> list[Recipient]:
        """The message's addresses on its channel, as they are now."""
        address = adapter.address
        if isinstance(address, ProfileAddress):
            customer = self.customers.get(message.customer_id)
            value = getattr(customer, address.field, None) if customer is not None else None
            return [Recipient(address=str(value))] if value else []
        return [
            Recipient(address=device.token, device_id=device.id, keys=_keys(device))
            for device in self.devices.get((message.customer_id, address.kind), [])
            if device.token
        ]


def outbound(message: Message, *, base_url: str, now: datetime) -> Outbound:
    """The claimed message as its channel sees it."""
    assert message.id is not None
    return Outbound(
        message_id=message.id, tenant=message.tenant,
        idempotency_key=message.idempotency_key, title=message.title, body=message.body,
        content=message.content, ttl_s=ttl_s(message, now),
        links=tracked_links(message, base_url=base_url),
    )


def tracked_links(message: Message, *, base_url: str) -> TrackedLinks | None:
    """The message's tracking addresses; None when it has no tracking token."""
    token = message.tracking_token
    if not token:
        return None
    stored = message.content.get("links") or []
    return TrackedLinks(
        click=tracked_link(base_url, token) if message.target_url else None,
        open_report=open_report_url(base_url, token),
        open_pixel=open_pixel_url(base_url, token),
        unsubscribe=unsubscribe_url(base_url, token),
        email_links=[email_link(base_url, token, index) for index in range(len(stored))],
    )


def ttl_s(message: Message, now: datetime) -> int:
    """How long the provider should keep trying: until the message expires (at least a
    minute), a day when nobody set an expiry, never past what providers keep."""
    left = DEFAULT_TTL if message.expires_at is None else message.expires_at - now
    return int(min(max(left, MIN_TTL), MAX_TTL).total_seconds())


def _address(channel: str) -> ProfileAddress | DeviceAddress | None:
    try:
        return adapter_for(channel).address
    except UnknownChannelError:
        return None


def _keys(device: Device) -> dict[str, str]:
    keys = {"p256dh": device.web_push_p256dh, "auth": device.web_push_auth}
    return {name: value for name, value in keys.items() if value}


def _customers(session: Session, ids: Sequence[int]) -> dict[int, Customer]:
    if not ids:
        return {}
    rows = session.exec(select(Customer).where(one_of(session, Customer.id, ids))).all()
    return {row.id: row for row in rows if row.id is not None}


def _devices(
    session: Session, ids: Sequence[int], kinds: Sequence[str]
) -> dict[tuple[int, str], list[Device]]:
    if not ids:
        return {}
    rows = session.exec(
        select(Device).where(
            one_of(session, Device.customer_id, ids), col(Device.active),
            col(Device.kind).in_(kinds),
        ).order_by(col(Device.id))
    ).all()
    found: dict[tuple[int, str], list[Device]] = {}
    for device in rows:
        found.setdefault((device.customer_id, str(device.kind)), []).append(device)
    return found
