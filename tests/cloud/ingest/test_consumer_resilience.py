"""The delivery guarantee under stress: killed workers, a restarting database, and two
workers sharing the stream. Every event must be stored exactly once, every push sent
exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from cloud.channels.fcm import FcmSettings
from cloud.customers import crud
from cloud.customers.models import (
    ConsentCreate,
    CustomerCreate,
    FcmRegistration,
    WifiMacRegistration,
)
from cloud.db import make_engine, migrate, session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.metrics import REGISTRY
from cloud.presence.crud import list_gateways
from cloud.presence.models import PresenceEventRow
from cloud.scenarios.catalog import save_scenario
from cloud.scenarios.spec import ScenarioSpec
from cloud.templates import TemplateSpec
from cloud.templates.crud import save_template
from demo.welcome import SCENARIO, TEMPLATE_KEY, TEMPLATE_PARTS
from provisioning.local_broker import LocalBroker
from sandbox.fcm import FcmSandbox, make_token
from shared.presence import PresenceEvent
from tests.cloud.factories import (
    MAC_OF,
    PSEUDONYMIZER,
    START,
    batch_payload,
    cloud_settings,
    make_event,
    many_events,
    presence_topic,
    status_payload,
    status_topic,
    wifi_pseudonym,
)
from tests.cloud.private_postgres import private_postgres
from tests.cloud.running import WAIT_S, publish_all, publisher, running_worker, wait_for
from tests.cloud.test_cli import environment

PER_MESSAGE = 250
#: Loaded CI machines are slow; the stream must still drain well within this.
DRAIN_S = 120.0


def stored(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.count()).select_from(PresenceEventRow)).one())


def stream(tenant: str, count: int) -> list[tuple[str, bytes]]:
    events = many_events(tenant=tenant, count=count)
    return [
        (presence_topic(tenant), batch_payload(events[i : i + PER_MESSAGE]))
        for i in range(0, count, PER_MESSAGE)
    ]


def test_two_workers_share_the_stream_exactly_once(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    messages = stream(tenant, 40 * 50)
    with running_worker(settings, engine, client_id=f"{tenant}-a") as first, \
            running_worker(settings, engine, client_id=f"{tenant}-b") as second, \
            publisher(broker) as client:
        publish_all(client, messages)
        wait_for(lambda: first.totals.events_new + second.totals.events_new == 2000,
                 what="all events stored", timeout=DRAIN_S)
    assert first.totals.events_new > 0
    assert second.totals.events_new > 0
    assert first.totals.events_duplicate + second.totals.events_duplicate == 0
    assert stored(engine) == 2000


def customer_in_stream(engine: Engine, tenant: str, token: str) -> PresenceEvent:
    with session_scope(engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=START)
        for channel in ("push", "location_marketing"):
            crud.record_consent(session, customer=customer, now=START, data=ConsentCreate(
                channel=channel, granted=True, source="app"))
        crud.register_device(session, customer=customer, pseudonymizers=[PSEUDONYMIZER],
                             now=START, registration=FcmRegistration(kind="fcm", token=token))
        crud.register_device(session, customer=customer, pseudonymizers=[PSEUDONYMIZER],
                             now=START, registration=WifiMacRegistration(
                                 kind="wifi_mac", mac=MAC_OF["juan"]))
        save_template(session, tenant=tenant, key=TEMPLATE_KEY, now=START,
                      spec=TemplateSpec.model_validate({"channel": "push", "locale": "en-GB",
                                                        "parts": TEMPLATE_PARTS}))
        save_scenario(session, tenant=tenant, spec=ScenarioSpec.model_validate(SCENARIO),
                      now=START)
        session.commit()
    return make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC_OF["juan"]))


@pytest.fixture
def worker_process(
    migrated_url: str, tenant: str, broker: LocalBroker, fcm_settings: FcmSettings,
    tmp_path: Path,
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts `vitrina-cloud worker` processes (same client id: the same session)."""
    processes: list[subprocess.Popen[bytes]] = []
    env = environment(database_url=migrated_url, tenant=tenant, broker=broker, fcm=fcm_settings)
    env["VITRINA_MQTT__SESSION_EXPIRY_S"] = "300"
    env["VITRINA_DELIVERY__POLL_INTERVAL_S"] = "0.2"  # a stranded push is resent soon
    # Small transactions, so the kill lands between commits rather than after the last.
    env["VITRINA_INGEST__BATCH_MESSAGES"] = "4"

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-c", "from cloud.cli import main; main()", "worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_worker_killed_under_load_loses_nothing_and_sends_once(
    worker_process: Callable[[], subprocess.Popen[bytes]], engine: Engine, tenant: str,
    broker: LocalBroker, fcm_server: FcmSandbox,
) -> None:
    start = worker_process
    token = make_token("juan")
    juan = customer_in_stream(engine, tenant, token)
    messages = stream(tenant, 60 * PER_MESSAGE)
    messages.insert(len(messages) // 2, (presence_topic(tenant), batch_payload([juan])))
    total = 60 * PER_MESSAGE + 1
    first = start()
    with publisher(broker) as client:
        # Up once its subscription delivers a status report into the database.
        def up() -> bool:
            publish_all(client, [(status_topic(tenant), status_payload(tenant=tenant))])
            with session_scope(engine) as session:
                return bool(list_gateways(session, tenant=tenant))

        wait_for(up, what="worker subscribed", timeout=60)
        publish_all(client, messages)
        wait_for(lambda: stored(engine) >= total // 4, what="ingest under way", timeout=DRAIN_S)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = stored(engine)
        second = start()
        wait_for(lambda: stored(engine) == total, what="every event stored", timeout=DRAIN_S)
        fcm_server.wait_for(1, timeout_s=WAIT_S)
        time.sleep(1.0)  # anything sent twice would arrive by now
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert at_kill < total, "the kill came too late to test anything"
    assert stored(engine) == total
    assert [message.token for message in fcm_server.received.snapshot()] == [token]
    with session_scope(engine) as session:
        rows = session.exec(select(Message)).all()
    assert [row.status for row in rows] == [MessageStatus.SENT]


def test_the_worker_waits_for_a_restarting_database_and_resumes(
    broker: LocalBroker, tenant: str
) -> None:
    with private_postgres() as server:
        migrate(server.url)
        engine = make_engine(server.url)
        settings = cloud_settings(tenant=tenant, database_url=server.url, broker=broker)
        messages = stream(tenant, 80 * PER_MESSAGE)
        total = 80 * PER_MESSAGE
        try:
            with running_worker(settings, engine) as worker, publisher(broker) as client:
                publish_all(client, messages[:20])
                wait_for(lambda: worker.totals.events_new >= 20 * PER_MESSAGE,
                         what="first part stored", timeout=DRAIN_S)
                retries = REGISTRY.get_sample_value("vitrina_database_retries_total") or 0
                server.stop()
                publish_all(client, messages[20:])
                wait_for(
                    lambda: (REGISTRY.get_sample_value("vitrina_database_retries_total") or 0)
                    > retries,
                    what="the worker meeting the stopped database",
                )
                server.start()
                wait_for(lambda: worker.totals.events_new == total, what="the rest stored",
                         timeout=DRAIN_S)
            assert stored(engine) == total
            assert worker.totals.events_duplicate == 0
        finally:
            engine.dispose()
