"""`vitrina-cloud keys`: API keys made, listed and revoked from the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from cloud.auth.keys import (
    check_role_and_tenant,
    create_key,
    generate_key,
    hash_key,
    list_keys,
    revoke_key,
)
from cloud.auth.models import ApiKey, Role
from cloud.cli.common import Verbose, database, load_settings
from cloud.db import utc_now

keys = typer.Typer(
    help="API keys. A key is shown once, when it is made; only its SHA-256 is stored.",
    no_args_is_help=True,
)

#: Who made a key, for keys made here rather than through the API by another key.
CLI_CREATOR = "cli"


@keys.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="admin or app (of --tenant), or operator")],
    tenant: Annotated[
        str | None, typer.Option(help="the tenant the key is for (not for operator keys)")
    ] = None,
    name: Annotated[str, typer.Option(help="what the key is for, shown in listings")] = "",
    verbose: Verbose = False,
) -> None:
    """Make a key and print it on standard output (alone, for scripts); it is not shown again."""
    settings = load_settings(verbose)
    try:
        check_role_and_tenant(role, tenant)
    except ValueError as error:
        typer.echo(f"{error} (--tenant)", err=True)
        raise typer.Exit(2) from None
    if tenant is not None and settings.tenant(tenant) is None:
        typer.echo(f"tenant {tenant!r} is not configured (VITRINA_TENANTS)", err=True)
        raise typer.Exit(2)
    with database(settings, needs_table=ApiKey.__tablename__) as session:
        row, key = create_key(
            session, role=role, tenant=tenant, name=name, created_by=CLI_CREATOR, now=utc_now()
        )
        session.commit()
    whose = f" for tenant {tenant}" if tenant else ""
    typer.echo(
        f"created {role.value} key {row.key_id}{whose}; it is shown only this once:", err=True
    )
    typer.echo(key)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@keys.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    verbose: Verbose = False,
) -> None:
    """Keys with their role, tenant, name, and when made, last used and revoked."""
    settings = load_settings(verbose)
    with database(settings, needs_table=ApiKey.__tablename__) as session:
        rows = list_keys(session, tenant=tenant)
    typer.echo(
        f"{'KEY ID':<12}  {'ROLE':<8}  {'TENANT':<20}  {'CREATED':<16}  "
        f"{'LAST USED':<16}  {'REVOKED':<16}  NAME"
    )
    for row in rows:
        typer.echo(
            f"{row.key_id:<12}  {row.role:<8}  {row.tenant or '-':<20}  "
            f"{_when(row.created_at):<16}  {_when(row.last_used_at):<16}  "
            f"{_when(row.revoked_at):<16}  {row.name}"
        )


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key id (the 12 hex digits after vk_)")],
    verbose: Verbose = False,
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    settings = load_settings(verbose)
    with database(settings, needs_table=ApiKey.__tablename__) as session:
        row = revoke_key(session, key_id=key_id, now=utc_now())
        if row is None:
            typer.echo(f"no API key {key_id!r}", err=True)
            raise typer.Exit(1)
        session.commit()
    typer.echo(f"revoked key {key_id} (at {_when(row.revoked_at)} UTC)")


@keys.command("bootstrap")
def keys_bootstrap() -> None:
    """Make an operator key for settings, not the database: put the printed hash in
    VITRINA_OPERATOR_KEY_HASH, keep the key, and use it to issue the first tenant keys
    over the API (POST /tenants/{tenant}/api-keys)."""
    key = generate_key()
    typer.echo(f"operator key (shown only this once): {key}", err=True)
    typer.echo(f"VITRINA_OPERATOR_KEY_HASH={hash_key(key)}")
