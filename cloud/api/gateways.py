"""A store's gateways: registered by an admin, enrolled on the device by a one-time
code, revoked, and configured from the cloud.

- POST /tenants/{t}/stores/{s}/gateways: a new gateway and its enrolment code (shown
  once, with the command to run on the device); POST .../{g}/code a new code while it
  has not enrolled; DELETE .../{g} revokes it (its broker login is deleted, which ends
  its live session, and its code stops working).
- POST /enrol (public, no key): a device exchanges a code for its identity, the same
  files `vitrina-provision enrol-gateway` writes. Every code that cannot be used (wrong,
  used, expired, revoked, another tenant's) gets the same answer, so the answer tells a
  guesser nothing; wrong codes from one client address are slowed down like sign-ins.
- GET .../{g}/health: the gateway's newest report, its history (a sample per 5 minutes,
  kept `gateways.health_history_days`; rates per source worked out from one sample to the
  next) and the alerts read from them (`cloud.presence.health`). A gateway enrolled
  offline, not registered here, has its history too.
- GET /install/gateway.sh (public): the gateway's installer, the script the package
  ships (provisioning/install/install-gateway.sh), for `curl -fsSL <cloud>/install/gateway.sh
  | sudo sh -s -- --package ... --code ... --cloud <cloud>` (docs/operations.md).
- PUT/GET .../{g}/config: the gateway's config (zones and RSSI thresholds, tracker
  settings, source switches, active key id), saved as the next version and published
  retained on its config topic; GET shows it next to the version the gateway's latest
  heartbeat says is in force (or refused, and why). A version the broker cannot take at
  once is saved all the same (202, saying so); the delivery stage sends it when it can
  (`cloud.delivery.gateway_configs`).

Broker work blocks on the network: these routes are plain functions, which FastAPI runs
in its thread pool, never on the event loop.
"""

from __future__ import annotations

import logging
import pathlib
import random
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from sqlmodel import Session

import provisioning
from cloud.api.access import MayReadAnalytics, MayReadConfig, MayWriteStores
from cloud.api.audit import Audit, AuditTrail
from cloud.api.deps import (
    NowDep,
    SessionDep,
    SettingsDep,
    client_address,
    too_many_attempts,
)
from cloud.api.errors import refusals
from cloud.audit import record
from cloud.auth import throttle
from cloud.delivery import gateway_configs
from cloud.gateways import broker
from cloud.gateways.crud import (
    AlreadyEnrolledError,
    GatewayExistsError,
    get_registered,
    list_registered,
    redeem_code,
    register_gateway,
    reissue_code,
    revoke_registered,
    save_config,
)
from cloud.gateways.enrolment import bundle_files
from cloud.gateways.models import (
    AppliedConfig,
    EnrolmentBundle,
    EnrolmentCodePublic,
    EnrolmentRequest,
    GatewayConfigPublic,
    GatewayConfigUpdate,
    GatewayState,
    RegisteredGateway,
    RegisteredGatewayCreate,
    RegisteredGatewayPublic,
)
from cloud.places.crud import get_store
from cloud.presence.crud import health_history
from cloud.presence.health import GatewayHealthHistory, health_alerts, health_points
from cloud.presence.models import GatewayHealth, GatewayHealthPublic
from cloud.rotation.flow import RE_ENROL, RotationRefusedError, completing, sync_ring
from cloud.settings import Settings, TenantSettings
from provisioning.bundle import GatewayIdentity
from shared.topics import SEGMENT_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(tags=["gateways"])
#: POST /enrol: the device has no key yet; its code is the credential.
public = APIRouter(tags=["gateways"])

StoreKey = Annotated[str, Path(pattern=SEGMENT_PATTERN.pattern)]
GatewayKey = Annotated[str, Path(pattern=SEGMENT_PATTERN.pattern)]

#: The gateway's installer, as the package ships it.
INSTALLER = pathlib.Path(provisioning.__file__).parent / "install" / "install-gateway.sh"

#: The one answer to every code that cannot be used: no oracle for guessers.
CODE_REFUSED = ("this enrolment code cannot be used: it is mistyped, used, expired or "
                "revoked; ask for a new one on the console's Stores page")
GATEWAYS_PATH = "/stores/{store}/gateways"
GATEWAY_PATH = GATEWAYS_PATH + "/{gateway}"


def _unavailable(error: broker.BrokerUnavailableError) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error))


def _health(session: Session, row: RegisteredGateway) -> GatewayHealth | None:
    return session.get(GatewayHealth, (row.tenant, row.store, row.gateway))


def _public(session: Session, row: RegisteredGateway) -> RegisteredGatewayPublic:
    health = _health(session, row)
    return RegisteredGatewayPublic(
        store=row.store, gateway=row.gateway, state=row.state, created_at=row.created_at,
        code_expires_at=row.code_expires_at, enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at, config_version=row.config_version,
        applied_config_version=health.config_version if health else None,
        receives_keys=row.receives_keys, key_delivery=_key_delivery(row),
    )


def _key_delivery(row: RegisteredGateway) -> str:
    """Whether tenant keys reach the gateway remotely, in a sentence for the console."""
    if row.state is not GatewayState.ENROLLED:
        return ""
    if row.receives_keys:
        return "new tenant keys are delivered to it sealed, in its config"
    return f"{RE_ENROL} (`vitrina-edge enrol --force` with a new code)"


def _config_public(session: Session, row: RegisteredGateway) -> GatewayConfigPublic:
    health = _health(session, row)
    applied = None if health is None else AppliedConfig(
        version=health.config_version, refused_version=health.config_refused_version,
        refused_reason=health.config_refused_reason, reported_at=health.status_sent_at,
    )
    unpublished = row.config_version > 0 and row.config_published_at is None
    return GatewayConfigPublic(
        store=row.store, gateway=row.gateway, desired_version=row.config_version,
        desired=row.config, saved_at=row.config_saved_at,
        published_at=row.config_published_at,
        publish_error=row.config_publish_error if unpublished else None,
        next_publish_at=row.config_next_attempt_at if unpublished else None,
        delivery=_delivery(row, applied), applied=applied,
    )


def _delivery(row: RegisteredGateway, applied: AppliedConfig | None) -> str:
    """Where the saved version is, in a sentence for whoever saved it."""
    version = row.config_version
    if row.state is GatewayState.REVOKED:
        return "the gateway is revoked: it takes no config"
    if version == 0:
        return "no config saved: the gateway runs on its own file"
    if row.config_published_at is None:
        why = f" ({row.config_publish_error})" if row.config_publish_error else ""
        return (f"version {version} is saved but not yet on the broker{why}; the "
                "orchestrator's worker sends it as soon as the broker takes it")
    if applied is not None and applied.version == version:
        return f"version {version} is in force on the gateway"
    if applied is not None and applied.refused_version == version:
        return f"the gateway refused version {version}: {applied.refused_reason}"
    return (f"version {version} is on the broker (retained): the gateway takes it when "
            "connected and reports it in its next heartbeat")


def _tenant_settings(settings: Settings, tenant: str) -> TenantSettings:
    found = settings.tenant(tenant)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant!r} is not configured")
    return found


def _code_lifetime(settings: Settings) -> timedelta:
    return timedelta(hours=settings.gateways.enrolment_code_hours)


def _enrol_command(request: Request, code: str) -> str:
    return f"sudo vitrina-edge enrol --code {code} --cloud {str(request.base_url).rstrip('/')}"


def _code_issued(session: Session, *, request: Request, audit: AuditTrail, action: str,
                 row: RegisteredGateway, code: str) -> EnrolmentCodePublic:
    """Record and commit a new enrolment code; the answer that shows it, this once."""
    public_row = _public(session, row)
    audit.record(action, f"gateway:{row.store}/{row.gateway}", after=public_row)
    session.commit()
    assert row.code_expires_at is not None
    return EnrolmentCodePublic(gateway=public_row, code=code, expires_at=row.code_expires_at,
                               command=_enrol_command(request, code))


def _gateway_or_404(session: Session, tenant: str, store: str, gateway: str
                    ) -> RegisteredGateway:
    """The registered gateway; 404 otherwise, saying so when the gateway reports all the
    same (enrolled offline, so the console cannot revoke or configure it)."""
    row = get_registered(session, tenant=tenant, store=store, gateway=gateway)
    if row is not None:
        return row
    if session.get(GatewayHealth, (tenant, store, gateway)) is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, (
            f"gateway {gateway!r} of store {store!r} reports, but is not registered here: "
            "it was enrolled offline. Revoke it with `vitrina-provision revoke-gateway` on "
            "the broker's host; it takes its config from its own file"))
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"store {store!r} has no gateway {gateway!r}")


@router.get(GATEWAYS_PATH, response_model=list[RegisteredGatewayPublic])
def list_gateways_route(
    caller: MayReadConfig, session: SessionDep, tenant: str, store: StoreKey,
) -> list[RegisteredGatewayPublic]:
    """The store's registered gateways, revoked ones included (for the record)."""
    return [_public(session, row) for row in list_registered(session, tenant=tenant,
                                                             store=store)]


@router.post(GATEWAYS_PATH, response_model=EnrolmentCodePublic,
             status_code=status.HTTP_201_CREATED, responses=refusals(409))
def create_gateway_route(
    caller: MayWriteStores, request: Request, session: SessionDep, settings: SettingsDep,
    now: NowDep, audit: Audit, tenant: str, store: StoreKey, body: RegisteredGatewayCreate,
) -> EnrolmentCodePublic:
    """Add a gateway to the store; the answer holds its enrolment code, shown this once."""
    if get_store(session, tenant=tenant, key=store) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"store {store!r} not found")
    try:
        row, code = register_gateway(session, tenant=tenant, store=store, gateway=body.gateway,
                                     now=now, lifetime=_code_lifetime(settings))
    except GatewayExistsError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return _code_issued(session, request=request, audit=audit, action="gateway.create",
                        row=row, code=code)


@router.post(GATEWAY_PATH + "/code", response_model=EnrolmentCodePublic,
             status_code=status.HTTP_201_CREATED, responses=refusals(409))
def new_code_route(
    caller: MayWriteStores, request: Request, session: SessionDep, settings: SettingsDep,
    now: NowDep, audit: Audit, tenant: str, store: StoreKey, gateway: GatewayKey,
) -> EnrolmentCodePublic:
    """A new code for a gateway that has not enrolled yet; the earlier one stops working."""
    row = _gateway_or_404(session, tenant, store, gateway)
    try:
        code = reissue_code(session, row=row, now=now, lifetime=_code_lifetime(settings))
    except AlreadyEnrolledError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return _code_issued(session, request=request, audit=audit, action="gateway.code",
                        row=row, code=code)


@router.delete(GATEWAY_PATH, response_model=RegisteredGatewayPublic, responses=refusals(503))
def revoke_gateway_route(
    caller: MayWriteStores, session: SessionDep, settings: SettingsDep, now: NowDep,
    audit: Audit, tenant: str, store: StoreKey, gateway: GatewayKey,
) -> RegisteredGatewayPublic:
    """Revoke the gateway: its broker login goes (its live session ends with it) and its
    code stops working. 503, changing nothing, when the broker cannot be told.

    The login is deleted even for a gateway that never used its code: one registered
    here may have been enrolled offline (`vitrina-provision enrol-gateway` makes a login
    of the same name), and revoking must cut it too."""
    row = _gateway_or_404(session, tenant, store, gateway)
    before = _public(session, row)
    if row.state is GatewayState.REVOKED:
        return before
    try:
        broker.delete_login(settings, tenant=tenant, store=store, gateway=gateway)
    except broker.BrokerUnavailableError as error:
        raise _unavailable(error) from None
    revoke_registered(session, row=row, now=now)
    after = _public(session, row)
    audit.record("gateway.revoke", f"gateway:{store}/{gateway}", before=before, after=after)
    session.commit()
    try:  # its retained config names nobody now; a left-over copy is harmless
        broker.publish_retained(settings.mqtt, broker.config_topic(tenant, store, gateway), b"")
    except broker.BrokerUnavailableError as error:
        log.warning("could not clear a revoked gateway's retained config: %s", error)
    return after


@router.get(GATEWAY_PATH + "/health", response_model=GatewayHealthHistory)
def get_health_route(
    caller: MayReadAnalytics, session: SessionDep, settings: SettingsDep, now: NowDep,
    tenant: str, store: StoreKey, gateway: GatewayKey,
    hours: Annotated[int, Query(ge=1, le=24 * 366, description="how far back")] = 24,
) -> GatewayHealthHistory:
    """The gateway's newest report, its history over the last `hours` (oldest first) and
    its alerts. 404 for a gateway neither registered nor ever heard from."""
    current = session.get(GatewayHealth, (tenant, store, gateway))
    if current is None and get_registered(session, tenant=tenant, store=store,
                                          gateway=gateway) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"store {store!r} has no gateway {gateway!r}")
    since = now - timedelta(hours=hours)
    samples = health_history(session, tenant=tenant, store=store, gateway=gateway,
                             since=since - timedelta(minutes=5))  # the rate into the first
    points = [point for point in health_points(samples) if point.slot >= since]
    return GatewayHealthHistory(
        store=store, gateway=gateway,
        current=None if current is None else GatewayHealthPublic.model_validate(current),
        since=since, retention_days=settings.gateways.health_history_days, points=points,
        alerts=health_alerts(current, samples, now=now))


@router.get(GATEWAY_PATH + "/config", response_model=GatewayConfigPublic)
def get_config_route(
    caller: MayReadConfig, session: SessionDep, tenant: str, store: StoreKey,
    gateway: GatewayKey,
) -> GatewayConfigPublic:
    """The config saved for the gateway (desired) and what its heartbeat reports (applied)."""
    return _config_public(session, _gateway_or_404(session, tenant, store, gateway))


@router.put(GATEWAY_PATH + "/config", response_model=GatewayConfigPublic,
            responses={202: {"description": "saved; the broker cannot take it now, and the "
                                            "worker sends it when it can",
                             "model": GatewayConfigPublic}, **refusals(409, 503)})
def put_config_route(
    caller: MayWriteStores, response: Response, session: SessionDep, settings: SettingsDep,
    now: NowDep, audit: Audit, tenant: str, store: StoreKey, gateway: GatewayKey,
    body: GatewayConfigUpdate,
) -> GatewayConfigPublic:
    """Save the next version of the gateway's config and publish it, retained, on its
    config topic: 200 once the broker has it. When the broker cannot take it now the
    version is saved all the same and the answer is 202, `published_at` empty and
    `delivery` saying why: the delivery stage's worker sends it when it can."""
    row = _gateway_or_404(session, tenant, store, gateway)
    if row.state is GatewayState.REVOKED:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"gateway {gateway!r} is revoked: it takes no config")
    if body.keys is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, (
            "keys are not set by hand: the cloud delivers the tenant's keys, sealed to the "
            "gateway, in every config it saves (see /pseudonym-keys)"))
    before = _config_public(session, row)
    try:
        ring = sync_ring(session, tenant=tenant, settings=_tenant_settings(settings, tenant),
                         now=now)
        document = save_config(session, row=row, config=body, now=now,
                               prepare=completing(row, ring))
    except RotationRefusedError as refused:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(refused)) from None
    audit.record("gateway.config", f"gateway:{store}/{gateway}", before=before.desired,
                 after=document)
    claim = gateway_configs.begin_publish(session, row=row, now=now)
    session.commit()
    error = gateway_configs.publish(settings.mqtt, claim)
    gateway_configs.settle(session, claim=claim, error=error, now=now, rng=_RNG)
    session.commit()
    session.refresh(row)
    if row.config_published_at is None:
        response.status_code = status.HTTP_202_ACCEPTED
    return _config_public(session, row)


#: Jitter for the back-off of configs the broker did not take.
_RNG = random.Random()


def _limits(settings: Settings) -> throttle.Throttle:
    gateways = settings.gateways
    return throttle.Throttle(
        free=gateways.enrol_free_failures,
        window=timedelta(minutes=gateways.enrol_window_minutes),
        base=timedelta(seconds=gateways.enrol_backoff_s),
        cap=timedelta(seconds=gateways.enrol_backoff_max_s),
    )


#: How the installer begins, as the OpenAPI document shows it.
INSTALLER_EXAMPLE = (
    "#!/bin/sh\n"
    "# Install the Vitrina gateway agent on Raspberry Pi OS or Debian 12 (bookworm), as root:\n"
)


@public.get("/install/gateway.sh", response_class=PlainTextResponse, responses={
    200: {"content": {"text/x-shellscript": {"example": INSTALLER_EXAMPLE},
                      "text/plain": {"example": INSTALLER_EXAMPLE}},
          "description": "the installer script"}})
def gateway_installer() -> PlainTextResponse:
    """The installer, to pipe into `sudo sh -s -- ...` on the gateway."""
    return PlainTextResponse(INSTALLER.read_text(encoding="utf-8"),
                             media_type="text/x-shellscript; charset=utf-8")


@public.post("/enrol", response_model=EnrolmentBundle, responses=refusals(403, 429, 503))
def enrol_route(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep,
    body: EnrolmentRequest,
) -> EnrolmentBundle:
    """Exchange a one-time code for the gateway's identity: a new broker login, the
    tenant's keys and the broker's CA, as the files of its bundle. 403 for any code that
    cannot be used (always the same message), 429 with Retry-After after repeated wrong
    codes from one address, 503 when the broker cannot make the login (the code stays
    usable)."""
    client = throttle.subject("enrol-address", client_address(request))
    waiting = throttle.blocked_for(session, subjects=[client], now=now)
    if waiting is not None:
        raise too_many_attempts("wrong enrolment codes", waiting)
    row = redeem_code(session, typed=body.code, tenant=body.tenant, now=now,
                      seal_public_key=body.seal_public_key)
    tenant_settings = settings.tenant(row.tenant) if row is not None else None
    if row is None or tenant_settings is None:
        session.rollback()
        throttle.record_failure(session, subjects=[client], now=now,
                               throttle=_limits(settings))
        session.commit()
        log.info("enrolment code refused")
        raise HTTPException(status.HTTP_403_FORBIDDEN, CODE_REFUSED)
    store = get_store(session, tenant=row.tenant, key=row.store)
    try:
        ring = sync_ring(session, tenant=row.tenant, settings=tenant_settings, now=now)
        keys = ring.enrolment_keys()
    except RotationRefusedError as error:
        session.rollback()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    try:
        ca = broker.gateway_ca_certificate(settings)
        credentials = broker.create_login(settings, tenant=row.tenant, store=row.store,
                                          gateway=row.gateway)
    except broker.BrokerUnavailableError as error:
        session.rollback()
        raise _unavailable(error) from None
    files = bundle_files(
        settings, keys=keys,
        identity=GatewayIdentity(row.tenant, row.store, row.gateway), credentials=credentials,
        ca_certificate=ca, timezone=store.time_zone if store else "UTC",
        directory=body.directory, sealing=row.receives_keys,
    )
    record(session, tenant=row.tenant, actor_kind="gateway", actor=credentials.username,
           action="gateway.enrol", target=f"gateway:{row.store}/{row.gateway}",
           before=None, after=_public(session, row), now=now)
    session.commit()
    log.info("gateway %s/%s/%s enrolled", row.tenant, row.store, row.gateway)
    return EnrolmentBundle(tenant=row.tenant, store=row.store, gateway=row.gateway, files=files)
