"""A tenant's API keys: issued (shown once), listed, revoked; only hashes are kept."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, HTTPException, status

from cloud.api.access import MayManageKeys
from cloud.api.audit import Audit
from cloud.api.deps import NowDep, SessionDep
from cloud.auth.keys import create_key, list_keys, revoke_key
from cloud.auth.models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic

router = APIRouter(tags=["api keys"])


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def create_api_key(
    caller: MayManageKeys, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    data: ApiKeyCreate,
) -> ApiKeyCreated:
    """Issue an admin or app key for this tenant. The response carries the key itself,
    this once: only its hash is kept."""
    row, key = create_key(
        session, role=data.role, tenant=tenant, name=data.name, created_by=caller.name[:64],
        now=now,
    )
    audit.record("key.create", f"key:{row.key_id}", after=ApiKeyPublic.model_validate(row))
    session.commit()
    return ApiKeyCreated.model_validate(row, update={"key": key})


@router.get("/api-keys", response_model=list[ApiKeyPublic])
def list_api_keys(caller: MayManageKeys, session: SessionDep, tenant: str) -> Sequence[ApiKey]:
    """This tenant's keys, revoked ones included; never a key or its hash."""
    return list_keys(session, tenant=tenant)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyPublic)
def revoke_api_key(
    caller: MayManageKeys, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key_id: str,
) -> ApiKey:
    """Revoke one of this tenant's keys: it is refused from the next request on."""
    row = revoke_key(session, key_id=key_id, tenant=tenant, now=now)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"API key {key_id!r} of tenant {tenant!r} not found"
        )
    audit.record("key.revoke", f"key:{key_id}", after=ApiKeyPublic.model_validate(row))
    session.commit()
    return row
