"""nRF Sniffer for Bluetooth LE frames (link type 272): both protocol versions, every
rejection and skip, the shipped recording read back with scapy's own nRF layer, fuzz."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.nrf_sniffer import NRFS2_PCAP, NRF2_Packet_Event, NRFS2_Packet
from scapy.layers.bluetooth import EIR_Flags, EIR_Hdr
from scapy.layers.bluetooth4LE import BTLE, BTLE_ADV, BTLE_ADV_IND, BTLE_DATA

from edge.capture.beacons import BeaconConfig
from edge.capture.blell import decode_ble_phdr_frame
from edge.capture.decode import DecodeStats, decode_frame
from edge.capture.nordic import LINKTYPE_NORDIC_BLE, MIN_FRAME_LEN, decode_nordic_ble_frame
from edge.capture.outcomes import (
    IdentityCaches,
    RejectReason,
    Salvaged,
    SalvageReason,
    SkipReason,
)
from edge.capture.pcapfile import read_frames
from edge.captures import DEMO_CAPTURE, DEMO_NRF_CAPTURE
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind, ble_address_identifier
from tests.edge.capture.support import mutate

AT = 1_709_373_600.25
RPA = "4a:22:33:44:55:66"
CONFIG = BeaconConfig()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLAGS = EIR_Hdr() / EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"])
ADVERT = bytes(BTLE(access_addr=0x8E89BED6) / BTLE_ADV(TxAdd=1) / BTLE_ADV_IND(AdvA=RPA,
                                                                           data=[FLAGS]))
DATA = bytes(BTLE(access_addr=0x50654A2B) / BTLE_DATA(LLID=1, len=0))


def nordic(
    packet: bytes, *, version: int = 3, packet_id: int | None = None, flags: int = 0x01,
    channel: int = 38, rssi_sample: int = 61, event_len: int = 10, length: int | None = None,
    board: int = 7,
) -> bytes:
    """A frame built field by field from the published layout (the generator's builder
    is not used here, so the two are checked against each other)."""
    if packet_id is None:
        packet_id = 0x02 if version == 3 else 0x06
    event = struct.pack("<BBBBHI", event_len, flags, channel, rssi_sample, 513, 123_456)
    event += bytes(max(event_len - 10, 0))
    payload = event + packet
    header = struct.pack("<BHBHB", board, len(payload) if length is None else length, version,
                         42, packet_id)
    return header + payload


def decode(frame: bytes) -> Sighting | Salvaged | RejectReason | SkipReason:
    return decode_nordic_ble_frame(frame, AT, CONFIG, "nrf")


EXPECTED = Sighting(AT, IdentifierKind.BLE_ADDRESS, ble_address_identifier(RPA), True, -61.0,
                    "nrf")


# ---------------------------------------------------------------- sightings


@pytest.mark.parametrize("version", [2, 3])
def test_an_advert_in_either_protocol_version(version: int) -> None:
    assert decode(nordic(ADVERT, version=version)) == EXPECTED


def test_a_longer_event_header_is_stepped_over() -> None:
    assert decode(nordic(ADVERT, event_len=12)) == EXPECTED


def test_the_same_packet_decodes_alike_under_either_sniffers_header() -> None:
    phdr = bytes.fromhex("26c3a00000000000130c")  # RF channel 38, -61 dBm, CRC checked+valid
    phdr_frame = phdr[:1] + bytes([256 - 61]) + phdr[2:] + ADVERT
    assert decode_ble_phdr_frame(phdr_frame, AT, CONFIG, "nrf") == EXPECTED
    assert decode_frame(LINKTYPE_NORDIC_BLE, nordic(ADVERT), len(nordic(ADVERT)), AT, CONFIG,
                        "nrf") == EXPECTED


def test_a_truncated_last_ad_structure_is_salvaged_here_too() -> None:
    packet = bytearray(ADVERT)
    packet[5] += 3
    packet[-3:-3] = b"\x05\x09ab"  # a name structure two bytes short of its length
    packet[5] += 1
    outcome = decode(nordic(bytes(packet)))
    assert outcome == Salvaged(EXPECTED, SalvageReason.BLE_TRUNCATED_AD)


def test_cached_decoding_agrees() -> None:
    caches = IdentityCaches()
    frames = [nordic(ADVERT, rssi_sample=level) for level in (50, 60, 70)]
    cached = [decode_nordic_ble_frame(f, AT, CONFIG, "nrf", caches) for f in frames]
    assert cached == [decode(f) for f in frames]
    assert [s.rssi for s in cached if isinstance(s, Sighting)] == [-50.0, -60.0, -70.0]
    assert len(caches.adverts) == 1


# ---------------------------------------------------------------- skipped


def test_data_channel_packets_are_skipped() -> None:
    assert decode(nordic(DATA, version=3, packet_id=0x06, channel=5)) is (
        SkipReason.BLE_NOT_ADVERTISING)
    assert decode(nordic(DATA, version=2, channel=5)) is SkipReason.BLE_NOT_ADVERTISING


def test_extended_advertising_is_skipped() -> None:
    assert decode(nordic(ADVERT, channel=12)) is SkipReason.BLE_EXTENDED_ADVERTISING  # AUX_*
    assert decode(nordic(ADVERT, version=2, channel=12)) is SkipReason.BLE_EXTENDED_ADVERTISING
    coded = 0x01 | 2 << 4
    assert decode(nordic(ADVERT, flags=coded)) is SkipReason.BLE_EXTENDED_ADVERTISING


# ---------------------------------------------------------------- every rejection reason


def test_rejections() -> None:
    good = nordic(ADVERT)
    assert decode(good[: MIN_FRAME_LEN - 1]) is RejectReason.NORDIC_TRUNCATED
    assert decode(good[:-1]) is RejectReason.NORDIC_BAD_LENGTH  # the lengths disagree
    assert decode(nordic(ADVERT, length=3)) is RejectReason.NORDIC_BAD_LENGTH
    assert decode(nordic(ADVERT, event_len=9)) is RejectReason.NORDIC_BAD_LENGTH
    assert decode(nordic(ADVERT, flags=0x00)) is RejectReason.BLE_BAD_CRC
    assert decode(nordic(ADVERT, packet_id=0x0E)) is RejectReason.NORDIC_UNKNOWN_PACKET
    assert decode(nordic(ADVERT, version=2, packet_id=0x02)) is (
        RejectReason.NORDIC_UNKNOWN_PACKET)
    for version in (0, 1, 4):
        assert decode(nordic(ADVERT, version=version)) is (
            RejectReason.NORDIC_UNSUPPORTED_VERSION)
    legacy = b"\xbe\xef" + nordic(ADVERT)[2:]  # version 0 starts with a marker
    assert decode(legacy) is RejectReason.NORDIC_UNSUPPORTED_VERSION
    assert decode(nordic(ADVERT[:-1] + b"\x00\x00")) is RejectReason.BLE_LENGTH_MISMATCH


# ---------------------------------------------------------------- the shipped recording


def test_the_shipped_recording_reads_back_with_scapys_nrf_layer() -> None:
    """The generator packs the header itself (scapy's layer does not build); scapy's layer
    still dissects what it wrote, field by field, as Wireshark would."""
    ble_frames = [frame for _, linktype, frame, _ in read_frames(DEMO_CAPTURE)
                  if linktype == 256]
    nrf_frames = list(read_frames(DEMO_NRF_CAPTURE))
    assert len(nrf_frames) == len(ble_frames) == 889
    for index, ((_, linktype, frame, wire), phdr_frame) in enumerate(
        zip(nrf_frames, ble_frames, strict=True)
    ):
        assert (linktype, wire) == (272, len(frame))
        packet = NRFS2_PCAP(frame)
        assert (packet.board_id, packet.version, packet.counter, packet.type) == (
            0, 3, index, 0x02)
        assert packet.len == len(frame) - 7
        event = NRF2_Packet_Event(bytes(packet[NRFS2_Packet].payload))  # bound for v2 only
        assert (event.header_len, event.crc_ok, event.phy) == (10, 1, 0)
        assert event.rf_channel in (37, 38, 39)
        assert frame[10] == 256 - phdr_frame[1]  # the sniffer writes the magnitude
        assert bytes(event.payload) == phdr_frame[10:] == frame[17:]


# ---------------------------------------------------------------- fuzz


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes_never_raise(frame: bytes) -> None:
    stats = DecodeStats()
    stats.record(decode(frame))
    stats.record(decode(nordic(frame)))
    assert stats.frames == stats.decoded + stats.rejected == 2


_VALID = [nordic(ADVERT), nordic(ADVERT, version=2), nordic(DATA, version=2, channel=5)]


@FUZZ
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=6),
    st.integers(0, 30),
)
def test_mutated_valid_frames_never_raise(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    outcome = decode(mutate(frame, flips, cut))
    assert isinstance(outcome, Sighting | Salvaged | RejectReason | SkipReason)
    sighting = outcome.sighting if isinstance(outcome, Salvaged) else outcome
    if isinstance(sighting, Sighting):
        assert sighting.rssi is not None
        assert -255.0 <= sighting.rssi <= 0.0
