"""`vitrina-cloud`: migrate the database, run the worker, the API, or both."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
import uvicorn

from cloud.api import create_app
from cloud.db import make_engine, migrate, session_scope, utc_now, wait_for_database
from cloud.presence.retention import purge_unconsented
from cloud.service import install_stop_signals, push_sender, run_worker, serve
from cloud.settings import Settings, get_settings

app = typer.Typer(
    help="Vitrina orchestrator. Settings come from VITRINA_* variables and the TOML file "
    "named by VITRINA_CONFIG.",
    no_args_is_help=True,
    add_completion=False,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _settings(verbose: bool) -> Settings:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    return get_settings()


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
    verbose: Verbose = False,
) -> None:
    """Consume presence and gateway status from the broker; run the recognition push."""
    settings = _settings(verbose)

    async def main() -> None:
        stop = asyncio.Event()
        restore = install_stop_signals(stop)
        try:
            with push_sender(settings) as sender:
                await run_worker(settings, stop=stop, sender=sender, client_id=client_id)
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
            with push_sender(settings) as sender:
                await serve(
                    settings, stop=stop, sender=sender,
                    started=lambda port: logging.getLogger("cloud").info(
                        "API listening on %s:%d", settings.api.host, port
                    ),
                )
        finally:
            restore()

    asyncio.run(main())


def main() -> None:
    app()
