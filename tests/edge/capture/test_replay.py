"""Replaying the shipped captures: expected counts, the demo story, damaged files, the
merged multi-file replay and the asynchronous source (pacing, stopping, health)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.utils import RawPcapWriter

from edge.capture.beacons import BeaconConfig
from edge.capture.pcapfile import read_frames
from edge.capture.replay import (
    PcapReplaySource,
    ReplayStats,
    merged_sightings,
    read_pcap_sightings,
)
from edge.capture.source import Source
from edge.captures import (
    BUSY_START,
    BUSY_STORE_CAPTURE,
    DEMO_ANA_INSTALL_ID,
    DEMO_APP_IBEACON_UUID,
    DEMO_APP_SERVICE_UUID,
    DEMO_CAPTURE,
    DEMO_EDDYSTONE_NAMESPACE,
    DEMO_NRF_CAPTURE,
    DEMO_START,
    GARBAGE_FRAMES_CAPTURE,
    JUAN_INSTALL_ID,
    NOT_A_CAPTURE,
    TRUNCATED_CAPTURE,
)
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind, app_identifier
from tests.edge.capture.support import eventually

CONFIG = BeaconConfig(app_ibeacon_uuid=DEMO_APP_IBEACON_UUID,
                      app_service_uuid=DEMO_APP_SERVICE_UUID)


def sightings_of(path: Path, stats: ReplayStats | None = None) -> list[Sighting]:
    return list(read_pcap_sightings(path, beacons=CONFIG, stats=stats))


def key(sighting: Sighting) -> tuple[object, ...]:
    return (round(sighting.at, 6), sighting.kind, sighting.canonical_id, sighting.randomized,
            sighting.rssi)


@pytest.fixture(scope="module")
def demo() -> list[Sighting]:
    return sightings_of(DEMO_CAPTURE)


# ---------------------------------------------------------------- the demo story


def test_demo_counts() -> None:
    stats = ReplayStats()
    sightings = sightings_of(DEMO_CAPTURE, stats)
    assert (stats.files, stats.files_failed, stats.frames, stats.decoded, stats.rejected,
            stats.skipped, stats.sightings) == (1, 0, 1041, 1041, 0, 57, 984)
    assert stats.skips == {"dot11_other_management": 30, "dot11_not_management": 26,
                           "ble_not_advertiser": 1}
    assert len(sightings) == 984
    assert Counter(s.kind.value for s in sightings) == {
        "ble_app": 402, "ble_address": 184, "ble_eddystone": 154, "ble_ibeacon": 148,
        "wifi_probe": 93, "wifi_association": 3,
    }
    assert all(s.source == "replay" for s in sightings)


def test_juan_is_recognised_by_his_apps_install_id(demo: list[Sighting]) -> None:
    juan = [s for s in demo if s.canonical_id == app_identifier(JUAN_INSTALL_ID)]
    assert len(juan) > 100
    assert all(not s.randomized and s.kind is IdentifierKind.BLE_APP for s in juan)
    assert DEMO_START + 20 <= min(s.at for s in juan) < max(s.at for s in juan) <= DEMO_START + 200
    strongest = max(juan, key=lambda s: s.rssi or -127.0)
    assert strongest.rssi is not None
    assert strongest.rssi >= -56  # at the entrance
    assert DEMO_START + 60 <= strongest.at <= DEMO_START + 140


def test_ana_is_recognised_by_the_apps_ibeacon(demo: list[Sighting]) -> None:
    ana = [s for s in demo if s.canonical_id == app_identifier(DEMO_ANA_INSTALL_ID)]
    assert len(ana) > 150
    assert min(s.at for s in ana) >= DEMO_START + 40
    assert max(s.at for s in ana) <= DEMO_START + 260


def test_the_other_devices_in_the_story(demo: list[Sighting]) -> None:
    associations = [s for s in demo if s.kind is IdentifierKind.WIFI_ASSOCIATION]
    pedro = [s for s in associations if not s.randomized]
    assert len(pedro) == 2  # association and reassociation from his global MAC
    assert len({s.canonical_id for s in pedro}) == 1
    assert any(s.canonical_id == pedro[0].canonical_id for s in demo
               if s.kind is IdentifierKind.WIFI_PROBE)
    assert len([s for s in associations if s.randomized]) == 1  # Juan's per-network MAC
    tags = {s.canonical_id for s in demo if s.kind is IdentifierKind.BLE_EDDYSTONE}
    assert tags == {f"eddystone:{DEMO_EDDYSTONE_NAMESPACE}:000000000001"}
    assert len({s.canonical_id for s in demo if s.kind is IdentifierKind.BLE_IBEACON}) == 1
    randomized_probers = {s.canonical_id for s in demo
                          if s.kind is IdentifierKind.WIFI_PROBE and s.randomized}
    assert len(randomized_probers) > 10  # passers-by change MAC with every burst
    assert [s.at for s in demo] == sorted(s.at for s in demo)


def test_the_nrf_sniffer_recording_replays_to_the_same_ble_sightings(
    demo: list[Sighting],
) -> None:
    """`demo-nrf-sniffer.pcap` (link type 272) is the demo's BLE radio as an nRF Sniffer
    records it; its sightings are the BLE sightings of `demo.pcapng` (link type 256)."""
    stats = ReplayStats()
    nrf = sightings_of(DEMO_NRF_CAPTURE, stats)
    ble = [s for s in demo if s.kind.value.startswith("ble_")]
    assert [key(s) for s in nrf] == [key(s) for s in ble]
    assert len(nrf) == 402 + 184 + 154 + 148
    assert (stats.frames, stats.rejected, stats.skipped, stats.unsupported) == (889, 0, 1, 0)
    assert stats.skips == {"ble_not_advertiser": 1}  # the scan request, as in the pcapng
    assert {linktype for _, linktype, _, _ in read_frames(DEMO_NRF_CAPTURE)} == {272}


# ---------------------------------------------------------------- the busy store


def test_busy_store_counts() -> None:
    stats = ReplayStats()
    sightings = sightings_of(BUSY_STORE_CAPTURE, stats)
    assert (stats.frames, stats.decoded, stats.rejected, stats.skipped, stats.sightings) == (
        57617, 57470, 147, 800, 56670)
    assert stats.rejects == {"ble_bad_crc": 142, "bad_fcs": 5}
    assert Counter(s.kind.value for s in sightings) == {
        "ble_address": 42690, "ble_ibeacon": 4797, "ble_app": 4091, "wifi_probe": 2668,
        "ble_eddystone": 2406, "wifi_association": 18,
    }
    identities = Counter(s.canonical_id for s in sightings)
    assert 300 < len(identities) < 1000  # rotating addresses: more identities than phones
    assert sum(1 for s in sightings if s.randomized) / len(sightings) > 0.7
    assert sightings[0].at >= BUSY_START
    assert sightings[-1].at <= BUSY_START + 25 * 60
    assert sightings[-1].at - sightings[0].at > 24 * 60


# ---------------------------------------------------------------- damaged files


def test_a_truncated_file_yields_what_precedes_the_damage() -> None:
    stats = ReplayStats()
    sightings = sightings_of(TRUNCATED_CAPTURE, stats)
    assert len(sightings) == 9
    assert (stats.files, stats.files_failed, stats.frames) == (1, 1, 9)
    assert stats.rejected == 0  # the damage is the file's, not a frame's
    assert stats.last_error == (
        "malformed-truncated.pcap: truncated after 9 frames (record 9 data is truncated)")
    assert stats.file_errors == [stats.last_error]


def test_garbage_frames_are_rejected_and_counted_per_reason() -> None:
    stats = ReplayStats()
    assert sightings_of(GARBAGE_FRAMES_CAPTURE, stats) == []
    assert stats.files_failed == 0
    assert stats.rejects == {"radiotap_truncated": 2, "radiotap_bad_length": 2,
                             "radiotap_bad_version": 1, "dot11_truncated": 1}
    assert stats.frames == stats.rejected == 6


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (NOT_A_CAPTURE, "not a pcap or pcapng file (unknown magic number)"),
        (Path("/nonexistent/capture.pcap"), "cannot be read (No such file or directory)"),
    ],
)
def test_unreadable_files_are_counted_not_raised(path: Path, message: str) -> None:
    stats = ReplayStats()
    assert sightings_of(path, stats) == []
    assert stats.files_failed == 1
    assert stats.file_errors == [f"{path.name}: {message}"]
    assert (stats.frames, stats.rejected) == (0, 0)


def test_an_empty_file_and_one_damaged_midway_say_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcapng"
    empty.write_bytes(b"")
    damaged = tmp_path / "damaged.pcapng"
    content = DEMO_CAPTURE.read_bytes()
    blocks = read_block_offsets(content)
    corrupt = bytearray(content)
    corrupt[blocks[1000] + 4 : blocks[1000] + 8] = (13).to_bytes(4, "little")  # a bad length
    damaged.write_bytes(bytes(corrupt))
    stats = ReplayStats()
    list(merged_sightings([empty, damaged], beacons=CONFIG, stats=stats))
    assert stats.file_errors == [
        "empty.pcapng: empty file",
        f"damaged.pcapng: damaged after {1000 - 3:,} frames (block 1000 has a bad length (13))",
    ]
    assert stats.files_failed == 2
    assert stats.rejected == 0


def read_block_offsets(content: bytes) -> list[int]:
    """Where each pcapng block starts (little-endian sections only, as ours are)."""
    offsets, offset = [], 0
    while offset < len(content):
        offsets.append(offset)
        offset += int.from_bytes(content[offset + 4 : offset + 8], "little")
    return offsets


def test_a_capture_cut_by_snap_length_and_foreign_link_types(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcap"
    writer = RawPcapWriter(str(path), linktype=1)  # Ethernet: not a radio capture
    writer.write_header(None)
    writer.write_packet(b"\x00" * 60, sec=1, usec=0)
    writer.close()
    stats = ReplayStats()
    assert sightings_of(path, stats) == []
    assert stats.rejects == {}  # not malformed: of a kind we do not read
    assert stats.unsupported_linktypes == {1: 1}
    assert stats.file_errors == [
        "mixed.pcap: link type 1 is not supported (supported: 127, 251, 256, 272)"]
    frame = next(f for _, linktype, f, _ in read_frames(DEMO_CAPTURE) if linktype == 127)
    writer = RawPcapWriter(str(path), linktype=127)
    writer.write_header(None)
    writer.write_packet(frame[:30], sec=1, usec=0, wirelen=len(frame))
    writer.close()
    stats = ReplayStats()
    assert sightings_of(path, stats) == []
    assert stats.rejects == {"capture_truncated": 1}


# ---------------------------------------------------------------- several files


@pytest.fixture(scope="module")
def demo_halves(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo as two classic pcaps, one per radio, as two sniffers would record it."""
    directory = tmp_path_factory.mktemp("halves")
    paths = (directory / "demo-wifi.pcap", directory / "demo-ble.pcap")
    writers = {127: RawPcapWriter(str(paths[0]), linktype=127),
               256: RawPcapWriter(str(paths[1]), linktype=256)}
    for writer in writers.values():
        writer.write_header(None)
    for at, linktype, frame, _wire in read_frames(DEMO_CAPTURE):
        seconds = int(at)
        writers[linktype].write_packet(frame, sec=seconds, usec=round((at - seconds) * 1e6))
    for writer in writers.values():
        writer.close()
    return paths


def test_several_files_are_merged_by_capture_time(
    demo: list[Sighting], demo_halves: tuple[Path, Path]
) -> None:
    stats = ReplayStats()
    merged = list(merged_sightings(demo_halves, beacons=CONFIG, stats=stats))
    assert [s.at for s in merged] == sorted(s.at for s in merged)
    assert Counter(key(s) for s in merged) == Counter(key(s) for s in demo)
    assert (stats.files, stats.frames, stats.sightings) == (2, 1041, 984)


def test_a_broken_file_among_others_does_not_stop_the_replay(
    demo_halves: tuple[Path, Path]
) -> None:
    stats = ReplayStats()
    paths = [demo_halves[0], NOT_A_CAPTURE, TRUNCATED_CAPTURE, demo_halves[1]]
    merged = list(merged_sightings(paths, beacons=CONFIG, stats=stats))
    assert len(merged) == 984 + 9
    assert (stats.files, stats.files_failed) == (4, 2)
    assert stats.file_errors == [
        "malformed-not-a-capture.pcap: not a pcap or pcapng file (unknown magic number)",
        "malformed-truncated.pcap: truncated after 9 frames (record 9 data is truncated)",
    ]


# ---------------------------------------------------------------- the asynchronous source


def test_replay_source_emits_everything_and_reports_health(
    demo: list[Sighting], demo_halves: tuple[Path, Path]
) -> None:
    source = PcapReplaySource([*demo_halves, GARBAGE_FRAMES_CAPTURE, NOT_A_CAPTURE],
                              beacons=CONFIG, name="demo-replay")
    assert isinstance(source, Source)
    alive_while_running: list[bool] = []

    def emit(sighting: Sighting) -> None:
        alive_while_running.append(source.health().alive)
        emitted.append(sighting)

    emitted: list[Sighting] = []
    asyncio.run(source.run(emit, asyncio.Event()))
    assert Counter(key(s) for s in emitted) == Counter(key(s) for s in demo)
    assert {s.source for s in emitted} == {"demo-replay"}
    assert all(alive_while_running)
    health = source.health()
    assert not health.alive
    assert (health.frames, health.errors, health.files_failed) == (1041 + 6, 6, 1)
    assert health.last_error is not None
    assert source.stats.files == 4


def test_replay_source_stops_when_asked() -> None:
    source = PcapReplaySource([BUSY_STORE_CAPTURE], beacons=CONFIG)
    stop = asyncio.Event()
    emitted: list[Sighting] = []

    def emit(sighting: Sighting) -> None:
        emitted.append(sighting)
        if len(emitted) == 100:
            stop.set()

    asyncio.run(asyncio.wait_for(source.run(emit, stop), 30))
    assert len(emitted) == 100
    assert source.stats.sightings < 56670  # decoding stopped too, a batch or so later


def test_recorded_speed_keeps_the_gaps_between_sightings() -> None:
    """The demo spans five minutes; at 1000x it plays in about 0.3 s, not at full speed."""
    source = PcapReplaySource([DEMO_CAPTURE], beacons=CONFIG, speed=1000.0)
    emitted: list[tuple[float, float]] = []
    started = time.monotonic()
    asyncio.run(source.run(lambda s: emitted.append((time.monotonic(), s.at)), asyncio.Event()))
    elapsed = time.monotonic() - started
    span = emitted[-1][1] - emitted[0][1]
    assert span / 1000 * 0.9 <= elapsed < span / 1000 + 2.0
    halfway = next(wall for wall, at in emitted if at - emitted[0][1] >= span / 2)
    assert halfway - emitted[0][0] >= span / 2 / 1000 * 0.9


def test_paced_replay_stops_during_a_wait() -> None:
    source = PcapReplaySource([DEMO_CAPTURE], beacons=CONFIG, speed=1.0)  # five real minutes

    async def scenario() -> float:
        stop = asyncio.Event()
        emitted: list[Sighting] = []
        task = asyncio.create_task(source.run(emitted.append, stop))
        await eventually(lambda: len(emitted) >= 1)
        stopped = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        return time.monotonic() - stopped

    assert asyncio.run(scenario()) < 1.0


def test_replay_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        PcapReplaySource([DEMO_CAPTURE], beacons=CONFIG, speed=0)


def test_shifted_to_now_the_recording_starts_when_the_replay_does() -> None:
    recorded: list[Sighting] = []
    asyncio.run(PcapReplaySource([DEMO_CAPTURE], beacons=CONFIG).run(
        recorded.append, asyncio.Event()))
    shifted: list[Sighting] = []
    before = time.time()
    asyncio.run(PcapReplaySource([DEMO_CAPTURE], beacons=CONFIG, shift_to_now=True).run(
        shifted.append, asyncio.Event()))
    assert before <= shifted[0].at <= time.time()
    offset = shifted[0].at - recorded[0].at
    assert offset > 365 * 86400  # the recording is years old
    assert [s._replace(at=round(s.at - offset, 6)) for s in shifted] == [
        s._replace(at=round(s.at, 6)) for s in recorded]


def test_a_probe_sink_gets_each_probe_request_just_before_its_sighting(
    demo_halves: tuple[Path, Path],
) -> None:
    source = PcapReplaySource(list(demo_halves), beacons=CONFIG, shift_to_now=True)
    order: list[tuple[str, float]] = []

    def probe(at: float, frame: bytes, rssi: float | None, name: str) -> None:
        assert name == "replay"
        order.append(("probe", at))

    def emit(sighting: Sighting) -> None:
        if sighting.kind is IdentifierKind.WIFI_PROBE:
            order.append(("sighting", sighting.at))

    source.attach_probe_sink(probe)
    asyncio.run(source.run(emit, asyncio.Event()))
    probes = [at for what, at in order if what == "probe"]
    sightings = [at for what, at in order if what == "sighting"]
    assert sorted(probes) == sorted(sightings)
    assert len(probes) > 20
    assert abs(probes[0] - time.time()) < 60  # shifted to now like the sightings
    for index, (what, at) in enumerate(order):
        if what == "sighting":
            assert sum(1 for w, a in order[:index] if w == "probe" and a <= at) >= sum(
                1 for w, _ in order[:index + 1] if w == "sighting")
