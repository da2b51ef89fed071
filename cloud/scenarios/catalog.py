"""Saving scenarios, and the in-memory catalog of active ones indexed by what they react to.

Workers keep a `Catalog` per process and refresh it when a tenant's scenarios or segments
change (one cheap query per batch compares a fingerprint), so matching a trigger against
a hundred scenarios touches only those whose entry, exit or wait names the trigger's
kind, and a `segment` condition reads the segment's definition from memory: a segment
saved now decides every scenario using it from the next batch on, with no query per
customer.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ScalarSelect, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from cloud.scenarios.conditions import ALL_FACTS, NO_SEGMENTS, FactKind, SegmentBook
from cloud.scenarios.models import OPEN_STATUSES, Journey, JourneyStatus, Scenario
from cloud.scenarios.segments import build_book
from cloud.scenarios.spec import ScenarioSpec, WaitForEventStep
from cloud.segments.crud import list_segments
from cloud.segments.models import Segment
from cloud.triggers import TriggerKind


def save_scenario(
    session: Session, *, tenant: str, spec: ScenarioSpec, now: datetime
) -> Scenario:
    """Create or replace (a new version of) a scenario, active. Running journeys carry on
    with the new version from the step they are at (a step that no longer exists ends them)."""
    existing = get_scenario(session, tenant=tenant, key=spec.key)
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    if existing is None:
        scenario = Scenario(
            tenant=tenant, key=spec.key, version=1, active=True, spec=data,
            created_at=now, updated_at=now,
        )
    else:
        scenario = existing
        scenario.version += 1
        scenario.spec, scenario.active, scenario.updated_at = data, True, now
    session.add(scenario)
    session.flush()
    return scenario


def get_scenario(session: Session, *, tenant: str, key: str) -> Scenario | None:
    return session.exec(
        select(Scenario).where(Scenario.tenant == tenant, Scenario.key == key)
    ).first()


def list_scenarios(session: Session, *, tenant: str) -> Sequence[Scenario]:
    return session.exec(
        select(Scenario).where(Scenario.tenant == tenant).order_by(col(Scenario.key))
    ).all()


def deactivate_scenario(session: Session, *, scenario: Scenario, now: datetime) -> int:
    """Switch a scenario off: no new journeys, and the open ones end. Returns how many ended."""
    scenario.active, scenario.version, scenario.updated_at = False, scenario.version + 1, now
    session.add(scenario)
    ended = session.connection().execute(
        update(Journey)
        .where(
            col(Journey.tenant) == scenario.tenant,
            col(Journey.scenario_key) == scenario.key,
            col(Journey.status).in_(OPEN_STATUSES),
        )
        .values(
            status=JourneyStatus.EXITED.value, reason="scenario_deactivated",
            finished_at=now, updated_at=now, wake_at=None, waiting_for=None,
        )
    ).rowcount
    session.flush()
    return int(ended)


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    key: str
    version: int
    spec: ScenarioSpec
    #: The tenant's segments as loaded with the scenario: what its `segment` conditions
    #: and its offers restricted to a segment are decided by.
    segments: SegmentBook = field(default_factory=lambda: NO_SEGMENTS)


#: What a tenant's catalog was built from: its scenarios' (count, sum of versions) and
#: its segments'.
Fingerprint = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class TenantCatalog:
    fingerprint: Fingerprint
    scenarios: Mapping[str, LoadedScenario]
    by_entry: Mapping[TriggerKind, tuple[LoadedScenario, ...]]
    #: Kinds some scenario exits on or waits for: only these need open journeys looked up.
    resuming_kinds: frozenset[TriggerKind]
    #: The parts of customer facts some scenario reads: only these are loaded.
    facts: frozenset[FactKind] = ALL_FACTS
    segments: SegmentBook = field(default_factory=lambda: NO_SEGMENTS)


def build_tenant_catalog(
    scenarios: Sequence[Scenario], fingerprint: Fingerprint,
    segments: SegmentBook = NO_SEGMENTS,
) -> TenantCatalog:
    loaded: dict[str, LoadedScenario] = {}
    by_entry: dict[TriggerKind, list[LoadedScenario]] = defaultdict(list)
    resuming: set[TriggerKind] = set()
    facts: set[FactKind] = set()
    for row in scenarios:
        spec = ScenarioSpec.model_validate(row.spec)
        item = LoadedScenario(key=row.key, version=row.version, spec=spec, segments=segments)
        loaded[row.key] = item
        facts |= spec.facts_read(segments)
        if spec.has_offers():
            # Any offer may be restricted to any segment: what they read is loaded too.
            facts.update(*(segment.facts for segment in segments.values()))
        if row.active:
            by_entry[spec.entry.event].append(item)
        resuming.update(spec.exit_on)
        resuming.update(step.event for step in spec.steps if isinstance(step, WaitForEventStep))
    return TenantCatalog(
        fingerprint=fingerprint, scenarios=loaded,
        by_entry={kind: tuple(items) for kind, items in by_entry.items()},
        resuming_kinds=frozenset(resuming), facts=frozenset(facts), segments=segments,
    )


@dataclass
class Catalog:
    """Every tenant's scenarios, reloaded when they change. Safe to share between threads."""

    _tenants: dict[str, TenantCatalog] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tenant(self, session: Session, tenant: str) -> TenantCatalog:
        fingerprint = _fingerprint(session, tenant)
        with self._lock:
            current = self._tenants.get(tenant)
        if current is not None and current.fingerprint == fingerprint:
            return current
        rows = session.exec(select(Scenario).where(Scenario.tenant == tenant)).all()
        book = build_book(list_segments(session, tenant=tenant))
        fresh = build_tenant_catalog(rows, fingerprint, book)
        with self._lock:
            self._tenants[tenant] = fresh
        return fresh

    def all_tenants(self, session: Session) -> list[str]:
        return list(session.exec(select(Scenario.tenant).distinct()).all())


def _fingerprint(session: Session, tenant: str) -> Fingerprint:
    """(number of scenarios, sum of their versions) and the same of segments: every save,
    switch-off or archiving makes one of them grow."""
    def of(table: type[Scenario] | type[Segment]) -> list[ScalarSelect[int]]:
        mine = table.tenant == tenant
        return [select(func.count()).where(mine).scalar_subquery(),
                select(func.coalesce(func.sum(table.version), 0)).where(mine).scalar_subquery()]

    found = session.connection().execute(sa_select(*of(Scenario), *of(Segment))).one()
    return int(found[0]), int(found[1]), int(found[2]), int(found[3])
