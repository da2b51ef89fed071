"""`vitrina-cloud pseudonym-keys`: a tenant's pseudonymization keys in rotation (the
steps of `cloud.rotation.flow`, as the API's /pseudonym-keys routes take them).

The configs these commands save reach the broker through the delivery stage's worker
(within `gateways.config_poll_interval_s`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from sqlmodel import Session

from cloud.audit import record
from cloud.cli.common import Verbose, database, load_settings
from cloud.db import utc_now
from cloud.rotation.flow import (
    RotationRefusedError,
    UnknownKeyError,
    activate,
    retire,
    rotation_public,
    sync_ring,
)
from cloud.rotation.models import KeyRotationPublic, TenantKeyState
from cloud.settings import Settings, TenantSettings

pseudonym_keys = typer.Typer(
    help="The tenants' pseudonymization keys: list a new one in the tenant's settings, "
    "then activate it once the gateways hold it, then retire the old one.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option(help="the tenant whose keys these are")]
Force = Annotated[bool, typer.Option(help="go ahead although gateways are not ready "
                                          "(their events stop linking until they are)")]
#: Who took a step, in the audit log, when it was taken here.
CLI_ACTOR = "cli"


def _tenant(settings: Settings, tenant: str) -> TenantSettings:
    found = settings.tenant(tenant)
    if found is None:
        typer.echo(f"tenant {tenant!r} is not configured (VITRINA_TENANTS)", err=True)
        raise typer.Exit(2)
    return found


def _show(view: KeyRotationPublic) -> None:
    if view.outcome:
        typer.echo(view.outcome)
    typer.echo(f"tenant {view.tenant}: active key {view.active_key_id}; "
               f"{view.live_gateways} live gateway(s)")
    for key in view.keys:
        secret = "" if key.configured or key.state == "retired" else " (secret not in settings)"
        typer.echo(f"  {key.key_id:<16} {key.state.value:<8} held by "
                   f"{key.live_gateways_holding}/{view.live_gateways} live{secret}")
    for gateway in view.gateways:
        state = "live" if gateway.live else "not live"
        keys = ", ".join(gateway.key_ids) if gateway.key_ids is not None else "?"
        note = f" - {gateway.note}" if gateway.note else ""
        typer.echo(f"  {gateway.store}/{gateway.gateway}: {state}, active "
                   f"{gateway.active_key_id or '?'}, holds {keys}{note}")


@pseudonym_keys.command("status")
def status_command(tenant: Tenant, verbose: Verbose = False) -> None:
    """Each key's state and what every gateway reports holding."""
    settings = load_settings(verbose)
    tenant_settings = _tenant(settings, tenant)
    with database(settings, needs_table=TenantKeyState.__tablename__) as session:
        now = utc_now()
        ring = sync_ring(session, tenant=tenant, settings=tenant_settings, now=now)
        session.commit()
        _show(rotation_public(session, ring=ring, now=now))


def _run(action: str, tenant: str, key_id: str, force: bool, verbose: bool) -> None:
    settings = load_settings(verbose)
    tenant_settings = _tenant(settings, tenant)
    step = activate if action == "activate" else retire
    with database(settings, needs_table=TenantKeyState.__tablename__) as session:
        now = utc_now()
        try:
            ring, saved = step(session, tenant=tenant, settings=tenant_settings,
                               key_id=key_id, now=now, force=force)
        except (UnknownKeyError, RotationRefusedError) as error:
            typer.echo(f"refused: {error}", err=True)
            raise typer.Exit(1 if isinstance(error, RotationRefusedError) else 2) from None
        row = ring.states[key_id]
        _audit(session, tenant=tenant, action=action, key_id=key_id, force=force,
               saved=len(saved), links_deleted=row.links_deleted, now=now)
        session.commit()
        deleted = (f"; {row.links_deleted} identity link(s) deleted"
                   if row.links_deleted is not None else "")
        _show(rotation_public(session, ring=ring, now=now, outcome=(
            f"key {key_id} is {row.state}; {len(saved)} gateway config(s) saved, sent by "
            f"the delivery worker{deleted}")))


def _audit(session: Session, *, tenant: str, action: str, key_id: str, force: bool,
           saved: int, links_deleted: int | None, now: datetime) -> None:
    record(session, tenant=tenant, actor_kind="cli", actor=CLI_ACTOR,
           action=f"pseudonym_key.{action}", target=f"pseudonym_key:{key_id}", before=None,
           after={"force": force, "configs_saved": saved, "links_deleted": links_deleted},
           now=now)


@pseudonym_keys.command("activate")
def activate_command(key_id: Annotated[str, typer.Argument(help="the key to make active")],
                     tenant: Tenant, force: Force = False, verbose: Verbose = False) -> None:
    """Switch the tenant's gateways to KEY_ID (refused until every live gateway holds it)."""
    _run("activate", tenant, key_id, force, verbose)


@pseudonym_keys.command("retire")
def retire_command(key_id: Annotated[str, typer.Argument(help="the key to retire")],
                   tenant: Tenant, force: Force = False, verbose: Verbose = False) -> None:
    """Retire KEY_ID: its identity links are deleted and the gateways erase it (refused for
    the active key and while a gateway still uses it)."""
    _run("retire", tenant, key_id, force, verbose)
