"""What every route reads from the app it runs in: the tenant's settings (404 for a tenant
this deployment does not serve) and the app's clock (tests and the acceptance journey run
the API on a controllable one)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import HTTPException, Request, status

from cloud.settings import Settings, TenantSettings


def known_tenant(request: Request, tenant: str) -> TenantSettings:
    settings: Settings = request.app.state.settings
    found = settings.tenant(tenant)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant!r} is not configured")
    return found


def request_now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.now
    return clock()


def triggers_recorded(request: Request) -> None:
    """Tell a scenario worker in this process that the request recorded triggers (it then
    runs at once instead of at its next poll)."""
    wake: Callable[[], None] | None = getattr(request.app.state, "on_triggers", None)
    if wake is not None:
        wake()
