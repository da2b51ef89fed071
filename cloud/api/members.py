"""A tenant's console members: who they are, their roles, and invitations to join.

Managing members needs `members.manage` (an owner, an admin key, or an operator key,
which is how a tenant gets its first owner). The tenant keeps at least one owner.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict

from cloud.api.access import MayManageMembers
from cloud.api.audit import Audit
from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.errors import refusals
from cloud.auth import members
from cloud.auth.models import Invitation, MemberEmail
from cloud.auth.permissions import MemberRole
from cloud.bounds import RowId
from cloud.examples import example

router = APIRouter(tags=["members"])


class MemberInTenant(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"id": 7, "email": "marta@acme.example", "name": "Marta Ruiz", "role": "marketer",
         "since": "2026-11-02T08:00:00Z"},
    ))

    id: int
    email: str
    name: str
    role: MemberRole
    since: datetime


class InvitationSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"id": 3, "email": "luis@acme.example", "role": "store_operator",
         "invited_by": "marta@acme.example", "created_at": "2026-12-07T08:00:00Z",
         "expires_at": "2026-12-14T08:00:00Z"},
    ))

    id: int
    email: str
    role: MemberRole
    invited_by: str
    created_at: datetime
    expires_at: datetime


class MembersPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"members": [{"id": 7, "email": "marta@acme.example", "name": "Marta Ruiz",
                      "role": "owner", "since": "2026-11-02T08:00:00Z"}],
         "invitations": [{"id": 3, "email": "luis@acme.example", "role": "store_operator",
                          "invited_by": "marta@acme.example",
                          "created_at": "2026-12-07T08:00:00Z",
                          "expires_at": "2026-12-14T08:00:00Z"}]},
    ))

    members: list[MemberInTenant]
    invitations: list[InvitationSummary]


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"email": "luis@acme.example", "role": "store_operator"},
    ))

    email: MemberEmail
    role: MemberRole


class InvitationCreated(InvitationSummary):
    model_config = ConfigDict(json_schema_extra=example(
        {"id": 3, "email": "luis@acme.example", "role": "store_operator",
         "invited_by": "marta@acme.example", "created_at": "2026-12-07T08:00:00Z",
         "expires_at": "2026-12-14T08:00:00Z",
         "accept_url": "https://vitrina.acme.example/console/#/accept/inv_Q2xldmVyIGdpcmw"},
    ))

    #: The link to send the invitee (shown once: only a hash of its token is kept).
    accept_url: str


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"role": "analyst"},
    ))

    role: MemberRole


def _summary(row: Invitation) -> InvitationSummary:
    assert row.id is not None
    return InvitationSummary(id=row.id, email=row.email, role=MemberRole(row.role),
                             invited_by=row.invited_by, created_at=row.created_at,
                             expires_at=row.expires_at)


@router.get("/members", response_model=MembersPublic)
def list_members(
    caller: MayManageMembers, session: SessionDep, now: NowDep, tenant: str
) -> MembersPublic:
    rows = members.tenant_members(session, tenant=tenant)
    return MembersPublic(
        members=[MemberInTenant(id=member.id or 0, email=member.email, name=member.name,
                                role=MemberRole(membership.role), since=membership.created_at)
                 for member, membership in rows],
        invitations=[_summary(row) for row in members.pending_invitations(
            session, tenant=tenant, now=now)],
    )


@router.post("/members/invitations", status_code=status.HTTP_201_CREATED,
             response_model=InvitationCreated)
def invite_member(
    caller: MayManageMembers, session: SessionDep, settings: SettingsDep, now: NowDep,
    audit: Audit, tenant: str, body: InvitationCreate,
) -> InvitationCreated:
    """Invite an address in a role; the answer carries the link to send, this once."""
    row, token = members.invite(
        session, tenant=tenant, email=body.email, role=body.role, invited_by=caller.name,
        now=now, valid_for=timedelta(days=settings.console.invitation_days),
    )
    summary = _summary(row)
    audit.record("member.invite", f"invitation:{row.id}", after=summary)
    session.commit()
    base = settings.tracking.public_base_url.rstrip("/")
    return InvitationCreated(**summary.model_dump(),
                             accept_url=f"{base}/console/invitations/{token}")


@router.delete("/members/invitations/{invitation_id}", response_model=InvitationSummary)
def withdraw_invitation(
    caller: MayManageMembers, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    invitation_id: RowId,
) -> InvitationSummary:
    row = members.revoke_invitation(session, tenant=tenant, invitation_id=invitation_id,
                                    now=now)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"invitation {invitation_id} not found")
    summary = _summary(row)
    audit.record("member.uninvite", f"invitation:{invitation_id}", before=summary)
    session.commit()
    return summary


def _in_tenant(session: SessionDep, tenant: str, member_id: int) -> MemberInTenant:
    for member, membership in members.tenant_members(session, tenant=tenant):
        if member.id == member_id:
            return MemberInTenant(id=member_id, email=member.email, name=member.name,
                                  role=MemberRole(membership.role), since=membership.created_at)
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"member {member_id} not found")


@router.patch("/members/{member_id}", response_model=MemberInTenant, responses=refusals(409))
def change_role(
    caller: MayManageMembers, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    member_id: RowId, body: RoleChange,
) -> MemberInTenant:
    before = _in_tenant(session, tenant, member_id)
    account = members.find_member(session, email=before.email)
    assert account is not None
    try:
        members.grant(session, member=account, tenant=tenant, role=body.role, now=now)
    except members.MemberError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    after = _in_tenant(session, tenant, member_id)
    audit.record("member.role", f"member:{before.email}", before=before, after=after)
    session.commit()
    return after


@router.delete("/members/{member_id}", response_model=MemberInTenant,
               responses=refusals(409))
def remove_member(
    caller: MayManageMembers, session: SessionDep, audit: Audit, tenant: str, member_id: RowId,
) -> MemberInTenant:
    """End a membership (the account keeps its other tenants)."""
    before = _in_tenant(session, tenant, member_id)
    try:
        members.remove(session, member_id=member_id, tenant=tenant)
    except members.MemberError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    audit.record("member.remove", f"member:{before.email}", before=before)
    session.commit()
    return before
