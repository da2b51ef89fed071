"""Live Wi-Fi monitor: scapy's own sockets fed with recorded frames, and the channel hopper
with a recording command runner (the monitor-mode radio is the only thing replaced)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from scapy.automaton import ObjectPipe
from scapy.config import conf
from scapy.layers.dot11 import RadioTap
from scapy.layers.l2 import Ether
from scapy.utils import PcapReader, RawPcapWriter

from edge.capture.beacons import BeaconConfig
from edge.capture.dot11 import LINKTYPE_IEEE802_11_RADIOTAP
from edge.capture.pcapfile import read_frames
from edge.capture.replay import read_pcap_sightings
from edge.capture.source import Source
from edge.capture.wifi_monitor import (
    CommandResult,
    WifiMonitorSource,
    run_command,
    set_channel_command,
    skip_dissection,
)
from edge.captures import DEMO_CAPTURE
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind
from tests.edge.capture.support import eventually


@pytest.fixture(scope="module")
def demo_wifi_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Wi-Fi half of the demo capture, as a classic radiotap pcap a sniffer would write."""
    path = tmp_path_factory.mktemp("wifi") / "demo-wifi.pcap"
    writer = RawPcapWriter(str(path), linktype=LINKTYPE_IEEE802_11_RADIOTAP)
    writer.write_header(None)
    for at, linktype, frame, _wire in read_frames(DEMO_CAPTURE):
        if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
            seconds = int(at)
            writer.write_packet(frame, sec=seconds, usec=round((at - seconds) * 1e6))
    writer.close()
    return path


class CommandLog:
    """Records every command; answers with the configured results."""

    def __init__(self, *, fail_channels: Sequence[int] = ()) -> None:
        self.commands: list[list[str]] = []
        self.fail_channels = {str(channel) for channel in fail_channels}

    async def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.commands.append(list(argv))
        if argv[-1] in self.fail_channels:
            return CommandResult(240, "command failed: Device or resource busy (-16)")
        return CommandResult(0, "")


def key(sighting: Sighting) -> tuple[object, ...]:
    return (sighting.kind, sighting.canonical_id, sighting.randomized, sighting.rssi,
            round(sighting.at, 6))


def test_recorded_frames_through_scapys_pcap_socket_match_the_replay(demo_wifi_pcap: Path) -> None:
    expected = [key(s) for s in read_pcap_sightings(demo_wifi_pcap, beacons=BeaconConfig())]
    commands = CommandLog()
    sockets: list[Any] = []
    stop = asyncio.Event()

    def open_socket() -> Any:
        if sockets:  # the recording is over: what a vanished interface looks like
            stop.set()
            raise OSError("No such device")
        sockets.append(PcapReader(str(demo_wifi_pcap)))
        return sockets[0]

    source = WifiMonitorSource("wlan1mon", socket_factory=open_socket, command_runner=commands,
                               retry_min_s=0.01, retry_max_s=0.05, hop_interval_s=0.01)
    assert isinstance(source, Source)
    threads: set[int] = set()

    async def scenario() -> list[Sighting]:
        sightings: list[Sighting] = []

        def emit(sighting: Sighting) -> None:
            threads.add(threading.get_ident())
            sightings.append(sighting)

        await asyncio.wait_for(source.run(emit, stop), 10)
        return sightings

    sightings = asyncio.run(scenario())
    assert [key(s) for s in sightings] == expected
    assert len(expected) == 96
    assert threads == {threading.get_ident()}  # handed over to the loop's thread
    assert {s.source for s in sightings} == {"wifi"}
    health = source.health()
    assert health.frames == source.stats.frames == 152
    assert source.stats.skipped == 56  # the access point's beacons and data frames
    assert health.restarts == 1
    assert "No such device" in (health.last_error or "")
    assert not health.alive


def test_live_socket_frames_flow_and_stop_ends_a_quiet_capture(demo_wifi_pcap: Path) -> None:
    """An ObjectPipe blocks like a live socket: frames pushed in are sniffed in scapy's thread."""
    pipe: Any = ObjectPipe("wlan1mon")
    packets = list(PcapReader(str(demo_wifi_pcap)))[:40]
    source = WifiMonitorSource("wlan1mon", socket_factory=lambda: pipe,
                               command_runner=CommandLog(), hop_interval_s=0.05)

    async def scenario() -> tuple[list[Sighting], float]:
        sightings: list[Sighting] = []
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(sightings.append, stop))
        await eventually(lambda: source.health().alive)
        for packet in packets:
            pipe.send(packet)
        await eventually(lambda: source.stats.frames == len(packets))
        await asyncio.sleep(0.2)  # a quiet channel: nothing arrives, the sniffer blocks
        stopped = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        return sightings, time.monotonic() - stopped

    sightings, stop_delay = asyncio.run(scenario())
    expected = [key(s) for s in read_pcap_sightings(demo_wifi_pcap, beacons=BeaconConfig())]
    assert [key(s) for s in sightings] == expected[: len(sightings)]
    assert len(sightings) == source.stats.sightings > 0
    assert stop_delay < 2.0
    assert source.restarts == 0
    assert not source.health().alive


def test_socket_failures_are_retried_with_backoff(demo_wifi_pcap: Path) -> None:
    attempts: list[float] = []
    stop = asyncio.Event()

    def open_socket() -> Any:
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise PermissionError("Operation not permitted")
        stop.set()
        return PcapReader(str(demo_wifi_pcap))

    source = WifiMonitorSource("wlan1mon", socket_factory=open_socket,
                               command_runner=CommandLog(), retry_min_s=0.05, retry_max_s=1.0)

    asyncio.run(asyncio.wait_for(source.run(lambda _s: None, stop), 10))
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.05  # first backoff
    assert attempts[2] - attempts[1] >= 0.1  # doubled
    health = source.health()
    assert (health.errors, health.restarts) == (2, 2)
    assert "PermissionError: Operation not permitted" in (health.last_error or "")


def test_the_hopper_cycles_channels_and_counts_failures() -> None:
    commands = CommandLog(fail_channels=[13])
    pipe: Any = ObjectPipe("quiet")
    source = WifiMonitorSource("wlan1mon", channels=(1, 6, 13), hop_interval_s=0.02,
                               socket_factory=lambda: pipe, command_runner=commands)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(lambda _s: None, stop))
        await eventually(lambda: len(commands.commands) >= 7)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    channels = [command[-1] for command in commands.commands]
    assert channels[:7] == ["1", "6", "13", "1", "6", "13", "1"]
    assert commands.commands[0] == ["iw", "dev", "wlan1mon", "set", "channel", "1"]
    assert source.hop_failures == channels.count("13")
    assert "setting channel 13 failed: command failed: Device or resource busy" in (
        source.last_error or ""
    )
    assert source.health().errors == source.hop_failures


def test_a_single_channel_is_set_once() -> None:
    commands = CommandLog()
    pipe: Any = ObjectPipe("quiet")
    source = WifiMonitorSource("wlan1mon", channels=(6,), hop_interval_s=0.01,
                               socket_factory=lambda: pipe, command_runner=commands)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(lambda _s: None, stop))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert commands.commands == [set_channel_command("wlan1mon", 6)]


def test_non_radiotap_packets_are_counted_as_unsupported(demo_wifi_pcap: Path) -> None:
    source = WifiMonitorSource("eth0", command_runner=CommandLog())
    emitted: list[Sighting] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        source.handle_packet(Ether() / b"payload", loop=loop, emit=emitted.append)
        radiotap = next(iter(PcapReader(str(demo_wifi_pcap))))
        assert isinstance(radiotap, RadioTap)
        raw = conf.raw_layer(bytes(radiotap))  # a socket that hands over undissected bytes
        raw.time = radiotap.time
        source.handle_packet(raw, loop=loop, emit=emitted.append)
        source.handle_packet(radiotap, loop=loop, emit=emitted.append)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert source.stats.unsupported_linktypes == {1: 1}  # Ethernet: not a monitor interface
    assert source.stats.rejects == {}
    assert source.stats.frames == 3
    assert source.health().errors == 1  # worth an alert: the interface is not in monitor mode


def test_run_command_reports_exit_status_and_stderr() -> None:
    async def scenario() -> list[CommandResult]:
        return [
            await run_command([sys.executable, "-c", "pass"]),
            await run_command([sys.executable, "-c", "import sys; sys.exit('busy (-16)')"]),
            await run_command(["/nonexistent/iw", "dev"]),
        ]

    ok, failed, missing = asyncio.run(scenario())
    assert ok == CommandResult(0, "")
    assert failed == CommandResult(1, "busy (-16)")
    assert missing.returncode == 127
    assert "No such file" in missing.stderr


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="channel"):
        WifiMonitorSource("wlan1mon", channels=())
    with pytest.raises(ValueError, match="positive"):
        WifiMonitorSource("wlan1mon", hop_interval_s=0)


def test_monitor_sockets_hand_over_raw_bytes_and_others_are_left_alone() -> None:
    class ListenSocket:
        def __init__(self, link_layer: type) -> None:
            self.LL = link_layer

    assert skip_dissection(ListenSocket(RadioTap)).LL is conf.raw_layer
    assert skip_dissection(ListenSocket(Ether)).LL is Ether


def test_probe_requests_reach_the_probe_sink_on_the_loop(demo_wifi_pcap: Path) -> None:
    source = WifiMonitorSource("wlan1mon", command_runner=CommandLog())
    probes: list[tuple[float, int]] = []
    sightings: list[Sighting] = []
    source.attach_probe_sink(
        lambda at, frame, rssi, name: probes.append((at, threading.get_ident())))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        packets = list(PcapReader(str(demo_wifi_pcap)))

        def sniff() -> None:  # in a thread of its own, as scapy's sniffer
            for packet in packets:
                source.handle_packet(packet, loop=loop, emit=sightings.append)

        await asyncio.to_thread(sniff)
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    probe_sightings = [s.at for s in sightings if s.kind is IdentifierKind.WIFI_PROBE]
    assert [at for at, _ in probes] == probe_sightings
    assert probes
    assert {thread for _, thread in probes} == {threading.get_ident()}
