"""The live presence stream over real HTTP (uvicorn on a port), on SQLite and PostgreSQL:
what counts as present, events and gateway changes arriving as they are stored (through
the ingest stage's own code), resuming after Last-Event-ID, and streams that end when
the client goes or the server stops."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.api.live import GATEWAY_SILENT_AFTER, live_hub
from cloud.db import session_scope
from cloud.ingest.batch import Inbound, write_batch
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from cloud.presence.live import PRESENT_TIMEOUT, short_pseudonym
from provisioning.local_broker import free_port
from shared.presence import PresenceEvent, Transition
from tests.cloud.factories import (
    batch_payload,
    bearer,
    cloud_settings,
    issue_key,
    make_event,
    presence_topic,
    status_payload,
    status_topic,
    wifi_pseudonym,
)
from tests.cloud.running import running_api, wait_for
from tests.cloud.sse import Sse, sse_events

NOW = datetime.now(UTC).replace(microsecond=0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Live:
    url: str
    tenant: str
    engine: Engine
    clock: Clock
    headers: dict[str, str]
    app: Any

    @property
    def path(self) -> str:
        return f"{self.url}/tenants/{self.tenant}/presence/live"

    def snapshot(self, **params: str) -> dict[str, Any]:
        response = httpx.get(self.path, params={"follow": "false", **params},
                             headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse(response.text)
        assert [event.name for event in events] == ["snapshot"]
        data: dict[str, Any] = events[0].data
        return data


def parse(text: str) -> list[Sse]:
    return list(sse_events(text.splitlines()))


class Stream:
    """A followed stream read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._events = sse_events(response.iter_lines())

    def next(self, name: str | None = None) -> Sse:
        """The next event (of that name: others are passed over)."""
        for event in self._events:
            if name is None or event.name == name:
                return event
        raise AssertionError(f"the stream ended before a {name or 'message'} event")

    def until(self, name: str, check: Any, *, timeout: float = 20) -> Sse:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next(name)
            if check(event.data):
                return event
        raise AssertionError(f"no {name} event passed the check")


@pytest.fixture
def live(engine: Engine, migrated_url: str, tenant: str) -> Iterator[Live]:
    clock = Clock()
    app = create_app(cloud_settings(tenant=tenant, database_url=migrated_url), engine=engine,
                     now=clock)
    key = issue_key(engine, tenant=tenant)
    with running_api(app, free_port()) as url:
        yield Live(url=url, tenant=tenant, engine=engine, clock=clock, headers=bearer(key),
                   app=app)


@contextlib.contextmanager
def stream(live: Live, headers: dict[str, str] | None = None) -> Iterator[Stream]:
    with httpx.Client(timeout=httpx.Timeout(10, read=20)) as client, client.stream(
        "GET", live.path, headers={**live.headers, **(headers or {})}
    ) as response:
        assert response.status_code == 200
        yield Stream(response)


def ingest(live: Live, events: Sequence[PresenceEvent]) -> None:
    """Store events as the ingest stage does (one message per gateway)."""
    by_gateway: dict[tuple[str, str], list[PresenceEvent]] = {}
    for event in events:
        by_gateway.setdefault((event.store, event.gateway), []).append(event)
    inbound = [Inbound(presence_topic(live.tenant, store, gateway), batch_payload(batch))
               for (store, gateway), batch in by_gateway.items()]
    outcome = write_batch(live.engine, inbound, received_at=live.clock(), tenants={live.tenant})
    assert outcome.events_new == len(events)
    assert outcome.dead_letters == 0


def report_status(live: Live, *, online: bool, sent_at: datetime, **fields: Any) -> None:
    inbound = Inbound(status_topic(live.tenant, "s1", "g1"), status_payload(
        tenant=live.tenant, online=online, sent_at=sent_at, **fields))
    assert write_batch(live.engine, [inbound], received_at=live.clock()).statuses == 1


def device(name: str) -> str:
    return wifi_pseudonym(f"00:1e:c2:{name}")


def event(live: Live, who: str, transition: Transition, *, ago: timedelta,
          first_ago: timedelta | None = None, **fields: Any) -> PresenceEvent:
    last = live.clock() - ago
    return make_event(tenant=live.tenant, pseudonym=device(who), transition=transition,
                      first_seen=live.clock() - (first_ago or ago), last_seen=last, **fields)


def store_counts(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {store["store"]: store for store in snapshot["counts"]["stores"]}


def zones(store: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {zone["zone"]: (zone["devices_present"], zone["entered_last_hour"])
            for zone in store["zones"]}


def test_present_devices_are_counted_per_store_and_zone(live: Live) -> None:
    minute = timedelta(minutes=1)
    with session_scope(live.engine) as session:
        put_store(session, tenant=live.tenant, key="s3", now=live.clock(),
                  data=StoreCreate(name="Quiet store", time_zone="Europe/Madrid"))
        session.commit()
    ingest(live, [
        event(live, "aa:00:01", Transition.ENTER, ago=minute, zone="entrance"),
        # Entered, then still there (a dwell): present in the dwell's zone.
        event(live, "aa:00:02", Transition.ENTER, ago=4 * minute, zone="entrance"),
        event(live, "aa:00:02", Transition.DWELL, ago=minute, first_ago=4 * minute,
              zone="floor"),
        # Entered and left.
        event(live, "aa:00:03", Transition.ENTER, ago=5 * minute),
        event(live, "aa:00:03", Transition.EXIT, ago=2 * minute, first_ago=5 * minute),
        # Entered and never heard of again: timed out.
        event(live, "aa:00:04", Transition.ENTER, ago=PRESENT_TIMEOUT + minute),
        # Heard by two gateways: one device, in the zone of its newest event.
        event(live, "aa:00:05", Transition.ENTER, ago=3 * minute, zone="floor"),
        event(live, "aa:00:05", Transition.ENTER, ago=2 * minute, gateway="g2", zone="tills"),
        # Left one gateway's range, still heard by the other.
        event(live, "aa:00:06", Transition.ENTER, ago=6 * minute, zone="floor"),
        event(live, "aa:00:06", Transition.EXIT, ago=minute, first_ago=6 * minute,
              zone="floor"),
        event(live, "aa:00:06", Transition.DWELL, ago=2 * minute, first_ago=6 * minute,
              gateway="g2", zone="tills"),
        event(live, "aa:00:07", Transition.ENTER, ago=minute, store="s2"),
        # Entered more than an hour ago, still there: present, not entered lately.
        event(live, "aa:00:08", Transition.DWELL, ago=minute, first_ago=90 * minute,
              zone="floor"),
    ])
    stores = store_counts(live.snapshot())
    assert set(stores) == {"s1", "s2", "s3"}
    assert stores["s1"]["devices_present"] == 5
    assert stores["s1"]["entered_last_hour"] == 6
    assert zones(stores["s1"]) == {"entrance": (1, 2), "floor": (2, 4), "tills": (2, 1)}
    assert stores["s2"]["devices_present"] == 1
    assert stores["s2"]["name"] is None
    assert stores["s3"] == {"store": "s3", "name": "Quiet store", "devices_present": 0,
                            "entered_last_hour": 0, "zones": []}
    live.clock.now += PRESENT_TIMEOUT
    later = live.snapshot()
    assert later["counts"]["present_timeout_s"] == PRESENT_TIMEOUT.total_seconds()
    assert {store: counts["devices_present"]
            for store, counts in store_counts(later).items()} == {"s1": 0, "s2": 0, "s3": 0}


def test_events_counts_and_gateway_changes_arrive_while_the_stream_is_open(
    live: Live,
) -> None:
    report_status(live, online=True, sent_at=live.clock(), queue_depth=3, software_version="1.4.2",
                  sources={"ble": {"alive": True, "frames": 120, "errors": 0}})
    with stream(live) as opened:
        first = opened.next()
        assert first.name == "snapshot"
        assert first.retry is not None
        assert first.data["events"] == []
        assert first.data["resumed_after"] is None
        assert [(gateway["gateway"], gateway["state"], gateway["queue_depth"])
                for gateway in first.data["gateways"]] == [("g1", "online", 3)]
        ingest(live, [event(live, "bb:00:01", Transition.ENTER, ago=timedelta(seconds=5),
                            zone="entrance")])
        arrived = opened.next("presence")
        assert arrived.data["device"] == short_pseudonym(device("bb:00:01"))
        assert arrived.data["device"] != device("bb:00:01")
        assert (arrived.data["store"], arrived.data["zone"], arrived.data["gateway"],
                arrived.data["transition"]) == ("s1", "entrance", "g1", "enter")
        assert arrived.id == str(arrived.data["id"])
        opened.until("counts", lambda counts: counts["stores"][0]["devices_present"] == 1)
        report_status(live, online=False, sent_at=live.clock() + timedelta(seconds=1))
        offline = opened.until("gateway", lambda gateway: gateway["state"] == "offline")
        assert offline.data["gateway"] == "g1"
        ingest(live, [event(live, "bb:00:01", Transition.EXIT, ago=timedelta(seconds=1),
                            first_ago=timedelta(seconds=5), zone="entrance")])
        assert opened.next("presence").data["transition"] == "exit"
        opened.until("counts", lambda counts: counts["stores"][0]["devices_present"] == 0)


def test_a_gateway_without_heartbeats_turns_silent(live: Live) -> None:
    report_status(live, online=True, sent_at=live.clock())
    assert live.snapshot()["gateways"][0]["state"] == "online"
    live.clock.now += GATEWAY_SILENT_AFTER + timedelta(seconds=1)
    assert live.snapshot()["gateways"][0]["state"] == "silent"


def test_a_reconnection_resumes_after_the_last_event_id(live: Live) -> None:
    second = timedelta(seconds=1)
    ingest(live, [event(live, f"cc:00:{index:02x}", Transition.ENTER, ago=second * (9 - index))
                  for index in range(3)])
    listed = live.snapshot()["events"]
    assert [item["device"] for item in listed] == [
        short_pseudonym(device(f"cc:00:{index:02x}")) for index in (2, 1, 0)]
    oldest = listed[-1]["id"]
    ingest(live, [event(live, "cc:00:09", Transition.ENTER, ago=second)])
    with stream(live, {"Last-Event-ID": str(oldest)}) as resumed:
        snapshot = resumed.next()
    assert snapshot.data["resumed_after"] == oldest
    assert [item["device"] for item in snapshot.data["events"]] == [
        short_pseudonym(device(name)) for name in ("cc:00:09", "cc:00:02", "cc:00:01")]
    assert snapshot.id == str(snapshot.data["events"][0]["id"])
    only = live.snapshot(topic="gateways")
    assert only["events"] is None
    assert only["counts"] is None
    assert only["gateways"] == []


def test_bad_parameters_are_refused_with_the_field_named(live: Live) -> None:
    bad_id = httpx.get(live.path, params={"follow": "false"},
                       headers={**live.headers, "Last-Event-ID": "yesterday"})
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["loc"] == ["header", "last-event-id"]
    bad_topic = httpx.get(live.path, params={"follow": "false", "topic": "weather"},
                          headers=live.headers)
    assert bad_topic.status_code == 422
    assert bad_topic.json()["detail"][0]["loc"] == ["query", "topic", "0"]


def test_streams_end_when_the_client_goes_and_are_capped(live: Live) -> None:
    hub = live_hub(live.app)
    with stream(live) as opened, stream(live) as second:
        opened.next("snapshot")
        second.next("snapshot")
        assert hub.streams == 2
        assert len(hub.feeds) == 1  # one poller for the tenant's streams
        # Open streams hold no database connection (the poller borrows one each second).
        wait_for(lambda: live.engine.pool.checkedout() == 0, what="no connection held")  # type: ignore[attr-defined]
        hub.max_streams = 2
        refused = httpx.get(live.path, headers=live.headers, timeout=10)
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
    wait_for(lambda: hub.streams == 0 and not hub.feeds, what="the stream and its feed ended",
             timeout=10)


def test_the_server_stops_promptly_with_a_stream_open(
    engine: Engine, migrated_url: str, tenant: str,
) -> None:
    app = create_app(cloud_settings(tenant=tenant, database_url=migrated_url), engine=engine)
    headers = bearer(issue_key(engine, tenant=tenant))
    server = running_api(app, free_port())
    url = server.__enter__()
    try:
        with httpx.Client(timeout=20) as client, client.stream(
            "GET", f"{url}/tenants/{tenant}/presence/live", headers=headers
        ) as response:
            events = sse_events(response.iter_lines())
            assert next(events).name == "snapshot"
            started = time.monotonic()
            server.__exit__(None, None, None)  # what leaving the context does
            stopped_in = time.monotonic() - started
            rest = list(events)
    finally:
        server.__exit__(None, None, None)
    assert stopped_in < 5, "the server waited for the open stream"
    assert [event.name for event in rest] == ["end"]
    assert "stopping" in rest[0].data["reason"]
