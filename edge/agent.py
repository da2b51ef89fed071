"""The gateway agent: sources -> pseudonymize -> track -> outbox -> MQTT, under asyncio.

Sources call `emit` on the event loop for every sighting. The sightings of one loop
turn are pseudonymized together at the end of it (the raw identifiers end there), fed
to the tracker, and the events they cause are written to the outbox in one transaction
per loop turn. Wi-Fi sources also hand over each probe request's frame, which the
occupancy counter reads in the same turn (`edge.occupancy`: in memory, counts out, one
report a minute, kept in the outbox like the events). The publisher drains the
outbox in the background. A ticker drives exits from the wall clock (live capture
only: a replay runs on its own capture clock), the retained status heartbeat and the
systemd watchdog.

Shutdown (SIGTERM/SIGINT, or the end of a replay): sources stop, every tracked device
exits, the events are flushed to the outbox, the publisher gets a short grace period
(or, for a replay, until the outbox is drained), publishes the retained offline status
and disconnects. Whatever was not acknowledged stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edge import systemd
from edge.beacon.plan import BeaconPlan
from edge.capture.source import ProbeSource, Source
from edge.health import DeviceFigures, HealthSampler
from edge.keystore import GatewayKeys, KeyRing
from edge.occupancy import EstimatorSettings, OccupancyCounter, RawProbe
from edge.outbox import Outbox
from edge.pseudonymize import PseudonymousSighting, SightingPseudonymizer, UnknownKeyError
from edge.publisher import MqttPublisher
from edge.settings import EdgeSettings
from edge.sighting import Sighting
from edge.tracker import Identity, Tracker, TrackerThresholds
from shared.errors import ContractError
from shared.occupancy import OccupancyReport
from shared.presence import PresenceEvent
from shared.status import MAX_REPORTED_KEYS, GatewayConfig, GatewayStatus, SourceHealth

if TYPE_CHECKING:  # dbus-fast is imported only on a gateway that advertises
    from edge.beacon.advertiser import StoreBeaconAdvertiser

log = logging.getLogger(__name__)

#: Events buffered in memory before the outbox write is forced rather than left to the
#: end of the loop turn: bounds what a crash mid-burst can lose to one small window.
FLUSH_EVENTS = 1000
#: Sightings gathered before they are processed without waiting for the end of the loop
#: turn. Batches of 64-256 ran fastest on a 2-core gateway (a batch's objects stay in the
#: CPU caches; 2,048 at once ran about 10% slower), and the bound keeps a burst from a
#: radio from piling up raw identifiers in memory.
PROCESS_SIGHTINGS = 256
#: Events held in memory while the outbox cannot be written (a full or failing disk):
#: a few minutes of a busy store, without letting a dead disk exhaust memory.
MAX_PENDING_EVENTS = 50_000
#: Occupancy reports held in memory while the outbox cannot be written: a day of minutes.
MAX_PENDING_REPORTS = 24 * 60
#: On a live shutdown, how long in-flight messages get to be acknowledged before the
#: agent disconnects anyway (the outbox keeps the rest for the next start).
SHUTDOWN_GRACE_S = 3.0


def software_version() -> str:
    try:
        return importlib.metadata.version("vitrina")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """What a run did; the `replay` command prints it."""

    frames: int
    rejected_frames: int
    sightings: int
    devices: int
    enters: int
    dwells: int
    exits: int
    events: int
    reduction_ratio: float
    published_events: int
    published_messages: int
    dropped: int
    queue_depth: int
    drained: bool
    pipeline_errors: int
    #: Occupancy reports made (one per minute) and acknowledged by the broker.
    occupancy_reports: int = 0
    published_reports: int = 0


class EdgeAgent:
    """One gateway's pipeline.

    `live=False` is a replay: the run ends when every source has finished. `wall_clock`
    lets the ticker advance the tracker's clock, which only makes sense when sightings
    carry the current time (live radios), not a recording's.
    """

    def __init__(
        self, settings: EdgeSettings, sources: Sequence[Source], *, live: bool = True,
        wall_clock: bool | None = None, count_devices: bool = False,
        advertiser: StoreBeaconAdvertiser | None = None,
    ) -> None:
        self.settings = settings
        self.sources = list(sources)
        #: Advertises the store beacon the cloud's config names (None: this gateway
        #: advertises nothing, e.g. no BLE adapter).
        self.advertiser = advertiser
        self.live = live
        self.wall_clock = live if wall_clock is None else wall_clock
        self._version = software_version()
        self._started = time.monotonic()
        identity = settings.identity
        self.identity = Identity(identity.tenant, identity.store, identity.gateway)
        self.keys = GatewayKeys(settings)
        self.pseudonymizer = SightingPseudonymizer(
            self.keys.ring.keys, self.keys.ring.active, settings.tz
        )
        self.tracker = Tracker(
            self.identity, TrackerThresholds.from_settings(settings.tracker, settings.zones)
        )
        self.occupancy: OccupancyCounter | None = None
        if settings.occupancy.enabled:
            calibration = EstimatorSettings(
                scans_per_phone_per_minute=settings.occupancy.scans_per_phone_per_minute,
                people_per_phone=settings.occupancy.people_per_phone,
                min_gap_s=settings.tracker.exit_after_s,
                max_gap_s=max(settings.tracker.exit_after_s, settings.tracker.max_exit_after_s),
            )
            self.occupancy = OccupancyCounter(self.identity, self.tracker.thresholds, calibration)
            for source in self.sources:
                if isinstance(source, ProbeSource):
                    source.attach_probe_sink(self._probe)
        self.outbox = Outbox(
            settings.outbox.path, max_events=settings.outbox.max_events,
            synchronous=settings.outbox.synchronous,
        )
        self.publisher = MqttPublisher(
            settings, self.outbox, on_config=self.apply_config,
            offline_status=lambda: self.status(online=False),
            on_config_outcome=self._heartbeat_soon,
        )
        #: Sources the cloud's config switched off: their sightings are dropped unread.
        self._muted_sources: frozenset[str] = frozenset()
        #: The canonical-id prefix of the store beacon's iBeacon (this gateway's or a
        #: neighbour's): its id rotates, so counted as a device it would be a new
        #: visitor every period. None: the config names no store beacon.
        self._own_beacon: str | None = None
        self.pipeline_errors = 0
        self.outbox_errors = 0
        self.pending_dropped = 0
        self._incoming: list[Sighting] = []
        self._probes: list[RawProbe] = []
        self._pending: list[PresenceEvent] = []
        self._reports: list[OccupancyReport] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.monotonic()
        #: The device's figures as of the last heartbeat (None before the first).
        self.health = HealthSampler(settings.outbox.path)
        self._figures: DeviceFigures | None = None
        #: Distinct pseudonyms, for a replay's summary only (live it would grow without bound).
        self._seen: set[str] | None = set() if count_devices else None

    # -- the pipeline -------------------------------------------------------------------

    def emit(self, sighting: Sighting) -> None:
        """A source saw a device. Runs on the loop; never raises.

        The sighting waits (in memory only) for the end of the loop turn, when the turn's
        sightings are processed as one batch; without a running loop, at once.
        """
        incoming = self._incoming
        incoming.append(sighting)
        if self._loop is None or len(incoming) >= PROCESS_SIGHTINGS:
            self.process()
        elif len(incoming) == 1:
            self._loop.call_soon(self.process)

    def _probe(self, at: float, frame: bytes, rssi: float | None, source: str) -> None:
        """A Wi-Fi source decoded a probe request (on the loop, just before its sighting):
        kept in memory for the occupancy counter until the end of the loop turn."""
        if source not in self._muted_sources:
            self._probes.append((at, frame, rssi))

    def process(self) -> None:
        """Pseudonymize and track the sightings gathered so far, in order, and count the
        probe requests; never raises.

        A malformed sighting is counted and logged, and the others go on.
        """
        if self._probes:
            self._count_occupancy()
        batch = self._incoming
        if not batch:
            return
        self._incoming = []
        if self._muted_sources:
            batch = [sighting for sighting in batch if sighting.source not in self._muted_sources]
        if self._own_beacon is not None:
            own = self._own_beacon
            batch = [sighting for sighting in batch if not sighting.canonical_id.startswith(own)]
        pseudonymous = self.pseudonymizer.pseudonymize_many(batch, self._pipeline_error)
        failed: list[PseudonymousSighting] = []

        def tracking_failed(sighting: PseudonymousSighting, error: Exception) -> None:
            failed.append(sighting)
            self._pipeline_error(sighting, error)

        events = self.tracker.observe_many(pseudonymous, tracking_failed)
        if self._seen is not None:
            failed_ids = {id(sighting) for sighting in failed}
            self._seen.update(sighting.pseudonym for sighting in pseudonymous
                              if id(sighting) not in failed_ids)
        if events:
            self._queue(events)

    def _count_occupancy(self) -> None:
        probes, self._probes = self._probes, []
        if self.occupancy is None:
            return
        try:
            reports = self.occupancy.observe(probes)
        except Exception as error:  # a defect must not stop presence tracking
            self.pipeline_errors += 1
            log.error("could not count occupancy", extra={"error": type(error).__name__})
            return
        self._queue_reports(reports)

    def _queue_reports(self, reports: list[OccupancyReport]) -> None:
        if reports:
            self._reports.extend(reports)
            if self._loop is None:
                self.flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self.flush)

    def _pipeline_error(self, sighting: Sighting | PseudonymousSighting, error: Exception) -> None:
        # a malformed sighting must not take its source down
        self.pipeline_errors += 1
        log.error("could not process a sighting", extra={"error": type(error).__name__,
                                                          "source": sighting.source})

    def _queue(self, events: list[PresenceEvent]) -> None:
        self._pending.extend(events)
        if len(self._pending) >= FLUSH_EVENTS or self._loop is None:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write buffered events to the outbox (one transaction) and wake the publisher;
        sightings still waiting are processed first."""
        self._flush_scheduled = False
        self.process()
        if self._reports:
            self._flush_reports()
        if not self._pending:
            return
        try:
            dropped = self.outbox.put_many(self._pending)
        except sqlite3.Error as error:
            # Disk full, storage gone read-only: keep the events in memory (bounded) and
            # try again on the next tick rather than lose them or stop capturing.
            self.outbox_errors += 1
            overflow = len(self._pending) - MAX_PENDING_EVENTS
            if overflow > 0:
                del self._pending[:overflow]
                self.pending_dropped += overflow
            log.error("cannot write to the outbox; holding events in memory",
                      extra={"error": str(error), "held": len(self._pending)})
            return
        self._pending = []
        if dropped:
            log.warning("outbox full: dropped the oldest events",
                        extra={"dropped": dropped, "max_events": self.outbox.max_events})
        self.publisher.wake()

    def _flush_reports(self) -> None:
        try:
            dropped = self.outbox.put_reports(report.model_dump_json() for report in self._reports)
        except sqlite3.Error as error:
            self.outbox_errors += 1
            overflow = len(self._reports) - MAX_PENDING_REPORTS
            if overflow > 0:
                del self._reports[:overflow]
            log.error("cannot write occupancy reports to the outbox; holding them in memory",
                      extra={"error": str(error), "held": len(self._reports)})
            return
        self._reports = []
        if dropped:
            log.warning("outbox full of occupancy reports: dropped the oldest",
                        extra={"dropped": dropped})
        self.publisher.wake()

    def apply_config(self, config: GatewayConfig) -> None:
        """The cloud's retained config; all or nothing (an unknown key id, or delivered
        keys that do not open or cannot be kept, reject it). Sightings that arrived
        before it are processed under the settings they came with.

        Keys it delivers (`keys`, sealed to this gateway) are opened and written to the
        key store before anything changes; from then they are the keys held, and one
        held before that they leave out is erased (`edge.keystore`). The store beacon
        (`beacon`) rotates under a key derived from one of them, so a beacon naming a key
        the gateway will not hold rejects the config too; a config without one stops it."""
        delivery = None
        if config.keys is not None:
            delivery = self.keys.open_delivered(config)
        elif config.active_key_id is not None and config.active_key_id not in (
            self.pseudonymizer.key_ids
        ):
            raise UnknownKeyError(f"active key id {config.active_key_id!r} is not provisioned")
        beacon = self._beacon_plan(config, delivery.ring if delivery is not None else None)
        self.process()
        if delivery is not None:
            ring = self.keys.commit(delivery)
            self.pseudonymizer.replace_keys(ring.keys, ring.active)
        self.tracker.apply(config)
        if self.occupancy is not None:
            self.occupancy.apply(self.tracker.thresholds)
        if config.active_key_id is not None:
            self.pseudonymizer.set_active_key(config.active_key_id)
        if config.sources is not None:
            self._muted_sources = config.sources.muted()
        self._own_beacon = (f"ibeacon:{config.beacon.uuid}:" if config.beacon is not None
                            else None)
        if self.advertiser is not None:
            self.advertiser.apply(beacon)

    def _beacon_plan(self, config: GatewayConfig, delivered: KeyRing | None) -> BeaconPlan | None:
        """The store beacon `config` asks for, under the keys held once it applies."""
        if config.beacon is None:
            return None
        ring = delivered if delivered is not None else self.keys.ring
        active = config.active_key_id or (
            delivered.active if delivered is not None else self.pseudonymizer.active_key_id)
        try:
            return BeaconPlan.build(config.beacon, keys=dict(ring.keys), active=active,
                                    tenant=self.identity.tenant, store=self.identity.store)
        except ContractError as error:
            raise UnknownKeyError(str(error)) from None

    @property
    def held_events(self) -> int:
        """Events produced but not yet written to the outbox."""
        return len(self._pending)

    # -- status -------------------------------------------------------------------------

    def source_health(self) -> dict[str, SourceHealth]:
        return {source.name: source.health() for source in self.sources}

    def status(self, *, online: bool = True) -> GatewayStatus:
        health = self.source_health()
        # The publisher asks for its last will while it is being built, before it is ours.
        publisher: MqttPublisher | None = getattr(self, "publisher", None)
        figures: DeviceFigures | None = getattr(self, "_figures", None)
        return GatewayStatus(
            tenant=self.identity.tenant,
            store=self.identity.store,
            gateway=self.identity.gateway,
            online=online,
            sent_at=datetime.now(UTC),
            software_version=self._version,
            uptime_s=round(time.monotonic() - self._started, 3),
            # The store beacon's advertiser reports beside the capture sources (its
            # registrations as frames, re-registrations after an adapter reset as
            # restarts); its errors are no rejected frames.
            sources=health if self.advertiser is None
            else {**health, self.advertiser.name: self.advertiser.health()},
            queue_depth=self.outbox.depth,
            published=self.outbox.published,
            dropped=self.outbox.dropped,
            rejected_frames=sum(item.errors for item in health.values()),
            devices_tracked=self.tracker.devices_tracked,
            active_key_id=self.pseudonymizer.active_key_id,
            key_ids=sorted(self.pseudonymizer.key_ids)[:MAX_REPORTED_KEYS],
            config_version=publisher.config_version if publisher else None,
            config_refused=publisher.config_refused if publisher else None,
            cpu_percent=figures.cpu_percent if figures else None,
            memory_bytes=figures.memory_bytes if figures else None,
            temperature_c=figures.temperature_c if figures else None,
            disk_free_bytes=figures.disk_free_bytes if figures else None,
        )

    def summary(self, *, drained: bool) -> AgentSummary:
        health = self.source_health()
        counters = self.tracker.counters
        return AgentSummary(
            frames=sum(item.frames for item in health.values()),
            rejected_frames=sum(item.errors for item in health.values()),
            sightings=counters.sightings,
            devices=len(self._seen) if self._seen is not None else self.tracker.devices_tracked,
            enters=counters.enters,
            dwells=counters.dwells,
            exits=counters.exits,
            events=counters.events,
            reduction_ratio=counters.reduction_ratio,
            published_events=self.publisher.counters.events,
            published_messages=self.publisher.counters.messages,
            dropped=self.outbox.dropped,
            queue_depth=self.outbox.depth,
            drained=drained,
            pipeline_errors=self.pipeline_errors,
            occupancy_reports=self.occupancy.counters.reports if self.occupancy else 0,
            published_reports=self.publisher.counters.reports,
        )

    def _heartbeat_soon(self) -> None:
        """After a config from the cloud: the heartbeat is its acknowledgement, so it
        goes now rather than at the next interval."""
        if self.publisher.connected:
            self._heartbeat()

    def _heartbeat(self) -> None:
        self._figures = self.health.sample()
        status = self.status()
        self.publisher.publish_status(status)
        self.outbox.record_status(status.model_dump_json())

    # -- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, drain_timeout: float | None = None) -> AgentSummary:
        """Run until `stop` is set (or, for a replay, the sources are exhausted)."""
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        background = asyncio.Event()
        connect = asyncio.create_task(self._connect(), name="mqtt-connect")
        pump = asyncio.create_task(self.publisher.pump(background), name="mqtt-pump")
        sources_stop = asyncio.Event()
        source_tasks = [
            asyncio.create_task(self._run_source(source, sources_stop), name=source.name)
            for source in self.sources
        ]
        ticker = asyncio.create_task(self._ticker(background), name="ticker")
        if self.advertiser is not None:
            source_tasks.append(asyncio.create_task(
                self._advertise(self.advertiser, sources_stop), name="beacon"))
        systemd.notify("READY=1")
        if not self.sources:
            log.warning("no capture source is enabled: only draining the outbox")
        log.info("agent started", extra={"sources": [s.name for s in self.sources],
                                         "live": self.live})
        drained = False
        try:
            await self._until_done(stop, source_tasks)
            sources_stop.set()
            await asyncio.gather(*source_tasks, return_exceptions=True)
            self.process()
            self._queue(self.tracker.close())
            if self.occupancy is not None:
                self._queue_reports(self.occupancy.close())
            self.flush()
            systemd.notify("STOPPING=1")
            grace = drain_timeout if drain_timeout is not None else SHUTDOWN_GRACE_S
            drained = await self._drain(grace, stop if drain_timeout is not None else None)
        finally:
            sources_stop.set()
            background.set()
            connect.cancel()
            for task in (*source_tasks, ticker, pump, connect):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.flush()
            self._heartbeat_offline_record()
            await self.publisher.close(self.status(online=False))
            summary = self.summary(drained=drained)
            self.outbox.close()
            self._loop = None  # the loop is ending: nothing may be scheduled on it any more
        log.info("agent stopped", extra={"queue_depth": summary.queue_depth,
                                         "published": summary.published_events})
        return summary

    async def _until_done(
        self, stop: asyncio.Event, source_tasks: list[asyncio.Task[None]]
    ) -> None:
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        waiting: set[asyncio.Future[Any]] = {stopped}
        if not self.live and source_tasks:
            sources_done = asyncio.gather(*source_tasks, return_exceptions=True)
            waiting.add(sources_done)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()

    async def _connect(self) -> None:
        try:
            await self.publisher.start()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a refused TLS config, a bad host name...
            log.error("cannot connect to the broker; events stay in the outbox",
                      extra={"error": type(error).__name__})

    async def _run_source(self, source: Source, stop: asyncio.Event) -> None:
        try:
            await source.run(self.emit, stop)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("capture source failed", extra={"source": source.name,
                                                      "error": type(error).__name__})
        finally:
            self.flush()

    async def _advertise(self, advertiser: StoreBeaconAdvertiser, stop: asyncio.Event) -> None:
        try:
            await advertiser.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the beacon must not take capture down with it
            log.error("store beacon failed", extra={"error": type(error).__name__})

    async def _ticker(self, stop: asyncio.Event) -> None:
        interval = self.settings.tick_interval_s
        status_every = self.settings.status_interval_s
        next_status = time.monotonic()
        while not stop.is_set():
            if self.wall_clock:
                self.process()  # the tracker's clock must not pass sightings still waiting
                now = time.time()
                self._queue(self.tracker.tick(now))
                if self.occupancy is not None:
                    self._queue_reports(self.occupancy.advance(now))
            self.flush()
            if time.monotonic() >= next_status and self.publisher.connected:
                self._heartbeat()
                next_status = time.monotonic() + status_every
            systemd.notify("WATCHDOG=1")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _drain(self, within_s: float, interrupt: asyncio.Event | None) -> bool:
        """Wait until the outbox is empty and nothing is in flight, or `within_s` passed."""
        return await self.publisher.drained(within_s, interrupt)

    def _heartbeat_offline_record(self) -> None:
        self.outbox.record_status(self.status(online=False).model_dump_json())
