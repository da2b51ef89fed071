"""Stores, geofences and location reports over HTTP.

Admins define stores (PUT/GET/DELETE /tenants/{tenant}/stores/{key}) and geofences
(PUT/GET/DELETE /tenants/{tenant}/geofences/{id}, the JSON of `cloud.places.parse`); a bad
definition is a 422 naming the first problem. The app reports its customer's location
(POST /tenants/{tenant}/customers/{id}/locations, one fix or a list) and gets back the
geofences the customer is in and the transitions the report caused. The fixes of
customers who granted location-based marketing are kept for a day, a bounded few, and
shown next to the geofences (GET /tenants/{tenant}/locations/recent).

Each app instance keeps a `StoredGeofences` (made on first use) and checks the tenant's
geofence version on every location report, so an instance notices a change made through
another one at its next request.

Location data is processed only with a recorded yes: a report for a customer whose
latest location_marketing answer is not a grant (never answered, or "no") gets 403 with
`{"detail": {"reason": "location_consent_missing" | "location_consent_withdrawn",
"msg": ...}}`, and nothing of it is kept; their stays and kept fixes are forgotten too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, status
from prometheus_client import Counter
from pydantic import Field as FieldInfo

from cloud.api.access import MayReadConfig, MayReadLocations, MayReportLocations, MayWriteStores
from cloud.api.audit import Audit
from cloud.api.customers import CustomerDep
from cloud.api.deps import NowDep, ScenarioWake, SessionDep, SettingsDep
from cloud.api.errors import refusals
from cloud.beacons.identify import advertised_beacons, identify_store
from cloud.beacons.models import StoreBeaconOutcome, StoreBeaconReport
from cloud.beacons.reports import report_store_beacon
from cloud.channels import LOCATION_MARKETING
from cloud.customers.crud import current_consent, public_ids
from cloud.examples import GEOFENCE
from cloud.gateways.crud import active_gateway_ids
from cloud.metrics import LOCATION_REPORTS_REFUSED, STORE_BEACON_REPORTS_REFUSED
from cloud.places.crud import (
    StoredGeofences,
    StoreInUseError,
    delete_geofence,
    delete_store,
    forget_stays,
    get_geofence,
    get_store,
    list_geofences,
    list_stores,
    put_geofence,
    put_store,
    store_geofence_ids,
    tenant_geofence_version,
)
from cloud.places.locations import LocationUpdate, report_locations
from cloud.places.models import (
    GeofenceDefinition,
    GeofenceList,
    GeofencePublic,
    LocationFix,
    LocationOutcome,
    RecentFixes,
    RecentFixPublic,
    StayPublic,
    StoreCreate,
    StorePublic,
    StoreRow,
    TransitionPublic,
)
from cloud.places.recent import (
    RECENT_FIX_RETENTION,
    RECENT_FIXES_PER_TENANT,
    forget_recent_fixes,
    keep_recent_fixes,
    recent_fixes,
)
from cloud.places.tracker import LocationReport
from cloud.places.validation import ID_PATTERN, PlaceError
from cloud.preferences.models import quiet_choice
from cloud.presence.stays import forget_store_stays
from shared.beacon import ACCEPTED_PERIODS_BEHIND, ROTATION_PERIOD_S
from shared.topics import SEGMENT_PATTERN

#: An app flushing fixes it buffered offline sends them together; a bound keeps one
#: request's work (and its transaction) small.
MAX_FIXES_PER_REQUEST = 100

StoreKey = Annotated[str, Path(pattern=SEGMENT_PATTERN.pattern)]
GeofenceId = Annotated[str, Path(pattern=ID_PATTERN.pattern)]
Fixes = Annotated[list[LocationFix], FieldInfo(min_length=1, max_length=MAX_FIXES_PER_REQUEST)]

router = APIRouter(tags=["places"])
log = logging.getLogger(__name__)

_STATE_LOCK = threading.Lock()


def stored_geofences(request: Request) -> StoredGeofences:
    """This app's geofence index (one per app: made on first use)."""
    state = request.app.state
    found: StoredGeofences | None = getattr(state, "stored_geofences", None)
    if found is None:
        with _STATE_LOCK:
            found = getattr(state, "stored_geofences", None)
            if found is None:
                found = StoredGeofences()
                state.stored_geofences = found
    return found


GeofencesDep = Annotated[StoredGeofences, Depends(stored_geofences)]


def _unprocessable(error: ValueError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error))


#: The parts of a PlaceError's field path: names, and list positions ("hours.fri[0]",
#: "shape.coordinates.0.3").
_PATH_PART = re.compile(r"[^.\[\]]+")


def _problem_in_body(error: PlaceError) -> HTTPException:
    """A definition's problem as FastAPI reports a body's own: a list of problems, each
    with the location of its field, so a client can show it beside that field."""
    location: list[str | int] = [
        int(part) if part.isdigit() else part for part in _PATH_PART.findall(error.field)
    ]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
        {"type": "value_error", "loc": ["body", *location], "msg": error.reason},
    ])


# Stores


def _store_public(session: SessionDep, store: StoreRow) -> StorePublic:
    return StorePublic.model_validate(store, update={
        "geofences": store_geofence_ids(session, tenant=store.tenant, key=store.key),
        "quiet_hours": quiet_choice(store.quiet_start, store.quiet_end, store.quiet_off),
    })


@router.put("/stores/{key}", response_model=StorePublic)
def put_store_route(
    caller: MayWriteStores, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: StoreKey, data: StoreCreate,
) -> StorePublic:
    """Create or update a store: its name, the IANA zone of its opening hours (also the
    clock of the journeys its visits start, for customers who gave none) and its own quiet
    hours for those journeys (left out: the tenant's, `GET .../preferences`)."""
    found = get_store(session, tenant=tenant, key=key)
    before = _store_public(session, found) if found is not None else None
    try:
        store = put_store(session, tenant=tenant, key=key, data=data, now=now)
    except PlaceError as error:
        raise _unprocessable(error) from None
    after = _store_public(session, store)
    audit.record("store.put", f"store:{key}", before=before, after=after)
    session.commit()
    return after


@router.get("/stores", response_model=list[StorePublic])
def list_stores_route(
    caller: MayReadConfig, session: SessionDep, tenant: str
) -> list[StorePublic]:
    return [_store_public(session, store) for store in list_stores(session, tenant=tenant)]


def _store_or_404(session: SessionDep, tenant: str, key: str) -> StoreRow:
    store = get_store(session, tenant=tenant, key=key)
    if store is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"store {key!r} not found")
    return store


@router.get("/stores/{key}", response_model=StorePublic)
def get_store_route(
    caller: MayReadConfig, session: SessionDep, tenant: str, key: StoreKey
) -> StorePublic:
    return _store_public(session, _store_or_404(session, tenant, key))


@router.delete("/stores/{key}", response_model=StorePublic, responses=refusals(409))
def delete_store_route(
    caller: MayWriteStores, session: SessionDep, audit: Audit, tenant: str, key: StoreKey
) -> StorePublic:
    """Delete a store that has no geofences and no gateway that is not revoked left (409
    otherwise: a gateway's broker login names its store, and would outlive it)."""
    public = _store_public(session, _store_or_404(session, tenant, key))
    gateways = active_gateway_ids(session, tenant=tenant, store=key)
    if gateways:
        raise HTTPException(status.HTTP_409_CONFLICT, (
            f"store {key!r} still has registered gateways ({', '.join(gateways[:10])}"
            f"{', ...' if len(gateways) > 10 else ''}): revoke them first"))
    try:
        delete_store(session, tenant=tenant, key=key)
    except StoreInUseError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    audit.record("store.delete", f"store:{key}", before=public)
    session.commit()
    return public


# Geofences


def _geofence_public(row: GeofenceDefinition) -> GeofencePublic:
    return GeofencePublic(id=row.geofence_id, store=row.store, definition=row.spec,
                          version=row.version, created_at=row.created_at,
                          updated_at=row.updated_at)


@router.put("/geofences/{geofence_id}", response_model=GeofencePublic)
def put_geofence_route(
    caller: MayWriteStores, geofences: GeofencesDep, session: SessionDep, now: NowDep,
    audit: Audit, tenant: str, geofence_id: GeofenceId,
    definition: Annotated[dict[str, Any], Body(examples=[GEOFENCE])],
) -> GeofencePublic:
    """Create or replace a geofence: a circle or GeoJSON polygon, dwell time, optional
    opening hours and its store (see cloud.places.parse); `id`, `tenant` and `timezone`
    may be left out (the path and the store give them). A bad definition is a 422 whose
    detail lists the first problem with its field's location, e.g. `["body", "shape",
    "circle", "radius_m"]`, as for any malformed body."""
    found = get_geofence(session, tenant=tenant, geofence_id=geofence_id)
    before = _geofence_public(found) if found is not None else None
    try:
        row = put_geofence(session, tenant=tenant, geofence_id=geofence_id,
                           definition=definition, now=now)
    except PlaceError as error:
        raise _problem_in_body(error) from None
    audit.record("geofence.put", f"geofence:{geofence_id}", before=before,
                 after=_geofence_public(row))
    session.commit()
    geofences.index(session, tenant=tenant)
    return _geofence_public(row)


@router.get("/geofences", response_model=GeofenceList)
def list_geofences_route(
    caller: MayReadConfig, session: SessionDep, tenant: str
) -> GeofenceList:
    return GeofenceList(
        version=tenant_geofence_version(session, tenant=tenant),
        geofences=[_geofence_public(row) for row in list_geofences(session, tenant=tenant)],
    )


@router.get("/geofences/{geofence_id}", response_model=GeofencePublic)
def get_geofence_route(
    caller: MayReadConfig, session: SessionDep, tenant: str, geofence_id: GeofenceId,
) -> GeofencePublic:
    row = get_geofence(session, tenant=tenant, geofence_id=geofence_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"geofence {geofence_id!r} not found")
    return _geofence_public(row)


@router.delete("/geofences/{geofence_id}", response_model=GeofencePublic)
def delete_geofence_route(
    caller: MayWriteStores, geofences: GeofencesDep, session: SessionDep, now: NowDep,
    audit: Audit, tenant: str, geofence_id: GeofenceId,
) -> GeofencePublic:
    """Delete a geofence; customers inside it exit now."""
    row = delete_geofence(session, tenant=tenant, geofence_id=geofence_id, now=now)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"geofence {geofence_id!r} not found")
    audit.record("geofence.delete", f"geofence:{geofence_id}", before=_geofence_public(row))
    session.commit()
    geofences.index(session, tenant=tenant)
    return _geofence_public(row)


# Location reports


#: Why a location report was refused, in the 403's `detail.reason`: the customer never
#: answered the location question...
CONSENT_MISSING = "location_consent_missing"
#: ...or their latest answer is "no" (given, or a withdrawal).
CONSENT_WITHDRAWN = "location_consent_withdrawn"


def _location_refusal(session: SessionDep, customer_id: int) -> str | None:
    """None when the customer's latest location_marketing answer is a grant; else why
    their location may not be processed. Silence is not consent: only a recorded yes
    lets a position be used, so "never answered" is refused as "no" is."""
    entry = current_consent(session, customer_id=customer_id).get(LOCATION_MARKETING)
    if entry is None:
        return CONSENT_MISSING
    return None if entry.granted else CONSENT_WITHDRAWN


def _refuse_location(session: SessionDep, tenant: str, customer_id: int, reason: str,
                     *, what: str = "location report",
                     refused: Counter = LOCATION_REPORTS_REFUSED) -> HTTPException:
    """Forget what was kept of the customer's location (stays from before the answer
    changed, fixes for the map), count the refusal on `refused`, log it, and say why."""
    forget_stays(session, customer_id=customer_id)
    forget_store_stays(session, customer_id=customer_id)
    forget_recent_fixes(session, customer_id=customer_id)
    session.commit()
    refused.labels(reason=reason).inc()
    log.info("tenant %s: %s for customer %s refused (%s)", tenant, what, customer_id, reason)
    answer = ("never answered the location-based marketing question"
              if reason == CONSENT_MISSING else "said no to location-based marketing")
    return HTTPException(status.HTTP_403_FORBIDDEN, {
        "reason": reason,
        "msg": f"the customer {answer}: location reports need a recorded yes"
               " (channel location_marketing); nothing was stored",
    })


def _outcome(customer_id: str, version: int, update: LocationUpdate) -> LocationOutcome:
    return LocationOutcome(
        customer_id=customer_id, geofence_version=version, ignored=update.ignored,
        inside=[StayPublic(geofence=geofence_id, store=stay.store, entered_at=stay.entered_at,
                           dwelt=stay.dwelt)
                for geofence_id, stay in sorted(update.stays.items())],
        transitions=[TransitionPublic(
            geofence=item.transition.geofence_id, store=item.transition.store,
            kind=item.transition.kind, at=item.transition.at,
            entered_at=item.transition.entered_at, trigger_id=item.trigger_id,
        ) for item in update.transitions],
    )


@router.post("/customers/{customer_id}/locations", response_model=LocationOutcome)
def report_locations_route(
    caller: MayReportLocations, geofences: GeofencesDep, session: SessionDep, now: NowDep,
    tenant: str, customer: CustomerDep,
    fixes: Annotated[LocationFix | Fixes, Body()],
) -> LocationOutcome:
    """The app's location fix (or fixes, oldest first or not: they are sorted) for its
    customer: enter when the whole accuracy disc is inside a geofence, exit when it no
    longer touches it, dwell after the geofence's dwell time while it is open. Each
    transition becomes a scenario trigger. 403, keeping nothing, unless the customer's
    latest answer on location-based marketing is a yes (module docstring)."""
    customer_id = customer.id
    assert customer_id is not None
    refusal = _location_refusal(session, customer_id)
    if refusal is not None:
        raise _refuse_location(session, tenant, customer_id, refusal)
    batch: Sequence[LocationFix] = fixes if isinstance(fixes, list) else [fixes]
    try:
        reports = [
            LocationReport(tenant, str(customer_id), fix.lat, fix.lon, fix.accuracy_m,
                           fix.at or now)
            for fix in batch
        ]
    except PlaceError as error:
        raise _unprocessable(error) from None
    index, version = geofences.index(session, tenant=tenant)
    update = report_locations(session, tenant=tenant, customer_id=customer_id,
                              reports=reports, index=index, now=now)
    keep_recent_fixes(session, tenant=tenant, customer_id=customer_id, reports=reports, now=now)
    session.commit()
    return _outcome(customer.public_id, version, update)


#: Why a store-beacon report was refused (422's `detail.reason`): its id is not one any
#: store of the tenant advertised in the current or the previous period.
BEACON_NOT_CURRENT = "beacon_not_current"
#: How far back a report's own time is taken: the periods its id is accepted for.
REPORT_WINDOW = timedelta(seconds=ROTATION_PERIOD_S * (ACCEPTED_PERIODS_BEHIND + 1))


@router.post("/customers/{customer_id}/store-beacon", response_model=StoreBeaconOutcome,
             responses=refusals(403, 422))
def report_store_beacon_route(
    caller: MayReportLocations, session: SessionDep, settings: SettingsDep, now: NowDep,
    wake: ScenarioWake, tenant: str, customer: CustomerDep, report: StoreBeaconReport,
) -> StoreBeaconOutcome:
    """The customer's phone noticed the store's beacon region (enter) or lost it (exit).
    An enter's major/minor (or Eddystone eid) must be the id a store of the shop
    advertises now or advertised in the previous period (they rotate: `shared.beacon`);
    anything else, such as an id recorded earlier and replayed, is a 422
    (`beacon_not_current`), counted and logged. The enter becomes a `presence.enter` for
    that store, as a gateway's sighting does, unless a gateway already opened the visit
    (one visit, one enter: `cloud.presence.stays`). 403, keeping nothing, unless the
    customer's latest answer on location-based marketing is a yes."""
    customer_id = customer.id
    assert customer_id is not None
    refusal = _location_refusal(session, customer_id)
    if refusal is not None:
        raise _refuse_location(session, tenant, customer_id, refusal,
                               what="store-beacon report", refused=STORE_BEACON_REPORTS_REFUSED)
    # The id is checked for the last two periods: a moment before them cannot be vouched
    # for, and a moment after now is a wrong clock.
    at = min(max(report.at or now, now - REPORT_WINDOW), now)
    store: str | None = None
    if report.identified:
        tenant_settings = settings.tenant(tenant)
        keys = {key.key_id: key for key in (tenant_settings.tenant_keys()
                                            if tenant_settings is not None else [])}
        beacons = advertised_beacons(session, tenant=tenant, keys=keys)
        store = identify_store(beacons, report, now=now)
        if store is None:
            STORE_BEACON_REPORTS_REFUSED.labels(reason=BEACON_NOT_CURRENT).inc()
            log.warning("tenant %s: store-beacon report for customer %s refused: the id is "
                        "no store's current one", tenant, customer_id)
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, {
                "reason": BEACON_NOT_CURRENT,
                "msg": "the beacon id is not one a store of the shop advertises now: beacon "
                       "ids rotate, and an old one (or another shop's) is refused",
            })
    visit = report_store_beacon(session, tenant=tenant, customer_id=customer_id, store=store,
                                event=report.event, at=at, now=now)
    session.commit()
    if visit.trigger_ids:
        wake()
    return StoreBeaconOutcome(customer_id=customer.public_id, event=report.event,
                              stores=list(visit.stores), visit=visit.visit,
                              trigger_ids=list(visit.trigger_ids), at=at)


@router.get("/locations/recent", response_model=RecentFixes)
def recent_locations_route(
    caller: MayReadLocations, session: SessionDep, now: NowDep, tenant: str
) -> RecentFixes:
    """Where the tenant's app users were lately, newest first: the fixes of the last day
    (at most a few hundred) of customers whose current answer on location-based marketing
    is a grant; of nobody else. Each names the customer by id only.

    Needs locations.read: positions of people are personal data, shown to those who
    place geofences (store operators, owners, admin keys) to check them against real
    fixes. Marketers read customer profiles and could put names to the positions;
    analysts work from aggregates; the app's public key reads nothing of anyone else.
    """
    rows = recent_fixes(session, tenant=tenant, now=now)
    public = public_ids(session, (row.customer_id for row in rows))
    return RecentFixes(
        fixes=[RecentFixPublic(customer_id=public[row.customer_id], lat=row.lat, lon=row.lon,
                               accuracy_m=row.accuracy_m, at=row.at)
               for row in rows],
        since=now - RECENT_FIX_RETENTION, limit=RECENT_FIXES_PER_TENANT,
    )
