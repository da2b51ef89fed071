"""What the stores' gateways tell: footfall per day and per hour, occupancy (people present)
per minute and per hour, each gateway's health, and the messages the worker could not use
(dead letters: a tenant's own, and all of them for operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import TypeAdapter

from cloud.api.access import MayReadAnalytics, MayReadConfig, Operator
from cloud.api.deps import MAX_PAGE, SessionDep
from cloud.api.errors import refusals
from cloud.bounds import DbDatetime
from cloud.presence.analytics import FootfallRow, WindowError, footfall, footfall_hourly
from cloud.presence.crud import list_gateways, recent_dead_letters
from cloud.presence.models import DeadLetterPublic, FootfallHourPublic, GatewayHealthPublic
from cloud.presence.occupancy import OccupancyRow, Resolution, occupancy
from shared.topics import SEGMENT_PATTERN

#: Routes under /tenants/{tenant}.
router = APIRouter(tags=["presence"])
#: Deployment-wide routes, for operators.
operations = APIRouter(tags=["operations"])


def _unprocessable(error: WindowError) -> HTTPException:
    """A window the figures cannot answer, located like FastAPI's own validation errors."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"type": "value_error", "loc": ["query", error.parameter], "msg": str(error)}],
    )


#: The footfall route's answer, encoded by pydantic directly.
FOOTFALL_ROWS = TypeAdapter(list[FootfallRow])


@router.get("/analytics/footfall", response_model=list[FootfallRow])
def footfall_report(
    caller: MayReadAnalytics, session: SessionDep, tenant: str,
    since: Annotated[DbDatetime, Query(description="visits starting at or after, midnight UTC")],
    until: Annotated[DbDatetime, Query(description="visits starting before (midnight UTC)")],
    store: Annotated[str | None, Query(pattern=SEGMENT_PATTERN.pattern)] = None,
    by_zone: bool = False,
) -> Response:
    """Passers-by vs visitors (capture rate), dwell distribution, new vs repeat; per UTC
    day, for up to 366 days, from the roll-ups."""
    try:
        rows = footfall(
            session, tenant=tenant, since=since, until=until, store=store, by_zone=by_zone
        )
    except WindowError as error:
        raise _unprocessable(error) from None
    # Serialized here in one pass (a quarter of a hundred stores is 9,000 rows): FastAPI
    # would otherwise check them against the response model again and encode them twice.
    return Response(FOOTFALL_ROWS.dump_json(rows), media_type="application/json")


@router.get("/analytics/footfall/hourly", response_model=list[FootfallHourPublic])
def footfall_hourly_report(
    caller: MayReadAnalytics, session: SessionDep, tenant: str,
    since: Annotated[DbDatetime, Query(description="visits starting at or after, a whole hour")],
    until: Annotated[DbDatetime, Query(description="visits starting before (a whole hour)")],
    store: Annotated[str | None, Query(pattern=SEGMENT_PATTERN.pattern)] = None,
    zone: Annotated[str | None, Query(
        pattern=SEGMENT_PATTERN.pattern, description="one zone; without it, whole stores",
    )] = None,
) -> list[FootfallHourPublic]:
    """Devices, visitors, passers-by and capture rate per store (or zone) and UTC hour,
    for up to 31 days, from the roll-ups."""
    try:
        return footfall_hourly(
            session, tenant=tenant, since=since, until=until, store=store, zone=zone
        )
    except WindowError as error:
        raise _unprocessable(error) from None


@router.get("/analytics/occupancy", response_model=list[OccupancyRow])
def occupancy_report(
    caller: MayReadAnalytics, session: SessionDep, tenant: str,
    since: Annotated[DbDatetime, Query(description="periods starting at or after")],
    until: Annotated[DbDatetime, Query(description="periods starting before")],
    resolution: Annotated[Resolution, Query(
        description="minute (at most 2 days) or hour (at most 31 days)")] = "hour",
    store: Annotated[str | None, Query(pattern=SEGMENT_PATTERN.pattern)] = None,
    zone: Annotated[str | None, Query(
        pattern=SEGMENT_PATTERN.pattern, description="one zone; without it, whole stores",
    )] = None,
) -> list[OccupancyRow]:
    """People present per store (or zone) and UTC minute or hour, as the gateways estimate
    them from Wi-Fi probe requests (mean and peak of the minutes; the addresses heard per
    minute beside them, what counting MAC addresses would say)."""
    try:
        return occupancy(session, tenant=tenant, since=since, until=until,
                         resolution=resolution, store=store, zone=zone)
    except WindowError as error:
        raise _unprocessable(error) from None


@router.get("/gateways", response_model=list[GatewayHealthPublic])
def gateways(
    caller: MayReadAnalytics, session: SessionDep, tenant: str
) -> list[GatewayHealthPublic]:
    rows = list_gateways(session, tenant=tenant)
    return [GatewayHealthPublic.model_validate(row) for row in rows]


@router.get("/dead-letters", response_model=list[DeadLetterPublic])
def tenant_dead_letters(
    caller: MayReadConfig, session: SessionDep, tenant: str,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[DeadLetterPublic]:
    """The newest messages from this tenant's gateways that the worker could not use,
    with the reason: a gateway sending what the cloud cannot read shows up here first."""
    return [DeadLetterPublic.model_validate(row)
            for row in recent_dead_letters(session, limit=limit, tenant=tenant)]


@operations.get("/dead-letters", response_model=list[DeadLetterPublic],
                responses=refusals(401, 403, 429))
def dead_letters(
    caller: Operator, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[DeadLetterPublic]:
    """The newest messages the worker could not use, with the reason (payload not shown:
    it is kept, truncated, in the database for an operator with database access)."""
    return [DeadLetterPublic.model_validate(row)
            for row in recent_dead_letters(session, limit=limit)]
