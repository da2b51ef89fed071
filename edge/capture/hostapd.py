"""Associations and probes reported by the store's own access point (hostapd).

When the gateway is also the guest Wi-Fi access point, hostapd already knows
which stations connect and which probe it, with signal strength, and says so on
its control interface: a Unix datagram socket per interface (for example
/var/run/hostapd/wlan0). A client binds a socket of its own, sends
`ATTACH probe_rx_events=1`, gets `OK`, and from then on receives unsolicited
events such as `<3>AP-STA-CONNECTED 02:..` and `<3>RX-PROBE-REQUEST sa=.. signal=-57`.

hostapd forgets its clients when it restarts, and a datagram socket does not
notice: the source sends `PING` regularly and, without a `PONG` in time (or with
the socket refused), reconnects and attaches again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from edge.capture.source import Emit, sleep_unless_stopped
from edge.sighting import Sighting
from shared.errors import ContractError
from shared.identifiers import IdentifierKind, is_randomized_mac, wifi_identifier
from shared.status import SourceHealth

logger = logging.getLogger(__name__)

#: hostapd's control messages fit in 4 KiB (its own client uses this buffer).
MAX_MESSAGE: Final = 4096
#: Often enough to notice a restarted hostapd within seconds, rare enough to cost nothing.
DEFAULT_PING_INTERVAL_S: Final = 10.0
#: hostapd answers a local PING within milliseconds; two seconds means it is gone.
DEFAULT_REPLY_TIMEOUT_S: Final = 2.0
DEFAULT_RETRY_MIN_S: Final = 0.5
DEFAULT_RETRY_MAX_S: Final = 30.0

_EVENT = re.compile(
    r"^(?:IFNAME=\S+ )?<\d>(?P<name>AP-STA-CONNECTED|AP-STA-DISCONNECTED|RX-PROBE-REQUEST)"
    r"(?P<rest>.*)$"
)
_STATION = re.compile(r"^ (?P<mac>\S+)")
_FIELD = re.compile(r"(\w+)=(\S+)")
_client_numbers = itertools.count(1)


class EventKind(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class HostapdEvent:
    kind: EventKind
    mac: str
    signal: int | None = None


class HostapdError(Exception):
    """hostapd refused or did not answer a control command."""


def parse_event(message: str) -> HostapdEvent | None:
    """An event we use, or None for any other message (other events, replies).

    Raises ContractError when a station event names no valid MAC address.
    """
    match = _EVENT.match(message.strip())
    if match is None:
        return None
    name, rest = match.group("name"), match.group("rest")
    if name == "RX-PROBE-REQUEST":
        fields = dict(_FIELD.findall(rest))
        if "sa" not in fields:
            raise ContractError("RX-PROBE-REQUEST without sa=")
        signal = fields.get("signal")
        try:
            level = int(signal) if signal is not None else None
        except ValueError:
            raise ContractError("RX-PROBE-REQUEST with a non-numeric signal") from None
        return HostapdEvent(EventKind.PROBE, _mac(fields["sa"]), level)
    station = _STATION.match(rest)
    if station is None:
        raise ContractError(f"{name} without a station address")
    kind = EventKind.CONNECTED if name == "AP-STA-CONNECTED" else EventKind.DISCONNECTED
    return HostapdEvent(kind, _mac(station.group("mac")))


def _mac(text: str) -> str:
    wifi_identifier(text)  # raises ContractError unless it is a MAC
    return text.lower()


def event_sighting(event: HostapdEvent, at: float, source: str) -> Sighting | None:
    """Connections and probes are sightings; a disconnection is not (the station is leaving)."""
    if event.kind is EventKind.DISCONNECTED:
        return None
    kind = (
        IdentifierKind.WIFI_ASSOCIATION
        if event.kind is EventKind.CONNECTED
        else (IdentifierKind.WIFI_PROBE)
    )
    rssi = float(event.signal) if event.signal is not None else None
    return Sighting(
        at, kind, wifi_identifier(event.mac), is_randomized_mac(event.mac), rssi, source
    )


class _ConnectionLostError(Exception):
    """hostapd stopped answering or refused our datagrams."""


class HostapdSource:
    """hostapd's station events as sightings, reattaching whenever hostapd restarts."""

    def __init__(
        self,
        ctrl_path: Path,
        *,
        local_dir: Path | None = None,
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        retry_min_s: float = DEFAULT_RETRY_MIN_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        name: str = "hostapd",
    ) -> None:
        if min(ping_interval_s, reply_timeout_s, retry_min_s) <= 0 or retry_max_s < retry_min_s:
            raise ValueError("intervals must be positive, retry min <= max")
        self.name = name
        self.ctrl_path = ctrl_path
        self.local_dir = local_dir or Path(tempfile.gettempdir())
        self.ping_interval_s = ping_interval_s
        self.reply_timeout_s = reply_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.events = 0
        self.disconnections = 0
        self.errors = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._attached = False

    def health(self) -> SourceHealth:
        return SourceHealth(
            alive=self._attached,
            frames=self.events,
            errors=self.errors,
            restarts=self.restarts,
            last_error=self.last_error,
        )

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        failures = 0
        attached_once = False
        while not stop.is_set():
            local = self.local_dir / f"vitrina-hostapd-{os.getpid()}-{next(_client_numbers)}"
            sock: socket.socket | None = None
            try:
                sock = _client_socket(local)
                await self._attach(sock)
                if attached_once:
                    self.restarts += 1
                attached_once, failures = True, 0
                self._attached = True
                logger.info("attached to hostapd at %s", self.ctrl_path)
                await self._listen(sock, emit, stop)
                if stop.is_set():
                    await self._detach(sock)
            except (OSError, HostapdError, _ConnectionLostError, TimeoutError) as error:
                failures += 1
                self.errors += 1
                self.last_error = f"hostapd control: {type(error).__name__}: {error}"
                logger.warning("%s; reconnecting", self.last_error)
            finally:
                self._attached = False
                if sock is not None:
                    sock.close()
                with contextlib.suppress(FileNotFoundError):
                    local.unlink()
            if stop.is_set():
                return
            delay = min(self.retry_max_s, self.retry_min_s * 2 ** max(failures - 1, 0))
            if await sleep_unless_stopped(stop, delay):
                return

    async def _request(self, sock: socket.socket, command: str, expected: str) -> None:
        """Send a command and wait for its reply, passing over events that arrive first."""
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, command.encode())
        deadline = time.monotonic() + self.reply_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ConnectionLostError(f"no reply to {command.split()[0]}")
            data = await asyncio.wait_for(loop.sock_recv(sock, MAX_MESSAGE), remaining)
            reply = data.decode(errors="replace").strip()
            if reply.startswith("<") or reply.startswith("IFNAME="):
                continue  # an event that crossed our request
            if reply != expected:
                raise HostapdError(f"{command.split()[0]} answered {reply[:40]!r}")
            return

    async def _attach(self, sock: socket.socket) -> None:
        sock.connect(str(self.ctrl_path))
        await self._request(sock, "ATTACH probe_rx_events=1", "OK")

    async def _detach(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, HostapdError, _ConnectionLostError, TimeoutError):
            await self._request(sock, "DETACH", "OK")

    async def _listen(self, sock: socket.socket, emit: Emit, stop: asyncio.Event) -> None:
        """Receive events until `stop`; raise _ConnectionLostError when hostapd goes away."""
        loop = asyncio.get_running_loop()
        next_ping = time.monotonic() + self.ping_interval_s
        pong_due: float | None = None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                now = time.monotonic()
                if pong_due is not None and now >= pong_due:
                    raise _ConnectionLostError("no PONG: hostapd restarted or stopped")
                if pong_due is None and now >= next_ping:
                    await loop.sock_sendall(sock, b"PING")
                    pong_due = now + self.reply_timeout_s
                    next_ping = now + self.ping_interval_s
                wake = pong_due if pong_due is not None else next_ping
                receiving = asyncio.ensure_future(loop.sock_recv(sock, MAX_MESSAGE))
                done, _ = await asyncio.wait(
                    {receiving, stopping},
                    timeout=max(wake - time.monotonic(), 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if receiving not in done:
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
                    continue
                message = receiving.result().decode(errors="replace").strip()
                if message == "PONG":
                    pong_due = None
                else:
                    self._handle(message, emit)
        finally:
            stopping.cancel()

    def _handle(self, message: str, emit: Emit) -> None:
        try:
            event = parse_event(message)
        except ContractError as error:
            self.errors += 1
            self.last_error = f"bad hostapd event: {error}"
            logger.warning("%s", self.last_error)  # the reason only: never the raw message
            return
        if event is None:
            return
        self.events += 1
        sighting = event_sighting(event, time.time(), self.name)
        if sighting is None:
            self.disconnections += 1
            return
        emit(sighting)


def _client_socket(local: Path) -> socket.socket:
    """A non-blocking datagram socket bound to its own path, as hostapd replies to it."""
    with contextlib.suppress(FileNotFoundError):
        local.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(local))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
