"""RSSI calibration: `vitrina-edge calibrate` fed captures recorded at each step (the
replay source, through the gateway's own decoders), the thresholds it derives and
writes, and the pure derivation on hand-checkable readings."""

from __future__ import annotations

import builtins
import re
import stat
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from edge.calibration import (
    CalibrationError,
    ConfigEditError,
    apply_to_config,
    derive_thresholds,
    settled,
    smoothed,
)
from edge.captures import NOT_A_CAPTURE
from edge.captures.generator.frames import ibeacon_advert, phone_advert
from edge.captures.generator.recorder import Recorder
from edge.cli import main
from edge.settings import load_settings
from edge.tracker import TrackerThresholds
from shared.status import ZoneThreshold
from tests.edge.capture.bluez import MockBluezFactory, bluez, system_bus
from tests.edge.cli import write_config

__all__ = ["bluez", "system_bus"]  # the fixtures, imported for pytest

PHONE = "4A:22:33:44:55:66"  # the test phone's resolvable private address
APP_UUID = uuid.UUID("9d8616a8-4f20-4006-be4f-9bc6656b19a9")  # the example config's app
COUNTER_PHONE = "5C:01:02:03:04:05"  # a phone lying on the counter next to the gateway
SHOPPER = "6D:01:02:03:04:05"
PASSER_BY = "7E:01:02:03:04:05"
#: 2024-03-02 10:00 UTC; each step a minute after the one before.
START = 1_709_373_600.0
STEP_OFFSETS = {"phone": 0, "outside": 60, "door": 120, "inside": 180}


def recording(
    directory: Path, step: str, phone: Sequence[float], others: Mapping[str, float] = {},
    *, app: bool = True,
) -> Path:
    """A BLE capture of one step: the test phone at the given levels (its own adverts and,
    like a phone running the shop's app, its app's iBeacon), and other devices."""
    recorder = Recorder()
    at = START + STEP_OFFSETS[step]
    for index, level in enumerate(phone):
        recorder.ble(at + index * 0.2, level, index, phone_advert(PHONE, "apple"))
        if app:
            recorder.ble(at + index * 0.2 + 0.01, level, index,
                         ibeacon_advert(PHONE, APP_UUID, 0x1F2E, 0x3D4C))
    for number, (address, level) in enumerate(others.items()):
        for index in range(10):
            recorder.ble(at + index * 0.2 + 0.05 + number * 0.01, level, index,
                         phone_advert(address, "google"))
    path = directory / f"{step}.pcapng"
    recorder.write_pcapng(path)
    return path


def store_recordings(directory: Path, *, outside: float = -84.0,
                     counter_phone: bool = False) -> list[str]:
    """The four steps at a gateway near the door: `--recorded` options for them."""
    static = {COUNTER_PHONE: -36.0} if counter_phone else {}
    steps = {
        "phone": recording(directory, "phone", [-35.0] * 10, {SHOPPER: -70.0, **static}),
        "outside": recording(directory, "outside", [outside] * 20,
                             {PASSER_BY: -80.0, **static}),
        "door": recording(directory, "door", [-58.0] * 20, static),
        "inside": recording(directory, "inside", [-70.0] * 30, {SHOPPER: -70.0, **static}),
    }
    options = []
    for step, path in steps.items():
        options += ["--recorded", f"{step}={path}"]
    return options


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("edge.cli.configure_logging", lambda **_: None)  # keep pytest's
    path = write_config(tmp_path, tenant="t1", port=1883)
    path.chmod(0o600)
    return path


def calibrate(config: Path, *options: str) -> int:
    return main(["calibrate", "--config", str(config), *options])


def without_phone_address(text: str) -> bool:
    flat = text.lower().replace(":", "").replace("_", "")
    return PHONE.lower().replace(":", "") not in flat


def test_calibration_from_recordings_writes_thresholds_the_tracker_uses(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = load_settings(config)
    assert calibrate(config, *store_recordings(tmp_path), "--write") == 0
    out, err = capsys.readouterr()
    assert "visitor threshold -77 dBm (tracker.rssi_floor, margin 3 dB)" in out
    assert "zone entrance     from -64 dBm (smoothed)" in out, out
    assert "zone floor        from -77 dBm (smoothed)" in out
    assert f"written to {config}" in out
    after = load_settings(config)
    # halfway between outside (-84) and the weakest visitor readings (inside, -70); the
    # door (-58) reads stronger than the floor (-70) at this gateway, so it is the first zone
    assert after.tracker.rssi_floor == -77.0
    assert after.zones == [ZoneThreshold(zone="entrance", min_rssi=-64.0),
                           ZoneThreshold(zone="floor", min_rssi=-77.0)]
    assert after.model_dump(exclude={"tracker", "zones"}) == before.model_dump(
        exclude={"tracker", "zones"})
    assert after.tracker.model_dump(exclude={"rssi_floor"}) == before.tracker.model_dump(
        exclude={"rssi_floor"})
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the tenant's key
    thresholds = TrackerThresholds.from_settings(after.tracker, after.zones)
    assert (thresholds.zone_for(-58.0), thresholds.zone_for(-70.0)) == ("entrance", "floor")
    assert -84.0 < thresholds.rssi_floor < -70.0  # the street is dropped, the shop kept
    text = config.read_text()
    assert "(vitrina-edge calibrate, " in text
    assert without_phone_address(out + err + text)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "door.pcapng", "edge.toml", "inside.pcapng", "outside.pcapng", "phone.pcapng"]


def test_without_write_the_snippet_is_shown_and_the_config_left_alone(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = config.read_text()
    assert calibrate(config, *store_recordings(tmp_path)) == 0
    out = capsys.readouterr().out
    snippet = out[out.index("[tracker]"):]
    assert snippet == ('[tracker]\nrssi_floor = -77.0\n\n'
                       '[[zones]]\nzone = "entrance"\nmin_rssi = -64.0\n\n'
                       '[[zones]]\nzone = "floor"\nmin_rssi = -77.0\n')
    assert config.read_text() == original


def test_a_street_that_reads_like_the_shop_fails_and_writes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = config.read_text()
    assert calibrate(config, *store_recordings(tmp_path, outside=-73.0), "--write") == 6
    err = capsys.readouterr().err
    assert ("calibration failed: outside, the test phone read up to -73 dBm, and at the door "
            "or inside down to -70 dBm") in err
    assert "cannot tell passers-by from visitors" in err
    assert config.read_text() == original


def test_a_device_as_strong_as_the_phone_that_did_not_move_is_named_by_code(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = store_recordings(tmp_path, counter_phone=True)
    assert calibrate(config, *options) == 6
    err = capsys.readouterr().err
    assert "several devices read as strong as the test phone" in err
    devices = re.findall(r"  ([0-9A-F]{6}): median dBm phone (-\d+), outside (-\d+)", err)
    assert len(devices) == 2
    phone_code = next(code for code, _gateway, outside in devices if outside == "-84")
    assert calibrate(config, *options, "--phone", phone_code.lower()) == 0
    out, err = capsys.readouterr()
    assert f"test phone        {phone_code}" in out
    assert "visitor threshold -77 dBm" in out
    assert without_phone_address(out + err)


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--recorded", "phone=x", "--recorded", "door=y"], 2,
         "--recorded: no recording for outside, inside"),
        (["--recorded", "hallway=x"], 2, "expected STEP=FILE with STEP one of phone, outside"),
        (["--margin", "-1"], 2, "--margin not negative"),
        (["--door-zone", "The Door"], 2, "not a zone name: 'The Door'"),
        ([], 2, "no radio is enabled in the config"),
    ],
    ids=["missing-step", "unknown-step", "margin", "zone-name", "no-radio"],
)
def test_usage_errors_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], options: list[str], code: int,
    message: str,
) -> None:
    assert calibrate(config, *options) == code
    assert message in capsys.readouterr().err


def test_an_unreadable_recording_exits_5(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = store_recordings(tmp_path)
    options[options.index(f"door={tmp_path / 'door.pcapng'}")] = f"door={NOT_A_CAPTURE}"
    assert calibrate(config, *options, "--write") == 5
    err = capsys.readouterr().err
    assert "cannot read capture malformed-not-a-capture.pcap: not a pcap or pcapng file" in err


def test_a_phone_not_heard_at_a_position_exits_6(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = store_recordings(tmp_path)
    recording(tmp_path, "door", [], {SHOPPER: -60.0})  # the phone stayed behind
    assert calibrate(config, *options) == 6
    assert "the test phone was heard 0 times at the door position" in capsys.readouterr().err


def test_live_calibration_through_bluez_with_an_operator_walking_the_phone(
    config: Path, bluez: MockBluezFactory, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command as run on a gateway: the BLE source through bleak and a (mock) BlueZ,
    Enter pressed before each step, the phone's RSSI changing as the operator walks."""
    config.write_text(config.read_text().replace("[sources.ble]\nenabled = false",
                                                 "[sources.ble]\nenabled = true"))
    mock = bluez()
    mock.add_adapter()
    levels = iter([-35, -84, -58, -70])  # at the gateway, outside, at the door, inside
    where = {"phone": -127}
    done = threading.Event()
    rounds = threading.Semaphore(0)

    def operator(prompt: str = "") -> str:  # walks to the next position, presses Enter
        where["phone"] = next(levels)
        for _ in range(2):  # once there: no advert from the way there is still in flight
            rounds.acquire()
        return ""

    def radio() -> None:  # what BlueZ reports while the operator walks
        phone = mock.add_device(PHONE, rssi=-127, manufacturer_data={0x004C: b"\x10\x05\x01"})
        shopper = mock.add_device(SHOPPER, rssi=-70, manufacturer_data={0x004C: b"\x10\x05\x02"})
        while not done.wait(0.01):
            mock.advertise(phone, rssi=where["phone"])
            mock.advertise(shopper, rssi=-70)
            rounds.release()

    monkeypatch.setattr(builtins, "input", operator)
    advertiser = threading.Thread(target=radio)
    advertiser.start()
    try:
        assert calibrate(config, "--seconds", "0.5") == 0
    finally:
        done.set()
        advertiser.join()
    out, err = capsys.readouterr()
    assert "step 1/4, phone: Hold the test phone against the gateway" in out
    assert "visitor threshold -77 dBm" in out, out + err
    assert "zone entrance     from -64 dBm (smoothed)" in out, out
    assert without_phone_address(out + err)


# ---------------------------------------------------------------- the derivation


OUTSIDE = [float(v) for v in range(-90, -79)]  # deciles: -89 ... -81
DOOR = [float(v) for v in range(-66, -55)]  # -65 ... -57
INSIDE = [float(v) for v in range(-76, -65)]  # -75 ... -67


def test_thresholds_lie_halfway_between_deciles_two_margins_apart() -> None:
    readings: dict[Any, list[float]] = {"outside": OUTSIDE, "door": DOOR, "inside": INSIDE}
    # outside's 90th percentile -81, the visitors' 10th -75 (inside): 6 dB apart
    calibration = derive_thresholds(readings, margin_db=1.0, smoothing_alpha=1.0)
    assert calibration.rssi_floor == -78.0
    # inside's strong end -67, the door's weak end -65: apart by 2 dB, two 1 dB margins
    assert calibration.zones == (ZoneThreshold(zone="entrance", min_rssi=-66.0),
                                 ZoneThreshold(zone="floor", min_rssi=-78.0))
    alike = derive_thresholds(readings, margin_db=3.0, smoothing_alpha=1.0)
    assert (alike.rssi_floor, alike.zones) == (-78.0, ())
    assert "read alike" in alike.notes[0]
    with pytest.raises(CalibrationError, match="cannot tell passers-by from visitors"):
        derive_thresholds(readings, margin_db=3.5, smoothing_alpha=1.0)


def test_a_phone_never_heard_outside_keeps_every_visitor_with_the_margin() -> None:
    calibration = derive_thresholds({"door": DOOR, "inside": INSIDE}, margin_db=3.0,
                                    smoothing_alpha=1.0)
    assert calibration.rssi_floor == -78.0  # the weakest visitor decile (-75) less 3 dB
    assert "not heard outside" in calibration.notes[0]


def test_zones_are_decided_on_the_smoothed_rssi_the_tracker_keeps() -> None:
    assert smoothed([-60.0, -70.0, -70.0], 0.5) == [-60.0, -65.0, -67.5]
    # settled: from the median, without the readings while the start still weighs (4 at
    # alpha 0.5): a stale first reading from the walk into place barely shows
    walked_in = [-84.0] + [-58.0] * 9
    assert settled(walked_in, 0.5) == [-58.0 - 26 / 2**n for n in range(5, 11)]
    # a jittery doorway: raw readings overlap the floor's, their running average does not
    door = [-50.0, -70.0] * 10
    inside = [-72.0, -78.0] * 10
    calibration = derive_thresholds({"outside": [-95.0] * 10, "door": door, "inside": inside},
                                    margin_db=2.0, smoothing_alpha=0.3)
    assert [zone.zone for zone in calibration.zones] == ["entrance", "floor"]
    assert calibration.smooth["door"].low > calibration.zones[0].min_rssi > (
        calibration.smooth["inside"].high)


def test_the_config_edit_keeps_everything_else_and_refuses_what_it_cannot_read() -> None:
    calibration = derive_thresholds({"outside": OUTSIDE, "door": DOOR, "inside": INSIDE},
                                    margin_db=1.0, smoothing_alpha=1.0)
    text = ('title = "x"  # kept\n[tracker]\nrssi_floor = -90.0  # the street\n'
            'exit_after_s = 60.0\n\n# old zones\n[[zones]]\nzone = "a"\nmin_rssi = -50.0\n\n'
            '[mqtt]\nport = 1\n')
    edited = apply_to_config(text, calibration)
    assert edited.startswith('title = "x"  # kept\n[tracker]\nrssi_floor = -78.0  # the street\n'
                             'exit_after_s = 60.0\n\n[mqtt]\nport = 1\n\n# Zones by smoothed')
    assert "old zones" not in edited
    assert 'zone = "a"' not in edited
    assert apply_to_config('x = 1\n', calibration).startswith('x = 1\n\n[tracker]\n'
                                                             'rssi_floor = -78.0\n')
    with pytest.raises(ConfigEditError, match="can edit safely"):
        apply_to_config("tracker.rssi_floor = -90.0\n", calibration)
    with pytest.raises(ConfigEditError, match="can edit safely"):
        apply_to_config("tracker = { rssi_floor = -90.0 }\n", calibration)
