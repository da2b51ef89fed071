"""Whether a message may go to a customer on its channel: one rule, applied when the
scenario engine decides a send (`cloud.scenarios.sending`) and again when the delivery
worker sends it, since the answer may change in between (a quiet-hours hold, a retry,
a backlog).

- Marketing needs the customer's latest answer on the channel to be a grant.
- A transactional message is a request for consent itself (the double opt-in email and
  its reminders). It needs no grant: the customer has not answered yet, that is what it
  asks. But a "no" given since the request began is final: someone whose address was
  typed in by somebody else and who answered "not me" (the email's unsubscribe link, or
  the mailbox's one-click unsubscribe) gets no reminders. A "no" from before the request
  does not stop it: signing up again is the newer answer.

A marketing message a store visit or a geofence started (`location_based`) also needs
the customer's consent to location-based marketing, as of sending: withdrawing it while
the message waits for quiet hours to end stops it.

The address (none: failed), erasure (the customer's messages go with them) and
everything else the worker checks apply to both kinds alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from cloud.bulk import one_of
from cloud.customers.models import ConsentEntry

#: Why a message may not go: no grant on the channel (marketing)...
NO_CONSENT = "no_consent"
#: ...or a refusal given since the consent was requested (transactional)...
REFUSED = "refused"
#: ...or, for a message a visit started, no grant of location-based marketing.
NO_LOCATION_CONSENT = "no_location_consent"


@dataclass(frozen=True, slots=True)
class Answer:
    """A customer's latest answer on one channel."""

    granted: bool
    given_at: datetime


def refusal(
    *, transactional: bool, latest: Answer | None, asked_at: datetime,
    location_based: bool = False, location: Answer | None = None,
) -> str | None:
    """None when the message may go; else why not (`NO_CONSENT`, `NO_LOCATION_CONSENT`,
    `REFUSED`).

    `asked_at` is when the request began (the journey's start), which only matters for
    transactional messages; `location` is the latest answer on location-based marketing,
    which only matters for `location_based` ones.
    """
    if not transactional:
        if latest is None or not latest.granted:
            return NO_CONSENT
        if location_based and (location is None or not location.granted):
            return NO_LOCATION_CONSENT
        return None
    if latest is not None and not latest.granted and latest.given_at >= asked_at:
        return REFUSED
    return None


def latest_answers(
    session: Session, customer_ids: Sequence[int]
) -> dict[tuple[int, str], Answer]:
    """Each customer's latest answer per channel (the ledger's rule: later `given_at`
    wins, ties go to the later row)."""
    if not customer_ids:
        return {}
    # Columns, not entities: a batch reads a few rows per customer, and building ORM
    # objects for them costs more than the query.
    rows = session.exec(
        select(ConsentEntry.customer_id, ConsentEntry.channel, ConsentEntry.granted,
               ConsentEntry.given_at)
        .where(one_of(session, ConsentEntry.customer_id, customer_ids))
        .order_by(col(ConsentEntry.given_at), col(ConsentEntry.id))
    ).all()
    return {
        (customer_id, channel): Answer(granted, given_at)
        for customer_id, channel, granted, given_at in rows
    }
