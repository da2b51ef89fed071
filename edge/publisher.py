"""MQTT publishing: drains the outbox to the broker and listens for the cloud's config.

paho-mqtt 2.x, MQTT v5, QoS 1. paho's network thread owns the socket; everything it
reports (connected, disconnected, PUBACK, a config message) is handed to the asyncio
loop with `loop.call_soon_threadsafe`, so outbox and counters are only ever touched
from the loop. An outbox row is deleted only when the PUBACK for the message carrying
it arrives. Messages in flight when the connection drops stay in paho's session and
are re-sent (DUP) on reconnect; a restart re-sends whatever the outbox still holds.

The initial connect is retried with tenacity (exponential backoff, forever: a gateway
that boots before the network must come up on its own); afterwards paho reconnects
by itself with `reconnect_delay_set`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from edge.outbox import Outbox, OutboxRow
from edge.settings import EdgeSettings, IdentitySettings
from shared.errors import ContractError
from shared.presence import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    PresenceBatch,
)
from shared.status import (
    MAX_REFUSAL_CHARS,
    ConfigRefusal,
    GatewayConfig,
    GatewayStatus,
    decode_gateway_config,
)
from shared.topics import TopicChannel, gateway_topic

log = logging.getLogger(__name__)

#: Room left in a message for the batch envelope around the events.
ENVELOPE_BYTES = 1024
#: After the broker refuses a message (e.g. an ACL says no), wait before trying it again,
#: so a misconfigured broker costs a log line per interval rather than a busy loop.
REJECTED_RETRY_S = 10.0
#: How long the pump sleeps when it has nothing to do and nobody wakes it. Everything
#: that gives it work (new rows, an ack, a reconnect, stop) wakes it at once; the poll
#: only ends a pause after a broker refusal (`REJECTED_RETRY_S`) without a timer of its own.
IDLE_POLL_S = 0.5

_EMPTY_EVENTS_TAIL = '"events":[]}'
_EVENT_HEAD = '{"event_id":"'


#: Occupancy reports handed to the broker but not yet acknowledged: one message each, a
#: minute's worth apiece, so a backlog after an outage drains in a few round trips.
MAX_INFLIGHT_REPORTS = 32


@dataclass(slots=True)
class PublisherCounters:
    messages: int = 0
    events: int = 0
    #: Occupancy reports the broker acknowledged.
    reports: int = 0
    broker_rejections: int = 0
    corrupt_rows: int = 0
    configs_applied: int = 0
    configs_rejected: int = 0
    connects: int = 0
    disconnects: int = 0


@dataclass(frozen=True, slots=True)
class _InFlight:
    first_seq: int
    last_seq: int
    events: int


ConfigHandler = Callable[[GatewayConfig], None]


class MqttPublisher:
    """Owns the paho client. Create, `await start()`, run `pump()`, `await close()`."""

    def __init__(
        self,
        settings: EdgeSettings,
        outbox: Outbox,
        *,
        on_config: ConfigHandler,
        offline_status: Callable[[], GatewayStatus],
        on_config_outcome: Callable[[], None] | None = None,
    ) -> None:
        identity = settings.identity
        self._settings = settings
        self._outbox = outbox
        self._on_config = on_config
        self._offline_status = offline_status
        self._on_config_outcome = on_config_outcome
        #: What the heartbeat acknowledges: the cloud config in force, the last refused.
        self.config_version: int | None = None
        self.config_refused: ConfigRefusal | None = None
        self.presence_topic = gateway_topic(
            identity.tenant, identity.store, identity.gateway, TopicChannel.PRESENCE
        )
        self.status_topic = gateway_topic(
            identity.tenant, identity.store, identity.gateway, TopicChannel.STATUS
        )
        self.config_topic = gateway_topic(
            identity.tenant, identity.store, identity.gateway, TopicChannel.CONFIG
        )
        self.occupancy_topic = gateway_topic(
            identity.tenant, identity.store, identity.gateway, TopicChannel.OCCUPANCY
        )
        self.counters = PublisherCounters()
        self.connected = False
        self._inflight: dict[int, _InFlight] = {}
        self._acks: list[_InFlight] = []
        #: Occupancy reports in flight (message id -> outbox row) and acknowledged ones.
        self._reports_inflight: dict[int, int] = {}
        self._report_acks: list[int] = []
        #: Reports wait apart after a refusal: a broker whose ACL predates occupancy (a
        #: gateway enrolled before it) must not hold up presence.
        self._reports_paused_until = 0.0
        self._paused_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        #: Set whenever the outbox may have become drained (acks committed, a broker
        #: refusal, the connection coming or going): `drained()` waits on it, not a poll.
        self._progress = asyncio.Event()
        self._connected_event = asyncio.Event()
        self._started_network = False
        self._final_mid: int | None = None
        self._closing = False
        self._final_acked = asyncio.Event()
        batch_envelope_head(identity, datetime.now(UTC))  # fails at start, not mid-run
        self._client = self._build_client()

    # -- set-up -------------------------------------------------------------------------

    def _build_client(self) -> mqtt.Client:
        mqtt_settings = self._settings.mqtt
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._settings.client_id,
            protocol=mqtt.MQTTv5 if mqtt_settings.protocol == "5" else mqtt.MQTTv311,
        )
        if mqtt_settings.username is not None:
            password = mqtt_settings.password
            client.username_pw_set(
                mqtt_settings.username, None if password is None else password.get_secret_value()
            )
        if mqtt_settings.uses_tls:
            client.tls_set(
                ca_certs=None if mqtt_settings.ca_file is None else str(mqtt_settings.ca_file),
                certfile=None if mqtt_settings.cert_file is None else str(mqtt_settings.cert_file),
                keyfile=None if mqtt_settings.key_file is None else str(mqtt_settings.key_file),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(
            self.status_topic, self._offline_status().model_dump_json(), qos=1, retain=True
        )
        client.reconnect_delay_set(
            min_delay=max(1, round(mqtt_settings.reconnect_min_s)),
            max_delay=max(1, round(mqtt_settings.reconnect_max_s)),
        )
        # Our own window bounds what is in flight; a few more slots for status messages.
        client.max_inflight_messages_set(
            mqtt_settings.max_inflight_batches + MAX_INFLIGHT_REPORTS + 4)
        client.on_connect = self._paho_on_connect
        client.on_disconnect = self._paho_on_disconnect
        client.on_publish = self._paho_on_publish
        client.on_message = self._paho_on_message
        return client

    async def start(self) -> None:
        """Connect (retrying with backoff until it works), then let paho's thread run."""
        self._loop = asyncio.get_running_loop()
        mqtt_settings = self._settings.mqtt
        retrying = AsyncRetrying(
            wait=wait_exponential(
                multiplier=mqtt_settings.reconnect_min_s, max=mqtt_settings.reconnect_max_s
            ),
            retry=retry_if_exception_type(OSError),
            before_sleep=_log_connect_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await asyncio.to_thread(
                    self._client.connect,
                    mqtt_settings.host,
                    mqtt_settings.port,
                    mqtt_settings.keepalive_s,
                )
        self._client.loop_start()
        self._started_network = True

    async def wait_connected(self, within_s: float) -> bool:
        try:
            await asyncio.wait_for(self._connected_event.wait(), within_s)
        except TimeoutError:
            return False
        return True

    # -- paho's thread: hand everything to the loop -------------------------------------

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _paho_on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._to_loop(_log_refused, str(reason_code))
            return
        client.subscribe(self.config_topic, qos=1)
        self._to_loop(self._set_connected, True)

    def _paho_on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._to_loop(self._set_connected, False, str(reason_code))

    def _paho_on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._to_loop(self._acknowledged, mid, reason_code.is_failure, str(reason_code))

    def _paho_on_message(
        self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        if not message.payload:
            return  # the retained config was cleared: keep what we run with
        try:
            config = decode_gateway_config(bytes(message.payload))
        except ContractError as error:
            self._to_loop(self._config_rejected, str(error), _version_of(message.payload))
            return
        self._to_loop(self._apply_config, config)

    # -- on the loop ----------------------------------------------------------------------

    def _set_connected(self, connected: bool, reason: str = "") -> None:
        if connected:
            self.counters.connects += 1
            self._connected_event.set()
            log.info("connected to broker", extra={"host": self._settings.mqtt.host})
        elif self.connected:
            self.counters.disconnects += 1
            self._connected_event.clear()
            if not self._closing:
                log.warning("lost the broker; events wait in the outbox", extra={"reason": reason})
        self.connected = connected
        self._wakeup.set()
        self._progress.set()

    def _acknowledged(self, mid: int, failed: bool, reason: str) -> None:
        if mid == self._final_mid:
            self._final_acked.set()
        report = self._reports_inflight.pop(mid, None)
        if report is not None:
            self._report_acknowledged(report, failed, reason)
            return
        batch = self._inflight.pop(mid, None)
        if batch is None:
            return
        if failed:
            self.counters.broker_rejections += 1
            self._outbox.unclaim_from(batch.first_seq)
            self._paused_until = time.monotonic() + REJECTED_RETRY_S
            log.error(
                "broker refused a presence message; retrying later",
                extra={"reason": reason, "events": batch.events, "retry_s": REJECTED_RETRY_S},
            )
            self._progress.set()
        else:
            if not self._acks and not self._report_acks:
                self._to_loop_soon(self._commit_acks)
            self._acks.append(batch)
        self._wakeup.set()

    def _report_acknowledged(self, seq: int, failed: bool, reason: str) -> None:
        if failed:
            self.counters.broker_rejections += 1
            self._outbox.unclaim_reports_from(seq)
            self._reports_paused_until = time.monotonic() + REJECTED_RETRY_S
            log.error("broker refused an occupancy report; retrying later",
                      extra={"reason": reason, "retry_s": REJECTED_RETRY_S})
            self._progress.set()
        else:
            if not self._acks and not self._report_acks:
                self._to_loop_soon(self._commit_acks)
            self._report_acks.append(seq)
        self._wakeup.set()

    def _to_loop_soon(self, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon(callback)

    def _commit_acks(self) -> None:
        """Delete every batch (and report) acknowledged in this loop turn, in one
        transaction each."""
        acks, self._acks = self._acks, []
        reports, self._report_acks = self._report_acks, []
        if not acks and not reports:
            return
        if acks:
            self._outbox.ack_many((batch.first_seq, batch.last_seq) for batch in acks)
            self.counters.messages += len(acks)
            self.counters.events += sum(batch.events for batch in acks)
        if reports:
            self._outbox.ack_reports(reports)
            self.counters.reports += len(reports)
        self._wakeup.set()
        self._progress.set()

    def _apply_config(self, config: GatewayConfig) -> None:
        try:
            self._on_config(config)
        except (ValueError, KeyError) as error:
            self._config_rejected(str(error), config.version)
            return
        self.counters.configs_applied += 1
        self.config_version = config.version
        if self.config_refused is not None and (
            config.version is None or (self.config_refused.version or 0) <= config.version
        ):
            self.config_refused = None
        log.info("applied config from the cloud", extra={"version": config.version})
        self._config_outcome()

    def _config_rejected(self, reason: str, version: int | None = None) -> None:
        """Keep running with the last good config, and say so in the next heartbeat."""
        self.counters.configs_rejected += 1
        self.config_refused = ConfigRefusal(version=version, reason=reason[:MAX_REFUSAL_CHARS])
        log.warning("rejected config from the cloud",
                    extra={"reason": reason, "version": version})
        self._config_outcome()

    def _config_outcome(self) -> None:
        """The cloud waits for the heartbeat to learn the outcome: send one now."""
        if self._on_config_outcome is not None:
            self._on_config_outcome()

    # -- publishing ----------------------------------------------------------------------

    def wake(self) -> None:
        """New rows in the outbox: publish them soon."""
        self._wakeup.set()

    @property
    def inflight_batches(self) -> int:
        return len(self._inflight)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting in the outbox."""
        return (not self._inflight and not self._acks and self._outbox.depth == 0
                and not self._reports_inflight and not self._report_acks
                and self._outbox.report_depth == 0)

    async def pump(self, stop: asyncio.Event) -> None:
        """Publish outbox rows while connected, keeping a bounded window in flight.

        Returns as soon as `stop` is set: a watcher turns `stop` into a wake-up, so a
        shutdown never waits out the idle poll.
        """
        watcher = asyncio.create_task(_set_when(stop, self._wakeup), name="mqtt-pump-stop")
        try:
            while not stop.is_set():
                self._wakeup.clear()
                self.publish_available()
                if self.idle:  # e.g. the last rows were corrupt and removed, not published
                    self._progress.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL_S)
        finally:
            watcher.cancel()

    async def drained(self, within_s: float, interrupt: asyncio.Event | None = None) -> bool:
        """Wait until nothing is in flight and the outbox is empty: True then, False if
        `within_s` passed or `interrupt` was set first. Woken by each commit of acks,
        so it returns the moment the last one is in, without polling."""
        deadline = time.monotonic() + within_s
        watcher = None if interrupt is None else asyncio.create_task(
            _set_when(interrupt, self._progress), name="mqtt-drain-interrupt")
        try:
            while not self.idle:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (interrupt is not None and interrupt.is_set()):
                    return False
                self._progress.clear()
                self._wakeup.set()  # whatever is left, the pump takes it now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), remaining)
        finally:
            if watcher is not None:
                watcher.cancel()
        return True

    def publish_available(self) -> int:
        """Hand the broker as many batches as the window allows; returns how many."""
        sent = 0
        window = self._settings.mqtt.max_inflight_batches
        while (
            self.connected
            and len(self._inflight) < window
            and time.monotonic() >= self._paused_until
        ):
            rows = self._outbox.claim(MAX_BATCH_EVENTS, MAX_PAYLOAD_BYTES - ENVELOPE_BYTES)
            if not rows:
                break
            if not self._publish_rows(rows):
                break
            sent += 1
        return sent + self._publish_reports()

    def _publish_reports(self) -> int:
        """Occupancy reports, one message each, within their own window."""
        room = MAX_INFLIGHT_REPORTS - len(self._reports_inflight)
        if not self.connected or room <= 0 or time.monotonic() < self._reports_paused_until:
            return 0
        sent = 0
        for row in self._outbox.claim_reports(room):
            info = self._client.publish(self.occupancy_topic, row.body, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._outbox.unclaim_reports_from(row.seq)
                log.warning("could not hand a report to the client", extra={"rc": int(info.rc)})
                break
            self._reports_inflight[info.mid] = row.seq
            sent += 1
        return sent

    def _publish_rows(self, rows: list[OutboxRow]) -> bool:
        bodies = self._intact_bodies(rows)
        if not bodies:
            return True
        payload = splice_batch(self._settings.identity, datetime.now(UTC), bodies)
        info = self._client.publish(self.presence_topic, payload, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._outbox.unclaim_from(rows[0].seq)
            log.warning("could not hand a message to the client", extra={"rc": int(info.rc)})
            return False
        self._inflight[info.mid] = _InFlight(rows[0].seq, rows[-1].seq, len(bodies))
        return True

    def _intact_bodies(self, rows: list[OutboxRow]) -> list[str]:
        """Bodies that still look like what the outbox wrote; others are removed and counted
        (storage damage must cost one event, not the batch it would poison)."""
        bodies = []
        for row in rows:
            body = row.body
            if body.startswith(_EVENT_HEAD) and body.endswith("}"):
                bodies.append(body)
            else:
                self.counters.corrupt_rows += 1
                self._outbox.ack(row.seq, row.seq)
                log.error(
                    "removed an outbox row that is not a stored event", extra={"seq": row.seq}
                )
        return bodies

    def publish_status(self, status: GatewayStatus) -> None:
        """Retained heartbeat; skipped while offline (the last will speaks for us then)."""
        if not self.connected:
            return
        self._client.publish(self.status_topic, status.model_dump_json(), qos=1, retain=True)

    async def close(self, final_status: GatewayStatus, *, grace_s: float = 5.0) -> None:
        """Announce going offline (retained), then disconnect cleanly."""
        self._closing = True
        if self.connected:
            info = self._client.publish(
                self.status_topic, final_status.model_dump_json(), qos=1, retain=True
            )
            self._final_mid = info.mid
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._final_acked.wait(), grace_s)
        self._client.disconnect()
        if self._started_network:
            await asyncio.to_thread(self._client.loop_stop)
        self.connected = False


async def _set_when(trigger: asyncio.Event, target: asyncio.Event) -> None:
    """Set `target` once `trigger` is set: one waiter for a whole loop, instead of a
    task per wait racing two events."""
    await trigger.wait()
    target.set()


def _version_of(payload: bytes | bytearray) -> int | None:
    """The version a config that failed validation claims, when it can be read at all:
    the refusal then names the version the cloud stored."""
    try:
        version = json.loads(payload).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def splice_batch(identity: IdentitySettings, sent_at: datetime, bodies: list[str]) -> bytes:
    """The bytes `encode_presence_batch` would produce for these stored events.

    Every body was written to the outbox by `PresenceEvent.model_dump_json()` of a
    validated event, so the envelope is encoded by the contract's model and the events
    are spliced in as stored: validating them again would cost ~30 us each and cap the
    uplink near 30,000 events/s even on a desktop CPU. A test checks the result byte
    for byte against `encode_presence_batch`.
    """
    return f"{batch_envelope_head(identity, sent_at)}[{','.join(bodies)}]}}".encode()


def batch_envelope_head(identity: IdentitySettings, sent_at: datetime) -> str:
    """`PresenceBatch` JSON up to the opening bracket of its event list."""
    envelope = PresenceBatch.model_construct(
        schema_version=SCHEMA_VERSION,
        tenant=identity.tenant,
        store=identity.store,
        gateway=identity.gateway,
        sent_at=sent_at,
        events=[],
    ).model_dump_json()
    if not envelope.endswith(_EMPTY_EVENTS_TAIL):
        raise RuntimeError("PresenceBatch no longer ends with its event list; fix the splice")
    return envelope[: -len(_EMPTY_EVENTS_TAIL) + len('"events":')]


def _log_connect_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "broker not reachable; retrying",
        extra={
            "attempt": state.attempt_number,
            "error": type(error).__name__,
            "retry_in_s": round(state.upcoming_sleep, 1),
        },
    )


def _log_refused(reason: str) -> None:
    log.error("broker refused the connection", extra={"reason": reason})
