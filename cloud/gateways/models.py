"""Registered gateways as a table and as API bodies.

- `gateway_registry`: a gateway an admin created for a store, its one live enrolment
  code (hashed, with its expiry; gone once used), when it enrolled or was revoked, and
  the config the cloud keeps for it: the desired document and its version, and when that
  version reached the broker; the worker's bookkeeping for delivering it (attempts,
  when it may try next or until when its lease holds, why the broker last refused it:
  `cloud.delivery.gateway_configs`). What the gateway reports back (the version in force, a
  refusal) arrives with its heartbeat and is kept with its health (`cloud.presence`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as FieldInfo
from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime
from cloud.examples import example
from shared.status import GatewayConfig
from shared.topics import SEGMENT_PATTERN

GatewayId = Annotated[str, StringConstraints(pattern=SEGMENT_PATTERN.pattern)]


class GatewayState(StrEnum):
    #: Created; its code waits to be used on the device.
    PENDING = "pending"
    ENROLLED = "enrolled"
    REVOKED = "revoked"


class RegisteredGateway(SQLModel, table=True):
    __tablename__ = "gateway_registry"
    __table_args__ = (
        UniqueConstraint("tenant", "store", "gateway", name="uq_gateway_registry_identity"),
        Index("ix_gateway_registry_code_hash", "code_hash", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    store: str = Field(max_length=64)
    gateway: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    code_hash: str | None = Field(default=None, max_length=64)
    code_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    enrolled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: The desired config (`shared.status.GatewayConfig` as JSON), None until one is saved.
    config: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    #: Grows by one with every saved config; 0 before the first.
    config_version: int = 0
    config_saved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: When the broker took the current version (retained); None: not yet delivered.
    config_published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: Tries to put the current version on the broker (the save's own included); 0 again
    #: with every new version. Drives the back-off.
    config_attempts: int = 0
    #: When the worker may next publish the current version: a retry after a failure, a
    #: re-publish if the gateway still reports an older one, or the end of a worker's
    #: lease while it publishes. None: nothing to deliver (no config, or revoked).
    config_next_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime,
                                                    index=True)
    #: Why the broker did not take the current version at the last try (None once it did).
    config_publish_error: str | None = Field(default=None, max_length=500)
    #: The X25519 public key the gateway sent at enrolment (base64url): tenant keys are
    #: sealed to it (`shared.sealing`). None: enrolled before that, it cannot receive keys
    #: remotely until it is enrolled again.
    seal_public_key: str | None = Field(default=None, max_length=64)

    @property
    def receives_keys(self) -> bool:
        return self.seal_public_key is not None

    @property
    def state(self) -> GatewayState:
        if self.revoked_at is not None:
            return GatewayState.REVOKED
        return GatewayState.ENROLLED if self.enrolled_at is not None else GatewayState.PENDING


class RegisteredGatewayCreate(BaseModel):
    """What an admin sends to add a gateway to a store (the store is in the path)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=example(
        {"gateway": "gw-entrance"},
    ))

    gateway: GatewayId


class GatewayConfigUpdate(GatewayConfig):
    """The config an admin saves for a gateway: the model the gateway validates, strict
    about unknown fields (a typo must not be dropped silently); `version` is the cloud's
    to set."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=example(
        {"rssi_floor": -85, "enter_sightings": 2, "dwell_interval_s": 60, "exit_after_s": 120,
         "zones": [{"zone": "checkout", "min_rssi": -70}]},
    ))


class AppliedConfig(BaseModel):
    """What the gateway's latest heartbeat says about the cloud's config."""

    model_config = ConfigDict(frozen=True)

    #: The version in force (None: the gateway runs on its own file alone).
    version: int | None
    refused_version: int | None = None
    refused_reason: str | None = None
    reported_at: datetime | None = None


class GatewayConfigPublic(BaseModel):
    """Desired against applied: the console shows both until they agree."""

    model_config = ConfigDict(frozen=True, json_schema_extra=example(
        {"store": "madrid-centro", "gateway": "gw-entrance", "desired_version": 4,
         "desired": {"rssi_floor": -85, "exit_after_s": 120}, "saved_at": "2026-12-07T08:00:00Z",
         "published_at": "2026-12-07T08:00:01Z", "publish_error": None, "next_publish_at": None,
         "delivery": "published",
         "applied": {"version": 4, "refused_version": None, "refused_reason": None,
                     "reported_at": "2026-12-07T08:00:05Z"}},
    ))

    store: str
    gateway: str
    desired_version: int
    desired: dict[str, Any] | None
    saved_at: datetime | None
    published_at: datetime | None
    #: Why the broker did not take the saved version yet; the worker keeps trying.
    publish_error: str | None = None
    #: When the worker tries again (unpublished versions only).
    next_publish_at: datetime | None = None
    #: One sentence on where the saved version is: on the broker, or saved and to be sent.
    delivery: str = ""
    applied: AppliedConfig | None


class RegisteredGatewayPublic(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=example(
        {"store": "madrid-centro", "gateway": "gw-entrance", "state": "enrolled",
         "created_at": "2026-12-01T09:00:00Z", "code_expires_at": None,
         "enrolled_at": "2026-12-01T09:12:00Z", "revoked_at": None, "config_version": 4,
         "applied_config_version": 4, "receives_keys": True, "key_delivery": "sealed"},
    ))

    store: str
    gateway: str
    state: GatewayState
    created_at: datetime
    code_expires_at: datetime | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    config_version: int
    applied_config_version: int | None = None
    #: Whether tenant keys can be delivered to it sealed (it sent a sealing key when it
    #: enrolled), and what to do if not.
    receives_keys: bool = False
    key_delivery: str = ""


class EnrolmentCodePublic(BaseModel):
    """A new code: shown once, never stored in the clear."""

    model_config = ConfigDict(frozen=True, json_schema_extra=example(
        {"gateway": {"store": "madrid-centro", "gateway": "gw-entrance", "state": "pending",
                     "created_at": "2026-12-01T09:00:00Z",
                     "code_expires_at": "2026-12-02T09:00:00Z", "enrolled_at": None,
                     "revoked_at": None, "config_version": 0},
         "code": "K7QX-M2PD-9TRW", "expires_at": "2026-12-02T09:00:00Z",
         "command": "curl -fsSL https://vitrina.acme.example/install/gateway.sh"
                    " | sudo sh -s -- K7QX-M2PD-9TRW"},
    ))

    gateway: RegisteredGatewayPublic
    code: str
    expires_at: datetime
    #: The command to run on the device, ready to paste.
    command: str


class EnrolmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=example(
        {"code": "K7QX-M2PD-9TRW", "directory": "/etc/vitrina"},
    ))

    code: str = FieldInfo(max_length=32)
    #: Where the device keeps its bundle (the config names its CA file there).
    directory: str = FieldInfo(default="/etc/vitrina", max_length=255,
                               pattern=r"^/[^\x00-\x1f\"\\]*$")
    #: When given, the code must be one of this tenant's.
    tenant: str | None = FieldInfo(default=None, max_length=64)
    #: The gateway's X25519 public key (32 bytes, base64url): later tenant keys reach it
    #: sealed to this key. Older agents send none, and cannot receive keys remotely.
    seal_public_key: str | None = FieldInfo(default=None, pattern=r"^[A-Za-z0-9_-]{43}$")


class EnrolmentBundle(BaseModel):
    """The gateway's identity: its files, as `vitrina-provision enrol-gateway` writes them."""

    model_config = ConfigDict(frozen=True, json_schema_extra=example(
        {"tenant": "acme", "store": "madrid-centro", "gateway": "gw-entrance",
         "files": {"gateway.toml": "[mqtt]\nhost = \"broker.acme.example\"\n"}},
    ))

    tenant: str
    store: str
    gateway: str
    #: File name in the bundle directory -> its text (`edge.toml`, `ca.crt`).
    files: dict[str, str]
