"""Reading what occupancy needs of a probe request: when, from which address (as a
number that only means something inside this process), its sequence number, its RSSI,
and its capability class.

The class is what phones of one model and system version share and phones of other
models mostly do not: the rates the radio offers (elements 1 and 50) and the first octets
of its HT capabilities (element 45). It deliberately leaves out what varies from one
probe of the same phone to the next (the SSID a probe asks for, the channel, the
extension elements some phones rewrite in every frame, vendor elements), so that a
phone's bursts keep one class while its address changes. It is a hash salted per
process (Python's own string/bytes hashing): it means nothing outside this process and
is never written anywhere.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from edge.capture.dot11 import probe_request_parts

#: Supported rates and extended supported rates: their whole content is the class.
RATES, EXTENDED_RATES = 1, 50
#: HT capabilities: the capability information (2 octets) and A-MPDU parameters (1):
#: they tell radios apart; the MCS set after them is the same on most phones.
HT_CAPABILITIES, HT_CLASS_OCTETS = 45, 3
#: Distinct element lists remembered: a phone repeats its elements in every frame of a
#: burst, and the bound keeps a flood of odd frames from growing the cache.
CLASS_CACHE_LIMIT: Final = 4096


class ProbeFrame(NamedTuple):
    """One probe request as occupancy estimation sees it. A NamedTuple, like the sightings:
    one is built per frame."""

    at: float
    #: The transmitter address hashed in this process: equal addresses, equal numbers.
    address: int
    sequence: int
    #: The capability class (see the module docstring).
    klass: int
    rssi: float | None


def capability_class(elements: bytes) -> int:
    """The class of a probe request's information elements; never raises.

    Elements are walked as long as they fit; a truncated last element ends the walk (what
    came before it still counts), as the sighting decoders salvage adverts.
    """
    rates = extended = ht = b""
    offset, end = 0, len(elements)
    while offset + 2 <= end:
        element, length = elements[offset], elements[offset + 1]
        start = offset + 2
        offset = start + length
        if offset > end:
            break
        if element == RATES:
            rates = elements[start:offset]
        elif element == EXTENDED_RATES:
            extended = elements[start:offset]
        elif element == HT_CAPABILITIES:
            ht = elements[start : start + HT_CLASS_OCTETS]
    return hash((rates, extended, ht))


class ProbeReader:
    """Turns probe request frames into `ProbeFrame`s, remembering the classes of the
    element lists it has seen (a phone repeats them frame after frame)."""

    __slots__ = ("_classes", "rejected")

    def __init__(self) -> None:
        self._classes: dict[bytes, int] = {}
        #: Frames that were not probe requests after all (never expected from a decoder).
        self.rejected = 0

    def read(self, at: float, frame: bytes, rssi: float | None) -> ProbeFrame | None:
        parts = probe_request_parts(frame)
        if parts is None:
            self.rejected += 1
            return None
        transmitter, sequence, elements = parts
        classes = self._classes
        klass = classes.get(elements)
        if klass is None:
            klass = capability_class(elements)
            if len(classes) >= CLASS_CACHE_LIMIT:
                classes.clear()
            classes[elements] = klass
        return ProbeFrame(at, hash(transmitter), sequence, klass, rssi)

    def forget(self) -> None:
        """Drop the remembered element lists (they may hold the SSIDs a phone asks for):
        the counter calls this every minute, so none outlives its window."""
        self._classes.clear()
