"""802.11 frames with a radiotap header (LINKTYPE_IEEE802_11_RADIOTAP, 127).

Only what a sighting needs is read, with struct and byte indexing: the radiotap
Flags (FCS present / bad FCS) and dBm antenna signal, then the 802.11 frame control
and the transmitter address. A station announces itself in probe requests and in
(re)association requests; everything else an access point or a data link sends is
skipped. Radiotap layouts repeat frame after frame, so field offsets are computed
once per distinct presence bitmap and cached.

Radiotap reference: https://www.radiotap.org (field alignment is relative to the
start of the header; extended presence bitmaps follow while bit 31 is set; bits 29
and 30 switch to the radiotap or a vendor namespace for the next bitmap word).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from edge.capture.outcomes import IdentityCaches, RejectReason, SkipReason, remember
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind, wifi_identifier_from_bytes

LINKTYPE_IEEE802_11_RADIOTAP: Final = 127

RADIOTAP_HEADER_LEN: Final = 8
#: The 802.11 MAC header of a management frame: FC, duration, three addresses, sequence.
DOT11_MGMT_HEADER_LEN: Final = 24
FCS_LEN: Final = 4

_FLAGS_BIT, _SIGNAL_BIT = 1, 5
_TLV_BIT, _RADIOTAP_NS_BIT, _VENDOR_NS_BIT, _EXT_BIT = 28, 29, 30, 31
_FLAG_FCS_AT_END, _FLAG_BAD_FCS = 0x10, 0x40
_VENDOR_NS_FIELD = (6, 2)  # OUI(3), sub-namespace(1), skip length(2): 6 bytes, 2-aligned

#: (size, alignment) of radiotap-namespace fields 0..27, in bit order.
RADIOTAP_FIELDS: Final[tuple[tuple[int, int], ...]] = (
    (8, 8),  # 0 TSFT
    (1, 1),  # 1 Flags
    (1, 1),  # 2 Rate
    (4, 2),  # 3 Channel
    (2, 1),  # 4 FHSS
    (1, 1),  # 5 dBm antenna signal
    (1, 1),  # 6 dBm antenna noise
    (2, 2),  # 7 lock quality
    (2, 2),  # 8 TX attenuation
    (2, 2),  # 9 dB TX attenuation
    (1, 1),  # 10 dBm TX power
    (1, 1),  # 11 antenna
    (1, 1),  # 12 dB antenna signal
    (1, 1),  # 13 dB antenna noise
    (2, 2),  # 14 RX flags
    (2, 2),  # 15 TX flags
    (1, 1),  # 16 RTS retries
    (1, 1),  # 17 data retries
    (8, 4),  # 18 XChannel
    (3, 1),  # 19 MCS
    (8, 4),  # 20 A-MPDU status
    (12, 2),  # 21 VHT
    (12, 8),  # 22 timestamp
    (12, 2),  # 23 HE
    (12, 2),  # 24 HE-MU
    (6, 2),  # 25 HE-MU-other-user
    (1, 1),  # 26 0-length PSDU
    (4, 2),  # 27 L-SIG
)

#: Management subtypes in which a station transmits with its own address.
_PROBE_REQUEST, _ASSOCIATION_REQUEST, _REASSOCIATION_REQUEST = 4, 0, 2
#: Fixed body before the elements: capability(2) + listen interval(2) [+ current AP(6)].
_MIN_BODY = {_ASSOCIATION_REQUEST: 4, _REASSOCIATION_REQUEST: 10, _PROBE_REQUEST: 0}
_KINDS = {
    _PROBE_REQUEST: IdentifierKind.WIFI_PROBE,
    _ASSOCIATION_REQUEST: IdentifierKind.WIFI_ASSOCIATION,
    _REASSOCIATION_REQUEST: IdentifierKind.WIFI_ASSOCIATION,
}


def _control_reason(control: int) -> RejectReason | SkipReason | None:
    """Why a frame whose first frame-control octet is `control` names no station, if so."""
    if control & 0x03:
        return RejectReason.DOT11_BAD_VERSION
    if control & 0x0C:  # type bits: 0 = management
        return SkipReason.DOT11_NOT_MANAGEMENT
    if control >> 4 not in _KINDS:
        return SkipReason.DOT11_OTHER_MANAGEMENT
    return None


#: The frame-control octets of a station's request (version 0, management, probe or
#: (re)association) to its identifier kind and the shortest frame holding its fixed
#: fields; every other octet to why it names no station. One lookup per frame decides.
_STATION_CONTROLS: Final = {
    control: (_KINDS[control >> 4], DOT11_MGMT_HEADER_LEN + _MIN_BODY[control >> 4])
    for control in range(256)
    if _control_reason(control) is None
}
_CONTROL_REASONS: Final = {
    control: reason for control in range(256) if (reason := _control_reason(control)) is not None
}
#: A radiotap dBm octet (two's complement) to the RSSI as a float, precomputed.
_DBM: Final = tuple(float(octet - 256 if octet > 127 else octet) for octet in range(256))

#: Enough distinct radiotap layouts for any real mix of drivers; bounded against junk input.
LAYOUT_CACHE_LIMIT: Final = 512

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class RadiotapLayout:
    """Where Flags and the dBm antenna signal sit (offsets from the header start), if
    present, in a radiotap header of `header_len` bytes."""

    __slots__ = ("flags_at", "header_len", "signal_at")

    def __init__(self, flags_at: int | None, signal_at: int | None, header_len: int) -> None:
        self.flags_at = flags_at
        self.signal_at = signal_at
        self.header_len = header_len


_layout_cache: dict[bytes, RadiotapLayout] = {}


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) & -alignment


def radiotap_layout(frame: bytes, header_len: int) -> RadiotapLayout | RejectReason:
    """Walk the presence bitmaps and fields of one radiotap header.

    Stops (keeping what it found) at a field it cannot size: an undefined bit or the
    TLV area. Only a field running past the header length is an error.
    """
    words: list[int] = []
    offset = 4
    while True:
        if offset + 4 > header_len:
            return RejectReason.RADIOTAP_TRUNCATED
        word = _U32.unpack_from(frame, offset)[0]
        words.append(word)
        offset += 4
        if not word & (1 << _EXT_BIT):
            break
    flags_at: int | None = None
    signal_at: int | None = None
    in_radiotap_ns = True
    base_bit = 0  # bit number of this word's bit 0 inside the current namespace
    vendor_skip = 0
    for word in words:
        if in_radiotap_ns:
            for bit in range(_TLV_BIT + 1):
                if not word & (1 << bit):
                    continue
                number = base_bit + bit
                if number >= len(RADIOTAP_FIELDS):  # cannot size it: stop here
                    return RadiotapLayout(flags_at, signal_at, header_len)
                size, alignment = RADIOTAP_FIELDS[number]
                offset = _align(offset, alignment)
                if offset + size > header_len:
                    return RejectReason.RADIOTAP_FIELD_OVERRUN
                if number == _FLAGS_BIT and flags_at is None:
                    flags_at = offset
                elif number == _SIGNAL_BIT and signal_at is None:
                    signal_at = offset
                offset += size
        else:
            offset += vendor_skip  # a vendor namespace we do not know: jump over its data
            vendor_skip = 0  # the skip length covers all of that namespace's words
        if word & (1 << _VENDOR_NS_BIT):
            size, alignment = _VENDOR_NS_FIELD
            offset = _align(offset, alignment)
            if offset + size > header_len:
                return RejectReason.RADIOTAP_FIELD_OVERRUN
            vendor_skip = _U16.unpack_from(frame, offset + 4)[0]
            offset += size
            in_radiotap_ns, base_bit = False, 0
        elif word & (1 << _RADIOTAP_NS_BIT):
            in_radiotap_ns, base_bit = True, 0
        else:
            base_bit += 32
    if offset > header_len:
        return RejectReason.RADIOTAP_FIELD_OVERRUN
    return RadiotapLayout(flags_at, signal_at, header_len)


def _layout_of(frame: bytes) -> RadiotapLayout | RejectReason:
    """Check the fixed radiotap header, then find its layout in the cache or walk it.

    The cache key is the header up to the last presence word: version, length and
    presence bitmaps fix every offset, unless a vendor namespace's skip length varies.
    Only valid layouts of version-0 headers are cached, so a hit on a frame's first
    eight bytes vouches for them (see `decode_radiotap_frame`).
    """
    size = len(frame)
    if size < RADIOTAP_HEADER_LEN:
        return RejectReason.RADIOTAP_TRUNCATED
    if frame[0] != 0:
        return RejectReason.RADIOTAP_BAD_VERSION
    header_len = frame[2] | frame[3] << 8
    if header_len < RADIOTAP_HEADER_LEN or header_len > size:
        return RejectReason.RADIOTAP_BAD_LENGTH
    end = 8
    while frame[end - 1] & 0x80 and end + 4 <= header_len:  # bit 31 of the last word read
        end += 4
    key = frame[:end]
    cached = _layout_cache.get(key)
    if cached is not None:
        return cached
    layout = radiotap_layout(frame, header_len)
    vendor = any(frame[i] & 0x40 for i in range(7, end, 4))
    if isinstance(layout, RadiotapLayout) and not vendor:
        if len(_layout_cache) >= LAYOUT_CACHE_LIMIT:
            _layout_cache.clear()
        _layout_cache[key] = layout
    return layout


def decode_radiotap_frame(
    frame: bytes, at: float, source: str, caches: IdentityCaches | None = None
) -> Sighting | RejectReason | SkipReason:
    """One radiotap + 802.11 frame to a sighting of the transmitting station.

    This runs for every frame a monitor-mode radio hears. A header of one presence word,
    the usual case, finds its layout by its first eight bytes alone (that cached layout
    already vouches for its version and length fields); with `caches`, a station request
    seen before is known by the first 16 bytes of its 802.11 header, leaving only its
    length to check. Everything else goes through `decode_dot11`.
    """
    layout = _layout_cache.get(frame[:8])
    if layout is None:
        walked = _layout_of(frame)
        if isinstance(walked, RejectReason):
            return walked
        layout = walked
    header_len = layout.header_len
    end = len(frame)
    if header_len > end:
        return RejectReason.RADIOTAP_BAD_LENGTH
    flags_at = layout.flags_at
    if flags_at is not None:
        flags = frame[flags_at]
        if flags & _FLAG_BAD_FCS:
            return RejectReason.BAD_FCS
        if flags & _FLAG_FCS_AT_END:
            end -= FCS_LEN
    signal_at = layout.signal_at
    rssi = None if signal_at is None else _DBM[frame[signal_at]]
    if caches is not None:
        # A station's request whose header start was seen before: only lengths to check.
        # (A frame too short for the 16 bytes never matches; one whose FCS completes
        # them is shorter than any request, and the full path too calls it truncated.)
        known = caches.station_headers.get(frame[header_len : header_len + _HEADER_KEY_LEN])
        if known is not None:
            kind, canonical, randomized, min_length = known
            length = end - header_len
            if length >= min_length:
                return _new_tuple(Sighting, (at, kind, canonical, randomized, rssi, source))
            if length < DOT11_MGMT_HEADER_LEN:
                return RejectReason.DOT11_TRUNCATED
            return RejectReason.DOT11_BODY_TRUNCATED
    return decode_dot11(frame, header_len, end, at, rssi, source, caches)


def decode_dot11(
    frame: bytes,
    start: int,
    end: int,
    at: float,
    rssi: float | None,
    source: str,
    caches: IdentityCaches | None = None,
) -> Sighting | RejectReason | SkipReason:
    """The 802.11 MAC frame in `frame[start:end]` (FCS already excluded).

    The first frame-control octet is judged by one table lookup. With `caches`, a
    station's canonical identifier is remembered by its address, and its whole identity
    by the first 16 bytes of the header (see `decode_radiotap_frame`).
    """
    length = end - start
    if length < 2:
        return RejectReason.DOT11_TRUNCATED
    control = frame[start]
    station = _STATION_CONTROLS.get(control)
    if station is None:
        return _CONTROL_REASONS[control]
    kind, min_length = station
    if length < min_length:
        if length < DOT11_MGMT_HEADER_LEN:
            return RejectReason.DOT11_TRUNCATED
        return RejectReason.DOT11_BODY_TRUNCATED
    first = frame[start + 10]
    if first & 0x01:
        return RejectReason.GROUP_SOURCE_ADDRESS
    transmitter = frame[start + 10 : start + 16]
    randomized = (first & 0x02) != 0
    if caches is None:
        canonical = wifi_identifier_from_bytes(transmitter)
    else:
        stations = caches.stations
        found = stations.get(transmitter)
        if found is None:
            found = wifi_identifier_from_bytes(transmitter)
            remember(stations, transmitter, found)
        canonical = found
        remember(
            caches.station_headers,
            frame[start : start + _HEADER_KEY_LEN],
            (kind, canonical, randomized, min_length),
        )
    return _new_tuple(Sighting, (at, kind, canonical, randomized, rssi, source))


#: Frame control, duration, receiver and transmitter address: what decides a request.
_HEADER_KEY_LEN: Final = 16
_new_tuple = tuple.__new__
#: The first frame-control octet of a probe request (version 0, management, subtype 4).
_PROBE_REQUEST_CONTROL: Final = _PROBE_REQUEST << 4
_SEQUENCE_AT: Final = 22


class ProbeRequestParts(NamedTuple):
    """What occupancy estimation reads of a probe request beyond its sighting.

    Raw bytes off the air (the transmitter address among them): they stay on the gateway,
    in memory, for the few seconds `edge.occupancy` needs to group a phone's burst.
    """

    transmitter: bytes
    #: The 12-bit sequence number of the frame.
    sequence: int
    #: The information elements after the header (the frame check sequence excluded).
    elements: bytes


def probe_request_parts(frame: bytes) -> ProbeRequestParts | None:
    """The transmitter, sequence number and elements of a radiotap probe request; None
    for any other frame, and for anything `decode_radiotap_frame` would not accept.

    Called only for frames that already decoded to a probe sighting, so its checks are
    the cheap ones; it never raises for any input bytes.
    """
    layout = _layout_cache.get(frame[:8])
    if layout is None:
        walked = _layout_of(frame)
        if isinstance(walked, RejectReason):
            return None
        layout = walked
    start, end = layout.header_len, len(frame)
    flags_at = layout.flags_at
    if flags_at is not None and frame[flags_at] & _FLAG_FCS_AT_END:
        end -= FCS_LEN
    if end - start < DOT11_MGMT_HEADER_LEN or frame[start] != _PROBE_REQUEST_CONTROL:
        return None
    sequence = _U16.unpack_from(frame, start + _SEQUENCE_AT)[0] >> 4
    return ProbeRequestParts(
        frame[start + 10 : start + 16], sequence, frame[start + DOT11_MGMT_HEADER_LEN : end]
    )
