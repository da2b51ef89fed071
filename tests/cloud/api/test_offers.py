import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.models import Role
from cloud.db import session_scope
from cloud.offers import crud
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.cloud.factories import bearer, cloud_settings, customer_number, issue_key
from tests.cloud.offers.factories import NOW, offer_body, refused

SECRET = "whsec-offers-0123456789"


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    """Calls the API as the tenant's admin; webhooks are signed with SECRET."""
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, webhook_secrets=[SECRET])
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        yield test_client


def webhook(client: TestClient, tenant: str, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    stamp = int(NOW.timestamp())
    response = client.post(f"/webhooks/{tenant}", content=body, headers={
        TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(SECRET, stamp, body),
        "content-type": "application/json",
    })
    assert response.status_code == 202, response.text
    return response.json()


def order(event_id: str, order_id: str, coupons: list[str], sku: str = "DR-9KG") -> dict[str, Any]:
    return {
        "type": "order.created", "event_id": event_id, "occurred_at": "2026-11-23T11:30:00Z",
        "customer": {"external_id": "shop-42"}, "order_id": order_id, "currency": "EUR",
        "total": "559.20", "coupons": coupons,
        "items": [{"sku": sku, "name": "Heat-pump dryer 9 kg", "category": "dryers",
                   "quantity": 1, "unit_price": "699.00"}],
    }


def test_offers_are_put_listed_read_and_deactivated(client: TestClient, tenant: str) -> None:
    url = f"/tenants/{tenant}/offers/dryers-20"
    created = client.put(url, json=offer_body(coupon_limit=100, budget_limit="5000.00"))
    assert created.status_code == 201, created.text
    offer = created.json()
    assert offer["key"] == "dryers-20"
    assert (offer["coupons_issued"], offer["budget_used"], offer["active"]) == (0, "0.00", True)
    assert offer["created_at"].startswith("2026-11-23T12:00")
    updated = client.put(url, json=offer_body(name="Dryers, winter"))
    assert updated.status_code == 200
    assert updated.json()["id"] == offer["id"]
    assert updated.json()["coupon_limit"] is None  # PUT replaces the whole offer
    assert client.get(url).json()["name"] == "Dryers, winter"
    client.put(f"/tenants/{tenant}/offers/ovens-10", json=offer_body(category="ovens"))
    listed = client.get(f"/tenants/{tenant}/offers").json()
    assert [item["key"] for item in listed] == ["dryers-20", "ovens-10"]
    deleted = client.delete(url)
    assert deleted.status_code == 200
    assert deleted.json()["active"] is False
    active = client.get(f"/tenants/{tenant}/offers", params={"active_only": True}).json()
    assert [item["key"] for item in active] == ["ovens-10"]
    assert client.get(f"/tenants/{tenant}/offers/nope").status_code == 404
    assert client.delete(f"/tenants/{tenant}/offers/nope").status_code == 404
    assert client.put(url, json=offer_body()).json()["active"] is True  # PUT reactivates
    assert client.get("/tenants/nobody/offers").status_code == 403  # not its tenant


def test_bad_offers_get_422_naming_the_field_without_echoing_it(
    client: TestClient, tenant: str
) -> None:
    url = f"/tenants/{tenant}/offers/dryers-20"
    response = client.put(url, json=offer_body(product_url="javascript:steal()", price="-3"))
    assert response.status_code == 422
    assert "product_url" in response.json()["message"]
    assert "price" in response.json()["message"]
    assert "steal" not in response.text
    bad_key = client.put(f"/tenants/{tenant}/offers/bad key!", json=offer_body())
    assert bad_key.status_code == 422
    assert "key" in bad_key.json()["message"]
    ends_before = client.put(url, json=offer_body(valid_from=None,
                                                  valid_until="2026-11-01T00:00:00Z"))
    assert ends_before.status_code == 422
    assert "valid_until" in ends_before.json()["detail"]


def test_terms_are_fixed_once_a_coupon_is_issued(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    url = f"/tenants/{tenant}/offers/dryers-20"
    assert client.put(url, json=offer_body()).status_code == 201
    customer = client.post(f"/tenants/{tenant}/customers", json={"external_id": "shop-42"})
    with session_scope(engine) as session:
        offer = crud.get_offer(session, tenant=tenant, key="dryers-20")
        assert offer is not None
        number = customer_number(engine, tenant=tenant, public_id=customer.json()["id"])
        crud.issue_coupon(session, tenant=tenant, customer_id=number, offer=offer,
                          valid_for=timedelta(days=1), idempotency_key="k", now=NOW)
        session.commit()
    refused_change = client.put(url, json=offer_body(discount_percent=30))
    assert refused_change.status_code == 409
    assert "discount_percent" in refused_change.json()["detail"]
    assert client.put(url, json=offer_body(coupon_limit=50)).status_code == 200


def test_complement_rules_are_replaced_as_a_list(client: TestClient, tenant: str) -> None:
    url = f"/tenants/{tenant}/complements"
    assert client.get(url).json() == []
    rules: list[dict[str, Any]] = [
        {"from_category": "washers", "to_category": "dryers", "priority": 10},
        {"from_category": "washers", "to_category": "detergent"},
    ]
    saved = client.put(url, json=rules)
    assert saved.status_code == 200, saved.text
    assert saved.json() == [
        {"from_category": "washers", "to_category": "dryers", "priority": 10},
        {"from_category": "washers", "to_category": "detergent", "priority": 100},
    ]
    assert client.put(url, json=rules[:1]).json() == saved.json()[:1]
    assert client.get(url).json() == saved.json()[:1]
    duplicate = client.put(url, json=[rules[0], {**rules[0], "priority": 1}])
    assert duplicate.status_code == 422
    assert "once" in duplicate.json()["detail"]
    itself = client.put(url, json=[{"from_category": "tv", "to_category": "tv"}])
    assert itself.status_code == 422
    assert client.get(url).json() == saved.json()[:1]  # refused lists change nothing


def test_an_order_webhook_redeems_a_coupon_once(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    assert client.put(f"/tenants/{tenant}/offers/dryers-20", json=offer_body()).status_code == 201
    customer_id = client.post(
        f"/tenants/{tenant}/customers", json={"external_id": "shop-42"}
    ).json()["id"]
    with session_scope(engine) as session:
        offer = crud.get_offer(session, tenant=tenant, key="dryers-20")
        assert offer is not None
        coupon = crud.issue_coupon(
            session, tenant=tenant, offer=offer, valid_for=timedelta(hours=24),
            customer_id=customer_number(engine, tenant=tenant, public_id=customer_id),
            idempotency_key="k", now=NOW,
        )
        assert coupon is not None
        session.commit()
    coupons_url = f"/tenants/{tenant}/customers/{customer_id}/coupons"
    [listed] = client.get(coupons_url).json()
    assert (listed["code"], listed["offer_key"], listed["status"]) == (
        coupon.code, "dryers-20", "active")
    unknown_before = refused("unknown")
    receipt = webhook(client, tenant, order("evt-1", "o-1", [coupon.code.lower(), "SUMMER-10"]))
    assert receipt["stored"] is True
    assert refused("unknown") - unknown_before == 1  # the shop's own code: ignored, counted
    [listed] = client.get(coupons_url).json()
    assert (listed["status"], listed["order_id"]) == ("redeemed", "o-1")
    assert listed["redeemed_at"].startswith("2026-11-23T11:30")
    redeemed_before = refused("redeemed")
    webhook(client, tenant, order("evt-1", "o-1", [coupon.code]))  # a replayed delivery
    webhook(client, tenant, order("evt-2", "o-1", [coupon.code]))  # the order re-sent
    webhook(client, tenant, order("evt-3", "o-2", [coupon.code]))  # another order
    assert refused("redeemed") - redeemed_before == 1
    [listed] = client.get(coupons_url).json()
    assert listed["order_id"] == "o-1"

    # o-1 is cancelled: the offer does not give coupons back, so this one stays spent.
    assert webhook(client, tenant, cancelled("evt-c1", "o-1"))["ignored"] is None
    [listed] = client.get(coupons_url).json()
    assert (listed["status"], listed["order_id"], listed["reissued_at"]) == (
        "redeemed", "o-1", None)
    # Once the offer says so, the coupon of the next cancelled order comes back.
    changed = client.put(f"/tenants/{tenant}/offers/dryers-20",
                         json=offer_body(reissue_on_cancel=True))
    assert (changed.status_code, changed.json()["reissue_on_cancel"]) == (200, True)
    with session_scope(engine) as session:
        offer = crud.get_offer(session, tenant=tenant, key="dryers-20")
        assert offer is not None
        second = crud.issue_coupon(
            session, tenant=tenant, offer=offer, valid_for=timedelta(hours=24),
            customer_id=customer_number(engine, tenant=tenant, public_id=customer_id),
            idempotency_key="k2", now=NOW,
        )
        assert second is not None
        session.commit()
    webhook(client, tenant, order("evt-4", "o-4", [second.code]))
    webhook(client, tenant, cancelled("evt-c4", "o-4"))
    listed = {one["code"]: one for one in client.get(coupons_url).json()}[second.code]
    assert (listed["status"], listed["order_id"], listed["redeemed_at"]) == (
        "active", None, None)
    assert listed["reissued_at"].startswith("2026-11-23T12:00")


def cancelled(event_id: str, order_id: str) -> dict[str, Any]:
    return {"type": "order.cancelled", "event_id": event_id,
            "occurred_at": "2026-11-23T11:45:00Z", "order_id": order_id}


def test_an_offers_coupons_are_counted_by_state_newest_first(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    url = f"/tenants/{tenant}/offers/dryers-20"
    assert client.put(url, json=offer_body()).status_code == 201
    assert client.get(f"{url}/coupons").json() == {
        "issued": 0, "active": 0, "redeemed": 0, "expired": 0, "newest": []}
    public = [client.post(f"/tenants/{tenant}/customers", json=body).json()["id"]
              for body in ({"external_id": "shop-42"}, {}, {})]  # the first orders
    customers = [customer_number(engine, tenant=tenant, public_id=id_) for id_ in public]
    with session_scope(engine) as session:
        offer = crud.get_offer(session, tenant=tenant, key="dryers-20")
        assert offer is not None
        issued = [(timedelta(hours=-3), timedelta(days=1)),  # redeemed below
                  (timedelta(days=-2), timedelta(days=1)),  # expired
                  (timedelta(hours=-1), timedelta(days=1))]  # active
        coupons = [crud.issue_coupon(
            session, tenant=tenant, customer_id=customer, offer=offer, valid_for=valid_for,
            idempotency_key=f"k{index}", now=NOW + at,
        ) for index, (customer, (at, valid_for)) in enumerate(zip(customers, issued, strict=True))]
        session.commit()
        code = [coupon.code for coupon in coupons if coupon is not None]
    webhook(client, tenant, order("evt-1", "o-1", [code[0]]))
    listed = client.get(f"{url}/coupons", params={"limit": 2}).json()
    assert (listed["issued"], listed["active"], listed["redeemed"], listed["expired"]) == (
        3, 1, 1, 1)
    assert [(c["code"], c["customer_id"], c["status"]) for c in listed["newest"]] == [
        (code[2], public[2], "active"), (code[0], public[0], "redeemed")]
    assert client.get(f"/tenants/{tenant}/offers/nothing/coupons").status_code == 404
    app = bearer(issue_key(engine, tenant=tenant, role=Role.APP))
    assert client.get(f"{url}/coupons", headers=app).status_code == 403


def test_a_customers_coupons_are_readable_with_an_app_key_and_offers_are_not(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    app = bearer(issue_key(engine, tenant=tenant, role=Role.APP))
    # The app's own installation (customers signed in need their token: test_customer_tokens).
    customer_id = client.post(f"/tenants/{tenant}/customers", json={}, headers=app).json()["id"]
    assert client.get(f"/tenants/{tenant}/customers/{customer_id}/coupons",
                      headers=app).json() == []
    assert client.get(f"/tenants/{tenant}/offers", headers=app).status_code == 403
    assert client.put(f"/tenants/{tenant}/complements", json=[], headers=app).status_code == 403
    assert client.get(f"/tenants/{tenant}/customers/999999/coupons").status_code == 404
    assert client.get(f"/tenants/{tenant}/offers", headers={"Authorization": ""}).status_code == 401
