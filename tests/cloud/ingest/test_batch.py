import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import select

from cloud.db import session_scope
from cloud.ingest.batch import Inbound, decode, write_batch
from cloud.metrics import REGISTRY
from cloud.presence.models import DeadLetter
from tests.cloud.factories import (
    START,
    batch_payload,
    make_event,
    many_events,
    occupancy_payload,
    occupancy_topic,
    presence_topic,
    status_payload,
    status_topic,
    wifi_pseudonym,
)


def test_decode_classifies_every_message(tenant: str) -> None:
    events = many_events(tenant=tenant, count=2)
    assert decode(Inbound(presence_topic(tenant), batch_payload(events))).presence is not None
    assert decode(Inbound(status_topic(tenant), status_payload(tenant=tenant))).status is not None
    assert decode(Inbound(status_topic(tenant), b"")).ignored
    report = occupancy_payload(tenant=tenant, minute=START, zones={"floor": 1.5})
    occupancy = decode(Inbound(occupancy_topic(tenant), report)).occupancy
    assert occupancy is not None
    assert occupancy.zones[0].people == 1.5
    refused_report = decode(Inbound(occupancy_topic("nobody"), report), tenants={tenant})
    assert "not configured" in (refused_report.error or "")
    assert "not of the form" in (decode(Inbound("elsewhere/x", b"{}")).error or "")
    config = presence_topic(tenant).replace("/presence", "/config")
    assert "does not consume config" in (decode(Inbound(config, b"{}")).error or "")
    other = status_payload(tenant=tenant, gateway="g9")
    assert "different gateway" in (decode(Inbound(status_topic(tenant), other)).error or "")
    assert decode(Inbound(status_topic("nobody"), b"{}"), tenants={tenant}).ignored
    refused = decode(Inbound(presence_topic("nobody"), b"{}"), tenants={tenant})
    assert "not configured" in (refused.error or "")


def test_a_message_the_database_refuses_is_isolated_as_a_dead_letter(
    engine: Engine, tenant: str
) -> None:
    # Make the database itself refuse one zone name, as a constraint added later might.
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("ALTER TABLE presence_event ADD CONSTRAINT no_poison CHECK (zone <> 'poison')")
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER no_poison BEFORE INSERT ON presence_event "
                    "WHEN NEW.zone = 'poison' BEGIN SELECT RAISE(ABORT, 'poison zone'); END"
                )
            )
    good = many_events(tenant=tenant, count=3)
    poison = make_event(tenant=tenant, pseudonym=wifi_pseudonym("00:1e:c2:00:00:66"), zone="poison")
    batch = [
        Inbound(presence_topic(tenant), batch_payload(good[:2])),
        Inbound(presence_topic(tenant), batch_payload([poison])),
        Inbound(presence_topic(tenant), batch_payload(good[2:])),
        Inbound(presence_topic(tenant), b"garbage"),
    ]
    outcome = write_batch(engine, batch, received_at=START)
    assert outcome.events_new == 3
    assert outcome.dead_letters == 2
    with session_scope(engine) as session:
        reasons = sorted(letter.reason for letter in session.exec(select(DeadLetter)).all())
    assert reasons[0].startswith("presence batch payload is not valid UTF-8 JSON")
    assert reasons[1].startswith("storing the message failed: ")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def mutated_batch(tenant: str) -> st.SearchStrategy[bytes]:
    """A valid batch with one field somewhere replaced, removed or added."""
    base = json.loads(batch_payload(many_events(tenant=tenant, count=2)))
    event_fields = sorted(base["events"][0])
    batch_fields = sorted(key for key in base if key != "events")

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        document = json.loads(json.dumps(base))
        target = draw(st.sampled_from(["batch", "event"]))
        holder = document if target == "batch" else document["events"][draw(st.integers(0, 1))]
        field = draw(st.sampled_from(batch_fields if target == "batch" else event_fields))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            holder[field] = draw(JSON_VALUES)
        elif action == "remove":
            holder.pop(field, None)
        else:
            holder[draw(st.text(max_size=12))] = draw(JSON_VALUES)
        return json.dumps(document).encode()

    return build()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_payloads_end_as_dead_letters_or_valid_events(
    engine: Engine, tenant: str, data: st.DataObject
) -> None:
    payloads = data.draw(
        st.lists(
            st.binary(max_size=300) | mutated_batch(tenant) | st.just(b"{}"),
            min_size=1,
            max_size=5,
        )
    )
    topics = data.draw(
        st.lists(
            st.sampled_from(
                [
                    presence_topic(tenant),
                    status_topic(tenant),
                    "vitrina/v1/x",
                    presence_topic(tenant, gateway="g2"),
                ]
            ),
            min_size=len(payloads),
            max_size=len(payloads),
        )
    )
    inbounds = [Inbound(topic, payload) for topic, payload in zip(topics, payloads, strict=True)]
    outcome = write_batch(
        engine, inbounds, received_at=START, tenants={tenant}
    )
    decoded = [decode(inbound, tenants={tenant}) for inbound in inbounds]
    assert outcome.dead_letters == sum(1 for item in decoded if item.error is not None)
    assert outcome.dead_letters + outcome.statuses + outcome.ignored + sum(
        1 for item in decoded if item.presence is not None
    ) == len(inbounds)


def test_batch_size_and_lag_are_measured(engine: Engine, tenant: str) -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    before = {
        name: sample(name)
        for name in (
            "vitrina_ingest_batch_messages_count",
            "vitrina_ingest_batch_messages_sum",
            "vitrina_ingest_lag_seconds_count",
            "vitrina_ingest_lag_seconds_sum",
        )
    }
    sent_at = datetime.now(UTC) - timedelta(seconds=30)
    inbounds = [
        Inbound(
            presence_topic(tenant),
            batch_payload(many_events(tenant=tenant, count=2, offset=i), sent_at=sent_at),
        )
        for i in (0, 10, 20)
    ]
    write_batch(engine, inbounds, received_at=sent_at)
    assert (
        sample("vitrina_ingest_batch_messages_count")
        == before["vitrina_ingest_batch_messages_count"] + 1
    )
    assert (
        sample("vitrina_ingest_batch_messages_sum")
        == before["vitrina_ingest_batch_messages_sum"] + 3
    )
    assert (
        sample("vitrina_ingest_lag_seconds_count") == before["vitrina_ingest_lag_seconds_count"] + 3
    )
    lag = sample("vitrina_ingest_lag_seconds_sum") - before["vitrina_ingest_lag_seconds_sum"]
    assert 3 * 30 <= lag < 3 * 60
