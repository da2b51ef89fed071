"""Gateway configs the broker could not take are delivered by the worker; configs a live
gateway does not acknowledge are published again, backing off; two workers never publish
one config at once. On a real Mosquitto with dynamic security that the test stops and
starts, with the real gateway agent acknowledging in its heartbeat."""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db import session_scope
from cloud.delivery import gateway_configs
from cloud.delivery.gateway_configs import (
    UNACKNOWLEDGED_AFTER,
    ConfigPublisher,
    Reason,
    claim_due,
    settle,
)
from cloud.delivery.worker import delivery_worker
from cloud.gateways.crud import register_gateway, save_config
from cloud.gateways.models import GatewayConfigUpdate, RegisteredGateway
from cloud.metrics import REGISTRY
from cloud.presence.models import GatewayHealth
from provisioning.broker_security import BrokerFiles, DynsecAdmin, provision_broker
from provisioning.local_broker import free_port, start_mosquitto, stop_process
from shared.status import decode_gateway_config
from tests.cloud.gateway_support import (
    STORE,
    gateway_cloud_settings,
    gateway_login,
    make_cloud,
    running_agent,
    write_bundle,
)
from tests.cloud.running import running_loop, running_worker, wait_for

T0 = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)


def publishes(reason: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("vitrina_gateway_config_publishes_total",
                                      {"reason": reason, "outcome": outcome})
    return value or 0.0


class StoppableBroker:
    """A secure Mosquitto of the test's own, which it can stop and start again on the
    same port with the same logins (dynamic security keeps them in its file)."""

    def __init__(self, directory: Path) -> None:
        self.files = provision_broker(directory, port=free_port(),
                                      hostnames=["localhost", "127.0.0.1"])
        #: Read once: starting writes the running config over the same file.
        self._config = self.files.config.read_text()
        self._process: subprocess.Popen[bytes] | None = None
        self.start()
        with DynsecAdmin(host="localhost", port=self.files.port, admin=self.files.admin,
                         ca_file=self.files.ca_certificate) as control:
            control.lock_down()

    def start(self) -> None:
        _running, self._process = start_mosquitto(
            workdir=self.files.directory, port=self.files.port,
            config_text=self._config)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[StoppableBroker]:
    broker = StoppableBroker(tmp_path / "broker")
    try:
        yield broker
    finally:
        broker.stop()


def test_a_config_saved_while_the_broker_is_down_is_sent_by_the_worker_and_acknowledged(
    engine: Engine, migrated_url: str, tenant: str, own_broker: StoppableBroker,
    tmp_path: Path,
) -> None:
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=own_broker.files)
    settings = settings.model_copy(update={"gateways": settings.gateways.model_copy(
        update={"config_poll_interval_s": 0.2})})
    with make_cloud(engine, settings, tenant) as cloud:
        code = cloud.add_gateway()["code"]
        bundle = cloud.enrol(code, directory=str(tmp_path / "bundle")).json()
        config_path = write_bundle(tmp_path / "bundle", bundle["files"])

        own_broker.stop()
        failed_before = publishes(Reason.SAVED, "failed")
        saved = cloud.client.put(cloud.path("/gw-1/config"), headers=cloud.headers,
                                 json={"rssi_floor": -82})
        assert saved.status_code == 202, saved.text
        body = saved.json()
        assert body["desired_version"] == 1
        assert body["published_at"] is None
        assert "saved but not yet on the broker" in body["delivery"]
        assert "sends it as soon as the broker takes it" in body["delivery"]
        assert "cannot be reached" in body["publish_error"]
        assert body["next_publish_at"] is not None
        assert publishes(Reason.SAVED, "failed") == failed_before + 1

        own_broker.start()
        # The save's own failure backs off (30 s at least); the worker's clock passes it.
        cloud.clock.now = datetime.fromisoformat(body["next_publish_at"]) + timedelta(
            seconds=1)
        published_before = publishes(Reason.UNPUBLISHED, "published")
        with delivery_worker(settings, engine=engine, now=cloud.clock) as worker, \
                running_loop(worker.run, name="test-delivery"):
            def published() -> dict[str, Any] | None:
                found: dict[str, Any] = cloud.client.get(
                    cloud.path("/gw-1/config"), headers=cloud.headers).json()
                return found if found["published_at"] else None
            answer = wait_for(published, what="the worker publishing version 1")
        assert answer is not None
        assert answer["publish_error"] is None
        assert publishes(Reason.UNPUBLISHED, "published") == published_before + 1

        with gateway_login(config_path) as login:
            wait_for(lambda: login.configs, what="the retained config")
            received = decode_gateway_config(login.configs[-1])
        assert (received.version, received.rssi_floor) == (1, -82)

        with running_worker(settings, engine), \
                running_agent(config_path, tmp_path / "outbox.db") as agent:
            def applied() -> bool:
                found = cloud.client.get(cloud.path("/gw-1/config"), headers=cloud.headers)
                return bool(found.json()["applied"] and
                            found.json()["applied"]["version"] == 1)
            wait_for(applied, what="the heartbeat acknowledging version 1")
            assert agent.tracker.thresholds.rssi_floor == -82
        final = cloud.client.get(cloud.path("/gw-1/config"), headers=cloud.headers).json()
        assert final["delivery"] == "version 1 is in force on the gateway"


@contextlib.contextmanager
def saved_config(engine: Engine, tenant: str, *, at: datetime) -> Iterator[Session]:
    """A session in which the tenant's gateway gw-1 of STORE has enrolled and has
    version 1 of its config saved at `at`, not yet published."""
    with session_scope(engine) as session:
        row, _code = register_gateway(session, tenant=tenant, store=STORE, gateway="gw-1",
                                      now=at, lifetime=timedelta(hours=1))
        row.enrolled_at = at
        save_config(session, row=row, config=GatewayConfigUpdate(rssi_floor=-80), now=at)
        session.commit()
        yield session


def test_two_workers_never_claim_one_config_and_a_lapsed_claim_cannot_settle(
    engine: Engine, tenant: str
) -> None:
    rng = random.Random(1)
    with saved_config(engine, tenant, at=T0) as session:
        first = claim_due(session, now=T0)
        session.commit()
        assert [(claim.version, claim.attempt, claim.reason) for claim in first] == [
            (1, 1, Reason.UNPUBLISHED)]
        assert claim_due(session, now=T0 + timedelta(seconds=30)) == []  # leased
        session.commit()
        taken_over = claim_due(session, now=T0 + gateway_configs.LEASE)  # the lease ended
        session.commit()
        assert [claim.attempt for claim in taken_over] == [2]
        assert not settle(session, claim=first[0], error=None, now=T0, rng=rng)
        assert settle(session, claim=taken_over[0], error="no answer", now=T0, rng=rng)
        session.commit()
        row = session.get(RegisteredGateway, first[0].row_id)
        assert row is not None
        session.refresh(row)
        assert row.config_published_at is None
        assert row.config_publish_error == "no answer"
        assert row.config_next_attempt_at is not None
        assert row.config_next_attempt_at >= T0 + timedelta(seconds=30)  # backed off
        # A new save starts over, and the old claim cannot mark it published.
        save_config(session, row=row, config=GatewayConfigUpdate(rssi_floor=-70), now=T0)
        session.commit()
        assert not settle(session, claim=taken_over[0], error=None, now=T0, rng=rng)
        assert [claim.version for claim in claim_due(session, now=T0)] == [2]


def _health(tenant: str, *, received_at: datetime, online: bool = True,
            version: int | None = None, refused: int | None = None) -> GatewayHealth:
    return GatewayHealth(tenant=tenant, store=STORE, gateway="gw-1", online=online,
                         status_sent_at=received_at, received_at=received_at,
                         config_version=version, config_refused_version=refused,
                         config_refused_reason="no such key" if refused else None)


def test_a_version_a_live_gateway_does_not_report_is_published_again_backing_off(
    engine: Engine, tenant: str, secure_broker: BrokerFiles, migrated_url: str,
) -> None:
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=secure_broker)
    clock = [T0]
    publisher = ConfigPublisher(engine=engine, settings=settings, now=lambda: clock[0],
                                rng=random.Random(1))
    with saved_config(engine, tenant, at=T0) as session:
        assert publisher.run_once(T0) == 1  # the unpublished version
        row = session.exec(select(RegisteredGateway)).one()
        session.refresh(row)
        assert row.config_published_at == T0
        later = T0 + UNACKNOWLEDGED_AFTER + timedelta(minutes=1)
        # No heartbeat: nothing tells that the gateway is there to take it.
        assert publisher.run_once(later) == 0

        cases = {
            "acknowledged": _health(tenant, received_at=later, version=1),
            "refused": _health(tenant, received_at=later, version=None, refused=1),
            "offline": _health(tenant, received_at=later, online=False),
            "silent": _health(tenant, received_at=T0),
        }
        for name, health in cases.items():
            session.merge(health)
            session.commit()
            assert claim_due(session, now=later) == [], name
            session.rollback()

        session.merge(_health(tenant, received_at=later, version=None))
        session.commit()
        sent_before = publishes(Reason.UNACKNOWLEDGED, "published")
        clock[0] = later
        assert publisher.run_once(later) == 1
        assert publishes(Reason.UNACKNOWLEDGED, "published") == sent_before + 1
        session.refresh(row)
        assert row.config_published_at == later
        # The next copy waits as long as the version has existed (6 min, doubling).
        assert row.config_next_attempt_at == later + (later - T0)
        session.merge(_health(tenant, received_at=later + timedelta(minutes=5)))
        session.commit()
        assert publisher.run_once(later + timedelta(minutes=5)) == 0
        at_next = later + (later - T0)
        session.merge(_health(tenant, received_at=at_next))
        session.commit()
        clock[0] = at_next
        assert publisher.run_once(at_next) == 1
