"""Which store's beacon a report names, if its rotating id is current.

The stores that advertise are those with a gateway (not revoked) whose saved config has a
`beacon`; each rotates under a key derived from the tenant key the config names
(`shared.beacon.store_beacon_key`), which this process holds in its settings. A report's
id is checked against the current and the previous period *by the server's clock*, never
the report's, so an id recorded outside the store is worthless half an hour later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError
from sqlmodel import Session, col, select

from cloud.beacons.models import StoreBeaconReport
from cloud.gateways.models import RegisteredGateway
from shared.beacon import (
    StoreBeaconConfig,
    accepted_periods,
    eid_matches,
    ibeacon_matches,
    store_beacon_key,
)
from shared.pseudonym import TenantKey


@dataclass(frozen=True, slots=True)
class AdvertisedBeacon:
    store: str
    uuid: UUID
    store_key: bytes = field(repr=False)


def advertised_beacons(session: Session, *, tenant: str, keys: Mapping[str, TenantKey]
                       ) -> list[AdvertisedBeacon]:
    """The beacons the tenant's gateways are configured to advertise, one per store, key
    and UUID (two gateways of a store advertise the same). A config naming a key this
    process lacks is left out: its ids cannot be checked."""
    rows = session.exec(
        select(RegisteredGateway.store, RegisteredGateway.config)
        .where(RegisteredGateway.tenant == tenant, col(RegisteredGateway.revoked_at).is_(None))
        .order_by(col(RegisteredGateway.store), col(RegisteredGateway.gateway))
    ).all()
    found: dict[tuple[str, UUID, str], AdvertisedBeacon] = {}
    for store, document in rows:
        raw = (document or {}).get("beacon")
        if raw is None:
            continue
        try:
            beacon = StoreBeaconConfig.model_validate(raw)
        except ValidationError:
            continue  # saved by an older build: it was validated then, skip what we can't read
        key = keys.get(beacon.key_id or "")
        if key is None or (store, beacon.uuid, key.key_id) in found:
            continue
        found[(store, beacon.uuid, key.key_id)] = AdvertisedBeacon(
            store, beacon.uuid, store_beacon_key(key, tenant=tenant, store=store))
    return list(found.values())


def identify_store(beacons: Sequence[AdvertisedBeacon], report: StoreBeaconReport, *,
                   now: datetime) -> str | None:
    """The store whose beacon advertised the report's id in the current or the previous
    period at `now`; None for an id of no store then (recorded earlier, or made up)."""
    eid = bytes.fromhex(report.eid) if report.eid is not None else None
    for period in accepted_periods(now.timestamp()):
        for beacon in beacons:
            if beacon.uuid != report.uuid:
                continue
            if eid is not None and eid_matches(beacon.store_key, period, eid):
                return beacon.store
            if (report.major is not None and report.minor is not None
                    and ibeacon_matches(beacon.store_key, period, report.major, report.minor)):
                return beacon.store
    return None
