"""Gateway status (retained heartbeat, last will) and config (retained, cloud to gateway)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared._schema import SCHEMA_VERSION, GatewayId, StoreId, TenantId, ZoneId, decode_message
from shared.beacon import StoreBeaconConfig
from shared.pseudonym import KEY_ID_PATTERN

#: The status message's own minor version: 1.1 added the device's figures (`cpu_percent`,
#: `memory_bytes`, `temperature_c`, `disk_free_bytes`). A 1.0 reader ignores them (unknown
#: fields are ignored within a major); a 1.0 heartbeat reads as one without them.
STATUS_SCHEMA_VERSION = "1.1"


def _absent(value: object) -> bool:
    return value is None
KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN.pattern)]
#: Keys a gateway holds at once: the active one and those still honoured in a rotation.
MAX_CONFIG_KEYS = 8
#: Key ids a heartbeat lists at most (a hand-made config file may hold more than the cloud
#: sends): bounds the message.
MAX_REPORTED_KEYS = 64
#: A sealed key's text (`shared.sealing.SealedKey`) is at most this long.
MAX_SEALED_KEY_CHARS = 200


class SourceHealth(BaseModel):
    """How one capture source is doing, as the gateway sees it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    alive: bool
    frames: int = Field(ge=0)
    errors: int = Field(ge=0)
    restarts: int = Field(default=0, ge=0)
    last_error: str | None = None
    #: How the source captures where it has a choice (BLE: "passive" or "active").
    mode: str | None = None
    #: Why the source captures in a lesser way than it was set up to (BLE: passive scanning
    #: is unavailable, so it scans actively). Stays while that lasts, unlike `last_error`.
    degraded: str | None = None
    #: Input files that could not be read, whole or in part (a replay's captures), each
    #: with how far it got in `last_error`: apart from `errors`, which count broken frames
    #: and radio failures.
    files_failed: int = Field(default=0, ge=0)


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
    """Retained on the status topic; the last will publishes `online=False`.

    Per source (`sources`): frames seen, errors, restarts (the BLE adapter's scan
    restarted by the watchdog, the Wi-Fi socket reopened, hostapd reattached). The
    device's figures (since 1.1) are left out of the message when the device cannot tell
    them (no thermal sensor, no /proc).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = STATUS_SCHEMA_VERSION
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
    #: CPU time of the agent process since its previous heartbeat, in percent of one core
    #: (above 100 when it keeps more than one core busy). Since 1.1.
    cpu_percent: float | None = Field(default=None, ge=0, exclude_if=_absent)
    #: The agent process's resident memory. Since 1.1.
    memory_bytes: int | None = Field(default=None, ge=0, exclude_if=_absent)
    #: The warmest of the board's thermal zones, in degrees Celsius. Since 1.1.
    temperature_c: float | None = Field(default=None, exclude_if=_absent)
    #: Free space on the outbox's file system, for the agent's user. Since 1.1.
    disk_free_bytes: int | None = Field(default=None, ge=0, exclude_if=_absent)
    #: The pseudonymization keys the gateway holds (ids only): the cloud switches a
    #: tenant's active key once every live gateway holds it. None: an older gateway.
    key_ids: list[KeyId] | None = Field(default=None, max_length=MAX_REPORTED_KEYS)


#: Zones a gateway tells apart: far beyond a store's floor plan, and small enough that
#: the config stays a few kilobytes (it is a retained message, sent on every connect).
MAX_ZONES = 100


class ZoneThreshold(BaseModel):
    """A device whose smoothed RSSI is at least `min_rssi` is in this zone (strongest first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: ZoneId = Field(description="The zone's name.")
    min_rssi: float = Field(ge=-127, le=20,
                            description="The smoothed RSSI (dBm) at which a device is in it.")


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

    `active_key_id` names the key that pseudonymizes. `keys`, when present, is the whole
    set of tenant keys the gateway is to hold, each sealed to that gateway's own key pair
    (`shared.sealing`: the text is parsed and opened by the gateway), so no secret is ever
    readable on the broker; a key the gateway holds that is not in it is erased. `version`
    grows with every change the cloud saves, so the gateway's heartbeat can say which one
    is in force (sealed keys are bound to it).
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
    active_key_id: KeyId | None = None
    sources: SourceSwitches | None = None
    keys: list[Annotated[str, Field(max_length=MAX_SEALED_KEY_CHARS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_CONFIG_KEYS)
    #: The store beacon this gateway advertises (`shared.beacon`); None: it advertises none.
    beacon: StoreBeaconConfig | None = None

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
