"""Slowing down password guessing: failed sign-ins counted per account and per client
address, and after a few of them each further try waits longer.

The first `free` failures cost nothing; from then on the subject is blocked for `base`,
doubling with every further failure up to `cap`. The count is forgotten only after
`window` passes with no failure and no block, so a guesser who waits out each block
keeps the longest wait: about 50 guesses a day per account at the defaults. A sign-in
while blocked is refused (429 with Retry-After) without checking the password, right or
wrong: otherwise the block would only slow down the wrong guesses. A success clears the
account's count. Counting per client address as well stops one address from trying
many accounts; counting per account stops many addresses from trying one.

Subjects are stored as SHA-256 digests: the table is no list of addresses or accounts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from cloud.auth.models import LoginFailure


@dataclass(frozen=True, slots=True)
class Throttle:
    #: Failures allowed before any waiting: a person mistyping does not wait.
    free: int = 5
    #: Quiet time after which the count starts again.
    window: timedelta = timedelta(minutes=15)
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)


def subject(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value.lower()}".encode()).hexdigest()


def blocked_for(session: Session, *, subjects: list[str], now: datetime) -> timedelta | None:
    """How long the longest block among `subjects` still lasts; None when none is blocked."""
    longest: timedelta | None = None
    for key in subjects:
        row = session.get(LoginFailure, key)
        if row is not None and row.blocked_until is not None and row.blocked_until > now:
            left = row.blocked_until - now
            longest = left if longest is None or left > longest else longest
    return longest


def record_failure(
    session: Session, *, subjects: list[str], now: datetime, throttle: Throttle
) -> None:
    for key in subjects:
        row = session.get(LoginFailure, key)
        if row is None:
            row = LoginFailure(subject=key, failures=0, last_at=now)
        elif now - max(row.last_at, row.blocked_until or row.last_at) > throttle.window:
            row.failures, row.blocked_until = 0, None
        row.failures += 1
        row.last_at = now
        beyond = row.failures - throttle.free
        if beyond > 0:
            wait = min(throttle.cap, throttle.base * (2 ** min(beyond - 1, 20)))
            row.blocked_until = now + wait
        session.add(row)
    session.flush()


def clear(session: Session, *, subject_key: str) -> None:
    row = session.get(LoginFailure, subject_key)
    if row is not None:
        session.delete(row)
        session.flush()
