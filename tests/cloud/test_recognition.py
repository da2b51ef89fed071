from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import timedelta

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
from cloud.ingest.consumer import PresenceConsumer
from cloud.messages.models import Message, MessageStatus
from cloud.recognition import RULE
from provisioning.local_broker import LocalBroker
from shared.presence import PseudonymScope, Transition
from tests.cloud.conftest import RecordingSender
from tests.cloud.factories import (
    PSEUDONYMIZER,
    START,
    batch_payload,
    cloud_settings,
    make_event,
    presence_topic,
    wifi_pseudonym,
)
from tests.cloud.running import publish_all, publisher, running_worker, wait_for

MAC = "00:1e:c2:aa:bb:01"
TOKENS = ("fcm-token-aaaaaaaaaaaaaaaa", "fcm-token-bbbbbbbbbbbbbbbb")


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
    tenant: str, url: str, broker: LocalBroker, engine: Engine, sender: RecordingSender
) -> AbstractContextManager[PresenceConsumer]:
    settings = cloud_settings(tenant=tenant, database_url=url, broker=broker)
    return running_worker(settings, engine, sender=sender)


def test_consenting_customer_entering_gets_one_push_per_token_once(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: RecordingSender
) -> None:
    customer_id = make_customer(engine, tenant, consents=ALL)
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC), store="madrid-1")
    payload = batch_payload([enter])
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant, "madrid-1"), payload)])
        wait_for(lambda: len(sender.sent) == 2, what="two pushes")
        publish_all(client, [(presence_topic(tenant, "madrid-1"), payload)])  # redelivery
        wait_for(lambda: worker.totals.events_duplicate == 1, what="redelivery handled")
    assert sorted(message.token for message in sender.sent) == sorted(TOKENS)
    assert "madrid-1" in sender.sent[0].title
    rows = messages(engine, customer_id)
    assert [row.status for row in rows] == [MessageStatus.SENT, MessageStatus.SENT]
    assert all(row.provider_message_id for row in rows)
    assert {row.visit_start for row in rows} == {enter.first_seen}
    assert len({row.idempotency_key for row in rows}) == 2
    assert sender.sent[0].idempotency_key in {row.idempotency_key for row in rows}


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
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: RecordingSender,
    consents: tuple[ConsentChannel, ...],
) -> None:
    customer_id = make_customer(engine, tenant, consents=consents)
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC))
    with worker_for(tenant, migrated_url, broker, engine, sender) as worker, \
            publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant), batch_payload([enter]))])
        wait_for(lambda: worker.totals.events_new == 1, what="event stored")
    assert sender.sent == []
    assert messages(engine, customer_id) == []


def test_withdrawn_consent_stops_the_push(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: RecordingSender
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
    assert sender.sent == []


def test_one_visit_seen_by_two_gateways_is_greeted_once_and_a_later_visit_again(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: RecordingSender
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
        wait_for(lambda: len(sender.sent) == 1, what="first greeting")
        publish_all(client, [(presence_topic(tenant, gateway="back"), batch_payload([back]))])
        wait_for(lambda: worker.totals.events_new == 2, what="second gateway's enter")
        publish_all(client, [(presence_topic(tenant, gateway="door"), batch_payload([tomorrow]))])
        wait_for(lambda: len(sender.sent) == 2, what="next day's greeting")
    assert len(sender.sent) == 2


def test_only_enters_of_stable_pseudonyms_count(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str, sender: RecordingSender
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
    assert sender.sent == []


def test_a_dead_token_is_deactivated_and_the_failure_recorded(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    sender = RecordingSender(dead_tokens=[TOKENS[1]])
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
