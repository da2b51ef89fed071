"""The shop's signed events: carts, orders and their cancellations and refunds,
newsletter, app and push opens.

`POST /webhooks/{tenant}` is authenticated by the body's HMAC signature
(`cloud.webhooks.signing`), not by an API key: the shop's server signs every event.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

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
from cloud.commerce.crud import RefundRefusedError
from cloud.commerce.models import WebhookEvent, WebhookReceipt
from cloud.metrics import WEBHOOKS
from cloud.webhooks.inbound import handle_webhook
from cloud.webhooks.outbound import MAX_ATTEMPTS, ScenarioStepWebhook
from cloud.webhooks.signing import (
    MAX_SIGNATURE_AGE_S,
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
#: Where the OpenAPI document keeps its schemas.
REF_TEMPLATE = "#/components/schemas/{model}"
#: The inbound events' union, under this name in the document's schemas.
EVENT_SCHEMA = "WebhookEvent"
#: What a shop answers a scenario's webhook with, as the sender reads it.
SHOP_ANSWERS = {
    "2XX": {"description": "Received: the webhook is sent."},
    "408": {"description": "Retried later (as 429 and every 5xx, a timeout and a network "
                           "error), with exponential backoff, never sooner than Retry-After, "
                           f"up to {MAX_ATTEMPTS} attempts."},
    "default": {"description": "Any other status (a redirect included: it is not followed) "
                               "fails the webhook for good."},
}


@router.post(
    "/webhooks/{tenant}", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookReceipt,
    dependencies=[Depends(known_tenant)], responses=refusals(401, 404, 422),
    openapi_extra={**body_limit(WEBHOOK_BODY_LIMIT), "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(
            model=EVENT_SCHEMA)}}},
    }},
)
def commerce_webhook(
    session: SessionDep, now: NowDep, wake: ScenarioWake, settings: SettingsDep, tenant: str,
    body: RawBody,
    timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER)] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> WebhookReceipt:
    """Cart, order (placed, cancelled, refunded), newsletter, app-open and push-open events
    from the shop, HMAC-signed. A refund its order cannot take (another currency, more
    than is left, items it does not hold) is refused with a 422 and not stored."""
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
    try:
        receipt = handle_webhook(
            session, tenant=tenant, event=event, now=now,
            attribution_window=timedelta(days=settings.tracking.attribution_window_days),
        )
    except RefundRefusedError as error:
        WEBHOOKS.labels(outcome="invalid").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    session.commit()
    wake()
    outcome = "duplicate" if not receipt.stored else "ignored" if receipt.ignored else "stored"
    WEBHOOKS.labels(outcome=outcome).inc()
    return receipt


def _signature_headers(meaning: str) -> list[dict[str, Any]]:
    """The two headers of a signed webhook, in either direction."""
    return [
        {"name": TIMESTAMP_HEADER, "in": "header", "required": True,
         "schema": {"type": "string", "pattern": r"^[0-9]{1,12}$"},
         "description": f"Unix seconds when it was {meaning}; refused when more than "
                        f"{MAX_SIGNATURE_AGE_S} s from the receiver's clock."},
        {"name": SIGNATURE_HEADER, "in": "header", "required": True,
         "schema": {"type": "string"},
         "description": 'v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>; several, '
                        "comma-separated, while secrets rotate."},
    ]


def _add_schemas(document: dict[str, Any], schema: dict[str, Any], name: str) -> None:
    """`schema` and the models it refers to, among the document's schemas."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(model, definition)
    schemas.setdefault(name, schema)


def document_webhooks(document: dict[str, Any]) -> None:
    """What the OpenAPI document cannot learn from the routes: the body of `POST
    /webhooks/{tenant}` (read as raw bytes, since the signature covers them, so FastAPI
    never sees its model) and, under OpenAPI 3.1's top-level `webhooks`, what a
    scenario's webhook step posts to the shop."""
    _add_schemas(document, WEBHOOK_ADAPTER.json_schema(ref_template=REF_TEMPLATE),
                 EVENT_SCHEMA)
    _add_schemas(document, ScenarioStepWebhook.model_json_schema(ref_template=REF_TEMPLATE),
                 ScenarioStepWebhook.__name__)
    document["webhooks"] = {"scenario.step": {"post": {
        "summary": "A scenario's webhook step, posted to the URL the step names",
        "description": "Signed with the tenant's first webhook secret, exactly as the shop "
                       "signs its events to us, at each attempt. Delivery is at least once: "
                       "drop a repeat by its `id`.",
        "operationId": "scenario_step_webhook",
        "tags": ["webhooks"],
        "parameters": _signature_headers("sent"),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "$ref": REF_TEMPLATE.format(model=ScenarioStepWebhook.__name__)}}}},
        "responses": SHOP_ANSWERS,
    }}}
