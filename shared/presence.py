"""Presence events: what a gateway reports when a device enters, dwells or leaves."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared._schema import (
    MAX_PACKET_BYTES,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    GatewayId,
    StoreId,
    TenantId,
    ZoneId,
    decode_message,
)
from shared.identifiers import IdentifierKind
from shared.pseudonym import PSEUDONYM_PATTERN
from shared.topics import TopicAddress

__all__ = [
    "MAX_BATCH_EVENTS",
    "MAX_PACKET_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "PresenceBatch",
    "PresenceEvent",
    "PseudonymScope",
    "Transition",
    "decode_presence_batch",
    "encode_presence_batch",
    "make_event_id",
]

#: One MQTT message carries at most this many events: enough to drain a busy
#: outbox quickly, few enough that a batch stays well under the payload limit.
MAX_BATCH_EVENTS = 500


class Transition(StrEnum):
    ENTER = "enter"
    DWELL = "dwell"
    EXIT = "exit"


class PseudonymScope(StrEnum):
    """STABLE can be linked to a consenting customer; DAILY changes every day and cannot."""

    STABLE = "stable"
    DAILY = "daily"


Pseudonym = Annotated[str, Field(pattern=PSEUDONYM_PATTERN.pattern)]
EventId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class PresenceEvent(BaseModel):
    """One transition of one device at one gateway. Never carries a raw identifier."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: EventId
    schema_version: str = SCHEMA_VERSION
    tenant: TenantId
    store: StoreId
    gateway: GatewayId
    pseudonym: Pseudonym
    key_id: str
    scope: PseudonymScope
    kind: IdentifierKind
    randomized: bool
    transition: Transition
    zone: ZoneId
    rssi: float = Field(ge=-127, le=20, description="smoothed RSSI in dBm")
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    dwell_s: float = Field(ge=0)
    sightings: int = Field(ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.pseudonym.startswith(f"{self.key_id}:"):
            raise ValueError("key_id does not match the pseudonym's key tag")
        if self.randomized and self.scope is not PseudonymScope.DAILY:
            raise ValueError("a randomized address may only carry a daily pseudonym")
        if self.last_seen < self.first_seen:
            raise ValueError("last_seen is before first_seen")
        return self


class PresenceBatch(BaseModel):
    """What one presence message carries: events of one gateway, oldest first."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = SCHEMA_VERSION
    tenant: TenantId
    store: StoreId
    gateway: GatewayId
    sent_at: AwareDatetime
    events: list[PresenceEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)

    @model_validator(mode="after")
    def _one_gateway(self) -> Self:
        for event in self.events:
            if (event.tenant, event.store, event.gateway) != (
                self.tenant,
                self.store,
                self.gateway,
            ):
                raise ValueError("every event must come from the batch's tenant/store/gateway")
        return self


def make_event_id(
    *,
    tenant: str,
    store: str,
    gateway: str,
    pseudonym: str,
    transition: Transition,
    first_seen: datetime,
    sequence: int,
) -> str:
    """Deterministic id: replaying the same capture yields the same ids, so redelivery
    and re-publication are harmless. `sequence` distinguishes the dwell events of a visit.
    """
    visit_start_ms = int(first_seen.timestamp() * 1000)
    material = (
        f"{tenant}/{store}/{gateway}|{pseudonym}|{transition.value}|{visit_start_ms}|{sequence}"
    )
    return hashlib.blake2b(material.encode(), digest_size=16).hexdigest()


def encode_presence_batch(batch: PresenceBatch) -> bytes:
    return batch.model_dump_json().encode()


def decode_presence_batch(
    payload: bytes | bytearray, *, topic: TopicAddress | None = None
) -> PresenceBatch:
    """Parse and validate a presence message; ContractError says what is wrong.

    With `topic`, the batch must also come from the gateway the topic names, so a
    gateway's credentials cannot be used to speak for another gateway.
    """
    batch = decode_message(payload, PresenceBatch, "presence batch")
    if topic is not None:
        topic.check_sender("presence batch", tenant=batch.tenant, store=batch.store,
                           gateway=batch.gateway)
    return batch
