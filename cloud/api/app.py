"""The orchestrator's HTTP API, one app: every route module mounted in one layout.

- /tenants/{tenant}/...: one router whose dependency (`cloud.api.access.tenant_scope`)
  authenticates the caller (an API key or a console session), keeps it to its tenant and
  404s an unknown tenant, once for all; each route then names the one permission it
  needs through one parameter (`MayWriteOffers`, `MayReadConfig`...).
- /auth: console members signing in, their own account, invitations.
- /console: the admin console's pages and files (`cloud.api.console`).
- /webhooks/{tenant}: the shop's events, authenticated by their HMAC signature.
- /enrol: a gateway exchanging its one-time enrolment code for its identity.
- /c, /o, /u: tracked links, opens and unsubscribes, authenticated by the message's token;
  /receipts/{channel}: providers' delivery receipts, by the provider's signature.
- /healthz, /readyz, /metrics, /dead-letters: operations.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, status
from fastapi._compat import get_definitions, get_flat_models_from_fields, get_model_name_map
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_fields_from_routes, get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.routing import BaseRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from cloud.api import (
    accounts,
    audit,
    channels,
    console,
    customers,
    gateways,
    keys,
    live,
    members,
    messages,
    offers,
    places,
    preferences,
    presence,
    pseudonym_keys,
    scenarios,
    segments,
    simulations,
    templates,
    token_keys,
    tracking,
    webhooks,
)
from cloud.api.access import CUSTOMER_TOKEN_HEADER, tenant_scope
from cloud.api.errors import MEANINGS, ErrorBody, refusals
from cloud.api.limits import LIMIT_KEY, RequestLimits
from cloud.api.operations import WorkerState, operations_router
from cloud.api.suggestions import suggestion
from cloud.db import make_engine, utc_now
from cloud.settings import Settings
from shared.errors import plain_values, spread_located

#: What a web shop's page sends the API: the app key, its customer's token, JSON.
APP_HEADERS = ("Authorization", "Content-Type", CUSTOMER_TOKEN_HEADER)

#: Problems listed in a 422's message (all of them are in its `detail`).
MAX_PROBLEMS_SUMMARISED = 10


def tenants_router() -> APIRouter:
    """Every route under /tenants/{tenant}, behind the tenant's scope."""
    router = APIRouter(prefix="/tenants/{tenant}", dependencies=[Depends(tenant_scope)],
                       responses=refusals(401, 403, 404, 422, 429))
    for module in (customers, messages, keys, token_keys, members, audit, presence, live,
                   offers, places, preferences, gateways, pseudonym_keys, scenarios, segments,
                   simulations, templates, channels):
        router.include_router(module.router)
    return router


@functools.cache
def _shared_routes() -> tuple[BaseRoute, ...]:
    """The routes that are the same for every app, built once per process: FastAPI
    analyses each route's parameters and models as it is added (about a second for all
    of them), and they read what differs between apps (settings, engine, clock) from
    the request's app at request time."""
    shared = APIRouter()
    for router in (tenants_router(), accounts.router, webhooks.router, gateways.public,
                   tracking.router, channels.public, presence.operations):
        shared.include_router(router)
    return tuple(shared.routes)


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
    app.router.routes.extend(_shared_routes())
    app.include_router(operations_router(settings, engine=app_engine, worker=worker))
    console.install(app)
    if settings.api.trusted_proxies:
        # Only requests from the listed proxies have their forwarded client address and
        # scheme believed; the servers in `cloud.service` and `cloud.cli` leave uvicorn's
        # own handling off, so this is the one place that decides.
        app.add_middleware(ProxyHeadersMiddleware,
                           trusted_hosts=list(settings.api.trusted_proxies))
    app.add_middleware(RequestLimits, default=settings.api.max_body_bytes,
                       max_header_bytes=settings.api.max_header_bytes)
    if settings.api.cors_origins:
        # Outermost, so that refusals (413 included) reach the page readable.
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.api.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=list(APP_HEADERS),
                           allow_credentials=False, expose_headers=["Retry-After"],
                           max_age=600)
    app.openapi = functools.partial(_openapi, app, settings.api.max_body_bytes)  # type: ignore[method-assign]
    return app


#: Methods whose requests carry a body.
BODY_METHODS = frozenset({"post", "put", "patch"})
#: FastAPI's own description of a 422, replaced by ours.
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _openapi(app: FastAPI, default_body_limit: int) -> dict[str, Any]:
    """FastAPI's document, plus what holds for every operation: one taking a body says
    how much it takes (`x-max-body-bytes`), that more is refused (413) and one that
    cannot be decoded too (400); every 422 is in `ErrorBody`'s shape
    (`_validation_error` answers them), not FastAPI's."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                           description=app.description)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ErrorBody.__name__, ErrorBody.model_json_schema(
        ref_template="#/components/schemas/{model}"))
    for name, schema in ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}").get("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas[ErrorBody.__name__].pop("$defs", None)
    error_body = {"content": {"application/json": {"schema": {
        "$ref": f"#/components/schemas/{ErrorBody.__name__}"}}}}
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            invalid = responses.get("422")
            if invalid is not None and _FASTAPI_422 in str(invalid):
                responses["422"] = {"description": MEANINGS[422], **error_body}
            for code, response in responses.items():
                # Refusals are JSON even where the route answers HTML or a picture
                # (FastAPI files their model under the route's own media type).
                if code.startswith("4") and ErrorBody.__name__ in str(response):
                    response["content"] = error_body["content"]
            if method in BODY_METHODS:
                operation.setdefault(LIMIT_KEY, default_body_limit)
                responses.setdefault("413", {"description": MEANINGS[413], **error_body})
                # FastAPI's answer to a body it cannot decode (not UTF-8, say).
                responses.setdefault("400", {"description": MEANINGS[400], **error_body})
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused not in str(document.get("paths")):
            schemas.pop(unused, None)
    _restore_example_nulls(app, schemas)
    webhooks.document_webhooks(document)
    app.openapi_schema = document
    return document


def _restore_example_nulls(app: FastAPI, schemas: dict[str, Any]) -> None:
    """The models' examples as they are written: FastAPI encodes its document without
    None values, anywhere, which takes `"revoked_at": null` out of an example whose
    schema requires the field (nullable, but present in every answer). The definitions
    are made again the way `get_openapi` makes them (FastAPI's own helpers: if they change,
    tests/cloud/api/test_openapi_examples.py says so)."""
    fields = get_fields_from_routes(list(app.routes))
    names = get_model_name_map(get_flat_models_from_fields(fields, known_models=set()))
    _fields, definitions = get_definitions(fields=fields, model_name_map=names,
                                           separate_input_output_schemas=True)
    for name, definition in definitions.items():
        if "examples" in definition and name in schemas:
            schemas[name]["examples"] = definition["examples"]


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 naming each field and rule, with the nearest valid name where one was
    misspelt; the submitted values are not echoed back (they may be identifiers that
    should not travel further)."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        hint = suggestion(item, request)
        for problem in spread_located(item):
            location = [str(part) for part in problem["loc"]]
            problems.append({"loc": location, "msg": plain_values(problem["msg"]) + hint,
                             "type": problem["type"]})
    summary = "; ".join(
        f"{'.'.join(p['loc'][1:]) or 'body'}: {p['msg']}"
        for p in problems[:MAX_PROBLEMS_SUMMARISED]
    )
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": problems, "message": f"invalid request: {summary}"},
    )
