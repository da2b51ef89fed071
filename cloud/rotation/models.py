"""Where each of a tenant's pseudonymization keys stands in its rotation, and how the API
shows it.

The secrets stay in the settings (`TenantSettings.keys`); the database holds only each
key id's state, so that every process (API, workers, commands) agrees on which key is
active and which are retired whatever order its settings list them in:

    (in the settings) --seen--> listed --activate--> active --(another activated)--> listed
                                listed --retire--> retired (final: the id is never used again)

The first key a tenant's settings list becomes active when the tenant is first seen; a
key added later is listed until an admin activates it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime
from cloud.examples import example


class KeyState(StrEnum):
    #: Linked and delivered to the gateways, not pseudonymizing (new, or the one before).
    LISTED = "listed"
    #: The one the tenant's gateways pseudonymize with.
    ACTIVE = "active"
    #: Gone: no longer linked, delivered or held; its links are deleted.
    RETIRED = "retired"


class TenantKeyState(SQLModel, table=True):
    __tablename__ = "tenant_key"

    tenant: str = Field(max_length=64, primary_key=True)
    key_id: str = Field(max_length=16, primary_key=True)
    state: str = Field(max_length=16)
    #: When a process first saw it in the tenant's settings.
    listed_at: datetime = Field(sa_type=UtcDateTime)
    activated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: Identity links deleted when it was retired.
    links_deleted: int | None = None


class ActivationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=example(
        {"force": False},
    ))

    #: Go ahead although some live gateway has not reported holding the key (or, to
    #: retire, still uses it): those gateways' events stop linking until they catch up.
    force: bool = False


class GatewayKeysPublic(BaseModel):
    """What one gateway of the tenant says about its keys."""

    model_config = ConfigDict(frozen=True)

    store: str
    gateway: str
    #: Heartbeating now (online, a report within the last few minutes).
    live: bool
    #: Registered here with a sealing key: the cloud can deliver keys to it.
    receives_keys: bool
    active_key_id: str | None
    #: None: the gateway's software does not report the keys it holds.
    key_ids: list[str] | None
    #: What stands in the way of the rotation here, if anything.
    note: str = ""


class TenantKeyPublic(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_id: str
    state: KeyState
    #: The secret is in this process's settings (only then can it be linked or delivered).
    configured: bool
    listed_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    links_deleted: int | None
    #: Live gateways that report holding it, of all live gateways.
    live_gateways_holding: int


class KeyRotationPublic(BaseModel):
    """The tenant's keys and its gateways, as a rotation needs to see them."""

    model_config = ConfigDict(frozen=True, json_schema_extra=example(
        {"tenant": "acme", "active_key_id": "k2",
         "keys": [{"key_id": "k1", "state": "retired", "configured": True,
                   "listed_at": "2026-01-10T09:00:00Z", "activated_at": "2026-01-10T09:00:00Z",
                   "retired_at": "2026-12-07T09:00:00Z", "links_deleted": 1204,
                   "live_gateways_holding": 0},
                  {"key_id": "k2", "state": "active", "configured": True,
                   "listed_at": "2026-11-30T09:00:00Z", "activated_at": "2026-12-01T09:00:00Z",
                   "retired_at": None, "links_deleted": None, "live_gateways_holding": 1}],
         "live_gateways": 1,
         "gateways": [{"store": "madrid-centro", "gateway": "gw-entrance", "live": True,
                       "receives_keys": True, "active_key_id": "k2", "key_ids": ["k2"]}]},
    ))

    tenant: str
    active_key_id: str
    keys: list[TenantKeyPublic]
    live_gateways: int
    gateways: list[GatewayKeysPublic]
    #: What happened, for the answers of activate and retire.
    outcome: str = ""
