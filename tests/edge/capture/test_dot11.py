"""Radiotap + 802.11 decoding, against frames built by scapy and bytes built by hand."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dot11 import (
    Dot11,
    Dot11AssoReq,
    Dot11Beacon,
    Dot11Elt,
    Dot11FCS,
    Dot11ProbeReq,
    Dot11ReassoReq,
    RadioTap,
)

from edge.capture import dot11
from edge.capture.decode import DecodeStats
from edge.capture.dot11 import (
    LAYOUT_CACHE_LIMIT,
    RadiotapLayout,
    decode_radiotap_frame,
    radiotap_layout,
)
from edge.capture.outcomes import IdentityCaches, RejectReason, SkipReason
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind, wifi_identifier
from tests.edge.capture.support import mutate

RANDOM_MAC = "da:a1:19:5e:00:01"
GLOBAL_MAC = "3c:5a:b4:12:34:56"
AP = "00:1b:2f:5a:00:01"
AT = 1_709_373_600.25
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def radiotap(signal: int | None = -61, *, flags: str | int = 0, tsft: bool = False) -> RadioTap:
    fields = ["Flags", "Rate", "Channel"] + (["dBm_AntSignal"] if signal is not None else [])
    if tsft:
        fields.insert(0, "TSFT")
    header: RadioTap = RadioTap(
        present="+".join(fields), Flags=flags, Rate=2, ChannelFrequency=2437,
        ChannelFlags="CCK+2GHz",
    )
    if signal is not None:
        header.dBm_AntSignal = signal
    return header


def probe(mac: str = RANDOM_MAC, **radiotap_options: object) -> bytes:
    header = radiotap(**radiotap_options)  # type: ignore[arg-type]
    frame = (
        Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=mac, addr3="ff:ff:ff:ff:ff:ff")
        / Dot11ProbeReq()
        / Dot11Elt(ID=0, info=b"")
        / Dot11Elt(ID=1, info=b"\x82\x84")
    )
    return bytes(header / frame)


def decode(frame: bytes) -> Sighting | RejectReason | SkipReason:
    return decode_radiotap_frame(frame, AT, "wifi")


# ---------------------------------------------------------------- sightings


def test_probe_request_from_a_randomized_mac() -> None:
    assert decode(probe()) == Sighting(
        AT, IdentifierKind.WIFI_PROBE, wifi_identifier(RANDOM_MAC), True, -61.0, "wifi"
    )


def test_probe_request_from_a_global_mac() -> None:
    sighting = decode(probe(GLOBAL_MAC, signal=-88))
    assert isinstance(sighting, Sighting)
    assert (sighting.canonical_id, sighting.randomized, sighting.rssi) == (
        wifi_identifier(GLOBAL_MAC),
        False,
        -88.0,
    )


def test_association_and_reassociation_requests() -> None:
    association = (
        radiotap()
        / Dot11(type=0, subtype=0, addr1=AP, addr2=GLOBAL_MAC, addr3=AP)
        / (Dot11AssoReq(cap=0x0431, listen_interval=10) / Dot11Elt(ID=0, info=b"Guest"))
    )
    reassociation = (
        radiotap()
        / Dot11(type=0, subtype=2, addr1=AP, addr2=GLOBAL_MAC, addr3=AP)
        / (
            Dot11ReassoReq(cap=0x0431, listen_interval=10, current_AP=AP)
            / Dot11Elt(ID=0, info=b"G")
        )
    )
    for packet in (association, reassociation):
        sighting = decode(bytes(packet))
        assert isinstance(sighting, Sighting)
        assert sighting.kind is IdentifierKind.WIFI_ASSOCIATION
        assert sighting.canonical_id == wifi_identifier(GLOBAL_MAC)


def test_frame_check_sequence_is_stripped_when_radiotap_says_it_is_there() -> None:
    packet = (
        radiotap(flags="FCS")
        / Dot11FCS(type=0, subtype=0, addr1=AP, addr2=GLOBAL_MAC, addr3=AP)
        / Dot11AssoReq()
    )
    frame = bytes(packet)
    assert isinstance(decode(frame), Sighting)
    # Without the FCS the 4-byte body is too short: proof the FCS is not counted as body.
    assert decode(frame[:-1]) is RejectReason.DOT11_BODY_TRUNCATED


def test_rssi_follows_alignment_of_earlier_fields() -> None:
    """TSFT is 8-byte aligned: the signal moves, and scapy's own dissection agrees."""
    frame = probe(signal=-47, tsft=True)
    assert RadioTap(frame).dBm_AntSignal == -47
    sighting = decode(frame)
    assert isinstance(sighting, Sighting)
    assert sighting.rssi == -47.0


def test_no_signal_field_means_unknown_rssi() -> None:
    sighting = decode(probe(signal=None))
    assert isinstance(sighting, Sighting)
    assert sighting.rssi is None


def _presence(*bits: int) -> int:
    return sum(1 << bit for bit in bits)


def _frame_after(header: bytes) -> bytes:
    body = bytes(
        Dot11(
            type=0,
            subtype=4,
            addr1="ff:ff:ff:ff:ff:ff",
            addr2=RANDOM_MAC,
            addr3="ff:ff:ff:ff:ff:ff",
        )
        / Dot11ProbeReq()
    )
    return header + body


def test_extended_presence_bitmaps_with_per_antenna_signals() -> None:
    """Multi-antenna drivers repeat the radiotap namespace; the first (combined) signal wins."""
    words = struct.pack(
        "<III", _presence(0, 1, 5, 29, 31), _presence(5, 11, 29, 31), _presence(5, 11)
    )
    # data starts at 16: TSFT(8, aligned at 16), Flags, signal; then per-antenna signal+antenna
    data = struct.pack("<Q", 123) + bytes([0, 0xD8, 0xD6, 1, 0xD4, 2])
    header = struct.pack("<BBH", 0, 0, 4 + len(words) + len(data)) + words + data
    frame = _frame_after(header)
    assert RadioTap(frame).dBm_AntSignal == -40  # scapy reads the same first value
    sighting = decode(frame)
    assert isinstance(sighting, Sighting)
    assert sighting.rssi == -40.0


def test_signal_found_in_a_later_radiotap_namespace_after_a_vendor_namespace() -> None:
    words = struct.pack("<III", _presence(1, 30, 31), _presence(0, 29, 31), _presence(5))
    vendor = bytes([0x00, 0x11, 0x22, 0x07]) + struct.pack("<H", 5) + b"VVVVV"
    # Flags at 16, vendor namespace field aligned to 18, its 5 data bytes, then the signal
    data = b"\x00" + b"\x00" + vendor + bytes([0xC9])
    header = struct.pack("<BBH", 0, 0, 4 + len(words) + len(data)) + words + data
    layout = radiotap_layout(header, len(header))
    assert isinstance(layout, RadiotapLayout)
    assert (layout.flags_at, layout.signal_at) == (16, len(header) - 1)
    sighting = decode(_frame_after(header))
    assert isinstance(sighting, Sighting)
    assert sighting.rssi == -55.0


def test_fields_it_cannot_size_end_the_walk_without_rejecting() -> None:
    # TLVs (bit 28) before any signal: size unknown, so no RSSI, but the frame still counts
    words = struct.pack("<I", _presence(1, 28))
    header = struct.pack("<BBH", 0, 0, 8 + 1 + 7) + words + b"\x00" + bytes(7)
    sighting = decode(_frame_after(header))
    assert isinstance(sighting, Sighting)
    assert sighting.rssi is None
    # a second radiotap word without a namespace switch holds undefined bits 32+
    words = struct.pack("<II", _presence(1, 31), _presence(3))
    header = struct.pack("<BBH", 0, 0, 12 + 1) + words + b"\x00"
    assert isinstance(decode(_frame_after(header)), Sighting)


def test_layouts_are_cached_and_the_cache_is_bounded() -> None:
    dot11._layout_cache.clear()
    decode(probe())
    decode(probe(GLOBAL_MAC))
    assert len(dot11._layout_cache) == 1
    body = _frame_after(b"")
    for padding in range(1, LAYOUT_CACHE_LIMIT + 10):  # each header length is a new layout
        header = struct.pack("<BBHI", 0, 0, 8 + padding, _presence(1)) + bytes(padding)
        assert isinstance(decode(header + body), Sighting)
    assert 0 < len(dot11._layout_cache) <= LAYOUT_CACHE_LIMIT


def test_a_cached_layout_still_checks_the_frame_against_its_header_length() -> None:
    """A layout is found by a frame's first eight bytes; the frame may still be too short."""
    good = probe()
    assert isinstance(decode(good), Sighting)  # its layout is cached now
    header_len = good[2] | good[3] << 8
    assert decode(good[: header_len - 1]) is RejectReason.RADIOTAP_BAD_LENGTH
    assert decode(good[:8]) is RejectReason.RADIOTAP_BAD_LENGTH
    assert decode(good[:7]) is RejectReason.RADIOTAP_TRUNCATED
    assert decode(b"\x01" + good[1:]) is RejectReason.RADIOTAP_BAD_VERSION
    assert decode(good[:header_len]) is RejectReason.DOT11_TRUNCATED


def test_headers_with_several_presence_words_are_cached_by_all_of_them() -> None:
    dot11._layout_cache.clear()
    words = struct.pack("<II", _presence(1, 5, 31), _presence(5))
    header = struct.pack("<BBH", 0, 0, 12 + 2) + words + bytes([0, 0xC4])
    frame = _frame_after(header)
    for _ in range(2):
        sighting = decode(frame)
        assert isinstance(sighting, Sighting)
        assert sighting.rssi == -60.0
    assert list(dot11._layout_cache) == [header[:12]]


def test_identifier_cache_gives_the_same_sightings() -> None:
    caches = IdentityCaches()
    frames = [probe(), probe(GLOBAL_MAC), probe()]
    cached = [decode_radiotap_frame(f, AT, "wifi", caches) for f in frames]
    assert cached == [decode(f) for f in frames]
    assert len(caches.stations) == 2


def test_a_known_station_header_still_gets_every_length_check() -> None:
    """A request is remembered by its first 16 header bytes; later frames sharing them
    may be cut anywhere, or end in an FCS that completes those 16 bytes."""
    for flags, mac_header in ((0, Dot11), ("FCS", Dot11FCS)):
        reassociation = radiotap(flags=flags) / (
            mac_header(type=0, subtype=2, addr1=AP, addr2=GLOBAL_MAC, addr3=AP)
            / Dot11ReassoReq(cap=0x0431, listen_interval=10, current_AP=AP)
        )
        for packet in (probe(flags=flags), bytes(reassociation)):
            caches = IdentityCaches()
            assert isinstance(decode_radiotap_frame(packet, AT, "wifi", caches), Sighting)
            assert len(caches.station_headers) == 1
            for cut in range(len(packet) + 1):
                frame = packet[:cut]
                assert decode_radiotap_frame(frame, AT, "wifi", caches) == decode(frame), cut


# ---------------------------------------------------------------- skipped, not rejected


def test_access_point_beacons_and_other_management_frames_are_skipped() -> None:
    beacon = (
        radiotap()
        / Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=AP, addr3=AP)
        / Dot11Beacon()
        / Dot11Elt(ID=0, info=b"Guest")
    )
    assert decode(bytes(beacon)) is SkipReason.DOT11_OTHER_MANAGEMENT


def test_data_and_control_frames_are_skipped() -> None:
    data = radiotap() / Dot11(type=2, subtype=0, addr1=AP, addr2=GLOBAL_MAC, addr3=AP) / bytes(8)
    ack = radiotap() / Dot11(type=1, subtype=13, addr1=GLOBAL_MAC)
    assert decode(bytes(data)) is SkipReason.DOT11_NOT_MANAGEMENT
    assert decode(bytes(ack)) is SkipReason.DOT11_NOT_MANAGEMENT


# ---------------------------------------------------------------- every rejection reason


def test_radiotap_rejections() -> None:
    good = probe()
    assert decode(good[:7]) is RejectReason.RADIOTAP_TRUNCATED
    assert decode(b"\x01" + good[1:]) is RejectReason.RADIOTAP_BAD_VERSION
    assert decode(good[:2] + struct.pack("<H", 7) + good[4:]) is RejectReason.RADIOTAP_BAD_LENGTH
    assert decode(good[:2] + struct.pack("<H", 4000) + good[4:]) is (
        RejectReason.RADIOTAP_BAD_LENGTH
    )
    # presence word says "another word follows", but the header ends
    ext = struct.pack("<BBHI", 0, 0, 8, _presence(1, 31))
    assert decode(_frame_after(ext)) is RejectReason.RADIOTAP_TRUNCATED
    # presence says TSFT + signal, but the header holds no field data
    overrun = struct.pack("<BBHI", 0, 0, 8, _presence(0, 5))
    assert decode(_frame_after(overrun)) is RejectReason.RADIOTAP_FIELD_OVERRUN
    # a vendor namespace field that does not fit
    vendor = struct.pack("<BBHI", 0, 0, 10, _presence(30)) + b"\x00\x11"
    assert decode(_frame_after(vendor)) is RejectReason.RADIOTAP_FIELD_OVERRUN
    # vendor data longer than the header
    skip = struct.pack("<BBHII", 0, 0, 18, _presence(30, 31), _presence(0)) + (
        b"\x00\x11\x22\x00" + struct.pack("<H", 200)
    )
    assert decode(_frame_after(skip)) is RejectReason.RADIOTAP_FIELD_OVERRUN


def test_bad_fcs_is_rejected() -> None:
    frame = bytes(
        radiotap(flags="FCS+badFCS")
        / Dot11FCS(type=0, subtype=4, addr2=RANDOM_MAC, fcs=0xDEADBEEF)
        / Dot11ProbeReq()
    )
    assert decode(frame) is RejectReason.BAD_FCS


def test_dot11_rejections() -> None:
    header = bytes(radiotap())
    good = probe()
    assert decode(header + b"\x40") is RejectReason.DOT11_TRUNCATED
    assert decode(good[: len(header) + 20]) is RejectReason.DOT11_TRUNCATED
    assert decode(header + b"\x41" + good[len(header) + 1 :]) is RejectReason.DOT11_BAD_VERSION
    short_association = (
        radiotap() / Dot11(type=0, subtype=0, addr1=AP, addr2=GLOBAL_MAC, addr3=AP) / b"\x31\x04"
    )
    assert decode(bytes(short_association)) is RejectReason.DOT11_BODY_TRUNCATED
    short_reassociation = (
        radiotap() / Dot11(type=0, subtype=2, addr1=AP, addr2=GLOBAL_MAC, addr3=AP) / bytes(8)
    )
    assert decode(bytes(short_reassociation)) is RejectReason.DOT11_BODY_TRUNCATED
    assert decode(probe("01:00:5e:00:00:01")) is RejectReason.GROUP_SOURCE_ADDRESS


# ---------------------------------------------------------------- fuzz


def reference_dot11(frame: bytes, start: int, end: int) -> object:
    """The 802.11 rules spelled out bit by bit, as the standard states them: the decoder
    judges the frame control octet by table lookup and must agree with this."""
    if end - start < 2:
        return RejectReason.DOT11_TRUNCATED
    control = frame[start]
    if control & 0x03:
        return RejectReason.DOT11_BAD_VERSION
    if control & 0x0C:
        return SkipReason.DOT11_NOT_MANAGEMENT
    subtype = control >> 4
    kinds = {4: IdentifierKind.WIFI_PROBE, 0: IdentifierKind.WIFI_ASSOCIATION,
             2: IdentifierKind.WIFI_ASSOCIATION}
    if subtype not in kinds:
        return SkipReason.DOT11_OTHER_MANAGEMENT
    if end - start < 24:
        return RejectReason.DOT11_TRUNCATED
    if end - start - 24 < {4: 0, 0: 4, 2: 10}[subtype]:
        return RejectReason.DOT11_BODY_TRUNCATED
    transmitter = frame[start + 10 : start + 16]
    if transmitter[0] & 0x01:
        return RejectReason.GROUP_SOURCE_ADDRESS
    return (kinds[subtype], wifi_identifier(transmitter.hex(":")), bool(transmitter[0] & 0x02))


def test_every_frame_control_octet_and_length_agrees_with_the_standard() -> None:
    """Exhaustive over the first frame-control octet and the frame length, with and
    without an FCS, from a randomized, a global and a group transmitter."""
    headers = {fcs: bytes(radiotap(flags="FCS" if fcs else 0)) for fcs in (False, True)}
    for fcs, header in headers.items():
        for mac in (RANDOM_MAC, GLOBAL_MAC, "01:00:5e:00:00:01"):
            body = bytes(Dot11(addr1=AP, addr2=mac, addr3=AP))[2:] + bytes(range(20))
            for control in range(256):
                full = header + bytes([control, 0]) + body
                for length in range(len(header), len(full) + 1):
                    frame = full[:length]
                    expected = reference_dot11(frame, len(header), length - (4 if fcs else 0))
                    outcome = decode(frame)
                    if isinstance(outcome, Sighting):
                        assert isinstance(expected, tuple), (control, length, fcs, mac)
                        assert outcome[1:5] == (*expected, -61.0)
                    else:
                        assert outcome is expected, (control, length, fcs, mac)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(frame: bytes) -> None:
    stats = DecodeStats()
    stats.record(decode(frame))
    assert stats.frames == stats.decoded + stats.rejected == 1


_VALID = [probe(), probe(GLOBAL_MAC, tsft=True), probe(flags="FCS"), probe(signal=None)]


@FUZZ
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 120),
)
def test_mutated_valid_frames_never_raise(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    outcome = decode(mutate(frame, flips, cut))
    assert isinstance(outcome, Sighting | RejectReason | SkipReason)
    if isinstance(outcome, Sighting):
        assert outcome.canonical_id.startswith("wifi:")
        assert outcome.rssi is None or -128 <= outcome.rssi <= 127
