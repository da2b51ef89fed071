"""A tenant's messages: a customer's, each one's provider calls, and opens the app reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from cloud.api.access import (
    CustomerTokenClaims,
    MayReadAnalytics,
    MayReadCustomers,
    MayReportOpens,
    needs_customer_token,
)
from cloud.api.customers import CustomerDep
from cloud.api.deps import MAX_PAGE, NowDep, ScenarioWake, SessionDep
from cloud.bounds import DbDatetime, RowId
from cloud.customers.models import Customer
from cloud.examples import example
from cloud.messages.crud import messages_for_customer
from cloud.messages.models import Message, MessageAttempt, MessageAttemptPublic, MessagePublic
from cloud.messages.reasons import message_reason
from cloud.tracking.events import record_open_by_id

router = APIRouter(tags=["messages"])


@router.get("/customers/{customer_id}/messages", response_model=list[MessagePublic])
def list_messages(
    caller: MayReadCustomers, session: SessionDep, customer: CustomerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[MessagePublic]:
    assert customer.id is not None
    rows = messages_for_customer(session, customer_id=customer.id, limit=limit)
    return [MessagePublic.model_validate(row, update={"customer_id": customer.public_id,
                                                      "reason": message_reason(row)})
            for row in rows]


class OpenedBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"opened_at": "2026-12-07T10:16:00Z"},
    ))

    opened_at: DbDatetime | None = Field(
        default=None, description="when the customer opened it; defaults to now"
    )


class MessageOpened(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"message_id": 31337, "opened_at": "2026-12-07T10:16:00Z"},
    ))

    message_id: int
    opened_at: datetime | None


@router.post("/messages/{message_id}/opened", response_model=MessageOpened)
def message_opened(
    caller: MayReportOpens, claims: CustomerTokenClaims, session: SessionDep, now: NowDep,
    wake: ScenarioWake, tenant: str, message_id: RowId,
    body: OpenedBody | None = None,
) -> MessageOpened:
    """The app reports that the customer opened a push (the first open counts). An app
    key needs the customer's token, and reaches only that customer's messages (404 for
    any other: message numbers are a sequence, and must not tell whose they are); an
    anonymous installation reports opens through the push's own open link (`/o/{token}`)."""
    if caller.is_app:
        if claims is None:
            raise needs_customer_token("an app key reports opens only for a signed-in customer")
        message = session.get(Message, message_id)
        owner = session.get(Customer, message.customer_id) if message is not None else None
        if owner is None or owner.tenant != tenant or owner.external_id != claims.subject:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"message {message_id} of tenant {tenant!r} not found"
            )
    message = record_open_by_id(
        session, tenant=tenant, message_id=message_id, now=now,
        opened_at=body.opened_at if body else None,
    )
    if message is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"message {message_id} of tenant {tenant!r} not found"
        )
    session.commit()
    wake()
    return MessageOpened(message_id=message_id, opened_at=message.opened_at)


@router.get("/messages/{message_id}/attempts", response_model=list[MessageAttemptPublic])
def message_attempts(
    caller: MayReadAnalytics, session: SessionDep, tenant: str, message_id: RowId
) -> list[MessageAttemptPublic]:
    """Every provider call made for a message: when, where, what came back, how long."""
    message = session.get(Message, message_id)
    if message is None or message.tenant != tenant:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"message {message_id} of tenant {tenant!r} not found"
        )
    rows = session.exec(
        select(MessageAttempt).where(MessageAttempt.message_id == message_id)
        .order_by(col(MessageAttempt.id))
    ).all()
    return [MessageAttemptPublic.model_validate(row) for row in rows]
