"""Slowing down guessing: failed sign-ins, API keys and enrolment codes counted per
subject (an account, a key id, a client address), and after a few failures each further
try waits longer.

The first `free` failures cost nothing; from then on the subject is blocked for `base`,
growing `BACKOFF_GROWTH`-fold with every further failure up to `cap`. The count is
forgotten only after `window` passes with no failure and no block, so a guesser who
waits out each block keeps the longest wait. Counting per client address stops one
address from trying many accounts or keys; counting per account or key id stops many
addresses from trying one.

The counters live in the database (the table `login_failure`), so every API process
and host sees the same counts: a failure is one atomic upsert per subject (`INSERT ...
ON CONFLICT DO UPDATE ... RETURNING`, on PostgreSQL and SQLite alike), then at most one
conditional UPDATE that only ever lengthens a block. Two processes counting failures of
one subject at once therefore lose neither count nor block. Nothing is written for a
valid attempt, and a check is one indexed read of the subjects' rows.

Subjects are stored as SHA-256 digests: the table is no list of addresses, accounts or
key ids. Rows that stopped mattering (quiet for longer than any window may be) are
deleted now and then by the failures themselves (`prune`), so an attacker rotating
addresses does not grow the table without bound.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, case, delete, func, or_, select, update
from sqlmodel import Session, SQLModel

from cloud.auth.models import LoginFailure
from cloud.db import dialect_insert

TABLE: Table = SQLModel.metadata.tables[LoginFailure.__tablename__]

#: Each failure beyond the free ones doubles the wait: a person who mistyped twice more
#: waits a minute, a guessing script soon waits the cap for every try.
BACKOFF_GROWTH = 2
#: The longest window any setting allows (a day): a row quiet for longer than this, its
#: block included, is forgotten by every throttle, so it may be deleted.
LONGEST_WINDOW = timedelta(days=1)
#: About one failure in this many also deletes the rows that stopped mattering: often
#: enough to keep the table to the subjects active in the last day, rarely enough that
#: the (indexed) delete costs nothing per failure.
PRUNE_ONE_IN = 64


@dataclass(frozen=True, slots=True)
class Throttle:
    """How one kind of attempt is slowed (the defaults are the console sign-in's)."""

    #: Failures allowed before any waiting: a person mistyping does not wait.
    free: int = 5
    #: Quiet time after which the count starts again.
    window: timedelta = timedelta(minutes=15)
    #: The first wait, growing `BACKOFF_GROWTH`-fold per further failure...
    base: timedelta = timedelta(seconds=30)
    #: ...up to this: about 50 guesses a day per subject at the defaults.
    cap: timedelta = timedelta(minutes=30)

    def wait_after(self, failures: int) -> timedelta | None:
        """How long a subject waits after its `failures`-th failure; None while free."""
        beyond = failures - self.free
        if beyond <= 0:
            return None
        # The exponent is bounded so that a huge count cannot overflow the timedelta.
        wait: timedelta = self.base * (BACKOFF_GROWTH ** min(beyond - 1, 20))
        return min(self.cap, wait)


def subject(kind: str, value: str) -> str:
    """The stored key of one counted subject, e.g. ("account", an email address)."""
    return hashlib.sha256(f"{kind}:{value.lower()}".encode()).hexdigest()


def blocked_for(session: Session, *, subjects: Sequence[str], now: datetime) -> timedelta | None:
    """How long the longest block among `subjects` still lasts; None when none is blocked."""
    if not subjects:
        return None
    until = session.connection().execute(
        select(func.max(TABLE.c.blocked_until))
        .where(TABLE.c.subject.in_(list(subjects)), TABLE.c.blocked_until > now)
    ).scalar_one_or_none()
    return None if until is None else until - now


def record_failure(
    session: Session, *, subjects: Sequence[str], now: datetime, throttle: Throttle,
    rng: random.Random | None = None,
) -> timedelta | None:
    """Count a failure against each subject; the longest block it started (None if
    none). The caller commits."""
    quiet_since = now - throttle.window
    stale = and_(TABLE.c.last_at < quiet_since,
                 or_(TABLE.c.blocked_until.is_(None), TABLE.c.blocked_until < quiet_since))
    longest: timedelta | None = None
    connection = session.connection()
    for key in subjects:
        upsert = dialect_insert(session, TABLE).values(
            subject=key, failures=1, last_at=now, blocked_until=None)
        failures = connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[TABLE.c.subject],
                set_={
                    "failures": case((stale, 1), else_=TABLE.c.failures + 1),
                    "blocked_until": case((stale, None), else_=TABLE.c.blocked_until),
                    "last_at": now,
                },
            ).returning(TABLE.c.failures)
        ).scalar_one()
        wait = throttle.wait_after(int(failures))
        if wait is None:
            continue
        until = now + wait
        connection.execute(
            update(TABLE).where(TABLE.c.subject == key)
            .where(or_(TABLE.c.blocked_until.is_(None), TABLE.c.blocked_until < until))
            .values(blocked_until=until)
        )
        longest = wait if longest is None or wait > longest else longest
    if (rng or random).randrange(PRUNE_ONE_IN) == 0:
        prune(session, now=now)
    return longest


def clear(session: Session, *, subject_key: str) -> None:
    """Forget a subject's failures (a success of its account). The caller commits."""
    session.connection().execute(delete(TABLE).where(TABLE.c.subject == subject_key))


def prune(session: Session, *, now: datetime) -> int:
    """Delete the rows no throttle still counts (quiet, block included, for longer than
    the longest window); returns how many. The caller commits."""
    cutoff = now - LONGEST_WINDOW
    result = session.connection().execute(
        delete(TABLE).where(
            TABLE.c.last_at < cutoff,
            or_(TABLE.c.blocked_until.is_(None), TABLE.c.blocked_until < cutoff),
        )
    )
    return int(result.rowcount)
