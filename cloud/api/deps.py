"""What routes receive besides their body: a database session, the app's clock and
settings, the tenant's settings, and a way to wake the scenario worker.

    def create_customer(session: SessionDep, tenant: str, now: NowDep, ...) -> ...

Every route under /tenants/{tenant} is mounted on one router whose dependency
(`cloud.api.access.tenant_scope`) authenticates the caller, keeps them to their own
tenant and answers 404 for a tenant this deployment does not serve, once for all routes.
Tests and the acceptance journey run the API on a controllable clock (`NowDep`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db import session_scope
from cloud.outbound import OutboundPolicy
from cloud.settings import Settings, TenantSettings

#: Pages are bounded so one request cannot pull a whole table.
MAX_PAGE = 500


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, on the app's engine."""
    engine: Engine = request.app.state.engine
    with session_scope(engine) as session:
        yield session


def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def request_now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.now
    return clock()


def client_address(request: Request) -> str:
    """The client's address, as the throttles count it: the socket's peer, or, for a
    request from a proxy listed in `api.trusted_proxies`, the address it forwarded (the
    app's `ProxyHeadersMiddleware` put it in place, `cloud.api.app`)."""
    return request.client.host if request.client is not None else "unknown"


def too_many_attempts(what: str, waiting: timedelta) -> HTTPException:
    """429 for a throttled subject (`cloud.auth.throttle`), saying when to try again."""
    seconds = max(1, math.ceil(waiting.total_seconds()))
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                         f"too many {what}: try again in {seconds} s",
                         headers={"Retry-After": str(seconds)})


def known_tenant(tenant: str, settings: SettingsDep) -> TenantSettings:
    """The tenant's settings; 404 for a tenant this deployment does not serve."""
    found = settings.tenant(tenant)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant!r} is not configured")
    return found


async def raw_body(request: Request) -> bytes:
    """The request's body as sent (a signature covers these bytes, not a parsed form)."""
    return await request.body()


def scenario_wake(request: Request) -> Callable[[], None]:
    """Tells a scenario worker in this process that the request recorded triggers (it
    then runs at once instead of at its next poll); does nothing when there is none."""
    wake: Callable[[], None] | None = getattr(request.app.state, "on_triggers", None)
    return wake if wake is not None else _nothing


def _nothing() -> None:
    """No scenario worker in this process: it polls the database."""


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(app_settings)]


def outbound_policy(settings: SettingsDep) -> OutboundPolicy:
    """Where tenants' and apps' URLs may point (`cloud.outbound`), with this
    deployment's allow-list."""
    return settings.outbound.policy()


OutboundPolicyDep = Annotated[OutboundPolicy, Depends(outbound_policy)]
NowDep = Annotated[datetime, Depends(request_now)]
ScenarioWake = Annotated[Callable[[], None], Depends(scenario_wake)]
RawBody = Annotated[bytes, Depends(raw_body)]
#: The tenant's settings (a route under /tenants/{tenant} is past its scope already).
TenantConfig = Annotated[TenantSettings, Depends(known_tenant)]
