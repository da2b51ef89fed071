"""The audit log: each configuration change a route makes is recorded through `Audit`
(who, what, when, before and after, in the change's own transaction), and read back at
`GET /tenants/{tenant}/audit`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cloud.api.access import MayReadAudit, TenantCaller
from cloud.api.deps import MAX_PAGE, NowDep, SessionDep
from cloud.audit import AuditEntryPublic, entries, record
from cloud.bounds import BoundedText, RowId

router = APIRouter(tags=["audit"])


class AuditTrail:
    """Records the changes of one request, as its caller, in its session."""

    def __init__(self, session: SessionDep, caller: TenantCaller, now: NowDep, tenant: str
                 ) -> None:
        self._session, self._caller, self._now, self._tenant = session, caller, now, tenant

    def record(self, action: str, target: str, *, before: Any = None, after: Any = None
               ) -> None:
        record(self._session, tenant=self._tenant, actor_kind=self._caller.kind,
               actor=self._caller.name, action=action, target=target, before=before,
               after=after, now=self._now)


Audit = Annotated[AuditTrail, Depends(AuditTrail)]


@router.get("/audit", response_model=list[AuditEntryPublic])
def audit_log(
    caller: MayReadAudit, session: SessionDep, tenant: str,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    before_id: Annotated[RowId | None, Query()] = None,
    action: Annotated[BoundedText | None, Query(max_length=64)] = None,
) -> list[AuditEntryPublic]:
    """Configuration changes, newest first; `before_id` pages back, `action` filters by
    prefix ("offer." for every change to offers)."""
    return [AuditEntryPublic.model_validate(row, from_attributes=True)
            for row in entries(session, tenant=tenant, limit=limit, before_id=before_id,
                               action=action)]
