"""Advertising the store beacon through BlueZ's LE advertising API over D-Bus.

The gateway exports one `org.bluez.LEAdvertisement1` object per advert (iBeacon, and
Eddystone-EID where the config asks for it) and registers each with the adapter's
`org.bluez.LEAdvertisingManager1`; bluetoothd reads the object's properties at
registration and advertises them alongside the scanner's scanning (BlueZ runs both on
one controller). BlueZ does not re-read a registered advertisement, so a rotation
unregisters the adverts, changes the objects and registers them again.

Adapters misbehave as they do for the scanner (`edge.capture.ble_live`): an adapter that
is reset or unplugged takes its registrations with it. BlueZ announces the adapter's
return on its object manager (`InterfacesAdded`), and the advertiser registers again at
once; a failed registration is retried with exponential backoff, and a lost connection
to the system bus is made again. Registrations, errors and re-registrations after the
adapter came back show in `health()`.

The rotating id is never logged: only the period's number.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from dbus_fast import BusType, Message, MessageType, PropertyAccess, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from edge.beacon.plan import AdvertPayload, BeaconPlan, PlannedAdverts
from edge.capture.source import sleep_unless_stopped
from shared.status import SourceHealth

logger = logging.getLogger(__name__)

BLUEZ: Final = "org.bluez"
ADVERTISING_MANAGER: Final = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT: Final = "org.bluez.LEAdvertisement1"
OBJECT_MANAGER: Final = "org.freedesktop.DBus.ObjectManager"
DBUS: Final = "org.freedesktop.DBus"
#: Where the gateway's advertisement objects live on its own bus connection.
ADVERT_ROOT: Final = "/com/vitrina/beacon"
#: First retry after a failed registration, and the ceiling of the exponential backoff
#: (as the scanner's: an adapter being reset is back within seconds, a missing one is
#: not worth asking about more than once a minute).
DEFAULT_RETRY_MIN_S: Final = 1.0
DEFAULT_RETRY_MAX_S: Final = 60.0
#: BlueZ's answers that mean "not registered any more" to an unregistration: the adapter
#: went away (with its registrations) or bluetoothd restarted. Nothing to undo then.
_GONE_ERRORS: Final = frozenset({
    "org.bluez.Error.DoesNotExist",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.ServiceUnknown",
})

ManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
ServiceData = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
UuidList = Annotated[list[str], DBusSignature("as")]

Clock = Callable[[], float]
BusFactory = Callable[[], Awaitable[MessageBus]]


class AdvertisingError(Exception):
    """BlueZ refused a call (its D-Bus error name and message)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name


class _Advertisement(ServiceInterface):
    """One advert as BlueZ reads it: a broadcast (non-connectable) advertisement."""

    def __init__(self, payload: AdvertPayload) -> None:
        super().__init__(ADVERTISEMENT)
        self.payload = payload
        self.released = 0

    @dbus_method()
    def Release(self) -> None:  # noqa: N802 - BlueZ's method name
        """BlueZ dropped the advert (adapter gone, bluetoothd stopping)."""
        self.released += 1

    @dbus_property(PropertyAccess.READ)
    def Type(self) -> DBusStr:  # noqa: N802
        return "broadcast"

    @dbus_property(PropertyAccess.READ)
    def ManufacturerData(self) -> ManufacturerData:  # noqa: N802
        return {company: Variant("ay", data) for company, data in self.payload.manufacturer_data}

    @dbus_property(PropertyAccess.READ)
    def ServiceData(self) -> ServiceData:  # noqa: N802
        return {uuid: Variant("ay", data) for uuid, data in self.payload.service_data}

    @dbus_property(PropertyAccess.READ)
    def ServiceUUIDs(self) -> UuidList:  # noqa: N802
        return list(self.payload.service_uuids)


async def _system_bus() -> MessageBus:
    return await MessageBus(bus_type=BusType.SYSTEM).connect()


class StoreBeaconAdvertiser:
    """Keeps the store beacon registered with BlueZ, rotated on schedule."""

    name = "beacon"

    def __init__(
        self,
        *,
        adapter: str | None = None,
        retry_min_s: float = DEFAULT_RETRY_MIN_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        clock: Clock = time.time,
    ) -> None:
        if retry_min_s <= 0 or retry_max_s < retry_min_s:
            raise ValueError("retry intervals must be positive, min <= max")
        self.adapter_path = f"/org/bluez/{adapter or 'hci0'}"
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._clock = clock
        self._plan: BeaconPlan | None = None
        self._wake = asyncio.Event()
        #: The adverts registered now, by object path; empty when BlueZ holds none of ours.
        self._registered: dict[str, AdvertPayload] = {}
        self._objects: dict[str, _Advertisement] = {}
        self._current: PlannedAdverts | None = None
        #: BlueZ dropped our registrations (adapter gone, bluetoothd restarted): the next
        #: registration is a restart.
        self._lost = False
        self.registrations = 0
        self.errors = 0
        self.restarts = 0
        self.last_error: str | None = None

    # -- what to advertise -------------------------------------------------------------

    def apply(self, plan: BeaconPlan | None) -> None:
        """The cloud's config changed the beacon (None: advertise nothing)."""
        if plan != self._plan:
            self._plan = plan
            self._wake.set()

    @property
    def period(self) -> int | None:
        """The rotation period registered now (None: nothing registered)."""
        return self._current.period if self._current and self._registered else None

    def health(self) -> SourceHealth:
        wanted = self._plan is not None
        return SourceHealth(
            alive=not wanted or bool(self._registered), frames=self.registrations,
            errors=self.errors, restarts=self.restarts, last_error=self.last_error,
            mode="advertising" if self._registered else "idle")

    # -- running -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, bus_factory: BusFactory = _system_bus) -> None:
        """Advertise until `stop` is set; connect (again) to the system bus as needed."""
        failures = 0
        while not stop.is_set():
            try:
                bus = await bus_factory()
            except Exception as error:
                failures += 1
                self._failed(f"system bus unavailable: {type(error).__name__}: {error}")
                await self._pause(stop, failures)
                continue
            try:
                failures = await self._serve(bus, stop)
            finally:
                await self._unregister_all(bus)
                bus.disconnect()
            if not stop.is_set():
                failures += 1
                await self._pause(stop, failures)

    async def _serve(self, bus: MessageBus, stop: asyncio.Event) -> int:
        """Keep the adverts registered on `bus` until `stop` or the bus is lost."""
        self._registered.clear()
        bus.add_message_handler(self._on_message)
        for rule in (f"type='signal',sender='{BLUEZ}',interface='{OBJECT_MANAGER}'",
                     f"type='signal',sender='{DBUS}',member='NameOwnerChanged',arg0='{BLUEZ}'"):
            await self._call(bus, Message(
                destination=DBUS, path="/org/freedesktop/DBus", interface=DBUS,
                member="AddMatch", signature="s", body=[rule]))
        failures = 0
        while not stop.is_set() and bus.connected:
            self._wake.clear()
            delay = math.inf
            try:
                await self._sync(bus)
                failures = 0
            except AdvertisingError as error:
                failures += 1
                self._failed(f"advertisement not registered: {error}")
                delay = self._backoff(failures)
            if self._current is not None and self._plan is not None:
                delay = min(delay, max(0.0, self._current.next_change_at - self._clock()))
            await self._wait(bus, stop, delay)
        return failures

    async def _sync(self, bus: MessageBus) -> None:
        """Register what the plan says for now, if BlueZ does not hold exactly that."""
        plan = self._plan
        wanted = plan.at(self._clock()) if plan is not None else None
        payloads = {f"{ADVERT_ROOT}/{advert.name}": advert
                    for advert in (wanted.adverts if wanted else ())}
        if payloads == self._registered:
            self._current = wanted
            return
        await self._unregister_all(bus)
        for path, payload in payloads.items():
            advert = self._objects.get(path)
            if advert is None:
                advert = self._objects[path] = _Advertisement(payload)
                bus.export(path, advert)
            advert.payload = payload
            await self._manager_call(bus, "RegisterAdvertisement", "oa{sv}", [path, {}])
            self._registered[path] = payload
            self.registrations += 1
        self._current = wanted
        if self._lost and payloads:
            self._lost = False
            self.restarts += 1
        if wanted is not None:
            logger.info("store beacon advertising (period %d, %d adverts)", wanted.period,
                        len(payloads))

    async def _unregister_all(self, bus: MessageBus) -> None:
        for path in list(self._registered):
            del self._registered[path]
            if not bus.connected:
                continue
            try:
                await self._manager_call(bus, "UnregisterAdvertisement", "o", [path])
            except AdvertisingError as error:
                if error.name not in _GONE_ERRORS:
                    self._failed(f"advertisement not unregistered: {error}")

    async def _manager_call(self, bus: MessageBus, member: str, signature: str,
                            body: list[Any]) -> None:
        await self._call(bus, Message(destination=BLUEZ, path=self.adapter_path,
                                      interface=ADVERTISING_MANAGER, member=member,
                                      signature=signature, body=body))

    @staticmethod
    async def _call(bus: MessageBus, message: Message) -> None:
        reply = await bus.call(message)
        if reply is None:
            raise AdvertisingError("org.freedesktop.DBus.Error.NoReply", "no reply")
        if reply.message_type == MessageType.ERROR:
            text = " ".join(str(reply.body[0]).split()) if reply.body else ""
            raise AdvertisingError(reply.error_name or "unknown error", text)

    def _on_message(self, message: Message) -> None:
        """BlueZ's signals: our adapter went, or bluetoothd left the bus (our
        registrations go with either); the adapter (re)appeared (register now, rather than
        at the next retry or rotation). An adapter appearing while we are registered is
        one we registered with already."""
        if message.message_type != MessageType.SIGNAL or not message.body:
            return
        if message.interface == DBUS and message.member == "NameOwnerChanged":
            self._forget("bluetoothd left the system bus")
        elif message.interface != OBJECT_MANAGER or message.body[0] != self.adapter_path:
            return
        elif message.member == "InterfacesRemoved":
            self._forget(f"Bluetooth adapter {self.adapter_path} went away")
        elif message.member == "InterfacesAdded" and not self._registered:
            self._wake.set()

    def _forget(self, why: str) -> None:
        if self._registered:
            logger.warning("%s: store beacon lost, registering it again", why)
            self._registered.clear()
            self._lost = True
        self._wake.set()

    # -- waiting -----------------------------------------------------------------------

    def _failed(self, text: str) -> None:
        self.errors += 1
        self.last_error = text
        logger.warning("store beacon: %s", text)

    def _backoff(self, failures: int) -> float:
        return min(self.retry_max_s, self.retry_min_s * 2.0 ** (failures - 1))

    async def _pause(self, stop: asyncio.Event, failures: int) -> None:
        await sleep_unless_stopped(stop, self._backoff(failures))

    async def _wait(self, bus: MessageBus, stop: asyncio.Event, seconds: float) -> None:
        """Until `stop`, a wake-up (config, adapter), the bus lost, or `seconds` (inf: no
        timeout)."""
        lost: Awaitable[None] = bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait()),
                 asyncio.ensure_future(lost)]
        try:
            await asyncio.wait(waits, timeout=None if math.isinf(seconds) else seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                if waiting.done() and not waiting.cancelled():
                    waiting.exception()  # retrieved: a lost bus is handled by `run`
                waiting.cancel()
