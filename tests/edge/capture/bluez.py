"""BlueZ on D-Bus without a Bluetooth adapter: python-dbusmock's `bluez5` template on a
private dbus-daemon, which bleak reaches through DBUS_SYSTEM_BUS_ADDRESS.

The daemon starts once per test module (`system_bus`); each test spawns its own mock
bluetoothd (`bluez`, about 0.1 s), so no test sees another's adapters or devices.
Adapters and devices are added with the template's own methods (AddAdapter, AddDevice,
RemoveAdapter); adverts are property changes on a device, as bluetoothd signals them.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dbus
import pytest
from dbusmock.testcase import BusType, PrivateDBus, SpawnedMock

BLUEZ = "org.bluez"
BLUEZ_MOCK_IFACE = "org.bluez.Mock"
DBUS_MOCK_IFACE = "org.freedesktop.DBus.Mock"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
ADVERTISING_MANAGER_IFACE = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT_IFACE = "org.bluez.LEAdvertisement1"
SYSTEM_BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
#: How long a stopped mock may take to leave the bus (normally milliseconds).
NAME_RELEASE_S = 5.0


def _manufacturer_data(data: Mapping[int, bytes]) -> dbus.Dictionary:
    return dbus.Dictionary(
        {dbus.UInt16(company): dbus.ByteArray(value) for company, value in data.items()},
        signature="qv",
    )


def _service_data(data: Mapping[str, bytes]) -> dbus.Dictionary:
    return dbus.Dictionary(
        {dbus.String(uuid): dbus.ByteArray(value) for uuid, value in data.items()},
        signature="sv",
    )


class MockBluez:
    """One mock bluetoothd on the private bus, driven through its D-Bus methods."""

    def __init__(self, address: str, parameters: Mapping[str, Any]) -> None:
        self.connection = dbus.bus.BusConnection(address)
        self._mock = SpawnedMock.spawn_with_template(
            "bluez5", dict(parameters), stdout=subprocess.DEVNULL, stderr=None
        )
        self.manager = dbus.Interface(self._mock.obj, BLUEZ_MOCK_IFACE)

    def close(self) -> None:
        """Stop this bluetoothd and wait until its bus name is free: the next test's mock
        would otherwise queue for the name behind it, and calls made by name would reach
        the dying one first and then, once it is gone, a mock without that test's adapter."""
        self._mock.terminate()
        deadline = time.monotonic() + NAME_RELEASE_S
        while self.connection.name_has_owner(BLUEZ) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.connection.close()

    def add_adapter(self, name: str = "hci0") -> str:
        return str(self.manager.AddAdapter(name, "vitrina-gw"))

    def remove_adapter(self, name: str = "hci0") -> None:
        """As bluetoothd does when the adapter is unplugged or reset (its devices stay)."""
        self.manager.RemoveAdapter(name)

    def adapter_property(self, name: str, adapter: str = "hci0") -> Any:
        proxy = self.connection.get_object(BLUEZ, f"/org/bluez/{adapter}")
        return proxy.Get(ADAPTER_IFACE, name, dbus_interface=dbus.PROPERTIES_IFACE)

    def advertising_calls(self, method: str, adapter: str = "hci0") -> list[tuple[Any, ...]]:
        """The arguments of every `method` call (RegisterAdvertisement,
        UnregisterAdvertisement) the adapter's LEAdvertisingManager1 took, oldest first.
        The template records the registered paths; the mock object records the calls."""
        proxy = self.connection.get_object(BLUEZ, f"/org/bluez/{adapter}")
        calls = dbus.Interface(proxy, DBUS_MOCK_IFACE).GetMethodCalls(method)
        return [tuple(args) for _stamp, args in calls]

    def active_advertisements(self, adapter: str = "hci0") -> int:
        proxy = self.connection.get_object(BLUEZ, f"/org/bluez/{adapter}")
        return int(proxy.Get(ADVERTISING_MANAGER_IFACE, "ActiveInstances",
                             dbus_interface=dbus.PROPERTIES_IFACE))

    def advertisement(self, owner: str, path: str) -> dict[str, Any]:
        """The properties of an advertisement object as bluetoothd reads them at
        registration (GetAll on the registering connection), in plain Python types.
        Blocking: call it off the event loop that serves the object."""
        proxy = self.connection.get_object(owner, path)
        found = proxy.GetAll(ADVERTISEMENT_IFACE, dbus_interface=dbus.PROPERTIES_IFACE)
        return {
            "Type": str(found["Type"]),
            "ManufacturerData": {int(company): bytes(value)
                                 for company, value in found["ManufacturerData"].items()},
            "ServiceData": {str(uuid): bytes(value)
                            for uuid, value in found["ServiceData"].items()},
            "ServiceUUIDs": [str(uuid) for uuid in found["ServiceUUIDs"]],
        }

    def add_device(
        self,
        address: str,
        *,
        adapter: str = "hci0",
        address_type: str = "random",
        rssi: int = -70,
        manufacturer_data: Mapping[int, bytes] | None = None,
        service_data: Mapping[str, bytes] | None = None,
    ) -> str:
        """A device appears (the template's AddDevice), then advertises what it carries.

        AddDevice announces ManufacturerData and ServiceData as arrays where bluetoothd
        sends dictionaries (a{qv}, a{sv}); bleak cannot read those (it logs the error),
        so the first advert sets both with bluetoothd's types, as a real one would.
        """
        path = str(self.manager.AddDevice(adapter, address, "test device"))
        self.advertise(path, rssi=rssi, address_type=address_type,
                       manufacturer_data=manufacturer_data or {},
                       service_data=service_data or {})
        return path

    def advertise(
        self,
        path: str,
        *,
        rssi: int | None = None,
        address_type: str | None = None,
        manufacturer_data: Mapping[int, bytes] | None = None,
        service_data: Mapping[str, bytes] | None = None,
    ) -> None:
        """An advert from a known device: bluetoothd updates its properties (a signal)."""
        changes: dict[str, Any] = {}
        if rssi is not None:
            changes["RSSI"] = dbus.Int16(rssi)
        if address_type is not None:
            changes["AddressType"] = dbus.String(address_type)
        if manufacturer_data is not None:
            changes["ManufacturerData"] = _manufacturer_data(manufacturer_data)
        if service_data is not None:
            changes["ServiceData"] = _service_data(service_data)
        device = dbus.Interface(self.connection.get_object(BLUEZ, path), DBUS_MOCK_IFACE)
        device.UpdateProperties(DEVICE_IFACE, changes)


@pytest.fixture(scope="module")
def system_bus() -> Iterator[str]:
    """A private dbus-daemon for this module, as the system bus of this process."""
    previous = os.environ.get(SYSTEM_BUS_ENV)
    bus = PrivateDBus(BusType.SYSTEM)
    bus.start()  # points DBUS_SYSTEM_BUS_ADDRESS at it
    try:
        yield bus.address
    finally:
        bus.stop()
        if previous is None:
            os.environ.pop(SYSTEM_BUS_ENV, None)
        else:
            os.environ[SYSTEM_BUS_ENV] = previous


MockBluezFactory = Callable[..., MockBluez]


@pytest.fixture
def bluez(system_bus: str) -> Iterator[MockBluezFactory]:
    """Starts this test's mock bluetoothd: `bluez()` or `bluez(enable_monitor_api=False)`."""
    mocks: list[MockBluez] = []

    def start(**parameters: Any) -> MockBluez:
        mock = MockBluez(system_bus, parameters)
        mocks.append(mock)
        return mock

    yield start
    for mock in mocks:
        mock.close()
