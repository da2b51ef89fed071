"""The shop's signed events: carts, orders, newsletter, app and push opens.

`POST /webhooks/{tenant}` is authenticated by the body's HMAC signature
(`cloud.webhooks.signing`), not by an API key: the shop's server signs every event.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, status
from pydantic import TypeAdapter, ValidationError

from cloud.api.deps import (
    NowDep,
    RawBody,
    ScenarioWake,
    SessionDep,
    SettingsDep,
    known_tenant,
)
from cloud.api.errors import refusals
from cloud.api.limits import MIB, body_limit
from cloud.commerce.models import WebhookEvent, WebhookReceipt
from cloud.metrics import WEBHOOKS
from cloud.webhooks.inbound import handle_webhook
from cloud.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify_signature,
)
from shared.errors import describe_validation_error

WEBHOOK_ADAPTER: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)

router = APIRouter(tags=["webhooks"])

#: An order of 500 lines whose names are 200 emoji, as a shop's JSON encoder escapes them
#: (`\ud83e\uddfa`: 12 bytes a character), fits; the default limit would not take it
#: (tests/cloud/api/test_limits.py measures it).
WEBHOOK_BODY_LIMIT = 2 * MIB


@router.post(
    "/webhooks/{tenant}", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookReceipt,
    dependencies=[Depends(known_tenant)], openapi_extra=body_limit(WEBHOOK_BODY_LIMIT),
    responses=refusals(401, 404, 422),
)
def commerce_webhook(
    session: SessionDep, now: NowDep, wake: ScenarioWake, settings: SettingsDep, tenant: str,
    body: RawBody,
    timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER)] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> WebhookReceipt:
    """Cart, order, newsletter, app-open and push-open events from the shop, HMAC-signed."""
    try:
        verify_signature(
            secrets=settings.webhook_secrets_for(tenant), timestamp=timestamp,
            signature=signature, body=body, now=now,
        )
    except SignatureError as error:
        WEBHOOKS.labels(outcome="unauthorized").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(error)) from None
    try:
        event = WEBHOOK_ADAPTER.validate_json(body)
    except ValidationError as error:
        WEBHOOKS.labels(outcome="invalid").inc()
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"invalid webhook: {describe_validation_error(error)}",
        ) from None
    receipt = handle_webhook(
        session, tenant=tenant, event=event, now=now,
        attribution_window=timedelta(days=settings.tracking.attribution_window_days),
    )
    session.commit()
    wake()
    WEBHOOKS.labels(outcome="stored" if receipt.stored else "duplicate").inc()
    return receipt
