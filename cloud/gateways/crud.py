"""Registering gateways, their enrolment codes and their saved config.

Only what the database holds: the broker side (logins, retained config) is
`cloud.gateways.broker`, and the routes put the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from cloud.gateways.codes import canonical_code, code_hash, new_code
from cloud.gateways.models import GatewayConfigUpdate, GatewayState, RegisteredGateway


class GatewayExistsError(ValueError):
    """The store already has a gateway of that id that is not revoked."""


class AlreadyEnrolledError(ValueError):
    """A code is for a gateway that has not enrolled yet (revoke it to start over)."""


def get_registered(
    session: Session, *, tenant: str, store: str, gateway: str
) -> RegisteredGateway | None:
    return session.exec(select(RegisteredGateway).where(
        RegisteredGateway.tenant == tenant, RegisteredGateway.store == store,
        RegisteredGateway.gateway == gateway,
    )).first()


def list_registered(
    session: Session, *, tenant: str, store: str | None = None
) -> Sequence[RegisteredGateway]:
    query = select(RegisteredGateway).where(RegisteredGateway.tenant == tenant)
    if store is not None:
        query = query.where(RegisteredGateway.store == store)
    return session.exec(query.order_by(col(RegisteredGateway.store),
                                       col(RegisteredGateway.gateway))).all()


def active_gateway_ids(session: Session, *, tenant: str, store: str) -> list[str]:
    """The store's registered gateways that are not revoked (pending or enrolled): each
    holds, or may yet get, a broker login for the store."""
    return [row.gateway for row in list_registered(session, tenant=tenant, store=store)
            if row.state is not GatewayState.REVOKED]


def _new_code(row: RegisteredGateway, *, now: datetime, lifetime: timedelta) -> str:
    code = new_code()
    row.code_hash = code_hash(canonical_code(code) or "")
    row.code_expires_at = now + lifetime
    return code


def register_gateway(
    session: Session, *, tenant: str, store: str, gateway: str, now: datetime,
    lifetime: timedelta,
) -> tuple[RegisteredGateway, str]:
    """A new gateway (or a revoked one started over) and its first code, returned once."""
    row = get_registered(session, tenant=tenant, store=store, gateway=gateway)
    if row is not None and row.state is not GatewayState.REVOKED:
        raise GatewayExistsError(
            f"store {store!r} already has gateway {gateway!r} ({row.state.value})")
    if row is None:
        row = RegisteredGateway(tenant=tenant, store=store, gateway=gateway, created_at=now)
    else:
        row.created_at, row.enrolled_at, row.revoked_at = now, None, None
        row.seal_public_key = None  # the device enrolling next sends its own
        if row.config is not None:  # its retained copy was cleared at revocation
            row.config_published_at, row.config_next_attempt_at = None, now
            row.config_attempts, row.config_publish_error = 0, None
    code = _new_code(row, now=now, lifetime=lifetime)
    session.add(row)
    session.flush()
    return row, code


def reissue_code(
    session: Session, *, row: RegisteredGateway, now: datetime, lifetime: timedelta
) -> str:
    """A new code for a gateway not enrolled yet; the one before stops working."""
    if row.state is not GatewayState.PENDING:
        raise AlreadyEnrolledError(
            f"gateway {row.gateway!r} is {row.state.value}: a code is only for a gateway "
            "that has not enrolled yet")
    code = _new_code(row, now=now, lifetime=lifetime)
    session.add(row)
    session.flush()
    return code


def redeem_code(
    session: Session, *, typed: str, tenant: str | None, now: datetime,
    seal_public_key: str | None = None,
) -> RegisteredGateway | None:
    """The pending gateway a live code belongs to, its code used up; None for a code that
    is wrong, used, expired, revoked or of another tenant (the caller cannot tell which).

    The row is locked for the exchange, so two devices racing with one code cannot both
    get an identity."""
    canonical = canonical_code(typed)
    if canonical is None:
        return None
    row = session.exec(
        select(RegisteredGateway)
        .where(RegisteredGateway.code_hash == code_hash(canonical))
        .with_for_update()
    ).first()
    if (row is None or row.state is not GatewayState.PENDING or row.code_expires_at is None
            or row.code_expires_at <= now or (tenant is not None and row.tenant != tenant)):
        return None
    row.code_hash, row.code_expires_at, row.enrolled_at = None, None, now
    row.seal_public_key = seal_public_key
    session.add(row)
    session.flush()
    return row


def revoke_registered(session: Session, *, row: RegisteredGateway, now: datetime) -> None:
    """Its code stops working and it shows as revoked; the broker login is the caller's."""
    row.revoked_at, row.code_hash, row.code_expires_at = now, None, None
    row.config_next_attempt_at = None  # nothing more to deliver to it
    session.add(row)
    session.flush()


def save_config(
    session: Session, *, row: RegisteredGateway, config: GatewayConfigUpdate, now: datetime,
    prepare: Callable[[GatewayConfigUpdate, int], GatewayConfigUpdate] | None = None,
) -> dict[str, Any]:
    """Store the next version of the gateway's config; returns the document to publish
    (zones strongest first: the gateway takes the first zone a device's RSSI reaches).
    The new version is due for publishing at once (`cloud.delivery.gateway_configs`).
    `prepare` completes the config for its version (the tenant's keys, sealed to the
    gateway and bound to the version: `cloud.rotation`)."""
    version = row.config_version + 1
    if prepare is not None:
        config = prepare(config, version)
    zones = sorted(config.zones, key=lambda zone: -zone.min_rssi) if config.zones else None
    document = config.model_copy(update={"version": version, "zones": zones}).model_dump(
        mode="json", exclude_none=True)
    row.config, row.config_version = document, version
    row.config_saved_at, row.config_published_at = now, None
    row.config_attempts, row.config_next_attempt_at, row.config_publish_error = 0, now, None
    session.add(row)
    session.flush()
    return document

