"""The tenant's own quiet hours and time zone: GET and PUT /tenants/{tenant}/preferences.

Every member reads them; those who may write them (`MayWritePreferences`: marketers,
owners, admin keys) replace them whole, and each save is audited (`preferences.put`,
before and after) and counted (`version`). The answer says what applies with the
deployment's settings (`applies`), for a customer who gave no time zone outside a store's
journeys; a store's own quiet hours are part of the store (`PUT .../stores/{key}`), and
`cloud.preferences.precedence` says which level wins.
"""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api.access import MayReadConfig, MayWritePreferences
from cloud.api.audit import Audit
from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.preferences.crud import get_preferences, public_preferences, put_preferences
from cloud.preferences.models import TenantPreferencesPublic, TenantPreferencesUpdate

router = APIRouter(tags=["preferences"])


@router.get("/preferences", response_model=TenantPreferencesPublic)
def get_preferences_route(
    caller: MayReadConfig, session: SessionDep, settings: SettingsDep, tenant: str
) -> TenantPreferencesPublic:
    """The tenant's quiet hours and time zone (null where it set none), and what applies."""
    return public_preferences(get_preferences(session, tenant=tenant), tenant=tenant,
                              settings=settings.scenarios)


@router.put("/preferences", response_model=TenantPreferencesPublic)
def put_preferences_route(
    caller: MayWritePreferences, session: SessionDep, settings: SettingsDep, now: NowDep,
    audit: Audit, tenant: str, data: TenantPreferencesUpdate,
) -> TenantPreferencesPublic:
    """Replace the tenant's quiet hours and time zone: a window, "off" (messages at any
    hour) or null (the deployment's); an IANA zone or null (the deployment's). A window
    whose start is its end is refused: say "off" for none."""
    found = get_preferences(session, tenant=tenant)
    before = (public_preferences(found, tenant=tenant, settings=settings.scenarios)
              if found is not None else None)
    row = put_preferences(session, tenant=tenant, data=data, now=now)
    after = public_preferences(row, tenant=tenant, settings=settings.scenarios)
    audit.record("preferences.put", "preferences", before=before, after=after)
    session.commit()
    return after
