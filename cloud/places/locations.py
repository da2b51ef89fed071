"""Customers' location reports against stored geofences: the tracker, durable.

`GeofenceTracker` keeps stays in one process's memory; here they live in
`geofence_presence`, so any API process (and the worker that fires dwells without a
report) decides from the same state. Each decision runs the tracker's own pure step,
`cloud.places.tracker.advance`, under the customer's row lock: load the customer's stays,
apply the reports, write the stays back and record every transition as a scenario
trigger (`geofence.enter|dwell|exit`, attributes {"geofence", "store"}) in the same
transaction, under a key made of customer, geofence, kind and time, so a replay records
nothing twice.

What a stay-at-home tracker does at `tick`, `due_geofence_dwells` does for everyone: a
dwell comes due without a new report, and a customer silent for the tracker's silence
time (phone off, location permission withdrawn) exits everything.

Privacy: location data is processed only with a recorded yes. A customer whose latest
location_marketing answer is not a grant (never answered, said no, withdrew) has their
reports refused by the API (403, `cloud.api.places`) before they reach this module, and
their stays forgotten (`forget_stays`, also when the answer changes), so no position of a
person who did not say yes is kept or turned into a trigger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.places.crud import lock_customer, record_geofence_trigger, stored_geofence
from cloud.places.index import GeofenceIndex
from cloud.places.models import GeofencePresence
from cloud.places.tracker import (
    DEFAULT_SILENCE_EXIT_S,
    GeofenceTransition,
    LocationReport,
    Stay,
    advance,
    dwell_due,
)
from shared.presence import Transition

#: The tracker's silence rule, durable: a customer heard from for none of this long has
#: most likely left (see tracker.DEFAULT_SILENCE_EXIT_S).
SILENCE_EXIT = timedelta(seconds=DEFAULT_SILENCE_EXIT_S)
#: Customers handled per call of `due_geofence_dwells`: bounds one transaction's locks
#: and work; the rest are found by the next call.
DUE_BATCH = 500


@dataclass(frozen=True, slots=True)
class RecordedTransition:
    transition: GeofenceTransition
    #: The scenario trigger's id; None when the same transition was recorded before.
    trigger_id: int | None


@dataclass(frozen=True, slots=True)
class LocationUpdate:
    """What a batch of reports did: the stays after it, the transitions, and how many
    reports were older than the customer's latest and so ignored."""

    stays: dict[str, Stay]
    transitions: tuple[RecordedTransition, ...]
    ignored: int


def _stays(rows: Sequence[GeofencePresence]) -> dict[str, Stay]:
    return {row.geofence_id: Stay(row.store, row.entered_at, row.dwell_emitted) for row in rows}


def _rows(session: Session, customer_id: int) -> list[GeofencePresence]:
    return list(session.exec(
        select(GeofencePresence).where(GeofencePresence.customer_id == customer_id)
        .order_by(col(GeofencePresence.geofence_id))
    ).all())


def _silent_exits(tenant: str, subject: str, stays: dict[str, Stay], at: datetime
                  ) -> list[GeofenceTransition]:
    return [
        GeofenceTransition(tenant, subject, geofence_id, stay.store, Transition.EXIT,
                           at, stay.entered_at, None)
        for geofence_id, stay in sorted(stays.items())
    ]


def report_locations(
    session: Session, *, tenant: str, customer_id: int, reports: Sequence[LocationReport],
    index: GeofenceIndex, now: datetime,
) -> LocationUpdate:
    """Apply the customer's `reports` (in time order) to their stored stays.

    `index` is the tenant's current geofence index (`StoredGeofences.index`). A report
    coming after the customer was silent for SILENCE_EXIT first ends the old stays (what
    the periodic check would have done), so the outcome does not depend on how often that
    check runs. The caller commits.
    """
    subject = str(customer_id)
    if not lock_customer(session, customer_id=customer_id):
        return LocationUpdate({}, (), len(reports))  # erased meanwhile: nothing to keep
    rows = _rows(session, customer_id)
    stays = _stays(rows)
    last_at = max((row.last_seen_at for row in rows), default=None)
    transitions: list[GeofenceTransition] = []
    ignored = 0
    for report in sorted(reports, key=lambda report: report.at):
        if stays and last_at is not None and report.at < last_at:
            ignored += 1  # as the tracker: it describes a moment already decided
            continue
        if stays and last_at is not None and report.at - last_at >= SILENCE_EXIT:
            transitions.extend(_silent_exits(tenant, subject, stays, report.at))
            stays = {}
        location = index.locate(tenant, report.lat, report.lon, report.accuracy_m)
        stays, step = advance(stays, report, location, index)
        transitions.extend(step)
        last_at = report.at
    _write_back(session, tenant=tenant, customer_id=customer_id, rows=rows, stays=stays,
                last_at=last_at, index=index)
    recorded = tuple(
        RecordedTransition(transition, _record(session, customer_id, transition, now))
        for transition in transitions
    )
    return LocationUpdate(stays, recorded, ignored)


def _write_back(
    session: Session, *, tenant: str, customer_id: int, rows: Sequence[GeofencePresence],
    stays: dict[str, Stay], last_at: datetime | None, index: GeofenceIndex,
) -> None:
    kept: set[str] = set()
    for row in rows:
        stay = stays.get(row.geofence_id)
        if stay is None or stay.entered_at != row.entered_at:
            session.delete(row)  # ended (and maybe begun again: inserted below)
            continue
        kept.add(row.geofence_id)
        assert last_at is not None
        row.last_seen_at, row.dwell_emitted = last_at, stay.dwelt
        session.add(row)
    session.flush()  # deletions first: a stay begun again reuses (customer, geofence)
    for geofence_id, stay in sorted(stays.items()):
        if geofence_id in kept:
            continue
        assert last_at is not None
        geofence = index.get(tenant, geofence_id)
        dwell_after = timedelta(seconds=geofence.dwell_after_s if geofence else 0.0)
        session.add(GeofencePresence(
            tenant=tenant, customer_id=customer_id, geofence_id=geofence_id, store=stay.store,
            entered_at=stay.entered_at, last_seen_at=last_at,
            dwell_due_at=stay.entered_at + dwell_after, dwell_emitted=stay.dwelt,
        ))
    session.flush()


def _record(session: Session, customer_id: int, transition: GeofenceTransition, now: datetime
            ) -> int | None:
    return record_geofence_trigger(
        session, tenant=transition.tenant, customer_id=customer_id,
        geofence_id=transition.geofence_id, store=transition.store, kind=transition.kind,
        at=transition.at, now=now,
    )


def current_stays(session: Session, *, customer_id: int) -> dict[str, Stay]:
    """The geofences the customer is in now, by id."""
    return _stays(_rows(session, customer_id))


def due_geofence_dwells(session: Session, *, now: datetime) -> int:
    """Everything due at `now` without a new report, for every tenant: exits of customers
    silent for SILENCE_EXIT, then dwells past their geofence's threshold while it is open.
    Returns how many triggers were recorded. Customers another transaction is working on
    are skipped (their report decides). The caller commits; run it periodically.
    """
    return _exit_silent(session, now=now) + _dwell(session, now=now)


def _exit_silent(session: Session, *, now: datetime) -> int:
    cutoff = now - SILENCE_EXIT
    customers = session.exec(
        select(GeofencePresence.customer_id).group_by(col(GeofencePresence.customer_id))
        .having(func.max(GeofencePresence.last_seen_at) <= cutoff)
        .order_by(col(GeofencePresence.customer_id)).limit(DUE_BATCH)
    ).all()
    recorded = 0
    for customer_id in customers:
        if not lock_customer(session, customer_id=customer_id, skip_locked=True):
            continue
        rows = _rows(session, customer_id)
        if not rows or max(row.last_seen_at for row in rows) > cutoff:
            continue  # a report came in meanwhile
        for row in rows:
            trigger = record_geofence_trigger(
                session, tenant=row.tenant, customer_id=customer_id,
                geofence_id=row.geofence_id, store=row.store, kind=Transition.EXIT, at=now,
                now=now,
            )
            recorded += trigger is not None
            session.delete(row)
        session.flush()
    return recorded


def _dwell(session: Session, *, now: datetime) -> int:
    customers = session.exec(
        select(GeofencePresence.customer_id).distinct().where(
            col(GeofencePresence.dwell_emitted).is_(False),
            col(GeofencePresence.dwell_due_at) <= now,
        ).order_by(col(GeofencePresence.customer_id)).limit(DUE_BATCH)
    ).all()
    recorded = 0
    for customer_id in customers:
        if not lock_customer(session, customer_id=customer_id, skip_locked=True):
            continue
        for row in _rows(session, customer_id):
            if row.dwell_emitted:
                continue
            geofence = stored_geofence(session, tenant=row.tenant, geofence_id=row.geofence_id)
            stay = Stay(row.store, row.entered_at, row.dwell_emitted)
            if geofence is None or not dwell_due(geofence, stay, now):
                continue  # gone, closed now, or its threshold was raised
            row.dwell_emitted = True
            session.add(row)
            trigger = record_geofence_trigger(
                session, tenant=row.tenant, customer_id=customer_id,
                geofence_id=row.geofence_id, store=row.store, kind=Transition.DWELL, at=now,
                now=now,
            )
            recorded += trigger is not None
        session.flush()
    return recorded
