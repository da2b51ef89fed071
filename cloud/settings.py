"""Orchestrator settings: environment (`VITRINA_...`, nested with `__`) over an optional TOML file.

Built once at program start through `get_settings()`; nothing reads the environment
at import time, so tests and tools can build `Settings(...)` explicitly.

Example: `VITRINA_MQTT__HOST=broker.example` or, in the file named by `VITRINA_CONFIG`:

    database_url = "postgresql+psycopg://vitrina@db/vitrina"
    [mqtt]
    host = "broker.example"
    [tenants.acme]
    keys = [{ key_id = "k1", secret = "<hex or base64>" }]
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import secrets
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cloud.channels import Channel, ChannelAdapter, adapter_for, adapters
from cloud.outbound import RESOLVE_TIMEOUT_S, AllowList, OutboundPolicy
from shared.errors import ContractError, describe_validation_error
from shared.pseudonym import KEY_ID_PATTERN, Pseudonymizer, TenantKey
from shared.settings_reference import keyed, unset
from shared.topics import PRESENCE_SHARED_SUBSCRIPTION, SEGMENT_PATTERN

#: The environment variable that names an optional TOML settings file.
CONFIG_FILE_VARIABLE = "VITRINA_CONFIG"

#: A broker keeps a worker's session (and its queued messages) this long after a
#: disconnect: long enough to ride out a deploy or a host reboot.
DEFAULT_SESSION_EXPIRY_S = 3600


S = TypeVar("S", bound=BaseModel)

#: Settings an earlier release read elsewhere: (where it was, where it is now).
MOVED_SETTINGS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fcm",), "channels.push (VITRINA_CHANNELS__PUSH__...)"),
    (("delivery", "smtp"), "channels.email (VITRINA_CHANNELS__EMAIL__...)"),
    (("delivery", "unsubscribe_mailto"), "channels.email.unsubscribe_mailto"),
    (("delivery", "sms"), "channels.sms (VITRINA_CHANNELS__SMS__...)"),
    (("delivery", "web_push_subject"), "channels.web_push.subject"),
)


def _moved(data: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for path, new in MOVED_SETTINGS:
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found.append((".".join(path), new))
    return found


#: The share group named by the wire contract's subscription ("$share/<group>/...").
SHARE_GROUP = PRESENCE_SHARED_SUBSCRIPTION.split("/")[1]


class MqttLogin(BaseModel):
    """A broker login of its own, pinned to one client id (`vitrina-provision
    add-orchestrator` writes them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(min_length=1, max_length=64, description="The login's user name.")
    password: SecretStr = Field(description="The login's password.")
    client_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="The one client id the broker lets this login use.",
        json_schema_extra=unset("the username is the client id."))

    @property
    def pinned_client_id(self) -> str:
        return self.client_id or self.username


class MqttSettings(BaseModel):
    """How the worker reaches the broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", description="The broker's host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="The broker's port.")
    tls: bool = Field(default=False, description="Connect over TLS (on when `ca_file` is set).")
    ca_file: str | None = Field(
        default=None, description="The CA certificate (PEM) to trust for the broker.",
        json_schema_extra=unset("the system's trusted CAs (when TLS is on)."))
    username: str | None = Field(
        default=None, description="The worker's broker login.",
        json_schema_extra=unset("the worker connects without a login (a broker that "
                                "allows anonymous clients only)."))
    password: SecretStr | None = Field(
        default=None, description="The password of `username`.",
        json_schema_extra=unset("no password is sent."))
    client_id: str = Field(
        default="vitrina-orchestrator", min_length=1, max_length=64,
        description="The ingest worker's client id: with a login pinned to one (as "
        "`vitrina-provision add-orchestrator` makes them), exactly that one.")
    config_publisher: MqttLogin | None = Field(
        default=None,
        description="The login that publishes gateway configs (the API and the delivery "
        "stage), pinned to its own client id.",
        json_schema_extra=unset(
            "configs are published with the login above under a fresh client id each "
            "time, which only a login pinned to no client id may do (brokers without "
            "dynamic security, logins made before pinning)."))
    keepalive_s: int = Field(default=30, ge=5, le=3600,
                             description="MQTT keep-alive, in seconds.")
    session_expiry_s: int = Field(
        default=DEFAULT_SESSION_EXPIRY_S, ge=0,
        description="How long the broker keeps a worker's session (and its queued "
        "messages) after a disconnect: long enough to ride out a deploy or a reboot.")
    shared_subscription: bool = Field(
        default=True,
        description="MQTT v5 shared subscription; switch off for an MQTT 3.1.1-only broker "
        "(one worker then).")
    share_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = Field(
        default=SHARE_GROUP,
        description="Workers in one group share the presence stream; a second group gets "
        "its own copy.")
    mqtt_v5: bool = Field(
        default=True,
        description="Protocol 5; false (3.1.1) only for brokers that speak nothing newer.")


class TenantKeySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: Annotated[str, Field(pattern=KEY_ID_PATTERN.pattern)] = Field(
        description="The key's id, carried by every pseudonym made with it.")
    secret: SecretStr = Field(
        description="The key itself: 32 bytes or more, hex or base64 (`vitrina-provision` "
        "makes one).")

    def tenant_key(self) -> TenantKey:
        return TenantKey.from_text(self.key_id, self.secret.get_secret_value())


class TenantSettings(BaseModel):
    """A tenant's pseudonymization keys: every listed key is honoured (links are kept
    under each, and the gateways are sent each, sealed). Which one is active is the
    database's word (`cloud.rotation`): the first listed when the tenant is first seen,
    then the one an admin activates; a key added later is listed until then, and a
    retired key is no longer used even while it is still listed here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[TenantKeySettings] = Field(
        min_length=1,
        description="The tenant's pseudonymization keys (each `{key_id, secret}`); the "
        "gateways pseudonymize with the same keys.")
    webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="The shop's webhook signing secrets (several while one is rotated); "
        "when empty, the global `webhook_secrets` apply.")

    @field_validator("keys")
    @classmethod
    def _valid_keys(cls, keys: list[TenantKeySettings]) -> list[TenantKeySettings]:
        seen: set[str] = set()
        for key in keys:
            if key.key_id in seen:
                raise ValueError(f"key id {key.key_id!r} is listed twice")
            seen.add(key.key_id)
            try:
                key.tenant_key()
            except ContractError as error:
                raise ValueError(str(error)) from None
        return keys

    def tenant_keys(self) -> list[TenantKey]:
        return [key.tenant_key() for key in self.keys]

    def pseudonymizers(self) -> list[Pseudonymizer]:
        return [Pseudonymizer(key) for key in self.tenant_keys()]


#: What a browser sends as a page's Origin: scheme, host, optional port.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class ApiSettings(BaseModel):
    """The HTTP API: where it listens, what it takes, and how wrong keys are slowed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", description="The address the API listens on.")
    port: int = Field(default=8000, ge=0, le=65535,
                      description="The port the API listens on (0: any free port).")
    metrics_public: bool = Field(
        default=True,
        description="/metrics holds counters only (no tenant or personal data) and "
        "Prometheus scrapes it from inside the network, so it is open by default; set false "
        "when the API port is reachable from outside, and /metrics then needs an operator "
        "key.")
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="A request body larger than this is refused (413) before it is read, "
        "unless its route declares that it takes more.")
    max_header_bytes: int = Field(
        default=16 * 1024, ge=4 * 1024, le=1024 * 1024,
        description="The request line and headers together; larger is refused (400) by the "
        "HTTP server before the application sees it. Room for a session cookie and a "
        "customer token.")
    trusted_proxies: list[str] = Field(
        default_factory=list, max_length=100,
        description="The reverse proxies in front of the API (addresses or networks in CIDR "
        "form, e.g. \"10.0.0.0/8\"): only a request from one of them has its "
        "X-Forwarded-For and X-Forwarded-Proto believed. Empty: the socket's peer is the "
        "client, and forwarded headers are ignored. Behind a proxy, list it: else every "
        "client has the proxy's address, and one guesser's failures slow every other "
        "client's.")
    key_free_failures: int = Field(
        default=10, ge=1, le=1000,
        description="Failed API keys (per key id and per client address) allowed before "
        "each further one waits. A valid key is never held back or counted.")
    key_window_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="The failure count starts again after this long with no failure and "
        "no wait.")
    key_backoff_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="The first wait after the free failures, doubling with every further "
        "failure up to `key_backoff_max_s`.")
    key_backoff_max_s: float = Field(default=900.0, gt=0, le=24 * 3600,
                                     description="The longest wait for a wrong key.")
    cors_origins: list[str] = Field(
        default_factory=list, max_length=100,
        description="The web shops' origins (\"https://shop.example\") whose pages call the "
        "API from the browser (the web client under web/): they get CORS answers allowing "
        "the headers an app sends (the app key, the customer token, JSON) and never cookies, "
        "so a console session cannot be used from them. Empty: no page of another origin can "
        "call the API, and a web shop must serve it under its own origin.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, proxies: list[str]) -> list[str]:
        for entry in proxies:
            try:
                ipaddress.ip_network(entry.strip())
            except ValueError:
                raise ValueError(
                    f"{entry!r} is neither an address nor a network in CIDR form (host bits"
                    " zero): list the proxies themselves, never every address") from None
        return [entry.strip() for entry in proxies]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: a scheme and a host (and port), as a browser "
                    "sends it, e.g. https://shop.example; no path, no wildcard")
        return origins


class ConsoleSettings(BaseModel):
    """Console members' sign-in: sessions, invitations, and how guessing is slowed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_idle_minutes: int = Field(
        default=60, ge=5, le=24 * 60,
        description="A session unused for this long ends (the member signs in again).")
    session_hours: int = Field(default=12, ge=1, le=30 * 24,
                               description="A session ends this long after sign-in, however busy.")
    invitation_days: int = Field(default=7, ge=1, le=30,
                                 description="How long an invitation link stays valid.")
    login_free_failures: int = Field(
        default=5, ge=1, le=100,
        description="Failed sign-ins (per account and per client address) allowed before "
        "each further one waits.")
    login_window_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="The failure count starts again after this long with no failure and "
        "no wait.")
    login_backoff_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="The first wait after the free failures, doubling with every further "
        "failure up to `login_backoff_max_s`.")
    login_backoff_max_s: float = Field(default=1800.0, gt=0, le=24 * 3600,
                                       description="The longest wait for a wrong password.")
    secure_cookies: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Session cookies are Secure (sent over HTTPS only): `auto` when the "
        "public base URL is https or the request came over https.")
    map_tiles_url: str | None = Field(
        default=None, pattern=r"^https://[^\s\"'<>]+$", max_length=500,
        description="Map tiles under the geofence editor, e.g. "
        "\"https://tile.example/{z}/{x}/{y}.png\" (a tile server the deployment may use).",
        json_schema_extra=unset("the map has no background; geofences are still drawn "
                                "and edited on it by coordinates."))
    map_tiles_attribution: str = Field(
        default="", max_length=300,
        description="The credit the tile provider asks for, shown on the map.")


class GatewaySettings(BaseModel):
    """Enrolling gateways from the console: the broker's admin login (to create and delete
    gateway logins through dynamic security), where gateways reach the broker, the CA
    they trust, and how long an enrolment code lasts.

    The admin connects where the worker does (`mqtt.host`, `mqtt.port`, `mqtt.ca_file`);
    gateways dial `public_host`/`public_port`, which default to the same.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker_admin_username: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="The broker's dynamic-security admin login, which creates and deletes "
        "gateway logins.",
        json_schema_extra=unset("gateways cannot be enrolled or revoked from the console "
                                "(it answers 503 naming this setting)."))
    broker_admin_password: SecretStr | None = Field(
        default=None, description="The password of `broker_admin_username`.",
        json_schema_extra=unset("as for `broker_admin_username`."))
    ca_file: str | None = Field(
        default=None,
        description="The CA certificate (PEM) gateways trust for the broker.",
        json_schema_extra=unset("`mqtt.ca_file`."))
    public_host: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="The broker's host name as gateways reach it.",
        json_schema_extra=unset("`mqtt.host`."))
    public_port: int | None = Field(
        default=None, ge=1, le=65535, description="The broker's port as gateways reach it.",
        json_schema_extra=unset("`mqtt.port`."))
    enrolment_code_hours: int = Field(
        default=24, ge=1, le=24 * 14,
        description="How long an enrolment code lasts: a day bounds how long a code "
        "written on a note stays worth stealing.")
    enrol_free_failures: int = Field(
        default=5, ge=1, le=100,
        description="Wrong codes from one client address allowed before each further try "
        "waits (the code space is ~40 bits: the wait makes guessing hopeless).")
    enrol_backoff_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="The first wait after the free failures, doubling up to "
        "`enrol_backoff_max_s`.")
    enrol_backoff_max_s: float = Field(default=1800.0, gt=0, le=24 * 3600,
                                       description="The longest wait for a wrong code.")
    enrol_window_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="The failure count starts again after this long with no failure.")
    config_poll_interval_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="How often the delivery stage looks for gateway configs to publish "
        "(saved while the broker was away, or not taken by a live gateway).")
    health_history_days: int = Field(
        default=30, ge=1, le=366,
        description="How long each gateway's health history is kept (a row per 5 minutes).")


class IngestSettings(BaseModel):
    """How the worker batches database writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_messages: int = Field(
        default=64, ge=1, le=10_000,
        description="MQTT messages per transaction: each can hold up to 500 events, so "
        "this bounds a transaction to a size PostgreSQL commits in a few tens of "
        "milliseconds.")
    batch_wait_s: float = Field(
        default=0.05, ge=0, le=10,
        description="How long a partial batch gathers more messages while the one before "
        "is still being written.")
    batch_min_wait_s: float = Field(
        default=0.01, ge=0, le=10,
        description="How long a partial batch gathers more messages at least, with the "
        "writer free.")
    receive_maximum: int = Field(
        default=256, ge=1, le=65535,
        description="Flow control: the broker sends at most this many unacknowledged "
        "messages, which bounds what a worker holds in memory.")
    partition_days_ahead: int = Field(
        default=7, ge=1, le=366,
        description="On PostgreSQL, days of presence partitions the worker keeps made "
        "ahead of today (at start and every retention run): events of days beyond wait "
        "in the default partition until their day is made.")
    presence_retention_days: int | None = Field(
        default=None, ge=2, le=3660,
        description="Presence events last seen longer ago than this are removed: on "
        "PostgreSQL whole day partitions are dropped, on SQLite the rows are deleted. "
        "The footfall roll-ups are kept.",
        json_schema_extra=unset("presence events are kept."))


class AnalyticsSettings(BaseModel):
    """How the worker keeps the footfall roll-ups current (`cloud.presence.rollups`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollup_interval_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="How often the ingest worker rebuilds the hours marked since: the "
        "charts run this far behind the events at most.")
    rollup_batch_hours: int = Field(
        default=200, ge=1, le=10_000,
        description="Marked hours taken per transaction: this bounds how long one holds "
        "its stores' roll-ups.")


#: A tracked link ("<base>/c/<16-character token>") must fit the 60 characters of `link`.
MAX_PUBLIC_BASE_CHARS = 41
#: The public base URL out of the box: this machine only.
LOOPBACK_BASE_URL = "http://127.0.0.1:8000"


class DeliverySettings(BaseModel):
    """The durable send queue's worker (each channel's own settings are under
    `channels`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(
        default=200, ge=1, le=5000,
        description="Messages claimed per round; each channel sends them in batches of its "
        "own size.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60,
        description="How often an idle worker looks for due messages (a busy one goes on "
        "at once).")


def needs_https(channel: str) -> str:
    """Why `channel` needs an https public base URL, said where the configuration is
    refused."""
    return (
        f"{channel} is configured (channels.{channel}) but tracking.public_base_url is not "
        "https: every message on it carries a one-click unsubscribe link (RFC 8058, "
        "List-Unsubscribe-Post), which must be https, and mailbox providers junk bulk mail "
        "without one. Set VITRINA_TRACKING__PUBLIC_BASE_URL (or [tracking] public_base_url) "
        "to the https address customers reach this API at."
    )


def is_https(url: str) -> bool:
    return url.startswith("https://")


def is_loopback_url(url: str) -> bool:
    """Whether `url` points at this machine only (127.0.0.0/8, ::1, localhost): links made
    with it reach no customer's phone."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TrackingSettings(BaseModel):
    """Tracked links, open pixels and attribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    public_base_url: Annotated[
        str, Field(pattern=r"^https?://[^/\s]+(/[^\s]*)?$", max_length=MAX_PUBLIC_BASE_CHARS)
    ] = Field(
        default=LOOPBACK_BASE_URL,
        description="Where customers reach this API: tracked links, open reports and "
        "unsubscribe links in messages point here. https in production (email one-click "
        "unsubscribe requires it), and short: a tracked link is at most 60 characters, of "
        "which the token and \"/c/\" take 19. Left at the loopback default, links in "
        "messages work on this machine only; the orchestrator says so at start-up.")
    secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="Keys tracking tokens.",
        json_schema_extra=unset("each process makes up its own: tokens still work (they "
                                "are stored with the message) but are no longer the same "
                                "across processes."))
    attribution_window_days: int = Field(
        default=7, ge=1, le=90,
        description="An order this long after a message was sent, opened or clicked counts "
        "as its conversion.")


class QuietHours(BaseModel):
    """Hours, on the customer's own clock, when marketing waits: messages decided then are
    held until `end`, not dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time = Field(default=time(21, 0),
                        description="When quiet hours begin, on the customer's clock.")
    end: time = Field(default=time(9, 0),
                      description="When they end: held messages go out from then.")


class ChannelCap(BaseModel):
    """At most `max` marketing messages on one channel per customer within `per`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max: int = Field(ge=1, le=1000, description="Messages allowed within `per`.")
    per: timedelta = Field(gt=timedelta(0), le=timedelta(days=366),
                           description="The rolling window, e.g. `P7D`.")


def _default_caps() -> dict[str, ChannelCap]:
    """Each channel's own default cap (`ChannelAdapter.default_cap`)."""
    return {
        adapter.name: ChannelCap(max=adapter.default_cap.max, per=adapter.default_cap.per)
        for adapter in adapters() if adapter.default_cap is not None
    }


class ScenarioSettings(BaseModel):
    """How the scenario engine runs and what every send must respect."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Run the scenario engine at all.")
    quiet_hours: QuietHours | None = Field(
        default=QuietHours(),
        description="Hours, on each customer's clock, when marketing messages are held "
        "(not dropped) until the end: the default for every tenant. Off (messages go out "
        "at any hour) with `VITRINA_SCENARIOS__QUIET_HOURS=null`, or in TOML the same "
        "`start` and `end`. What a tenant sets through the API or the console (`PUT "
        "/tenants/{tenant}/preferences`, a store's own for its visits) wins over this and "
        "over `tenant_quiet_hours`. The orchestrator logs the quiet hours that apply at "
        "start-up.",
        json_schema_extra=unset("21:00 to 09:00."))
    tenant_quiet_hours: dict[str, QuietHours | None] = Field(
        default_factory=dict,
        description="A tenant's quiet hours, under its id, instead of `quiet_hours` (a "
        "shop whose customers expect texts later in the evening). None for a tenant's "
        "customers: `null` in JSON, or the same `start` and `end`. Tenants not listed have "
        "`quiet_hours`. What the tenant sets through the API or the console wins over this.",
        json_schema_extra=keyed("tenant"))
    default_time_zone: str = Field(
        default="UTC",
        description="The clock for customers who gave no time zone, when neither the "
        "journey's store nor their tenant (through the API or the console) gives one: "
        "quiet hours and birthdays follow it.")
    channel_caps: dict[Channel, ChannelCap] = Field(
        default_factory=_default_caps,
        description="At most `max` marketing messages per customer per channel within "
        "`per`. Setting this replaces the whole table: list every channel that should "
        "stay capped.",
        json_schema_extra=keyed("channel"))
    fallback_first_name: str = Field(
        default="there", min_length=1, max_length=30,
        description="Greeting for customers who gave no first name (\"Hi there\").")
    trigger_batch: int = Field(
        default=500, ge=1, le=10_000,
        description="Triggers handled per transaction: large enough to amortise the "
        "queries that load customer facts, small enough that a transaction stays short.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60,
        description="How often a worker looks for due timers and unprocessed triggers when "
        "nothing woke it (ingest and the API wake it at once).")
    schedule_interval_s: float = Field(
        default=3600.0, gt=0, le=86_400,
        description="How often date (birthday) and inactivity triggers are looked for, and "
        "segments not counted yet today (UTC) are counted.")
    webhook_timeout_s: float = Field(
        default=3.0, gt=0, le=30,
        description="How long the delivery worker waits for the shop's server (to connect, "
        "and again to answer) when posting a webhook a step queued; no answer in time is "
        "retried later.")

    def quiet_hours_for(self, tenant: str) -> QuietHours | None:
        """The deployment's quiet hours for `tenant`: its own here, else everyone's (what
        the tenant or a store set through the API comes first: `cloud.preferences`)."""
        if tenant in self.tenant_quiet_hours:
            return self.tenant_quiet_hours[tenant]
        return self.quiet_hours


class OutboundSettings(BaseModel):
    """Where requests to URLs that tenants and apps give (scenario webhooks, Web Push
    endpoints) may go besides public https addresses (`cloud.outbound`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow: list[str] = Field(
        default_factory=list, max_length=100,
        description="Targets the outbound rules do not apply to: networks in CIDR form "
        "(\"10.20.0.0/16\": its addresses, plain http to them included) and exact "
        "\"host:port\" pairs (\"push.shop.internal:8443\"). For an on-premise shop whose "
        "endpoints are on its own network, and for local provider servers. Empty: public "
        "https only.")
    resolve_timeout_s: float = Field(
        default=RESOLVE_TIMEOUT_S, gt=0, le=60,
        description="How long a send waits for a webhook's or a push endpoint's host name "
        "to resolve; past it the send fails for now and is retried.")

    @field_validator("allow")
    @classmethod
    def _entries(cls, allow: list[str]) -> list[str]:
        AllowList.parse(allow)  # ValueError naming the entry that is neither form
        return allow

    def policy(self) -> OutboundPolicy:
        """The rules with this allow-list and the system's resolver."""
        return OutboundPolicy(allow=AllowList.parse(self.allow),
                              resolve_timeout_s=self.resolve_timeout_s)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VITRINA_", env_nested_delimiter="__", extra="forbid", frozen=True,
        # Errors name the setting and the rule, never the value: it may be a secret.
        hide_input_in_errors=True,
    )

    database_url: str = Field(
        default="sqlite:///./vitrina.db",
        description="The database: `sqlite:///path` (embedded, one machine) or "
        "`postgresql://user:password@host/db` (production; several workers).")
    mqtt: MqttSettings = Field(default=MqttSettings(), description="How the worker "
                               "reaches the broker.")
    tenants: dict[str, TenantSettings] = Field(
        default_factory=dict,
        description="The shops served, under their ids: their pseudonymization keys and "
        "webhook secrets. A tenant that is not listed has no API and no presence.",
        json_schema_extra=keyed("tenant"))
    channels: dict[Channel, Any] = Field(
        default_factory=dict,
        description="Each delivery channel's settings under its name (see the channel "
        "sections below). A channel without settings is off: its messages wait in the send "
        "queue until it is configured or they expire; the orchestrator names the channels "
        "that are off at start-up.")
    webhook_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="The secrets the shops' backends sign webhooks with, for tenants that "
        "list none of their own (several while one is rotated).")
    api: ApiSettings = Field(default=ApiSettings(), description="The HTTP API.")
    console: ConsoleSettings = Field(default=ConsoleSettings(),
                                     description="Console sign-in.")
    gateways: GatewaySettings = Field(default=GatewaySettings(),
                                      description="Enrolling gateways.")
    ingest: IngestSettings = Field(default=IngestSettings(),
                                   description="Presence ingest batching.")
    analytics: AnalyticsSettings = Field(default=AnalyticsSettings(),
                                         description="Footfall roll-ups.")
    scenarios: ScenarioSettings = Field(default=ScenarioSettings(),
                                        description="The scenario engine.")
    delivery: DeliverySettings = Field(default=DeliverySettings(),
                                       description="The send queue's worker.")
    tracking: TrackingSettings = Field(default=TrackingSettings(),
                                       description="Tracked links and attribution.")
    outbound: OutboundSettings = Field(default=OutboundSettings(),
                                       description="Where outbound requests may go.")
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="JSON lines for log shippers in production; `text` for a person at a "
        "terminal.")
    operator_key_hash: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = Field(
        default=None,
        description="SHA-256 (hex) of the deployment's bootstrap operator key "
        "(`vitrina-cloud keys bootstrap` makes one): lets a fresh deployment issue its "
        "first tenant keys over the API. Only the hash is configured, so a leaked setting "
        "grants nothing.",
        json_schema_extra=unset("no operator key: tenant keys are issued with "
                                "`vitrina-cloud keys` on the command line."))

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, tenants: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        for tenant in tenants:
            if not SEGMENT_PATTERN.fullmatch(tenant):
                raise ValueError(
                    f"tenant id {tenant!r} must be 1-64 characters of a-z, 0-9, '-' and '_'"
                )
        return tenants

    @model_validator(mode="after")
    def _quiet_hours_of_known_tenants(self) -> Self:
        unknown = sorted(set(self.scenarios.tenant_quiet_hours) - set(self.tenants))
        if unknown:
            raise ValueError(
                f"scenarios.tenant_quiet_hours names tenants that are not configured: "
                f"{', '.join(unknown)} (list them under tenants)")
        return self

    @field_validator("operator_key_hash")
    @classmethod
    def _lowercase_hash(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @model_validator(mode="before")
    @classmethod
    def _moved_settings(cls, data: Any) -> Any:
        """Name the new place of a setting an earlier release read elsewhere (they would
        otherwise be refused as unknown, or not be read at all)."""
        if isinstance(data, dict):
            moved = [f"{old} is now {new}" for old, new in _moved(data)]
            if moved:
                raise ValueError("settings moved: " + "; ".join(moved))
        return data

    @field_validator("channels")
    @classmethod
    def _channel_settings(cls, channels: dict[str, Any]) -> dict[str, Any]:
        """Each channel's settings, read by its adapter's settings model."""
        read: dict[str, Any] = {}
        for name, value in channels.items():
            try:
                # A whole section in one environment variable is JSON.
                model = adapter_for(name).settings_model
                read[name] = (model.model_validate_json(value) if isinstance(value, str)
                              else model.model_validate(value))
            except ValidationError as error:
                raise ValueError(f"{name}: {describe_validation_error(error)}") from None
        return read

    @model_validator(mode="after")
    def _https_for_unsubscribe_links(self) -> Self:
        # Refused at start-up: otherwise every such message would wait in the queue,
        # retried for hours, until the setting is fixed or the messages give up.
        for name in self.channels:
            if adapter_for(name).needs_https_links and not is_https(
                self.tracking.public_base_url
            ):
                raise ValueError(needs_https(name))
        return self

    @model_validator(mode="after")
    def _postgres_driver(self) -> Self:
        # psycopg 3 is the one PostgreSQL driver installed; a bare postgresql:// URL
        # would make SQLAlchemy look for psycopg2.
        if self.database_url.startswith(("postgresql://", "postgres://")):
            rest = self.database_url.split("://", 1)[1]
            object.__setattr__(self, "database_url", f"postgresql+psycopg://{rest}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_VARIABLE} names {path}, which is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def channel_settings(self, adapter: ChannelAdapter[S, Any]) -> S | None:
        """`adapter`'s settings, or None when its channel is not configured."""
        found = self.channels.get(adapter.name)
        return found if isinstance(found, adapter.settings_model) else None

    def tenant(self, tenant: str) -> TenantSettings | None:
        return self.tenants.get(tenant)

    def webhook_secrets_for(self, tenant: str) -> list[str]:
        found = self.tenants.get(tenant)
        secrets = (found.webhook_secrets if found else []) or self.webhook_secrets
        return [secret.get_secret_value() for secret in secrets]


@functools.cache
def get_settings() -> Settings:
    """The process's settings, built on first use (at program start) and then reused."""
    legacy = sorted(name for name in os.environ if name.startswith("VITRINA_FCM__"))
    if legacy:
        raise ValueError(
            f"settings moved: {', '.join(legacy)} are now VITRINA_CHANNELS__PUSH__..."
        )
    return Settings()
