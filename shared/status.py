"""Gateway status (retained heartbeat, last will) and config (retained, cloud to gateway)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared._schema import SCHEMA_VERSION, GatewayId, StoreId, TenantId, ZoneId, decode_message
from shared.pseudonym import KEY_ID_PATTERN


class SourceHealth(BaseModel):
    """How one capture source is doing, as the gateway sees it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    alive: bool
    frames: int = Field(ge=0)
    errors: int = Field(ge=0)
    restarts: int = Field(default=0, ge=0)
    last_error: str | None = None


#: A refusal's reason is cut to this many characters: enough for a validation summary,
#: bounded so a heartbeat stays small.
MAX_REFUSAL_CHARS = 500


class ConfigRefusal(BaseModel):
    """The newest config the gateway would not apply, and why (it keeps the last good one)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    #: The refused config's version; None when it could not even be read.
    version: int | None = None
    reason: str = Field(max_length=MAX_REFUSAL_CHARS)


class GatewayStatus(BaseModel):
    """Retained on the status topic; the last will publishes `online=False`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = SCHEMA_VERSION
    tenant: TenantId
    store: StoreId
    gateway: GatewayId
    online: bool
    sent_at: AwareDatetime
    software_version: str = ""
    uptime_s: float = Field(default=0, ge=0)
    sources: dict[str, SourceHealth] = Field(default_factory=dict)
    queue_depth: int = Field(default=0, ge=0)
    published: int = Field(default=0, ge=0)
    dropped: int = Field(default=0, ge=0)
    rejected_frames: int = Field(default=0, ge=0)
    devices_tracked: int = Field(default=0, ge=0)
    active_key_id: str | None = None
    #: The version of the cloud's config in force (None: only the local config file).
    config_version: int | None = None
    config_refused: ConfigRefusal | None = None


#: Zones a gateway tells apart: far beyond a store's floor plan, and small enough that
#: the config stays a few kilobytes (it is a retained message, sent on every connect).
MAX_ZONES = 100


class ZoneThreshold(BaseModel):
    """A device whose smoothed RSSI is at least `min_rssi` is in this zone (strongest first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: ZoneId
    min_rssi: float = Field(ge=-127, le=20)


class SourceSwitches(BaseModel):
    """Capture sources the cloud switches off (False) or back on (True) on a gateway.

    A source must be set up in the gateway's own config file to run at all (its radio
    interface is a property of the device); a switch only mutes or unmutes it, and None
    leaves it as the file says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ble: bool | None = None
    wifi: bool | None = None
    hostapd: bool | None = None

    def muted(self) -> frozenset[str]:
        """The names of the sources switched off (as sightings name their source)."""
        return frozenset(name for name, on in self.model_dump().items() if on is False)


class GatewayConfig(BaseModel):
    """Settings the cloud pushes to a gateway and the gateway applies without restarting.

    Only names a key id: the key material itself is provisioned on the gateway, so
    no secret is ever retained on the broker. `version` grows with every change the
    cloud saves, so the gateway's heartbeat can say which one is in force.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = SCHEMA_VERSION
    version: int | None = Field(default=None, ge=1)
    rssi_floor: float | None = Field(default=None, ge=-127, le=20)
    enter_sightings: int | None = Field(default=None, ge=1, le=100)
    enter_window_s: float | None = Field(default=None, gt=0, le=3600)
    dwell_interval_s: float | None = Field(default=None, gt=0, le=86400)
    exit_after_s: float | None = Field(default=None, gt=0, le=86400)
    zones: list[ZoneThreshold] | None = Field(default=None, max_length=MAX_ZONES)
    active_key_id: Annotated[str, Field(pattern=KEY_ID_PATTERN.pattern)] | None = None
    sources: SourceSwitches | None = None

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, zones: list[ZoneThreshold] | None) -> list[ZoneThreshold] | None:
        # Strongest threshold first decides a device's zone: a name twice is ambiguous.
        names = [zone.zone for zone in zones or []]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique")
        return zones


def decode_gateway_status(payload: bytes | bytearray) -> GatewayStatus:
    return decode_message(payload, GatewayStatus, "gateway status")


def decode_gateway_config(payload: bytes | bytearray) -> GatewayConfig:
    return decode_message(payload, GatewayConfig, "gateway config")
