"""Occupancy reports: how many people a gateway estimates in each zone, minute by minute.

An aggregate, never an identifier: a report carries counts only (people, the addresses and
frames heard, the scans they were grouped into). How the gateway groups a phone's
randomized addresses stays on the gateway, inside a window of minutes; no address,
fingerprint or group id is ever part of this message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared._schema import SCHEMA_VERSION, GatewayId, StoreId, TenantId, ZoneId, decode_message
from shared.topics import TopicAddress

__all__ = [
    "MAX_PEOPLE",
    "MAX_ZONES",
    "OCCUPANCY_WINDOW_S",
    "OccupancyMethod",
    "OccupancyReport",
    "ZoneOccupancy",
    "decode_occupancy_report",
    "encode_occupancy_report",
]

#: Every report covers one minute: fine enough for a chart of a day, coarse enough that
#: a single phone's probes (one scan every 20 s to 4 min) say something about it.
OCCUPANCY_WINDOW_S = 60
#: A gateway's zones are a handful; the bound keeps one report small whatever it claims.
MAX_ZONES = 64
#: No gateway's radio range holds more people than this; a larger figure is a defect.
MAX_PEOPLE = 100_000.0
#: Counts above this in one minute are a defect, not a crowd.
MAX_COUNT = 10_000_000


class OccupancyMethod(StrEnum):
    """How the figure was estimated, so figures of different methods are never mixed up."""

    #: Wi-Fi probe scans per fingerprint class and zone, divided by a calibrated per-phone
    #: scan rate, counted only while the class is present (`edge.occupancy`).
    PROBE_RATE = "probe-rate"


class ZoneOccupancy(BaseModel):
    """One zone's minute."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    zone: ZoneId
    #: Estimated people, averaged over the minute (hence a fraction). The bounds also
    #: refuse NaN and infinities.
    people: float = Field(ge=0, le=MAX_PEOPLE)
    #: Distinct transmitter addresses heard: what counting MAC addresses would report.
    addresses: int = Field(default=0, ge=0, le=MAX_COUNT)
    #: Probe frames heard.
    frames: int = Field(default=0, ge=0, le=MAX_COUNT)
    #: Scans (a phone's burst of probes, its addresses grouped on the gateway) that began.
    scans: int = Field(default=0, ge=0, le=MAX_COUNT)


class OccupancyReport(BaseModel):
    """What one occupancy message carries: one gateway's estimates for one minute.

    A report with no zones says the gateway was running and heard nobody, which is not
    the same as no report (the gateway was off).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = SCHEMA_VERSION
    tenant: TenantId
    store: StoreId
    gateway: GatewayId
    sent_at: AwareDatetime
    #: The start of the minute (UTC, whole seconds of a whole minute).
    window_start: AwareDatetime
    window_s: int = Field(default=OCCUPANCY_WINDOW_S, ge=OCCUPANCY_WINDOW_S, le=3600)
    method: OccupancyMethod = OccupancyMethod.PROBE_RATE
    zones: list[ZoneOccupancy] = Field(default_factory=list, max_length=MAX_ZONES)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        start = self.window_start
        if start.second or start.microsecond or start.utcoffset() is None:
            raise ValueError("window_start must be a whole minute")
        if self.window_s % OCCUPANCY_WINDOW_S:
            raise ValueError(f"window_s must be a multiple of {OCCUPANCY_WINDOW_S}")
        names = [zone.zone for zone in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique")
        return self


def encode_occupancy_report(report: OccupancyReport) -> bytes:
    return report.model_dump_json().encode()


def decode_occupancy_report(
    payload: bytes | bytearray, *, topic: TopicAddress | None = None
) -> OccupancyReport:
    """Parse and validate an occupancy message; ContractError says what is wrong.

    With `topic`, the report must come from the gateway the topic names.
    """
    report = decode_message(payload, OccupancyReport, "occupancy report")
    if topic is not None:
        topic.check_sender("occupancy report", tenant=report.tenant, store=report.store,
                           gateway=report.gateway)
    return report
