"""Console sessions: a token only its browser holds, idle and absolute expiry, and ending
the others when the password changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from cloud.auth.members import create_member
from cloud.auth.models import Member
from cloud.auth.sessions import (
    TOUCH_RESOLUTION,
    SessionPolicy,
    close_other_sessions,
    find_session,
    open_session,
    token_hash,
)
from cloud.db import session_scope

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = SessionPolicy(idle=timedelta(minutes=30), lifetime=timedelta(hours=8))


def member(engine: Engine) -> Member:
    with session_scope(engine) as session:
        row = create_member(session, email="ana@shop.example", password="x" * 12, now=NOW)
        session.commit()
        session.refresh(row)
        session.expunge(row)
        return row


def opened(engine: Engine, who: Member, at: datetime = NOW) -> str:
    with session_scope(engine) as session:
        _row, token = open_session(session, member=who, now=at, policy=POLICY)
        session.commit()
        return token


def live(engine: Engine, token: str, at: datetime) -> bool:
    with session_scope(engine) as session:
        return find_session(session, token=token, now=at, policy=POLICY) is not None


def test_only_the_tokens_hash_is_kept(engine: Engine) -> None:
    token = opened(engine, member(engine))
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash, csrf_token FROM console_session")
                                    ).one()
    assert stored[0] == token_hash(token)
    assert token not in repr(stored)
    assert stored[1] != token
    assert len(stored[1]) >= 43


def test_a_session_ends_when_idle_too_long(engine: Engine) -> None:
    token = opened(engine, member(engine))
    assert live(engine, token, NOW + timedelta(minutes=29))
    # Used at 29 minutes: idle counts from there.
    assert live(engine, token, NOW + timedelta(minutes=58))
    assert not live(engine, token, NOW + timedelta(minutes=89))
    assert not live(engine, token, NOW + timedelta(minutes=60))  # deleted, not just refused


def test_a_session_ends_at_its_lifetime_however_busy(engine: Engine) -> None:
    token = opened(engine, member(engine))
    at = NOW
    while at < NOW + POLICY.lifetime - TOUCH_RESOLUTION:
        at += timedelta(minutes=20)
        expected = at < NOW + POLICY.lifetime
        assert live(engine, token, at) is expected


def test_unknown_tokens_find_nothing(engine: Engine) -> None:
    opened(engine, member(engine))
    assert not live(engine, "not-a-token", NOW)


def test_closing_the_others_keeps_the_one_in_use(engine: Engine) -> None:
    who = member(engine)
    keep, other, third = opened(engine, who), opened(engine, who), opened(engine, who)
    with session_scope(engine) as session:
        assert who.id is not None
        assert close_other_sessions(session, member_id=who.id, keep=token_hash(keep)) == 2
        session.commit()
    assert live(engine, keep, NOW)
    assert not live(engine, other, NOW)
    assert not live(engine, third, NOW)
