"""The store's own beacon: what the gateway advertises and what the cloud accepts back.

A phone whose app is in the background (or not running) cannot be told apart by its own
adverts (iOS advertises a background app's service only in Apple's "overflow area"), so
the store advertises instead: the phone's operating system notices the store's beacon
(iOS region monitoring on the stable UUID, Android scanning with a filter on it) and the
app reports "entered the store's beacon region" with its customer's token.

A fixed beacon id could be recorded outside the store and replayed from anywhere, so the
part the app reads when ranging rotates, in the spirit of Eddystone-EID: eight bytes of
HMAC-SHA256 over the period's number, under a key derived for the store from one of the
tenant's pseudonymization keys (the keys the cloud already seals to each gateway, so no
new secret has to travel). iBeacon carries the first four bytes as major and minor,
Eddystone-EID all eight. The cloud computes the same bytes and accepts a report only
for the current period or the one before (`accepted_periods`).

Both sides import this module, so the gateway and the cloud cannot compute the id
differently; it is tested once, in tests/shared/test_beacon.py.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Annotated, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.pseudonym import KEY_ID_PATTERN, TenantKey

#: How long one rotating id is advertised. Short enough that an id recorded outside the
#: store is worth at most two periods (the cloud also accepts the previous one, for a
#: report made just before a change and delivered after it); long enough that a
#: customer's visit sees few changes, each costing the app one more ranging callback,
#: and the gateway re-registers its advertisement only four times an hour.
ROTATION_PERIOD_S: Final = 15 * 60
#: Periods a report may be behind the cloud's clock and still count: the current one and
#: the previous (a report queued by the phone across a change, or a gateway clock a few
#: seconds off).
ACCEPTED_PERIODS_BEHIND: Final = 1
#: Bytes of the rotating id: Eddystone-EID's eight; iBeacon's major and minor hold four.
ROTATING_ID_BYTES: Final = 8
#: Apple's company id (iBeacon lives in Apple's manufacturer data).
APPLE_COMPANY_ID: Final = 0x004C
#: iBeacon's type and length, right after the company id.
IBEACON_PREFIX: Final = b"\x02\x15"
#: Eddystone's 16-bit service UUID, in full form as BlueZ names service data.
EDDYSTONE_SERVICE_UUID: Final = "0000feaa-0000-1000-8000-00805f9b34fb"
#: Eddystone's frame type for an ephemeral id.
EDDYSTONE_EID_FRAME: Final = 0x30
#: Eddystone frames state the power at 0 m; iBeacon's measured power is at 1 m. The
#: Eddystone specification's rule of thumb: 41 dB of path loss over that first metre.
EDDYSTONE_1M_LOSS_DB: Final = 41

_KEY_LABEL = b"vitrina store beacon v1"
_PERIOD_LABEL = b"period"

KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN.pattern)]


class StoreBeaconConfig(BaseModel):
    """The store beacon a gateway advertises (the `beacon` part of its config).

    `uuid` is the stable part the app monitors (one region for every store of the
    shop: iOS monitors at most 20 regions per app); the major and minor (iBeacon) or
    the ephemeral id (Eddystone) rotate. `key_id` names the tenant key the rotation is
    derived from; the cloud fills in the active one when it is left out.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uuid: UUID = Field(description="The iBeacon proximity UUID the shop's app monitors.")
    ibeacon: bool = Field(default=True, description="Advertise an iBeacon.")
    eddystone: bool = Field(default=False, description="Advertise an Eddystone-EID frame.")
    key_id: KeyId | None = Field(
        default=None, description="The tenant key the rotating id is derived from "
                                  "(left out: the cloud names the active key).")
    measured_power: int = Field(
        default=-59, ge=-100, le=0,
        description="The RSSI (dBm) a phone reads 1 m from the gateway; apps estimate "
                    "distance from it.")


@dataclass(frozen=True, slots=True)
class BeaconAdvert:
    """What to advertise during one period."""

    period: int
    rotating_id: bytes
    #: When (Unix time) the next period starts and the advert must change.
    next_change_at: float

    @property
    def major(self) -> int:
        return int.from_bytes(self.rotating_id[0:2], "big")

    @property
    def minor(self) -> int:
        return int.from_bytes(self.rotating_id[2:4], "big")


def store_beacon_key(key: TenantKey, *, tenant: str, store: str) -> bytes:
    """The store's rotation key: HMAC-SHA256 of the store's name under the tenant key,
    so each store rotates differently and the tenant key itself never keys a public id."""
    message = b"\x00".join((_KEY_LABEL, tenant.encode(), store.encode()))
    return hmac.new(key.secret, message, hashlib.sha256).digest()


def period_at(unix_time: float) -> int:
    """The rotation period `unix_time` falls in (periods count from the Unix epoch, so
    gateway and cloud agree without talking)."""
    return int(unix_time // ROTATION_PERIOD_S)


def rotating_id(store_key: bytes, period: int) -> bytes:
    """The id advertised during `period`."""
    message = _PERIOD_LABEL + period.to_bytes(8, "big", signed=False)
    return hmac.new(store_key, message, hashlib.sha256).digest()[:ROTATING_ID_BYTES]


def advert_at(store_key: bytes, unix_time: float) -> BeaconAdvert:
    period = period_at(unix_time)
    return BeaconAdvert(period=period, rotating_id=rotating_id(store_key, period),
                        next_change_at=float((period + 1) * ROTATION_PERIOD_S))


def accepted_periods(unix_time: float) -> tuple[int, ...]:
    """The periods whose ids the cloud accepts at `unix_time`, newest first."""
    now = period_at(unix_time)
    return tuple(now - behind for behind in range(ACCEPTED_PERIODS_BEHIND + 1))


def ibeacon_manufacturer_data(proximity: UUID, major: int, minor: int,
                              measured_power: int) -> bytes:
    """Apple's manufacturer data for an iBeacon (after the company id 0x004C): type 0x02,
    length 0x15, the UUID, major and minor big-endian, the measured power at 1 m."""
    return IBEACON_PREFIX + proximity.bytes + struct.pack(">HHb", major, minor, measured_power)


def eddystone_eid_service_data(eid: bytes, measured_power: int) -> bytes:
    """Eddystone service data (UUID 0xFEAA) of an EID frame: frame type 0x30, the power
    at 0 m, the eight-byte ephemeral id."""
    if len(eid) != ROTATING_ID_BYTES:
        raise ValueError(f"an Eddystone EID is {ROTATING_ID_BYTES} bytes")
    return struct.pack(">Bb", EDDYSTONE_EID_FRAME, measured_power + EDDYSTONE_1M_LOSS_DB) + eid


def ibeacon_matches(store_key: bytes, period: int, major: int, minor: int) -> bool:
    expected = rotating_id(store_key, period)
    return hmac.compare_digest(expected[:4], struct.pack(">HH", major, minor))


def eid_matches(store_key: bytes, period: int, eid: bytes) -> bool:
    return hmac.compare_digest(rotating_id(store_key, period), eid)
