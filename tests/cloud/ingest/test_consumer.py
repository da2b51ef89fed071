from collections.abc import Iterator
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import Engine, func
from sqlmodel import col, select

from cloud.api import create_app
from cloud.db import session_scope
from cloud.metrics import REGISTRY
from cloud.presence.models import DeadLetter, GatewayHealth, OccupancyMinute, PresenceEventRow
from provisioning.local_broker import LocalBroker, start_amqtt, stop_process
from shared.presence import MAX_PAYLOAD_BYTES
from tests.cloud.factories import (
    OPERATOR_KEY,
    START,
    batch_payload,
    bearer,
    cloud_settings,
    issue_key,
    many_events,
    occupancy_payload,
    occupancy_topic,
    presence_topic,
    status_payload,
    status_topic,
)
from tests.cloud.running import publish_all, publisher, running_worker, wait_for


def count(engine: Engine, model: type, tenant: str | None = None) -> int:
    with session_scope(engine) as session:
        query = select(func.count()).select_from(model)
        if tenant is not None and model is PresenceEventRow:
            query = query.where(PresenceEventRow.tenant == tenant)
        return int(session.exec(query).one())


def test_presence_is_stored_once_even_when_published_twice(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    events = many_events(tenant=tenant, count=1200)
    messages = [
        (presence_topic(tenant), batch_payload(events[i : i + 300]))
        for i in range(0, len(events), 300)
    ]
    with running_worker(settings, engine) as worker, publisher(broker) as client:
        publish_all(client, messages)
        publish_all(client, messages[:2])  # a gateway republishing after a lost PUBACK
        wait_for(lambda: worker.totals.events_duplicate >= 600, what="duplicates handled")
    assert count(engine, PresenceEventRow, tenant) == 1200
    assert worker.totals.events_new == 1200


def test_bad_payloads_become_dead_letters_and_the_worker_goes_on(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    good = many_events(tenant=tenant, count=3)
    other_gateway = many_events(tenant=tenant, count=1, gateway="g2")
    bad = [
        (presence_topic(tenant), b"\xff\xfe not json"),
        (presence_topic(tenant), b'{"schema_version": "2.0", "events": []}'),
        (presence_topic(tenant), b"[1, 2, 3]"),
        (presence_topic(tenant), b"x" * (MAX_PAYLOAD_BYTES + 1)),
        (presence_topic(tenant), batch_payload(other_gateway)),  # speaks for another gateway
        (status_topic(tenant), b'{"schema_version": "1.0", "online": "maybe"}'),
    ]
    before = REGISTRY.get_sample_value("vitrina_dead_letters_total", {"channel": "presence"}) or 0
    with running_worker(settings, engine) as worker, publisher(broker) as client:
        publish_all(client, [*bad, (presence_topic(tenant), batch_payload(good))])
        wait_for(lambda: worker.totals.events_new == 3, what="good batch stored")
        wait_for(lambda: worker.totals.dead_letters == len(bad), what="dead letters")
    with session_scope(engine) as session:
        letters = session.exec(select(DeadLetter).order_by(col(DeadLetter.id))).all()
    reasons = [letter.reason for letter in letters]
    assert any("not valid UTF-8 JSON" in reason for reason in reasons)
    assert any("schema_version 2.0 is not supported" in reason for reason in reasons)
    assert any("must be a JSON object" in reason for reason in reasons)
    assert any("different gateway than its topic" in reason for reason in reasons)
    assert any("invalid gateway status" in reason for reason in reasons)
    oversized = next(letter for letter in letters if letter.payload_size > MAX_PAYLOAD_BYTES)
    assert oversized.truncated
    assert len(oversized.payload) == 4096
    after = REGISTRY.get_sample_value("vitrina_dead_letters_total", {"channel": "presence"}) or 0
    assert after - before == 5
    with TestClient(create_app(settings, engine=engine), headers=bearer(OPERATOR_KEY)) as api:
        listed = api.get("/dead-letters", params={"limit": 3}).json()
    assert [item["id"] for item in listed] == [letter.id for letter in letters][::-1][:3]
    assert "payload" not in listed[0]


def test_gateway_status_keeps_the_newest_report(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    with publisher(broker) as client:
        # Retained before the worker exists: the subscription delivers it.
        publish_all(
            client,
            [
                (
                    status_topic(tenant),
                    status_payload(
                        tenant=tenant,
                        sent_at=START,
                        queue_depth=7,
                        software_version="1.2.0",
                    ),
                )
            ],
            retain=True,
        )
        with running_worker(settings, engine) as worker:
            wait_for(lambda: worker.totals.statuses >= 1, what="retained status")
            publish_all(
                client,
                [
                    (
                        status_topic(tenant),
                        status_payload(
                            tenant=tenant,
                            online=False,
                            sent_at=START + timedelta(minutes=5),
                        ),
                    ),
                    # An older report arriving late must not overwrite the newer one.
                    (
                        status_topic(tenant),
                        status_payload(
                            tenant=tenant,
                            online=True,
                            sent_at=START + timedelta(minutes=1),
                        ),
                    ),
                ],
            )
            wait_for(lambda: worker.totals.statuses >= 3, what="two more statuses")
        publish_all(client, [(status_topic(tenant), b"")], retain=True)  # clear the retained copy
    with session_scope(engine) as session:
        row = session.exec(select(GatewayHealth).where(GatewayHealth.tenant == tenant)).one()
    assert row.online is False
    assert row.status_sent_at == START + timedelta(minutes=5)
    assert row.software_version == ""


def test_messages_published_while_the_worker_is_away_are_delivered_later(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    events = many_events(tenant=tenant, count=400)
    with running_worker(settings, engine, end_session=False):
        pass  # creates the persistent session and its subscription
    with publisher(broker) as client:
        publish_all(
            client,
            [
                (presence_topic(tenant), batch_payload(events[i : i + 100]))
                for i in range(0, 400, 100)
            ],
        )
    with running_worker(settings, engine) as worker:
        wait_for(lambda: worker.totals.events_new == 400, what="queued messages")
    assert count(engine, PresenceEventRow, tenant) == 400


def test_presence_of_a_tenant_not_served_here_is_refused(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    stranger = f"{tenant}-x"
    with running_worker(settings, engine) as worker, publisher(broker) as client:
        publish_all(
            client,
            [
                (presence_topic(stranger), batch_payload(many_events(tenant=stranger, count=2))),
                (status_topic(stranger), status_payload(tenant=stranger)),
                (presence_topic(tenant), batch_payload(many_events(tenant=tenant, count=2))),
            ],
        )
        wait_for(lambda: worker.totals.events_new == 2, what="own tenant stored")
        wait_for(lambda: worker.totals.dead_letters == 1, what="stranger refused")
        wait_for(lambda: worker.totals.ignored >= 1, what="stranger status ignored")
    with session_scope(engine) as session:
        letter = session.exec(select(DeadLetter)).one()
        assert "is not configured here" in letter.reason
        assert session.exec(select(GatewayHealth)).all() == []


@pytest.fixture(scope="module")
def mqtt311_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """amqtt: an MQTT 3.1.1-only broker, what the demo falls back to without Mosquitto."""
    broker, process = start_amqtt(workdir=tmp_path_factory.mktemp("amqtt"))
    yield broker
    stop_process(process)


def test_an_mqtt_311_broker_works_without_shared_subscriptions(
    mqtt311_broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(
        tenant=tenant, database_url=migrated_url,
        mqtt={"host": mqtt311_broker.host, "port": mqtt311_broker.port, "mqtt_v5": False,
              "shared_subscription": False, "client_id": f"w311-{tenant}"},
    )
    events = many_events(tenant=tenant, count=300)
    with running_worker(settings, engine) as worker:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
        client.connect(mqtt311_broker.host, mqtt311_broker.port)
        client.loop_start()
        try:
            publish_all(client, [
                (presence_topic(tenant), batch_payload(events[i : i + 100]))
                for i in range(0, 300, 100)
            ])
            wait_for(lambda: worker.totals.events_new == 300, what="events over MQTT 3.1.1")
        finally:
            client.disconnect()
            client.loop_stop()
    assert count(engine, PresenceEventRow, tenant) == 300


def test_occupancy_reports_are_stored_once_per_minute_and_bad_ones_dead_lettered(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    hour = START
    reports = [
        (occupancy_topic(tenant), occupancy_payload(
            tenant=tenant, minute=hour + timedelta(minutes=minute),
            zones={"door": 1.0, "floor": 2.0 + minute})) for minute in range(3)
    ] + [
        (occupancy_topic(tenant, gateway="g2"), occupancy_payload(
            tenant=tenant, gateway="g2", minute=hour, zones={"floor": 0.5})),
        (occupancy_topic(tenant), occupancy_payload(  # nobody heard: a row of zeros
            tenant=tenant, minute=hour + timedelta(minutes=3))),
    ]
    again = (occupancy_topic(tenant), occupancy_payload(  # sent again, corrected
        tenant=tenant, minute=hour, zones={"door": 1.0, "floor": 4.0}))
    bad = [
        (occupancy_topic(tenant), b"{not json"),
        (occupancy_topic(tenant), occupancy_payload(tenant=tenant, gateway="g9", minute=hour)),
        (occupancy_topic(tenant), occupancy_payload(tenant=tenant, minute=hour).replace(
            b'"window_s":60', b'"window_s":61')),
        (occupancy_topic(tenant), b'{"schema_version": "9.0"}'),
    ]
    before = REGISTRY.get_sample_value("vitrina_dead_letters_total",
                                       {"channel": "occupancy"}) or 0
    with running_worker(settings, engine) as worker, publisher(broker) as client:
        publish_all(client, [*reports, *bad])
        wait_for(lambda: worker.totals.occupancy_reports == len(reports), what="reports")
        publish_all(client, [again])
        wait_for(lambda: worker.totals.occupancy_reports == len(reports) + 1, what="resent")
        wait_for(lambda: worker.totals.dead_letters == len(bad), what="dead letters")
    after = REGISTRY.get_sample_value("vitrina_dead_letters_total", {"channel": "occupancy"})
    assert (after or 0) - before == len(bad)
    with session_scope(engine) as session:
        rows = session.exec(select(OccupancyMinute).where(
            col(OccupancyMinute.tenant) == tenant)).all()
    assert len(rows) == 3 * 3 + 2 + 1  # zones and whole per report, the empty minute whole
    admin = bearer(issue_key(engine, tenant=tenant))
    with TestClient(create_app(settings, engine=engine), headers=admin) as api:
        url = f"/tenants/{tenant}/analytics/occupancy"
        window = {"since": hour.isoformat(), "until": (hour + timedelta(hours=1)).isoformat()}
        minutes = api.get(url, params={**window, "resolution": "minute"})
        hourly = api.get(url, params=window)
        floor = api.get(url, params={**window, "resolution": "minute", "zone": "floor"})
        wrong = api.get(url, params={**window, "since": (hour + timedelta(seconds=30)).isoformat()})
    assert minutes.status_code == 200, minutes.text
    assert [(row["people"], row["addresses"]) for row in minutes.json()] == [
        (5.5, 30.0), (4.0, 20.0), (5.0, 20.0), (0.0, 0.0)]  # g1 + g2 in the first minute
    [whole] = hourly.json()
    assert (whole["store"], whole["zone"], whole["minutes"]) == ("s1", None, 4)
    assert (whole["people"], whole["peak_people"]) == (3.62, 5.5)
    assert [row["people"] for row in floor.json()] == [4.5, 3.0, 4.0]
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["query", "since"]
