"""The sighting record: immutable, typed, and the same however a decoder builds it."""

from __future__ import annotations

import pytest

from edge.sighting import Sighting
from shared.identifiers import IdentifierKind


def sighting() -> Sighting:
    return Sighting(at=1.5, kind=IdentifierKind.WIFI_PROBE, canonical_id="wifi:da:a1:19:5e:00:01",
                    randomized=True, rssi=-61.0, source="wifi")


def test_a_sighting_cannot_be_changed() -> None:
    seen = sighting()
    with pytest.raises(AttributeError):
        seen.canonical_id = "wifi:3c:5a:b4:12:34:56"  # type: ignore[misc]
    with pytest.raises(TypeError):
        seen[2] = "wifi:3c:5a:b4:12:34:56"  # type: ignore[index]
    with pytest.raises(AttributeError):
        seen.extra = 1  # type: ignore[attr-defined]


def test_the_decoders_fast_construction_builds_the_same_sighting() -> None:
    fields = (1.5, IdentifierKind.WIFI_PROBE, "wifi:da:a1:19:5e:00:01", True, -61.0, "wifi")
    fast = tuple.__new__(Sighting, fields)
    assert type(fast) is Sighting
    assert fast == sighting()
    assert (fast.at, fast.kind, fast.canonical_id, fast.randomized, fast.rssi, fast.source) == (
        fields)
