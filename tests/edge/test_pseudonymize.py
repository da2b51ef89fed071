from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from edge.pseudonymize import SightingPseudonymizer, StoreDay, UnknownKeyError
from shared.identifiers import IdentifierKind
from shared.presence import PseudonymScope
from shared.pseudonym import Pseudonymizer, TenantKey
from tests.edge.support import T0, sighting

KEYS = {"k1": TenantKey.from_text("k1", "11" * 32), "k2": TenantKey.from_text("k2", "22" * 32)}
MADRID = ZoneInfo("Europe/Madrid")


def make() -> SightingPseudonymizer:
    return SightingPseudonymizer(KEYS, "k1", MADRID)


def test_global_address_gets_the_stable_pseudonym() -> None:
    result = make().pseudonymize(sighting("00:1a:11:00:00:01"))
    assert result.scope is PseudonymScope.STABLE
    assert result.pseudonym == Pseudonymizer(KEYS["k1"]).stable("wifi:00:1a:11:00:00:01")
    assert result.key_id == "k1"
    assert not result.randomized
    assert "00:1a:11" not in repr(result)


def test_randomized_address_gets_a_daily_pseudonym_of_the_store_day() -> None:
    # 23:30 UTC on 1 March is already 2 March in Madrid.
    late = T0 + 13.5 * 3600
    result = make().pseudonymize(sighting("02:1a:11:00:00:01", at=late))
    assert result.scope is PseudonymScope.DAILY
    assert result.randomized
    expected = Pseudonymizer(KEYS["k1"]).daily("wifi:02:1a:11:00:00:01", date(2024, 3, 2))
    assert result.pseudonym == expected


def test_daily_pseudonym_changes_at_local_midnight_only() -> None:
    pseudonymizer = make()
    midnight = 1_709_334_000.0  # 2024-03-02T00:00 Europe/Madrid
    before = pseudonymizer.pseudonymize(sighting("02:00:00:00:00:09", at=midnight - 1))
    morning = pseudonymizer.pseudonymize(sighting("02:00:00:00:00:09", at=midnight - 3600))
    after = pseudonymizer.pseudonymize(sighting("02:00:00:00:00:09", at=midnight))
    assert before.pseudonym == morning.pseudonym
    assert before.pseudonym != after.pseudonym


def test_store_day_handles_dst_and_caches() -> None:
    store_day = StoreDay(MADRID)
    # 2024-03-31 is 23 hours long in Madrid.
    start = 1_711_839_600.0  # 2024-03-31T00:00+01:00
    assert store_day.day_of(start) == date(2024, 3, 31)
    assert store_day.day_of(start + 22.9 * 3600) == date(2024, 3, 31)
    assert store_day.day_of(start + 23 * 3600) == date(2024, 4, 1)


def test_store_day_span_says_how_long_the_answer_holds() -> None:
    store_day = StoreDay(MADRID)
    start = 1_711_839_600.0  # 2024-03-31T00:00+01:00, a 23-hour day
    assert store_day.span_of(start + 3600) == (date(2024, 3, 31), start, start + 23 * 3600)


def test_daily_pseudonyms_stay_right_when_sightings_cross_midnight_out_of_order() -> None:
    """The daily cache follows the day of each sighting, even when late frames from
    before midnight arrive after the first ones of the new day (two radios, a replay)."""
    pseudonymizer = make()
    reference = Pseudonymizer(KEYS["k1"])
    rng = random.Random(3)
    midnight = 1_709_334_000.0  # 2024-03-02T00:00 Europe/Madrid
    for _ in range(400):
        at = midnight + rng.uniform(-120.0, 120.0) + rng.choice([0.0, 86_400.0, 2 * 86_400.0])
        mac = f"02:00:00:00:00:{rng.randrange(4):02x}"
        day = datetime.fromtimestamp(at, MADRID).date()
        result = pseudonymizer.pseudonymize(sighting(mac, at=at))
        assert result.pseudonym == reference.daily(f"wifi:{mac}", day)


def test_key_rotation_switches_new_sightings_to_the_new_key() -> None:
    pseudonymizer = make()
    before = pseudonymizer.pseudonymize(sighting())
    pseudonymizer.set_active_key("k2")
    after = pseudonymizer.pseudonymize(sighting())
    assert pseudonymizer.active_key_id == "k2"
    assert before.pseudonym.startswith("k1:")
    assert after.pseudonym.startswith("k2:")
    with pytest.raises(UnknownKeyError):
        pseudonymizer.set_active_key("k9")
    assert pseudonymizer.active_key_id == "k2"


def test_unknown_active_key_is_refused() -> None:
    with pytest.raises(UnknownKeyError):
        SightingPseudonymizer(KEYS, "nope", MADRID)


def test_kind_rssi_and_source_are_carried() -> None:
    result = make().pseudonymize(
        sighting("00:1a:11:00:00:02", kind=IdentifierKind.BLE_ADDRESS, rssi=None)
    )
    assert result.kind is IdentifierKind.BLE_ADDRESS
    assert result.rssi is None
    assert result.source == "test"


def test_a_batch_is_pseudonymized_in_order_and_a_malformed_sighting_is_left_out() -> None:
    good = [sighting("00:1a:11:00:00:03"), sighting("02:1a:11:00:00:04", at=T0 + 1)]
    broken = good[0]._replace(canonical_id=None)  # type: ignore[arg-type]  # garbage let through
    failures: list[tuple[str | None, str]] = []
    pseudonymizer = make()
    results = pseudonymizer.pseudonymize_many(
        [good[0], broken, good[1]],
        lambda item, error: failures.append((item.canonical_id, type(error).__name__)),
    )
    assert results == [make().pseudonymize(item) for item in good]
    assert failures == [(None, "AttributeError")]
    assert pseudonymizer.pseudonymized == 2
    with pytest.raises(AttributeError):  # without a handler the error is the caller's
        make().pseudonymize_many([broken])
