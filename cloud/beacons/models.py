"""A store-beacon report as the app sends it, and what the API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from cloud.examples import CUSTOMER_ID, example

BeaconEvent = Literal["enter", "exit"]
#: What a report did to the customer's visit of the store (`cloud.presence.stays`).
VisitOutcome = Literal["opened", "joined", "ended", "none"]


class StoreBeaconReport(BaseModel):
    """The phone noticed the store's beacon region (enter) or lost it (exit).

    An enter carries what ranging read: the iBeacon's `major` and `minor`, or the
    Eddystone-EID `eid`, which rotate (`shared.beacon`) and are checked against the
    current and previous period. An exit may come without them (iOS reports a region
    exit without ranging); it then ends the visits the store beacon opened.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=example(
        {"event": "enter", "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0", "major": 4660,
         "minor": 43981, "rssi": -67, "proximity": "near", "at": "2026-12-07T10:14:00Z"},
    ))

    event: BeaconEvent
    uuid: UUID = Field(description="The proximity UUID of the region (the shop's).")
    major: int | None = Field(default=None, ge=0, le=0xFFFF,
                              description="The iBeacon major ranging read.")
    minor: int | None = Field(default=None, ge=0, le=0xFFFF,
                              description="The iBeacon minor ranging read.")
    eid: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$",
                            description="The Eddystone ephemeral id, 16 hex digits.")
    rssi: int | None = Field(default=None, ge=-127, le=20,
                             description="The RSSI ranging read (dBm).")
    proximity: Literal["immediate", "near", "far", "unknown"] | None = Field(
        default=None, description="iOS's proximity estimate, when ranging.")
    at: AwareDatetime | None = Field(
        default=None, description="When the phone noticed it (left out: now). Taken as "
                                  "now when later than the server's clock, and as half an "
                                  "hour ago when earlier than that (the id's periods).")

    @model_validator(mode="after")
    def _rotating_part(self) -> Self:
        if (self.major is None) != (self.minor is None):
            raise ValueError("major and minor come together")
        if self.major is not None and self.eid is not None:
            raise ValueError("an iBeacon's major/minor or an Eddystone eid, not both")
        if self.event == "enter" and self.major is None and self.eid is None:
            raise ValueError("an enter needs what ranging read: major and minor, or eid")
        return self

    @property
    def identified(self) -> bool:
        return self.major is not None or self.eid is not None


class StoreBeaconOutcome(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"customer_id": CUSTOMER_ID, "event": "enter", "stores": ["madrid-centro"],
         "visit": "opened", "trigger_ids": [7002], "at": "2026-12-07T10:14:00Z"},
    ))

    customer_id: str = Field(description="the customer's public id")
    event: BeaconEvent
    stores: list[str] = Field(description="the store(s) the report applied to")
    visit: VisitOutcome = Field(
        description="opened: this report began the visit (a presence.enter); joined: a "
                    "gateway (or an earlier report) had already opened it, no second enter; "
                    "ended: an exit of a visit the store beacon opened (a presence.exit); "
                    "none: nothing to end")
    trigger_ids: list[int] = Field(description="the scenario triggers recorded")
    at: datetime
