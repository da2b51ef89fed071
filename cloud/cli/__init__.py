"""`vitrina-cloud`: migrate the database, run the worker, the API, or both; manage API keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import inspect
from sqlmodel import Session

from cloud.api import create_app
from cloud.auth.keys import (
    check_role_and_tenant,
    create_key,
    generate_key,
    hash_key,
    list_keys,
    revoke_key,
)
from cloud.auth.models import ApiKey, Role
from cloud.db import (
    make_engine,
    migrate,
    session_scope,
    utc_now,
    wait_for_database,
)
from cloud.presence.retention import purge_unconsented
from cloud.service import (
    ALL_STAGES,
    Stage,
    StagesApartError,
    check_stages,
    install_stop_signals,
    run_worker,
    serve,
    settle_garbage_collector,
)
from cloud.settings import Settings, get_settings
from shared.logs import configure_logging

app = typer.Typer(
    help="Vitrina orchestrator. Settings come from VITRINA_* variables and the TOML file "
    "named by VITRINA_CONFIG.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings(verbose: bool) -> Settings:
    """The process's settings, and its logs set up as they say (JSON lines by default)."""
    settings = get_settings()
    configure_logging(
        level="DEBUG" if verbose else "INFO", json_lines=settings.log_format == "json"
    )
    return settings


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


@app.command("migrate")
def migrate_command(verbose: Verbose = False) -> None:
    """Create or upgrade the database schema to the newest revision."""
    settings = _settings(verbose)
    engine = make_engine(settings.database_url)
    try:
        wait_for_database(engine)
    finally:
        engine.dispose()
    migrate(settings.database_url)
    typer.echo("database schema is up to date")


@app.command("purge")
def purge_command(verbose: Verbose = False) -> None:
    """Replace stable pseudonyms that no consenting customer owns and are over a day old
    (the worker also does this every few minutes)."""
    settings = _settings(verbose)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            rewritten = purge_unconsented(session, now=utc_now(), tenants=list(settings.tenants))
            session.commit()
    finally:
        engine.dispose()
    typer.echo(f"{rewritten} presence events lost their stable pseudonym")


@app.command("worker")
def worker_command(
    client_id: Annotated[
        str | None,
        typer.Option(help="MQTT client id; give each worker its own (default from settings)"),
    ] = None,
    stage: Annotated[
        list[Stage] | None,
        typer.Option(help="run only this stage (repeat for several); the others run in "
                          "workers of their own, woken through PostgreSQL. Without: all "
                          "three in this process"),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Consume presence and gateway status, run scenarios, deliver their messages."""
    settings = _settings(verbose)
    stages = frozenset(stage) if stage else ALL_STAGES
    try:
        check_stages(settings.database_url, stages)
    except StagesApartError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        stop = asyncio.Event()
        restore = install_stop_signals(stop)
        try:
            settle_garbage_collector()
            await run_worker(settings, stop=stop, client_id=client_id, stages=stages)
        finally:
            restore()

    asyncio.run(main())


@app.command("api")
def api_command(verbose: Verbose = False) -> None:
    """Serve the HTTP API."""
    settings = _settings(verbose)
    uvicorn.run(
        create_app(settings), host=settings.api.host, port=settings.api.port, log_config=None
    )


@app.command("serve")
def serve_command(verbose: Verbose = False) -> None:
    """API and worker in one process (small installations and the demo)."""
    settings = _settings(verbose)

    async def main() -> None:
        stop = asyncio.Event()
        restore = install_stop_signals(stop)
        try:
            settle_garbage_collector()
            await serve(
                settings,
                stop=stop,
                started=lambda port: logging.getLogger("cloud").info(
                    "API listening on %s:%d", settings.api.host, port
                ),
            )
        finally:
            restore()

    asyncio.run(main())


keys = typer.Typer(
    help="API keys. A key is shown once, when it is made; only its SHA-256 is stored.",
    no_args_is_help=True,
)
app.add_typer(keys, name="keys")

#: Who made a key, for keys made here rather than through the API by another key.
CLI_CREATOR = "cli"


@contextlib.contextmanager
def _key_session(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.database_url)
    try:
        if not inspect(engine).has_table(ApiKey.__tablename__):
            typer.echo("the database has no API key table: run `vitrina-cloud migrate`", err=True)
            raise typer.Exit(1)
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()


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
    settings = _settings(verbose)
    try:
        check_role_and_tenant(role, tenant)
    except ValueError as error:
        typer.echo(f"{error} (--tenant)", err=True)
        raise typer.Exit(2) from None
    if tenant is not None and settings.tenant(tenant) is None:
        typer.echo(f"tenant {tenant!r} is not configured (VITRINA_TENANTS)", err=True)
        raise typer.Exit(2)
    with _key_session(settings) as session:
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
    settings = _settings(verbose)
    with _key_session(settings) as session:
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
    settings = _settings(verbose)
    with _key_session(settings) as session:
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


def main() -> None:
    app()
