"""Who may call what: the request's API key authenticated, its tenant and role checked.

Every route under /tenants/{tenant} is behind `tenant_scope` (applied once, to the
tenants router): the caller's key must authenticate and belong to the tenant in the path
(or be an operator key), and the tenant must be one this deployment serves. A route then
states which roles may call it by the type of one parameter:

    def list_customers(..., caller: TenantAdmin) -> ...

- `TenantAdmin`: an admin key of the tenant in the path;
- `AppOrAdmin`: an app or admin key of that tenant;
- `AdminOrOperator`: an admin key of that tenant, or an operator key;
- `Operator`: an operator key (cross-tenant operations).

No key, or one that does not authenticate: 401 with `WWW-Authenticate: Bearer`. A valid
key of the wrong tenant or role: 403. Refusals are counted and logged by reason and key
id; the key itself is never logged or echoed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.api.deps import NowDep, SessionDep, SettingsDep, known_tenant
from cloud.auth.keys import AuthenticationError, Principal, authenticate, key_id_of
from cloud.auth.models import Role
from cloud.metrics import API_AUTH_REFUSALS
from cloud.settings import TenantSettings

log = logging.getLogger(__name__)

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="vk_<key id>_<secret>",
    description="An API key made with `vitrina-cloud keys create` or POST "
    "/tenants/{tenant}/api-keys, sent as 'Authorization: Bearer <key>'.",
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _unauthorized(reason: str, message: str) -> HTTPException:
    API_AUTH_REFUSALS.labels(reason=reason).inc()
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def _forbidden(principal: Principal, message: str) -> HTTPException:
    API_AUTH_REFUSALS.labels(reason="forbidden").inc()
    log.info("API key %s (%s) refused: %s", principal.key_id, principal.role.value, message)
    return HTTPException(status.HTTP_403_FORBIDDEN, message)


def authenticated(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep,
    credentials: BearerCredentials,
) -> Principal:
    """The caller behind the request's bearer key; 401 when there is none or it is bad."""
    if credentials is None:
        log.info("request without an API key: %s %s", request.method, request.url.path)
        raise _unauthorized("missing", "missing API key: send 'Authorization: Bearer <key>'")
    try:
        return authenticate(
            session, key=credentials.credentials, now=now,
            operator_key_hash=settings.operator_key_hash,
        )
    except AuthenticationError as error:
        # Only a well-formed key's id is logged: the rest of what was sent may be a secret.
        key_id = key_id_of(credentials.credentials)
        log.info("API key refused (%s)%s", error.reason, f": key id {key_id}" if key_id else "")
        raise _unauthorized(error.reason, str(error)) from None


Authenticated = Annotated[Principal, Depends(authenticated)]


def tenant_scope(tenant: str, principal: Authenticated, settings: SettingsDep) -> TenantSettings:
    """The dependency of every route under /tenants/{tenant}: an authenticated caller of
    this tenant (or an operator), then a tenant this deployment serves; returns its
    settings. In that order: a tenant's key is not told whether another tenant exists
    (403 either way)."""
    if principal.role is not Role.OPERATOR and principal.tenant != tenant:
        raise _forbidden(principal, f"this API key is not valid for tenant {tenant!r}")
    return known_tenant(tenant, settings)


#: The tenant's settings, for a route that needs them (the scope's own answer, cached).
TenantScope = Annotated[TenantSettings, Depends(tenant_scope)]


def tenant_access(*roles: Role) -> Callable[[str, Principal], Principal]:
    """A dependency admitting keys of the path's tenant in `roles` (and operator keys,
    when `Role.OPERATOR` is among them)."""
    allowed = frozenset(roles)
    wanted = " or ".join(role.value for role in roles)

    def check(tenant: str, principal: Authenticated) -> Principal:
        if principal.role is Role.OPERATOR:
            if Role.OPERATOR in allowed:
                return principal
            raise _forbidden(principal, "operator keys do not reach tenant data; "
                                        "use a key of the tenant")
        if principal.tenant != tenant:
            raise _forbidden(principal, f"this API key is not valid for tenant {tenant!r}")
        if principal.role not in allowed:
            raise _forbidden(
                principal, f"this needs an {wanted} key; this is an {principal.role.value} key"
            )
        return principal

    return check


def operator_access(principal: Authenticated) -> Principal:
    if principal.role is not Role.OPERATOR:
        raise _forbidden(principal, "this needs an operator key")
    return principal


TenantAdmin = Annotated[Principal, Depends(tenant_access(Role.ADMIN))]
AppOrAdmin = Annotated[Principal, Depends(tenant_access(Role.APP, Role.ADMIN))]
AdminOrOperator = Annotated[Principal, Depends(tenant_access(Role.ADMIN, Role.OPERATOR))]
Operator = Annotated[Principal, Depends(operator_access)]
