"""Reading and writing segments: a save is a new version (kept in `segment_version`),
archiving takes a segment out of use without losing its history, and the daily counts
are written once per segment and day whichever worker gets there first."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import Table, text
from sqlmodel import Session, SQLModel, col, select

from cloud.db import dialect_insert
from cloud.segments.models import Segment, SegmentCount, SegmentVersion

SEGMENT_COUNT_TABLE: Table = SQLModel.metadata.tables[SegmentCount.__tablename__]


def get_segment(session: Session, *, tenant: str, key: str) -> Segment | None:
    return session.exec(
        select(Segment).where(Segment.tenant == tenant, Segment.key == key)
    ).first()


def list_segments(
    session: Session, *, tenant: str, include_archived: bool = False,
    lock: Literal["update", "share"] | None = None,
) -> Sequence[Segment]:
    """The tenant's segments by key, locked for the caller's transaction with `lock`
    (PostgreSQL; SQLite serialises writers anyway). A segment's save takes them for
    update, so saves checking references run one at a time and two cannot each pass the
    cycle check and together close a cycle; a scenario's or an offer's save takes them
    shared, so a segment it names cannot be archived before it commits."""
    query = select(Segment).where(Segment.tenant == tenant)
    if not include_archived:
        query = query.where(col(Segment.archived).is_(False))
    query = query.order_by(col(Segment.key))
    if lock is not None:
        query = query.with_for_update(read=lock == "share")
    return session.exec(query).all()


def save_segment(
    session: Session, *, tenant: str, key: str, name: str, description: str,
    conditions: Mapping[str, Any], now: datetime,
) -> Segment:
    """Create the segment, or save a new version of it (bringing an archived one back);
    the version is also kept in `segment_version`."""
    existing = get_segment(session, tenant=tenant, key=key)
    data = dict(conditions)
    if existing is None:
        segment = Segment(tenant=tenant, key=key, name=name, description=description,
                          version=1, conditions=data, created_at=now, updated_at=now)
    else:
        segment = existing
        segment.version += 1
        segment.name, segment.description, segment.conditions = name, description, data
        segment.archived, segment.updated_at = False, now
    session.add(segment)
    session.add(SegmentVersion(tenant=tenant, key=key, version=segment.version, name=name,
                               description=description, conditions=data, saved_at=now))
    session.flush()
    return segment


def archive_segment(session: Session, *, segment: Segment, now: datetime) -> Segment:
    """Take the segment out of use (nothing may name it any more); its versions and
    counts stay. The version moves on, so every worker's catalog sees the change."""
    if not segment.archived:
        segment.archived, segment.version, segment.updated_at = True, segment.version + 1, now
        session.add(segment)
        session.flush()
    return segment


def segment_versions(
    session: Session, *, tenant: str, key: str, limit: int
) -> Sequence[SegmentVersion]:
    """The segment's saved definitions, newest first."""
    return session.exec(
        select(SegmentVersion)
        .where(SegmentVersion.tenant == tenant, SegmentVersion.key == key)
        .order_by(col(SegmentVersion.version).desc()).limit(limit)
    ).all()


def tenants_with_segments(session: Session) -> list[str]:
    return sorted(session.exec(
        select(Segment.tenant).where(col(Segment.archived).is_(False)).distinct()
    ).all())


def claim_counting(session: Session, *, tenant: str) -> bool:
    """Whether this transaction may count the tenant's segments: on PostgreSQL it takes
    the tenant's counting lock unless another worker holds it (then False: that one is
    counting). No segment row is locked, so saves never wait for a count. SQLite runs
    one writing transaction at a time anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    key = zlib.crc32(f"segment-count/{tenant}".encode())
    return bool(session.connection().execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}).scalar())


def uncounted_segments(session: Session, *, tenant: str, day: date) -> Sequence[Segment]:
    """The tenant's segments in use without a count for `day`."""
    counted = select(SegmentCount.key).where(SegmentCount.tenant == tenant,
                                             SegmentCount.day == day)
    return session.exec(
        select(Segment).where(Segment.tenant == tenant, col(Segment.archived).is_(False),
                              col(Segment.key).not_in(counted))
        .order_by(col(Segment.key))
    ).all()


def record_count(
    session: Session, *, tenant: str, key: str, day: date, version: int, members: int,
    customers: int, now: datetime,
) -> bool:
    """Store the day's count unless one is stored already; whether this one was."""
    inserted = session.connection().execute(
        dialect_insert(session, SEGMENT_COUNT_TABLE)
        .values(tenant=tenant, key=key, day=day, version=version, members=members,
                customers=customers, counted_at=now)
        .on_conflict_do_nothing(index_elements=["tenant", "key", "day"])
    )
    return bool(inserted.rowcount)


def count_history(
    session: Session, *, tenant: str, key: str, since: date
) -> Sequence[SegmentCount]:
    """The daily counts from `since` on, oldest first."""
    return session.exec(
        select(SegmentCount)
        .where(SegmentCount.tenant == tenant, SegmentCount.key == key,
               col(SegmentCount.day) >= since)
        .order_by(col(SegmentCount.day))
    ).all()
