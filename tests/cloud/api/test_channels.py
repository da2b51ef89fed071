"""What channels' providers call: delivery receipts, at /receipts/{channel} and at the
address an earlier release gave SMS providers (/sms/receipts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from cloud.api import create_app
from cloud.channels.twilio import twilio_signature
from cloud.db import session_scope
from cloud.delivery.receipts import KeptReceipt
from tests.cloud.delivery.queue_helpers import BASE_URL, NOW, queue_settings

ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-auth-token"
SMS = {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": "+34600000000"}


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    settings = queue_settings(tenant=tenant, database_url=migrated_url, channels={"sms": SMS})
    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as test_client:
        yield test_client


def receipt(sid: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT, "MessageSid": sid, "MessageStatus": "delivered"}


def post(client: TestClient, path: str, form: dict[str, str], signed_for: str) -> int:
    signature = twilio_signature(TOKEN, f"{BASE_URL}{signed_for}", form)
    answer = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    return int(answer.status_code)


def test_receipts_are_checked_against_the_address_the_provider_was_given(
    client: TestClient, engine: Engine
) -> None:
    assert post(client, "/receipts/sms", receipt("SM1"), "/receipts/sms") == 204
    # Texts an earlier release sent report to its address, signed for that address.
    assert post(client, "/sms/receipts", receipt("SM2"), "/sms/receipts") == 204
    assert post(client, "/receipts/sms", receipt("SM3"), "/sms/receipts") == 403
    assert post(client, "/sms/receipts", receipt("SM4"), "/receipts/sms") == 403
    with session_scope(engine) as session:
        kept = sorted(row.provider_message_id for row in session.exec(select(KeptReceipt)))
    assert kept == ["SM1", "SM2"]  # kept until their texts are recorded


def test_only_a_configured_channel_with_receipts_takes_them(
    engine: Engine, migrated_url: str, tenant: str, client: TestClient
) -> None:
    for path in ("/receipts/push", "/receipts/pigeon"):
        answer = client.post(path, data=receipt("SM9"))
        assert answer.status_code == 404, path
    unconfigured = create_app(queue_settings(tenant=tenant, database_url=migrated_url),
                              engine=engine, now=lambda: NOW)
    with TestClient(unconfigured) as other:
        assert post(other, "/receipts/sms", receipt("SM9"), "/receipts/sms") == 404
