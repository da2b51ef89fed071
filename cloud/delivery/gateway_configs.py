"""Delivering gateway configs: every saved version reaches the broker (retained on the
gateway's config topic) even when the broker was away when it was saved, and a version a
live gateway has not taken is published again, less and less often.

The save route publishes at once under a lease of its own (`begin_publish` after
`cloud.gateways.crud.save_config`); what it could not publish, the delivery stage's
`ConfigPublisher` rounds pick up. Rows are taken the way the send queue takes messages
(`cloud.leases.take`): a claim moves `config_next_attempt_at` to the end of a lease and
commits before the broker is called, so two workers never publish one config at once and
a worker that dies leaves it to another after the lease; an outcome is written only while
the claim holds (same version, same attempt), so it cannot overwrite a newer save.

What is due:
- a saved version the broker has not taken (`config_published_at` empty), once its
  back-off has passed (`cloud.leases.retry_at`: 30 s doubling to an hour);
- a published version that a gateway heartbeating now still does not report, neither in
  force nor refused, `UNACKNOWLEDGED_AFTER` after it was published: the broker may have
  lost its retained copy (restarted without persistence), or the gateway its
  subscription. It is published again after the version's age, doubling up to
  `REPUBLISH_CAP`, so a gateway that never takes it is not flooded. A version the
  gateway refused is not sent again: the refusal is its answer, shown on the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, and_, exists, func, or_, select, update
from sqlmodel import Session, SQLModel

from cloud.db import session_scope, utc_now, wait_for_database
from cloud.gateways import broker
from cloud.gateways.models import GatewayConfigUpdate, RegisteredGateway
from cloud.leases import retry_at, take
from cloud.metrics import GATEWAY_CONFIG_PUBLISHES
from cloud.presence.models import GatewayHealth
from cloud.rotation.flow import RotationRefusedError, deliver, sync_ring
from cloud.settings import MqttSettings, Settings

log = logging.getLogger(__name__)

REGISTRY: Table = SQLModel.metadata.tables[RegisteredGateway.__tablename__]
HEALTH: Table = SQLModel.metadata.tables[GatewayHealth.__tablename__]

#: A publish waits for the broker's connection and its acknowledgement, each bounded by
#: `broker.BROKER_TIMEOUT_S`; a lease of a minute outlasts both with room to record.
LEASE = timedelta(minutes=1)
#: A gateway applies a config the moment it arrives and says so in its next heartbeat
#: (every 30 s by default): five minutes of heartbeats without it mean it did not arrive.
UNACKNOWLEDGED_AFTER = timedelta(minutes=5)
#: A gateway that never takes a version gets it again at most this seldom: often enough
#: to catch a broker that lost it, rare enough to cost nothing.
REPUBLISH_CAP = timedelta(hours=6)
#: Configs claimed per round: each is one broker round trip of milliseconds.
BATCH_SIZE = 50
#: The longest refusal kept on the row (the column's width).
ERROR_CHARS = 500


class Reason:
    """Why a config is published: the `reason` label of `GATEWAY_CONFIG_PUBLISHES`."""

    SAVED = "saved"  # by the save route, at once
    UNPUBLISHED = "unpublished"  # by the worker: saved, the broker away at the time
    UNACKNOWLEDGED = "unacknowledged"  # by the worker: published, not taken by the gateway


@dataclass(frozen=True, slots=True)
class ConfigClaim:
    """A config taken for publishing, and what proves the claim still holds."""

    row_id: int
    tenant: str
    store: str
    gateway: str
    document: dict[str, Any]
    version: int
    attempt: int
    reason: str

    @property
    def topic(self) -> str:
        return broker.config_topic(self.tenant, self.store, self.gateway)

    def payload(self) -> bytes:
        return GatewayConfigUpdate.model_validate(self.document).model_dump_json(
            exclude_none=True).encode()


def _live_gateway_behind(now: datetime) -> ColumnElement[bool]:
    """The gateway heartbeated in the last `UNACKNOWLEDGED_AFTER` and reports neither the
    saved version in force nor a refusal of it."""
    return exists().where(
        HEALTH.c.tenant == REGISTRY.c.tenant, HEALTH.c.store == REGISTRY.c.store,
        HEALTH.c.gateway == REGISTRY.c.gateway, HEALTH.c.online.is_(True),
        HEALTH.c.received_at >= now - UNACKNOWLEDGED_AFTER,
        func.coalesce(HEALTH.c.config_version, 0) < REGISTRY.c.config_version,
        func.coalesce(HEALTH.c.config_refused_version, 0) != REGISTRY.c.config_version,
    )


def due(now: datetime) -> ColumnElement[bool]:
    """Configs a worker should publish at `now` (the module's docstring says which)."""
    return and_(
        REGISTRY.c.revoked_at.is_(None), REGISTRY.c.config.is_not(None),
        REGISTRY.c.config_next_attempt_at <= now,
        or_(REGISTRY.c.config_published_at.is_(None),
            and_(REGISTRY.c.config_published_at <= now - UNACKNOWLEDGED_AFTER,
                 _live_gateway_behind(now))),
    )


def claim_due(session: Session, *, now: datetime, limit: int = BATCH_SIZE,
              lease: timedelta = LEASE) -> list[ConfigClaim]:
    """Take up to `limit` due configs, each leased to this worker with its attempt
    counted; the caller commits before publishing."""
    picked = take(session, REGISTRY, where=due(now),
                  order_by=[REGISTRY.c.config_next_attempt_at, REGISTRY.c.id], limit=limit)
    rows = session.connection().execute(
        update(REGISTRY).where(picked, due(now))
        .values(config_next_attempt_at=now + lease,
                config_attempts=REGISTRY.c.config_attempts + 1)
        .returning(REGISTRY.c.id, REGISTRY.c.tenant, REGISTRY.c.store, REGISTRY.c.gateway,
                   REGISTRY.c.config, REGISTRY.c.config_version, REGISTRY.c.config_attempts,
                   REGISTRY.c.config_published_at)
    ).all()
    return [ConfigClaim(row_id=row.id, tenant=row.tenant, store=row.store,
                        gateway=row.gateway, document=row.config,
                        version=row.config_version, attempt=row.config_attempts,
                        reason=Reason.UNPUBLISHED if row.config_published_at is None
                        else Reason.UNACKNOWLEDGED)
            for row in rows]


def begin_publish(session: Session, *, row: RegisteredGateway, now: datetime,
                  lease: timedelta = LEASE) -> ConfigClaim:
    """The save route's own claim on the version it just saved (the caller commits
    before publishing), so that no worker publishes it meanwhile."""
    assert row.id is not None
    assert row.config is not None
    row.config_attempts += 1
    row.config_next_attempt_at = now + lease
    session.add(row)
    session.flush()
    return ConfigClaim(row_id=row.id, tenant=row.tenant, store=row.store, gateway=row.gateway,
                       document=row.config, version=row.config_version,
                       attempt=row.config_attempts, reason=Reason.SAVED)


def republish_delay(*, saved_at: datetime, now: datetime) -> timedelta:
    """How long a published version waits before it may go again: as long as it has
    existed, at least `UNACKNOWLEDGED_AFTER` and at most `REPUBLISH_CAP` (so copies to a
    gateway that never takes it come at doubling intervals)."""
    return min(REPUBLISH_CAP, max(UNACKNOWLEDGED_AFTER, now - saved_at))


def _settle(session: Session, claim: ConfigClaim, **values: Any) -> bool:
    result = session.connection().execute(
        update(REGISTRY).where(REGISTRY.c.id == claim.row_id,
                               REGISTRY.c.config_version == claim.version,
                               REGISTRY.c.config_attempts == claim.attempt)
        .values(**values))
    return result.rowcount == 1


def settle_published(session: Session, *, claim: ConfigClaim, now: datetime) -> bool:
    """The broker took the version; False if the claim no longer holds (a newer save)."""
    saved_at = session.connection().execute(
        select(REGISTRY.c.config_saved_at).where(REGISTRY.c.id == claim.row_id)).scalar()
    wait = republish_delay(saved_at=saved_at or now, now=now)
    return _settle(session, claim, config_published_at=now, config_publish_error=None,
                   config_next_attempt_at=now + wait)


def settle_failed(session: Session, *, claim: ConfigClaim, error: str, now: datetime,
                  rng: random.Random) -> bool:
    """The broker did not take it: kept with the reason, tried again after a back-off."""
    return _settle(session, claim, config_publish_error=error[:ERROR_CHARS],
                   config_next_attempt_at=retry_at(attempt=claim.attempt, now=now,
                                                   retry_after_s=None, configuration=False,
                                                   rng=rng))


def publish(settings: MqttSettings, claim: ConfigClaim) -> str | None:
    """Put the claimed version on the broker, retained; the refusal, or None. Blocks on
    the network: call it from a thread, never from the event loop."""
    try:
        broker.publish_retained(settings, claim.topic, claim.payload())
    except broker.BrokerUnavailableError as error:
        GATEWAY_CONFIG_PUBLISHES.labels(reason=claim.reason, outcome="failed").inc()
        log.warning("config version %s of %s/%s/%s not published (%s): %s", claim.version,
                    claim.tenant, claim.store, claim.gateway, claim.reason, error)
        return str(error)
    GATEWAY_CONFIG_PUBLISHES.labels(reason=claim.reason, outcome="published").inc()
    return None


def settle(session: Session, *, claim: ConfigClaim, error: str | None, now: datetime,
           rng: random.Random) -> bool:
    """Record what came of publishing `claim`."""
    if error is None:
        return settle_published(session, claim=claim, now=now)
    return settle_failed(session, claim=claim, error=error, now=now, rng=rng)


class ConfigPublisher:
    """Rounds of the delivery stage that publish due gateway configs (`claim_due`).

        publisher = ConfigPublisher(engine=engine, settings=settings)
        published = publisher.run_once(now)   # one round; or
        await publisher.run(stop)             # rounds every gateways.config_poll_interval_s
    """

    def __init__(self, *, engine: Engine, settings: Settings,
                 now: Callable[[], datetime] = utc_now, rng: random.Random | None = None,
                 ) -> None:
        self._engine = engine
        self._tenants = settings.tenants
        self._mqtt = settings.mqtt
        self._pause = settings.gateways.config_poll_interval_s
        self._now = now
        self._rng = rng or random.Random()
        self.batch_size = BATCH_SIZE

    def run_once(self, now: datetime) -> int:
        """Claim due configs, publish each, record the outcomes; returns how many were
        claimed."""
        with session_scope(self._engine) as session:
            claims = claim_due(session, now=now, limit=self.batch_size)
            session.commit()
        for claim in claims:
            error = publish(self._mqtt, claim)
            with session_scope(self._engine) as session:
                if not settle(session, claim=claim, error=error, now=self._now(), rng=self._rng):
                    log.info("config version %s of %s/%s changed while publishing",
                             claim.version, claim.store, claim.gateway)
                session.commit()
        return len(claims)

    def deliver_keys(self, now: datetime) -> int:
        """Save, for every gateway that can receive keys, a config carrying its tenant's
        keys in use if its saved one does not (the settings list a key the gateways lack,
        or one was retired meanwhile: `cloud.rotation.flow.deliver`); how many were saved.
        Run when the stage starts, so a key added to the settings reaches the gateways
        once the orchestrator restarts with it."""
        saved = 0
        for tenant, tenant_settings in self._tenants.items():
            with session_scope(self._engine) as session:
                try:
                    ring = sync_ring(session, tenant=tenant, settings=tenant_settings, now=now)
                    saved += len(deliver(session, ring=ring, now=now))
                except RotationRefusedError as error:
                    log.warning("tenant %s: keys not delivered: %s", tenant, error)
                    continue
                session.commit()
        return saved

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop`: at once again after a full round, else after the poll
        interval. The broker calls block, so rounds run in a thread. The first delivers
        the tenants' keys in use (`deliver_keys`)."""
        await asyncio.to_thread(wait_for_database, self._engine)
        try:
            await asyncio.to_thread(self.deliver_keys, self._now())
        except Exception:
            log.exception("could not deliver the tenants' keys; the next start tries again")
        while not stop.is_set():
            try:
                claimed = await asyncio.to_thread(self.run_once, self._now())
            except Exception:
                log.exception("gateway config round failed; trying again shortly")
                claimed = 0
            if claimed >= self.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._pause)
