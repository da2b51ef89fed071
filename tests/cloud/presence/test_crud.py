from datetime import timedelta

from sqlalchemy import Engine, func
from sqlmodel import col, select

from cloud.db import session_scope
from cloud.presence.crud import (
    DEAD_LETTER_MAX_BYTES,
    VISIT_GAP,
    insert_events,
    list_gateways,
    merge_visits,
    recent_dead_letters,
    record_dead_letter,
    store_visits,
    upsert_gateway_status,
)
from cloud.presence.models import DeadLetter, PresenceEventRow
from shared.presence import Transition
from shared.status import GatewayStatus, SourceHealth
from tests.cloud.factories import START, make_event, many_events, wifi_pseudonym


def test_insert_is_idempotent_and_reports_only_new_ids(engine: Engine, tenant: str) -> None:
    events = many_events(tenant=tenant, count=50)
    with session_scope(engine) as session:
        first = insert_events(session, events=events[:30], received_at=START)
        session.commit()
    with session_scope(engine) as session:
        # overlapping redelivery, plus a duplicate inside the same call
        second = insert_events(session, events=[*events[20:], events[45]], received_at=START)
        session.commit()
        stored = session.exec(select(func.count()).select_from(PresenceEventRow)).one()
    assert first == {event.event_id for event in events[:30]}
    assert second == {event.event_id for event in events[30:]}
    assert stored == 50


def test_stored_event_round_trips(engine: Engine, tenant: str) -> None:
    event = make_event(
        tenant=tenant,
        pseudonym=wifi_pseudonym("00:1e:c2:00:00:09"),
        transition=Transition.DWELL,
        zone="tills",
    )
    with session_scope(engine) as session:
        insert_events(session, events=[event], received_at=START)
        session.commit()
        row = session.exec(select(PresenceEventRow)).one()
    assert (row.event_id, row.zone, row.transition, row.scope, row.kind) == (
        event.event_id,
        "tills",
        "dwell",
        "stable",
        "wifi_association",
    )
    assert row.first_seen == event.first_seen
    assert row.last_seen == event.last_seen


def test_dead_letters_keep_a_capped_copy(engine: Engine) -> None:
    with session_scope(engine) as session:
        record_dead_letter(
            session, topic="t/x", payload=b"a" * 10_000, reason="too big", received_at=START
        )
        record_dead_letter(session, topic="t/y", payload=b"{}", reason="r", received_at=START)
        session.commit()
        big, small = session.exec(select(DeadLetter).order_by(col(DeadLetter.id))).all()
    assert (len(big.payload), big.payload_size) == (DEAD_LETTER_MAX_BYTES, 10_000)
    assert big.truncated
    assert (small.payload, small.truncated) == (b"{}", False)


def test_a_tenants_dead_letters_are_those_of_its_gateways_topics(engine: Engine) -> None:
    with session_scope(engine) as session:
        for topic in ("vitrina/v1/shop/s1/g1/presence", "vitrina/v1/shop_2/s1/g1/presence",
                      "vitrina/v1/shopx/s1/g1/presence", "vitrina/v1/shop/s2/g9/status",
                      "elsewhere"):
            record_dead_letter(session, topic=topic, payload=b"x", reason="bad",
                               received_at=START)
        session.commit()
        mine = recent_dead_letters(session, limit=10, tenant="shop")
        every = recent_dead_letters(session, limit=10)
        underscore = recent_dead_letters(session, limit=10, tenant="shop_2")
    assert [letter.topic for letter in mine] == [
        "vitrina/v1/shop/s2/g9/status", "vitrina/v1/shop/s1/g1/presence"]
    assert len(every) == 5
    assert [letter.topic for letter in underscore] == ["vitrina/v1/shop_2/s1/g1/presence"]


def test_gateway_status_upsert_keeps_the_newest(engine: Engine, tenant: str) -> None:
    def report(minutes: int, online: bool) -> GatewayStatus:
        return GatewayStatus(
            tenant=tenant,
            store="s1",
            gateway="g1",
            online=online,
            sent_at=START + timedelta(minutes=minutes),
            sources={"ble": SourceHealth(alive=True, frames=10, errors=0)},
        )

    with session_scope(engine) as session:
        upsert_gateway_status(session, status=report(5, True), received_at=START)
        upsert_gateway_status(session, status=report(1, False), received_at=START)
        session.commit()
    with session_scope(engine) as session:
        [row] = list_gateways(session, tenant=tenant)
    assert row.online is True
    assert row.sources["ble"]["frames"] == 10


def test_visits_merge_across_gateways_and_split_on_a_long_gap(engine: Engine, tenant: str) -> None:
    pseudonym = wifi_pseudonym("00:1e:c2:00:00:01")
    events = [
        make_event(
            tenant=tenant,
            pseudonym=pseudonym,
            gateway="door",
            first_seen=START,
            last_seen=START + timedelta(minutes=2),
        ),
        make_event(
            tenant=tenant,
            pseudonym=pseudonym,
            gateway="back",
            first_seen=START + timedelta(minutes=1),
            last_seen=START + timedelta(minutes=9),
        ),
        # back after a gap longer than VISIT_GAP: a new visit
        make_event(
            tenant=tenant,
            pseudonym=pseudonym,
            gateway="door",
            first_seen=START + timedelta(minutes=9) + VISIT_GAP + timedelta(seconds=1),
        ),
        # another zone of the store
        make_event(
            tenant=tenant,
            pseudonym=pseudonym,
            gateway="back",
            zone="tills",
            first_seen=START + timedelta(minutes=3),
        ),
    ]
    with session_scope(engine) as session:
        insert_events(session, events=events, received_at=START)
        session.commit()
        per_zone = store_visits(
            session, tenant=tenant, store="s1", since=START, until=START + timedelta(hours=1)
        )
        whole_store = store_visits(
            session,
            tenant=tenant,
            store="s1",
            since=START,
            until=START + timedelta(hours=1),
            by_zone=False,
        )
    floor = [visit for visit in per_zone if visit.zone == "floor"]
    assert len(floor) == 2
    assert floor[0].gateways == frozenset({"door", "back"})
    assert floor[0].dwell_s == 9 * 60
    assert floor[0].events == 2
    assert len(whole_store) == 2
    assert whole_store[0].events == 3


def test_merge_visits_of_nothing_is_nothing() -> None:
    assert merge_visits([]) == []
