"""The steps that change a customer rather than message them: tags, list removal, loyalty
credit, and a webhook to the shop (queued in an outbox, posted by the delivery worker).
Each is idempotent per (journey, step)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Table, delete
from sqlmodel import Session, SQLModel, col, select

from cloud.channels.email import NAME as EMAIL
from cloud.commerce.crud import find_order
from cloud.commerce.loyalty import (
    LOYALTY_TABLE,
    earning_order,
    loyalty_balance,
    settle_order_credits,
)
from cloud.commerce.models import OrderStatus
from cloud.customers.crud import record_consent
from cloud.customers.models import ConsentCreate, Customer
from cloud.db import dialect_insert
from cloud.scenarios.models import CustomerTag, Journey
from cloud.scenarios.sending import StepResult
from cloud.scenarios.spec import LoyaltyCreditStep, RemoveFromListStep, TagStep, WebhookStep
from cloud.webhooks.outbound import queue_webhook

log = logging.getLogger(__name__)

TAG_TABLE: Table = SQLModel.metadata.tables[CustomerTag.__tablename__]
#: The list whose removal also withdraws email consent in the ledger.
NEWSLETTER_LIST = "newsletter"
#: A webhook step's outcome in the journey log: queued in the outbox, posted later.
WEBHOOK_QUEUED = "webhook_queued"
#: A loyalty step's outcome when the order that would earn the credit was cancelled or
#: refunded in full before the step ran.
NOT_CREDITED = "not_credited"


def add_tags(session: Session, *, customer_id: int, tags: list[str], now: datetime) -> None:
    if tags:
        session.connection().execute(
            dialect_insert(session, TAG_TABLE).on_conflict_do_nothing(
                index_elements=["customer_id", "tag"]
            ),
            [{"customer_id": customer_id, "tag": tag, "added_at": now} for tag in tags],
        )


def remove_tags(session: Session, *, customer_id: int, tags: list[str]) -> None:
    if tags:
        session.connection().execute(
            delete(CustomerTag).where(
                col(CustomerTag.customer_id) == customer_id, col(CustomerTag.tag).in_(tags)
            )
        )


def customer_tags(session: Session, *, customer_id: int) -> list[str]:
    return sorted(session.exec(
        select(CustomerTag.tag).where(CustomerTag.customer_id == customer_id)
    ).all())


def tag_step(session: Session, *, journey: Journey, step: TagStep, now: datetime) -> StepResult:
    add_tags(session, customer_id=journey.customer_id, tags=step.add, now=now)
    remove_tags(session, customer_id=journey.customer_id, tags=step.remove)
    return StepResult("tagged", f"+{','.join(step.add)} -{','.join(step.remove)}")


def remove_from_list_step(
    session: Session, *, journey: Journey, step: RemoveFromListStep, now: datetime
) -> StepResult:
    remove_tags(session, customer_id=journey.customer_id, tags=[step.list])
    if step.list == NEWSLETTER_LIST:
        customer = session.get(Customer, journey.customer_id)
        if customer is not None:
            record_consent(session, customer=customer, now=now, data=ConsentCreate(
                channel=EMAIL, granted=False,
                source=f"scenario:{journey.scenario_key}"[:64],
            ))
    return StepResult("removed_from_list", step.list)


def loyalty_step(
    session: Session, *, journey: Journey, step: LoyaltyCreditStep, now: datetime
) -> StepResult:
    """Credit once per (journey, step); later sends of the journey can show the credit
    and the new balance (`loyalty.credit`, `loyalty.balance`).

    A journey started by an order (or its spend, coupon, conversion) credits on that
    order's account: the credit carries the order id, so that cancelling or refunding
    the order takes it back (`cloud.commerce.loyalty`). If that has already happened
    when the step runs, the order earns nothing (cancelled, refunded in full) or its
    remaining share (refunded in part: the credit, and at once the refunded share back).
    """
    order_id = earning_order(journey.context.get("trigger", {}))
    order = (find_order(session, tenant=journey.tenant, order_id=order_id)
             if order_id is not None else None)
    if order is not None and order.status != OrderStatus.PLACED:
        return StepResult(NOT_CREDITED, f"order {order.order_id} was {order.status}")
    session.connection().execute(
        dialect_insert(session, LOYALTY_TABLE)
        .values(
            tenant=journey.tenant, customer_id=journey.customer_id, amount=step.amount,
            currency=step.currency, reason=f"scenario {journey.scenario_key} step {step.id}",
            idempotency_key=f"j{journey.id}:{step.id}", created_at=now,
            order_id=order_id if order is not None else None,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    if order is not None and order.refunded > 0:
        settle_order_credits(session, order=order, cause="refund", now=now)
    balance = loyalty_balance(session, customer_id=journey.customer_id, currency=step.currency)
    journey.context = {**journey.context, "loyalty": {
        "credit": str(step.amount), "balance": str(balance), "currency": step.currency,
    }}
    return StepResult("credited", f"{step.amount} {step.currency}, balance {balance}")


def webhook_step(
    session: Session, *, journey: Journey, step: WebhookStep, now: datetime
) -> StepResult:
    """Queue a POST of the journey's facts to the shop in the outbox
    (`cloud.webhooks.outbound`); the journey goes on at once, and the delivery worker
    posts it, signed like the shop's own webhooks to us, retrying while the shop is away.

    Only ids and names travel (customer id, scenario, step, trigger kind): nothing the
    shop does not already have. The body is fixed now (`at` is when the step ran); the
    outbox adds a stable `id`, the same on every attempt, for the shop to dedupe on.
    """
    assert journey.id is not None
    webhook_id = queue_webhook(
        session, tenant=journey.tenant, customer_id=journey.customer_id,
        journey_id=journey.id, step=step.id, url=str(step.url), now=now,
        body={
            "type": "scenario.step", "tenant": journey.tenant,
            "customer_id": journey.customer_id, "scenario": journey.scenario_key,
            "step": step.id, "journey_id": journey.id, "entry": journey.entry_kind,
            "variant": journey.variant, "at": now.isoformat(),
        },
    )
    detail = "already queued" if webhook_id is None else f"outbox {webhook_id}"
    return StepResult(WEBHOOK_QUEUED, detail)
