"""One entry point from (link type, raw frame) to a sighting or a counted reason.

Shared by the pcap replay and the live Wi-Fi monitor, so a recorded capture
exercises exactly the code that runs on the gateway.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.capture.beacons import BeaconConfig
from edge.capture.blell import (
    LINKTYPE_BLUETOOTH_LE_LL,
    LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
    decode_ble_ll_frame,
    decode_ble_phdr_frame,
)
from edge.capture.dot11 import LINKTYPE_IEEE802_11_RADIOTAP, decode_radiotap_frame
from edge.capture.nordic import LINKTYPE_NORDIC_BLE, decode_nordic_ble_frame
from edge.capture.outcomes import (
    IdentityCaches,
    RejectReason,
    Salvaged,
    SkipReason,
    UnsupportedLinktype,
)
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind

logger = logging.getLogger(__name__)

Outcome = Sighting | Salvaged | RejectReason | SkipReason | UnsupportedLinktype
#: Told about every radiotap frame that decoded to a probe sighting: its time, the raw
#: frame and its RSSI (occupancy estimation reads what the sighting leaves out).
ProbeHook = Callable[[float, bytes, float | None], None]
_WIFI_PROBE = IdentifierKind.WIFI_PROBE


def decode_frame(
    linktype: int, frame: bytes, wire_len: int, at: float, config: BeaconConfig, source: str
) -> Outcome:
    """Decode one captured frame, without caching; never raises for any input bytes."""
    return FrameDecoder(config, caching=False).decode(linktype, frame, wire_len, at, source)


class FrameDecoder:
    """Decodes frames of any supported link type, remembering identities it has decoded.

    One decoder per capture run: its caches hold raw identifiers, so they live exactly
    as long as the run and never outside the process. `caching=False` decodes every
    frame from scratch (the benchmark's floor). `unsupported` counts the frames it was
    given of link types it does not read (a replay tells a file of nothing else by it).
    `on_probe`, when given, is told about every probe request that gave a sighting.
    """

    __slots__ = ("_caches", "config", "on_probe", "unsupported")

    def __init__(
        self, config: BeaconConfig, *, caching: bool = True, on_probe: ProbeHook | None = None
    ) -> None:
        self.config = config
        self._caches = IdentityCaches() if caching else None
        self.unsupported = 0
        self.on_probe = on_probe

    def decode(self, linktype: int, frame: bytes, wire_len: int, at: float, source: str) -> Outcome:
        if wire_len > len(frame):
            return RejectReason.CAPTURE_TRUNCATED
        if linktype == LINKTYPE_IEEE802_11_RADIOTAP:  # first: a monitor radio's every frame
            outcome = decode_radiotap_frame(frame, at, source, self._caches)
            on_probe = self.on_probe
            if on_probe is not None and type(outcome) is Sighting and outcome[1] is _WIFI_PROBE:
                on_probe(at, frame, outcome[4])
            return outcome
        if linktype == LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR:
            return decode_ble_phdr_frame(frame, at, self.config, source, self._caches)
        if linktype == LINKTYPE_BLUETOOTH_LE_LL:
            return decode_ble_ll_frame(frame, at, self.config, source, self._caches)
        if linktype == LINKTYPE_NORDIC_BLE:
            return decode_nordic_ble_frame(frame, at, self.config, source, self._caches)
        self.unsupported += 1
        return UnsupportedLinktype(linktype)


SUPPORTED_LINKTYPES = frozenset({
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
    LINKTYPE_BLUETOOTH_LE_LL,
    LINKTYPE_NORDIC_BLE,
})


def supported_linktypes_text() -> str:
    """The link types the decoders read, for messages: "127, 251, 256"."""
    return ", ".join(str(linktype) for linktype in sorted(SUPPORTED_LINKTYPES))


@dataclass(slots=True)
class DecodeStats:
    """Running counters of a decoding loop, updated in place so progress can be read live.

    Invariants: frames == decoded + rejected + unsupported; decoded == sightings + skipped;
    salvaged <= sightings (a salvaged frame gave its sighting).
    """

    frames: int = 0
    decoded: int = 0
    rejected: int = 0
    skipped: int = 0
    sightings: int = 0
    salvaged: int = 0
    unsupported: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    skips: Counter[str] = field(default_factory=Counter)
    salvages: Counter[str] = field(default_factory=Counter)
    #: Frames per link type number that no decoder reads.
    unsupported_linktypes: Counter[int] = field(default_factory=Counter)

    def record(self, outcome: Outcome) -> Sighting | None:
        """Count one frame's outcome; hand back the sighting if there is one.

        Each kind of trouble is logged once, when first seen: a broken radio or a wrong
        capture must not flood the logs, and the counters carry the rest.
        """
        self.frames += 1
        if isinstance(outcome, Sighting):
            self.decoded += 1
            self.sightings += 1
            return outcome
        if isinstance(outcome, SkipReason):
            self.decoded += 1
            self.skipped += 1
            self.skips[outcome.value] += 1
            return None
        if isinstance(outcome, RejectReason):
            self.rejected += 1
            rejects = self.rejects
            rejects[outcome.value] += 1
            if rejects[outcome.value] == 1:
                logger.warning(
                    "rejecting malformed frames (%s); counting them from now on", outcome.value
                )
            return None
        if isinstance(outcome, Salvaged):
            self.decoded += 1
            self.sightings += 1
            self.salvaged += 1
            salvages = self.salvages
            salvages[outcome.reason.value] += 1
            if salvages[outcome.reason.value] == 1:
                logger.warning(
                    "keeping sightings from damaged frames (%s); counting them from now on",
                    outcome.reason.value,
                )
            return outcome.sighting
        self.unsupported += 1
        linktypes = self.unsupported_linktypes
        linktypes[outcome.linktype] += 1
        if linktypes[outcome.linktype] == 1:
            logger.warning(
                "frames of link type %d are not supported (supported: %s); "
                "counting them from now on",
                outcome.linktype,
                supported_linktypes_text(),
            )
        return None
