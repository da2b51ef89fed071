"""The tenant's own quiet hours and time zone over HTTP (GET/PUT .../preferences) and a
store's own quiet hours (PUT .../stores/{key}), on SQLite and PostgreSQL: what is refused
and where, who may change them, the audit entry and version of each save, and the engine
holding sends and finding birthdays by what was set here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.api import create_app
from cloud.auth.permissions import MemberRole
from cloud.customers.crud import create_customer, record_consent
from cloud.customers.models import ConsentCreate, CustomerCreate
from cloud.db import session_scope
from cloud.messages.models import Message
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.schedule import record_calendar_triggers
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import QuietHours, ScenarioSettings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from cloud.triggers import Trigger, TriggerKind, record_trigger
from tests.cloud.factories import add_member, bearer, cloud_settings, console_login, issue_key
from tests.docs.snippets import snippet

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
#: The deployment's: everyone 21:00-09:00 on UTC (the default), this tenant 23:00-08:00.
SCENARIOS = ScenarioSettings()
WINDOW = {"start": "21:30", "end": "09:00"}


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, scenarios={
        "tenant_quiet_hours": {tenant: {"start": "23:00", "end": "08:00"}}})
    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as test_client:
        yield test_client


@pytest.fixture
def admin(engine: Engine, tenant: str) -> dict[str, str]:
    return bearer(issue_key(engine, tenant=tenant))


def test_until_set_they_say_what_the_deployment_applies(
    client: TestClient, admin: dict[str, str], tenant: str,
) -> None:
    found = client.get(f"/tenants/{tenant}/preferences", headers=admin)
    assert found.status_code == 200
    deployment = {"quiet_hours": {"start": "23:00", "end": "08:00"},
                  "quiet_hours_from": "deployment_tenant", "time_zone": "UTC",
                  "time_zone_from": "deployment"}
    assert found.json() == {"quiet_hours": None, "time_zone": None, "version": 0,
                            "updated_at": None, "applies": deployment,
                            "deployment": deployment}


def test_a_marketer_sets_them_each_save_is_counted_and_audited(
    client: TestClient, engine: Engine, admin: dict[str, str], tenant: str,
) -> None:
    add_member(engine, email="marta@shop.example", tenant=tenant, role=MemberRole.MARKETER)
    marketer = console_login(client, "marta@shop.example")
    url = f"/tenants/{tenant}/preferences"
    first = client.put(url, headers=marketer,
                       json={"quiet_hours": WINDOW, "time_zone": "Europe/Madrid"})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "quiet_hours": WINDOW, "time_zone": "Europe/Madrid", "version": 1,
        "updated_at": "2026-11-23T12:00:00Z",
        "applies": {"quiet_hours": WINDOW, "quiet_hours_from": "tenant",
                    "time_zone": "Europe/Madrid", "time_zone_from": "tenant"},
        "deployment": {"quiet_hours": {"start": "23:00", "end": "08:00"},
                       "quiet_hours_from": "deployment_tenant", "time_zone": "UTC",
                       "time_zone_from": "deployment"},
    }
    # "off" is the tenant's decision (any hour), whatever the deployment's; a zone left
    # out is the deployment's again.
    second = client.put(url, headers=marketer, json={"quiet_hours": "off"}).json()
    assert (second["quiet_hours"], second["time_zone"], second["version"]) == ("off", None, 2)
    assert second["applies"] == {"quiet_hours": None, "quiet_hours_from": "tenant",
                                 "time_zone": "UTC", "time_zone_from": "deployment"}
    cleared = client.put(url, headers=admin, json={}).json()
    assert (cleared["quiet_hours"], cleared["version"]) == (None, 3)
    assert cleared["applies"]["quiet_hours_from"] == "deployment_tenant"
    assert client.get(url, headers=admin).json() == cleared

    entries = client.get(f"/tenants/{tenant}/audit", params={"action": "preferences."},
                         headers=admin).json()
    assert [(entry["actor"], entry["target"]) for entry in entries] == [
        (entries[0]["actor"], "preferences"), ("marta@shop.example", "preferences"),
        ("marta@shop.example", "preferences")]
    newest, middle, oldest = entries
    assert oldest["before"] is None
    assert oldest["after"]["quiet_hours"] == WINDOW
    assert (middle["before"]["quiet_hours"], middle["after"]["quiet_hours"]) == (WINDOW, "off")
    assert newest["actor_kind"] == "key"


@pytest.mark.parametrize("role", [MemberRole.ANALYST, MemberRole.STORE_OPERATOR])
def test_roles_that_may_not_change_them_read_them(
    client: TestClient, engine: Engine, admin: dict[str, str], tenant: str, role: MemberRole,
) -> None:
    email = f"{role.value}@shop.example"
    add_member(engine, email=email, tenant=tenant, role=role)
    member = console_login(client, email)
    url = f"/tenants/{tenant}/preferences"
    refused = client.put(url, headers=member, json={"quiet_hours": "off"})
    assert refused.status_code == 403
    assert "may not do this (it needs preferences.write)" in refused.json()["detail"]
    assert client.get(url, headers=member).json()["version"] == 0
    assert client.get(f"/tenants/{tenant}/audit", headers=admin).json() == []


@pytest.mark.parametrize(("body", "where", "says"), [
    ({"time_zone": "Nowhere/Land"}, ["body", "time_zone"], "not a known IANA time zone"),
    ({"time_zone": ""}, ["body", "time_zone"], "at least 1 character"),
    ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, ["body", "quiet_hours", "window"],
     'start and end are the same: for no quiet hours at all send "off"'),
    ({"quiet_hours": {"start": "9:00", "end": "21:00"}},
     ["body", "quiet_hours", "window", "start"], "HH:MM"),
    ({"quiet_hours": {"start": "22:00", "end": "24:00"}},
     ["body", "quiet_hours", "window", "end"], "between 00:00 and 23:59"),
    ({"quiet_hours": {"start": "22:00:30", "end": "08:00"}},
     ["body", "quiet_hours", "window", "start"], "HH:MM"),
    ({"quiet_hours": {"start": "22:00", "end": "08:00+01:00"}},
     ["body", "quiet_hours", "window", "end"], "HH:MM"),
    ({"quiet_hours": {"start": "22:00"}}, ["body", "quiet_hours", "window", "end"],
     "Field required"),
    ({"quiet_hours": "never"}, ["body", "quiet_hours"], '"off" or null'),
    ({"quiet_hours": 0}, ["body", "quiet_hours"], '"off" or null'),
    ({"quiet_hour": "off"}, ["body", "quiet_hour"], "quiet_hours"),  # the nearest name
])
def test_a_bad_value_is_refused_at_its_field_and_nothing_is_saved(
    client: TestClient, admin: dict[str, str], tenant: str, body: dict[str, Any],
    where: list[str], says: str,
) -> None:
    url = f"/tenants/{tenant}/preferences"
    refused = client.put(url, headers=admin, json=body)
    assert refused.status_code == 422
    [problem] = [problem for problem in refused.json()["detail"] if problem["loc"] == where]
    assert says in problem["msg"]
    assert client.get(url, headers=admin).json()["version"] == 0
    assert client.get(f"/tenants/{tenant}/audit", headers=admin).json() == []


def test_a_store_keeps_quiet_hours_of_its_own(
    client: TestClient, admin: dict[str, str], tenant: str,
) -> None:
    url = f"/tenants/{tenant}/stores/centro"
    body: dict[str, Any] = {"name": "Centro", "time_zone": "Europe/Madrid",
                            "quiet_hours": {"start": "22:00", "end": "10:00"}}
    assert client.put(url, headers=admin, json=body).json()["quiet_hours"] == {
        "start": "22:00", "end": "10:00"}
    assert client.get(url, headers=admin).json()["quiet_hours"] == {
        "start": "22:00", "end": "10:00"}
    assert client.put(url, headers=admin, json={**body, "quiet_hours": "off"}
                      ).json()["quiet_hours"] == "off"
    # PUT replaces the store: left out, the tenant's apply again.
    assert client.put(url, headers=admin, json={"name": "Centro", "time_zone": "Europe/Madrid"}
                      ).json()["quiet_hours"] is None
    refused = client.put(url, headers=admin,
                         json={**body, "quiet_hours": {"start": "10:00", "end": "10:00"}})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "quiet_hours", "window"]
    entry = client.get(f"/tenants/{tenant}/audit", params={"limit": 1}, headers=admin).json()[0]
    assert (entry["action"], entry["before"]["quiet_hours"], entry["after"]["quiet_hours"]) == (
        "store.put", "off", None)


# --- the engine, by what was set above -----------------------------------------------

CONFIG = EngineConfig(settings=SCENARIOS,
                      links=Links(base_url="https://t.example", secret="s" * 32))
MAIL = {"channel": "email", "locale": "en-GB",
        "parts": {"subject": "Hello", "html": "<p>Hi</p>{{ unsubscribe_url }}",
                  "text": "Hi {{ unsubscribe_url }}"}}


def _shop(session: Session, tenant: str, entry: dict[str, Any],
          step: dict[str, Any] | None = None) -> None:
    save_template(session, tenant=tenant, key="hello", now=NOW,
                  spec=TemplateSpec.model_validate(MAIL))
    send = {"id": "send", "type": "send", "channels": ["email"], "template": "hello",
            **(step or {})}
    save_scenario(session, tenant=tenant, now=NOW, spec=ScenarioSpec.model_validate(
        {"key": "hello", "name": "Hello", "entry": entry, "steps": [send]}))
    session.commit()


def _customer(session: Session, tenant: str, *, consents: tuple[str, ...] = ("email",),
              **fields: Any) -> int:
    row = create_customer(session, tenant=tenant, now=NOW - timedelta(days=30),
                          data=CustomerCreate(email="ana@example.com", **fields))
    for channel in consents:
        record_consent(session, customer=row, now=NOW - timedelta(days=30),
                       data=ConsentCreate(channel=channel, granted=True, source="web"))
    session.commit()
    assert row.id is not None
    return row.id


def _send_at(session: Session, tenant: str, customer_id: int, at: datetime,
             kind: TriggerKind = TriggerKind.CART_ABANDONED, **attributes: Any) -> Message:
    record_trigger(session, tenant=tenant, customer_id=customer_id, kind=kind,
                   occurred_at=at, source_key=f"t:{customer_id}:{at.isoformat()}", now=at,
                   attributes=attributes)
    session.commit()
    report = process_triggers(session, catalog=Catalog(), config=CONFIG, now=at, limit=100)
    session.commit()
    [message_id] = report.queued
    message = session.get(Message, message_id)
    assert message is not None
    return message


def test_a_send_is_held_by_the_quiet_hours_the_tenant_set(
    client: TestClient, engine: Engine, admin: dict[str, str], tenant: str,
) -> None:
    """The deployment holds this tenant's sends 23:00-08:00 UTC; the shop sets 18:00-10:00
    on Mexico City's clock (UTC-6): a cart abandoned at 01:00 UTC (19:00 there) waits
    until 10:00 there, 16:00 UTC. Switched off, the next batch sends at once."""
    url = f"/tenants/{tenant}/preferences"
    assert client.put(url, headers=admin, json={
        "quiet_hours": {"start": "18:00", "end": "10:00"},
        "time_zone": "America/Mexico_City"}).status_code == 200
    late = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        _shop(session, tenant, {"event": "cart.abandoned"})
        ana = _customer(session, tenant)
        assert _send_at(session, tenant, ana, late).not_before == datetime(
            2026, 11, 24, 16, 0, tzinfo=UTC)
        # A customer's own zone comes before the tenant's: 02:00 in Madrid, held to 10:00.
        bea = _customer(session, tenant, time_zone="Europe/Madrid")
        assert _send_at(session, tenant, bea, late).not_before == datetime(
            2026, 11, 24, 9, 0, tzinfo=UTC)
    assert client.put(url, headers=admin, json={"quiet_hours": "off"}).status_code == 200
    with session_scope(engine) as session:
        cai = _customer(session, tenant)
        assert _send_at(session, tenant, cai, late).not_before == late


def test_a_visit_on_the_night_clocks_go_forward_is_held_by_the_store_on_its_clock(
    client: TestClient, engine: Engine, admin: dict[str, str], tenant: str,
) -> None:
    """The store in New York holds its visits' sends 22:00-08:00; clocks go forward there
    at 02:00 on 8 March 2026. A customer with no zone of their own walks in at 23:30 the
    evening before: their message waits until 08:00 EDT, 12:00 UTC (the tenant's own
    hours, 18:00-07:00 in Madrid, are not the ones for a visit to this store)."""
    assert client.put(f"/tenants/{tenant}/preferences", headers=admin, json={
        "quiet_hours": {"start": "18:00", "end": "07:00"},
        "time_zone": "Europe/Madrid"}).status_code == 200
    assert client.put(f"/tenants/{tenant}/stores/nyc", headers=admin, json={
        "name": "Fifth Avenue", "time_zone": "America/New_York",
        "quiet_hours": {"start": "22:00", "end": "08:00"}}).status_code == 200
    visit = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)  # 23:30 EST on 7 March
    with session_scope(engine) as session:
        _shop(session, tenant, {"event": "presence.enter"}, {"expires_after": "PT12H"})
        ana = _customer(session, tenant, consents=("email", "location_marketing"))
        message = _send_at(session, tenant, ana, visit, TriggerKind.PRESENCE_ENTER,
                           store="nyc", zone="entrance")
    assert message.not_before == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


def test_birthdays_come_round_on_the_tenant_s_clock(
    client: TestClient, engine: Engine, admin: dict[str, str], tenant: str,
) -> None:
    """At 12:00 UTC on 23 November it is already 24 November in Auckland: a customer who
    gave no zone and was born on 24 November has their birthday once the tenant's clock is
    Auckland's, not before (on the deployment's UTC it is still the 23rd)."""
    with session_scope(engine) as session:
        _shop(session, tenant, {"event": "date", "date_field": "birth_date"})
        _customer(session, tenant, birth_date=date(1990, 11, 24))

        def birthdays() -> int:
            catalog = Catalog().tenant(session, tenant)
            found = record_calendar_triggers(session, tenant=tenant, catalog=catalog,
                                             settings=SCENARIOS, now=NOW)
            session.commit()
            return found

        assert birthdays() == 0
        assert client.put(f"/tenants/{tenant}/preferences", headers=admin,
                          json={"time_zone": "Pacific/Auckland"}).status_code == 200
        assert birthdays() == 1
        [found] = session.exec(select(Trigger).where(Trigger.kind == TriggerKind.DATE)).all()
        assert found.attributes["date"] == "2026-11-24"


def test_the_deployment_s_hours_with_seconds_are_shown_to_the_minute(
    engine: Engine, migrated_url: str, tenant: str,
) -> None:
    """The deployment's TOML may say 21:00:30; the API's form has no seconds."""
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, scenarios={
        "quiet_hours": QuietHours(start=time(21, 0, 30), end=time(9))})
    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as client:
        found = client.get(f"/tenants/{tenant}/preferences",
                           headers=bearer(issue_key(engine, tenant=tenant))).json()
    assert found["applies"]["quiet_hours"] == {"start": "21:00", "end": "09:00"}


def test_the_documented_bodies_are_taken_as_written(
    client: TestClient, admin: dict[str, str], tenant: str,
) -> None:
    """docs/scenarios.md, "Quiet hours and the customer's clock"."""
    body = json.loads(snippet("docs/scenarios.md", "preferences-put").text)
    saved = client.put(f"/tenants/{tenant}/preferences", headers=admin, json=body)
    assert saved.status_code == 200, saved.text
    assert (saved.json()["quiet_hours"], saved.json()["time_zone"]) == (
        body["quiet_hours"], body["time_zone"])
    store = json.loads(snippet("docs/scenarios.md", "store-quiet-hours").text)
    answer = client.put(f"/tenants/{tenant}/stores/madrid-centro", headers=admin, json=store)
    assert answer.status_code == 200, answer.text
    assert answer.json()["quiet_hours"] == "off"
