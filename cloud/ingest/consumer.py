"""The MQTT consumer: gateway messages in, stored presence and decided pushes out.

paho's network thread only receives and hands each message to the asyncio loop
(`call_soon_threadsafe`); decoding and database writes run in a worker thread
(`asyncio.to_thread`) so neither the network nor the loop waits on PostgreSQL.

Delivery guarantee: at least once into the database, exactly once in effect. Messages
are acknowledged manually, and only after the transaction that stored them committed;
a crash before that leaves them unacknowledged in the broker's persistent session
(clean_start=False with a session expiry), and the redelivered copies are skipped by
the unique event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine

from cloud.db import is_transient, session_scope, utc_now, wait_for_database
from cloud.ingest.batch import (
    BatchOutcome,
    Decoded,
    Inbound,
    decode_all,
    write_decoded,
)
from cloud.metrics import (
    BROKER_CONNECTED,
    DATABASE_RETRIES,
    INGEST_BATCH_SECONDS,
    PURGED_PSEUDONYMS,
)
from cloud.places.recent import purge_old_fixes
from cloud.presence.crud import purge_health_history
from cloud.presence.partitions import Upkeep, upkeep
from cloud.presence.retention import purge_unconsented
from cloud.presence.rollups import RefreshOutcome, refresh_step
from cloud.settings import SHARE_GROUP, MqttSettings, Settings
from shared.topics import (
    OCCUPANCY_SHARED_SUBSCRIPTION,
    PRESENCE_SHARED_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    TOPIC_ROOT,
)

log = logging.getLogger(__name__)

#: Presence without a shared subscription (MQTT 3.1.1 brokers): one worker gets everything.
PRESENCE_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/+/presence"
#: Occupancy reports, likewise.
OCCUPANCY_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/+/occupancy"
#: paho retries a lost connection with exponential backoff between these bounds.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
#: A lost database is retried at this pace, after `wait_for_database` said it is back.
DATABASE_RETRY_PAUSE_S = 1.0
#: How long a clean stop waits for the network thread to send the last acknowledgements.
DISCONNECT_GRACE_S = 5.0
#: A retiring worker, once unsubscribed, still takes what the broker had queued or in
#: flight for its session; this long without a message (and nothing left to write) means
#: the session is drained and can end without losing anything.
RETIRE_QUIET_S = 1.0
#: How long a retiring worker waits for the broker to confirm it unsubscribed.
UNSUBSCRIBE_WAIT_S = 10.0
#: Retention runs this often: stable pseudonyms (and the location fixes kept for the
#: console's map) then live at most a day plus this.
RETENTION_INTERVAL_S = 15 * 60


def presence_subscription(settings: MqttSettings) -> str:
    if not settings.shared_subscription:
        return PRESENCE_SUBSCRIPTION
    if settings.share_group == SHARE_GROUP:
        return PRESENCE_SHARED_SUBSCRIPTION
    return f"$share/{settings.share_group}/{PRESENCE_SUBSCRIPTION}"


def occupancy_subscription(settings: MqttSettings) -> str:
    """Occupancy goes to the same share group as presence: one worker stores each report."""
    if not settings.shared_subscription:
        return OCCUPANCY_SUBSCRIPTION
    if settings.share_group == SHARE_GROUP:
        return OCCUPANCY_SHARED_SUBSCRIPTION
    return f"$share/{settings.share_group}/{OCCUPANCY_SUBSCRIPTION}"


def make_client(settings: MqttSettings, *, client_id: str | None = None) -> mqtt.Client:
    """A paho client configured for a persistent session and manual acknowledgements."""
    protocol = MQTTProtocolVersion.MQTTv5 if settings.mqtt_v5 else MQTTProtocolVersion.MQTTv311
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or settings.client_id,
        protocol=protocol,
        clean_session=None if settings.mqtt_v5 else False,
        manual_ack=True,
    )
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def connect_properties(settings: MqttSettings, receive_maximum: int) -> Properties | None:
    if not settings.mqtt_v5:
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry_s
    properties.ReceiveMaximum = receive_maximum
    return properties


class PresenceConsumer:
    """Consumes presence and status topics until `stop` is set.

    Presence of known customers becomes scenario triggers in the ingest transaction;
    `on_triggers` is called after each commit that recorded some (the scenario worker's
    cue to run at once rather than at its next poll). A stopped worker keeps its broker
    session (a restart resumes it) unless `end_session_on_stop`: a worker leaving for
    good ends it, or the broker would keep queueing that worker's share of the stream.

    Retiring (the `retire` event set, by SIGUSR1 in `vitrina-cloud worker`) is leaving for
    good without losing that share: the worker unsubscribes (the broker routes new
    messages to the group's other members), stores what the broker still had queued or in
    flight for it until `RETIRE_QUIET_S` passes without a message, then disconnects ending
    its session. A session left behind by a host that is gone is retired by starting a
    worker with that client id to retire it (`vitrina-cloud worker --client-id ID
    --retire`).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        on_triggers: Callable[[], None] | None = None,
        client_id: str | None = None,
        now: Callable[[], datetime] = utc_now,
        end_session_on_stop: bool = False,
        retire: asyncio.Event | None = None,
    ) -> None:
        self._settings = settings
        self._end_session = end_session_on_stop
        self._retire = retire if retire is not None else asyncio.Event()
        self._unsubscribed = threading.Event()
        self._last_arrival = time.monotonic()
        self._tenants = frozenset(settings.tenants)
        self._engine = engine
        self._on_triggers = on_triggers
        self._now = now
        self._client = make_client(settings.mqtt, client_id=client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._generation = 0
        self._writing: asyncio.Task[None] | None = None
        self._connected = False
        self._subscribed = False
        self.batches = 0
        self.totals = BatchOutcome()

    @property
    def connected(self) -> bool:
        """Connected and subscribed (the broker acknowledged the subscriptions): only then
        is a message published from elsewhere sure to reach this worker."""
        return self._connected and self._subscribed

    # --- paho's network thread -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags,
        reason_code: ReasonCode, _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s%s", reason_code,
                      " (a login pinned to a client id connects only as that id: is it "
                      "mqtt.client_id, or the worker's --client-id?)"
                      if "authori" in str(reason_code).lower() else "")
            return
        self._generation += 1
        self._connected = True
        BROKER_CONNECTED.set(1)
        log.info("connected to the broker (session present: %s)", flags.session_present)
        options = SubscribeOptions(qos=1)
        if self._settings.mqtt.mqtt_v5:
            presence = presence_subscription(self._settings.mqtt)
            occupancy = occupancy_subscription(self._settings.mqtt)
            client.subscribe([(presence, options), (STATUS_SUBSCRIPTION, options),
                              (occupancy, options)])
        else:
            client.subscribe([(PRESENCE_SUBSCRIPTION, 1), (STATUS_SUBSCRIPTION, 1),
                              (OCCUPANCY_SUBSCRIPTION, 1)])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int,
        reason_codes: list[ReasonCode], _properties: Properties | None,
    ) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused a subscription: %s", refused)
            return
        self._subscribed = True

    def _subscriptions(self) -> list[str]:
        if not self._settings.mqtt.mqtt_v5:
            return [PRESENCE_SUBSCRIPTION, STATUS_SUBSCRIPTION, OCCUPANCY_SUBSCRIPTION]
        return [presence_subscription(self._settings.mqtt), STATUS_SUBSCRIPTION,
                occupancy_subscription(self._settings.mqtt)]

    def _on_unsubscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int,
        _reason_codes: list[ReasonCode], _properties: Properties | None,
    ) -> None:
        self._unsubscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode, _properties: Properties | None,
    ) -> None:
        self._connected = self._subscribed = False
        BROKER_CONNECTED.set(0)
        # A normal disconnection is our own clean stop; anything else is worth a warning.
        level = logging.INFO if reason_code.value == 0 else logging.WARNING
        log.log(level, "disconnected from the broker: %s", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(topic is not valid UTF-8)"
        inbound = Inbound(
            topic=topic, payload=bytes(message.payload), mid=message.mid, qos=message.qos,
            generation=self._generation,
        )
        self._last_arrival = time.monotonic()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, inbound)

    # --- the asyncio side ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, consume until `stop` is set, then finish the batch in hand and leave."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(wait_for_database, self._engine)
        # Before the first message: a worker back after days away wants today's partition
        # (without it the day's events wait in the default partition: nothing is refused,
        # so a failure here is logged and left to the next retention run).
        try:
            await asyncio.to_thread(self.keep_partitions)
        except Exception:
            log.exception("presence partition upkeep failed; trying again at the next "
                          "retention run")
        mqtt_settings = self._settings.mqtt
        self._client.connect_async(
            mqtt_settings.host, mqtt_settings.port, keepalive=mqtt_settings.keepalive_s,
            clean_start=False if mqtt_settings.mqtt_v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_properties(mqtt_settings, self._settings.ingest.receive_maximum),
        )
        self._client.loop_start()
        retention = asyncio.create_task(self._retention(stop), name="vitrina-retention")
        rollups = asyncio.create_task(self._rollups(stop), name="vitrina-footfall-rollups")
        retiring = asyncio.create_task(self._retire_when_asked(stop), name="vitrina-retire")
        storing: asyncio.Task[None] | None = None
        try:
            # Two-stage pipeline: batch n+1 is decoded (Python, CPU) while batch n is being
            # written (the database's CPU). Writes stay strictly sequential, so messages are
            # acknowledged in the order they arrived.
            while not stop.is_set():
                batch = await self._next_batch(stop, writing=storing)
                if not batch:
                    continue
                decoded = await asyncio.to_thread(decode_all, batch, tenants=self._tenants)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(self._handle(batch, decoded))
                self._writing = storing
            if storing is not None:
                await storing
        finally:
            if storing is not None and not storing.done():
                storing.cancel()
            retention.cancel()
            rollups.cancel()
            retiring.cancel()
            await asyncio.to_thread(self._disconnect)

    async def _retire_when_asked(self, stop: asyncio.Event) -> None:
        """Wait for `retire`; then unsubscribe, drain, and stop with the session ended."""
        await self._retire.wait()
        log.info("retiring: unsubscribing, then storing what the broker still holds for "
                 "this worker")
        while True:  # the session's subscriptions can only be dropped online
            if self.connected or stop.is_set():
                break
            await asyncio.sleep(0.05)
        self._unsubscribed.clear()
        self._client.unsubscribe(self._subscriptions())
        if not await asyncio.to_thread(self._unsubscribed.wait, UNSUBSCRIBE_WAIT_S):
            log.warning("the broker did not confirm the unsubscription; retiring anyway")
        self._last_arrival = time.monotonic()
        while not stop.is_set():
            idle = time.monotonic() - self._last_arrival
            writing = self._writing is not None and not self._writing.done()
            if idle >= RETIRE_QUIET_S and self._queue.empty() and not writing:
                break
            await asyncio.sleep(0.05)
        self._end_session = True
        log.info("retired: ending the broker session")
        stop.set()

    async def _retention(self, stop: asyncio.Event) -> None:
        """Every so often, drop what may no longer be kept (`purge_once`)."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.purge_once)
            except Exception:
                log.exception("retention run failed; trying again next time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETENTION_INTERVAL_S)

    async def _rollups(self, stop: asyncio.Event) -> None:
        """Every `analytics.rollup_interval_s`, rebuild the footfall roll-ups of the hours
        marked since (`refresh_rollups`)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.analytics.rollup_interval_s)
            if stop.is_set():
                break
            try:
                await asyncio.to_thread(self.refresh_rollups)
            except Exception:
                log.exception("footfall roll-up step failed; trying again next time")

    def refresh_rollups(self) -> RefreshOutcome:
        """The roll-up step, once: marked hours rebuilt from the events."""
        outcome = refresh_step(
            self._engine, limit=self._settings.analytics.rollup_batch_hours, now=self._now()
        )
        if outcome.hours:
            log.info("footfall roll-ups: %d marked hours rebuilt (%d store days)",
                     outcome.hours, outcome.days)
        return outcome

    def keep_partitions(self) -> Upkeep:
        """Presence partitions made ahead and, with `ingest.presence_retention_days`, the
        expired ones dropped (`cloud.presence.partitions`); rows deleted on SQLite."""
        ingest = self._settings.ingest
        with self._engine.begin() as connection:
            done = upkeep(connection, now=self._now(), days_ahead=ingest.partition_days_ahead,
                          keep_days=ingest.presence_retention_days)
        if done.created or done.dropped or done.deleted_rows:
            log.info("presence partitions: %d made ahead, %d dropped, %d rows deleted",
                     len(done.created), len(done.dropped), done.deleted_rows)
        return done

    def purge_once(self) -> int:
        """Retention, once: presence partitions kept (`keep_partitions`), stable
        pseudonyms older than a day that no consenting customer owns replaced, location
        fixes kept for the map past their day deleted, and gateways' health history older
        than `gateways.health_history_days` deleted. Returns how many rows changed."""
        expired = self.keep_partitions().deleted_rows
        now = self._now()
        kept = timedelta(days=self._settings.gateways.health_history_days)
        with session_scope(self._engine) as session:
            rewritten = purge_unconsented(session, now=now, tenants=self._tenants)
            dropped = purge_old_fixes(session, now=now)
            dropped += purge_health_history(session, before=now - kept) + expired
            session.commit()
        if rewritten:
            PURGED_PSEUDONYMS.inc(rewritten)
            log.info("retention: %d events lost their stable pseudonym", rewritten)
        if dropped:
            log.info("retention: %d location fixes and health samples past their time "
                     "deleted", dropped)
        return rewritten + dropped

    async def _next_batch(
        self, stop: asyncio.Event, *, writing: asyncio.Task[None] | None
    ) -> list[Inbound]:
        """Wait for a first message (or stop), then gather more for `batch_min_wait_s`, and
        while the batch before is still being `writing`, until it is written (for up to
        `batch_wait_s` in all): under load batches grow while the database works, and an
        idle writer does not keep a message waiting for company."""
        ingest = self._settings.ingest
        stopper = asyncio.ensure_future(stop.wait())
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait({stopper, getter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
        if not getter.done() or getter.cancelled():
            return []
        batch = [getter.result()]
        started = time.monotonic()
        deadline, least = started + ingest.batch_wait_s, started + ingest.batch_min_wait_s
        while len(batch) < ingest.batch_messages:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            now = time.monotonic()
            writer_free = writing is None or writing.done()
            if now >= deadline or stop.is_set() or (writer_free and now >= least):
                break
            arrival = asyncio.ensure_future(self._queue.get())
            waits = {arrival} if writing is None or writer_free else {arrival, writing}
            await asyncio.wait(waits, timeout=(least if writer_free else deadline) - now,
                               return_when=asyncio.FIRST_COMPLETED)
            if arrival.done():
                batch.append(arrival.result())
            else:
                arrival.cancel()
        return batch

    async def _handle(self, batch: list[Inbound], decoded: list[Decoded]) -> None:
        outcome = await asyncio.to_thread(self._write_until_stored, decoded)
        self._acknowledge(batch)
        self.batches += 1
        self.totals.add(BatchOutcome(
            events_new=outcome.events_new, events_duplicate=outcome.events_duplicate,
            statuses=outcome.statuses, occupancy_reports=outcome.occupancy_reports,
            dead_letters=outcome.dead_letters, ignored=outcome.ignored,
        ))
        if outcome.triggers and self._on_triggers is not None:
            self._on_triggers()

    def _write_until_stored(self, decoded: list[Decoded]) -> BatchOutcome:
        """Write the batch; while the database is unreachable, wait for it and try again."""
        while True:
            started = time.monotonic()
            try:
                outcome = write_decoded(self._engine, decoded, received_at=self._now())
            except Exception as error:
                if not is_transient(error):
                    raise
                DATABASE_RETRIES.inc()
                log.warning("database unavailable (%s); waiting for it", type(error).__name__)
                time.sleep(DATABASE_RETRY_PAUSE_S)
                try:
                    wait_for_database(self._engine)
                except Exception:
                    log.exception("database still unavailable; retrying the batch")
                continue
            INGEST_BATCH_SECONDS.observe(time.monotonic() - started)
            return outcome

    def _acknowledge(self, batch: list[Inbound]) -> None:
        """PUBACK in arrival order, for messages of the current connection only: after a
        reconnect the broker redelivers older ones, and their packet ids may be reused."""
        generation = self._generation
        for inbound in batch:
            if inbound.qos > 0 and inbound.generation == generation:
                self._client.ack(inbound.mid, inbound.qos)

    def _disconnect(self) -> None:
        properties = None
        if self._end_session and self._settings.mqtt.mqtt_v5:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        deadline = time.monotonic() + DISCONNECT_GRACE_S
        while self._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        self._client.loop_stop()
        self._connected = False
        BROKER_CONNECTED.set(0)
