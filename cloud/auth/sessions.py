"""Console sessions: a random token in an HttpOnly cookie, its SHA-256 in the database.

A session ends when it has been idle for longer than `idle`, at the latest `lifetime`
after sign-in, when its member signs out, or when the member's password changes (every
other session of theirs is ended then). Each session has its own CSRF token, which the
console sends back with every change it asks for (`X-CSRF-Token`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col

from cloud.auth.models import ConsoleSession, Member

#: 256 bits: the cookie cannot be guessed.
TOKEN_BYTES = 32
#: The last-seen time is written at most this often (idle expiry needs no finer grain).
TOUCH_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(hours=1)
    lifetime: timedelta = timedelta(hours=12)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session, *, member: Member, now: datetime, policy: SessionPolicy
) -> tuple[ConsoleSession, str]:
    """A new session for `member`; returns the row and the token for the cookie (shown
    once: only its hash is kept)."""
    assert member.id is not None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = ConsoleSession(
        token_hash=token_hash(token), member_id=member.id,
        csrf_token=secrets.token_urlsafe(TOKEN_BYTES), created_at=now, last_seen_at=now,
        expires_at=now + policy.lifetime,
    )
    session.add(row)
    session.flush()
    return row, token


def find_session(
    session: Session, *, token: str, now: datetime, policy: SessionPolicy
) -> tuple[ConsoleSession, Member] | None:
    """The live session the cookie stands for, and its member; None when there is none
    (unknown, expired, idle too long: an expired one is deleted on the way)."""
    row = session.get(ConsoleSession, token_hash(token))
    if row is None:
        return None
    if now >= row.expires_at or now - row.last_seen_at > policy.idle:
        session.delete(row)
        session.commit()
        return None
    member = session.get(Member, row.member_id)
    if member is None:
        return None
    if now - row.last_seen_at >= TOUCH_RESOLUTION:
        session.exec(
            update(ConsoleSession).where(col(ConsoleSession.token_hash) == row.token_hash)
            .values(last_seen_at=now)
        )
        session.commit()
    return row, member


def close_session(session: Session, *, token_hash_value: str) -> None:
    session.exec(
        delete(ConsoleSession).where(col(ConsoleSession.token_hash) == token_hash_value)
    )


def close_other_sessions(session: Session, *, member_id: int, keep: str | None) -> int:
    """End every session of the member but `keep` (a token hash); how many."""
    statement = delete(ConsoleSession).where(col(ConsoleSession.member_id) == member_id)
    if keep is not None:
        statement = statement.where(col(ConsoleSession.token_hash) != keep)
    return int(session.exec(statement).rowcount)
