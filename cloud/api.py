"""The orchestrator's HTTP API: customers, consent, devices, messages, gateway health,
API keys, and the operational endpoints (/healthz, /readyz, /metrics, /dead-letters).

Every route under /tenants/{tenant} and /dead-letters names the role it needs through
one parameter (`TenantAdmin`, `AppOrAdmin`, `AdminOrOperator`, `Operator`, see
`cloud.auth.dependencies`); /webhooks/{tenant} is authenticated by its HMAC signature;
/healthz and /readyz are open for probes, /metrics too unless `api.metrics_public` is off."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Engine

from cloud.auth.dependencies import (
    AdminOrOperator,
    AppOrAdmin,
    Operator,
    TenantAdmin,
    operator_access,
)
from cloud.auth.keys import create_key, list_keys, revoke_key
from cloud.auth.models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from cloud.commerce.models import WebhookEvent, WebhookReceipt
from cloud.customers import crud as customers
from cloud.customers.models import (
    ConsentCreate,
    ConsentPublic,
    Customer,
    CustomerCreate,
    CustomerPublic,
    DeviceKind,
    DevicePublic,
    DeviceRegistration,
    ErasurePublic,
)
from cloud.customers.triggers import record_signup, record_subscription
from cloud.db import SessionDep, make_engine, ping, utc_now
from cloud.erasure import erase_customer
from cloud.messages.crud import messages_for_customer
from cloud.messages.models import MessagePublic
from cloud.metrics import WEBHOOKS, render
from cloud.offers.api import router as offers_router
from cloud.places.api import router as places_router
from cloud.presence.analytics import FootfallRow, footfall
from cloud.presence.crud import list_gateways, recent_dead_letters
from cloud.presence.models import DeadLetterPublic, GatewayHealthPublic
from cloud.request_context import known_tenant, request_now, triggers_recorded
from cloud.scenarios.api import router as scenarios_router
from cloud.settings import Settings
from cloud.templates.api import router as templates_router
from cloud.tracking.routes import public as tracking_public
from cloud.tracking.routes import router as tracking_router
from cloud.webhooks.inbound import handle_webhook
from cloud.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify_signature,
)
from shared.errors import describe_validation_error
from shared.topics import SEGMENT_PATTERN

#: /readyz must answer quickly even when a dependency hangs; a probe times out anyway.
READINESS_TIMEOUT_S = 2.0
#: Pages are bounded so one request cannot pull a whole table.
MAX_PAGE = 500

WEBHOOK_ADAPTER: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)


class WorkerState(Protocol):
    @property
    def connected(self) -> bool: ...


class ConsentState(BaseModel):
    current: dict[str, ConsentPublic]
    ledger: list[ConsentPublic]


class Readiness(BaseModel):
    ready: bool
    database: str
    broker: str
    worker: str | None = None


def _customer(request: Request, session: SessionDep, tenant: str, customer_id: int) -> Customer:
    known_tenant(request, tenant)
    customer = customers.get_customer(session, tenant=tenant, customer_id=customer_id)
    if customer is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"customer {customer_id} of tenant {tenant!r} not found"
        )
    return customer


router = APIRouter(prefix="/tenants/{tenant}")


@router.post("/customers", status_code=status.HTTP_201_CREATED, response_model=CustomerPublic)
def create_customer(
    request: Request, session: SessionDep, tenant: str, data: CustomerCreate, caller: AppOrAdmin
) -> Customer:
    known_tenant(request, tenant)
    try:
        customer = customers.create_customer(
            session, tenant=tenant, data=data, now=request_now(request)
        )
    except customers.DuplicateCustomerError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    assert customer.id is not None
    record_signup(session, tenant=tenant, customer_id=customer.id, now=request_now(request))
    session.commit()
    return customer


@router.get("/customers", response_model=list[CustomerPublic])
def list_customers(
    request: Request, session: SessionDep, tenant: str, caller: TenantAdmin,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Sequence[Customer]:
    known_tenant(request, tenant)
    return customers.list_customers(session, tenant=tenant, limit=limit, offset=offset)


@router.get("/customers/{customer_id}", response_model=CustomerPublic)
def get_customer(
    request: Request, session: SessionDep, tenant: str, customer_id: int, caller: TenantAdmin
) -> Customer:
    return _customer(request, session, tenant, customer_id)


@router.post(
    "/customers/{customer_id}/consent",
    status_code=status.HTTP_201_CREATED, response_model=ConsentPublic,
)
def record_consent(
    request: Request, session: SessionDep, tenant: str, customer_id: int, data: ConsentCreate,
    caller: AppOrAdmin,
) -> ConsentPublic:
    customer = _customer(request, session, tenant, customer_id)
    entry = customers.record_consent(
        session, customer=customer, data=data, now=request_now(request)
    )
    session.commit()
    return ConsentPublic.model_validate(entry)


@router.get("/customers/{customer_id}/consent", response_model=ConsentState)
def get_consent(
    request: Request, session: SessionDep, tenant: str, customer_id: int, caller: AppOrAdmin
) -> ConsentState:
    _customer(request, session, tenant, customer_id)
    ledger = customers.consent_ledger(session, customer_id=customer_id)
    current = customers.current_consent(session, customer_id=customer_id)
    return ConsentState(
        current={channel: ConsentPublic.model_validate(e) for channel, e in current.items()},
        ledger=[ConsentPublic.model_validate(entry) for entry in ledger],
    )


@router.post(
    "/customers/{customer_id}/devices",
    status_code=status.HTTP_201_CREATED, response_model=DevicePublic,
)
def register_device(
    request: Request, session: SessionDep, tenant: str, customer_id: int,
    registration: Annotated[DeviceRegistration, Body()], caller: AppOrAdmin,
) -> DevicePublic:
    tenant_settings = known_tenant(request, tenant)
    customer = _customer(request, session, tenant, customer_id)
    try:
        device = customers.register_device(
            session, customer=customer, registration=registration,
            pseudonymizers=tenant_settings.pseudonymizers(), now=request_now(request),
        )
    except customers.RegistrationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    assert device.id is not None
    record_subscription(
        session, tenant=tenant, customer_id=customer_id, device_id=device.id,
        kind=DeviceKind(device.kind), now=request_now(request),
    )
    session.commit()
    return customers.public_device(device, customers.link_key_ids(session, device_id=device.id))


@router.get("/customers/{customer_id}/devices", response_model=list[DevicePublic])
def list_devices(
    request: Request, session: SessionDep, tenant: str, customer_id: int, caller: AppOrAdmin
) -> list[DevicePublic]:
    _customer(request, session, tenant, customer_id)
    return customers.list_devices(session, customer_id=customer_id)


@router.get("/customers/{customer_id}/messages", response_model=list[MessagePublic])
def list_messages(
    request: Request, session: SessionDep, tenant: str, customer_id: int, caller: TenantAdmin,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[MessagePublic]:
    _customer(request, session, tenant, customer_id)
    rows = messages_for_customer(session, customer_id=customer_id, limit=limit)
    return [MessagePublic.model_validate(row) for row in rows]


@router.delete("/customers/{customer_id}", response_model=ErasurePublic)
def erase(
    request: Request, session: SessionDep, tenant: str, customer_id: int, caller: TenantAdmin
) -> ErasurePublic:
    """Erase a customer: profile, consents, devices, links, messages, commerce history."""
    customer = _customer(request, session, tenant, customer_id)
    record = erase_customer(session, customer=customer, now=request_now(request))
    session.commit()
    return ErasurePublic.model_validate(record)


@router.get("/analytics/footfall", response_model=list[FootfallRow])
def footfall_report(
    request: Request, session: SessionDep, tenant: str, caller: TenantAdmin,
    since: Annotated[AwareDatetime, Query(description="visits starting at or after")],
    until: Annotated[AwareDatetime, Query(description="visits starting before")],
    store: Annotated[str | None, Query(pattern=SEGMENT_PATTERN.pattern)] = None,
    by_zone: bool = False,
) -> list[FootfallRow]:
    """Passers-by vs visitors (capture rate), dwell distribution, new vs repeat; per day."""
    known_tenant(request, tenant)
    try:
        return footfall(
            session, tenant=tenant, since=since, until=until, store=store, by_zone=by_zone
        )
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.get("/gateways", response_model=list[GatewayHealthPublic])
def gateways(
    request: Request, session: SessionDep, tenant: str, caller: TenantAdmin
) -> list[GatewayHealthPublic]:
    known_tenant(request, tenant)
    rows = list_gateways(session, tenant=tenant)
    return [GatewayHealthPublic.model_validate(row) for row in rows]


@router.post(
    "/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated,
    tags=["api keys"],
)
def create_api_key(
    request: Request, session: SessionDep, tenant: str, data: ApiKeyCreate,
    caller: AdminOrOperator,
) -> ApiKeyCreated:
    """Issue an admin or app key for this tenant. The response carries the key itself,
    this once: only its hash is kept."""
    known_tenant(request, tenant)
    row, key = create_key(
        session, role=data.role, tenant=tenant, name=data.name, created_by=caller.key_id,
        now=request_now(request),
    )
    session.commit()
    return ApiKeyCreated.model_validate(row, update={"key": key})


@router.get("/api-keys", response_model=list[ApiKeyPublic], tags=["api keys"])
def list_api_keys(
    request: Request, session: SessionDep, tenant: str, caller: AdminOrOperator
) -> Sequence[ApiKey]:
    """This tenant's keys, revoked ones included; never a key or its hash."""
    known_tenant(request, tenant)
    return list_keys(session, tenant=tenant)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyPublic, tags=["api keys"])
def revoke_api_key(
    request: Request, session: SessionDep, tenant: str, key_id: str, caller: AdminOrOperator
) -> ApiKey:
    """Revoke one of this tenant's keys: it is refused from the next request on."""
    known_tenant(request, tenant)
    row = revoke_key(session, key_id=key_id, tenant=tenant, now=request_now(request))
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"API key {key_id!r} of tenant {tenant!r} not found"
        )
    session.commit()
    return row


async def raw_body(request: Request) -> bytes:
    return await request.body()


webhooks = APIRouter()


@webhooks.post(
    "/webhooks/{tenant}", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookReceipt
)
def commerce_webhook(
    request: Request, session: SessionDep, tenant: str,
    body: Annotated[bytes, Depends(raw_body)],
    timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER)] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> WebhookReceipt:
    """Cart, order, newsletter, app-open and push-open events from the shop, HMAC-signed."""
    known_tenant(request, tenant)
    settings: Settings = request.app.state.settings
    try:
        verify_signature(
            secrets=settings.webhook_secrets_for(tenant), timestamp=timestamp,
            signature=signature, body=body, now=request_now(request),
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
        session, tenant=tenant, event=event, now=request_now(request),
        attribution_window=timedelta(days=settings.tracking.attribution_window_days),
    )
    session.commit()
    triggers_recorded(request)
    WEBHOOKS.labels(outcome="stored" if receipt.stored else "duplicate").inc()
    return receipt


def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    """422 naming each field and rule; the submitted values are not echoed back (they may
    be identifiers that should not travel further)."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        problems.append({"loc": location, "msg": item.get("msg", ""), "type": item.get("type", "")})
    summary = "; ".join(f"{'.'.join(p['loc'][1:]) or 'body'}: {p['msg']}" for p in problems[:10])
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": problems, "message": f"invalid request: {summary}"},
    )


def _broker_reachable(settings: Settings) -> str:
    try:
        with socket.create_connection(
            (settings.mqtt.host, settings.mqtt.port), timeout=READINESS_TIMEOUT_S
        ):
            return "ok"
    except OSError as error:
        return f"unreachable: {error.strerror or type(error).__name__}"


def _database_reachable(engine: Engine) -> str:
    try:
        ping(engine)
    except Exception as error:
        return f"unreachable: {type(error).__name__}"
    return "ok"


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    worker: WorkerState | None = None,
    now: Callable[[], datetime] = utc_now,
    on_triggers: Callable[[], None] | None = None,
) -> FastAPI:
    """The API on `settings`; pass `engine` to share one, `worker` to report its state,
    `on_triggers` to hear when a request recorded scenario triggers (a worker in the same
    process then runs at once instead of at its next poll)."""
    owned_engine = engine is None
    app_engine = engine if engine is not None else make_engine(settings.database_url)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned_engine:
            app_engine.dispose()

    app = FastAPI(title="Vitrina orchestrator", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = app_engine
    app.state.now = now
    app.state.worker = worker
    app.state.on_triggers = on_triggers
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(router)
    app.include_router(webhooks)
    app.include_router(offers_router)
    app.include_router(scenarios_router)
    app.include_router(places_router)
    app.include_router(templates_router)
    app.include_router(tracking_router)
    app.include_router(tracking_public)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness)
    def readyz() -> Any:
        readiness = Readiness(
            ready=False, database=_database_reachable(app_engine),
            broker=_broker_reachable(settings),
        )
        if worker is not None:
            readiness.worker = "connected" if worker.connected else "not connected"
        readiness.ready = (
            readiness.database == "ok" and readiness.broker == "ok"
            and readiness.worker in (None, "connected")
        )
        code = status.HTTP_200_OK if readiness.ready else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse(readiness.model_dump(), status_code=code)

    @app.get("/dead-letters", response_model=list[DeadLetterPublic])
    def dead_letters(
        session: SessionDep, caller: Operator,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[DeadLetterPublic]:
        """The newest messages the worker could not use, with the reason (payload not shown:
        it is kept, truncated, in the database for an operator with database access)."""
        return [DeadLetterPublic.model_validate(row) for row in recent_dead_letters(
            session, limit=limit
        )]

    metrics_guard = [] if settings.api.metrics_public else [Depends(operator_access)]

    @app.get("/metrics", dependencies=metrics_guard)
    def metrics() -> Response:
        return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
