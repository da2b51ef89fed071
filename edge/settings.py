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
from shared.settings_reference import unset
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
    """Who this gateway is: the ids in its MQTT topics and its broker login."""

    tenant: Annotated[str, _segment("tenant")] = Field(description="The shop's tenant id.")
    store: Annotated[str, _segment("store")] = Field(description="The store's key.")
    gateway: Annotated[str, _segment("gateway")] = Field(
        description="This gateway's id within the store.")


class KeySettings(_Section):
    """One pseudonymization key."""

    key_id: KeyId = Field(description="The key's id, carried by every pseudonym.")
    secret: SecretStr = Field(
        description="The key itself, hex or base64 (`VITRINA_EDGE_KEY_<KEY_ID>` overrides "
        "it).")

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

    active: KeyId = Field(description="The key id that pseudonymizes now.")
    key: list[KeySettings] = Field(min_length=1, description="The keys (`[[keys.key]]`).")
    seal_key_file: Path | None = Field(
        default=None,
        description="This gateway's X25519 private key (PEM, written at enrolment), which "
        "opens the keys the cloud delivers sealed.",
        json_schema_extra=unset("keys the cloud delivers cannot be opened: the gateway "
                                "keeps the keys of this file."))
    store: Path | None = Field(
        default=None, description="Where the delivered keys are kept (still sealed).",
        json_schema_extra=unset("`keys.json` beside the outbox."))

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

    app_ibeacon_uuid: uuid.UUID | None = Field(
        default=None, description="The iBeacon proximity UUID the shop's app advertises.",
        json_schema_extra=unset("no iBeacon advert is taken for the app's."))
    app_service_uuid: str | None = Field(
        default=None, description="The BLE service UUID the shop's app advertises.",
        json_schema_extra=unset("no service advert is taken for the app's."))

    def to_config(self) -> BeaconConfig:
        from edge.capture.beacons import BeaconConfig

        return BeaconConfig(
            app_ibeacon_uuid=self.app_ibeacon_uuid, app_service_uuid=self.app_service_uuid
        )


class BleSourceSettings(_Section):
    """Bluetooth Low Energy adverts through BlueZ."""

    enabled: bool = Field(default=False, description="Scan for BLE adverts.")
    adapter: str | None = Field(default="hci0", description="The Bluetooth adapter.",
                                json_schema_extra=unset("BlueZ's default adapter."))
    mode: Literal["auto", "passive", "active"] = Field(
        default="auto",
        description="`auto` scans passively where BlueZ allows it and falls back to active "
        "scanning.")
    watchdog_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="Restart scanning when no advert at all arrived for this long (BlueZ "
        "hung).")
    advertise: bool = Field(
        default=True,
        description="Advertise the store beacon through the same adapter when the cloud's "
        "config names one (false: this gateway only scans).")


#: Channel 14 is Japan-only 2.4 GHz; 5 GHz channels go up to 177.
WIFI_CHANNELS = frozenset(range(1, 15)) | frozenset(range(32, 178))


class WifiMonitorSourceSettings(_Section):
    """Wi-Fi probe and association requests on a monitor-mode interface."""

    enabled: bool = Field(default=False, description="Capture Wi-Fi management frames.")
    iface: str = Field(default="wlan1mon", description="The monitor-mode interface.")
    channels: list[int] = Field(default_factory=lambda: [1, 6, 11], min_length=1,
                                description="The channels hopped through.")
    hop_interval_s: float = Field(default=0.3, gt=0, le=60,
                                  description="How long each channel is listened to.")
    kernel_filter: bool = Field(
        default=True,
        description="Let the kernel drop every frame but probe/association requests before "
        "the agent sees it.")

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: list[int]) -> list[int]:
        unknown = sorted(set(channels) - WIFI_CHANNELS)
        if unknown:
            raise ValueError(f"unknown Wi-Fi channels {unknown}")
        return channels


class HostapdSourceSettings(_Section):
    """Associations with the store's own access point, from hostapd."""

    enabled: bool = Field(default=False, description="Read associations from hostapd.")
    ctrl_path: Path = Field(default=Path("/var/run/hostapd/wlan0"),
                            description="hostapd's control socket.")


class ReplaySourceSettings(_Section):
    """Pcap files replayed through the same decoders as live capture (demo, tests)."""

    enabled: bool = Field(default=False, description="Replay the files below.")
    paths: list[Path] = Field(default_factory=list, description="The pcap files.")
    speed: float | None = Field(default=1.0, gt=0,
                                description="1.0 replays at capture speed.",
                                json_schema_extra=unset("as fast as possible."))

    @model_validator(mode="after")
    def _has_files(self) -> Self:
        if self.enabled and not self.paths:
            raise ValueError("an enabled replay source needs at least one path")
        return self


class SourcesSettings(_Section):
    ble: BleSourceSettings = Field(default=BleSourceSettings(), description="BLE adverts.")
    wifi_monitor: WifiMonitorSourceSettings = Field(
        default=WifiMonitorSourceSettings(), description="Wi-Fi monitor mode.")
    hostapd: HostapdSourceSettings = Field(default=HostapdSourceSettings(),
                                           description="hostapd associations.")
    replay: ReplaySourceSettings = Field(default=ReplaySourceSettings(),
                                         description="Recorded captures.")


class TrackerSettings(_Section):
    """Defaults suit a small shop: a phone advertises a few times a second over BLE and
    probes every few seconds to minutes over Wi-Fi, so two sightings in 30 s is a visitor,
    and two minutes of silence means gone."""

    rssi_floor: float = Field(default=-90.0, ge=-127, le=20,
                              description="Sightings weaker than this (dBm) are ignored.")
    smoothing_alpha: float = Field(
        default=0.3, gt=0, le=1,
        description="Weight of each new reading in the smoothed RSSI (exponential average).")
    enter_sightings: int = Field(default=2, ge=1, le=100,
                                 description="Sightings within `enter_window_s` that make "
                                 "a visitor (enter).")
    enter_window_s: float = Field(default=30.0, gt=0, le=3600,
                                  description="The window of `enter_sightings`.")
    dwell_interval_s: float = Field(default=300.0, gt=0, le=86400,
                                    description="A dwell event this often while a device "
                                    "stays.")
    exit_after_s: float = Field(default=120.0, gt=0, le=86400,
                                description="Silence after which a device has left (exit).")
    adaptive_exit: bool = Field(
        default=True,
        description="Learn each device's timeout from its own gaps between bursts (a few "
        "times their median), never shorter than `exit_after_s`, never longer than "
        "`max_exit_after_s`.")
    max_exit_after_s: float = Field(default=MAX_EXIT_AFTER_S, gt=0, le=86400,
                                    description="The longest learnt timeout.")
    default_zone: Annotated[str, _segment("zone")] = Field(
        default="store", description="The zone of a device no `[[zones]]` threshold places.")
    max_devices: int = Field(default=200_000, ge=1,
                             description="Devices tracked at once (memory bound).")


class OccupancySettings(_Section):
    """People per zone and minute from Wi-Fi probe requests (`edge.occupancy`): needs a
    Wi-Fi monitor (or replay) source. The two figures calibrate the estimate."""

    enabled: bool = Field(default=True, description="Publish occupancy estimates.")
    scans_per_phone_per_minute: float = Field(
        default=1.32, gt=0, le=60,
        description="One phone's scans per minute as the gateway hears them.")
    people_per_phone: float = Field(
        default=1.0, gt=0, le=10,
        description="People per phone heard (the device-to-person calibration).")


class MqttSettings(_Section):
    """The broker: enrolment writes this section."""

    host: str = Field(default="localhost", description="The broker's host name.")
    port: int = Field(default=1883, ge=1, le=65535, description="The broker's port.")
    username: str | None = Field(default=None, description="The gateway's broker login.",
                                 json_schema_extra=unset("no login."))
    password: SecretStr | None = Field(
        default=None,
        description="Its password (`VITRINA_EDGE_MQTT_PASSWORD` overrides it).",
        json_schema_extra=unset("no password."))
    ca_file: Path | None = Field(default=None, description="The broker's CA (PEM); sets TLS.",
                                 json_schema_extra=unset("the system's trusted CAs."))
    cert_file: Path | None = Field(default=None,
                                   description="A client certificate (with `key_file`).",
                                   json_schema_extra=unset("no client certificate."))
    key_file: Path | None = Field(default=None, description="The client certificate's key.",
                                  json_schema_extra=unset("no client certificate."))
    tls: bool = Field(default=False, description="Connect over TLS.")
    keepalive_s: int = Field(default=30, ge=5, le=65535,
                             description="MQTT keep-alive, in seconds.")
    client_id: str | None = Field(default=None, min_length=1, max_length=64,
                                  description="The MQTT client id.",
                                  json_schema_extra=unset("edge-<tenant>-<store>-<gateway>."))
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT v5 everywhere in production; 3.1.1 only for brokers that speak "
        "nothing newer. Nothing the gateway does needs a v5 feature to work.")
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60,
                                   description="The first wait before reconnecting.")
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600,
                                   description="The longest wait before reconnecting.")
    max_inflight_batches: int = Field(
        default=16, ge=1, le=1000,
        description="Batches handed to the broker but not yet acknowledged; bounds memory "
        "and redelivery.")

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
    """The durable queue of events not yet taken by the broker."""

    path: Path = Field(default=Path("/var/lib/vitrina/outbox.db"),
                       description="The outbox database (SQLite).")
    max_events: int = Field(default=1_000_000, ge=10,
                            description="Events kept at most while the broker is away "
                            "(the oldest go first).")
    synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="`normal` survives a crash of the agent; `full` also a power cut, at an "
        "fsync per write.")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO",
                                                               description="The log level.")
    format: Literal["json", "text"] = Field(
        default="json", description="JSON lines for journald and shippers; `text` to read.")


class EdgeSettings(_Section):
    identity: IdentitySettings = Field(description="Who this gateway is.")
    keys: KeysSettings = Field(description="Pseudonymization keys.")
    beacons: BeaconSettings = Field(default=BeaconSettings(), description="The app's beacon.")
    sources: SourcesSettings = Field(default=SourcesSettings(), description="Capture sources.")
    tracker: TrackerSettings = Field(default=TrackerSettings(), description="Presence tracking.")
    occupancy: OccupancySettings = Field(default=OccupancySettings(),
                                         description="Occupancy estimates.")
    zones: list[ZoneThreshold] = Field(
        default_factory=list,
        description="Zones by signal strength, strongest first (`[[zones]]`); `vitrina-edge "
        "calibrate` writes them. Empty: every visitor is in `tracker.default_zone`.")
    mqtt: MqttSettings = Field(default=MqttSettings(), description="The broker.")
    outbox: OutboxSettings = Field(default=OutboxSettings(), description="The outbox.")
    status_interval_s: float = Field(default=30.0, gt=0, le=3600,
                                     description="How often the status heartbeat is published.")
    tick_interval_s: float = Field(default=1.0, gt=0, le=60,
                                   description="How often the tracker looks for exits and dwells.")
    timezone: str = Field(default="UTC",
                          description="The store's IANA time zone: a daily pseudonym "
                          "(randomized addresses, non-customers) changes at its midnight.")
    logging: LoggingSettings = Field(default=LoggingSettings(), description="Logs.")

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
