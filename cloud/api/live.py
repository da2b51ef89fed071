"""Live presence as server-sent events: GET /tenants/{tenant}/presence/live.

What a stream sends (each `data` is one JSON document):

- `snapshot`, first: devices present now and entered in the last hour per store and zone,
  every gateway's health, and the newest events (or, after a reconnection that sent
  `Last-Event-ID`, the events stored since that one). It also sets the client's `retry`.
- `presence`: each new enter, dwell or exit, its device shown only by a shortened
  pseudonym; the SSE id is the event's row id, so a reconnecting client resumes after it.
- `counts`: the counts again, whenever they change (events arrived, or devices timed out).
- `gateway`: one gateway's health, whenever it changes (a heartbeat, a last will, or no
  heartbeat for `GATEWAY_SILENT_AFTER`).
- `end`: the server ends the stream (its lifetime is over, the client fell behind, or the
  server is stopping); an EventSource reconnects by itself and resumes.

`?follow=false` sends the snapshot and ends (scripts, checks); `?topic=gateways` (and
`counts`, `events`, repeatable) keeps to some kinds. Pings (SSE comments) keep proxies
from closing a quiet stream.

The database is read by one poller per tenant for all the streams of this process
(`TenantFeed`), started with the first stream and stopped with the last; a stream only
reads its queue. The worker that stores events may be another process, so the database
is the one place both see: polling it once a second is the whole cost of live updates,
whatever the number of screens open. Streams are capped per process (`MAX_STREAMS`),
hold no database connection while they wait, and end when the client goes, when the
server stops (`end_live_streams`), and after `MAX_STREAM_S` so that a member whose
session ended or whose role changed stops receiving within that time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlmodel import Session
from sse_starlette import EventSourceResponse, ServerSentEvent

from cloud.api.access import MayReadAnalytics
from cloud.api.deps import SessionDep
from cloud.api.errors import refusals
from cloud.bounds import INT8_MAX
from cloud.db import session_scope
from cloud.places.crud import list_stores
from cloud.presence.crud import list_gateways
from cloud.presence.live import (
    PRESENT_TIMEOUT,
    LiveEvent,
    PresenceNow,
    events_after,
    newest_event_id,
    presence_now,
    recent_events,
)
from cloud.presence.models import GatewayHealth, GatewayHealthPublic

log = logging.getLogger(__name__)

router = APIRouter(tags=["presence"])

#: Streams one process serves at once: each is a socket and a queue (the database work
#: is per tenant, not per stream); past this a client is told to come back later.
MAX_STREAMS = 200
#: How often a tenant's poller reads new events and gateway health: what "live" means.
POLL_INTERVAL_S = 1.0
#: Counts are recounted when events arrived, but not more often than this: under a
#: steady flow of events the count query runs every other poll, not every one.
COUNTS_MIN_INTERVAL_S = 2.0
#: And at least this often without events, so devices that time out leave the count.
COUNTS_REFRESH_S = 15.0
#: New events read per poll; a burst beyond it shows its newest (the counts stay exact).
POLL_EVENTS_MAX = 500
#: Events in the snapshot: what the page's list shows on opening.
SNAPSHOT_EVENTS = 50
#: An event id older than this many seconds past the newest sent is not waited for: a
#: transaction that took a row id before another commits after it, within this time.
REORDER_GRACE_S = 10.0
#: What a client's queue may hold before it counts as fallen behind (its stream then
#: ends; it reconnects and gets a fresh snapshot).
LISTENER_QUEUE_MAX = 1000
#: A stream's lifetime: the client reconnects after it, which checks its session again.
MAX_STREAM_S = 10 * 60
#: How long a client waits before reconnecting (the SSE `retry` field).
RECONNECT_MS = 3000
#: An SSE comment this often keeps proxies and load balancers from closing a quiet stream.
PING_S = 15
#: A gateway heartbeats every 30 s by default and the broker publishes its last will
#: 1.5 keep-alives (45 s) after its connection drops; a report older than this means
#: no status reaches the orchestrator at all (broker, worker or gateway clock).
GATEWAY_SILENT_AFTER = timedelta(minutes=3)
#: How long a new stream waits for its tenant's poller to start before giving up.
FEED_START_TIMEOUT_S = 10.0


class Topic(StrEnum):
    COUNTS = "counts"
    EVENTS = "events"
    GATEWAYS = "gateways"


ALL_TOPICS = frozenset(Topic)


class GatewayState(StrEnum):
    #: Reported online, and its heartbeat is recent.
    ONLINE = "online"
    #: Reported online, but no heartbeat for `GATEWAY_SILENT_AFTER`.
    SILENT = "silent"
    #: Said it is going (clean stop) or the broker published its last will.
    OFFLINE = "offline"


class GatewayLive(GatewayHealthPublic):
    state: GatewayState
    silent_after_s: float


class ZonePresence(BaseModel):
    zone: str
    devices_present: int
    entered_last_hour: int


class StorePresence(BaseModel):
    store: str
    #: The store's name when it is set up (GET /stores); gateways may report others.
    name: str | None
    devices_present: int
    entered_last_hour: int
    zones: list[ZonePresence]


class PresenceCounts(BaseModel):
    at: datetime
    present_timeout_s: float = Field(
        description="an enter or dwell seen longer ago than this no longer counts")
    stores: list[StorePresence]


class LiveSnapshot(BaseModel):
    """The first message of a stream; parts of topics not asked for are null."""

    counts: PresenceCounts | None
    gateways: list[GatewayLive] | None
    events: list[LiveEvent] | None = Field(description="newest first")
    resumed_after: int | None = Field(
        description="the Last-Event-ID these events follow (null: the newest events)")
    more: bool = Field(description="more events than listed were stored since")


# ---- reading -------------------------------------------------------------------------


def gateway_live(row: GatewayHealth, now: datetime) -> GatewayLive:
    if not row.online:
        state = GatewayState.OFFLINE
    elif now - row.status_sent_at > GATEWAY_SILENT_AFTER:
        state = GatewayState.SILENT
    else:
        state = GatewayState.ONLINE
    return GatewayLive.model_validate(row, update={
        "state": state, "silent_after_s": GATEWAY_SILENT_AFTER.total_seconds(),
    })


def read_gateways(session: Session, *, tenant: str, now: datetime) -> list[GatewayLive]:
    return [gateway_live(row, now) for row in list_gateways(session, tenant=tenant)]


def read_counts(session: Session, *, tenant: str, now: datetime) -> PresenceCounts:
    """Per store set up here, with a gateway, or seen lately: devices present and
    entered, per zone (a store with none of either is listed with zeros)."""
    names = {store.key: store.name for store in list_stores(session, tenant=tenant)}
    equipped = {gateway.store for gateway in list_gateways(session, tenant=tenant)}
    return PresenceCounts(
        at=now, present_timeout_s=PRESENT_TIMEOUT.total_seconds(),
        stores=_stores(presence_now(session, tenant=tenant, now=now), names, equipped),
    )


def _stores(found: PresenceNow, names: dict[str, str], equipped: set[str]
            ) -> list[StorePresence]:
    zones: dict[str, dict[str, list[int]]] = {store: {} for store in {*names, *equipped}}
    for row in found.present:
        zones.setdefault(row.store, {}).setdefault(row.zone, [0, 0])[0] = row.devices
    for row in found.entered_by_zone:
        zones.setdefault(row.store, {}).setdefault(row.zone, [0, 0])[1] = row.devices
    return [
        StorePresence(
            store=store, name=names.get(store),
            devices_present=sum(present for present, _ in by_zone.values()),
            entered_last_hour=found.entered_by_store.get(store, 0),
            zones=[ZonePresence(zone=zone, devices_present=present, entered_last_hour=entered)
                   for zone, (present, entered) in sorted(by_zone.items())],
        )
        for store, by_zone in sorted(zones.items())
    ]


def read_snapshot(
    engine: Engine, *, tenant: str, topics: frozenset[Topic], now: datetime,
    after_id: int | None,
) -> LiveSnapshot:
    """Everything a new stream starts from (runs in a worker thread)."""
    with session_scope(engine) as session:
        events, more = (recent_events(session, tenant=tenant, now=now, limit=SNAPSHOT_EVENTS,
                                      after_id=after_id)
                        if Topic.EVENTS in topics else (None, False))
        return LiveSnapshot(
            counts=read_counts(session, tenant=tenant, now=now)
            if Topic.COUNTS in topics else None,
            gateways=read_gateways(session, tenant=tenant, now=now)
            if Topic.GATEWAYS in topics else None,
            events=events, resumed_after=after_id, more=more,
        )


def snapshot_message(snapshot: LiveSnapshot) -> ServerSentEvent:
    newest = max((event.id for event in snapshot.events or ()), default=snapshot.resumed_after)
    return ServerSentEvent(
        data=snapshot.model_dump_json(), event="snapshot",
        id=str(newest) if newest is not None else None, retry=RECONNECT_MS,
    )


# ---- the shared poller ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One message for every interested stream, serialised once."""

    topic: Topic
    message: ServerSentEvent
    event_id: int | None = None


class EventCursor:
    """Which of a tenant's events were sent, allowing for transactions that commit out of
    row-id order (two ingest workers: the later id may commit first). Ids above `floor`
    are looked at on every poll and sent once; `floor` moves up to the newest id sent
    `REORDER_GRACE_S` ago, when nothing below it can still appear."""

    def __init__(self, start: int) -> None:
        self.floor = start
        self.high = start
        self._sent: dict[int, float] = {}
        self._marks: deque[tuple[float, int]] = deque()

    def take(self, events: list[LiveEvent], *, at: float, full: bool) -> list[LiveEvent]:
        """The events not sent before, oldest first; `full`: the poll read its limit, so
        older unsent ones are skipped for good (a burst shows its newest)."""
        fresh = sorted((event for event in events
                        if event.id > self.floor and event.id not in self._sent),
                       key=lambda event: event.id)
        for event in fresh:
            self._sent[event.id] = at
            self.high = max(self.high, event.id)
        if full and events:
            self.floor = max(self.floor, min(event.id for event in events) - 1)
        self._marks.append((at, self.high))
        while self._marks and at - self._marks[0][0] >= REORDER_GRACE_S:
            self.floor = max(self.floor, self._marks.popleft()[1])
        for sent in [sent for sent in self._sent if sent <= self.floor]:
            del self._sent[sent]
        return fresh


@dataclass(eq=False)
class Listener:
    """One stream's queue on its tenant's feed."""

    feed: TenantFeed
    topics: frozenset[Topic]
    queue: asyncio.Queue[Item | None] = field(
        default_factory=lambda: asyncio.Queue(LISTENER_QUEUE_MAX))
    ended: str | None = None

    def offer(self, item: Item) -> None:
        if self.ended is not None or item.topic not in self.topics:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.end("the client fell behind")

    def end(self, reason: str) -> None:
        """Stop this stream after what it has (once)."""
        if self.ended is not None:
            return
        self.ended = reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass(frozen=True, slots=True)
class Reading:
    events: list[LiveEvent]
    gateways: list[GatewayLive]
    counts: PresenceCounts | None


class TenantFeed:
    """Polls one tenant's presence for every stream of this process that watches it."""

    def __init__(self, tenant: str, *, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.tenant = tenant
        self.engine = engine
        self.clock = clock
        self.listeners: set[Listener] = set()
        self.ready = asyncio.Event()
        self.cursor = EventCursor(0)
        self.task: asyncio.Task[None] | None = None
        self._gateways: dict[tuple[str, str], GatewayLive] = {}
        self._counts: PresenceCounts | None = None
        self._counted_at = float("-inf")

    def add(self, listener: Listener) -> None:
        """A new stream: the next poll sends every gateway and the counts again, so that
        what it receives after its snapshot never depends on what others were sent."""
        self.listeners.add(listener)
        self._gateways = {}
        self._counts = None
        self._counted_at = float("-inf")
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name=f"live-feed-{self.tenant}")

    async def _run(self) -> None:
        while True:
            try:
                start = await asyncio.to_thread(self._newest_id)
                break
            except Exception:
                log.warning("live feed of %s: database unavailable; trying again",
                            self.tenant, exc_info=True)
                await asyncio.sleep(POLL_INTERVAL_S)
        self.cursor = EventCursor(start)
        self.ready.set()
        while self.listeners:
            await asyncio.sleep(POLL_INTERVAL_S)
            at = time.monotonic()
            counts_due = at - self._counted_at >= COUNTS_REFRESH_S
            counts_allowed = at - self._counted_at >= COUNTS_MIN_INTERVAL_S
            try:
                reading = await asyncio.to_thread(
                    self._read, self.cursor.floor, self.cursor.high, counts_due, counts_allowed)
            except Exception:
                log.warning("live feed of %s: poll failed; trying again", self.tenant,
                            exc_info=True)
                continue
            if reading.counts is not None:
                self._counted_at = at
            self._publish(reading, at=at)

    def _newest_id(self) -> int:
        with session_scope(self.engine) as session:
            return newest_event_id(session)

    def _read(self, floor: int, high: int, counts_due: bool, counts_allowed: bool) -> Reading:
        """One poll's reads (in a worker thread): new events and gateways, and the counts
        when due or when new events arrived."""
        now = self.clock()
        with session_scope(self.engine) as session:
            events = events_after(session, tenant=self.tenant, after_id=floor,
                                  limit=POLL_EVENTS_MAX)
            arrived = any(event.id > high for event in events)
            counts = (read_counts(session, tenant=self.tenant, now=now)
                      if counts_due or (arrived and counts_allowed) else None)
            return Reading(events=events, counts=counts,
                           gateways=read_gateways(session, tenant=self.tenant, now=now))

    def _publish(self, reading: Reading, *, at: float) -> None:
        items: list[Item] = []
        fresh = self.cursor.take(reading.events, at=at,
                                 full=len(reading.events) >= POLL_EVENTS_MAX)
        for event in fresh:
            items.append(Item(Topic.EVENTS, ServerSentEvent(
                data=event.model_dump_json(), event="presence", id=str(event.id)),
                event_id=event.id))
        for gateway in reading.gateways:
            key = (gateway.store, gateway.gateway)
            if self._gateways.get(key) != gateway:
                self._gateways[key] = gateway
                items.append(Item(Topic.GATEWAYS, ServerSentEvent(
                    data=gateway.model_dump_json(), event="gateway")))
        counts = reading.counts
        if counts is not None and (
            self._counts is None or self._counts.stores != counts.stores
        ):
            self._counts = counts
            items.append(Item(Topic.COUNTS, ServerSentEvent(
                data=counts.model_dump_json(), event="counts")))
        for item in items:
            for listener in list(self.listeners):
                listener.offer(item)


class StreamRefusedError(Exception):
    """No stream now: too many open, or the server is stopping."""


class LiveHub:
    """The process's live feeds, one per tenant watched, and its count of streams."""

    def __init__(self, *, engine: Engine, clock: Callable[[], datetime],
                 max_streams: int = MAX_STREAMS) -> None:
        self.engine = engine
        self.clock = clock
        self.max_streams = max_streams
        self.feeds: dict[str, TenantFeed] = {}
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def streams(self) -> int:
        return sum(len(feed.listeners) for feed in self.feeds.values())

    def check_open(self) -> None:
        if self.closing:
            raise StreamRefusedError("the server is stopping")
        if self.streams >= self.max_streams:
            raise StreamRefusedError(f"this server has {self.max_streams} live streams open")

    def subscribe(self, tenant: str, topics: frozenset[Topic]) -> Listener:
        self.check_open()
        self.loop = asyncio.get_running_loop()
        feed = self.feeds.get(tenant)
        if feed is None:
            feed = self.feeds[tenant] = TenantFeed(tenant, engine=self.engine, clock=self.clock)
        listener = Listener(feed=feed, topics=topics)
        feed.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        feed = listener.feed
        feed.listeners.discard(listener)
        if not feed.listeners and self.feeds.get(feed.tenant) is feed:
            del self.feeds[feed.tenant]
            if feed.task is not None:
                feed.task.cancel()

    def close(self) -> None:
        """End every stream and refuse new ones (on the hub's event loop)."""
        self.closing = True
        for feed in list(self.feeds.values()):
            for listener in list(feed.listeners):
                listener.end("the server is stopping")


_HUB_LOCK = threading.Lock()


def live_hub(app: FastAPI) -> LiveHub:
    """This app's hub (made on first use)."""
    with _HUB_LOCK:
        hub: LiveHub | None = getattr(app.state, "live_hub", None)
        if hub is None:
            hub = LiveHub(engine=app.state.engine, clock=app.state.now)
            app.state.live_hub = hub
        return hub


def end_live_streams(app: FastAPI) -> None:
    """End the app's streams and refuse new ones, from any thread: call it before telling
    the server to stop, which otherwise waits for open streams to finish."""
    hub: LiveHub | None = getattr(app.state, "live_hub", None)
    if hub is None:
        return
    loop = hub.loop
    if loop is None or loop.is_closed():
        hub.closing = True
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        hub.close()
    else:
        loop.call_soon_threadsafe(hub.close)


# ---- the route -----------------------------------------------------------------------


def _end(reason: str) -> ServerSentEvent:
    return ServerSentEvent(data=f'{{"reason": "{reason}"}}', event="end")


async def _stream(
    hub: LiveHub, *, tenant: str, topics: frozenset[Topic], after_id: int | None,
    follow: bool,
) -> AsyncIterator[ServerSentEvent]:
    def snapshot() -> LiveSnapshot:
        return read_snapshot(hub.engine, tenant=tenant, topics=topics, now=hub.clock(),
                             after_id=after_id)

    if not follow:
        yield snapshot_message(await asyncio.to_thread(snapshot))
        return
    try:
        listener = hub.subscribe(tenant, topics)
    except StreamRefusedError as refused:
        yield _end(str(refused))
        return
    try:
        try:
            await asyncio.wait_for(listener.feed.ready.wait(), FEED_START_TIMEOUT_S)
        except TimeoutError:
            yield _end("the database is not answering: reconnect later")
            return
        first = await asyncio.to_thread(snapshot)
        yield snapshot_message(first)
        already = {event.id for event in first.events or ()}
        deadline = time.monotonic() + MAX_STREAM_S
        while True:
            # A deadline per wait, not a timeout around the loop: the generator is
            # suspended at each yield, where a timeout would cancel the sender instead.
            try:
                item = await asyncio.wait_for(listener.queue.get(),
                                              max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                yield _end("the stream's lifetime is over: reconnect")
                return
            if item is None:
                yield _end(listener.ended or "ended")
                return
            if item.event_id is None or item.event_id not in already:
                yield item.message
    finally:
        hub.unsubscribe(listener)


#: The end of a stream, as the OpenAPI document shows it (a snapshot's and an event's JSON
#: are long; their fields are in the module docs).
STREAM_EXAMPLE = ": ping\n\nevent: end\ndata: {\"reason\": \"the stream's lifetime is over: " \
    "reconnect\"}\n\n"


def _topics(asked: Iterable[Topic] | None) -> frozenset[Topic]:
    return frozenset(asked) if asked else ALL_TOPICS


@router.get(
    "/presence/live",
    response_class=EventSourceResponse,
    responses={200: {"description": "A text/event-stream of snapshot, presence, counts, "
                                    "gateway and end events (see the module docs).",
                     "content": {"text/event-stream": {"example": STREAM_EXAMPLE}}},
               **refusals(503)},
)
def live_presence(
    caller: MayReadAnalytics, request: Request, session: SessionDep, tenant: str,
    topic: Annotated[list[Topic] | None, Query(
        description="what to send (repeatable); all when left out")] = None,
    follow: Annotated[bool, Query(
        description="false: send the snapshot and end the stream")] = True,
    last_event_id: Annotated[int | None, Header(
        ge=0, le=INT8_MAX, description="sent by a reconnecting EventSource: the events after it "
                          "make the snapshot's list")] = None,
) -> EventSourceResponse:
    """Devices present per store and zone, new presence events and gateway health, as
    server-sent events: a snapshot, then changes as they are stored."""
    # The stream may last minutes: give the request's connection back to the pool now
    # (authentication is done; the stream reads through its tenant's feed). A plain
    # function, so this runs in the thread pool, not on the event loop.
    session.close()
    hub = live_hub(request.app)
    if follow:
        try:
            hub.check_open()
        except StreamRefusedError as refused:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(refused),
                                headers={"Retry-After": str(RECONNECT_MS // 1000)}) from None
    return EventSourceResponse(
        _stream(hub, tenant=tenant, topics=_topics(topic), after_id=last_event_id,
                follow=follow),
        ping=PING_S,
    )
