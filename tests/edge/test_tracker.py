from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest

from edge.pseudonymize import PseudonymousSighting, SightingPseudonymizer
from edge.tracker import UNKNOWN_RSSI_DBM, Identity, Tracker, TrackerThresholds, feed
from shared.identifiers import IdentifierKind
from shared.presence import PresenceEvent, PseudonymScope, Transition, make_event_id
from shared.pseudonym import TenantKey
from shared.status import GatewayConfig, ZoneThreshold
from tests.edge.support import T0, crowd

IDENTITY = Identity("demo", "store-1", "gw-1")
THRESHOLDS = TrackerThresholds(
    rssi_floor=-90, smoothing_alpha=0.5, enter_sightings=3, enter_window_s=10,
    dwell_interval_s=60, exit_after_s=30, default_zone="street",
    zones=(ZoneThreshold(zone="floor", min_rssi=-75), ZoneThreshold(zone="door", min_rssi=-55)),
)
PSEUDONYM = "k1:" + "ab" * 16


def seen(at: float, rssi: float | None = -60.0, pseudonym: str = PSEUDONYM) -> PseudonymousSighting:
    return PseudonymousSighting(
        at=at, pseudonym=pseudonym, key_id="k1", scope=PseudonymScope.STABLE,
        kind=IdentifierKind.BLE_APP, randomized=False, rssi=rssi, source="test",
    )


def transitions(events: list[PresenceEvent]) -> list[Transition]:
    return [event.transition for event in events]


def test_enter_needs_n_sightings_within_the_window() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    assert feed(tracker, [seen(T0), seen(T0 + 11), seen(T0 + 12)]) == []
    events = tracker.observe(seen(T0 + 13))
    assert transitions(events) == [Transition.ENTER]
    enter = events[0]
    assert enter.first_seen.timestamp() == T0 + 11
    assert enter.sightings == 3
    assert enter.event_id == make_event_id(
        tenant="demo", store="store-1", gateway="gw-1", pseudonym=PSEUDONYM,
        transition=Transition.ENTER, first_seen=enter.first_seen, sequence=0,
    )


def test_sightings_below_the_floor_are_ignored() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    assert feed(tracker, [seen(T0 + i, rssi=-95) for i in range(10)]) == []
    assert tracker.counters.below_floor == 10
    assert tracker.devices_tracked == 0


def test_dwell_every_interval_then_exit_after_silence() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    events = feed(tracker, [seen(T0 + i * 5) for i in range(30)])  # 145 s of presence
    assert transitions(events) == [Transition.ENTER, Transition.DWELL, Transition.DWELL]
    assert [event.dwell_s for event in events[1:]] == [60.0, 120.0]
    # Another device's sighting moves the clock; ours has been silent 31 s.
    later = tracker.observe(seen(T0 + 145 + 31, pseudonym="k1:" + "cd" * 16))
    assert transitions(later) == [Transition.EXIT]
    exit_event = later[0]
    assert exit_event.last_seen.timestamp() == T0 + 145
    assert exit_event.dwell_s == 145
    assert exit_event.sightings == 30
    assert tracker.devices_tracked == 1


def test_tick_drives_exits_without_sightings() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    feed(tracker, [seen(T0), seen(T0 + 1), seen(T0 + 2)])
    assert tracker.tick(T0 + 20) == []
    assert transitions(tracker.tick(T0 + 33)) == [Transition.EXIT]
    assert tracker.devices_tracked == 0  # purged


def test_a_device_never_entered_leaves_silently() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    tracker.observe(seen(T0))
    assert tracker.tick(T0 + 100) == []
    assert tracker.devices_tracked == 0


def test_return_after_silence_is_a_new_visit() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    first = feed(tracker, [seen(T0 + i) for i in range(3)])
    second = feed(tracker, [seen(T0 + 100 + i) for i in range(3)])
    assert transitions(first) == [Transition.ENTER]
    assert transitions(second) == [Transition.EXIT, Transition.ENTER]
    assert first[0].event_id != second[1].event_id


def test_smoothing_and_zones() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    events = feed(tracker, [seen(T0, -50), seen(T0 + 1, -70), seen(T0 + 2, -70)])
    # 0.5 smoothing: -50 -> -60 -> -65
    assert events[0].rssi == -65
    assert events[0].zone == "floor"
    assert THRESHOLDS.zone_for(-50) == "door"
    assert THRESHOLDS.zone_for(-80) == "street"
    assert THRESHOLDS.zone_for(None) == "street"


def test_sightings_without_rssi_still_count() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    events = feed(tracker, [seen(T0 + i, rssi=None) for i in range(3)])
    assert events[0].rssi == UNKNOWN_RSSI_DBM
    assert events[0].zone == "street"


def test_config_from_the_cloud_applies_live() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    zones = [ZoneThreshold(zone="all", min_rssi=-100)]
    tracker.apply(GatewayConfig(enter_sightings=1, zones=zones))
    assert tracker.thresholds.exit_after_s == 30  # untouched
    events = tracker.observe(seen(T0))
    assert transitions(events) == [Transition.ENTER]
    assert events[0].zone == "all"


def test_close_reports_every_present_device() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    for index in range(5):
        feed(tracker, [seen(T0 + i, pseudonym=f"k1:{index:032x}") for i in range(3)])
    assert transitions(tracker.close()) == [Transition.EXIT] * 5
    assert tracker.devices_tracked == 0


def test_max_devices_evicts_the_longest_silent() -> None:
    small = TrackerThresholds(enter_sightings=1, max_devices=3)
    tracker = Tracker(IDENTITY, small)
    for index in range(4):
        tracker.observe(seen(T0 + index, pseudonym=f"k1:{index:032x}"))
    assert tracker.devices_tracked == 3
    assert tracker.counters.evicted == 1


def test_replay_is_deterministic_and_reduces_traffic() -> None:
    scene = crowd(60)
    keys = {"k1": TenantKey.from_text("k1", "11" * 32)}

    def run() -> tuple[list[PresenceEvent], Tracker]:
        pseudonymizer = SightingPseudonymizer(keys, "k1", ZoneInfo("UTC"))
        tracker = Tracker(IDENTITY, TrackerThresholds(exit_after_s=20, dwell_interval_s=30))
        events = feed(tracker, (pseudonymizer.pseudonymize(s) for s in scene.sightings))
        return events + tracker.close(), tracker

    first, tracker = run()
    second, _ = run()
    assert [event.event_id for event in first] == [event.event_id for event in second]
    assert len({event.event_id for event in first}) == len(first)
    counters = tracker.counters
    assert counters.sightings == len(scene.sightings)
    assert counters.enters == counters.exits
    assert counters.reduction_ratio > 3
    daily = [event for event in first if event.randomized]
    assert daily
    assert all(event.scope is PseudonymScope.DAILY for event in daily)


def test_implausible_rssi_is_ignored_but_the_sighting_counts() -> None:
    tracker = Tracker(IDENTITY, THRESHOLDS)
    events = feed(tracker, [seen(T0, -60), seen(T0 + 1, float("nan")), seen(T0 + 2, float("inf"))])
    assert transitions(events) == [Transition.ENTER]
    assert events[0].rssi == -60
    assert tracker.counters.bad_rssi == 2


def test_a_batch_gives_the_events_of_one_sighting_at_a_time() -> None:
    # five devices, each heard every 5 s; the last one leaves after 100 s
    sightings = [seen(T0 + i, rssi=-50.0 - i % 45, pseudonym=f"k1:{i % 5:032x}")
                 for i in range(300) if i % 5 != 4 or i < 100]
    one_by_one = Tracker(IDENTITY, THRESHOLDS)
    expected = [event for s in sightings for event in one_by_one.observe(s)]
    batched = Tracker(IDENTITY, THRESHOLDS)
    events = [event for start in range(0, len(sightings), 64)
              for event in batched.observe_many(sightings[start : start + 64])]
    assert events == expected
    assert batched.counters == one_by_one.counters
    assert set(transitions(events)) == {Transition.ENTER, Transition.DWELL, Transition.EXIT}


def test_a_sighting_that_fails_is_reported_and_the_batch_goes_on() -> None:
    broken = seen(T0 + 1)._replace(at=None)  # type: ignore[arg-type]  # garbage let through
    batch = [seen(T0), broken, seen(T0 + 2), seen(T0 + 3)]
    failures: list[tuple[PseudonymousSighting, str]] = []
    tracker = Tracker(IDENTITY, THRESHOLDS)
    events = tracker.observe_many(
        batch, lambda sighting, error: failures.append((sighting, type(error).__name__)))
    assert failures == [(broken, "TypeError")]
    assert transitions(events) == [Transition.ENTER]
    assert events[0].sightings == 3
    with pytest.raises(TypeError):  # without a handler the error is the caller's
        Tracker(IDENTITY, THRESHOLDS).observe_many(batch)


# ---------------------------------------------------------------- adaptive exit timeout

ADAPTIVE = TrackerThresholds(enter_sightings=2, enter_window_s=10, dwell_interval_s=3600,
                             exit_after_s=120, max_exit_after_s=600)
FIXED = TrackerThresholds(enter_sightings=2, enter_window_s=10, dwell_interval_s=3600,
                          exit_after_s=120, adaptive_exit=False)


def bursts(times: Sequence[float], pseudonym: str = PSEUDONYM) -> list[PseudonymousSighting]:
    """A burst of two sightings (0.2 s apart) at each of `times` (seconds after T0)."""
    return [seen(T0 + at + offset, pseudonym=pseudonym) for at in times for offset in (0, 0.2)]


def visits(thresholds: TrackerThresholds, sightings: list[PseudonymousSighting]) -> int:
    tracker = Tracker(IDENTITY, thresholds)
    events = feed(tracker, sightings) + tracker.close()
    return transitions(events).count(Transition.ENTER)


def test_a_phone_probing_every_two_minutes_stays_one_visit() -> None:
    """Gaps of 110-135 s: the fixed 120 s timeout splits the visit at every long gap; the
    adaptive one learns the rhythm from the first gap (kept or not) and keeps it whole."""
    times = [0, 110, 245, 360, 495, 605, 740]
    assert visits(FIXED, bursts(times)) == 4
    assert visits(ADAPTIVE, bursts(times)) == 1
    rarer = [0, 130, 265, 400, 530]  # every gap over 120 s: one split, at the first
    assert visits(FIXED, bursts(rarer)) == 5
    assert visits(ADAPTIVE, bursts(rarer)) == 2


def test_the_first_gap_is_learnt_from_a_ghost_after_the_device_left() -> None:
    tracker = Tracker(IDENTITY, ADAPTIVE)
    feed(tracker, bursts([0]))
    assert transitions(tracker.tick(T0 + 121)) == [Transition.EXIT]  # nothing learnt yet
    events = feed(tracker, bursts([130]))
    assert transitions(events) == [Transition.ENTER]
    assert tracker.counters.returned == 1
    assert tracker.tick(T0 + 130 + 300) == []  # 3 x 130 s: still here
    assert transitions(tracker.tick(T0 + 130.2 + 391)) == [Transition.EXIT]


def test_the_timeout_is_clamped_and_a_long_absence_is_forgotten() -> None:
    tracker = Tracker(IDENTITY, ADAPTIVE)
    feed(tracker, bursts([0, 100, 300, 500]))  # gaps 100, 200, 200: 3 x 200 = 600 s
    assert tracker.tick(T0 + 500.2 + 599) == []
    assert transitions(tracker.tick(T0 + 500.2 + 601)) == [Transition.EXIT]
    feed(tracker, bursts([500.2 + 601 + 700]))  # a ghost lasts 600 s: nothing to learn
    assert tracker.counters.returned == 0


def test_bursts_a_few_seconds_apart_are_not_gaps() -> None:
    tracker = Tracker(IDENTITY, ADAPTIVE)
    feed(tracker, bursts([0, 4, 8, 60]))  # a scan repeated 4 and 8 s later is one burst
    assert tracker.tick(T0 + 60.2 + 150) == []  # one gap learnt (52 s): 156 s to go
    assert transitions(tracker.tick(T0 + 60.2 + 157)) == [Transition.EXIT]


def test_a_device_waiting_out_a_long_timeout_does_not_hold_up_the_others() -> None:
    tracker = Tracker(IDENTITY, ADAPTIVE)
    slow, quick = "k1:" + "01" * 16, "k1:" + "02" * 16
    feed(tracker, bursts([0, 100], pseudonym=slow) + bursts([101], pseudonym=quick))
    events = tracker.tick(T0 + 101.2 + 121)  # the slow one first in line, but 300 s to go
    assert [(event.transition, event.pseudonym) for event in events] == [
        (Transition.EXIT, quick)]
    assert transitions(tracker.tick(T0 + 100.2 + 301)) == [Transition.EXIT]


def test_the_cloud_config_keeps_adaptive_bounds() -> None:
    tracker = Tracker(IDENTITY, ADAPTIVE)
    tracker.apply(GatewayConfig(exit_after_s=200))
    assert tracker.thresholds.adaptive_exit
    assert tracker.thresholds.exit_limit(None) == 200
    assert tracker.thresholds.exit_limit(150) == 200
    assert tracker.thresholds.exit_limit(450) == 450
    assert tracker.thresholds.exit_limit(5000) == 600


def test_a_device_heard_only_through_probes_keeps_its_first_slow_gap() -> None:
    """A phone probing every 130-200 s: the first gap is within the probe timeout (240 s),
    is learnt, and keeps the visit whole; BLE devices start from exit_after_s."""
    def probes(times: Sequence[float]) -> list[PseudonymousSighting]:
        return [sighting._replace(kind=IdentifierKind.WIFI_PROBE) for sighting in bursts(times)]

    times = [0, 130, 330, 480, 620]
    assert visits(ADAPTIVE, probes(times)) == 1
    assert visits(FIXED, probes(times)) == 5
    assert visits(ADAPTIVE, bursts(times)) == 2  # a BLE device: split once, then learnt
    tracker = Tracker(IDENTITY, ADAPTIVE)
    feed(tracker, probes([0]))
    assert tracker.tick(T0 + 0.2 + 239) == []
    assert transitions(tracker.tick(T0 + 0.2 + 241)) == [Transition.EXIT]


def test_a_lingering_device_heard_again_leaves_once_at_its_new_deadline() -> None:
    tracker = Tracker(IDENTITY, ADAPTIVE)
    feed(tracker, bursts([0, 100]))  # learnt: 300 s
    assert tracker.tick(T0 + 100.2 + 200) == []  # lingering: past 120 s, within 300 s
    assert tracker.devices_tracked == 1
    feed(tracker, bursts([350]))  # back: the same visit, its old deadline now stale
    assert tracker.tick(T0 + 100.2 + 301) == []
    assert tracker.tick(T0 + 350.2 + 599) == []  # gaps 100 and 250: 3 x 250, at most 600
    assert transitions(tracker.tick(T0 + 350.2 + 601)) == [Transition.EXIT]
    assert tracker.tick(T0 + 2000) == []
    assert (tracker.counters.enters, tracker.counters.exits) == (1, 1)
    assert tracker.devices_tracked == 0
