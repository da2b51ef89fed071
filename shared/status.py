"""Gateway status (retained heartbeat, last will) and config (retained, cloud to gateway)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


class ZoneThreshold(BaseModel):
    """A device whose smoothed RSSI is at least `min_rssi` is in this zone (strongest first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: ZoneId
    min_rssi: float = Field(ge=-127, le=20)


class GatewayConfig(BaseModel):
    """Settings the cloud pushes to a gateway and the gateway applies without restarting.

    Only names a key id: the key material itself is provisioned on the gateway, so
    no secret is ever retained on the broker.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = SCHEMA_VERSION
    rssi_floor: float | None = Field(default=None, ge=-127, le=20)
    enter_sightings: int | None = Field(default=None, ge=1, le=100)
    enter_window_s: float | None = Field(default=None, gt=0, le=3600)
    dwell_interval_s: float | None = Field(default=None, gt=0, le=86400)
    exit_after_s: float | None = Field(default=None, gt=0, le=86400)
    zones: list[ZoneThreshold] | None = None
    active_key_id: Annotated[str, Field(pattern=KEY_ID_PATTERN.pattern)] | None = None


def decode_gateway_status(payload: bytes | bytearray) -> GatewayStatus:
    return decode_message(payload, GatewayStatus, "gateway status")


def decode_gateway_config(payload: bytes | bytearray) -> GatewayConfig:
    return decode_message(payload, GatewayConfig, "gateway config")
