"""Console members: accounts, their roles per tenant, invitations, signing in.

An account is an email address and a password; what it may do is its membership's role
in each tenant (`cloud.auth.permissions`). New members join by invitation: a member who
may manage members (an owner, or an admin or operator key) invites an address in a role,
and whoever opens the link sets a password (or, with an account already, signs in) and
joins. The first owner of a tenant is invited by an operator key or made with
`vitrina-cloud members create`.

Functions take keyword arguments, work in the caller's session and leave committing to
the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.auth import throttle
from cloud.auth.models import ConsoleSession, Invitation, Member, Membership
from cloud.auth.passwords import hash_password, verify, verify_nobody
from cloud.auth.permissions import MemberRole
from cloud.auth.sessions import SessionPolicy, close_other_sessions, open_session

#: 256 bits in an invitation link.
INVITATION_TOKEN_BYTES = 32
#: What a device token's HMAC is for, so that it is no other HMAC of the same key.
DEVICE_PURPOSE = "vitrina-console-device"


class MemberError(ValueError):
    """A request about members that cannot be done as asked; the message says why."""


class SignInRefusedError(Exception):
    """Wrong address or password (which of the two is not said)."""


@dataclass(frozen=True, slots=True)
class SignInBlockedError(Exception):
    """Too many failed sign-ins: try again after `retry_after`."""

    retry_after: timedelta


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_member(session: Session, *, email: str) -> Member | None:
    return session.exec(select(Member).where(Member.email == normalize_email(email))).first()


def create_member(
    session: Session, *, email: str, password: str, name: str = "", now: datetime
) -> Member:
    """A new account; MemberError when the address has one already."""
    if find_member(session, email=email) is not None:
        raise MemberError("this address has an account already")
    member = Member(email=normalize_email(email), name=name, password_hash=hash_password(password),
                    created_at=now, password_changed_at=now)
    session.add(member)
    session.flush()
    return member


def memberships(session: Session, *, member_id: int) -> Sequence[Membership]:
    return session.exec(
        select(Membership).where(Membership.member_id == member_id)
        .order_by(col(Membership.tenant))
    ).all()


def role_in(session: Session, *, member_id: int, tenant: str) -> MemberRole | None:
    row = session.get(Membership, (member_id, tenant))
    return MemberRole(row.role) if row is not None else None


def grant(
    session: Session, *, member: Member, tenant: str, role: MemberRole, now: datetime
) -> Membership:
    """Give `member` `role` in `tenant` (a new membership, or a changed role)."""
    assert member.id is not None
    row = session.get(Membership, (member.id, tenant))
    if row is None:
        row = Membership(member_id=member.id, tenant=tenant, role=role.value, created_at=now)
    else:
        _keep_an_owner(session, tenant=tenant, member_id=member.id, new_role=role)
        row.role = role.value
    session.add(row)
    session.flush()
    return row


def remove(session: Session, *, member_id: int, tenant: str) -> Membership | None:
    """End a membership (the account stays, with its other tenants)."""
    row = session.get(Membership, (member_id, tenant))
    if row is None:
        return None
    _keep_an_owner(session, tenant=tenant, member_id=member_id, new_role=None)
    session.delete(row)
    session.flush()
    return row


def _keep_an_owner(
    session: Session, *, tenant: str, member_id: int, new_role: MemberRole | None
) -> None:
    """A tenant with owners keeps at least one: nobody could manage its members else."""
    if new_role is MemberRole.OWNER or role_in(
        session, member_id=member_id, tenant=tenant
    ) is not MemberRole.OWNER:
        return
    owners = session.exec(
        select(func.count()).select_from(Membership)
        .where(Membership.tenant == tenant, Membership.role == MemberRole.OWNER.value)
    ).one()
    if owners <= 1:
        raise MemberError("the tenant's last owner cannot leave or be demoted; make "
                          "another member owner first")


def tenant_members(
    session: Session, *, tenant: str
) -> Sequence[tuple[Member, Membership]]:
    return session.exec(
        select(Member, Membership).join(Membership, col(Membership.member_id) == col(Member.id))
        .where(Membership.tenant == tenant).order_by(col(Member.email))
    ).all()


@dataclass(frozen=True, slots=True)
class SignInResult:
    """A new session (its row and the cookie's token) and the browser's new device token."""

    member: Member
    session: ConsoleSession
    token: str
    #: The known-browser token for `DEVICE_COOKIE` (`device_token`).
    device: str


def device_token(member: Member) -> str:
    """Proof that this browser signed in as `member` before: the member's id and an HMAC
    of it keyed with the member's password hash, which only the server holds. It needs
    no storage, and a new password (a new hash) ends every such token at once."""
    assert member.id is not None
    mac = hmac.new(member.password_hash.encode(), f"{DEVICE_PURPOSE}:{member.id}".encode(),
                   hashlib.sha256).hexdigest()
    return f"{member.id}.{mac}"


def is_known_device(member: Member, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token.encode(),
                                                     device_token(member).encode())


def sign_in(
    session: Session, *, email: str, password: str, client: str, now: datetime,
    policy: SessionPolicy, limits: throttle.Throttle, device: str | None = None,
) -> SignInResult:
    """A new session for the account, or SignInRefusedError / SignInBlockedError.

    Failures are counted per account and per client address (`cloud.auth.throttle`). A
    blocked subject is refused before the password is checked, right or wrong: a right
    password let through would tell a guesser which of its guesses was right, at full
    speed. The account's own block would then lock its member out while someone else
    guesses, so a browser that signed in as the member before (`device`, a
    `device_token`) is not held to the account's count but to its own: a guesser
    holds no such token. A success counts nothing and clears the account's count.

    The failure counts are committed whatever the caller does next."""
    member = find_member(session, email=email)
    account = throttle.subject("account", email)
    address = throttle.subject("client", client)
    if member is not None and is_known_device(member, device):
        assert device is not None
        checked = [address, throttle.subject("device", device)]
        counted = [*checked, account]
    else:
        checked = counted = [account, address]
    waiting = throttle.blocked_for(session, subjects=checked, now=now)
    if waiting is not None:
        raise SignInBlockedError(waiting)
    if member is None:
        verify_nobody(password)
        matches, rehashed = False, None
    else:
        matches, rehashed = verify(password, member.password_hash)
    if not matches or member is None:
        throttle.record_failure(session, subjects=counted, now=now, throttle=limits)
        session.commit()
        raise SignInRefusedError
    throttle.clear(session, subject_key=account)
    if rehashed is not None:
        member.password_hash = rehashed
        session.add(member)
    row, token = open_session(session, member=member, now=now, policy=policy)
    return SignInResult(member, row, token, device_token(member))


def change_password(
    session: Session, *, member: Member, current: str, new: str, keep_session: str,
    now: datetime,
) -> int:
    """Set a new password (the current one must match); every other session of the
    member ends. Returns how many ended."""
    matches, _rehashed = verify(current, member.password_hash)
    if not matches:
        raise MemberError("the current password does not match")
    if new == current:
        raise MemberError("the new password is the current one")
    set_password(session, member=member, new=new, now=now)
    assert member.id is not None
    return close_other_sessions(session, member_id=member.id, keep=keep_session)


def set_password(session: Session, *, member: Member, new: str, now: datetime) -> None:
    member.password_hash = hash_password(new)
    member.password_changed_at = now
    session.add(member)
    session.flush()


def invitation_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite(
    session: Session, *, tenant: str, email: str, role: MemberRole, invited_by: str,
    now: datetime, valid_for: timedelta,
) -> tuple[Invitation, str]:
    """An invitation and its token (shown once: only its hash is kept)."""
    token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
    row = Invitation(
        tenant=tenant, email=normalize_email(email), role=role.value,
        token_hash=invitation_hash(token), invited_by=invited_by[:254], created_at=now,
        expires_at=now + valid_for,
    )
    session.add(row)
    session.flush()
    return row, token


def pending_invitations(session: Session, *, tenant: str, now: datetime) -> Sequence[Invitation]:
    return session.exec(
        select(Invitation).where(
            Invitation.tenant == tenant, col(Invitation.accepted_at).is_(None),
            col(Invitation.revoked_at).is_(None), col(Invitation.expires_at) > now,
        ).order_by(col(Invitation.id))
    ).all()


def revoke_invitation(
    session: Session, *, tenant: str, invitation_id: int, now: datetime
) -> Invitation | None:
    row = session.get(Invitation, invitation_id)
    if row is None or row.tenant != tenant:
        return None
    if row.accepted_at is None and row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.flush()
    return row


def open_invitation(session: Session, *, token: str, now: datetime) -> Invitation:
    """The invitation the token stands for, still usable; MemberError otherwise (one
    message for unknown, used, revoked and expired: the token is the only credential)."""
    row = session.exec(
        select(Invitation).where(Invitation.token_hash == invitation_hash(token))
    ).first()
    if row is None or row.accepted_at is not None or row.revoked_at is not None or (
        row.expires_at <= now
    ):
        raise MemberError("this invitation is not valid (used, withdrawn or expired)")
    return row


def accept(
    session: Session, *, invitation: Invitation, member: Member, now: datetime
) -> Membership:
    """`member` joins the invitation's tenant in its role; the invitation is used up."""
    if member.email != invitation.email:
        raise MemberError("this invitation is for another address")
    invitation.accepted_at = now
    session.add(invitation)
    return grant(session, member=member, tenant=invitation.tenant,
                 role=MemberRole(invitation.role), now=now)
