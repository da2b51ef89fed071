"""A channel is one adapter registered in one place: a channel only this test knows is
accepted everywhere a channel is (consent, templates, scenarios, caps, settings) and
delivered by the worker through its own sender, with nothing else changed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine
from sqlmodel import select

from cloud.api import create_app
from cloud.channels import (
    CapDefault,
    ChannelAdapter,
    ContentForm,
    DeviceAddress,
    Outbound,
    ProfileAddress,
    Recipient,
    SenderEnvironment,
    SendResult,
    adapters,
    register,
    unregister,
)
from cloud.customers.models import DeviceKind
from cloud.db import session_scope
from cloud.delivery.worker import delivery_worker
from cloud.messages.models import Message, MessageAttempt, MessageStatus
from cloud.scenarios.catalog import Catalog
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.settings import ScenarioSettings, Settings
from tests.cloud.factories import bearer, cloud_settings, issue_key

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CHAT = "chat"


class ChatSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    to: str
    text: str
    idempotency_key: str


class ChatProvider:
    """The chat service this channel sends to: it keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, ChatMessage]] = []

    def deliver(self, tenant: str, payloads: Sequence[ChatMessage]) -> list[SendResult]:
        first = len(self.received) + 1
        self.received.extend((tenant, payload) for payload in payloads)
        return [SendResult(token=payload.to, ok=True, provider_message_id=f"chat-{n}")
                for n, payload in enumerate(payloads, start=first)]

    def close(self) -> None:
        """Nothing to close."""


class ChatChannel(ChannelAdapter[ChatSettings, ChatMessage]):
    """Texts to the customer's phone number over a chat service."""

    name = CHAT
    consent = CHAT
    provider = "chat"
    form = ContentForm.TEXT
    address = ProfileAddress("phone")
    settings_model = ChatSettings
    default_cap = CapDefault(max=5, per=timedelta(days=1))

    def __init__(self) -> None:
        self.provider_side = ChatProvider()

    def payload(self, outbound: Outbound, recipient: Recipient) -> ChatMessage | None:
        return ChatMessage(to=recipient.address, text=outbound.part("text", outbound.body),
                           idempotency_key=outbound.idempotency_key)

    def open_sender(self, settings: ChatSettings, environment: SenderEnvironment) -> ChatProvider:
        return self.provider_side


@pytest.fixture
def chat() -> Iterator[ChatChannel]:
    adapter = ChatChannel()
    register(adapter)
    try:
        yield adapter
    finally:
        unregister(CHAT)


def settings_with_chat(tenant: str, database_url: str) -> Settings:
    return cloud_settings(tenant=tenant, database_url=database_url,
                          channels={CHAT: {"account": "shop-account"}},
                          scenarios={"quiet_hours": None})


def test_a_registered_channel_is_configured_capped_and_then_forgotten(chat: ChatChannel) -> None:
    settings = settings_with_chat("shop", "sqlite://")
    assert settings.channel_settings(chat) == ChatSettings(account="shop-account")
    assert ScenarioSettings().channel_caps[CHAT].max == 5
    unregister(CHAT)
    with pytest.raises(ValidationError, match="unknown channel 'chat'"):
        settings_with_chat("shop", "sqlite://")


def test_a_channel_only_this_test_knows_goes_from_consent_to_delivery(
    chat: ChatChannel, engine: Engine, migrated_url: str, tenant: str
) -> None:
    settings = settings_with_chat(tenant, migrated_url)
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as client:
        saved = client.put(f"/tenants/{tenant}/templates/hello/{CHAT}/en-GB",
                           json={"parts": {"text": "Hi {{ customer.first_name }}!"}})
        assert saved.status_code in (200, 201), saved.text
        scenario = {
            "key": "hello-chat", "name": "Greet on chat", "entry": {"event": "customer.signup"},
            "steps": [{"id": "hi", "type": "send", "channels": [CHAT], "template": "hello"}],
        }
        saved = client.put(f"/tenants/{tenant}/scenarios/hello-chat", json=scenario)
        assert saved.status_code in (200, 201), saved.text
        created = client.post(f"/tenants/{tenant}/customers",
                              json={"first_name": "Ana", "phone": "+34600000001"})
        assert created.status_code == 201, created.text
        customer = created.json()["id"]
        consent = client.post(f"/tenants/{tenant}/customers/{customer}/consent",
                              json={"channel": CHAT, "granted": True, "source": "app"})
        assert consent.status_code == 201, consent.text

    config = EngineConfig(settings=settings.scenarios,
                          links=Links(base_url="https://t.example", secret="s" * 32))
    with session_scope(engine) as session:
        report = process_triggers(session, catalog=Catalog(), config=config, now=NOW, limit=10)
        session.commit()
    assert len(report.queued) == 1
    with delivery_worker(settings, engine=engine, now=lambda: NOW) as worker:
        assert worker.run_once(NOW) == 1

    [(to_tenant, sent)] = chat.provider_side.received
    assert (to_tenant, sent.to, sent.text) == (tenant, "+34600000001", "Hi Ana!")
    with session_scope(engine) as session:
        message = session.exec(select(Message)).one()
        attempt = session.exec(select(MessageAttempt)).one()
    assert (message.channel, message.status) == (CHAT, MessageStatus.SENT)
    assert (attempt.provider, attempt.provider_message_id) == ("chat", "chat-1")


def test_the_built_in_channels_address_devices_of_kinds_customers_register() -> None:
    kinds = {kind.value for kind in DeviceKind}
    addressed = {adapter.name: adapter.address for adapter in adapters()}
    assert {name for name, address in addressed.items() if isinstance(address, DeviceAddress)
            and address.kind in kinds} == {"push", "web_push"}
    assert {name for name, address in addressed.items()
            if isinstance(address, ProfileAddress)} == {"email", "sms"}
