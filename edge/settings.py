"""The gateway's settings: one TOML file, read once at program start into typed models.

Secrets (pseudonymization keys, the broker password) may live in the file, which the
installer keeps readable by the agent only, or come from the environment so that a
config bundle can be shipped without them:

- `VITRINA_EDGE_KEY_<KEY_ID>` overrides the secret of key `<key_id>` (upper case,
  '-' written as '_'), e.g. `VITRINA_EDGE_KEY_DEMO_2024`;
- `VITRINA_EDGE_MQTT_PASSWORD` overrides `mqtt.password`.

Secrets are `SecretStr`: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import functools
import os
import tomllib
import uuid
from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.timeouts import MAX_EXIT_AFTER_S
from shared.errors import ContractError
from shared.pseudonym import KEY_ID_PATTERN, TenantKey
from shared.status import ZoneThreshold
from shared.topics import validate_segment

if TYPE_CHECKING:
    from edge.capture.beacons import BeaconConfig

#: Where `vitrina-edge` looks when no `--config` is given (the installer writes it there).
DEFAULT_CONFIG_PATH = Path("/etc/vitrina/edge.toml")
#: Read by `get_settings()` when set, so a systemd unit or a test can point elsewhere.
CONFIG_PATH_ENV = "VITRINA_EDGE_CONFIG"
KEY_SECRET_ENV_PREFIX = "VITRINA_EDGE_KEY_"
MQTT_PASSWORD_ENV = "VITRINA_EDGE_MQTT_PASSWORD"
#: The delivered keys' store, beside the outbox unless `[keys] store` says otherwise.
KEY_STORE_FILE = "keys.json"


class SettingsError(ValueError):
    """The config file cannot be used; the message lists every problem as `field: rule`."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def _segment(field: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return validate_segment(field, value)
        except ContractError as error:
            raise ValueError(str(error)) from None

    return AfterValidator(check)


KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN.pattern)]


class _Section(BaseModel):
    """Every section refuses unknown fields: a typo must not silently fall back to a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class IdentitySettings(_Section):
    tenant: Annotated[str, _segment("tenant")]
    store: Annotated[str, _segment("store")]
    gateway: Annotated[str, _segment("gateway")]


class KeySettings(_Section):
    key_id: KeyId
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _decodes(cls, secret: SecretStr) -> SecretStr:
        # TenantKey checks encoding and length; its error never contains the secret.
        try:
            TenantKey.from_text("check", secret.get_secret_value())
        except ContractError as error:
            raise ValueError(str(error).replace("'check' ", "")) from None
        return secret

    def tenant_key(self) -> TenantKey:
        return TenantKey.from_text(self.key_id, self.secret.get_secret_value())


class KeysSettings(_Section):
    """The tenant's keys; `active` pseudonymizes, the others remain for a rotation.

    `seal_key_file`: this gateway's X25519 private key (PEM, written at enrolment), which
    opens the keys the cloud delivers sealed in its config (`shared.sealing`). `store`:
    where the delivered keys are kept (still sealed) so that a restart keeps them; by
    default `keys.json` beside the outbox, in the agent's state directory. From the
    first delivery on, the cloud's set of keys is the gateway's: a key of this file that
    the cloud no longer lists is not loaded again (`edge.keystore`).
    """

    active: KeyId
    key: list[KeySettings] = Field(min_length=1)
    seal_key_file: Path | None = None
    store: Path | None = None

    @model_validator(mode="after")
    def _active_is_known(self) -> Self:
        ids = [item.key_id for item in self.key]
        if len(set(ids)) != len(ids):
            raise ValueError("key ids must be unique")
        if self.active not in ids:
            raise ValueError(f"active key {self.active!r} is not among the configured keys")
        return self

    def tenant_keys(self) -> dict[str, TenantKey]:
        return {item.key_id: item.tenant_key() for item in self.key}


class BeaconSettings(_Section):
    """Which adverts belong to the shop's own app (so its install id can be linked)."""

    app_ibeacon_uuid: uuid.UUID | None = None
    app_service_uuid: str | None = None

    def to_config(self) -> BeaconConfig:
        from edge.capture.beacons import BeaconConfig

        return BeaconConfig(
            app_ibeacon_uuid=self.app_ibeacon_uuid, app_service_uuid=self.app_service_uuid
        )


class BleSourceSettings(_Section):
    enabled: bool = False
    adapter: str | None = "hci0"
    #: "auto" scans passively where BlueZ allows it and falls back to active scanning.
    mode: Literal["auto", "passive", "active"] = "auto"
    #: Restart scanning when no advert at all arrived for this long (BlueZ hung).
    watchdog_s: float = Field(default=60.0, gt=0, le=3600)


#: Channel 14 is Japan-only 2.4 GHz; 5 GHz channels go up to 177.
WIFI_CHANNELS = frozenset(range(1, 15)) | frozenset(range(32, 178))


class WifiMonitorSourceSettings(_Section):
    enabled: bool = False
    iface: str = "wlan1mon"
    channels: list[int] = Field(default_factory=lambda: [1, 6, 11], min_length=1)
    hop_interval_s: float = Field(default=0.3, gt=0, le=60)
    #: Let the kernel drop every frame but probe/association requests before Python sees it.
    kernel_filter: bool = True

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: list[int]) -> list[int]:
        unknown = sorted(set(channels) - WIFI_CHANNELS)
        if unknown:
            raise ValueError(f"unknown Wi-Fi channels {unknown}")
        return channels


class HostapdSourceSettings(_Section):
    enabled: bool = False
    ctrl_path: Path = Path("/var/run/hostapd/wlan0")


class ReplaySourceSettings(_Section):
    """Pcap files replayed through the same decoders as live capture (demo, tests)."""

    enabled: bool = False
    paths: list[Path] = Field(default_factory=list)
    #: 1.0 replays at capture speed; None as fast as possible.
    speed: float | None = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _has_files(self) -> Self:
        if self.enabled and not self.paths:
            raise ValueError("an enabled replay source needs at least one path")
        return self


class SourcesSettings(_Section):
    ble: BleSourceSettings = BleSourceSettings()
    wifi_monitor: WifiMonitorSourceSettings = WifiMonitorSourceSettings()
    hostapd: HostapdSourceSettings = HostapdSourceSettings()
    replay: ReplaySourceSettings = ReplaySourceSettings()


class TrackerSettings(_Section):
    """Defaults suit a small shop: a phone advertises a few times a second over BLE and
    probes every few seconds to minutes over Wi-Fi, so two sightings in 30 s is a visitor,
    and two minutes of silence means gone."""

    rssi_floor: float = Field(default=-90.0, ge=-127, le=20)
    smoothing_alpha: float = Field(default=0.3, gt=0, le=1)
    enter_sightings: int = Field(default=2, ge=1, le=100)
    enter_window_s: float = Field(default=30.0, gt=0, le=3600)
    dwell_interval_s: float = Field(default=300.0, gt=0, le=86400)
    exit_after_s: float = Field(default=120.0, gt=0, le=86400)
    #: Learn each device's timeout from its own gaps between bursts (a few times their
    #: median), never shorter than `exit_after_s`, never longer than `max_exit_after_s`.
    adaptive_exit: bool = True
    max_exit_after_s: float = Field(default=MAX_EXIT_AFTER_S, gt=0, le=86400)
    default_zone: Annotated[str, _segment("zone")] = "store"
    max_devices: int = Field(default=200_000, ge=1)


class OccupancySettings(_Section):
    """People per zone and minute from Wi-Fi probe requests (`edge.occupancy`): needs a
    Wi-Fi monitor (or replay) source. The two figures calibrate the estimate."""

    enabled: bool = True
    #: One phone's scans per minute as the gateway hears them (see
    #: `edge.occupancy.estimator.SCANS_PER_PHONE_PER_MINUTE`).
    scans_per_phone_per_minute: float = Field(default=1.32, gt=0, le=60)
    #: People per phone heard (the device-to-person calibration).
    people_per_phone: float = Field(default=1.0, gt=0, le=10)


class MqttSettings(_Section):
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls: bool = False
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: MQTT v5 everywhere in production; 3.1.1 only for brokers that speak nothing newer
    #: (the demo's fallback broker). Nothing the gateway does needs a v5 feature to work.
    protocol: Literal["5", "3.1.1"] = "5"
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    #: Batches handed to the broker but not yet acknowledged; bounds memory and redelivery.
    max_inflight_batches: int = Field(default=16, ge=1, le=1000)

    @model_validator(mode="after")
    def _tls_consistent(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None


class OutboxSettings(_Section):
    path: Path = Path("/var/lib/vitrina/outbox.db")
    max_events: int = Field(default=1_000_000, ge=10)
    #: "normal" survives a crash of the agent; "full" also a power cut, at an fsync per write.
    synchronous: Literal["normal", "full"] = "normal"


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class EdgeSettings(_Section):
    identity: IdentitySettings
    keys: KeysSettings
    beacons: BeaconSettings = BeaconSettings()
    sources: SourcesSettings = SourcesSettings()
    tracker: TrackerSettings = TrackerSettings()
    occupancy: OccupancySettings = OccupancySettings()
    zones: list[ZoneThreshold] = Field(default_factory=list)
    mqtt: MqttSettings = MqttSettings()
    outbox: OutboxSettings = OutboxSettings()
    status_interval_s: float = Field(default=30.0, gt=0, le=3600)
    tick_interval_s: float = Field(default=1.0, gt=0, le=60)
    timezone: str = "UTC"
    logging: LoggingSettings = LoggingSettings()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (use an IANA name)") from None
        return name

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, zones: list[ZoneThreshold]) -> list[ZoneThreshold]:
        names = [zone.zone for zone in zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique")
        return zones

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    @property
    def key_store_path(self) -> Path:
        return self.keys.store or self.outbox.path.with_name(KEY_STORE_FILE)

    @property
    def client_id(self) -> str:
        identity = self.identity
        return self.mqtt.client_id or f"edge-{identity.tenant}-{identity.store}-{identity.gateway}"


def _env_key_name(key_id: str) -> str:
    return KEY_SECRET_ENV_PREFIX + key_id.upper().replace("-", "_")


def apply_env_overrides(document: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Secrets from the environment win over the file (see the module docstring)."""
    keys = document.get("keys")
    if isinstance(keys, dict) and isinstance(keys.get("key"), list):
        for item in keys["key"]:
            if isinstance(item, dict) and isinstance(item.get("key_id"), str):
                secret = env.get(_env_key_name(item["key_id"]))
                if secret:
                    item["secret"] = secret
    password = env.get(MQTT_PASSWORD_ENV)
    if password:
        mqtt = document.setdefault("mqtt", {})
        if isinstance(mqtt, dict):
            mqtt["password"] = password
    return document


def _describe(error: ValidationError) -> list[str]:
    """`field.path: rule` for every problem; input values are never echoed (secrets)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "(file)"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    return problems


def parse_settings(
    document: dict[str, Any], *, path: Path, env: Mapping[str, str] | None = None
) -> EdgeSettings:
    document = apply_env_overrides(document, os.environ if env is None else env)
    try:
        return EdgeSettings.model_validate(document)
    except ValidationError as error:
        raise SettingsError(path, _describe(error)) from None


def load_settings(path: Path | str, *, env: Mapping[str, str] | None = None) -> EdgeSettings:
    """Read and validate the config file; SettingsError lists every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(path, [f"(file): cannot read: {error.strerror}"]) from None
    except UnicodeDecodeError:
        raise SettingsError(path, ["(file): not UTF-8 text"]) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(path, [f"(file): not valid TOML: {error}"]) from None
    return parse_settings(document, path=path, env=env)


def config_path_from_env() -> Path:
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


@functools.cache
def get_settings(path: Path | None = None) -> EdgeSettings:
    """The settings of this process, read once on first use at program start."""
    return load_settings(path or config_path_from_env())
