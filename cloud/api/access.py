"""Who may call what: the caller authenticated (an API key, or a console member's
session), kept to the tenant in the path, and allowed what its role grants.

Every route under /tenants/{tenant} is behind `tenant_scope` (applied once, to the
tenants router): the caller must authenticate and belong to that tenant (a key of it, a
member of it, or an operator key), and the tenant must be one this deployment serves.
A route then names the one permission it needs (`cloud.auth.permissions`) by the type of
one parameter, declared first so that nothing is looked up for a caller it refuses:

    def put_offer(caller: MayWriteOffers, ...) -> ...

Keys come as `Authorization: Bearer <key>`. A console session comes as its cookie; a
request that changes anything must then also carry the session's CSRF token
(`X-CSRF-Token`), which a page of another site cannot read, and the custom header makes
the browser ask before sending it cross-site.

An app key is public (it ships in every copy of the shop's app): for a route about one
customer it also needs that customer's token (`X-Customer-Token`, a JWT the shop's backend
signs, `cloud.auth.customer_tokens`), checked by `cloud.api.customers.customer_access`;
alone it only makes and uses an anonymous installation.

No credentials, or credentials that do not authenticate: 401 (`WWW-Authenticate:
Bearer`); after repeated wrong keys from one address or for one key id, 429 with
Retry-After (a valid key still passes at once, `_key`). A valid caller of the wrong
tenant or without the permission: 403. Refusals are counted and logged by reason and key
id or member; a key, a cookie or a password is never logged or echoed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from cloud.api.deps import (
    NowDep,
    SessionDep,
    SettingsDep,
    client_address,
    known_tenant,
    too_many_attempts,
)
from cloud.auth import throttle
from cloud.auth.customer_tokens import CustomerClaims, CustomerTokenError, verify_customer_token
from cloud.auth.keys import AuthenticationError, Principal, authenticate, key_id_of
from cloud.auth.members import role_in
from cloud.auth.models import ConsoleSession, Member, Role
from cloud.auth.permissions import KEY_GRANTS, MEMBER_GRANTS, MemberRole, Permission
from cloud.auth.sessions import SessionPolicy, find_session
from cloud.metrics import API_AUTH_REFUSALS
from cloud.settings import ApiSettings, ConsoleSettings, Settings

log = logging.getLogger(__name__)

#: The console's session cookie.
SESSION_COOKIE = "vitrina_session"
#: Where the console sends its session's CSRF token with every change.
CSRF_HEADER = "X-CSRF-Token"
#: Where the shop's app sends its signed-in customer's token.
CUSTOMER_TOKEN_HEADER = "X-Customer-Token"
#: Methods that change nothing: no CSRF token needed.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="vk_<key id>_<secret>",
    description="An API key made with `vitrina-cloud keys create` or POST "
    "/tenants/{tenant}/api-keys, sent as 'Authorization: Bearer <key>'.",
)
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False,
    description="A console member's session (sign in with POST /auth/login); changes also "
    f"need the session's CSRF token in {CSRF_HEADER}.",
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
SessionCookie = Annotated[str | None, Depends(session_cookie)]


def session_policy(settings: ConsoleSettings) -> SessionPolicy:
    return SessionPolicy(idle=timedelta(minutes=settings.session_idle_minutes),
                         lifetime=timedelta(hours=settings.session_hours))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A console member, with the session they came in."""

    member: Member
    session: ConsoleSession


#: Whoever authenticated: a key's principal, or a signed-in member.
Identity = Principal | SignedIn


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the tenant in the path sees them: what the audit log names, and
    what they may do there."""

    kind: str
    #: The key id, or the member's email address.
    name: str
    #: The key's role, or the member's role in this tenant.
    role: str
    permissions: frozenset[Permission]
    identity: Identity

    @property
    def key_id(self) -> str | None:
        return self.identity.key_id if isinstance(self.identity, Principal) else None

    @property
    def is_app(self) -> bool:
        """An app key: public, so it speaks for a customer only with their token."""
        return isinstance(self.identity, Principal) and self.identity.role is Role.APP


def _unauthorized(reason: str, message: str) -> HTTPException:
    API_AUTH_REFUSALS.labels(reason=reason).inc()
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def _forbidden(who: str, message: str) -> HTTPException:
    API_AUTH_REFUSALS.labels(reason="forbidden").inc()
    log.info("%s refused: %s", who, message)
    return HTTPException(status.HTTP_403_FORBIDDEN, message)


def _describe(identity: Identity) -> str:
    if isinstance(identity, Principal):
        return f"API key {identity.key_id} ({identity.role.value})"
    return f"member {identity.member.id}"


def authenticated(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep,
    credentials: BearerCredentials, cookie: SessionCookie,
) -> Identity:
    """The caller behind the request's bearer key, or else its session cookie; 401 when
    there is neither or it does not authenticate."""
    if credentials is not None:
        return _key(session, settings, now, credentials.credentials, client_address(request))
    if cookie:
        return _session(request, session, settings.console, now, cookie)
    log.info("request without credentials: %s %s", request.method, request.url.path)
    raise _unauthorized("missing", "missing API key: send 'Authorization: Bearer <key>' "
                                   "(or sign in to the console)")


def key_limits(settings: ApiSettings) -> throttle.Throttle:
    return throttle.Throttle(
        free=settings.key_free_failures, window=timedelta(minutes=settings.key_window_minutes),
        base=timedelta(seconds=settings.key_backoff_s),
        cap=timedelta(seconds=settings.key_backoff_max_s),
    )


def _key(session: SessionDep, settings: Settings, now: datetime, key: str, client: str
         ) -> Principal:
    """The key's principal; 401 for a key that does not authenticate, 429 once its key id
    or the client's address failed too often (`cloud.auth.throttle`).

    The key is checked first, so a valid key is never held back nor counted, even while
    its key id or its address is blocked: a 256-bit secret cannot be guessed whatever
    the pace, so the block need not hide which key is right; it only keeps wrong keys
    from costing more than a read each. Failures are counted per key id (when the key
    is well-formed) and per client address."""
    try:
        return authenticate(session, key=key, now=now,
                            operator_key_hash=settings.operator_key_hash)
    except AuthenticationError as error:
        # Only a well-formed key's id is logged: the rest of what was sent may be a secret.
        key_id = key_id_of(key)
        subjects = [throttle.subject("api-client", client)]
        if key_id is not None:
            subjects.append(throttle.subject("api-key", key_id))
        waiting = throttle.blocked_for(session, subjects=subjects, now=now)
        if waiting is not None:
            API_AUTH_REFUSALS.labels(reason="throttled").inc()
            log.info("API key refused (throttled)%s", f": key id {key_id}" if key_id else "")
            raise too_many_attempts("failed API keys", waiting) from None
        throttle.record_failure(session, subjects=subjects, now=now,
                                throttle=key_limits(settings.api))
        session.commit()
        log.info("API key refused (%s)%s", error.reason, f": key id {key_id}" if key_id else "")
        raise _unauthorized(error.reason, str(error)) from None


def _session(
    request: Request, session: SessionDep, console: ConsoleSettings, now: datetime, token: str
) -> SignedIn:
    found = find_session(session, token=token, now=now, policy=session_policy(console))
    if found is None:
        raise _unauthorized("session", "not signed in (the session ended): sign in again")
    row, member = found
    if request.method not in SAFE_METHODS:
        offered = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(offered.encode(), row.csrf_token.encode()):
            API_AUTH_REFUSALS.labels(reason="csrf").inc()
            log.info("member %s: a change without the session's CSRF token refused", member.id)
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"missing or wrong {CSRF_HEADER}: reload the console page")
    return SignedIn(member=member, session=row)


Authenticated = Annotated[Identity, Depends(authenticated)]


def signed_in(identity: Authenticated) -> SignedIn:
    """Routes about one's own account (password, sign-out) need a console session."""
    if not isinstance(identity, SignedIn):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a console session")
    return identity


SignedInMember = Annotated[SignedIn, Depends(signed_in)]


def tenant_scope(
    tenant: str, identity: Authenticated, session: SessionDep, settings: SettingsDep
) -> Caller:
    """The dependency of every route under /tenants/{tenant}: a caller of this tenant (a
    key of it, a member of it, an operator key), then a tenant this deployment serves.
    In that order: a caller is not told whether another tenant exists (403 either way)."""
    if isinstance(identity, Principal):
        if identity.role is not Role.OPERATOR and identity.tenant != tenant:
            raise _forbidden(_describe(identity),
                             f"this API key is not valid for tenant {tenant!r}")
        known_tenant(tenant, settings)
        return Caller(kind="key", name=identity.key_id, role=identity.role.value,
                      permissions=KEY_GRANTS[identity.role], identity=identity)
    member = identity.member
    assert member.id is not None
    role = role_in(session, member_id=member.id, tenant=tenant)
    if role is None:
        raise _forbidden(_describe(identity), f"you are not a member of tenant {tenant!r}")
    known_tenant(tenant, settings)
    return Caller(kind="member", name=member.email, role=role.value,
                  permissions=MEMBER_GRANTS[role], identity=identity)


TenantCaller = Annotated[Caller, Depends(tenant_scope)]


def allowed(permission: Permission) -> Callable[[Caller], Caller]:
    """A dependency admitting callers whose role grants `permission`."""

    def check(caller: TenantCaller) -> Caller:
        if permission in caller.permissions:
            return caller
        identity = caller.identity
        if isinstance(identity, Principal) and identity.role is Role.OPERATOR:
            message = "operator keys do not reach tenant data; use a key of the tenant"
        elif caller.kind == "key":
            message = f"an {caller.role} key may not do this (it needs {permission.value})"
        else:
            label = MemberRole(caller.role).label
            article = "an" if label[0] in "aeiou" else "a"
            message = f"{article} {label} may not do this (it needs {permission.value})"
        raise _forbidden(_describe(identity), message)

    return check


def operator_access(identity: Authenticated) -> Principal:
    if not isinstance(identity, Principal) or identity.role is not Role.OPERATOR:
        raise _forbidden(_describe(identity), "this needs an operator key")
    return identity


MayCreateCustomers = Annotated[Caller, Depends(allowed(Permission.CUSTOMERS_CREATE))]
MayReadCustomers = Annotated[Caller, Depends(allowed(Permission.CUSTOMERS_READ))]
MayReadProfile = Annotated[Caller, Depends(allowed(Permission.PROFILE_READ))]
MayEraseCustomers = Annotated[Caller, Depends(allowed(Permission.CUSTOMERS_ERASE))]
MayRecordConsent = Annotated[Caller, Depends(allowed(Permission.CONSENT_RECORD))]
MayRegisterDevices = Annotated[Caller, Depends(allowed(Permission.DEVICES_REGISTER))]
MayReadCoupons = Annotated[Caller, Depends(allowed(Permission.COUPONS_READ))]
MayReportLocations = Annotated[Caller, Depends(allowed(Permission.LOCATIONS_REPORT))]
MayReadLocations = Annotated[Caller, Depends(allowed(Permission.LOCATIONS_READ))]
MayReportOpens = Annotated[Caller, Depends(allowed(Permission.OPENS_REPORT))]
MayReadWebPushKey = Annotated[Caller, Depends(allowed(Permission.WEB_PUSH_KEY))]
MayReadConfig = Annotated[Caller, Depends(allowed(Permission.CONFIG_READ))]
MayWriteStores = Annotated[Caller, Depends(allowed(Permission.STORES_WRITE))]
MayWriteOffers = Annotated[Caller, Depends(allowed(Permission.OFFERS_WRITE))]
MayWriteTemplates = Annotated[Caller, Depends(allowed(Permission.TEMPLATES_WRITE))]
MayWriteScenarios = Annotated[Caller, Depends(allowed(Permission.SCENARIOS_WRITE))]
MayWritePreferences = Annotated[Caller, Depends(allowed(Permission.PREFERENCES_WRITE))]
MayReadAnalytics = Annotated[Caller, Depends(allowed(Permission.ANALYTICS_READ))]
MayManageKeys = Annotated[Caller, Depends(allowed(Permission.KEYS_MANAGE))]
MayManageMembers = Annotated[Caller, Depends(allowed(Permission.MEMBERS_MANAGE))]
MayReadAudit = Annotated[Caller, Depends(allowed(Permission.AUDIT_READ))]
Operator = Annotated[Principal, Depends(operator_access)]

CustomerTokenHeader = Annotated[str | None, Header(
    alias=CUSTOMER_TOKEN_HEADER,
    description="With an app key: the signed-in customer's token, a JWT the shop's backend "
    "signs (ES256 or EdDSA, `kid` of a registered key, `sub` the shop's customer id, `aud` "
    "the tenant, at most an hour long). Other callers need none.",
)]


def customer_claims(
    caller: TenantCaller, session: SessionDep, now: NowDep, tenant: str,
    token: CustomerTokenHeader = None,
) -> CustomerClaims | None:
    """The verified customer token an app key came with; None when it sent none, or when
    the caller is not an app key (the back office needs no customer's word). A token that
    does not verify is a 401 whatever the route: the app must learn that it needs a new
    one, not act as nobody."""
    if not caller.is_app or token is None:
        return None
    try:
        return verify_customer_token(session, tenant=tenant, token=token, now=now)
    except CustomerTokenError as error:
        log.info("customer token refused (%s) for API key %s", error.reason, caller.name)
        raise _unauthorized(f"customer_token_{error.reason}", str(error)) from None


CustomerTokenClaims = Annotated[CustomerClaims | None, Depends(customer_claims)]


def needs_customer_token(message: str) -> HTTPException:
    """401 to an app key that needs a customer token for what it asks."""
    return _unauthorized("customer_token_missing", f"{message}: send the signed-in "
                         f"customer's token in {CUSTOMER_TOKEN_HEADER}")


def other_customer(caller: Caller, message: str) -> HTTPException:
    """403 to an app key whose valid customer token is somebody else's."""
    return _forbidden(_describe(caller.identity), message)
