"""What every command shares: the process's settings and logs, and the database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from sqlalchemy import inspect
from sqlmodel import Session

from cloud.db import make_engine, session_scope
from cloud.settings import Settings, get_settings
from shared.logs import configure_logging

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


def load_settings(verbose: bool) -> Settings:
    """The process's settings, and its logs set up as they say (JSON lines by default)."""
    settings = get_settings()
    configure_logging(
        level="DEBUG" if verbose else "INFO", json_lines=settings.log_format == "json"
    )
    return settings


@contextlib.contextmanager
def database(settings: Settings, *, needs_table: str) -> Iterator[Session]:
    """A session on the configured database; exit status 1, saying what to do, when the
    schema is not there yet."""
    engine = make_engine(settings.database_url)
    try:
        if not inspect(engine).has_table(needs_table):
            typer.echo("the database has no {} table: run `vitrina-cloud migrate`".format(
                needs_table.replace("_", " ")), err=True)
            raise typer.Exit(1)
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()
