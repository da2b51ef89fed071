"""The store beacon advertised through BlueZ's LE advertising API, against BlueZ's D-Bus
API as python-dbusmock's bluez5 template serves it (its LEAdvertisingManager1 records the
registrations): the payloads bluetoothd would read, registering again after the adapter
comes back, rotating at the period's end, and stopping when the config drops the beacon.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import pytest
from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from edge.agent import EdgeAgent
from edge.beacon.advertiser import ADVERT_ROOT, StoreBeaconAdvertiser
from edge.beacon.plan import BeaconPlan
from edge.pseudonymize import UnknownKeyError
from edge.sighting import Sighting
from shared.beacon import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    ROTATION_PERIOD_S,
    StoreBeaconConfig,
    advert_at,
    eddystone_eid_service_data,
    ibeacon_manufacturer_data,
    store_beacon_key,
)
from shared.identifiers import IdentifierKind, ibeacon_identifier
from shared.pseudonym import TenantKey
from shared.status import GatewayConfig
from tests.edge.capture.bluez import MockBluez, MockBluezFactory, bluez, system_bus
from tests.edge.capture.support import eventually
from tests.edge.support import T0, make_settings, sighting

__all__ = ["bluez", "system_bus"]  # the fixtures, imported for pytest

SHOP_UUID = UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
KEY = TenantKey("k1", bytes(range(32)))
STORE_KEY = store_beacon_key(KEY, tenant="acme", store="madrid-1")
IBEACON = f"{ADVERT_ROOT}/ibeacon"
EDDYSTONE = f"{ADVERT_ROOT}/eddystone"


def plan(*, eddystone: bool = False) -> BeaconPlan:
    config = StoreBeaconConfig(uuid=SHOP_UUID, eddystone=eddystone, key_id="k1")
    return BeaconPlan.build(config, keys={"k1": KEY}, active="k1", tenant="acme",
                            store="madrid-1")


class Advertising:
    """The advertiser running on this loop, on its own connection to the private bus."""

    def __init__(self, advertiser: StoreBeaconAdvertiser) -> None:
        self.advertiser = advertiser
        self.buses: list[MessageBus] = []

    async def connect(self) -> MessageBus:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self.buses.append(bus)
        return bus

    @property
    def owner(self) -> str:
        name = self.buses[-1].unique_name
        assert name is not None
        return name


async def advertising(advertiser: StoreBeaconAdvertiser,
                      body: Callable[[Advertising], Awaitable[None]]) -> None:
    running = Advertising(advertiser)
    stop = asyncio.Event()
    task = asyncio.create_task(advertiser.run(stop, running.connect))
    try:
        await body(running)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def make_advertiser(clock: Callable[[], float] = time.time) -> StoreBeaconAdvertiser:
    return StoreBeaconAdvertiser(adapter="hci0", retry_min_s=0.02, retry_max_s=0.1, clock=clock)


def registered(mock: MockBluez) -> list[str]:
    return [str(args[0]) for args in mock.advertising_calls("RegisterAdvertisement")]


def test_the_ibeacon_and_the_eddystone_frame_are_registered_with_their_payloads(
    bluez: MockBluezFactory,
) -> None:
    mock = bluez()
    mock.add_adapter()
    advertiser = make_advertiser()
    advertiser.apply(plan(eddystone=True))

    async def body(running: Advertising) -> None:
        await eventually(lambda: mock.active_advertisements() == 2)
        await eventually(lambda: advertiser.period is not None)  # BlueZ's answer read
        assert sorted(registered(mock)) == [EDDYSTONE, IBEACON]
        advert = advert_at(STORE_KEY, time.time())
        assert advertiser.period == advert.period
        ibeacon = await asyncio.to_thread(mock.advertisement, running.owner, IBEACON)
        assert ibeacon == {
            "Type": "broadcast",
            "ManufacturerData": {APPLE_COMPANY_ID: ibeacon_manufacturer_data(
                SHOP_UUID, advert.major, advert.minor, -59)},
            "ServiceData": {}, "ServiceUUIDs": [],
        }
        data = ibeacon["ManufacturerData"][APPLE_COMPANY_ID]
        assert data[:2] == b"\x02\x15"
        assert UUID(bytes=data[2:18]) == SHOP_UUID
        eddystone = await asyncio.to_thread(mock.advertisement, running.owner, EDDYSTONE)
        assert eddystone["ServiceData"] == {
            EDDYSTONE_SERVICE_UUID: eddystone_eid_service_data(advert.rotating_id, -59)}
        assert eddystone["ServiceUUIDs"] == [EDDYSTONE_SERVICE_UUID]
        assert advertiser.health().alive

    asyncio.run(advertising(advertiser, body))
    assert advertiser.errors == 0


def test_the_beacon_is_registered_again_when_the_adapter_comes_back(
    bluez: MockBluezFactory,
) -> None:
    mock = bluez()
    mock.add_adapter()
    advertiser = make_advertiser()
    advertiser.apply(plan())

    async def body(running: Advertising) -> None:
        await eventually(lambda: mock.active_advertisements() == 1)
        mock.remove_adapter()  # reset or unplugged: its registrations go with it
        await eventually(lambda: not advertiser.health().alive)
        mock.add_adapter()
        await eventually(lambda: advertiser.health().alive)
        assert registered(mock) == [IBEACON]
        assert mock.active_advertisements() == 1

    asyncio.run(advertising(advertiser, body))
    assert advertiser.restarts == 1
    assert advertiser.registrations == 2


def test_an_adapter_missing_at_start_is_waited_for_with_backoff(
    bluez: MockBluezFactory,
) -> None:
    mock = bluez()
    advertiser = make_advertiser()
    advertiser.apply(plan())

    async def body(running: Advertising) -> None:
        await eventually(lambda: advertiser.errors >= 2)
        assert advertiser.last_error is not None
        assert "advertisement not registered" in advertiser.last_error
        mock.add_adapter()
        await eventually(lambda: mock.active_advertisements() == 1)

    asyncio.run(advertising(advertiser, body))


def test_the_rotating_id_changes_at_the_end_of_the_period(
    bluez: MockBluezFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    mock = bluez()
    mock.add_adapter()
    now = time.time()
    boundary = (now // ROTATION_PERIOD_S + 5) * ROTATION_PERIOD_S
    offset = boundary - 2.0 - now  # the period ends two seconds into the test

    def clock() -> float:
        return time.time() + offset

    advertiser = make_advertiser(clock)
    advertiser.apply(plan())

    async def body(running: Advertising) -> None:
        await eventually(lambda: advertiser.period is not None)
        first = advertiser.period
        assert first == boundary // ROTATION_PERIOD_S - 1
        before = await asyncio.to_thread(mock.advertisement, running.owner, IBEACON)
        await eventually(lambda: advertiser.period == first + 1)
        assert registered(mock) == [IBEACON, IBEACON]
        assert [str(args[0]) for args in mock.advertising_calls("UnregisterAdvertisement")] \
            == [IBEACON]
        after = await asyncio.to_thread(mock.advertisement, running.owner, IBEACON)
        expected = advert_at(STORE_KEY, boundary)
        assert after["ManufacturerData"][APPLE_COMPANY_ID][18:22] == struct.pack(
            ">HH", expected.major, expected.minor)
        assert after != before
        assert mock.active_advertisements() == 1

    asyncio.run(advertising(advertiser, body))
    # The periods are logged, never the ids advertised in them.
    assert "period" in caplog.text
    for moment in (boundary - 1, boundary):
        rotating = advert_at(STORE_KEY, moment).rotating_id
        assert rotating.hex() not in caplog.text.lower()
        assert rotating[:4].hex() not in caplog.text.lower()


def test_a_config_without_a_beacon_unregisters_it(bluez: MockBluezFactory) -> None:
    mock = bluez()
    mock.add_adapter()
    advertiser = make_advertiser()
    advertiser.apply(plan())

    async def body(running: Advertising) -> None:
        await eventually(lambda: mock.active_advertisements() == 1)
        advertiser.apply(None)
        await eventually(lambda: mock.active_advertisements() == 0)
        assert advertiser.health().alive  # nothing wanted, nothing missing
        advertiser.apply(plan(eddystone=True))
        await eventually(lambda: mock.active_advertisements() == 2)

    asyncio.run(advertising(advertiser, body))


def test_the_agent_advertises_what_the_clouds_config_names_under_a_key_it_holds(
    bluez: MockBluezFactory, tmp_path: Path,
) -> None:
    mock = bluez()
    mock.add_adapter()
    settings = make_settings(outbox=tmp_path / "outbox.db")
    advertiser = make_advertiser()
    agent = EdgeAgent(settings, [], live=True, advertiser=advertiser)
    store_key = store_beacon_key(TenantKey.from_text("k2", "a5" * 32), tenant="demo",
                                 store="store-1")

    async def body(running: Advertising) -> None:
        beacon = StoreBeaconConfig(uuid=SHOP_UUID, key_id="k2")
        agent.apply_config(GatewayConfig(version=3, beacon=beacon))
        await eventually(lambda: mock.active_advertisements() == 1)
        await eventually(lambda: agent.status().sources["beacon"].alive)
        assert agent.status().rejected_frames == 0
        shown = await asyncio.to_thread(mock.advertisement, running.owner, IBEACON)
        advert = advert_at(store_key, time.time())
        assert shown["ManufacturerData"][APPLE_COMPANY_ID] == ibeacon_manufacturer_data(
            SHOP_UUID, advert.major, advert.minor, -59)
        with pytest.raises(UnknownKeyError, match="k9"):  # a key it does not hold: refused
            agent.apply_config(GatewayConfig(version=4, beacon=beacon.model_copy(
                update={"key_id": "k9"})))
        agent.apply_config(GatewayConfig(version=5))  # no beacon: it stops
        await eventually(lambda: mock.active_advertisements() == 0)

    try:
        asyncio.run(advertising(advertiser, body))
    finally:
        agent.outbox.close()
    assert registered(mock) == [IBEACON]


def test_the_store_beacon_heard_from_a_neighbouring_gateway_is_no_visitor(
    tmp_path: Path,
) -> None:
    agent = EdgeAgent(make_settings(outbox=tmp_path / "outbox.db"), [], live=False)
    try:
        agent.apply_config(GatewayConfig(beacon=StoreBeaconConfig(uuid=SHOP_UUID)))
        advert = advert_at(STORE_KEY, time.time())
        for at in (T0, T0 + 1, T0 + 2):  # enough for an enter, were it a device
            agent.emit(Sighting(at=at, kind=IdentifierKind.BLE_IBEACON,
                                canonical_id=ibeacon_identifier(SHOP_UUID, advert.major,
                                                                advert.minor),
                                randomized=False, rssi=-60.0, source="ble"))
            agent.emit(sighting("00:1a:11:00:00:09", at=at, kind=IdentifierKind.BLE_ADDRESS))
        assert agent.tracker.counters.sightings == 3  # the phone's, not the beacon's
    finally:
        agent.outbox.close()
