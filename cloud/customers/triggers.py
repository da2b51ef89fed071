"""What customers do through the API that scenarios react to: signing up, and
subscribing a device to push or web push."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from cloud.customers.models import DeviceKind
from cloud.triggers import TriggerKind, record_trigger

SUBSCRIPTION_KINDS: dict[DeviceKind, TriggerKind] = {
    DeviceKind.FCM: TriggerKind.PUSH_SUBSCRIBED,
    DeviceKind.WEB_PUSH: TriggerKind.WEB_PUSH_SUBSCRIBED,
}


def record_signup(session: Session, *, tenant: str, customer_id: int, now: datetime) -> None:
    record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.CUSTOMER_SIGNUP,
        occurred_at=now, source_key=f"signup:{customer_id}", now=now,
    )


def record_subscription(
    session: Session, *, tenant: str, customer_id: int, device_id: int, kind: DeviceKind,
    now: datetime,
) -> None:
    """A new (or renewed) push or web push subscription: "accepts web push" scenarios."""
    trigger_kind = SUBSCRIPTION_KINDS.get(kind)
    if trigger_kind is not None:
        record_trigger(
            session, tenant=tenant, customer_id=customer_id, kind=trigger_kind,
            occurred_at=now, source_key=f"subscribed:{device_id}:{now.isoformat()}", now=now,
            attributes={"device_id": device_id},
        )
