"""Recent location fixes of app users who said yes, kept briefly for the console's map.

A geofence is drawn from a floor plan; whether phones really report positions inside it
(GPS drifts tens of metres near buildings) shows only next to real fixes. So the fixes
an app reports are kept, but only:

- of customers whose latest answer on location-based marketing is a grant (the API
  refuses everyone else's reports, and this module checks again);
- for RECENT_FIX_RETENTION, counted from the earlier of the phone's time and ours;
- at most RECENT_FIXES_PER_TENANT per tenant, the newest.

A "no" recorded later forgets the customer's fixes at once (`forget_recent_fixes`, called
where consent is recorded and where a refused report arrives), and reading them checks
the answer again, so a fix is never shown after consent went. Erasure deletes them with
the customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from cloud.channels import LOCATION_MARKETING
from cloud.customers.consent import latest_answers
from cloud.places.models import RecentFix
from cloud.places.tracker import LocationReport

#: Enough to compare today's fixes with the geofences drawn; the same one-day bound the
#: design puts on anything that follows a device, so the map never becomes a history of
#: where someone has been.
RECENT_FIX_RETENTION = timedelta(days=1)
#: A map stays legible with a few hundred markers; more would show nothing new about where
#: a geofence should be, and would only keep more people's positions.
RECENT_FIXES_PER_TENANT = 500


def location_granted(session: Session, *, customer_id: int) -> bool:
    """Whether the customer's latest answer on location-based marketing is a grant."""
    answer = latest_answers(session, [customer_id]).get((customer_id, LOCATION_MARKETING))
    return answer is not None and answer.granted


def keep_recent_fixes(
    session: Session, *, tenant: str, customer_id: int, reports: Sequence[LocationReport],
    now: datetime,
) -> int:
    """Keep the customer's `reports` for the map if their consent allows it, then drop the
    tenant's fixes beyond the newest RECENT_FIXES_PER_TENANT. Returns how many were kept;
    reports already older than the retention are not. The caller commits."""
    if not reports or not location_granted(session, customer_id=customer_id):
        return 0
    cutoff = now - RECENT_FIX_RETENTION
    fresh = [report for report in reports if report.at >= cutoff]
    for report in fresh:
        session.add(RecentFix(
            tenant=tenant, customer_id=customer_id, lat=report.lat, lon=report.lon,
            accuracy_m=report.accuracy_m, at=report.at, received_at=now,
        ))
    if fresh:
        session.flush()
        _trim(session, tenant=tenant)
    return len(fresh)


def _trim(session: Session, *, tenant: str) -> None:
    """Delete the tenant's fixes older than its newest RECENT_FIXES_PER_TENANT."""
    newest = (
        select(RecentFix.id).where(RecentFix.tenant == tenant)
        .order_by(col(RecentFix.at).desc(), col(RecentFix.id).desc())
        .limit(RECENT_FIXES_PER_TENANT)
    )
    session.execute(delete(RecentFix).where(
        col(RecentFix.tenant) == tenant, col(RecentFix.id).not_in(newest.scalar_subquery()),
    ))


def recent_fixes(session: Session, *, tenant: str, now: datetime) -> list[RecentFix]:
    """The tenant's kept fixes within the retention, newest first, of customers whose
    answer is still a grant (a fix whose customer has since said no is left out even if
    it was not yet forgotten)."""
    cutoff = now - RECENT_FIX_RETENTION
    rows = list(session.exec(
        select(RecentFix).where(
            RecentFix.tenant == tenant, col(RecentFix.at) >= cutoff,
            col(RecentFix.received_at) >= cutoff,
        ).order_by(col(RecentFix.at).desc(), col(RecentFix.id).desc())
        .limit(RECENT_FIXES_PER_TENANT)
    ).all())
    answers = latest_answers(session, sorted({row.customer_id for row in rows}))
    return [
        row for row in rows
        if (answer := answers.get((row.customer_id, LOCATION_MARKETING))) is not None
        and answer.granted
    ]


def forget_recent_fixes(session: Session, *, customer_id: int) -> int:
    """Delete the customer's kept fixes (consent withdrawn); returns how many."""
    result = session.execute(delete(RecentFix).where(col(RecentFix.customer_id) == customer_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_old_fixes(session: Session, *, now: datetime) -> int:
    """Retention: delete every tenant's fixes older than RECENT_FIX_RETENTION (by the
    phone's time or ours, whichever is earlier); returns how many. The caller commits."""
    cutoff = now - RECENT_FIX_RETENTION
    result = session.execute(delete(RecentFix).where(
        or_(col(RecentFix.at) < cutoff, col(RecentFix.received_at) < cutoff)
    ))
    return int(result.rowcount)  # type: ignore[attr-defined]
