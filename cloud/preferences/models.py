"""Quiet hours and time zones as a tenant or a store sets them: the API's bodies, the
tenant's table, and the columns a store keeps its own quiet hours in.

Quiet hours have three states at each level, and the API names each one explicitly:

- a window, `{"start": "22:00", "end": "08:00"}` (whole minutes, no offset: the clock is
  the customer's, `precedence.resolve`); a window may span midnight;
- `"off"`: none at this level, messages go out at any hour (the levels below are not
  consulted);
- `null` (or leaving the field out): this level sets nothing, the next one applies.

A window whose start equals its end is refused (422) rather than read as "off", as the
deployment's TOML reads it: over the API the two would look alike, and a form that left
both fields at their defaults must not silently switch quiet hours off.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time
from functools import cache
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    PlainSerializer,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic import Field as FieldInfo
from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime
from cloud.examples import example
from cloud.settings import QuietHours

#: What "no quiet hours here" is called in a body.
OFF: Final = "off"
#: Wall-clock times as the API writes them: 00:00 to 23:59.
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _clock(value: Any) -> time:
    """`HH:MM` (or a `time` from Python code) as a naive time of whole minutes."""
    if isinstance(value, time):
        if value.tzinfo is not None or value.second or value.microsecond:
            raise ValueError("must be a time of day in whole minutes, without an offset")
        return value
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":" or not (
        value[:2].isdigit() and value[3:].isdigit()
    ):
        raise ValueError("must be a time of day as HH:MM, e.g. 21:30")
    hours, minutes = int(value[:2]), int(value[3:])
    if hours > 23 or minutes > 59:
        raise ValueError("must be a time of day as HH:MM, between 00:00 and 23:59")
    return time(hours, minutes)


#: A time of day on the customer's clock: `HH:MM` in bodies, a naive `time` in Python.
ClockTime = Annotated[
    time,
    BeforeValidator(_clock),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": CLOCK_PATTERN, "examples": ["21:00"]}),
]


@cache
def known_time_zones() -> frozenset[str]:
    """The IANA zones this server's time zone database has."""
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _known_time_zone(value: str) -> str:
    if value not in known_time_zones():
        raise ValueError(f"{value!r} is not a known IANA time zone (e.g. Europe/Madrid)")
    return value


#: An IANA zone name this server knows ("Europe/Madrid").
TimeZoneName = Annotated[
    str, FieldInfo(min_length=1, max_length=64), AfterValidator(_known_time_zone),
]


class QuietWindow(QuietHours):
    """Quiet hours as the API takes them: a window of whole minutes whose start is not
    its end (the deployment's form, `QuietHours`, reads equal times as "off")."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=example(
        {"start": "21:00", "end": "09:00"},
    ))

    start: ClockTime = FieldInfo(description="When quiet hours begin (HH:MM, the customer's "
                                             "clock); messages decided from then are held.")
    end: ClockTime = FieldInfo(description="When they end (HH:MM): held messages go out "
                                           "from then; before `start` for a window over "
                                           "midnight.")

    @model_validator(mode="after")
    def _not_empty(self) -> QuietWindow:
        if self.start == self.end:
            raise ValueError(
                'start and end are the same: for no quiet hours at all send "off", to use '
                "the next level's send null")
        return self


def _choice_kind(value: Any) -> str | None:
    """Which form a quiet-hours value is in: "window", "off", or None (neither)."""
    if value == OFF:
        return OFF
    if isinstance(value, dict | QuietWindow):
        return "window"
    return None


#: A level's own quiet hours: a window, "off" (none: any hour), or None (not set: the next
#: level's apply). A problem with a window is located under `window` ("quiet_hours.window.
#: start"); a value of neither form is refused at the field.
QuietChoice = Annotated[
    Annotated[QuietWindow, Tag("window")] | Annotated[Literal["off"], Tag(OFF)],
    Discriminator(_choice_kind, custom_error_type="quiet_hours",
                  custom_error_message='must be a window {"start": "HH:MM", "end": "HH:MM"}, '
                  '"off" or null'),
] | None

_QUIET_HOURS_DESCRIPTION = (
    'A window {"start": "HH:MM", "end": "HH:MM"}; "off" for none (messages at any hour); '
    "null to leave it to the next level")


class TenantPreferences(SQLModel, table=True):
    """A tenant's own quiet hours and time zone; no row until the tenant sets either."""

    __tablename__ = "tenant_preferences"
    __table_args__ = (
        CheckConstraint(
            "(quiet_start IS NULL) = (quiet_end IS NULL) "
            "AND NOT (quiet_off AND quiet_start IS NOT NULL)",
            name="ck_tenant_preferences_quiet_hours",
        ),
    )

    tenant: str = Field(primary_key=True, max_length=64)
    #: Both set: the window; both None: none of the tenant's own (or `quiet_off`).
    quiet_start: time | None = None
    quiet_end: time | None = None
    #: "off": the tenant wants no quiet hours, whatever the deployment's.
    quiet_off: bool = False
    #: None: the deployment's `scenarios.default_time_zone`.
    time_zone: str | None = Field(default=None, max_length=64)
    #: 1 on the first save, +1 on each after.
    version: int
    updated_at: datetime = Field(sa_type=UtcDateTime)


def quiet_columns(choice: QuietChoice) -> dict[str, Any]:
    """The columns (`quiet_start`, `quiet_end`, `quiet_off`) that store `choice`."""
    if choice is None:
        return {"quiet_start": None, "quiet_end": None, "quiet_off": False}
    if choice == OFF:
        return {"quiet_start": None, "quiet_end": None, "quiet_off": True}
    assert isinstance(choice, QuietWindow)
    return {"quiet_start": choice.start, "quiet_end": choice.end, "quiet_off": False}


def quiet_choice(start: time | None, end: time | None, off: bool) -> QuietChoice:
    """What the columns hold, as the API shows it."""
    if off:
        return OFF
    if start is None or end is None:
        return None
    return QuietWindow(start=start, end=end)


class TenantPreferencesUpdate(SQLModel):
    """The tenant's quiet hours and time zone, replaced whole (a field left out is not
    set: the deployment's value applies)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"quiet_hours": {"start": "21:30", "end": "09:00"}, "time_zone": "Europe/Madrid"},
        {"quiet_hours": "off", "time_zone": None},
    ))

    quiet_hours: QuietChoice = Field(default=None, description=_QUIET_HOURS_DESCRIPTION +
                                     " (the deployment's).")
    time_zone: TimeZoneName | None = Field(
        default=None, description="The clock for customers who gave no time zone, outside a "
        "store's journeys (IANA, e.g. Europe/Madrid); null for the deployment's "
        "`scenarios.default_time_zone`.")


class QuietRulesPublic(SQLModel):
    """What applies to the tenant's customers who gave no time zone, outside a store's
    journeys (a store's own quiet hours and a customer's own zone come first)."""

    quiet_hours: QuietWindow | None = Field(description="null: no quiet hours")
    quiet_hours_from: str = Field(description="tenant, deployment_tenant (the deployment's "
                                  "scenarios.tenant_quiet_hours) or deployment")
    time_zone: str
    time_zone_from: str = Field(description="tenant or deployment")


class TenantPreferencesPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"quiet_hours": {"start": "21:30", "end": "09:00"}, "time_zone": "Europe/Madrid",
         "version": 3, "updated_at": "2026-12-07T08:30:00Z",
         "applies": {"quiet_hours": {"start": "21:30", "end": "09:00"},
                     "quiet_hours_from": "tenant", "time_zone": "Europe/Madrid",
                     "time_zone_from": "tenant"},
         "deployment": {"quiet_hours": {"start": "21:00", "end": "09:00"},
                        "quiet_hours_from": "deployment", "time_zone": "UTC",
                        "time_zone_from": "deployment"}},
    ))

    quiet_hours: QuietChoice = Field(description=_QUIET_HOURS_DESCRIPTION + " (none set).")
    time_zone: str | None = Field(description="null: none set (the deployment's applies)")
    version: int = Field(description="0 until the first save, then +1 with each")
    updated_at: datetime | None
    applies: QuietRulesPublic = Field(description="what applies, with the tenant's own")
    deployment: QuietRulesPublic = Field(
        description="what would apply without them (both null): the deployment's settings")
