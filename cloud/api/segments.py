"""Segment routes: save (a new version), list, read with older versions, archive, and
count the members (now, and the daily trend).

Segments are written by those who write scenarios (`MayWriteScenarios`: they are the
scenarios' audience) and read by every member; counting members is analytics. A segment
is never deleted: DELETE archives it, and is refused (409, naming them) while active
scenarios, active offers or other segments name it; its versions stay, so reports keep
naming the definition that decided each journey.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlmodel import Session, col, select

from cloud.api.access import MayReadAnalytics, MayReadConfig, MayWriteScenarios
from cloud.api.audit import Audit
from cloud.api.deps import MAX_PAGE, NowDep, SessionDep
from cloud.api.errors import refusals
from cloud.api.scenarios import unprocessable
from cloud.scenarios.conditions import SegmentCondition
from cloud.scenarios.membership import count_members
from cloud.scenarios.models import Scenario
from cloud.scenarios.segments import (
    CONDITION,
    SegmentCountPublic,
    SegmentCreate,
    SegmentDay,
    SegmentPublic,
    SegmentVersionPublic,
    build_book,
    public,
    public_version,
    referrers,
    segment_problems,
)
from cloud.segments import crud
from cloud.segments.models import SEGMENT_KEY_PATTERN, Segment

router = APIRouter(tags=["segments"])

KeyPath = Annotated[str, Path(pattern=SEGMENT_KEY_PATTERN, description="the segment's key")]
#: The longest trend one request returns.
MAX_TREND_DAYS = 366


def _segment(session: Session, tenant: str, key: str) -> Segment:
    row = crud.get_segment(session, tenant=tenant, key=key)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"segment {key!r} not found")
    return row


@router.put("/segments/{key}", response_model=SegmentPublic)
def put_segment(
    caller: MayWriteScenarios, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: KeyPath, segment: SegmentCreate,
) -> SegmentPublic:
    """Save a segment (a new version when it exists; an archived one comes back). Every
    scenario and offer naming it goes by the new version from the next batch on. 422 for
    a `trigger` condition, a segment named that does not exist (with the nearest), a
    cycle of segments (named), references too deep or too many conditions."""
    book = build_book(crud.list_segments(session, tenant=tenant, lock="update"))
    active = session.exec(select(Scenario).where(Scenario.tenant == tenant,
                                                 col(Scenario.active).is_(True))).all()
    problems = segment_problems(key, segment, book, active)
    if problems:
        raise unprocessable(problems)
    found = crud.get_segment(session, tenant=tenant, key=key)
    before = public(found) if found is not None else None
    row = crud.save_segment(
        session, tenant=tenant, key=key, name=segment.name, description=segment.description,
        conditions=CONDITION.dump_python(segment.conditions, mode="json", by_alias=True,
                                         exclude_none=True),
        now=now,
    )
    after = public(row)
    audit.record("segment.put", f"segment:{key}", before=before, after=after)
    session.commit()
    return after


@router.get("/segments", response_model=list[SegmentPublic])
def list_segments(
    caller: MayReadConfig, session: SessionDep, tenant: str, include_archived: bool = False,
) -> list[SegmentPublic]:
    """The tenant's segments by key; archived ones only with `include_archived`."""
    return [public(row) for row in crud.list_segments(
        session, tenant=tenant, include_archived=include_archived)]


@router.get("/segments/{key}", response_model=SegmentPublic)
def get_segment(
    caller: MayReadConfig, session: SessionDep, tenant: str, key: KeyPath
) -> SegmentPublic:
    return public(_segment(session, tenant, key))


@router.get("/segments/{key}/versions", response_model=list[SegmentVersionPublic])
def get_segment_versions(
    caller: MayReadConfig, session: SessionDep, tenant: str, key: KeyPath,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[SegmentVersionPublic]:
    """The definitions the segment has had, newest first: what a scenario report's
    segment versions refer to."""
    _segment(session, tenant, key)
    return [public_version(row)
            for row in crud.segment_versions(session, tenant=tenant, key=key, limit=limit)]


@router.delete("/segments/{key}", response_model=SegmentPublic, responses=refusals(409))
def archive_segment(
    caller: MayWriteScenarios, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: KeyPath,
) -> SegmentPublic:
    """Archive the segment: nothing may name it any more; its versions and counts stay.
    409 while active scenarios, active offers or other segments name it (listed)."""
    crud.list_segments(session, tenant=tenant, lock="update")  # no save may name it meanwhile
    row = _segment(session, tenant, key)
    named_by = referrers(session, tenant=tenant, key=key)
    if named_by:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"segment {key!r} is named by {', '.join(named_by)}: change or "
                            "switch those off first")
    before = public(row)
    crud.archive_segment(session, segment=row, now=now)
    after = public(row)
    audit.record("segment.archive", f"segment:{key}", before=before, after=after)
    session.commit()
    return after


@router.get("/segments/{key}/count", response_model=SegmentCountPublic)
def count_segment(
    caller: MayReadAnalytics, session: SessionDep, now: NowDep, tenant: str, key: KeyPath,
    days: Annotated[int, Query(ge=0, le=MAX_TREND_DAYS,
                               description="how many days of daily counts, today's included")
                    ] = 30,
) -> SegmentCountPublic:
    """How many customers are in the segment now (counted for this request, over every
    customer of the tenant), and the daily counts of the last `days` days. 404 for an
    archived segment: nothing decides by it any more."""
    row = _segment(session, tenant, key)
    if row.archived:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"segment {key!r} is archived")
    book = build_book(crud.list_segments(session, tenant=tenant))
    counts = count_members(session, tenant=tenant, conditions={key: SegmentCondition(segment=key)},
                           segments=book, now=now)
    trend = crud.count_history(session, tenant=tenant, key=key,
                               since=now.date() - timedelta(days=max(days - 1, 0))) if days else []
    return SegmentCountPublic(
        segment=key, version=book[key].version, members=counts.members[key],
        customers=counts.customers, counted_at=now,
        trend=[SegmentDay(day=one.day, version=one.version, members=one.members,
                          customers=one.customers) for one in trend],
    )
