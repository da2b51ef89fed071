"""The back office names customers as every other view does, by their public id
(`cus_...`), never by the database's number: a customer's messages and journeys here;
an offer's coupons and the map's recent fixes in test_offers.py and test_places.py."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from cloud.api import create_app
from cloud.db import make_engine, session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.scenarios.models import Journey, JourneyStatus
from tests.cloud.factories import bearer, cloud_settings, customer_number, issue_key

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TENANT = "shop"


def test_a_customers_messages_and_journeys_name_them_by_public_id(
    schema_templates: dict[str, str], tmp_path: Path,
) -> None:
    target = tmp_path / "vitrina.db"
    shutil.copyfile(schema_templates["sqlite"], target)  # one kind of database is enough
    engine = make_engine(f"sqlite:///{target}")
    settings = cloud_settings(tenant=TENANT, database_url=f"sqlite:///{target}")
    try:
        with TestClient(create_app(settings, engine=engine, now=lambda: NOW),
                        headers=bearer(issue_key(engine, tenant=TENANT))) as admin:
            public_id = admin.post(f"/tenants/{TENANT}/customers",
                                   json={"external_id": "shop-42"}).json()["id"]
            number = customer_number(engine, tenant=TENANT, public_id=public_id)
            with session_scope(engine) as session:
                session.add(Message(
                    tenant=TENANT, customer_id=number, channel="push", rule="welcome",
                    idempotency_key="k1", status=MessageStatus.SENT, title="Hi", body="Hi",
                    created_at=NOW))
                session.add(Journey(
                    tenant=TENANT, scenario_key="welcome", scenario_version=1,
                    customer_id=number, entry_key="welcome:1", entry_kind="event",
                    status=JourneyStatus.RUNNING, started_at=NOW, updated_at=NOW))
                session.commit()
            base = f"/tenants/{TENANT}/customers/{public_id}"
            [message] = admin.get(f"{base}/messages").json()
            [journey] = admin.get(f"{base}/journeys").json()
    finally:
        engine.dispose()
    assert public_id.startswith("cus_")
    assert message["customer_id"] == journey["customer_id"] == public_id
