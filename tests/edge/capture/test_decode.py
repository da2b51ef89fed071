"""Dispatch by link type, the caching decoder, and the decode counters."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.capture.beacons import BeaconConfig
from edge.capture.blell import LINKTYPE_BLUETOOTH_LE_LL, LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR
from edge.capture.decode import SUPPORTED_LINKTYPES, DecodeStats, FrameDecoder, decode_frame
from edge.capture.dot11 import LINKTYPE_IEEE802_11_RADIOTAP
from edge.capture.outcomes import (
    RejectReason,
    Salvaged,
    SalvageReason,
    SkipReason,
    UnsupportedLinktype,
)
from edge.capture.pcapfile import read_frames
from edge.captures import (
    DEMO_APP_IBEACON_UUID,
    DEMO_APP_SERVICE_UUID,
    DEMO_CAPTURE,
    DEMO_NRF_CAPTURE,
)
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind

CONFIG = BeaconConfig(app_ibeacon_uuid=DEMO_APP_IBEACON_UUID,
                      app_service_uuid=DEMO_APP_SERVICE_UUID)
DEMO_FRAMES = list(read_frames(DEMO_CAPTURE))
#: Every link type the decoders read: the demo's two radios and its nRF Sniffer recording.
ALL_FRAMES = DEMO_FRAMES + list(read_frames(DEMO_NRF_CAPTURE))
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def first_frame(linktype: int) -> tuple[float, bytes]:
    return next((at, frame) for at, kind, frame, _ in DEMO_FRAMES if kind == linktype)


def test_dispatches_by_link_type() -> None:
    at, wifi = first_frame(LINKTYPE_IEEE802_11_RADIOTAP)
    assert isinstance(decode_frame(127, wifi, len(wifi), at, CONFIG, "x"), SkipReason)  # AP beacon
    at, ble = first_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR)
    with_phdr = decode_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR, ble, len(ble), at, CONFIG, "x")
    plain = decode_frame(LINKTYPE_BLUETOOTH_LE_LL, ble[10:], len(ble) - 10, at, CONFIG, "x")
    assert isinstance(with_phdr, Sighting)
    assert isinstance(plain, Sighting)
    assert with_phdr.kind is plain.kind is IdentifierKind.BLE_EDDYSTONE
    assert (with_phdr.rssi is not None, plain.rssi) == (True, None)
    assert {127, 251, 256, 272} == SUPPORTED_LINKTYPES


def test_unsupported_link_types_are_named_and_snapped_frames_rejected() -> None:
    at, ble = first_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR)
    assert decode_frame(1, ble, len(ble), at, CONFIG, "x") == UnsupportedLinktype(1)
    assert decode_frame(256, ble, len(ble) + 1, at, CONFIG, "x") is (
        RejectReason.CAPTURE_TRUNCATED)


def test_the_caching_decoder_agrees_with_fresh_decoding_on_the_demo() -> None:
    decoder = FrameDecoder(CONFIG)
    for at, linktype, frame, wire in ALL_FRAMES:
        assert decoder.decode(linktype, frame, wire, at, "x") == decode_frame(
            linktype, frame, wire, at, CONFIG, "x")


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ALL_FRAMES), st.integers(0, 60), st.integers(0, 255)),
                min_size=1, max_size=20))
def test_the_caching_decoder_agrees_on_mutated_frames(
    picks: list[tuple[tuple[float, int, bytes, int], int, int]]
) -> None:
    decoder = FrameDecoder(CONFIG)
    for (at, linktype, frame, _), position, value in picks:
        mutated = bytearray(frame)
        mutated[position % len(mutated)] = value
        data = bytes(mutated)
        assert decoder.decode(linktype, data, len(data), at, "x") == decode_frame(
            linktype, data, len(data), at, CONFIG, "x")


def test_stats_keep_their_invariants() -> None:
    stats = DecodeStats()
    decoder = FrameDecoder(CONFIG)
    for at, linktype, frame, _ in DEMO_FRAMES:
        cut = frame[: len(frame) - (len(frame) % 7)]  # some frames lose a few bytes
        stats.record(decoder.decode(linktype, cut, len(cut), at, "x"))
    assert stats.frames == len(DEMO_FRAMES) == stats.decoded + stats.rejected + stats.unsupported
    assert stats.salvaged <= stats.sightings
    assert stats.decoded == stats.sightings + stats.skipped
    assert sum(stats.rejects.values()) == stats.rejected > 0
    assert sum(stats.skips.values()) == stats.skipped > 0
    assert stats.rejects.keys() <= {reason.value for reason in RejectReason}


def test_each_kind_of_trouble_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    stats = DecodeStats()
    at, ble = first_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR)
    sighting = decode_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR, ble, len(ble), at, CONFIG, "x")
    assert isinstance(sighting, Sighting)
    with caplog.at_level(logging.WARNING, logger="edge.capture.decode"):
        for _ in range(3):
            stats.record(RejectReason.BAD_FCS)
            stats.record(Salvaged(sighting, SalvageReason.BLE_TRUNCATED_AD))
            stats.record(UnsupportedLinktype(1))
        stats.record(RejectReason.BLE_BAD_CRC)
        stats.record(SkipReason.DOT11_NOT_MANAGEMENT)
        stats.record(UnsupportedLinktype(228))
    assert [record.getMessage() for record in caplog.records] == [
        "rejecting malformed frames (bad_fcs); counting them from now on",
        "keeping sightings from damaged frames (ble_truncated_ad); counting them from now on",
        "frames of link type 1 are not supported (supported: 127, 251, 256, 272); "
        "counting them from now on",
        "rejecting malformed frames (ble_bad_crc); counting them from now on",
        "frames of link type 228 are not supported (supported: 127, 251, 256, 272); "
        "counting them from now on",
    ]
    assert stats.rejects == {"bad_fcs": 3, "ble_bad_crc": 1}
    assert stats.salvages == {"ble_truncated_ad": 3}
    assert stats.unsupported_linktypes == {1: 3, 228: 1}
    assert (stats.frames, stats.decoded, stats.rejected, stats.unsupported) == (12, 4, 4, 4)
    assert (stats.sightings, stats.salvaged, stats.skipped) == (3, 3, 1)


def test_a_salvaged_frame_hands_back_its_sighting() -> None:
    at, ble = first_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR)
    sighting = decode_frame(LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR, ble, len(ble), at, CONFIG, "x")
    assert isinstance(sighting, Sighting)
    stats = DecodeStats()
    assert stats.record(Salvaged(sighting, SalvageReason.BLE_TRUNCATED_AD)) is sighting
    assert stats.record(UnsupportedLinktype(1)) is None


def test_the_probe_hook_hears_every_probe_request_and_nothing_else() -> None:
    heard: list[tuple[float, bytes, float | None]] = []
    decoder = FrameDecoder(CONFIG, on_probe=lambda *probe: heard.append(probe))
    probes = []
    for at, linktype, frame, wire in DEMO_FRAMES:
        outcome = decoder.decode(linktype, frame, wire, at, "x")
        if isinstance(outcome, Sighting) and outcome.kind is IdentifierKind.WIFI_PROBE:
            probes.append((at, frame, outcome.rssi))
    assert heard == probes
    assert probes
