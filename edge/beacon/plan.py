"""What the gateway advertises for its store at a given moment (no D-Bus here).

The cloud's config names the beacon (`shared.beacon.StoreBeaconConfig`); the key it
rotates under is derived from a tenant key the gateway already holds (delivered sealed
with its config, `edge.keystore`). A `BeaconPlan` turns the two into the adverts of the
current period: an iBeacon (Apple's manufacturer data) and, where asked for, an
Eddystone-EID frame. They go out as two advertisements because both together do not fit
in one legacy advert's 31 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.beacon import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    StoreBeaconConfig,
    advert_at,
    eddystone_eid_service_data,
    ibeacon_manufacturer_data,
    store_beacon_key,
)
from shared.errors import ContractError
from shared.pseudonym import TenantKey


@dataclass(frozen=True, slots=True)
class AdvertPayload:
    """One advertisement as BlueZ's LEAdvertisement1 describes it."""

    name: str
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    service_data: tuple[tuple[str, bytes], ...] = ()
    service_uuids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedAdverts:
    period: int
    adverts: tuple[AdvertPayload, ...]
    #: Unix time at which the adverts change (the next period).
    next_change_at: float


@dataclass(frozen=True, slots=True)
class BeaconPlan:
    config: StoreBeaconConfig
    store_key: bytes = field(repr=False)

    @classmethod
    def build(cls, config: StoreBeaconConfig, *, keys: dict[str, TenantKey], active: str,
              tenant: str, store: str) -> BeaconPlan:
        """The plan for `config` under the key it names (the active one when it names
        none); ContractError when the gateway does not hold that key."""
        key_id = config.key_id or active
        key = keys.get(key_id)
        if key is None:
            raise ContractError(f"beacon key id {key_id!r} is not provisioned")
        return cls(config, store_beacon_key(key, tenant=tenant, store=store))

    def at(self, unix_time: float) -> PlannedAdverts:
        advert = advert_at(self.store_key, unix_time)
        config = self.config
        adverts: list[AdvertPayload] = []
        if config.ibeacon:
            data = ibeacon_manufacturer_data(config.uuid, advert.major, advert.minor,
                                             config.measured_power)
            adverts.append(AdvertPayload("ibeacon", manufacturer_data=((APPLE_COMPANY_ID, data),)))
        if config.eddystone:
            frame = eddystone_eid_service_data(advert.rotating_id, config.measured_power)
            adverts.append(AdvertPayload(
                "eddystone", service_data=((EDDYSTONE_SERVICE_UUID, frame),),
                service_uuids=(EDDYSTONE_SERVICE_UUID,)))
        return PlannedAdverts(advert.period, tuple(adverts), advert.next_change_at)
