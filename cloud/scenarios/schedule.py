"""Triggers that come from the calendar rather than from an event: date fields (birthdays,
on the customer's clock) and inactivity. A worker looks for them every
`schedule_interval_s`; their source keys make looking twice (or on two workers) record
each one once."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.commerce.models import OrderLine
from cloud.customers.models import Customer
from cloud.preferences.crud import get_preferences
from cloud.preferences.precedence import resolve, tenant_rules
from cloud.scenarios.catalog import TenantCatalog
from cloud.scenarios.facts import VISIT_KINDS
from cloud.settings import ScenarioSettings
from cloud.triggers import Trigger, TriggerKind, record_trigger

#: What counts as the customer being active, besides buying and visiting.
ACTIVE_KINDS = (*VISIT_KINDS, TriggerKind.APP_OPENED.value, TriggerKind.MESSAGE_CLICKED.value)


def record_calendar_triggers(
    session: Session, *, tenant: str, catalog: TenantCatalog, settings: ScenarioSettings,
    now: datetime,
) -> int:
    """Birthday and inactivity triggers due at `now` for the tenant's active scenarios."""
    entries = catalog.by_entry
    recorded = 0
    if TriggerKind.DATE in entries:
        recorded += _birthdays(session, tenant=tenant, settings=settings, now=now)
    days = sorted({
        scenario.spec.entry.inactive_days for scenario in entries.get(TriggerKind.INACTIVITY, ())
        if scenario.spec.entry.inactive_days is not None
    })
    if days:
        recorded += _inactivity(session, tenant=tenant, thresholds=days, now=now)
    return recorded


def is_birthday(birth: date, today: date) -> bool:
    """29 February birthdays are celebrated on 28 February in common years."""
    if (birth.month, birth.day) == (today.month, today.day):
        return True
    leap_day = (birth.month, birth.day) == (2, 29)
    common_year = (today.replace(month=3, day=1) - timedelta(days=1)).day == 28
    return leap_day and common_year and (today.month, today.day) == (2, 28)


def _birthdays(
    session: Session, *, tenant: str, settings: ScenarioSettings, now: datetime
) -> int:
    """Customers whose birthday it is today on their clock: their own zone, else the
    tenant's, else the deployment's (`cloud.preferences.precedence`; no store: a birthday
    is about no visit). The tenant's own is read once for all its customers."""
    # The customer's "today" is within a day of UTC's: look at three calendar days and
    # decide on the customer's own clock.
    tenant_own = tenant_rules(get_preferences(session, tenant=tenant))
    days = {(now + timedelta(days=shift)).date() for shift in (-1, 0, 1)}
    months = sorted({day.month for day in days} | {2})
    candidates = session.exec(
        select(Customer).where(
            Customer.tenant == tenant, col(Customer.birth_date).is_not(None),
            func.extract("month", col(Customer.birth_date)).in_(months),
        )
    ).all()
    recorded = 0
    for customer in candidates:
        assert customer.id is not None
        assert customer.birth_date is not None
        zone = resolve(settings, tenant=tenant, tenant_own=tenant_own,
                       customer_zone=customer.time_zone).zone
        today = now.astimezone(zone).date()
        if not is_birthday(customer.birth_date, today):
            continue
        found = record_trigger(
            session, tenant=tenant, customer_id=customer.id, kind=TriggerKind.DATE,
            occurred_at=now, source_key=f"date:birth_date:{customer.id}:{today.year}",
            now=now, attributes={"field": "birth_date", "date": today.isoformat()},
        )
        recorded += found is not None
    return recorded


def _inactivity(
    session: Session, *, tenant: str, thresholds: list[int], now: datetime
) -> int:
    """One trigger per threshold per lapse: the key names the last activity, so a customer
    who comes back and lapses again is reminded again."""
    customers = session.exec(
        select(Customer.id, Customer.created_at).where(Customer.tenant == tenant)
    ).all()
    last: dict[int, datetime] = {cid: created for cid, created in customers if cid is not None}
    for source in (
        select(OrderLine.customer_id, func.max(OrderLine.ordered_at))
        .where(OrderLine.tenant == tenant).group_by(col(OrderLine.customer_id)),
        select(Trigger.customer_id, func.max(Trigger.occurred_at))
        .where(Trigger.tenant == tenant, col(Trigger.kind).in_(ACTIVE_KINDS))
        .group_by(col(Trigger.customer_id)),
    ):
        for customer_id, moment in session.exec(source).all():
            if customer_id in last and moment is not None and moment > last[customer_id]:
                last[customer_id] = moment
    recorded = 0
    for customer_id, active_at in last.items():
        idle_days = (now - active_at).days
        reached = [threshold for threshold in thresholds if idle_days >= threshold]
        # Daily scans record each threshold as it is reached; a customer first seen long
        # lapsed gets only the largest, not every reminder of the lapse at once.
        for threshold in reached[-1:]:
            found = record_trigger(
                session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.INACTIVITY,
                occurred_at=now,
                source_key=f"inactivity:{threshold}:{customer_id}:{active_at.isoformat()}",
                now=now, attributes={"days": threshold, "last_active": active_at.isoformat()},
            )
            recorded += found is not None
    return recorded
