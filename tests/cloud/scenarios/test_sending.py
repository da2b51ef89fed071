"""The send gate: quiet hours on the customer's clock (across midnight and daylight-saving
changes) and the window test behind them; and, on SQLite and PostgreSQL, transactional
sends (consent requests) past the caps and the consent check."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.customers.crud import create_customer, record_consent
from cloud.customers.models import ConsentCreate, Customer, CustomerCreate
from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.messages.queue import MessageBatch
from cloud.preferences.precedence import resolve
from cloud.scenarios import sending
from cloud.scenarios.conditions import CustomerFacts
from cloud.scenarios.lookups import Lookups
from cloud.scenarios.models import Journey, JourneyStatus
from cloud.scenarios.reasons import OUTCOME_TEXTS, outcome_reason
from cloud.scenarios.sending import (
    HELD_PAST_DEADLINE,
    Links,
    StepResult,
    hold_until,
    in_window,
    send_step,
)
from cloud.scenarios.spec import Cap, SendStep
from cloud.settings import ChannelCap, QuietHours, ScenarioSettings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
SETTINGS = ScenarioSettings()  # quiet 21:00-09:00
QUIET = SETTINGS.quiet_hours


def madrid(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MADRID)


@pytest.mark.parametrize(("clock", "start", "end", "expected"), [
    (time(22), time(21), time(9), True),
    (time(0), time(21), time(9), True),
    (time(8, 59, 59), time(21), time(9), True),
    (time(9), time(21), time(9), False),  # the end is open
    (time(21), time(21), time(9), True),  # the start is closed
    (time(12), time(21), time(9), False),
    (time(13), time(12), time(14), True),  # a window within one day
    (time(14), time(12), time(14), False),
    (time(11, 59), time(12), time(14), False),
])
def test_in_window(clock: time, start: time, end: time, expected: bool) -> None:
    assert in_window(clock, start, end) is expected


@pytest.mark.parametrize(("now", "expected"), [
    (madrid(2026, 5, 10, 12, 0), madrid(2026, 5, 10, 12, 0)),  # daytime: at once
    (madrid(2026, 5, 10, 20, 59), madrid(2026, 5, 10, 20, 59)),
    (madrid(2026, 5, 10, 21, 0), madrid(2026, 5, 11, 9, 0)),  # evening: next morning
    (madrid(2026, 5, 10, 23, 30), madrid(2026, 5, 11, 9, 0)),
    (madrid(2026, 5, 11, 0, 10), madrid(2026, 5, 11, 9, 0)),  # after midnight: same day
    (madrid(2026, 5, 11, 8, 59), madrid(2026, 5, 11, 9, 0)),
    (madrid(2026, 12, 31, 22, 0), madrid(2027, 1, 1, 9, 0)),  # across the year
    # Spring forward (29 March 2026, 02:00 -> 03:00): the night is an hour shorter.
    (madrid(2026, 3, 28, 22, 0), madrid(2026, 3, 29, 9, 0)),
    (madrid(2026, 3, 29, 1, 30), madrid(2026, 3, 29, 9, 0)),
    # Fall back (25 October 2026, 03:00 -> 02:00): an hour longer.
    (madrid(2026, 10, 24, 22, 0), madrid(2026, 10, 25, 9, 0)),
])
def test_quiet_hours_hold_until_nine_on_the_customer_clock(
    now: datetime, expected: datetime
) -> None:
    held = hold_until(now.astimezone(UTC), zone=MADRID, quiet=QUIET)
    assert held == expected
    assert held.utcoffset() == expected.utcoffset() or held.tzinfo is UTC
    assert held.astimezone(MADRID).time() in (time(9), now.time())


def test_the_hour_repeated_at_fall_back_is_quiet_both_times() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    for now in (first, second):
        assert hold_until(now, zone=MADRID, quiet=QUIET) == datetime(
            2026, 10, 25, 8, 0, tzinfo=UTC
        )


def test_quiet_hours_ending_inside_the_spring_gap_open_right_after_it() -> None:
    held = hold_until(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), zone=MADRID,
                      quiet=QuietHours(start=time(23), end=time(2, 30)))
    # 00:30 CET; 02:30 does not exist that night
    assert held == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert held > datetime(2026, 3, 28, 23, 30, tzinfo=UTC)


def test_a_tenant_with_quiet_hours_of_its_own_holds_by_them() -> None:
    settings = ScenarioSettings(tenant_quiet_hours={
        "late": QuietHours(start=time(23), end=time(8)), "never": None})
    now = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)  # 22:30 in Madrid
    opens = datetime(2026, 11, 24, 8, tzinfo=UTC)  # 09:00 in Madrid

    def held(at: datetime, tenant: str) -> datetime:
        return hold_until(at, zone=MADRID, quiet=resolve(settings, tenant=tenant).quiet_hours)

    assert held(now, "acme") == opens
    assert held(now, "late") == now
    assert held(now, "never") == now
    later = now + timedelta(hours=1)  # 23:30 in Madrid: inside the tenant's own too
    assert held(later, "late") == datetime(2026, 11, 24, 7, tzinfo=UTC)


def test_no_quiet_hours_or_an_empty_window_sends_at_once() -> None:
    now = datetime(2026, 5, 10, 22, 0, tzinfo=UTC)
    assert hold_until(now, zone=MADRID, quiet=None) == now
    assert hold_until(now, zone=MADRID, quiet=QuietHours(start=time(9), end=time(9))) == now


TENANT = "shop"
NOON = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
LINKS = Links(base_url="https://t.example", secret="s" * 32)
#: One email a day per customer, one message a day per scenario: the first marketing
#: send fills both.
TIGHT = ScenarioSettings(quiet_hours=None,
                         channel_caps={"email": ChannelCap(max=1, per=timedelta(days=1))})
SCENARIO_CAPS = [Cap(max=1, per=timedelta(days=1))]


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_scope(engine) as session:
        save_template(session, tenant=TENANT, key="mail", now=NOON,
                      spec=TemplateSpec.model_validate({
                          "channel": "email", "locale": "en-GB",
                          "parts": {"subject": "Hello", "html": "<p>{{ link }}</p>"
                                    "{{ unsubscribe_url }}",
                                    "text": "{{ link }} {{ unsubscribe_url }}"},
                      }))
        session.commit()
        yield session


def customer(session: Session, *consents: str) -> int:
    row = create_customer(session, tenant=TENANT, now=NOON, data=CustomerCreate(
        email="juan@example.com", locale="en-GB",
    ))
    for channel in consents:
        record_consent(session, customer=row, now=NOON - timedelta(days=1), data=ConsentCreate(
            channel=channel, granted=True, source="web", given_at=NOON - timedelta(days=1),
        ))
    session.commit()
    assert row.id is not None
    return row.id


def journey(session: Session, customer_id: int, name: str,
            entry_kind: str = "newsletter.signup") -> Journey:
    row = Journey(tenant=TENANT, scenario_key="newsletter", scenario_version=1,
                  customer_id=customer_id, entry_key=name, entry_kind=entry_kind,
                  status=JourneyStatus.RUNNING, started_at=NOON, updated_at=NOON)
    session.add(row)
    session.commit()
    return row


def send(session: Session, row: Journey, step: str, *, transactional: bool,
         consents: frozenset[str] = frozenset(), at: datetime = NOON,
         lookups: Lookups | None = None, settings: ScenarioSettings = TIGHT) -> StepResult:
    """One send step, in a batch of its own unless `lookups` (a batch's) is given."""
    result = send_step(
        session, journey=row, now=at, settings=settings, links=LINKS, spec_caps=SCENARIO_CAPS,
        step=SendStep(id=step, type="send", channels=["email"], template="mail",
                      transactional=transactional),
        facts=CustomerFacts(customer_id=row.customer_id, tenant=TENANT, profile={},
                            consents=consents),
        lookups=lookups or Lookups(session, now=at), messages=(messages := MessageBatch()),
    )
    messages.write(session)
    session.commit()
    return result


def test_caps_neither_count_nor_block_transactional_sends(session: Session) -> None:
    juan = customer(session, "email")
    signup, welcome = journey(session, juan, "signup"), journey(session, juan, "welcome")
    granted = frozenset({"email"})

    # Three consent requests in a day under caps of one: none is capped...
    for step in ("confirm", "reminder-1", "reminder-2"):
        assert send(session, signup, step, transactional=True).outcome == "queued"
    # ...and none counts: the day's one marketing email still goes, the next is capped.
    assert send(session, welcome, "welcome-1", transactional=False,
                consents=granted).outcome == "queued"
    capped = send(session, welcome, "welcome-2", transactional=False, consents=granted)
    assert capped.outcome == "capped"
    assert (capped.detail or "").startswith("email: 1 of 1 per")
    # A full cap does not hold back a consent request either.
    assert send(session, signup, "reminder-3", transactional=True).outcome == "queued"
    rows = session.exec(select(Message).order_by(col(Message.id))).all()
    flags = [(m.step, m.transactional) for m in rows]
    assert flags == [("confirm", True), ("reminder-1", True), ("reminder-2", True),
                     ("welcome-1", False), ("reminder-3", True)]


def test_a_consent_request_needs_no_consent_but_stops_at_a_no_given_since(
    session: Session,
) -> None:
    juan = customer(session)
    signup = journey(session, juan, "signup")
    assert send(session, signup, "confirm", transactional=True).outcome == "queued"
    assert send(session, signup, "pitch", transactional=False).outcome == "no_consent"
    row = session.get(Customer, juan)
    assert row is not None
    record_consent(session, customer=row, now=NOON + timedelta(hours=1), data=ConsentCreate(
        channel="email", granted=False, source="unsubscribe-link",
    ))
    session.commit()
    later = NOON + timedelta(days=2)
    refused = send(session, signup, "reminder-1", transactional=True, at=later)
    assert (refused.outcome, refused.message) == ("refused", None)
    # A "no" from before the journey began does not stop a new signup's request.
    again = journey(session, juan, "signup-again")
    again.started_at = NOON + timedelta(days=3)
    session.commit()
    assert send(session, again, "confirm", transactional=True,
                at=NOON + timedelta(days=3)).outcome == "queued"


def test_caps_count_what_the_same_batch_queued(session: Session) -> None:
    juan = customer(session, "email")
    welcome, again = journey(session, juan, "welcome"), journey(session, juan, "again")
    granted = frozenset({"email"})
    batch = Lookups(session, now=NOON)
    batch.preload([juan], sends_within=timedelta(days=7))

    assert send(session, welcome, "welcome", transactional=False, consents=granted,
                lookups=batch).outcome == "queued"
    # Read once for the batch, before the first send: the second is capped all the same.
    capped = send(session, again, "welcome", transactional=False, consents=granted,
                  lookups=batch)
    assert capped.outcome == "capped"


def test_the_message_records_what_the_send_time_consent_check_needs(session: Session) -> None:
    """Delivery checks consent again when it sends, from the message alone: whether a
    visit started it (location consent needed) and when a consent request began."""
    juan = customer(session, "email", "location_marketing")
    granted = frozenset({"email", "location_marketing"})
    visit = journey(session, juan, "visit", entry_kind="presence.enter")
    signup = journey(session, juan, "signup")
    signup.started_at = NOON - timedelta(hours=2)
    session.commit()
    assert send(session, visit, "greet", transactional=False, consents=granted).outcome == (
        "queued"
    )
    assert send(session, signup, "confirm", transactional=True).outcome == "queued"
    rows = session.exec(select(Message).order_by(col(Message.id))).all()
    assert [(m.step, m.location_based, m.consent_requested_at) for m in rows] == [
        ("greet", True, None), ("confirm", False, NOON - timedelta(hours=2)),
    ]


def test_a_hold_keeps_the_sends_own_deadline(session: Session) -> None:
    """Quiet hours (21:00-09:00) hold a message; its deadline still counts from the
    decision: a visit's greeting at 22:00 is worth nothing at 09:00 (not made, with its
    reason), a reminder is still worth sending then."""
    evening = NOON + timedelta(hours=10)
    granted = frozenset({"email", "location_marketing"})
    visitor, subscriber = customer(session, *granted), customer(session, "email")
    visit = journey(session, visitor, "visit", entry_kind="presence.enter")
    late = send(session, visit, "greet", transactional=False, consents=granted,
                at=evening, settings=SETTINGS)
    assert (late.outcome, late.message) == ("held_past_deadline", None)  # nor a coupon
    assert "outlast its deadline" in (late.detail or "")
    reminder = send(session, journey(session, subscriber, "signup"), "remind",
                    transactional=False, consents=frozenset({"email"}), at=evening,
                    settings=SETTINGS)
    assert reminder.outcome == "held"
    rows = session.exec(select(Message).order_by(col(Message.id))).all()
    assert [(m.step, m.status, m.expires_at) for m in rows] == [
        ("remind", MessageStatus.HELD, evening + timedelta(days=2)),
    ]


def test_every_way_a_send_is_not_made_has_its_sentence() -> None:
    """The journey log's reasons (`cloud.scenarios.reasons`) cover every outcome a send
    step can end in without sending now."""
    source = (Path(sending.__file__)).read_text(encoding="utf-8")
    outcomes = set(re.findall(r'StepResult\("([a-z_]+)"', source)) | {HELD_PAST_DEADLINE}
    assert outcomes - {"queued", "coupon_issued"} <= set(OUTCOME_TEXTS)  # the successes
    assert "not sent" in (outcome_reason(HELD_PAST_DEADLINE, "push: ...") or "")
