"""Builders shared by the send queue's tests: customers with consent and addresses,
queued messages, and reading back what the worker recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from cloud.customers import crud
from cloud.customers.models import (
    ConsentCreate,
    Customer,
    CustomerCreate,
    Device,
    DeviceKind,
    FcmRegistration,
    WebPushKeys,
    WebPushRegistration,
)
from cloud.db import session_scope
from cloud.messages.models import Message, MessageAttempt
from cloud.messages.queue import Outgoing, enqueue
from cloud.messages.tokens import new_tracking_token
from cloud.settings import Settings
from cloud.templates import RenderedEmail, RenderedPush, RenderedText, count_sms
from tests.cloud.factories import cloud_settings

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BASE_URL = "https://vtr.example.com"
SECRET = "test-tracking-secret"


def queue_settings(
    *, tenant: str, database_url: str, channels: dict[str, Any] | None = None,
    **delivery: Any,
) -> Settings:
    return cloud_settings(
        tenant=tenant, database_url=database_url,
        tracking={"public_base_url": BASE_URL, "secret": SECRET},
        delivery={"batch_size": 50, **delivery}, channels=channels or {},
        # the channels' stand-ins listen on this machine: allowed explicitly
        outbound={"allow": ["127.0.0.1/32"]},
    )


def new_customer(
    engine: Engine,
    tenant: str,
    *,
    consent: Iterable[str] = ("push",),
    fcm_tokens: Sequence[str] = (),
    web_push: Sequence[dict[str, Any]] = (),
    email: str | None = None,
    phone: str | None = None,
    external_id: str | None = None,
) -> int:
    """A customer with granted consent on `consent` and the given addresses."""
    with session_scope(engine) as session:
        customer = crud.create_customer(
            session, tenant=tenant, now=NOW,
            data=CustomerCreate(email=email, phone=phone, first_name="Juan",
                                external_id=external_id),
        )
        for channel in consent:
            crud.record_consent(session, customer=customer, now=NOW, data=ConsentCreate(
                channel=channel, granted=True, source="app", given_at=NOW,
            ))
        for token in fcm_tokens:
            crud.register_device(
                session, customer=customer, pseudonymizers=[], now=NOW,
                registration=FcmRegistration(kind=DeviceKind.FCM, token=token),
            )
        for subscription in web_push:
            crud.register_device(
                session, customer=customer, pseudonymizers=[], now=NOW,
                registration=WebPushRegistration(
                    kind=DeviceKind.WEB_PUSH, endpoint=subscription["endpoint"],
                    keys=WebPushKeys(**subscription["keys"]),
                ),
            )
        session.commit()
        assert customer.id is not None
        return customer.id


def withdraw(engine: Engine, customer_id: int, channel: str, *, at: datetime) -> None:
    with session_scope(engine) as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None
        crud.record_consent(session, customer=customer, now=at, data=ConsentCreate(
            channel=channel, granted=False, source="app", given_at=at,
        ))
        session.commit()


def outgoing(
    tenant: str, customer_id: int, key: str, *, channel: str = "push",
    not_before: datetime = NOW, **fields: Any,
) -> Outgoing:
    content: Any
    if channel == "email":
        content = RenderedEmail(
            subject="Your dryer, 20% off",
            html=(
                '<html><body><p>Hi Juan</p><a href="https://shop.example/dryers?a=1&amp;b=2">'
                'See dryers</a> <a href="https://shop.example/dryers?a=1&amp;b=2">again</a> '
                f'<a href="{BASE_URL}/u/{token_for(key)}">Unsubscribe</a></body></html>'
            ),
            text="Hi Juan, see https://shop.example/dryers",
        )
    elif channel == "sms":
        text = f"20% off dryers: {BASE_URL}/c/{token_for(key)}"
        content = RenderedText(text=text, count=count_sms(text))
    else:
        content = RenderedPush(
            channel=channel, title="20% off the dryer", body="Today in store",
            image_url="https://shop.example/dryer.png",
        )
    values: dict[str, Any] = {
        "tenant": tenant, "customer_id": customer_id, "channel": channel, "content": content,
        "idempotency_key": key, "rule": "scenario:test", "not_before": not_before,
        "tracking_token": token_for(key), "target_url": "https://shop.example/dryers",
        "scenario": "cross-sell", "step": "push",
    }
    values.update(fields)
    return Outgoing(**values)


def token_for(key: str) -> str:
    return new_tracking_token(key, SECRET)


def queue(engine: Engine, *messages: Outgoing, now: datetime = NOW) -> list[int | None]:
    with session_scope(engine) as session:
        ids = [enqueue(session, outgoing=message, now=now) for message in messages]
        session.commit()
    return ids


def message(engine: Engine, message_id: int) -> Message:
    with session_scope(engine) as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found


def attempts(engine: Engine, message_id: int) -> list[MessageAttempt]:
    with session_scope(engine) as session:
        return list(session.exec(
            select(MessageAttempt).where(MessageAttempt.message_id == message_id)
            .order_by(col(MessageAttempt.id))
        ).all())


def device(engine: Engine, token: str) -> Device:
    with session_scope(engine) as session:
        found = session.exec(select(Device).where(Device.token == token)).first()
        assert found is not None
        return found


def race(rounds: Sequence[Callable[[], int]]) -> list[int]:
    """Run each worker's `run_once` in its own thread, all starting together, until it
    finds nothing more to do; returns how many items each handled."""
    start = threading.Barrier(len(rounds))
    handled = [0] * len(rounds)

    def drain(index: int) -> None:
        start.wait()
        while (found := rounds[index]()) > 0:
            handled[index] += found

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(rounds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return handled
