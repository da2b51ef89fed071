"""A send step, through every rule a send must pass, into the durable send queue.

In order: the variant's template and offer; the offer itself (none left, or only for
something the customer already bought: nothing is sent); the first channel with consent
(plus consent to location marketing when a store visit or geofence started the journey)
and an address; the frequency caps (per channel, and the scenario's own); the template
for the customer's language with every field it needs; quiet hours (the store's, else
the tenant's, else the deployment's) on the customer's clock (else the store's, the
tenant's, the deployment's: `cloud.preferences.precedence`), held until they end, not
dropped; and an idempotency key made of journey and step, so a step run twice (a
replayed trigger, a worker that died before committing) queues one message. Every
decision, sent or not, is written to the journey log. Messages are inserted with the rest
of their batch's (`MessageBatch`), in its transaction.

A transactional step (a request for consent itself: the double opt-in email) needs no
marketing consent on the channel, only no "no" since the journey began (the rule is
`cloud.customers.consent`'s, which the delivery worker applies again at send time); it is
never capped, and the messages it queues count towards no cap.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from cloud.channels import LOCATION_MARKETING, ProfileAddress, adapter_for
from cloud.customers.consent import latest_answers, refusal
from cloud.customers.models import Customer
from cloud.messages.queue import MessageBatch, Outgoing, PendingMessage
from cloud.messages.tokens import new_tracking_token, tracked_link, unsubscribe_url
from cloud.offers.crud import issue_coupon
from cloud.offers.models import Coupon, Offer
from cloud.places.models import StoreRow
from cloud.preferences.precedence import resolve
from cloud.scenarios.conditions import NO_SEGMENTS, CustomerFacts, SegmentBook
from cloud.scenarios.lookups import Lookups, RecentSend
from cloud.scenarios.models import Journey
from cloud.scenarios.offers import choose_offer
from cloud.scenarios.spec import Cap, CouponChoice, OfferChoice, SendStep
from cloud.settings import QuietHours, ScenarioSettings
from cloud.templates import (
    Coupon as CouponContext,
)
from cloud.templates import (
    Customer as CustomerContext,
)
from cloud.templates import (
    Loyalty,
    Money,
    PersonalisationContext,
    Product,
    Store,
    TemplateError,
    render,
)
from cloud.templates import (
    Offer as OfferContext,
)
from cloud.templates.context import present_fields
from cloud.triggers import LOCATION_KINDS

LOCATION_KIND_VALUES = frozenset(kind.value for kind in LOCATION_KINDS)
#: The journey-log outcome of a send that quiet hours would hold past its deadline (the
#: funnel counts these as expired).
HELD_PAST_DEADLINE = "held_past_deadline"
#: How long a send started by a visit or a geofence stays worth making when its step does
#: not say: about as long as a visit; after that the customer has gone.
LOCATION_WORTH = timedelta(minutes=30)
#: The same for every other send (a cart reminder, a birthday): still relevant the next
#: day, stale after an outage or a hold of days.
REMINDER_WORTH = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Links:
    """How tracked links and unsubscribe pages are addressed."""

    base_url: str
    secret: str

    def token(self, idempotency_key: str) -> str:
        return new_tracking_token(idempotency_key, self.secret)

    def click(self, token: str) -> str:
        return tracked_link(self.base_url, token)

    def unsubscribe(self, token: str) -> str:
        return unsubscribe_url(self.base_url, token)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step did: `outcome` goes to the journey log; `message`, a message queued
    in the batch (its id comes when the batch is written; a key taken before makes it
    a duplicate then)."""

    outcome: str
    detail: str | None = None
    message: PendingMessage | None = None


def send_step(
    session: Session,
    *,
    journey: Journey,
    step: SendStep,
    spec_caps: Sequence[Cap],
    facts: CustomerFacts,
    lookups: Lookups,
    messages: MessageBatch,
    settings: ScenarioSettings,
    links: Links,
    now: datetime,
    segments: SegmentBook = NO_SEGMENTS,
) -> StepResult:
    """Run one send step for `journey`; see the module docstring for the order of checks.
    What it reads besides the offer comes from `lookups` (loaded once for the batch);
    the message joins `messages`, written with the batch's others."""
    assert journey.id is not None
    override = step.variants.get(journey.variant or "") if journey.variant else None
    template_key = (override.template if override and override.template else step.template)
    offer_choice = override.offer if override and override.offer else step.offer
    key = f"j{journey.id}:{step.id}"

    offer: Offer | None = None
    if offer_choice is not None:
        offer = choose_offer(
            lookups, choice=offer_choice, journey=journey, facts=facts, now=now,
            segments=segments,
        )
        if offer is None:
            return StepResult("no_offer", _describe_choice(offer_choice))

    customer = lookups.customer(journey.customer_id)
    if customer is None:
        return StepResult("no_customer")
    channel, refusal = _pick_channel(
        session, step=step, journey=journey, customer=customer, facts=facts, lookups=lookups
    )
    if channel is None:
        return StepResult(refusal or "no_channel", ", ".join(step.channels))
    if not step.transactional:
        capped = _capped(lookups, journey=journey, channel=channel, scenario_caps=spec_caps,
                         settings=settings, now=now)
        if capped is not None:
            return StepResult("capped", capped)

    template = lookups.template(journey.tenant, template_key, channel, customer.locale)
    if template is None:
        return StepResult("no_template", f"{template_key} ({channel})")

    store = _store(lookups, journey)
    rules = resolve(settings, tenant=journey.tenant, customer_zone=customer.time_zone,
                    tenant_own=lookups.tenant_rules(journey.tenant),
                    store=store.rules if store is not None else None)
    zone = rules.zone
    not_before = hold_until(now, zone=zone, quiet=rules.quiet_hours)
    # The deadline counts from the decision, not from the end of a hold: quiet hours do
    # not make a "you are at the store" push worth sending the next morning. A send held
    # past it is not made at all (no coupon is spent on it).
    expires_at = now + worth_sending(step, journey)
    if expires_at <= not_before:
        return StepResult(HELD_PAST_DEADLINE, f"{channel}: quiet hours until "
                          f"{not_before.isoformat()} outlast its deadline, "
                          f"{expires_at.isoformat()}")

    coupon: Coupon | None = None
    if offer is not None and step.coupon is not None:
        # Valid from when it can reach the customer: a hold does not eat into it.
        coupon = _coupon(session, journey=journey, offer=offer, choice=step.coupon, key=key,
                         now=now, valid_from=not_before)
        if coupon is None:
            return StepResult("offer_exhausted", offer.key)

    token = links.token(key)
    context = _context(
        store, customer=customer, journey=journey, offer=offer, coupon=coupon, zone=zone,
        link=links.click(token), unsubscribe=links.unsubscribe(token), settings=settings,
    )
    missing = sorted(template.fields - present_fields(context))
    if missing:
        return StepResult("missing_field", ", ".join(missing))
    try:
        content = render(template, context)
    except TemplateError as error:
        return StepResult("render_failed", str(error)[:500])

    target = str(step.link_url) if step.link_url else (offer.product_url if offer else None)
    message = messages.add(now=now, outgoing=Outgoing(
        tenant=journey.tenant, customer_id=journey.customer_id,
        channel=channel, content=content, idempotency_key=key,
        rule=f"scenario:{journey.scenario_key}", transactional=step.transactional,
        location_based=_location_based(journey),
        consent_requested_at=journey.started_at if step.transactional else None,
        not_before=not_before, expires_at=expires_at,
        tracking_token=token, target_url=target, scenario=journey.scenario_key, step=step.id,
        journey_id=journey.id, variant=journey.variant,
        offer_id=offer.id if offer else None, coupon_id=coupon.id if coupon else None,
        product_sku=offer.sku if offer else None,
        product_category=offer.category if offer else None,
        store=journey.context.get("trigger", {}).get("store"),
    ))
    if not step.transactional:
        lookups.record_send(journey.customer_id, RecentSend(now, channel, journey.scenario_key))
    _remember(journey, offer=offer, coupon=coupon)
    held = not_before > now
    detail = channel + (f", held until {not_before.isoformat()}" if held else "")
    return StepResult("held" if held else "queued", detail, message)


def worth_sending(step: SendStep, journey: Journey) -> timedelta:
    """How long after the decision a send is still worth making: the step's own
    `expires_after`, else by kind (`LOCATION_WORTH`, `REMINDER_WORTH`)."""
    if step.expires_after is not None:
        return step.expires_after
    return LOCATION_WORTH if _location_based(journey) else REMINDER_WORTH


def issue_coupon_step(
    session: Session, lookups: Lookups, *, journey: Journey, step_id: str,
    choice: OfferChoice, coupon: CouponChoice, facts: CustomerFacts, now: datetime,
    segments: SegmentBook = NO_SEGMENTS,
) -> StepResult:
    offer = choose_offer(lookups, choice=choice, journey=journey, facts=facts, now=now,
                         segments=segments)
    if offer is None:
        return StepResult("no_offer", _describe_choice(choice))
    issued = _coupon(session, journey=journey, offer=offer, choice=coupon,
                     key=f"j{journey.id}:{step_id}", now=now)
    if issued is None:
        return StepResult("offer_exhausted", offer.key)
    _remember(journey, offer=offer, coupon=issued)
    return StepResult("coupon_issued", offer.key)


def _describe_choice(choice: OfferChoice) -> str:
    return choice.model_dump_json(exclude_defaults=True)[:500]


def _coupon(session: Session, *, journey: Journey, offer: Offer, choice: CouponChoice,
            key: str, now: datetime, valid_from: datetime | None = None) -> Coupon | None:
    return issue_coupon(
        session, tenant=journey.tenant, customer_id=journey.customer_id, offer=offer,
        valid_for=choice.valid_for, idempotency_key=key, now=now, valid_from=valid_from,
    )


def _remember(journey: Journey, *, offer: Offer | None, coupon: Coupon | None) -> None:
    context = dict(journey.context)
    if offer is not None:
        context["offer_id"] = offer.id
    if coupon is not None:
        context["coupon_id"] = coupon.id
    journey.context = context


def _pick_channel(
    session: Session, *, step: SendStep, journey: Journey, customer: Customer,
    facts: CustomerFacts, lookups: Lookups,
) -> tuple[str | None, str | None]:
    """The first channel of the step's list the customer may and can be reached on."""
    if _location_based(journey) and LOCATION_MARKETING not in facts.consents:
        return None, "no_location_consent"
    refused = "no_consent"
    answers = latest_answers(session, [journey.customer_id]) if step.transactional else {}
    for channel in step.channels:
        consent = adapter_for(channel).consent
        if step.transactional:
            why = refusal(
                transactional=True, asked_at=journey.started_at,
                latest=answers.get((journey.customer_id, consent)),
            )
            if why is not None:
                refused = why
                continue
        elif consent not in facts.consents:
            continue
        if has_address(lookups, customer=customer, channel=channel):
            return channel, None
        refused = "no_address"
    return None, refused


def _location_based(journey: Journey) -> bool:
    """Whether a store visit or a geofence started the journey."""
    return journey.entry_kind in LOCATION_KIND_VALUES


def has_address(lookups: Lookups, *, customer: Customer, channel: str) -> bool:
    address = adapter_for(channel).address
    if isinstance(address, ProfileAddress):
        return bool(getattr(customer, address.field))
    assert customer.id is not None
    return lookups.has_device(customer.id, address.kind)


def _capped(
    lookups: Lookups, *, journey: Journey, channel: str, scenario_caps: Sequence[Cap],
    settings: ScenarioSettings, now: datetime,
) -> str | None:
    """Which cap this send would break, if any (rolling windows ending now)."""
    channel_cap = settings.channel_caps.get(channel)
    if channel_cap is not None:
        sent = lookups.sent_since(journey.customer_id, now - channel_cap.per, channel=channel)
        if sent >= channel_cap.max:
            return f"{channel}: {sent} of {channel_cap.max} per {channel_cap.per}"
    for cap in scenario_caps:
        sent = lookups.sent_since(journey.customer_id, now - cap.per,
                                  scenario=journey.scenario_key)
        if sent >= cap.max:
            return f"scenario: {sent} of {cap.max} per {cap.per}"
    return None


def cap_window(settings: ScenarioSettings, caps: Iterable[Cap]) -> timedelta:
    """The longest window any cap of a batch looks back over."""
    return max([*(cap.per for cap in settings.channel_caps.values()),
                *(cap.per for cap in caps)], default=timedelta(0))


def store_key(journey: Journey) -> str | None:
    """The key of the store the journey is about (a visit's), if any."""
    key = journey.context.get("trigger", {}).get("store")
    return key if isinstance(key, str) else None


def _store(lookups: Lookups, journey: Journey) -> StoreRow | None:
    key = store_key(journey)
    return lookups.store(journey.tenant, key) if key is not None else None


def hold_until(now: datetime, *, zone: zoneinfo.ZoneInfo, quiet: QuietHours | None
               ) -> datetime:
    """`now`, or when `quiet` (the hours `cloud.preferences.precedence.resolve` chose,
    None for none) ends on the clock of `zone` if `now` falls inside it."""
    if quiet is None or quiet.start == quiet.end:
        return now
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if not in_window(clock, quiet.start, quiet.end):
        return now
    day = local.date() if clock < quiet.end else local.date() + timedelta(days=1)
    opens = datetime.combine(day, quiet.end, tzinfo=zone)
    # On a DST change the wall-clock time may not exist; normalising through UTC picks
    # the instant after the gap.
    return max(now, opens.astimezone(UTC))


def in_window(clock: time, start: time, end: time) -> bool:
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # the window spans midnight


def _context(
    store: StoreRow | None, *, customer: Customer, journey: Journey, offer: Offer | None,
    coupon: Coupon | None, zone: zoneinfo.ZoneInfo, link: str, unsubscribe: str,
    settings: ScenarioSettings,
) -> PersonalisationContext:
    values: dict[str, Any] = {
        "customer": CustomerContext(
            first_name=(customer.first_name or settings.fallback_first_name)[:30],
            last_name=customer.last_name[:40] if customer.last_name else None,
            time_zone=zone.key,
        ),
        "link": link,
        "unsubscribe_url": unsubscribe,
    }
    store_key = journey.context.get("trigger", {}).get("store")
    if isinstance(store_key, str):
        values["store"] = Store(name=(store.name if store is not None else store_key)[:60])
    if offer is not None:
        values["product"] = Product(
            name=offer.product_name, url=offer.product_url, image_url=offer.image_url,
            price=Money(amount=offer.price, currency=offer.currency),
        )
        values["offer"] = OfferContext(discount_percent=offer.discount_percent)
    if coupon is not None:
        values["coupon"] = CouponContext(code=coupon.code, expires_at=coupon.expires_at)
    loyalty = journey.context.get("loyalty")
    if isinstance(loyalty, dict):
        currency = loyalty["currency"]
        values["loyalty"] = Loyalty(
            credit=Money(amount=Decimal(loyalty["credit"]), currency=currency),
            balance=Money(amount=Decimal(loyalty["balance"]), currency=currency),
        )
    return PersonalisationContext(**values)
