"""`vitrina-cloud rollups`: the footfall roll-ups rebuilt from the stored events, for a
backfill after an upgrade (the worker keeps them current from then on)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from cloud.cli.common import Verbose, database, load_settings
from cloud.presence.models import FootfallDay
from cloud.presence.rollup_sql import rebuild_sql
from cloud.presence.rollups import rebuild_python

rollups = typer.Typer(
    help="Footfall roll-ups (per store, zone and hour, and per day).", no_args_is_help=True
)

Day = Annotated[str, typer.Option(help="a UTC day, YYYY-MM-DD")]


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        typer.echo(f"{option} must be a day as YYYY-MM-DD, not {value!r}", err=True)
        raise typer.Exit(2) from None


@rollups.command("rebuild")
def rollups_rebuild(
    tenant: Annotated[str, typer.Option(help="the tenant whose roll-ups to rebuild")],
    since: Day,
    until: Annotated[str, typer.Option(help="the UTC day after the last one, YYYY-MM-DD")],
    verbose: Verbose = False,
) -> None:
    """Rebuild a tenant's roll-ups of the UTC days [since, until) from the stored events,
    store by store, each store in a transaction of its own (in SQL on PostgreSQL)."""
    settings = load_settings(verbose)
    first, end = _day(since, "--since"), _day(until, "--until")
    if end <= first:
        typer.echo("--until must be after --since", err=True)
        raise typer.Exit(2)
    if settings.tenant(tenant) is None:
        typer.echo(f"tenant {tenant!r} is not configured (VITRINA_TENANTS)", err=True)
        raise typer.Exit(2)
    with database(settings, needs_table=FootfallDay.__tablename__) as session:
        if session.get_bind().dialect.name == "postgresql":
            days = rebuild_sql(session, tenant=tenant, since=first, until=end)
        else:
            days = rebuild_python(session, tenant=tenant, since=first, until=end)
            session.commit()
    typer.echo(f"rebuilt {days} store days of tenant {tenant} ({first} to {end}, "
               "the end excluded)")
