"""Live Wi-Fi capture: scapy sniffing on a monitor-mode interface, with channel hopping.

Phones probe on every channel, but a radio listens on one at a time, so the
source hops over a channel list (`iw dev <iface> set channel N`). Sniffing
blocks, so scapy runs in its own thread; each frame's original bytes go through
the same decoder as a recorded capture, and the sighting is handed to the event
loop with `call_soon_threadsafe`. If the socket dies (interface reset, driver
reload) the source reopens it after an exponential backoff and counts a restart.

A kernel filter (`bpf_filter`, compiled by scapy through tcpdump) keeps data and
beacon frames out of Python entirely; `MANAGEMENT_REQUESTS_FILTER` is the one to use.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from scapy.config import conf
from scapy.layers.dot11 import RadioTap
from scapy.sendrecv import AsyncSniffer

from edge.capture.beacons import BeaconConfig
from edge.capture.decode import DecodeStats, FrameDecoder
from edge.capture.dot11 import LINKTYPE_IEEE802_11_RADIOTAP
from edge.capture.outcomes import UnsupportedLinktype
from edge.capture.source import Emit, ProbeSink, sleep_unless_stopped
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind
from shared.status import SourceHealth

logger = logging.getLogger(__name__)

#: Only the frames that name a phone: probe, association and reassociation requests.
MANAGEMENT_REQUESTS_FILTER: Final = (
    "type mgt subtype probe-req or type mgt subtype assoc-req or type mgt subtype reassoc-req"
)
#: The three non-overlapping 2.4 GHz channels, where nearly every phone probes.
DEFAULT_CHANNELS: Final = (1, 6, 11)
#: Long enough to catch a probe burst (phones probe each channel for ~20-100 ms
#: several times per scan), short enough to cycle three channels within a second.
DEFAULT_HOP_INTERVAL_S: Final = 0.3
#: `iw` answers in milliseconds; a stuck one must not stall the hopper.
COMMAND_TIMEOUT_S: Final = 5.0
DEFAULT_RETRY_MIN_S: Final = 1.0
DEFAULT_RETRY_MAX_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stderr: str


CommandRunner = Callable[[Sequence[str]], Awaitable[CommandResult]]
#: Opens a scapy socket that yields radiotap frames (live: an L2 listen socket).
SocketFactory = Callable[[], Any]


async def run_command(argv: Sequence[str]) -> CommandResult:
    """Run a command without a shell; a missing binary or a timeout is a failed result."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as error:
        return CommandResult(127, str(error))
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=COMMAND_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return CommandResult(-1, f"timed out after {COMMAND_TIMEOUT_S:g} s")
    return CommandResult(process.returncode or 0, stderr.decode(errors="replace").strip())


def skip_dissection(sock: Any) -> Any:
    """Make a radiotap listen socket hand over raw bytes instead of dissected packets.

    The decoder reads the bytes itself; scapy dissecting every frame first (radiotap,
    802.11, every element) would cost a Pi far more CPU than the decoding. A socket on
    anything but a monitor-mode (radiotap) interface is left alone, so its frames are
    still recognised as foreign and rejected.
    """
    if getattr(sock, "LL", None) is RadioTap:
        sock.LL = conf.raw_layer
    return sock


def set_channel_command(iface: str, channel: int) -> list[str]:
    return ["iw", "dev", iface, "set", "channel", str(channel)]


class WifiMonitorSource:
    """Probe and association requests heard on a monitor-mode interface, as sightings."""

    def __init__(
        self,
        iface: str,
        *,
        beacons: BeaconConfig | None = None,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        hop_interval_s: float = DEFAULT_HOP_INTERVAL_S,
        bpf_filter: str | None = None,
        retry_min_s: float = DEFAULT_RETRY_MIN_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        socket_factory: SocketFactory | None = None,
        command_runner: CommandRunner = run_command,
        name: str = "wifi",
    ) -> None:
        if not channels:
            raise ValueError("at least one channel is needed")
        if hop_interval_s <= 0 or retry_min_s <= 0 or retry_max_s < retry_min_s:
            raise ValueError("hop and retry intervals must be positive, min <= max")
        self.name = name
        self.iface = iface
        self.channels = tuple(channels)
        self.hop_interval_s = hop_interval_s
        self.bpf_filter = bpf_filter
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._socket_factory = socket_factory or self._open_socket
        self._run_command = command_runner
        self._decoder = FrameDecoder(beacons or BeaconConfig())
        self.stats = DecodeStats()
        self.hop_failures = 0
        self.socket_failures = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._sniffing = False
        self._probe_sink: ProbeSink | None = None

    def attach_probe_sink(self, sink: ProbeSink) -> None:
        """Hand the probe requests to `sink` too (on the loop, just before their sightings)."""
        self._probe_sink = sink

    def _open_socket(self) -> Any:
        return skip_dissection(conf.L2listen(iface=self.iface, filter=self.bpf_filter))

    def health(self) -> SourceHealth:
        return SourceHealth(
            alive=self._sniffing,
            frames=self.stats.frames,
            errors=(self.stats.rejected + self.stats.unsupported + self.hop_failures
                    + self.socket_failures),
            restarts=self.restarts,
            last_error=self.last_error,
        )

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        hopper = asyncio.create_task(self._hop(stop), name=f"{self.name}-channel-hopper")
        try:
            await self._sniff_until_stopped(emit, stop)
        finally:
            hopper.cancel()
            await asyncio.gather(hopper, return_exceptions=True)

    async def _sniff_until_stopped(self, emit: Emit, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            sniffer: AsyncSniffer | None = None
            frames_before = self.stats.frames
            try:
                sniffer = AsyncSniffer(
                    opened_socket=self._socket_factory(),
                    prn=functools.partial(self.handle_packet, loop=loop, emit=emit),
                    store=False,
                )
                sniffer.start()
                self._sniffing = True
                await self._wait_for_sniffer(sniffer, stop)
            except Exception as error:  # opening the socket failed: interface gone or busy
                self.socket_failures += 1
                self.last_error = f"capture socket failed: {type(error).__name__}: {error}"
                logger.warning("Wi-Fi %s", self.last_error)
            finally:
                self._sniffing = False
                if sniffer is not None:
                    _stop_sniffer(sniffer)
            if stop.is_set():
                return
            if sniffer is not None and sniffer.exception is not None:
                self.socket_failures += 1
                self.last_error = f"capture stopped: {sniffer.exception}"
            # a socket that delivered frames was healthy: start the backoff afresh
            failures = 1 if self.stats.frames > frames_before else failures + 1
            self.restarts += 1
            delay = min(self.retry_max_s, self.retry_min_s * 2 ** (failures - 1))
            logger.warning("Wi-Fi capture on %s ended; reopening in %.1f s", self.iface, delay)
            if await sleep_unless_stopped(stop, delay):
                return

    async def _wait_for_sniffer(self, sniffer: AsyncSniffer, stop: asyncio.Event) -> None:
        """Return when the sniffer thread ends on its own or `stop` is set."""
        thread = sniffer.thread
        if thread is None:  # pragma: no cover - start() always creates it
            return
        finished = asyncio.ensure_future(asyncio.to_thread(thread.join))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({finished, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not finished.done():
                _stop_sniffer(sniffer)
                await finished

    def handle_packet(self, packet: Any, *, loop: asyncio.AbstractEventLoop, emit: Emit) -> None:
        """Decode one sniffed packet (sniffer thread) and hand its sighting to the loop."""
        original = getattr(packet, "original", None)
        frame = original if isinstance(original, bytes) else bytes(packet)
        if isinstance(packet, RadioTap | conf.raw_layer):
            outcome = self._decoder.decode(
                LINKTYPE_IEEE802_11_RADIOTAP, frame, len(frame), float(packet.time), self.name
            )
        else:  # not a monitor-mode interface: Ethernet or plain 802.11 without radiotap
            outcome = UnsupportedLinktype(conf.l2types.layer2num.get(type(packet), 0))
        sighting = self.stats.record(outcome)
        if sighting is None:
            return
        sink = self._probe_sink
        if sink is not None and sighting.kind is IdentifierKind.WIFI_PROBE:
            loop.call_soon_threadsafe(_emit_with_probe, emit, sink, sighting, frame, self.name)
        else:
            loop.call_soon_threadsafe(emit, sighting)

    async def _hop(self, stop: asyncio.Event) -> None:
        """Cycle the interface over the channels; one channel is set once and kept."""
        channels = self.channels if len(self.channels) > 1 else self.channels[:1]
        for count, channel in enumerate(itertools.cycle(channels)):
            if stop.is_set() or (len(self.channels) == 1 and count > 0):
                return
            result = await self._run_command(set_channel_command(self.iface, channel))
            if result.returncode != 0:
                self.hop_failures += 1
                self.last_error = f"setting channel {channel} failed: {result.stderr}"
                logger.warning("Wi-Fi %s", self.last_error)
            if await sleep_unless_stopped(stop, self.hop_interval_s):
                return


def _emit_with_probe(
    emit: Emit, sink: ProbeSink, sighting: Sighting, frame: bytes, source: str
) -> None:
    """On the loop: the probe request's frame to the sink, then its sighting (one hop from
    the sniffer thread for both)."""
    sink(sighting.at, frame, sighting.rssi, source)
    emit(sighting)


def _stop_sniffer(sniffer: AsyncSniffer) -> None:
    """Stop a sniffer that may already have ended (end of input, failed socket)."""
    if getattr(sniffer, "running", False):
        try:
            sniffer.stop(join=False)
        except Exception as error:  # scapy refuses to stop some sockets; they end on close
            logger.debug("sniffer stop: %s", error)
    socket = sniffer.kwargs.get("opened_socket")
    if socket is not None:
        try:
            socket.close()
        except Exception as error:  # closing a dead socket may fail; nothing left to do
            logger.debug("socket close: %s", error)
