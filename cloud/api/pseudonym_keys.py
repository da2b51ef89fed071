"""A tenant's pseudonymization keys in rotation (`cloud.rotation.flow`).

- GET /tenants/{t}/pseudonym-keys: each key's state (listed, active, retired), whether
  this process has its secret, how many live gateways hold it, and every gateway with
  the keys it reports (and what stands in the rotation's way there: a gateway enrolled
  before keys could be delivered remotely must be enrolled again).
- POST .../pseudonym-keys/{key}/activate: the tenant's gateways switch to it. 409 while
  a live gateway does not report holding it, unless `{"force": true}`.
- POST .../pseudonym-keys/{key}/retire: links under it are deleted and the gateways erase
  it. 409 for the active key, and while a gateway still uses it, unless forced.

The configs these save are published at once when the broker takes them, else by the
delivery stage's worker. A key is added by listing it in the tenant's settings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlmodel import Session

from cloud.api.access import MayManageKeys, MayReadConfig
from cloud.api.audit import Audit
from cloud.api.deps import NowDep, SessionDep, SettingsDep, TenantConfig
from cloud.api.errors import refusals
from cloud.delivery import gateway_configs
from cloud.gateways.models import RegisteredGateway
from cloud.rotation.flow import (
    RotationRefusedError,
    TenantRing,
    UnknownKeyError,
    activate,
    retire,
    rotation_public,
    sync_ring,
)
from cloud.rotation.models import ActivationRequest, KeyRotationPublic
from cloud.settings import Settings
from shared.pseudonym import KEY_ID_PATTERN

router = APIRouter(tags=["pseudonym keys"])

KeyIdPath = Annotated[str, Path(pattern=KEY_ID_PATTERN.pattern)]
_RNG = random.Random()

Step = Callable[..., tuple[TenantRing, list[RegisteredGateway]]]


@router.get("/pseudonym-keys", response_model=KeyRotationPublic)
def keys_route(caller: MayReadConfig, session: SessionDep, now: NowDep, tenant: str,
               tenant_settings: TenantConfig) -> KeyRotationPublic:
    """The tenant's keys and what its gateways report holding."""
    ring = sync_ring(session, tenant=tenant, settings=tenant_settings, now=now)
    session.commit()
    return rotation_public(session, ring=ring, now=now)


@router.post("/pseudonym-keys/{key_id}/activate", response_model=KeyRotationPublic,
             responses=refusals(409))
def activate_route(caller: MayManageKeys, session: SessionDep, settings: SettingsDep,
                   now: NowDep, audit: Audit, tenant: str, tenant_settings: TenantConfig,
                   key_id: KeyIdPath, body: ActivationRequest | None = None
                   ) -> KeyRotationPublic:
    """Make the key active: every gateway's config names it from the next version."""
    return _step(activate, "pseudonym_key.activate", session=session, settings=settings,
                 now=now, audit=audit, tenant=tenant, tenant_settings=tenant_settings,
                 key_id=key_id, force=bool(body and body.force))


@router.post("/pseudonym-keys/{key_id}/retire", response_model=KeyRotationPublic,
             responses=refusals(409))
def retire_route(caller: MayManageKeys, session: SessionDep, settings: SettingsDep,
                 now: NowDep, audit: Audit, tenant: str, tenant_settings: TenantConfig,
                 key_id: KeyIdPath, body: ActivationRequest | None = None
                 ) -> KeyRotationPublic:
    """Retire the key: its links are deleted and the gateways erase it."""
    return _step(retire, "pseudonym_key.retire", session=session, settings=settings,
                 now=now, audit=audit, tenant=tenant, tenant_settings=tenant_settings,
                 key_id=key_id, force=bool(body and body.force))


def _step(step: Step, action: str, *, session: Session, settings: Settings, now: NowDep,
          audit: Audit, tenant: str, tenant_settings: TenantConfig, key_id: str,
          force: bool) -> KeyRotationPublic:
    try:
        ring, saved = step(session, tenant=tenant, settings=tenant_settings, key_id=key_id,
                           now=now, force=force)
    except UnknownKeyError as error:
        session.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except RotationRefusedError as error:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    row = ring.states[key_id]
    audit.record(action, f"pseudonym_key:{key_id}",
                 after={"state": row.state, "force": force, "configs_saved": len(saved),
                        "links_deleted": row.links_deleted})
    claims = [gateway_configs.begin_publish(session, row=gateway, now=now) for gateway in saved]
    session.commit()
    published = 0
    for claim in claims:
        failure = gateway_configs.publish(settings.mqtt, claim)
        gateway_configs.settle(session, claim=claim, error=failure, now=now, rng=_RNG)
        published += failure is None
    session.commit()
    outcome = (f"key {key_id} is {row.state}; {len(saved)} gateway config(s) saved, "
               f"{published} on the broker now"
               + (f"; {row.links_deleted} identity link(s) deleted"
                  if row.links_deleted is not None else ""))
    return rotation_public(session, ring=ring, now=now, outcome=outcome)
