from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cloud.api import create_app
from cloud.db import session_scope
from cloud.presence.crud import upsert_gateway_status
from provisioning.local_broker import LocalBroker, free_port
from shared.status import GatewayStatus
from tests.cloud.factories import (
    MAC_OF,
    OPERATOR_KEY,
    bearer,
    cloud_settings,
    issue_key,
    wifi_pseudonym,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(
    engine: Engine, migrated_url: str, tenant: str, broker: LocalBroker
) -> Iterator[TestClient]:
    """Calls the API as the tenant's admin."""
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        yield test_client


def new_customer(client: TestClient, tenant: str, **fields: object) -> str:
    """A customer made by the back office; its public id."""
    response = client.post(f"/tenants/{tenant}/customers", json={"first_name": "Juan", **fields})
    assert response.status_code == 201, response.text
    public_id: str = response.json()["id"]
    return public_id


def test_customer_lifecycle(client: TestClient, tenant: str) -> None:
    customer_id = new_customer(
        client, tenant, external_id="shop-42", email="juan@example.com", phone="+34600111222",
        birth_date="1990-05-17", locale="es-ES", attributes={"tier": "gold", "orders": 3},
    )
    found = client.get(f"/tenants/{tenant}/customers/{customer_id}").json()
    assert found["email"] == "juan@example.com"
    assert found["attributes"] == {"tier": "gold", "orders": 3}
    assert found["created_at"].startswith("2026-11-23T12:00:00")
    listed = client.get(f"/tenants/{tenant}/customers").json()
    assert [item["id"] for item in listed] == [customer_id]
    duplicate = client.post(f"/tenants/{tenant}/customers", json={"external_id": "shop-42"})
    assert duplicate.status_code == 409
    assert "shop-42" in duplicate.json()["detail"]


def test_bad_bodies_get_422_naming_the_field_without_echoing_it(
    client: TestClient, tenant: str
) -> None:
    response = client.post(
        f"/tenants/{tenant}/customers", json={"email": "not-an-address", "shoe_size": 44}
    )
    assert response.status_code == 422
    body = response.json()
    assert "email" in body["message"]
    assert "shoe_size" in body["message"]
    assert "not-an-address" not in response.text
    customer_id = new_customer(client, tenant)
    response = client.post(
        f"/tenants/{tenant}/customers/{customer_id}/consent",
        json={"channel": "carrier_pigeon", "granted": True, "source": "app"},
    )
    assert response.status_code == 422
    assert "channel" in response.json()["message"]
    response = client.post(
        f"/tenants/{tenant}/customers/{customer_id}/devices", json={"kind": "wifi_mac", "mac": "zz"}
    )
    assert response.status_code == 422
    assert "MAC" in response.json()["detail"]
    assert client.post(f"/tenants/{tenant}/customers", content=b"{").status_code == 422


def test_consent_is_a_ledger_whose_latest_answer_counts(client: TestClient, tenant: str) -> None:
    customer_id = new_customer(client, tenant)
    url = f"/tenants/{tenant}/customers/{customer_id}/consent"
    assert client.post(url, json={"channel": "push", "granted": True, "source": "app",
                                  "given_at": "2026-11-01T09:00:00+01:00"}).status_code == 201
    assert client.post(url, json={"channel": "push", "granted": False, "source": "app-settings",
                                  "given_at": "2026-11-20T09:00:00Z"}).status_code == 201
    assert client.post(url, json={"channel": "location_marketing", "granted": True,
                                  "source": "store"}).status_code == 201
    state = client.get(url).json()
    assert len(state["ledger"]) == 3
    assert state["current"]["push"]["granted"] is False
    assert state["current"]["push"]["source"] == "app-settings"
    assert state["current"]["location_marketing"]["given_at"].startswith("2026-11-23T12:00")
    naive = client.post(url, json={"channel": "sms", "granted": True, "source": "web",
                                   "given_at": "2026-11-20T09:00:00"})
    assert naive.status_code == 422


def test_devices_store_pseudonyms_not_identifiers(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    customer_id = new_customer(client, tenant)
    url = f"/tenants/{tenant}/customers/{customer_id}/devices"
    wifi = client.post(url, json={"kind": "wifi_mac", "mac": MAC_OF["juan"].upper()})
    assert wifi.status_code == 201, wifi.text
    assert wifi.json()["pseudonym_key_ids"] == ["k1"]
    beacon = {"kind": "app_beacon", "install_id": "inst-7f3a9"}
    assert client.post(url, json=beacon).status_code == 201
    assert client.post(url, json={"kind": "fcm", "token": "fcm-" + "a" * 24}).status_code == 201
    web = client.post(url, json={"kind": "web_push", "endpoint": "https://push.example/abc",
                                 "keys": {"p256dh": "B" * 87, "auth": "a" * 22}})
    assert web.status_code == 201, web.text
    for inside in ("https://127.1/abc", "https://[fd00::1]/abc", "http://push.example/abc"):
        refused = client.post(url, json={"kind": "web_push", "endpoint": inside,
                                         "keys": {"p256dh": "B" * 87, "auth": "a" * 22}})
        assert refused.status_code == 422, inside
        [problem] = refused.json()["detail"]
        assert problem["loc"] == ["body", "endpoint"]
        assert problem["msg"].startswith("refused (")
    randomized = client.post(url, json={"kind": "wifi_mac", "mac": "02:00:00:00:00:01"})
    assert randomized.status_code == 422
    assert "randomized" in randomized.json()["detail"]
    devices = client.get(url).json()
    assert [device["kind"] for device in devices] == ["wifi_mac", "app_beacon", "fcm", "web_push"]
    with session_scope(engine) as session:
        dump = " ".join(
            str(row) for table in ("device", "identity_link")
            for row in session.connection().execute(text(f"SELECT * FROM {table}"))
        ).lower()
    assert MAC_OF["juan"] not in dump
    assert MAC_OF["juan"].replace(":", "") not in dump
    assert "inst-7f3a9" not in dump
    assert wifi_pseudonym(MAC_OF["juan"]) in dump


def test_registering_the_same_identifier_for_another_customer_moves_it(
    client: TestClient, tenant: str
) -> None:
    first, second = new_customer(client, tenant), new_customer(client, tenant)
    body = {"kind": "wifi_mac", "mac": MAC_OF["juan"]}
    client.post(f"/tenants/{tenant}/customers/{first}/devices", json=body)
    again = client.post(f"/tenants/{tenant}/customers/{first}/devices", json=body)
    assert len(client.get(f"/tenants/{tenant}/customers/{first}/devices").json()) == 1
    moved = client.post(f"/tenants/{tenant}/customers/{second}/devices", json=body)
    assert moved.status_code == 201
    assert moved.json()["id"] != again.json()["id"]
    assert moved.json()["customer_id"] == second
    assert client.get(f"/tenants/{tenant}/customers/{first}/devices").json() == []
    token = {"kind": "fcm", "token": "fcm-token-aaaaaaaaaaaaaaaa"}
    client.post(f"/tenants/{tenant}/customers/{first}/devices", json=token)
    client.post(f"/tenants/{tenant}/customers/{second}/devices", json=token)
    kinds = [d["kind"] for d in client.get(f"/tenants/{tenant}/customers/{second}/devices").json()]
    assert kinds == ["wifi_mac", "fcm"]
    assert client.get(f"/tenants/{tenant}/customers/{first}/devices").json() == []


def test_unknown_tenant_and_customer_are_404(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    # A tenant key is not told whether another tenant exists: 403 either way.
    assert client.get("/tenants/nobody/customers").status_code == 403
    assert client.get(f"/tenants/{tenant}/customers/999").status_code == 404
    assert client.get(f"/tenants/{tenant}/customers/999/messages").status_code == 404
    operator = client.get("/tenants/nobody/api-keys", headers=bearer(OPERATOR_KEY))
    assert operator.status_code == 404
    assert "not configured" in operator.json()["detail"]
    # A key left over from a tenant since removed from the settings.
    orphan = bearer(issue_key(engine, tenant="nobody"))
    assert client.get("/tenants/nobody/customers", headers=orphan).status_code == 404


def test_gateways_and_messages(client: TestClient, tenant: str, engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_gateway_status(session, status=GatewayStatus(
            tenant=tenant, store="s1", gateway="g1", online=True, sent_at=NOW, queue_depth=4,
        ), received_at=NOW)
        session.commit()
    gateways = client.get(f"/tenants/{tenant}/gateways").json()
    assert [(g["store"], g["gateway"], g["online"], g["queue_depth"]) for g in gateways] == [
        ("s1", "g1", True, 4)
    ]
    customer_id = new_customer(client, tenant)
    assert client.get(f"/tenants/{tenant}/customers/{customer_id}/messages").json() == []


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "vitrina_ingest_events_total" in metrics.text


def test_readiness_fails_when_the_broker_is_unreachable(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url,
                              mqtt={"host": "127.0.0.1", "port": free_port()})
    with TestClient(create_app(settings, engine=engine)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "ok"
    assert ready.json()["broker"].startswith("unreachable")


def test_an_admin_issues_lists_and_revokes_its_tenant_keys(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    keys = f"/tenants/{tenant}/api-keys"
    made = client.post(keys, json={"role": "app", "name": "android app"})
    assert made.status_code == 201, made.text
    created = made.json()
    key, key_id = created["key"], created["key_id"]
    assert key.startswith(f"vk_{key_id}_")
    assert (created["role"], created["tenant"], created["name"]) == ("app", tenant, "android app")
    assert created["created_at"].startswith("2026-11-23T12:00")
    assert created["last_used_at"] is None
    assert created["revoked_at"] is None
    assert "secret_hash" not in created
    shop_app = bearer(key)
    assert client.post(f"/tenants/{tenant}/customers", json={}, headers=shop_app).status_code == 201

    listed = client.get(keys)
    assert listed.status_code == 200
    [entry] = [item for item in listed.json() if item["key_id"] == key_id]
    assert entry["last_used_at"].startswith("2026-11-23T12:00")
    assert {"key", "secret_hash"}.isdisjoint(entry)
    assert key.split("_", 2)[2] not in listed.text
    assert len(listed.json()) == 2  # the admin's own key and the new one

    revoked = client.delete(f"{keys}/{key_id}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"].startswith("2026-11-23T12:00")
    refused = client.post(f"/tenants/{tenant}/customers", json={}, headers=shop_app)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "API key has been revoked"
    assert client.delete(f"{keys}/{key_id}").status_code == 200  # revoking again is harmless
    assert client.delete(f"{keys}/0123456789ab").status_code == 404
    others = issue_key(engine, tenant="another-shop").split("_", 2)[1]
    assert client.delete(f"{keys}/{others}").status_code == 404  # not through this tenant


@pytest.mark.parametrize("body", [
    {"role": "operator"}, {"role": "root"}, {"role": "app", "tenant": "another-shop"},
    {"role": "app", "name": "line\nbreak"}, {"role": "app", "name": "x" * 101},
])
def test_an_admin_cannot_issue_keys_beyond_its_tenant_roles(
    client: TestClient, tenant: str, body: dict[str, str]
) -> None:
    response = client.post(f"/tenants/{tenant}/api-keys", json=body)
    assert response.status_code == 422, response.text


def test_a_fresh_deployment_starts_from_the_operator_key_in_settings(
    client: TestClient, tenant: str
) -> None:
    operator = bearer(OPERATOR_KEY)
    made = client.post(f"/tenants/{tenant}/api-keys", json={"role": "admin"}, headers=operator)
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == OPERATOR_KEY.split("_", 2)[1]
    admin = bearer(made.json()["key"])
    assert client.get(f"/tenants/{tenant}/customers", headers=admin).status_code == 200
    # The operator manages keys, not the tenant's data.
    assert client.get(f"/tenants/{tenant}/customers", headers=operator).status_code == 403
    assert client.get("/dead-letters", headers=operator).status_code == 200
    assert client.get("/dead-letters", headers=admin).status_code == 403
