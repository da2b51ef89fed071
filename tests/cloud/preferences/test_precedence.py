"""The one rule for quiet hours and the clock (`cloud.preferences.precedence.resolve`):
each level in its place, "off" as a decision of its own, zones this server does not know
passed over, and a DST night read on a store's clock."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time

import pytest

from cloud.preferences.precedence import NOTHING, OwnRules, Source, resolve
from cloud.scenarios.sending import hold_until
from cloud.settings import QuietHours, ScenarioSettings


def hours(start: int, end: int) -> QuietHours:
    return QuietHours(start=time(start), end=time(end))


EVERYONE = hours(21, 9)
DEPLOYED_FOR_ACME = hours(23, 8)
TENANT = hours(22, 7)
STORE = hours(20, 10)
#: Everyone 21-09; acme 23-08 in the deployment's settings; beta nothing of its own there.
SETTINGS = ScenarioSettings(quiet_hours=EVERYONE, tenant_quiet_hours={"acme": DEPLOYED_FOR_ACME,
                                                                      "gamma": None},
                            default_time_zone="Europe/Madrid")


@pytest.mark.parametrize(("tenant", "store", "tenant_own", "expected", "source"), [
    # Nothing set through the API: the deployment's, the tenant's there first.
    ("beta", None, None, EVERYONE, Source.DEPLOYMENT),
    ("beta", NOTHING, NOTHING, EVERYONE, Source.DEPLOYMENT),
    ("acme", None, NOTHING, DEPLOYED_FOR_ACME, Source.DEPLOYMENT_TENANT),
    ("gamma", None, None, None, Source.DEPLOYMENT_TENANT),  # off in the deployment's
    # The tenant's own (API) wins over both of the deployment's...
    ("acme", None, OwnRules(quiet_hours=TENANT), TENANT, Source.TENANT),
    ("beta", None, OwnRules(quiet_hours=TENANT), TENANT, Source.TENANT),
    ("gamma", None, OwnRules(quiet_hours=TENANT), TENANT, Source.TENANT),
    # ... and "off" is its decision too, not "nothing set".
    ("acme", None, OwnRules(quiet_hours="off"), None, Source.TENANT),
    # A time zone alone sets no quiet hours.
    ("acme", None, OwnRules(time_zone="Europe/Lisbon"), DEPLOYED_FOR_ACME,
     Source.DEPLOYMENT_TENANT),
    # The store's own, for its visits, wins over everything.
    ("acme", OwnRules(quiet_hours=STORE), OwnRules(quiet_hours=TENANT), STORE, Source.STORE),
    ("beta", OwnRules(quiet_hours=STORE), None, STORE, Source.STORE),
    ("acme", OwnRules(quiet_hours="off"), OwnRules(quiet_hours=TENANT), None, Source.STORE),
    # A store that set none of its own leaves it to the tenant.
    ("acme", OwnRules(time_zone="Atlantic/Canary"), OwnRules(quiet_hours="off"), None,
     Source.TENANT),
    ("acme", OwnRules(time_zone="Atlantic/Canary"), NOTHING, DEPLOYED_FOR_ACME,
     Source.DEPLOYMENT_TENANT),
])
def test_quiet_hours_come_from_the_first_level_that_sets_any(
    tenant: str, store: OwnRules | None, tenant_own: OwnRules | None,
    expected: QuietHours | None, source: Source,
) -> None:
    rules = resolve(SETTINGS, tenant=tenant, store=store, tenant_own=tenant_own)
    assert (rules.quiet_hours, rules.quiet_hours_from) == (expected, source)


def test_deployment_windows_whose_start_is_their_end_are_none() -> None:
    empty = ScenarioSettings(quiet_hours=hours(9, 9), tenant_quiet_hours={"acme": hours(8, 8)})
    assert resolve(empty, tenant="beta").quiet_hours is None
    assert resolve(empty, tenant="acme").quiet_hours is None
    assert resolve(ScenarioSettings(quiet_hours=None), tenant="beta").quiet_hours is None


@pytest.mark.parametrize(("customer", "store", "tenant_own", "zone", "source"), [
    ("America/Mexico_City", "Atlantic/Canary", "Europe/Lisbon", "America/Mexico_City",
     Source.CUSTOMER),
    (None, "Atlantic/Canary", "Europe/Lisbon", "Atlantic/Canary", Source.STORE),
    (None, None, "Europe/Lisbon", "Europe/Lisbon", Source.TENANT),
    (None, None, None, "Europe/Madrid", Source.DEPLOYMENT),
    # A zone this server's database lacks counts as none: the next level's clock.
    ("Atlantis/Poseidonia", "Atlantic/Canary", None, "Atlantic/Canary", Source.STORE),
    ("Atlantis/Poseidonia", None, "../etc/passwd", "Europe/Madrid", Source.DEPLOYMENT),
])
def test_the_clock_is_the_first_zone_known(
    customer: str | None, store: str | None, tenant_own: str | None, zone: str,
    source: Source,
) -> None:
    rules = resolve(SETTINGS, tenant="acme", customer_zone=customer,
                    store=OwnRules(time_zone=store) if store else None,
                    tenant_own=OwnRules(time_zone=tenant_own))
    assert (rules.zone.key, rules.zone_from) == (zone, source)


def test_an_unknown_default_zone_falls_back_to_utc() -> None:
    settings = ScenarioSettings(default_time_zone="Nowhere/Land")
    rules = resolve(settings, tenant="acme")
    assert (rules.zone.key, rules.zone_from) == ("UTC", Source.DEPLOYMENT)


def test_a_store_visit_on_the_night_clocks_go_forward_is_held_on_the_store_clock() -> None:
    """New York springs forward at 02:00 on 8 March 2026 (EST, UTC-5 -> EDT, UTC-4). A
    customer without a zone of their own visits the store at 23:30 the evening before;
    the store's own hours end at 08:00 on its clock: that is 12:00 UTC, not 13:00 (the
    offset of the evening), and not the tenant's 07:00 in Lisbon."""
    visit = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)  # 23:30 EST, 7 March
    rules = resolve(SETTINGS, tenant="acme",
                    store=OwnRules(quiet_hours=hours(22, 8), time_zone="America/New_York"),
                    tenant_own=OwnRules(quiet_hours=TENANT, time_zone="Europe/Lisbon"))
    opens = hold_until(visit, zone=rules.zone, quiet=rules.quiet_hours)
    assert opens == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert opens.astimezone(zoneinfo.ZoneInfo("America/New_York")).hour == 8
    # The same visit, from a customer whose own clock is Madrid's: 05:30 there, inside the
    # store's hours; they end at 08:00 in Madrid.
    own = resolve(SETTINGS, tenant="acme", customer_zone="Europe/Madrid",
                  store=OwnRules(quiet_hours=hours(22, 8), time_zone="America/New_York"))
    assert hold_until(visit, zone=own.zone, quiet=own.quiet_hours) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC)
