"""Segments over HTTP: saved as versions and read back, refused with each problem at its
place, named by scenarios and offers (and refused when they name one that does not
exist), archived only when nothing names them, counted now and day by day, and the
scenario report per segment version and filtered to a segment's members."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.customers.crud import create_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.scenarios.membership import record_daily_counts
from cloud.scenarios.models import CustomerTag, Journey, JourneyStatus
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.cloud.offers.factories import offer_body

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BUYERS = {"name": "Washer buyers", "description": "bought a washer",
          "conditions": {"purchased": {"category": "washers", "within": "P30D"}}}
VIPS = {"name": "VIPs", "conditions": {"tag": "vip"}}


def scenario(key: str, conditions: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "entry": {"event": "cart.abandoned"},
            "conditions": conditions, "steps": [{"id": "t", "type": "tag", "add": ["x"]}]}


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        yield test_client


def problems(response: Any) -> list[tuple[list[Any], str]]:
    assert response.status_code == 422, response.text
    return [(problem["loc"], problem["msg"]) for problem in response.json()["detail"]]


def test_a_segment_is_saved_as_versions_and_read_back(client: TestClient, tenant: str) -> None:
    url = f"/tenants/{tenant}/segments/washer-buyers"
    saved = client.put(url, json=BUYERS)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {
        "key": "washer-buyers", **BUYERS, "version": 1, "archived": False,
        "conditions": {"purchased": {"category": "washers", "sku": None, "within": "P30D"}},
        "created_at": "2026-11-23T12:00:00Z", "updated_at": "2026-11-23T12:00:00Z"}
    read = client.get(url).json()
    # What the API gives is what it takes.
    again = client.put(url, json={key: read[key] for key in ("name", "description",
                                                             "conditions")})
    assert again.json()["version"] == 2
    changed = client.put(url, json={**BUYERS, "conditions": {"purchased": {"category": "washers",
                                                                           "within": "P60D"}}})
    assert changed.json()["version"] == 3
    versions = client.get(f"{url}/versions").json()
    assert [(one["version"], one["conditions"]["purchased"]["within"]) for one in versions] == [
        (3, "P60D"), (2, "P30D"), (1, "P30D")]
    assert [one["key"] for one in client.get(f"/tenants/{tenant}/segments").json()] == [
        "washer-buyers"]
    assert client.get(f"/tenants/{tenant}/segments/nothing").status_code == 404


def test_problems_come_back_at_their_place(client: TestClient, tenant: str) -> None:
    base = f"/tenants/{tenant}/segments"
    assert client.put(f"{base}/washer-buyers", json=BUYERS).status_code == 200
    unknown = client.put(f"{base}/vips", json={"name": "v", "conditions": {
        "all": [{"tag": "vip"}, {"segment": "washer-buyer"}]}})
    assert problems(unknown) == [
        (["body", "conditions", "all", "all", "1", "segment", "segment"],
         "segment 'washer-buyer' does not exist (did you mean 'washer-buyers'?)")]
    assert client.put(f"{base}/vips", json={"name": "v", "conditions": {
        "all": [{"tag": "vip"}, {"segment": "washer-buyers"}]}}).status_code == 200
    cycle = client.put(f"{base}/washer-buyers", json={**BUYERS, "conditions": {
        "any": [{"tag": "w"}, {"segment": "vips"}]}})
    assert problems(cycle) == [
        (["body", "conditions", "any", "any", "1", "segment", "segment"],
         "segments 'washer-buyers' -> 'vips' -> 'washer-buyers' form a cycle: a segment "
         "cannot contain itself")]
    moment = client.put(f"{base}/in-store", json={"name": "s", "conditions": {
        "trigger": {"attribute": "store", "value": "centro"}}})
    assert "a segment describes the customer, not the moment" in problems(moment)[0][1]
    assert problems(client.put(f"{base}/Upper", json=VIPS))[0][0] == ["path", "key"]
    audit = client.get(f"/tenants/{tenant}/audit", params={"action": "segment."}).json()
    assert [(entry["action"], entry["target"]) for entry in audit] == [
        ("segment.put", "segment:vips"), ("segment.put", "segment:washer-buyers")]


def test_scenarios_and_offers_must_name_segments_that_exist(
    client: TestClient, tenant: str
) -> None:
    base = f"/tenants/{tenant}"
    assert client.put(f"{base}/segments/washer-buyers", json=BUYERS).status_code == 200
    refused = client.put(f"{base}/scenarios/cross",
                         json=scenario("cross", {"not": {"segment": "washer-buyer"}}))
    assert problems(refused) == [
        (["body", "conditions", "not", "not", "segment", "segment"],
         "segment 'washer-buyer' does not exist (did you mean 'washer-buyers'?)")]
    offer = client.put(f"{base}/offers/dryers", json=offer_body(segment="washer-buyer"))
    assert problems(offer) == [(["body", "segment"], "segment 'washer-buyer' does not exist "
                                                     "(did you mean 'washer-buyers'?)")]
    saved = client.put(f"{base}/offers/dryers", json=offer_body(segment="washer-buyers"))
    assert saved.status_code == 201, saved.text
    assert saved.json()["segment"] == "washer-buyers"


def test_a_segment_is_archived_only_when_nothing_names_it(
    client: TestClient, tenant: str
) -> None:
    base = f"/tenants/{tenant}"
    client.put(f"{base}/segments/washer-buyers", json=BUYERS)
    client.put(f"{base}/segments/vips", json={"name": "v", "conditions": {
        "all": [{"tag": "vip"}, {"segment": "washer-buyers"}]}})
    client.put(f"{base}/scenarios/cross", json=scenario("cross", {"segment": "washer-buyers"}))
    client.put(f"{base}/offers/dryers", json=offer_body(segment="washer-buyers"))
    refused = client.delete(f"{base}/segments/washer-buyers")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "segment 'washer-buyers' is named by scenario 'cross', offer 'dryers', segment 'vips': "
        "change or switch those off first")
    for done in (client.delete(f"{base}/scenarios/cross"), client.delete(f"{base}/offers/dryers"),
                 client.put(f"{base}/segments/vips", json=VIPS)):
        assert done.status_code == 200, done.text
    archived = client.delete(f"{base}/segments/washer-buyers")
    assert archived.status_code == 200, archived.text
    assert (archived.json()["archived"], archived.json()["version"]) == (True, 2)
    assert [one["key"] for one in client.get(f"{base}/segments").json()] == ["vips"]
    assert [one["key"] for one in client.get(f"{base}/segments",
                                             params={"include_archived": True}).json()] == [
        "vips", "washer-buyers"]
    # Nothing may name it now; saving it again brings it back.
    assert client.put(f"{base}/scenarios/cross", json=scenario(
        "cross", {"segment": "washer-buyers"})).status_code == 422
    assert client.get(f"{base}/segments/washer-buyers/count").status_code == 404
    back = client.put(f"{base}/segments/washer-buyers", json=BUYERS)
    assert (back.json()["archived"], back.json()["version"]) == (False, 3)
    assert [one["version"] for one in client.get(
        f"{base}/segments/washer-buyers/versions").json()] == [3, 1]


def customers(engine: Engine, tenant: str, *tagged: bool) -> list[int]:
    """New customers, each tagged "vip" or not."""
    ids = []
    with session_scope(engine) as session:
        for vip in tagged:
            row = create_customer(session, tenant=tenant, now=NOW, data=CustomerCreate())
            assert row.id is not None
            ids.append(row.id)
            if vip:
                session.add(CustomerTag(customer_id=row.id, tag="vip", added_at=NOW))
        session.commit()
    return ids


def test_members_are_counted_now_and_day_by_day(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    url = f"/tenants/{tenant}/segments/vips"
    customers(engine, tenant, True, False, True)
    client.put(url, json=VIPS)
    with session_scope(engine) as session:
        record_daily_counts(session, tenant=tenant, now=NOW - timedelta(days=2))
        session.commit()
    customers(engine, tenant, True)
    client.put(url, json={**VIPS, "conditions": {"any": [{"tag": "vip"}, {"tag": "gold"}]}})
    with session_scope(engine) as session:
        record_daily_counts(session, tenant=tenant, now=NOW - timedelta(days=1))
        session.commit()
    counted = client.get(f"{url}/count", params={"days": 7})
    assert counted.status_code == 200, counted.text
    assert counted.json() == {
        "segment": "vips", "version": 2, "members": 3, "customers": 4,
        "counted_at": "2026-11-23T12:00:00Z",
        "trend": [{"day": "2026-11-21", "version": 1, "members": 2, "customers": 3},
                  {"day": "2026-11-22", "version": 2, "members": 3, "customers": 4}]}
    assert client.get(f"{url}/count", params={"days": 2}).json()["trend"] == [
        {"day": "2026-11-22", "version": 2, "members": 3, "customers": 4}]
    assert client.get(f"{url}/count", params={"days": 0}).json()["trend"] == []
    assert client.get(f"/tenants/{tenant}/segments/nothing/count").status_code == 404


def test_the_report_counts_journeys_per_segment_version_and_filters_to_members(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    base = f"/tenants/{tenant}"
    client.put(f"{base}/segments/vips", json=VIPS)
    client.put(f"{base}/segments/everyone", json={"name": "e", "conditions": {
        "not": {"tag": "nobody"}}})
    client.put(f"{base}/scenarios/cross", json=scenario("cross", {"segment": "everyone"}))
    vip, plain, other_vip = customers(engine, tenant, True, False, True)
    with session_scope(engine) as session:
        for number, (customer_id, decided, holdout) in enumerate([
            (vip, {"everyone": 1}, False), (plain, {"everyone": 1}, False),
            (other_vip, {"everyone": 2}, False), (plain, {}, True),
        ]):
            session.add(Journey(
                tenant=tenant, scenario_key="cross", scenario_version=1,
                customer_id=customer_id, entry_key=f"cross:{number}", entry_kind="cart.abandoned",
                holdout=holdout, status=JourneyStatus.DONE, started_at=NOW, updated_at=NOW,
                context={"segments": decided} if decided else {}))
        session.commit()
    report = client.get(f"{base}/scenarios/cross/report")
    assert report.status_code == 200, report.text
    assert [(row["group"], row["journeys"], row["segments"]) for row in report.json()] == [
        ("all", 3, [{"segment": "everyone", "version": 1, "journeys": 2},
                    {"segment": "everyone", "version": 2, "journeys": 1}]),
        ("holdout", 1, [])]
    members = client.get(f"{base}/scenarios/cross/report", params={"segment": "vips"}).json()
    assert [(row["group"], row["journeys"]) for row in members] == [("all", 2)]
    unknown = client.get(f"{base}/scenarios/cross/report", params={"segment": "vip"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "segment 'vip' does not exist (did you mean 'vips'?)"
