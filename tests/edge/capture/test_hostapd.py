"""hostapd's control interface, against a real Unix datagram server that behaves like hostapd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.capture.hostapd import (
    EventKind,
    HostapdEvent,
    HostapdSource,
    event_sighting,
    parse_event,
)
from edge.capture.source import Source
from edge.sighting import Sighting
from shared.errors import ContractError
from shared.identifiers import IdentifierKind, wifi_identifier
from tests.edge.capture.support import eventually

RANDOM_STATION = "da:a1:19:5e:00:01"
GLOBAL_STATION = "3c:5a:b4:00:00:02"


class FakeHostapd:
    """hostapd's control socket: ATTACH/DETACH/PING, events to attached clients, restarts."""

    def __init__(self, path: Path, *, answer_ping: bool = True) -> None:
        self.path = path
        self.answer_ping = answer_ping
        self.clients: set[str] = set()
        self.commands: list[str] = []
        self.attached = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.settimeout(0.05)
        self._sock, self._running = sock, True
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            self.clients.clear()
        self.attached.clear()

    def restart(self) -> None:
        """Like hostapd restarting: the socket file is recreated and every client forgotten."""
        self.stop()
        self.start()

    def _serve(self, sock: socket.socket) -> None:
        while self._running:
            try:
                data, sender = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            command = data.decode()
            self.commands.append(command)
            reply: str | None
            if command == "ATTACH probe_rx_events=1":
                with self._lock:
                    self.clients.add(sender)
                reply = "OK\n"
                self.attached.set()
            elif command == "DETACH":
                with self._lock:
                    self.clients.discard(sender)
                reply = "OK\n"
            elif command == "PING":
                reply = "PONG\n" if self.answer_ping else None
            else:
                reply = "UNKNOWN COMMAND\n"
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply.encode(), sender)

    def send_event(self, text: str) -> None:
        assert self._sock is not None
        with self._lock:
            clients = list(self.clients)
        for client in clients:
            self._sock.sendto(text.encode(), client)


@pytest.fixture
def sockets_dir() -> Iterator[Path]:
    """A short directory: Unix socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="hapd") as directory:
        yield Path(directory)


@pytest.fixture
def hostapd(sockets_dir: Path) -> Iterator[FakeHostapd]:
    server = FakeHostapd(sockets_dir / "wlan0")
    server.start()
    yield server
    server.stop()


def make_source(
    sockets_dir: Path, *, retry_min_s: float = 0.05, retry_max_s: float = 0.2
) -> HostapdSource:
    """Fast keepalive and backoff, so restarts are noticed within a fraction of a second."""
    return HostapdSource(
        sockets_dir / "wlan0", local_dir=sockets_dir, ping_interval_s=0.1, reply_timeout_s=0.3,
        retry_min_s=retry_min_s, retry_max_s=retry_max_s,
    )


# ---------------------------------------------------------------- parsing


def test_parses_the_three_station_events() -> None:
    assert parse_event(f"<3>AP-STA-CONNECTED {RANDOM_STATION}") == HostapdEvent(
        EventKind.CONNECTED, RANDOM_STATION
    )
    assert parse_event(f"<3>AP-STA-DISCONNECTED {GLOBAL_STATION.upper()}") == HostapdEvent(
        EventKind.DISCONNECTED, GLOBAL_STATION
    )
    assert parse_event(f"<3>RX-PROBE-REQUEST sa={RANDOM_STATION} signal=-57") == HostapdEvent(
        EventKind.PROBE, RANDOM_STATION, -57
    )


def test_parses_extra_fields_and_the_global_interface_prefix() -> None:
    event = parse_event(f"IFNAME=wlan0 <3>AP-STA-CONNECTED {RANDOM_STATION} keyid=guest")
    assert event == HostapdEvent(EventKind.CONNECTED, RANDOM_STATION)
    assert parse_event(f"<3>RX-PROBE-REQUEST sa={RANDOM_STATION}") == HostapdEvent(
        EventKind.PROBE, RANDOM_STATION, None
    )


def test_ignores_other_messages() -> None:
    assert parse_event("<3>CTRL-EVENT-EAP-STARTED 02:00:00:00:00:01") is None
    assert parse_event("OK") is None
    assert parse_event("") is None


@pytest.mark.parametrize(
    "message",
    [
        "<3>AP-STA-CONNECTED not-a-mac",
        "<3>AP-STA-CONNECTED",
        "<3>RX-PROBE-REQUEST signal=-50",
        f"<3>RX-PROBE-REQUEST sa={RANDOM_STATION} signal=strong",
        "<3>RX-PROBE-REQUEST sa=zz:zz:zz:zz:zz:zz signal=-40",
    ],
)
def test_rejects_broken_station_events(message: str) -> None:
    with pytest.raises(ContractError):
        parse_event(message)


def test_event_sightings() -> None:
    connected = event_sighting(HostapdEvent(EventKind.CONNECTED, GLOBAL_STATION), 10.0, "ap")
    assert connected == Sighting(10.0, IdentifierKind.WIFI_ASSOCIATION,
                                 wifi_identifier(GLOBAL_STATION), False, None, "ap")
    probe = event_sighting(HostapdEvent(EventKind.PROBE, RANDOM_STATION, -61), 11.0, "ap")
    assert probe == Sighting(11.0, IdentifierKind.WIFI_PROBE, wifi_identifier(RANDOM_STATION),
                             True, -61.0, "ap")
    assert event_sighting(HostapdEvent(EventKind.DISCONNECTED, GLOBAL_STATION), 12.0, "ap") is None


# ---------------------------------------------------------------- the live source


def test_attaches_and_turns_events_into_sightings(
    hostapd: FakeHostapd, sockets_dir: Path
) -> None:
    source = make_source(sockets_dir)
    assert isinstance(source, Source)

    async def scenario() -> list[Sighting]:
        sightings: list[Sighting] = []
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(sightings.append, stop))
        await eventually(hostapd.attached.is_set)
        await eventually(lambda: source.health().alive)
        hostapd.send_event(f"<3>RX-PROBE-REQUEST sa={RANDOM_STATION} signal=-57")
        hostapd.send_event(f"<3>AP-STA-CONNECTED {GLOBAL_STATION}")
        hostapd.send_event("<3>AP-STA-CONNECTED garbage")
        hostapd.send_event(f"<3>AP-STA-DISCONNECTED {GLOBAL_STATION}")
        hostapd.send_event("<3>CTRL-EVENT-SOMETHING-ELSE")
        await eventually(lambda: len(sightings) == 2 and source.disconnections == 1)
        await eventually(lambda: "PING" in hostapd.commands)  # keepalive while idle
        stop.set()
        await asyncio.wait_for(task, 5)
        return sightings

    sightings = asyncio.run(scenario())
    assert [(s.kind, s.canonical_id, s.randomized, s.rssi) for s in sightings] == [
        (IdentifierKind.WIFI_PROBE, wifi_identifier(RANDOM_STATION), True, -57.0),
        (IdentifierKind.WIFI_ASSOCIATION, wifi_identifier(GLOBAL_STATION), False, None),
    ]
    assert all(s.source == "hostapd" for s in sightings)
    health = source.health()
    assert (health.alive, health.frames, health.errors, health.restarts) == (False, 3, 1, 0)
    assert "bad hostapd event" in (health.last_error or "")
    assert GLOBAL_STATION not in (health.last_error or "")
    assert hostapd.commands[0] == "ATTACH probe_rx_events=1"
    assert hostapd.commands[-1] == "DETACH"  # a clean shutdown detaches
    assert not any(p.name.startswith("vitrina-hostapd") for p in sockets_dir.iterdir())


def test_reattaches_after_hostapd_restarts(hostapd: FakeHostapd, sockets_dir: Path) -> None:
    source = make_source(sockets_dir)

    async def scenario() -> list[Sighting]:
        sightings: list[Sighting] = []
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(sightings.append, stop))
        await eventually(hostapd.attached.is_set)
        hostapd.send_event(f"<3>AP-STA-CONNECTED {GLOBAL_STATION}")
        await eventually(lambda: len(sightings) == 1)
        hostapd.restart()
        await eventually(hostapd.attached.is_set)  # the keepalive noticed and reattached
        hostapd.send_event(f"<3>RX-PROBE-REQUEST sa={RANDOM_STATION} signal=-70")
        await eventually(lambda: len(sightings) == 2)
        stop.set()
        await asyncio.wait_for(task, 5)
        return sightings

    sightings = asyncio.run(scenario())
    assert [s.kind for s in sightings] == [IdentifierKind.WIFI_ASSOCIATION,
                                           IdentifierKind.WIFI_PROBE]
    health = source.health()
    assert health.restarts == 1
    assert health.errors >= 1
    assert "hostapd control" in (health.last_error or "")


def test_a_silent_hostapd_is_reconnected(sockets_dir: Path) -> None:
    """A hostapd that stops answering PING (hung) is treated as gone."""
    server = FakeHostapd(sockets_dir / "wlan0", answer_ping=False)
    server.start()
    source = make_source(sockets_dir)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(lambda _s: None, stop))
        await eventually(lambda: server.commands.count("ATTACH probe_rx_events=1") >= 2)
        stop.set()
        await asyncio.wait_for(task, 5)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
    assert source.restarts >= 1
    assert "no PONG" in (source.last_error or "")


def test_waits_for_hostapd_to_appear_and_stops_promptly(sockets_dir: Path) -> None:
    source = make_source(sockets_dir, retry_min_s=0.05, retry_max_s=0.1)
    server = FakeHostapd(sockets_dir / "wlan0")

    async def scenario() -> list[Sighting]:
        sightings: list[Sighting] = []
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(sightings.append, stop))
        await eventually(lambda: source.errors >= 2)  # nothing listens yet: refused, retried
        assert not source.health().alive
        server.start()
        await eventually(server.attached.is_set)
        server.send_event(f"<3>AP-STA-CONNECTED {GLOBAL_STATION}")
        await eventually(lambda: len(sightings) == 1)
        stop.set()
        await asyncio.wait_for(task, 1)
        return sightings

    try:
        sightings = asyncio.run(scenario())
    finally:
        server.stop()
    assert len(sightings) == 1
    assert source.restarts == 0  # the first attachment is not a restart


def test_an_error_reply_to_attach_is_reported(sockets_dir: Path) -> None:
    """A control socket that answers ATTACH with FAIL (wrong daemon, no permission)."""
    path = sockets_dir / "wlan0"
    server_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server_sock.bind(str(path))
    server_sock.settimeout(0.05)
    running = True

    def serve() -> None:
        while running:
            try:
                _data, sender = server_sock.recvfrom(4096)
            except TimeoutError:
                continue
            server_sock.sendto(b"FAIL\n", sender)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    source = make_source(sockets_dir)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(lambda _s: None, stop))
        await eventually(lambda: source.errors >= 1)
        stop.set()
        await asyncio.wait_for(task, 1)

    try:
        asyncio.run(scenario())
    finally:
        running = False
        thread.join()
        server_sock.close()
        os.unlink(path)
    assert "ATTACH answered 'FAIL'" in (source.last_error or "")


def test_rejects_nonsense_intervals(sockets_dir: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        HostapdSource(sockets_dir / "x", ping_interval_s=0)
    with pytest.raises(ValueError, match="min <= max"):
        HostapdSource(sockets_dir / "x", retry_min_s=2, retry_max_s=1)
