"""Recent location fixes kept for the console's map: only with a grant of location-based
marketing, a bounded few per tenant, for a day, and gone with the customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cloud.customers.crud import create_customer, get_customer, record_consent
from cloud.customers.models import ConsentCreate, CustomerCreate
from cloud.db import session_scope
from cloud.erasure import erase_customer
from cloud.ingest.consumer import PresenceConsumer
from cloud.places import recent
from cloud.places.models import RecentFix
from cloud.places.recent import (
    RECENT_FIX_RETENTION,
    forget_recent_fixes,
    keep_recent_fixes,
    purge_old_fixes,
    recent_fixes,
)
from cloud.places.tracker import LocationReport
from tests.cloud.factories import cloud_settings

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def customer(session: Session, tenant: str, *, location: bool | None) -> int:
    """A customer whose answer on location-based marketing is `location` (None: none)."""
    row = create_customer(session, tenant=tenant, now=T0, data=CustomerCreate())
    assert row.id is not None
    if location is not None:
        record_consent(session, customer=row, now=T0, data=ConsentCreate(
            channel="location_marketing", granted=location, source="app"))
    return row.id


def report(tenant: str, customer_id: int, at: datetime, east: float = 0.0) -> LocationReport:
    return LocationReport(tenant, str(customer_id), 40.4168, -3.7038 + east, 10.0, at)


def keep(session: Session, tenant: str, customer_id: int, *ats: datetime,
         now: datetime = T0) -> int:
    return keep_recent_fixes(session, tenant=tenant, customer_id=customer_id, now=now,
                             reports=[report(tenant, customer_id, at) for at in ats])


def kept(session: Session) -> list[tuple[int, datetime]]:
    return [(row.customer_id, row.at) for row in session.exec(
        select(RecentFix).order_by(col(RecentFix.at), col(RecentFix.id))).all()]


def test_only_customers_who_granted_location_marketing_have_fixes_kept(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        yes = customer(session, tenant, location=True)
        unanswered = customer(session, tenant, location=None)
        no = customer(session, tenant, location=False)
        assert keep(session, tenant, yes, T0 - timedelta(minutes=1), T0) == 2
        assert keep(session, tenant, unanswered, T0) == 0
        assert keep(session, tenant, no, T0) == 0
        # a fix that is already older than the retention on arrival is not kept either
        assert keep(session, tenant, yes, T0 - RECENT_FIX_RETENTION - timedelta(seconds=1)) == 0
        session.commit()
        assert {row.customer_id for row in recent_fixes(session, tenant=tenant, now=T0)} == {yes}
        assert recent_fixes(session, tenant="another-shop", now=T0) == []
        # a "no" since then hides the fixes even before they are forgotten...
        found = get_customer(session, tenant=tenant, customer_id=yes)
        assert found is not None
        record_consent(session, customer=found, now=T0, data=ConsentCreate(
            channel="location_marketing", granted=False, source="app"))
        assert recent_fixes(session, tenant=tenant, now=T0) == []
        # ...and forgetting deletes them
        assert forget_recent_fixes(session, customer_id=yes) == 2
        assert kept(session) == []


def test_a_tenant_keeps_only_its_newest_fixes(
    engine: Engine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recent, "RECENT_FIXES_PER_TENANT", 3)
    with session_scope(engine) as session:
        ana = customer(session, tenant, location=True)
        eva = customer(session, tenant, location=True)
        other = customer(session, "another-shop", location=True)
        minutes = [T0 - timedelta(minutes=n) for n in range(6)]
        keep(session, tenant, ana, minutes[5], minutes[3], minutes[1])
        keep(session, "another-shop", other, minutes[5])
        keep(session, tenant, eva, minutes[4], minutes[2], minutes[0])
        session.commit()
        assert [(row.customer_id, row.at) for row in recent_fixes(
            session, tenant=tenant, now=T0)] == [(eva, minutes[0]), (ana, minutes[1]),
                                                 (eva, minutes[2])]
        # the other tenant's fix is not pushed out by this tenant's
        assert (other, minutes[5]) in kept(session)
        assert len(kept(session)) == 4


def test_retention_drops_fixes_after_a_day_by_the_earlier_clock(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        ana = customer(session, tenant, location=True)
        keep(session, tenant, ana, T0 - timedelta(hours=2))
        # the phone's clock runs an hour ahead: our receipt time bounds it all the same
        keep(session, tenant, ana, T0 + timedelta(hours=1))
        keep(session, tenant, ana, T0 + timedelta(hours=3), now=T0 + timedelta(hours=3))
        session.commit()
        day_later = T0 + RECENT_FIX_RETENTION + timedelta(minutes=1)
        assert [row.at for row in recent_fixes(session, tenant=tenant, now=day_later)] == [
            T0 + timedelta(hours=3)]
        assert purge_old_fixes(session, now=day_later) == 2
        assert kept(session) == [(ana, T0 + timedelta(hours=3))]
        session.commit()


def test_the_workers_retention_run_deletes_old_fixes(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    with session_scope(engine) as session:
        ana = customer(session, tenant, location=True)
        keep(session, tenant, ana, T0 - timedelta(hours=1), T0)
        session.commit()
    clock = [T0 + RECENT_FIX_RETENTION - timedelta(minutes=30)]
    consumer = PresenceConsumer(settings=cloud_settings(tenant=tenant, database_url=migrated_url),
                                engine=engine, now=lambda: clock[0])
    assert consumer.purge_once() == 1
    clock[0] = T0 + RECENT_FIX_RETENTION + timedelta(seconds=1)
    assert consumer.purge_once() == 1
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(RecentFix)).one() == 0


def test_erasing_a_customer_deletes_their_fixes(engine: Engine, tenant: str) -> None:
    with session_scope(engine) as session:
        juan = customer(session, tenant, location=True)
        ana = customer(session, tenant, location=True)
        keep(session, tenant, juan, T0)
        keep(session, tenant, ana, T0)
        found = get_customer(session, tenant=tenant, customer_id=juan)
        assert found is not None
        record = erase_customer(session, customer=found, now=T0)
        session.commit()
        assert record.counts["recent_location_fixes"] == 1
        assert [customer_id for customer_id, _at in kept(session)] == [ana]
