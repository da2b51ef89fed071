from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from cloud.customers import crud
from cloud.customers.models import (
    ConsentChannel,
    ConsentCreate,
    CustomerCreate,
    Device,
    FcmRegistration,
    WifiMacRegistration,
)
from cloud.db import session_scope
from cloud.delivery.fcm import FcmSender
from cloud.ingest.consumer import PresenceConsumer
from cloud.messages.crud import claim_message
from cloud.messages.models import Message, MessageChannel, MessageStatus
from cloud.recognition import RULE, resume_pending
from cloud.settings import RecognitionSettings
from provisioning.local_broker import LocalBroker
from sandbox.fcm import FcmSandbox, Outcome, make_token
from shared.presence import PseudonymScope, Transition
from tests.cloud.factories import (
    PSEUDONYMIZER,
    START,
    batch_payload,
    cloud_settings,
    make_event,
    presence_topic,
    wifi_pseudonym,
)
from tests.cloud.running import WAIT_S, publish_all, publisher, running_worker, wait_for

MAC = "00:1e:c2:aa:bb:01"
TOKENS = (make_token("phone"), make_token("tablet"))


def make_customer(
    engine: Engine, tenant: str, *, consents: Sequence[ConsentChannel],
    tokens: Sequence[str] = TOKENS, mac: str = MAC,
) -> int:
    with session_scope(engine) as session:
        customer = crud.create_customer(
            session, tenant=tenant, data=CustomerCreate(first_name="Juan"), now=START
        )
        for channel in consents:
            crud.record_consent(
                session, customer=customer,
                data=ConsentCreate(channel=channel, granted=True, source="app"), now=START,
            )
        for token in tokens:
            crud.register_device(
                session, customer=customer, registration=FcmRegistration(kind="fcm", token=token),
                pseudonymizers=[PSEUDONYMIZER], now=START,
            )
        crud.register_device(
            session, customer=customer, registration=WifiMacRegistration(kind="wifi_mac", mac=mac),
            pseudonymizers=[PSEUDONYMIZER], now=START,
        )
        session.commit()
        assert customer.id is not None
        return customer.id


def messages(engine: Engine, customer_id: int) -> list[Message]:
    with session_scope(engine) as session:
        return list(session.exec(
            select(Message).where(Message.customer_id == customer_id).order_by(col(Message.id))
        ).all())


ALL = (ConsentChannel.PUSH, ConsentChannel.LOCATION_MARKETING)


def worker_for(
    tenant: str, url: str, broker: LocalBroker, engine: Engine, sender: FcmSender
) -> AbstractContextManager[PresenceConsumer]:
    settings = cloud_settings(tenant=tenant, database_url=url, broker=broker)
    return running_worker(settings, engine, sender=sender)


def received(server: FcmSandbox) -> list[dict[str, Any]]:
    return [item.message for item in server.received.snapshot()]


def test_consenting_customer_entering_gets_one_push_per_token_once(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: FcmSender,
    fcm_server: FcmSandbox,
) -> None:
    customer_id = make_customer(engine, tenant, consents=ALL)
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC), store="madrid-1")
    payload = batch_payload([enter])
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant, "madrid-1"), payload)])
        fcm_server.wait_for(2, timeout_s=WAIT_S)
        publish_all(client, [(presence_topic(tenant, "madrid-1"), payload)])  # redelivery
        wait_for(lambda: worker.totals.events_duplicate == 1, what="redelivery handled")
    pushes = received(fcm_server)
    assert sorted(push["token"] for push in pushes) == sorted(TOKENS)
    assert "madrid-1" in pushes[0]["notification"]["title"]
    assert pushes[0]["data"]["rule"] == RULE
    rows = messages(engine, customer_id)
    assert [row.status for row in rows] == [MessageStatus.SENT, MessageStatus.SENT]
    assert {row.provider_message_id for row in rows} == {
        item.name for item in fcm_server.received.snapshot()
    }
    assert {row.visit_start for row in rows} == {enter.first_seen}
    assert {push["data"]["message_id"] for push in pushes} == {str(row.id) for row in rows}


@pytest.mark.parametrize(
    "consents",
    [
        (),
        (ConsentChannel.PUSH,),
        (ConsentChannel.LOCATION_MARKETING,),
    ],
    ids=["none", "push-only", "location-only"],
)
def test_without_both_consents_nothing_is_sent(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: FcmSender,
    fcm_server: FcmSandbox, consents: tuple[ConsentChannel, ...],
) -> None:
    customer_id = make_customer(engine, tenant, consents=consents)
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC))
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant), batch_payload([enter]))])
        wait_for(lambda: worker.totals.events_new == 1, what="event stored")
    assert fcm_server.received.snapshot() == []
    assert messages(engine, customer_id) == []


def test_withdrawn_consent_stops_the_push(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: FcmSender,
    fcm_server: FcmSandbox,
) -> None:
    customer_id = make_customer(engine, tenant, consents=ALL)
    with session_scope(engine) as session:
        customer = crud.get_customer(session, tenant=tenant, customer_id=customer_id)
        assert customer is not None
        crud.record_consent(
            session, customer=customer, now=START + timedelta(minutes=1),
            data=ConsentCreate(channel=ConsentChannel.LOCATION_MARKETING, granted=False,
                               source="app-settings"),
        )
        session.commit()
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC))
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant), batch_payload([enter]))])
        wait_for(lambda: worker.totals.events_new == 1, what="event stored")
    assert fcm_server.received.snapshot() == []


def test_one_visit_seen_by_two_gateways_is_greeted_once_and_a_later_visit_again(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: FcmSender,
    fcm_server: FcmSandbox,
) -> None:
    make_customer(engine, tenant, consents=ALL, tokens=TOKENS[:1])
    pseudonym = wifi_pseudonym(MAC)
    door = make_event(tenant=tenant, pseudonym=pseudonym, gateway="door",
                      first_seen=START + timedelta(seconds=20))
    back = make_event(tenant=tenant, pseudonym=pseudonym, gateway="back", zone="tills",
                      first_seen=START)  # earlier start, reported later
    tomorrow = make_event(tenant=tenant, pseudonym=pseudonym, gateway="door",
                          first_seen=START + timedelta(days=1))
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant, gateway="door"), batch_payload([door]))])
        fcm_server.wait_for(1, timeout_s=WAIT_S)
        publish_all(client, [(presence_topic(tenant, gateway="back"), batch_payload([back]))])
        wait_for(lambda: worker.totals.events_new == 2, what="second gateway's enter")
        publish_all(client, [(presence_topic(tenant, gateway="door"), batch_payload([tomorrow]))])
        fcm_server.wait_for(2, timeout_s=WAIT_S)
    assert len(fcm_server.received.snapshot()) == 2


def test_only_enters_of_stable_pseudonyms_count(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: FcmSender,
    fcm_server: FcmSandbox,
) -> None:
    make_customer(engine, tenant, consents=ALL)
    pseudonym = wifi_pseudonym(MAC)
    dwell = make_event(tenant=tenant, pseudonym=pseudonym, transition=Transition.DWELL)
    exit_ = make_event(tenant=tenant, pseudonym=pseudonym, transition=Transition.EXIT)
    daily = make_event(tenant=tenant, pseudonym=pseudonym, scope=PseudonymScope.DAILY,
                       first_seen=START + timedelta(hours=1))
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant), batch_payload([dwell, exit_, daily]))])
        wait_for(lambda: worker.totals.events_new == 3, what="events stored")
    assert fcm_server.received.snapshot() == []


def test_a_dead_token_is_deactivated_and_the_failure_recorded(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: FcmSender,
    fcm_server: FcmSandbox,
) -> None:
    fcm_server.script(TOKENS[1], then=Outcome.UNREGISTERED)
    customer_id = make_customer(engine, tenant, consents=ALL)
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC))
    with worker_for(tenant, migrated_url, broker, engine, sender), \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant), batch_payload([enter]))])
        wait_for(lambda: len(messages(engine, customer_id)) == 2
                 and all(m.status != MessageStatus.PENDING for m in messages(engine, customer_id)),
                 what="outcomes recorded")
    rows = messages(engine, customer_id)
    assert sorted(row.status for row in rows) == [MessageStatus.FAILED, MessageStatus.SENT]
    failed = next(row for row in rows if row.status == MessageStatus.FAILED)
    assert failed.error_code == "UNREGISTERED"
    with session_scope(engine) as session:
        device = session.get(Device, failed.device_id)
        assert device is not None
        assert device.active is False
        assert device.deactivation_reason is not None
        assert "UNREGISTERED" in device.deactivation_reason
    assert RULE == "recognised_in_store"


def test_a_push_left_pending_is_resent_once_and_stale_ones_are_given_up(
    engine: Engine, tenant: str, sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    customer_id = make_customer(engine, tenant, consents=ALL, tokens=TOKENS[:1])
    with session_scope(engine) as session:
        [device] = crud.active_push_devices(session, customer_id=customer_id)
        ids = [
            claim_message(
                session, tenant=tenant, customer_id=customer_id, device_id=device.id,
                channel=MessageChannel.PUSH, rule=RULE, idempotency_key=f"k-{age}",
                title="Welcome", body="b", now=START - timedelta(minutes=age), store="s1",
            )
            for age in (5, 45)  # stranded 5 minutes ago; stranded too long ago
        ]
        session.commit()
    settings = RecognitionSettings()
    clock = lambda: START  # noqa: E731
    grace = timedelta(minutes=1)
    assert resume_pending(engine, sender=sender, settings=settings, now=clock, grace=grace) == 1
    assert resume_pending(engine, sender=sender, settings=settings, now=clock, grace=grace) == 0
    [push] = fcm_server.received.snapshot()
    assert push.message["data"]["message_id"] == str(ids[0])
    rows = {row.id: row for row in messages(engine, customer_id)}
    assert rows[ids[0]].status == MessageStatus.SENT
    assert rows[ids[0]].attempts == 2
    assert (rows[ids[1]].status, rows[ids[1]].error_code) == (MessageStatus.FAILED, "expired")


def test_a_pending_push_is_not_resent_after_consent_is_withdrawn(
    engine: Engine, tenant: str, sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    customer_id = make_customer(engine, tenant, consents=ALL, tokens=TOKENS[:1])
    with session_scope(engine) as session:
        [device] = crud.active_push_devices(session, customer_id=customer_id)
        claim_message(
            session, tenant=tenant, customer_id=customer_id, device_id=device.id,
            channel=MessageChannel.PUSH, rule=RULE, idempotency_key="k", title="t", body="b",
            now=START - timedelta(minutes=5), store="s1",
        )
        customer = crud.get_customer(session, tenant=tenant, customer_id=customer_id)
        assert customer is not None
        crud.record_consent(session, customer=customer, now=START, data=ConsentCreate(
            channel=ConsentChannel.PUSH, granted=False, source="app-settings"))
        session.commit()
    assert resume_pending(engine, sender=sender, settings=RecognitionSettings(),
                          now=lambda: START, grace=timedelta(minutes=1)) == 0
    assert fcm_server.received.snapshot() == []
    [row] = messages(engine, customer_id)
    assert (row.status, row.error_code) == (MessageStatus.FAILED, "no_consent")
