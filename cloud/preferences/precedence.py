"""Which quiet hours and which clock apply to a send: the one rule, stated once.

Quiet hours, the first level that sets any (a window, or "off"):
1. the store's own, when the journey is about a visit to that store (a presence or
   geofence entry point names it);
2. the tenant's own, set through the API or the console (`TenantPreferences`);
3. the tenant's in the deployment's settings (`scenarios.tenant_quiet_hours`);
4. everyone's (`scenarios.quiet_hours`).

The clock they are read on, the first zone known:
1. the customer's own (`time_zone` of their profile);
2. the store's, when the journey is about a visit to it;
3. the tenant's own (API, console);
4. the deployment's `scenarios.default_time_zone` (else UTC).

A zone this server's time zone database does not have is passed over like a missing one,
so a customer whose zone a newer database knows still gets the next best clock.

Birthdays use the same clock (no store: a birthday is about no visit). The engine reads
each tenant's and each store's own rules once per batch (`cloud.scenarios.lookups`), so
deciding a send costs no query.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from typing import Literal

from cloud.preferences.models import OFF, TenantPreferences
from cloud.settings import QuietHours, ScenarioSettings

#: A level's own quiet hours: a window, "off", or None (not set).
OwnQuietHours = QuietHours | Literal["off"] | None


class Source(StrEnum):
    """Where an applied value comes from (the console and the journey log name it)."""

    CUSTOMER = "customer"
    STORE = "store"
    TENANT = "tenant"
    #: The deployment's `scenarios.tenant_quiet_hours` for this tenant.
    DEPLOYMENT_TENANT = "deployment_tenant"
    #: The deployment's `scenarios.quiet_hours` or `scenarios.default_time_zone`.
    DEPLOYMENT = "deployment"


@dataclass(frozen=True, slots=True)
class OwnRules:
    """What one level (a store, a tenant) set of its own; None where it set nothing."""

    quiet_hours: OwnQuietHours = None
    time_zone: str | None = None


#: A level that set nothing.
NOTHING = OwnRules()


@dataclass(frozen=True, slots=True)
class QuietRules:
    """What applies to one send: its quiet hours (None: any hour) and the clock they
    are read on, each with where it came from."""

    quiet_hours: QuietHours | None
    quiet_hours_from: Source
    zone: zoneinfo.ZoneInfo
    zone_from: Source


def resolve(
    settings: ScenarioSettings, *, tenant: str, tenant_own: OwnRules | None = None,
    store: OwnRules | None = None, customer_zone: str | None = None,
) -> QuietRules:
    """The quiet hours and clock of a send to a customer of `tenant` (in the order of the
    module docstring): `store` only when the journey is about a visit to it,
    `tenant_own` what the tenant set through the API, `customer_zone` the customer's."""
    hours, hours_from = _quiet_hours(settings, tenant=tenant, tenant_own=tenant_own,
                                     store=store)
    zone, zone_from = _clock(settings, tenant_own=tenant_own, store=store,
                             customer_zone=customer_zone)
    return QuietRules(quiet_hours=hours, quiet_hours_from=hours_from, zone=zone,
                      zone_from=zone_from)


def _quiet_hours(
    settings: ScenarioSettings, *, tenant: str, tenant_own: OwnRules | None,
    store: OwnRules | None,
) -> tuple[QuietHours | None, Source]:
    for source, own in ((Source.STORE, store), (Source.TENANT, tenant_own)):
        if own is not None and own.quiet_hours is not None:
            return (None if own.quiet_hours == OFF else _window(own.quiet_hours)), source
    if tenant in settings.tenant_quiet_hours:
        return _window(settings.tenant_quiet_hours[tenant]), Source.DEPLOYMENT_TENANT
    return _window(settings.quiet_hours), Source.DEPLOYMENT


def _window(quiet: QuietHours | str | None) -> QuietHours | None:
    """A window that holds anything, or None (the deployment's TOML writes "none" as a
    window whose start is its end)."""
    if not isinstance(quiet, QuietHours) or quiet.start == quiet.end:
        return None
    return quiet


def _clock(
    settings: ScenarioSettings, *, tenant_own: OwnRules | None, store: OwnRules | None,
    customer_zone: str | None,
) -> tuple[zoneinfo.ZoneInfo, Source]:
    candidates = (
        (Source.CUSTOMER, customer_zone),
        (Source.STORE, store.time_zone if store is not None else None),
        (Source.TENANT, tenant_own.time_zone if tenant_own is not None else None),
        (Source.DEPLOYMENT, settings.default_time_zone),
    )
    for source, name in candidates:
        zone = _zone(name)
        if zone is not None:
            return zone, source
    return zoneinfo.ZoneInfo("UTC"), Source.DEPLOYMENT


def _zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)  # cached by zoneinfo: no file read after the first
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def own_rules(
    *, quiet_start: time | None, quiet_end: time | None, quiet_off: bool,
    time_zone: str | None,
) -> OwnRules:
    """A level's own rules from the columns it keeps them in (a store's, a tenant's)."""
    quiet: OwnQuietHours = None
    if quiet_off:
        quiet = OFF
    elif quiet_start is not None and quiet_end is not None:
        quiet = QuietHours(start=quiet_start, end=quiet_end)
    return OwnRules(quiet_hours=quiet, time_zone=time_zone)


def tenant_rules(row: TenantPreferences | None) -> OwnRules:
    """The tenant's own rules (NOTHING before it set any)."""
    if row is None:
        return NOTHING
    return own_rules(quiet_start=row.quiet_start, quiet_end=row.quiet_end,
                     quiet_off=row.quiet_off, time_zone=row.time_zone)
