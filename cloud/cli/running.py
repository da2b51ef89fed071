"""Running the orchestrator: the schema, the worker, the API, or both in one process."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated

import typer
import uvicorn

from cloud.api import create_app
from cloud.cli.common import Verbose, load_settings
from cloud.db import make_engine, migrate, session_scope, utc_now, wait_for_database
from cloud.places.recent import purge_old_fixes
from cloud.presence.crud import purge_health_history
from cloud.presence.partitions import upkeep
from cloud.presence.retention import purge_unconsented
from cloud.service import (
    ALL_STAGES,
    Stage,
    StagesApartError,
    api_server_config,
    check_stages,
    install_stop_signals,
    log_configuration,
    run_worker,
    serve,
    settle_garbage_collector,
)

app = typer.Typer()


@app.command("migrate")
def migrate_command(verbose: Verbose = False) -> None:
    """Create or upgrade the database schema to the newest revision."""
    settings = load_settings(verbose)
    engine = make_engine(settings.database_url)
    try:
        wait_for_database(engine)
    finally:
        engine.dispose()
    migrate(settings.database_url)
    typer.echo("database schema is up to date")


@app.command("purge")
def purge_command(verbose: Verbose = False) -> None:
    """Replace stable pseudonyms that no consenting customer owns and are over a day old,
    delete location fixes kept for the map over a day and gateways' health samples past
    `gateways.health_history_days`, make presence partitions ahead and drop those past
    `ingest.presence_retention_days` (the worker also does this every few minutes)."""
    settings = load_settings(verbose)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            partitions = upkeep(
                connection, now=utc_now(), days_ahead=settings.ingest.partition_days_ahead,
                keep_days=settings.ingest.presence_retention_days)
        with session_scope(engine) as session:
            now = utc_now()
            rewritten = purge_unconsented(session, now=now, tenants=list(settings.tenants))
            dropped = purge_old_fixes(session, now=now)
            samples = purge_health_history(
                session, before=now - timedelta(days=settings.gateways.health_history_days))
            session.commit()
    finally:
        engine.dispose()
    typer.echo(f"{rewritten} presence events lost their stable pseudonym")
    typer.echo(f"{dropped} location fixes older than a day deleted")
    typer.echo(f"{samples} gateway health samples past their time deleted")
    typer.echo(f"{len(partitions.created)} presence partitions made ahead, "
               f"{len(partitions.dropped)} dropped, {partitions.deleted_rows} events deleted")


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
    retire: Annotated[
        bool,
        typer.Option(help="retire this client id's broker session for good: store what "
                          "the broker holds for it, end the session, exit (for a worker "
                          "whose host is gone; a running worker retires on SIGUSR1)"),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Consume presence and gateway status, run scenarios, deliver their messages.
    SIGTERM stops the worker keeping its broker session for a restart; SIGUSR1 retires
    it (its share of the stream goes to the other workers, nothing is lost)."""
    settings = load_settings(verbose)
    log_configuration(settings)
    stages = frozenset(stage) if stage else ALL_STAGES
    if retire and Stage.INGEST not in stages:
        typer.echo("--retire ends an ingest worker's broker session: it needs the ingest "
                   "stage", err=True)
        raise typer.Exit(2)
    try:
        check_stages(settings.database_url, stages)
    except StagesApartError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        stop, retiring = asyncio.Event(), asyncio.Event()
        if retire:
            retiring.set()
        restore = install_stop_signals(stop, retiring)
        try:
            settle_garbage_collector()
            await run_worker(settings, stop=stop, client_id=client_id, stages=stages,
                             retire=retiring)
        finally:
            restore()

    asyncio.run(main())


@app.command("api")
def api_command(verbose: Verbose = False) -> None:
    """Serve the HTTP API."""
    settings = load_settings(verbose)
    log_configuration(settings)
    uvicorn.Server(api_server_config(create_app(settings), settings)).run()


@app.command("serve")
def serve_command(verbose: Verbose = False) -> None:
    """API and worker in one process (small installations and the demo)."""
    settings = load_settings(verbose)
    log_configuration(settings)

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
