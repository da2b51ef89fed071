"""The audit log: every configuration change through the API, by a key or a console
member, is recorded with who, when, what, before and after, and read back by those who
may."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.keys import key_id_of
from cloud.auth.permissions import MemberRole
from tests.cloud.factories import (
    KEY_ID,
    KEY_SECRET,
    add_member,
    bearer,
    cloud_settings,
    console_login,
    issue_key,
)
from tests.cloud.offers.factories import offer_body
from tests.support.shop_backend import ShopBackend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OWNER = "owner@shop.example"
CIRCLE = {"store": "centro", "dwell_after_s": 300,
          "shape": {"circle": {"lat": 40.4168, "lon": -3.7038, "radius_m": 100}}}
SCENARIO = {"key": "hello", "name": "Hello", "entry": {"event": "customer.signup"},
            "steps": [{"id": "hi", "type": "send", "channels": ["push"], "template": "hello"}]}
SEGMENT = {"name": "VIPs", "conditions": {"tag": "vip"}}
TEMPLATE = {"parts": {"title": "Hola {{ customer.first_name }}", "body": "Bienvenida"}}
#: Writes that are a shop's data, not its configuration: not audited (they are many, and
#: the customer's own record says what happened).
DATA_WRITES = {
    ("POST", "/tenants/{tenant}/customers"),
    ("POST", "/tenants/{tenant}/customers/{customer_id}/consent"),
    ("POST", "/tenants/{tenant}/customers/{customer_id}/devices"),
    ("POST", "/tenants/{tenant}/customers/{customer_id}/locations"),
    ("POST", "/tenants/{tenant}/customers/{customer_id}/store-beacon"),
    ("POST", "/tenants/{tenant}/messages/{message_id}/opened"),
    ("POST", "/tenants/{tenant}/templates/preview"),  # changes nothing
    ("POST", "/tenants/{tenant}/scenarios/{key}/simulations"),  # a dry run: changes nothing
}
#: Changes that need the broker to be told (a revoked gateway's login goes): their entries
#: are checked where a broker runs, in tests/cloud/api/test_gateways.py.
BROKER_WRITES = {("DELETE", "/tenants/{tenant}/stores/{store}/gateways/{gateway}")}


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    # a second pseudonym key, so that a rotation (activate it, retire the first) is logged
    keys = [{"key_id": KEY_ID, "secret": KEY_SECRET}, {"key_id": "k2", "secret": "5d" * 32}]
    settings = cloud_settings(tenant=tenant, database_url=migrated_url,
                              tenants={tenant: {"keys": keys}})
    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as test_client:
        yield test_client


def writes(tenant: str, customer: str, key_id: str, member: int) -> list[
        tuple[str, str, str, Any, str, str]]:
    """Each configuration change the API makes: method, route, path, body, and the
    action and target its entry names."""
    base = f"/tenants/{tenant}"
    return [
        ("PUT", "/stores/{key}", f"{base}/stores/centro",
         {"name": "Centro", "time_zone": "Europe/Madrid"}, "store.put", "store:centro"),
        ("PUT", "/stores/{key}", f"{base}/stores/norte",
         {"name": "Norte", "time_zone": "Europe/Madrid"}, "store.put", "store:norte"),
        ("POST", "/stores/{store}/gateways", f"{base}/stores/norte/gateways",
         {"gateway": "door"}, "gateway.create", "gateway:norte/door"),
        ("POST", "/stores/{store}/gateways/{gateway}/code",
         f"{base}/stores/norte/gateways/door/code", None, "gateway.code",
         "gateway:norte/door"),
        ("PUT", "/stores/{store}/gateways/{gateway}/config",
         f"{base}/stores/norte/gateways/door/config", {"rssi_floor": -80},
         "gateway.config", "gateway:norte/door"),
        ("POST", "/pseudonym-keys/{key_id}/activate", f"{base}/pseudonym-keys/k2/activate",
         None, "pseudonym_key.activate", "pseudonym_key:k2"),
        ("POST", "/pseudonym-keys/{key_id}/retire", f"{base}/pseudonym-keys/{KEY_ID}/retire",
         None, "pseudonym_key.retire", f"pseudonym_key:{KEY_ID}"),
        ("PUT", "/geofences/{geofence_id}", f"{base}/geofences/ring", CIRCLE,
         "geofence.put", "geofence:ring"),
        ("DELETE", "/geofences/{geofence_id}", f"{base}/geofences/ring", None,
         "geofence.delete", "geofence:ring"),
        ("DELETE", "/stores/{key}", f"{base}/stores/centro", None, "store.delete",
         "store:centro"),
        ("PUT", "/offers/{key}", f"{base}/offers/dryers", offer_body(), "offer.put",
         "offer:dryers"),
        ("DELETE", "/offers/{key}", f"{base}/offers/dryers", None, "offer.deactivate",
         "offer:dryers"),
        ("PUT", "/preferences", f"{base}/preferences",
         {"quiet_hours": {"start": "22:00", "end": "08:00"}, "time_zone": "Europe/Madrid"},
         "preferences.put", "preferences"),
        ("PUT", "/complements", f"{base}/complements",
         [{"from_category": "washers", "to_category": "dryers"}], "complements.put",
         "complements"),
        ("PUT", "/segments/{key}", f"{base}/segments/vips", SEGMENT, "segment.put",
         "segment:vips"),
        ("DELETE", "/segments/{key}", f"{base}/segments/vips", None, "segment.archive",
         "segment:vips"),
        ("PUT", "/templates/{key}/{channel}/{locale}", f"{base}/templates/hello/push/es-ES",
         TEMPLATE, "template.put", "template:hello/push/es-ES"),
        ("PUT", "/scenarios/{key}", f"{base}/scenarios/hello", SCENARIO, "scenario.put",
         "scenario:hello"),
        ("DELETE", "/scenarios/{key}", f"{base}/scenarios/hello", None, "scenario.deactivate",
         "scenario:hello"),
        ("DELETE", "/templates/{key}/{channel}/{locale}", f"{base}/templates/hello/push/es-ES",
         None, "template.delete", "template:hello/push/es-ES"),
        ("POST", "/api-keys", f"{base}/api-keys", {"role": "app", "name": "web shop"},
         "key.create", "key:"),
        ("DELETE", "/api-keys/{key_id}", f"{base}/api-keys/{key_id}", None, "key.revoke",
         f"key:{key_id}"),
        ("POST", "/customer-token-keys", f"{base}/customer-token-keys",
         ShopBackend.new(tenant, kid="k-1").registration(), "token_key.create",
         "token_key:k-1"),
        ("DELETE", "/customer-token-keys/{kid}", f"{base}/customer-token-keys/k-1", None,
         "token_key.retire", "token_key:k-1"),
        ("POST", "/members/invitations", f"{base}/members/invitations",
         {"email": "new@shop.example", "role": "analyst"}, "member.invite", "invitation:"),
        ("DELETE", "/members/invitations/{invitation_id}", f"{base}/members/invitations/1",
         None, "member.uninvite", "invitation:1"),
        ("PATCH", "/members/{member_id}", f"{base}/members/{member}", {"role": "marketer"},
         "member.role", "member:dee@shop.example"),
        ("DELETE", "/members/{member_id}", f"{base}/members/{member}", None, "member.remove",
         "member:dee@shop.example"),
        ("DELETE", "/customers/{customer_id}", f"{base}/customers/{customer}", None,
         "customer.erase", f"customer:{customer}"),
    ]


def test_every_configuration_change_is_in_the_log(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    admin_key = issue_key(engine, tenant=tenant)
    admin = bearer(admin_key)
    customer = client.post(f"/tenants/{tenant}/customers", json={"first_name": "Ana"},
                           headers=admin).json()["id"]
    victim = key_id_of(issue_key(engine, tenant=tenant))
    assert victim is not None
    member = add_member(engine, email="dee@shop.example", tenant=tenant,
                        role=MemberRole.ANALYST)
    changes = writes(tenant, customer, victim, member)
    paths = client.get("/openapi.json").json()["paths"]
    every_write = {(method.upper(), path) for path, item in paths.items()
                   for method in item if method != "get" and path.startswith("/tenants/")}
    assert every_write - DATA_WRITES - BROKER_WRITES == {
        (method, f"/tenants/{{tenant}}{route}") for method, route, *_ in changes}
    for method, _route, path, body, action, target in changes:
        response = client.request(method, path, json=body, headers=admin)
        assert response.status_code < 300, (path, response.text)
        newest = client.get(f"/tenants/{tenant}/audit", params={"limit": 1},
                            headers=admin).json()[0]
        assert (newest["action"], newest["actor_kind"], newest["actor"]) == (
            action, "key", key_id_of(admin_key)), path
        assert newest["target"].startswith(target)
        assert newest["at"].startswith("2026-11-23T12:00:00")
    log = client.get(f"/tenants/{tenant}/audit", headers=admin).json()
    assert len(log) == len(changes)
    assert admin_key.split("_", 2)[2][:16] not in str(log)


def test_entries_show_before_and_after_and_who_made_the_change(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    add_member(engine, email=OWNER, tenant=tenant, role=MemberRole.OWNER)
    admin = bearer(issue_key(engine, tenant=tenant))
    url = f"/tenants/{tenant}/offers/dryers"
    assert client.put(url, json=offer_body(discount_percent=20), headers=admin
                      ).status_code == 201
    headers = console_login(client, OWNER)
    assert client.put(url, json=offer_body(discount_percent=25), headers=headers
                      ).status_code == 200
    by_member, by_key = client.get(f"/tenants/{tenant}/audit").json()
    assert by_key["before"] is None
    assert by_key["after"]["discount_percent"] == 20
    assert (by_member["actor_kind"], by_member["actor"]) == ("member", OWNER)
    assert by_member["before"]["discount_percent"] == 20
    assert by_member["after"]["discount_percent"] == 25


def test_the_log_pages_back_and_filters_by_kind_of_change(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    admin = bearer(issue_key(engine, tenant=tenant))
    for number in range(5):
        client.put(f"/tenants/{tenant}/offers/o{number}", json=offer_body(), headers=admin)
    client.put(f"/tenants/{tenant}/stores/centro", headers=admin,
               json={"name": "Centro", "time_zone": "Europe/Madrid"})
    audit = f"/tenants/{tenant}/audit"
    first = client.get(audit, params={"limit": 2}, headers=admin).json()
    assert [entry["target"] for entry in first] == ["store:centro", "offer:o4"]
    older = client.get(audit, params={"limit": 10, "before_id": first[-1]["id"]},
                       headers=admin).json()
    assert [entry["target"] for entry in older] == ["offer:o3", "offer:o2", "offer:o1",
                                                    "offer:o0"]
    offers = client.get(audit, params={"action": "offer."}, headers=admin).json()
    assert len(offers) == 5
    other = issue_key(engine, tenant="other-shop")
    assert client.get(audit, headers=bearer(other)).status_code == 403


def test_a_refused_change_leaves_no_entry(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    admin = bearer(issue_key(engine, tenant=tenant))
    bad = client.put(f"/tenants/{tenant}/stores/centro", headers=admin,
                     json={"name": "Centro", "time_zone": "Nowhere/Land"})
    assert bad.status_code == 422
    orphan = client.put(f"/tenants/{tenant}/geofences/ring", json=CIRCLE, headers=admin)
    assert orphan.status_code == 422
    assert client.get(f"/tenants/{tenant}/audit", headers=admin).json() == []
