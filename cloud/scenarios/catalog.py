"""Saving scenarios, and the in-memory catalog of active ones indexed by what they react to.

Workers keep a `Catalog` per process and refresh it when a tenant's scenarios change (one
cheap query per batch compares a fingerprint), so matching a trigger against a hundred
scenarios touches only those whose entry, exit or wait names the trigger's kind.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from cloud.scenarios.conditions import ALL_FACTS, FactKind
from cloud.scenarios.models import OPEN_STATUSES, Journey, JourneyStatus, Scenario
from cloud.scenarios.spec import ScenarioSpec, WaitForEventStep
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


@dataclass(frozen=True, slots=True)
class TenantCatalog:
    fingerprint: tuple[int, int]
    scenarios: Mapping[str, LoadedScenario]
    by_entry: Mapping[TriggerKind, tuple[LoadedScenario, ...]]
    #: Kinds some scenario exits on or waits for: only these need open journeys looked up.
    resuming_kinds: frozenset[TriggerKind]
    #: The parts of customer facts some scenario reads: only these are loaded.
    facts: frozenset[FactKind] = ALL_FACTS


def build_tenant_catalog(scenarios: Sequence[Scenario], fingerprint: tuple[int, int]
                         ) -> TenantCatalog:
    loaded: dict[str, LoadedScenario] = {}
    by_entry: dict[TriggerKind, list[LoadedScenario]] = defaultdict(list)
    resuming: set[TriggerKind] = set()
    facts: set[FactKind] = set()
    for row in scenarios:
        spec = ScenarioSpec.model_validate(row.spec)
        item = LoadedScenario(key=row.key, version=row.version, spec=spec)
        loaded[row.key] = item
        facts |= spec.facts_read()
        if row.active:
            by_entry[spec.entry.event].append(item)
        resuming.update(spec.exit_on)
        resuming.update(step.event for step in spec.steps if isinstance(step, WaitForEventStep))
    return TenantCatalog(
        fingerprint=fingerprint, scenarios=loaded,
        by_entry={kind: tuple(items) for kind, items in by_entry.items()},
        resuming_kinds=frozenset(resuming), facts=frozenset(facts),
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
        fresh = build_tenant_catalog(rows, fingerprint)
        with self._lock:
            self._tenants[tenant] = fresh
        return fresh

    def all_tenants(self, session: Session) -> list[str]:
        return list(session.exec(select(Scenario.tenant).distinct()).all())


def _fingerprint(session: Session, tenant: str) -> tuple[int, int]:
    """(number of scenarios, sum of their versions): every save or switch-off changes it."""
    count, versions = session.exec(
        select(func.count(), func.coalesce(func.sum(Scenario.version), 0))
        .where(Scenario.tenant == tenant)
    ).one()
    return int(count), int(versions)
