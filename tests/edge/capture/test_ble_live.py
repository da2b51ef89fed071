"""Live BLE: the restart logic with a stand-in scanner (fast, and failures on demand), and
bleak's own BLEDevice/AdvertisementData where no BlueZ is involved. Adverts through
BlueZ's D-Bus API, adapters coming and going and the fall back to active scanning are
tested against a mock bluetoothd in test_ble_bluez.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from edge.capture.beacons import BeaconConfig
from edge.capture.ble_live import (
    BleakScannerFactory,
    BleLiveSource,
    DetectionCallback,
    ScanMode,
    address_is_random,
    passive_or_patterns,
    passive_unsupported,
)
from edge.sighting import Sighting
from shared.identifiers import (
    ble_address_identifier,
)
from tests.edge.capture.support import eventually, running

APP_UUID = uuid.UUID("9d8616a8-4f20-4006-be4f-9bc6656b19a9")
APP_SERVICE = "4d9a6c2e-0b7f-4c1d-9a55-76697472696e"
CONFIG = BeaconConfig(app_ibeacon_uuid=APP_UUID, app_service_uuid=APP_SERVICE)
RPA = "4A:22:33:44:55:66"
PUBLIC = "3C:5A:B4:00:00:02"
PASSIVE_UNAVAILABLE = (
    "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled and "
    "Linux kernel >= 5.10"
)


def bluez_device(address: str, address_type: str | None) -> BLEDevice:
    """A BLEDevice the way bleak's BlueZ backend builds it (details = path + Device1 props)."""
    props: dict[str, Any] = {"Address": address, "RSSI": -60}
    if address_type is not None:
        props["AddressType"] = address_type
    path = f"/org/bluez/hci0/dev_{address.replace(':', '_')}"
    return BLEDevice(address, None, {"path": path, "props": props})


def advertisement(
    *,
    manufacturer: dict[int, bytes] | None = None,
    service: dict[str, bytes] | None = None,
    rssi: int = -61,
) -> AdvertisementData:
    return AdvertisementData(
        local_name=None,
        manufacturer_data=manufacturer or {},
        service_data=service or {},
        service_uuids=list((service or {}).keys()),
        tx_power=None,
        rssi=rssi,
        platform_data=(),
    )


class Radio:
    """Stands in for the adapter: hands out scanners, fails starts on demand, plays adverts."""

    def __init__(self) -> None:
        self.starts: list[ScanMode] = []
        self.stops = 0
        self.start_failures: list[BaseException] = []
        self.stop_failures: list[BaseException] = []
        self.active: FakeScanner | None = None

    def factory(self, callback: DetectionCallback, mode: ScanMode) -> FakeScanner:
        return FakeScanner(self, callback, mode)

    def advertise(self, device: BLEDevice, data: AdvertisementData) -> None:
        assert self.active is not None, "no scanner is running"
        self.active.callback(device, data)


class FakeScanner:
    def __init__(self, radio: Radio, callback: DetectionCallback, mode: ScanMode) -> None:
        self.radio, self.callback, self.mode = radio, callback, mode

    async def start(self) -> None:
        self.radio.starts.append(self.mode)
        if self.radio.start_failures:
            raise self.radio.start_failures.pop(0)
        self.radio.active = self

    async def stop(self) -> None:
        self.radio.stops += 1
        self.radio.active = None
        if self.radio.stop_failures:
            raise self.radio.stop_failures.pop(0)


def make_source(radio: Radio, **options: Any) -> BleLiveSource:
    settings: dict[str, Any] = {"watchdog_s": 30.0, "retry_min_s": 0.01, "retry_max_s": 0.05}
    settings.update(options)
    return BleLiveSource(beacons=CONFIG, scanner_factory=radio.factory, **settings)


# ---------------------------------------------------------------- detection callback


def test_an_address_that_is_not_a_mac_is_counted_not_emitted() -> None:
    """macOS reports a per-host UUID instead of the address: nothing to name the device by."""
    radio = Radio()
    source = make_source(radio)

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)
        radio.advertise(BLEDevice("1B0E2C6A-0000-4000-8000-000000000001", None, None),
                        advertisement())
        await eventually(lambda: source.errors == 1)

    assert asyncio.run(running(source, body)) == []


def test_adverts_outside_a_run_are_counted_only() -> None:
    source = make_source(Radio())
    source.on_advert(bluez_device(RPA, "random"), advertisement())
    assert source.adverts == 1


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"path": "/x", "props": {"AddressType": "random"}}, True),
        ({"path": "/x", "props": {"AddressType": "public"}}, False),
        ({"path": "/x", "props": {}}, None),
        ({"path": "/x"}, None),
        (None, None),
        ("winrt-args", None),
    ],
)
def test_address_type_comes_from_bluez_props(details: Any, expected: bool | None) -> None:
    assert address_is_random(BLEDevice(RPA, None, details)) is expected


# ---------------------------------------------------------------- scanning modes


def test_passive_refused_while_active_fails_too_is_not_a_fallback() -> None:
    """BlueZ refuses a monitor with the same words when the adapter is gone: only an
    active scan that starts shows passive scanning is what is missing."""
    radio = Radio()
    radio.start_failures = [BleakError(PASSIVE_UNAVAILABLE),
                            BleakError("adapter 'hci0' not found"),
                            BleakError(PASSIVE_UNAVAILABLE)]
    source = make_source(radio)

    async def body(_sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)

    asyncio.run(running(source, body))
    assert radio.starts == ["passive", "active", "passive", "active"]
    health = source.health()
    assert (health.mode, health.errors) == ("active", 1)
    assert health.degraded == (
        f"passive scanning unavailable, scanning actively: {PASSIVE_UNAVAILABLE}")


def test_passive_only_keeps_retrying_passive() -> None:
    radio = Radio()
    radio.start_failures = [BleakError(PASSIVE_UNAVAILABLE), BleakError(PASSIVE_UNAVAILABLE)]
    source = make_source(radio, mode="passive")

    async def body(_sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)

    asyncio.run(running(source, body))
    assert radio.starts == ["passive", "passive", "passive"]
    assert source.errors == 2


def test_active_mode_never_tries_passive() -> None:
    radio = Radio()
    source = make_source(radio, mode="active")

    async def body(_sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)

    asyncio.run(running(source, body))
    assert radio.starts == ["active"]


@pytest.mark.parametrize(
    ("message", "unsupported"),
    [
        (PASSIVE_UNAVAILABLE, True),
        ("passive scanning mode requires bluez or_patterns", True),
        ("[org.freedesktop.DBus.Error.UnknownMethod] No such interface "
         "'org.bluez.AdvertisementMonitorManager1'", True),
        ("[org.bluez.Error.NotSupported] Not Supported", True),
        ("[org.bluez.Error.NotReady] Resource Not Ready", False),
        ("adapter 'hci0' not found", False),
    ],
)
def test_recognises_errors_that_mean_no_passive_scanning(message: str, unsupported: bool) -> None:
    assert passive_unsupported(BleakError(message)) is unsupported


# ---------------------------------------------------------------- recovery


def test_start_failures_are_retried_with_backoff_and_counted() -> None:
    radio = Radio()
    radio.start_failures = [BleakError("[org.bluez.Error.NotReady] Resource Not Ready"),
                            OSError("D-Bus connection lost")]
    source = make_source(radio, mode="active", retry_min_s=0.05, retry_max_s=0.2)
    started = time.monotonic()

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)
        radio.advertise(bluez_device(RPA, "random"), advertisement())
        await eventually(lambda: len(sightings) == 1)

    sightings = asyncio.run(running(source, body))
    assert time.monotonic() - started >= 0.05 + 0.1  # two exponential waits
    assert radio.starts == ["active", "active", "active"]
    assert len(sightings) == 1
    health = source.health()
    assert (health.errors, health.restarts) == (2, 0)
    assert "OSError: D-Bus connection lost" in (health.last_error or "")


def test_watchdog_restarts_a_silent_scan() -> None:
    """BlueZ restarted: the scan stays 'running' but no advert arrives any more."""
    radio = Radio()
    source = make_source(radio, mode="active", watchdog_s=0.3)

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)
        first = radio.active
        radio.advertise(bluez_device(RPA, "random"), advertisement())
        assert source.health().alive
        await eventually(lambda: radio.active is not None and radio.active is not first)
        radio.advertise(bluez_device(PUBLIC, "public"), advertisement())
        await eventually(lambda: len(sightings) == 2)

    sightings = asyncio.run(running(source, body))
    assert [s.canonical_id for s in sightings] == [ble_address_identifier(RPA),
                                                   ble_address_identifier(PUBLIC)]
    assert source.restarts >= 1
    assert radio.stops >= 2  # the silent scanner and, at shutdown, the fresh one
    assert "no advert" in (source.last_error or "")


def test_adverts_keep_the_watchdog_quiet() -> None:
    radio = Radio()
    source = make_source(radio, mode="active", watchdog_s=0.3)

    async def body(_sightings: list[Sighting]) -> None:
        await eventually(lambda: radio.active is not None)
        for _ in range(10):
            radio.advertise(bluez_device(RPA, "random"), advertisement())
            await asyncio.sleep(0.1)

    asyncio.run(running(source, body))
    assert source.restarts == 0
    assert radio.starts == ["active"]


def test_a_failing_stop_is_counted_and_scanning_resumes() -> None:
    radio = Radio()
    radio.stop_failures = [BleakError("adapter vanished")]
    source = make_source(radio, mode="active", watchdog_s=0.2)

    async def body(_sightings: list[Sighting]) -> None:
        await eventually(lambda: len(radio.starts) >= 2)

    asyncio.run(running(source, body))
    assert source.errors >= 1


def test_stop_interrupts_a_long_backoff() -> None:
    radio = Radio()
    radio.start_failures = [BleakError("[org.bluez.Error.NotReady] Resource Not Ready")] * 5
    source = make_source(radio, mode="active", retry_min_s=30.0, retry_max_s=60.0)

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(lambda _s: None, stop))
        await eventually(lambda: source.errors == 1)
        stopped_at = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 2)
        return time.monotonic() - stopped_at

    assert asyncio.run(scenario()) < 1.0
    assert not source.health().alive


def test_rejects_nonsense_intervals() -> None:
    with pytest.raises(ValueError, match="positive"):
        BleLiveSource(beacons=CONFIG, watchdog_s=0)


# ---------------------------------------------------------------- real bleak scanners


def test_passive_patterns_cover_flags_apple_eddystone_and_the_app() -> None:
    patterns = passive_or_patterns(CONFIG)
    assert OrPattern(0, AdvertisementDataType.FLAGS, b"\x06") in patterns
    assert OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00") in patterns
    assert OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe") in patterns
    assert OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID128,
                     uuid.UUID(APP_SERVICE).bytes[::-1]) in patterns
    short = passive_or_patterns(BeaconConfig(app_service_uuid="fd6f"))
    assert OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\x6f\xfd") in short


def test_the_default_factory_builds_bleak_scanners_with_patterns_for_passive_mode() -> None:
    factory = BleakScannerFactory("hci1", passive_or_patterns(CONFIG))
    modes: tuple[ScanMode, ...] = ("passive", "active")
    for mode in modes:
        scanner = factory(lambda _d, _a: None, mode)
        assert isinstance(scanner, BleakScanner)
    with pytest.raises(BleakError, match="or_patterns"):  # what the patterns are there for
        BleakScanner(scanning_mode="passive", bluez={"adapter": "hci1"})
