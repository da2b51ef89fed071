"""Live BLE capture through bleak (BlueZ on the gateway).

Passive scanning is preferred: the gateway sends no scan requests, so it is
invisible to the phones and cheaper on the radio. BlueZ only scans passively
through an advertisement monitor, which needs experimental features and "or
patterns" (adverts must match one); where that is missing, the source falls back
to active scanning for good, and says so in `health()` (`mode`, `degraded`). BlueZ
refuses a monitor the same way when the adapter itself has just gone, so the
fallback is only decided once an active scan starts on the same adapter. Adapters
misbehave: a failed start is retried with
exponential backoff (tenacity), and a watchdog restarts scanning when no advert
has arrived for a while (BlueZ restarted, the adapter was reset, the controller
hung). Restarts and the last error show in `health()`.

Every advert goes through `identify_advert`, the same function as the pcap path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal, Protocol

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from edge.capture.beacons import APPLE_COMPANY_ID, BeaconConfig, identify_advert
from edge.capture.source import Emit, sleep_unless_stopped
from shared.status import SourceHealth

logger = logging.getLogger(__name__)

ScanMode = Literal["passive", "active"]
ModePreference = Literal["auto", "passive", "active"]
DetectionCallback = Callable[[BLEDevice, AdvertisementData], None]

#: No advert for this long while scanning means the scan is dead: a store always has
#: phones or at least beacons in range, and BlueZ drops scans silently when it restarts.
DEFAULT_WATCHDOG_S: Final = 60.0
#: First retry after a failed start, and the ceiling of the exponential backoff.
DEFAULT_RETRY_MIN_S: Final = 1.0
DEFAULT_RETRY_MAX_S: Final = 60.0
#: bleak reports this RSSI when BlueZ gave none.
BLEAK_NO_RSSI: Final = -127
_BLUETOOTH_BASE_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
#: Words in bleak's errors that mean "this system cannot scan passively" (not "adapter down").
_PASSIVE_UNSUPPORTED_HINTS: Final = ("passive", "advertisementmonitor", "notsupported")


class Scanner(Protocol):
    """What the source needs of a scanner: bleak's BleakScanner, or a stand-in without radio."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[[DetectionCallback, ScanMode], Scanner]


def passive_or_patterns(config: BeaconConfig) -> list[OrPattern]:
    """Patterns that let BlueZ pass on the adverts a store cares about in passive mode.

    BlueZ forwards only adverts matching one pattern. Phones and beacons put a Flags
    structure first (its common values cover every discoverable phone); iBeacons and
    Apple's own adverts start with Apple's company id; Eddystone and the app's service
    data start with their UUIDs. Scan responses are never seen passively anyway.
    """
    patterns = [
        OrPattern(0, AdvertisementDataType.FLAGS, bytes([flags]))
        for flags in (0x02, 0x04, 0x05, 0x06, 0x1A, 0x1E, 0x18)
    ]
    patterns.append(
        OrPattern(
            0,
            AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
            APPLE_COMPANY_ID.to_bytes(2, "little"),
        )
    )
    patterns.append(OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe"))
    if config.app_service_uuid is not None:
        app_uuid = uuid.UUID(config.app_service_uuid)
        short = app_uuid.int >> 96
        if config.app_service_uuid.endswith(_BLUETOOTH_BASE_SUFFIX) and short <= 0xFFFF:
            patterns.append(
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, short.to_bytes(2, "little"))
            )
        else:
            patterns.append(
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID128, app_uuid.bytes[::-1])
            )
    return patterns


@dataclass(frozen=True, slots=True)
class BleakScannerFactory:
    """Builds real bleak scanners for an adapter (None = BlueZ's default one)."""

    adapter: str | None
    or_patterns: Sequence[OrPattern]

    def __call__(self, callback: DetectionCallback, mode: ScanMode) -> Scanner:
        bluez: BlueZScannerArgs = {}
        if self.adapter:
            bluez["adapter"] = self.adapter
        if mode == "passive":
            bluez["or_patterns"] = list(self.or_patterns)
        scanner: Scanner = BleakScanner(
            detection_callback=callback, scanning_mode=mode, bluez=bluez
        )
        return scanner


def address_is_random(device: BLEDevice) -> bool | None:
    """BlueZ says whether an address is "public" or "random"; other platforms do not."""
    details = device.details
    if isinstance(details, Mapping):
        props = details.get("props")
        if isinstance(props, Mapping):
            kind = props.get("AddressType")
            if kind == "random":
                return True
            if kind == "public":
                return False
    return None


def _text(error: BaseException | None) -> str:
    """An error's message on one line (D-Bus errors from some services end in a newline)."""
    return " ".join(str(error).split())


def passive_unsupported(error: BaseException) -> bool:
    text = str(error).lower().replace(".", "").replace(" ", "")
    return any(hint in text for hint in _PASSIVE_UNSUPPORTED_HINTS)


async def _backoff_sleep(stop: asyncio.Event, seconds: float) -> None:
    await sleep_unless_stopped(stop, seconds)


class _StoppedError(Exception):
    """Raised inside a retry attempt when shutdown began; ends the retry loop."""


class BleLiveSource:
    """Live BLE adverts as sightings, surviving adapter errors and silent BlueZ restarts."""

    def __init__(
        self,
        *,
        beacons: BeaconConfig,
        adapter: str | None = None,
        mode: ModePreference = "auto",
        watchdog_s: float = DEFAULT_WATCHDOG_S,
        retry_min_s: float = DEFAULT_RETRY_MIN_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        scanner_factory: ScannerFactory | None = None,
        name: str = "ble",
    ) -> None:
        if watchdog_s <= 0 or retry_min_s <= 0 or retry_max_s < retry_min_s:
            raise ValueError("watchdog and retry intervals must be positive, min <= max")
        self.name = name
        self.beacons = beacons
        self.preference: ModePreference = mode
        self.watchdog_s = watchdog_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._factory = scanner_factory or BleakScannerFactory(
            adapter, passive_or_patterns(beacons)
        )
        self._passive_failed = False
        #: Why the source scans actively although passive scanning was asked for ("auto").
        self.degraded: str | None = None
        self._emit: Emit | None = None
        self._scanning = False
        self._last_advert = time.monotonic()
        self.adverts = 0
        self.errors = 0
        self.restarts = 0
        self.last_error: str | None = None

    @property
    def mode(self) -> ScanMode:
        """The mode the next scanner starts in."""
        if self.preference == "active" or (self.preference == "auto" and self._passive_failed):
            return "active"
        return "passive"

    def health(self) -> SourceHealth:
        quiet = time.monotonic() - self._last_advert > self.watchdog_s
        return SourceHealth(
            alive=self._scanning and not quiet,
            frames=self.adverts,
            errors=self.errors,
            restarts=self.restarts,
            last_error=self.last_error,
            mode=self.mode,
            degraded=self.degraded,
        )

    def on_advert(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        """bleak's detection callback (runs on the event loop)."""
        self._last_advert = time.monotonic()
        self.adverts += 1
        emit = self._emit
        if emit is None:
            return
        rssi = advertisement.rssi
        sighting = identify_advert(
            at=time.time(),
            address=device.address,
            random_address=address_is_random(device),
            rssi=None if rssi is None or rssi == BLEAK_NO_RSSI else float(rssi),
            manufacturer_data=advertisement.manufacturer_data,
            service_data=advertisement.service_data,
            config=self.beacons,
            source=self.name,
        )
        if sighting is None:  # not a MAC (macOS reports UUIDs): nothing we can name
            self.errors += 1
            return
        emit(sighting)

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        self._emit = emit
        try:
            while not stop.is_set():
                scanner = await self._start_with_backoff(stop)
                if scanner is None:
                    return
                self._scanning = True
                try:
                    await self._watch(stop)
                finally:
                    self._scanning = False
                    await self._stop_scanner(scanner)
                if stop.is_set():
                    return
                self.restarts += 1
                self.last_error = f"no advert for {self.watchdog_s:g} s: scanning restarted"
                logger.warning("BLE scan silent for %.0f s; restarting it", self.watchdog_s)
        finally:
            self._emit = None

    async def _start_with_backoff(self, stop: asyncio.Event) -> Scanner | None:
        retrying = AsyncRetrying(
            wait=wait_exponential(
                multiplier=self.retry_min_s, min=self.retry_min_s, max=self.retry_max_s
            ),
            retry=retry_if_exception_type(Exception),
            stop=lambda _state: stop.is_set(),
            sleep=partial(_backoff_sleep, stop),
            before_sleep=self._note_failed_start,
            reraise=True,
        )
        scanner: Scanner | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    if stop.is_set():
                        raise _StoppedError
                    scanner = await self._start_once()
        except _StoppedError:
            return None
        except Exception:
            if stop.is_set():  # the last failure came as we were shutting down
                return None
            raise  # pragma: no cover - tenacity only gives up when stop is set
        return scanner

    async def _start_once(self) -> Scanner:
        mode = self.mode
        try:
            scanner = self._factory(self.on_advert, mode)
            await scanner.start()
        except BleakError as error:
            if mode != "passive" or self.preference != "auto" or not passive_unsupported(error):
                raise
            # BlueZ answers "no such method" both when the adapter has no advertisement
            # monitor interface and when the adapter itself is gone (bleak words both as
            # "passive scanning requires BlueZ >= 5.56"). Only an active scan that starts
            # on the same adapter shows that passive scanning is what is missing; if it
            # fails too, that failure is retried like any other, passive first again.
            scanner = self._factory(self.on_advert, "active")
            await scanner.start()
            self._passive_failed = True
            self.degraded = f"passive scanning unavailable, scanning actively: {_text(error)}"
            self.last_error = self.degraded
            logger.warning("BLE passive scanning unavailable (%s); using active scanning",
                           _text(error))
        self._last_advert = time.monotonic()
        logger.info("BLE scanning started (%s)", self.mode)
        return scanner

    def _note_failed_start(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _StoppedError):
            return
        self.errors += 1
        self.last_error = f"scanner start failed: {type(error).__name__}: {_text(error)}"
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("BLE %s; retrying in %.1f s", self.last_error, delay)

    async def _watch(self, stop: asyncio.Event) -> None:
        """Return when `stop` is set or adverts have stopped for `watchdog_s`."""
        while not stop.is_set():
            remaining = self._last_advert + self.watchdog_s - time.monotonic()
            if remaining <= 0:
                return
            await sleep_unless_stopped(stop, remaining)

    async def _stop_scanner(self, scanner: Scanner) -> None:
        try:
            await scanner.stop()
        except Exception as error:  # the adapter may already be gone; that is why we stop
            self.errors += 1
            self.last_error = f"scanner stop failed: {type(error).__name__}: {_text(error)}"
            logger.warning("BLE %s", self.last_error)
