"""Answers that say why: a bad enum value is named by its values, a device registered
without the consent it needs says which, and a held or suppressed message carries its
reason in the message API and in the customer's journeys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.db import make_engine, session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.scenarios.models import Journey, JourneyLog, JourneyStatus
from tests.cloud.factories import MAC_OF, bearer, cloud_settings, customer_number, issue_key

NOW = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
TENANT = "acme"
FCM_TOKEN = "fcm-token-" + "a" * 40


@pytest.fixture(scope="module")
def sqlite_engine(schema_templates: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Engine]:
    """One migrated SQLite database for the module: each test makes its own customer."""
    target = tmp_path_factory.mktemp("answers") / "vitrina.db"
    shutil.copyfile(schema_templates["sqlite"], target)
    engine = make_engine(f"sqlite:///{target}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def admin(sqlite_engine: Engine) -> Iterator[TestClient]:
    settings = cloud_settings(tenant=TENANT, database_url=str(sqlite_engine.url))
    app = create_app(settings, engine=sqlite_engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(sqlite_engine, tenant=TENANT))) as client:
        yield client


def _customer(admin: TestClient) -> str:
    response = admin.post(f"/tenants/{TENANT}/customers", json={"first_name": "Juan"})
    assert response.status_code == 201, response.text
    public_id: str = response.json()["id"]
    return public_id


def test_a_bad_enum_value_is_named_by_the_values_a_client_can_send(admin: TestClient) -> None:
    customer = _customer(admin)
    response = admin.post(f"/tenants/{TENANT}/customers/{customer}/devices",
                          json={"kind": "apns", "token": FCM_TOKEN})
    assert response.status_code == 422
    body = response.json()
    [problem] = body["detail"]
    assert problem["msg"].endswith("'fcm', 'web_push', 'app_beacon', 'wifi_mac'")
    assert "<" not in response.text
    assert "'fcm', 'web_push'" in body["message"]


def test_a_device_without_the_consent_it_needs_says_so(admin: TestClient) -> None:
    customer = _customer(admin)
    url = f"/tenants/{TENANT}/customers/{customer}"
    push = admin.post(f"{url}/devices", json={"kind": "fcm", "token": FCM_TOKEN})
    assert push.status_code == 201, push.text
    [warning] = push.json()["warnings"]
    assert warning["code"] == "missing_consent"
    assert (warning["consent"], warning["answer"]) == ("push", "none")
    assert "no marketing message is sent to this fcm device" in warning["message"]
    admin.post(f"{url}/consent", json={"channel": "location_marketing", "granted": False,
                                       "source": "app"})
    wifi = admin.post(f"{url}/devices", json={"kind": "wifi_mac", "mac": MAC_OF["juan"]})
    [warning] = wifi.json()["warnings"]
    assert (warning["consent"], warning["answer"]) == ("location_marketing", "no")
    assert "said no to location_marketing: store visits" in warning["message"]
    admin.post(f"{url}/consent", json={"channel": "push", "granted": True, "source": "app"})
    again = admin.post(f"{url}/devices", json={"kind": "fcm", "token": FCM_TOKEN})
    assert again.json()["warnings"] == []


def test_held_and_suppressed_messages_say_why(admin: TestClient, sqlite_engine: Engine) -> None:
    customer = _customer(admin)
    number = customer_number(sqlite_engine, tenant=TENANT, public_id=customer)
    opens = NOW + timedelta(hours=11)
    with session_scope(sqlite_engine) as session:
        journey = Journey(tenant=TENANT, scenario_key="visit", scenario_version=1,
                          customer_id=number, entry_key=f"visit:{number}",
                          entry_kind="presence_enter", status=JourneyStatus.RUNNING,
                          started_at=NOW, updated_at=NOW)
        session.add(journey)
        session.flush()
        assert journey.id is not None
        common: dict[str, Any] = {"tenant": TENANT, "customer_id": number, "rule": "scenario:visit",
                  "title": "Hi", "body": "Hi", "created_at": NOW, "journey_id": journey.id}
        session.add(Message(channel="push", idempotency_key="k1", status=MessageStatus.HELD,
                            not_before=opens, step="push", **common))
        session.add(Message(channel="email", idempotency_key="k2", step="mail",
                            status=MessageStatus.SUPPRESSED, error_code="no_consent", **common))
        session.add(Message(channel="sms", idempotency_key="k3", step="text",
                            status=MessageStatus.PENDING, error_code="NOT_CONFIGURED", **common))
        for step, outcome, detail in (("push", "held", f"push, held until {opens.isoformat()}"),
                                      ("mail", "queued", "email"),
                                      ("later", "capped", "push: 3 of 3 per 1 day")):
            session.add(JourneyLog(journey_id=journey.id, customer_id=number, step=step, at=NOW,
                                   outcome=outcome, detail=detail))
        session.commit()
    base = f"/tenants/{TENANT}/customers/{customer}"
    reasons = {message["channel"]: message["reason"]
               for message in admin.get(f"{base}/messages").json()}
    assert reasons["push"]["code"] == "quiet_hours"
    assert reasons["push"]["text"].endswith("it goes out at 2026-11-24 09:00 UTC")
    assert reasons["email"]["code"] == "no_consent"
    assert "latest consent answer on email is not a yes" in reasons["email"]["text"]
    assert reasons["sms"]["code"] == "NOT_CONFIGURED"
    assert "the sms channel is not configured" in reasons["sms"]["text"]
    [journey_detail] = admin.get(f"{base}/journeys").json()
    log = {entry["step"]: entry for entry in journey_detail["log"]}
    assert log["push"]["reason"].startswith("held for the customer's quiet hours, not dropped")
    assert log["mail"]["reason"] is None  # queued: what became of it is under messages
    assert log["later"]["reason"] == ("not sent: a frequency cap is reached (push: 3 of 3 "
                                      "per 1 day)")
    by_step = {message["step"]: message for message in journey_detail["messages"]}
    assert by_step["mail"]["status"] == "suppressed"
    assert by_step["mail"]["reason"]["code"] == "no_consent"
    assert by_step["push"]["reason"]["code"] == "quiet_hours"
