"""Signing in to the console, and one's own account: sign-in and sign-out, who am I,
password change, and joining a tenant by invitation.

The session is an HttpOnly cookie (SameSite=Lax; Secure over HTTPS), and every answer
that opens one also carries the session's CSRF token, which the console sends back with
every change (`X-CSRF-Token`). Sign-in, like every change made with a cookie, needs the
`X-Requested-With` header: a page of another site cannot send it without the browser
asking first, and this API allows no other site to ask.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import (
    APIRouter,
    Cookie,
    Depends,
    Header,
    HTTPException,
    Request,
    Response,
    status,
)
from pydantic import BaseModel, ConfigDict

from cloud.api.access import (
    SESSION_COOKIE,
    SessionCookie,
    SignedIn,
    SignedInMember,
    session_policy,
)
from cloud.api.deps import (
    NowDep,
    SessionDep,
    SettingsDep,
    client_address,
    too_many_attempts,
)
from cloud.api.errors import refusals
from cloud.auth import members, throttle
from cloud.auth.models import (
    ConsoleSession,
    Invitation,
    Member,
    MemberEmail,
    MemberName,
    Password,
    PasswordAttempt,
)
from cloud.auth.sessions import close_session, find_session, open_session
from cloud.examples import example
from cloud.settings import Settings, is_https

router = APIRouter(prefix="/auth", tags=["console sign-in"])

#: Remembers that this browser signed in as a member before (`members.device_token`): it
#: goes only to the sign-in route, and a new password ends it.
DEVICE_COOKIE = "vitrina_device"
#: A browser unused for half a year is a stranger again.
DEVICE_COOKIE_DAYS = 180
DeviceCookie = Annotated[str | None, Cookie(alias=DEVICE_COOKIE, include_in_schema=False)]
#: What the console's own requests carry (see the module docstring).
CONSOLE_HEADER = "X-Requested-With"
CONSOLE_HEADER_VALUE = "vitrina-console"


def from_the_console(
    requested_with: Annotated[str | None, Header(alias=CONSOLE_HEADER)] = None,
) -> None:
    if requested_with != CONSOLE_HEADER_VALUE:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"send {CONSOLE_HEADER}: {CONSOLE_HEADER_VALUE}")


FromTheConsole = Depends(from_the_console)


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"email": "marta@acme.example", "password": "correct horse battery staple"},
    ))

    email: MemberEmail
    password: PasswordAttempt


class MembershipPublic(BaseModel):
    tenant: str
    role: str


class MemberPublic(BaseModel):
    id: int
    email: str
    name: str


class SignedInPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"member": {"id": 7, "email": "marta@acme.example", "name": "Marta Ruiz"},
         "memberships": [{"tenant": "acme", "role": "marketer"}],
         "csrf_token": "dG9rZW4tZm9yLWNzcmYtY2hlY2tz"},
    ))

    member: MemberPublic
    memberships: list[MembershipPublic]
    #: Send with every change as `X-CSRF-Token`.
    csrf_token: str


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"current_password": "correct horse battery staple",
         "new_password": "a longer passphrase for 2027"},
    ))

    current_password: PasswordAttempt
    new_password: Password


class InvitationPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"tenant": "acme", "email": "marta@acme.example", "role": "marketer",
         "has_account": False},
    ))

    tenant: str
    email: str
    role: str
    #: Whether the address has an account (then sign in to accept; else set a password).
    has_account: bool


class Acceptance(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"password": "correct horse battery staple", "name": "Marta Ruiz"},
    ))

    #: For a new account: its password and name.
    password: Password | None = None
    name: MemberName = ""


def _public(session: SessionDep, member: Member, row: ConsoleSession) -> SignedInPublic:
    assert member.id is not None
    return SignedInPublic(
        member=MemberPublic(id=member.id, email=member.email, name=member.name),
        memberships=[MembershipPublic(tenant=m.tenant, role=m.role)
                     for m in members.memberships(session, member_id=member.id)],
        csrf_token=row.csrf_token,
    )


def _secure(request: Request, settings: Settings) -> bool:
    mode = settings.console.secure_cookies
    if mode != "auto":
        return mode == "always"
    return request.url.scheme == "https" or is_https(settings.tracking.public_base_url)


def _set_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.console.session_hours * 3600, httponly=True,
        samesite="lax", secure=_secure(request, settings), path="/",
    )


def _limits(settings: Settings) -> throttle.Throttle:
    console = settings.console
    return throttle.Throttle(
        free=console.login_free_failures, window=timedelta(minutes=console.login_window_minutes),
        base=timedelta(seconds=console.login_backoff_s),
        cap=timedelta(seconds=console.login_backoff_max_s),
    )


@router.post("/login", response_model=SignedInPublic, dependencies=[FromTheConsole],
             responses=refusals(401, 403, 429))
def sign_in(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep,
    now: NowDep, body: SignInBody, device: DeviceCookie = None,
) -> SignedInPublic:
    """Sign in with an email address and a password; 401 for either wrong (which one is
    not said), 429 with Retry-After after repeated failures (per account and per client
    address; a browser that signed in as the member before is held to its own count
    instead of the account's, `cloud.auth.members.sign_in`)."""
    try:
        signed = members.sign_in(
            session, email=body.email, password=body.password,
            client=client_address(request), now=now, policy=session_policy(settings.console),
            limits=_limits(settings), device=device,
        )
    except members.SignInBlockedError as blocked:
        raise too_many_attempts("failed sign-ins", blocked.retry_after) from None
    except members.SignInRefusedError:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email address or password",
                            headers={"WWW-Authenticate": "Bearer"}) from None
    session.commit()
    _set_cookie(response, request, settings, signed.token)
    response.set_cookie(
        DEVICE_COOKIE, signed.device, max_age=DEVICE_COOKIE_DAYS * 24 * 3600, httponly=True,
        samesite="strict", secure=_secure(request, settings), path="/auth/login",
    )
    return _public(session, signed.member, signed.session)


@router.get("/me", response_model=SignedInPublic, responses=refusals(401, 403, 429))
def me(session: SessionDep, signed_in: SignedInMember) -> SignedInPublic:
    """The signed-in member, their tenants and roles, and the session's CSRF token."""
    return _public(session, signed_in.member, signed_in.session)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, dependencies=[FromTheConsole],
             responses=refusals(401, 403, 429))
def sign_out(session: SessionDep, signed_in: SignedInMember) -> Response:
    close_session(session, token_hash_value=signed_in.session.token_hash)
    session.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT,
             responses=refusals(401, 403, 429),
             dependencies=[FromTheConsole])
def change_password(
    session: SessionDep, now: NowDep, signed_in: SignedInMember, body: PasswordChange,
) -> Response:
    """A new password (the current one must be given); every other session ends."""
    try:
        members.change_password(
            session, member=signed_in.member, current=body.current_password,
            new=body.new_password, keep_session=signed_in.session.token_hash, now=now,
        )
    except members.MemberError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/invitations/{token}", response_model=InvitationPublic, responses=refusals(404))
def read_invitation(session: SessionDep, now: NowDep, token: str) -> InvitationPublic:
    """What an invitation link offers (the link's token is the credential)."""
    invitation = _invitation(session, token, now)
    return InvitationPublic(
        tenant=invitation.tenant, email=invitation.email, role=invitation.role,
        has_account=members.find_member(session, email=invitation.email) is not None,
    )


def _invitation(session: SessionDep, token: str, now: NowDep) -> Invitation:
    try:
        return members.open_invitation(session, token=token, now=now)
    except members.MemberError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.post("/invitations/{token}/accept", response_model=SignedInPublic,
             responses=refusals(401, 403, 404, 409),
             dependencies=[FromTheConsole])
def accept_invitation(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep,
    now: NowDep, token: str, body: Acceptance, cookie: SessionCookie,
) -> SignedInPublic:
    """Join the tenant: a new account sets its password here (and is signed in); an
    address with an account must be signed in as it."""
    invitation = _invitation(session, token, now)
    existing = members.find_member(session, email=invitation.email)
    signed: SignedIn | None = None
    if cookie:
        found = find_session(session, token=cookie, now=now,
                             policy=session_policy(settings.console))
        if found is not None:
            signed = SignedIn(member=found[1], session=found[0])
    try:
        if existing is not None:
            if signed is None or signed.member.id != existing.id:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                    "this address has an account: sign in as it first",
                                    headers={"WWW-Authenticate": "Bearer"})
            members.accept(session, invitation=invitation, member=existing, now=now)
            session.commit()
            return _public(session, existing, signed.session)
        if body.password is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "a new account needs a password")
        member = members.create_member(session, email=invitation.email,
                                       password=body.password, name=body.name, now=now)
        members.accept(session, invitation=invitation, member=member, now=now)
    except members.MemberError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    row, session_token = open_session(session, member=member, now=now,
                                      policy=session_policy(settings.console))
    session.commit()
    _set_cookie(response, request, settings, session_token)
    return _public(session, member, row)
