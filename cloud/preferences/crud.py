"""A tenant's preferences in the database: read one, save one (its version counted in
the database, so two saves at once get two versions), read several in one query (a batch
of the engine), and their public form with what applies."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import one_of
from cloud.db import dialect_insert
from cloud.preferences.models import (
    QuietRulesPublic,
    QuietWindow,
    TenantPreferences,
    TenantPreferencesPublic,
    TenantPreferencesUpdate,
    quiet_choice,
    quiet_columns,
)
from cloud.preferences.precedence import OwnRules, QuietRules, resolve, tenant_rules
from cloud.settings import ScenarioSettings

_TABLE: Table = SQLModel.metadata.tables[TenantPreferences.__tablename__]


def get_preferences(session: Session, *, tenant: str) -> TenantPreferences | None:
    return session.get(TenantPreferences, tenant)


def put_preferences(
    session: Session, *, tenant: str, data: TenantPreferencesUpdate, now: datetime
) -> TenantPreferences:
    """Replace the tenant's preferences; the row comes back with its new version."""
    values = {**quiet_columns(data.quiet_hours), "time_zone": data.time_zone,
              "updated_at": now}
    statement = dialect_insert(session, _TABLE).values(tenant=tenant, version=1, **values)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant"], set_={**values, "version": _TABLE.c.version + 1},
    )
    session.connection().execute(statement)
    row = session.get(TenantPreferences, tenant, populate_existing=True)
    assert row is not None
    return row


def load_rules(session: Session, *, tenants: Iterable[str]) -> dict[str, OwnRules]:
    """The own rules of each of `tenants`, in one query (NOTHING for one without)."""
    wanted = sorted(set(tenants))
    if not wanted:
        return {}
    found = {row.tenant: row for row in session.exec(
        select(TenantPreferences).where(one_of(session, col(TenantPreferences.tenant), wanted))
    )}
    return {tenant: tenant_rules(found.get(tenant)) for tenant in wanted}


def public_preferences(
    row: TenantPreferences | None, *, tenant: str, settings: ScenarioSettings
) -> TenantPreferencesPublic:
    """The tenant's own values, what they come to with the deployment's, and what the
    deployment's alone give (what the console offers as "the deployment's")."""
    return TenantPreferencesPublic(
        quiet_hours=(quiet_choice(row.quiet_start, row.quiet_end, row.quiet_off)
                     if row is not None else None),
        time_zone=row.time_zone if row is not None else None,
        version=row.version if row is not None else 0,
        updated_at=row.updated_at if row is not None else None,
        applies=_public_rules(resolve(settings, tenant=tenant, tenant_own=tenant_rules(row))),
        deployment=_public_rules(resolve(settings, tenant=tenant)),
    )


def _public_rules(rules: QuietRules) -> QuietRulesPublic:
    hours = rules.quiet_hours
    return QuietRulesPublic(
        # Built as is: the deployment's window may have seconds the API's form refuses.
        quiet_hours=(QuietWindow.model_construct(start=hours.start, end=hours.end)
                     if hours else None),
        quiet_hours_from=rules.quiet_hours_from.value,
        time_zone=rules.zone.key, time_zone_from=rules.zone_from.value,
    )
