"""A tenant's customer token keys: the public keys its backend signs customer tokens
with (`cloud.auth.customer_tokens`). Registered, listed and retired by whoever manages
the tenant's API keys; every change is audit-logged. The private keys stay with the shop.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, HTTPException, status

from cloud.api.access import MayManageKeys
from cloud.api.audit import Audit
from cloud.api.deps import NowDep, SessionDep
from cloud.api.errors import refusals
from cloud.auth.customer_tokens import (
    DuplicateTokenKeyError,
    TokenKeyError,
    add_token_key,
    list_token_keys,
    retire_token_key,
)
from cloud.auth.models import CustomerTokenKey, CustomerTokenKeyCreate, CustomerTokenKeyPublic

router = APIRouter(tags=["customer tokens"])


@router.post("/customer-token-keys", status_code=status.HTTP_201_CREATED,
             response_model=CustomerTokenKeyPublic, responses=refusals(409))
def register_token_key(
    caller: MayManageKeys, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    data: CustomerTokenKeyCreate,
) -> CustomerTokenKey:
    """Register a public key (ES256 on P-256, or EdDSA on Ed25519) under a new kid.
    Tokens signed with its private half verify from now on, alongside the other active
    keys: rotate by registering the next key, signing with it, then retiring the old."""
    try:
        row = add_token_key(session, tenant=tenant, data=data, created_by=caller.name, now=now)
    except TokenKeyError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "public_key_pem"], "type": "value_error", "msg": str(error),
        }]) from None
    except DuplicateTokenKeyError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    audit.record("token_key.create", f"token_key:{row.kid}",
                 after=CustomerTokenKeyPublic.model_validate(row))
    session.commit()
    return row


@router.get("/customer-token-keys", response_model=list[CustomerTokenKeyPublic])
def list_customer_token_keys(
    caller: MayManageKeys, session: SessionDep, tenant: str
) -> Sequence[CustomerTokenKey]:
    """The tenant's keys, oldest first, retired ones too."""
    return list_token_keys(session, tenant=tenant)


@router.delete("/customer-token-keys/{kid}", response_model=CustomerTokenKeyPublic)
def retire_customer_token_key(
    caller: MayManageKeys, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    kid: str,
) -> CustomerTokenKey:
    """Retire a key: tokens under it are refused from the next request on. The row stays
    (a kid is never reused)."""
    row = retire_token_key(session, tenant=tenant, kid=kid, now=now)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"customer token key {kid!r} of tenant {tenant!r} not found")
    audit.record("token_key.retire", f"token_key:{kid}",
                 after=CustomerTokenKeyPublic.model_validate(row))
    session.commit()
    return row
