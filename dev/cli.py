"""`vitrina-cloud`: the orchestrator's commands (`cloud.cli`), and `vitrina-cloud dev`, the
developer environment and the tools that talk to it.

The orchestrator's package may not import the local provider servers or the gateway, so
the command that puts them together lives here and adds itself to the orchestrator's
command line; everything it needs beyond typer is imported only when `dev` runs, so a
deployment's `vitrina-cloud serve` loads none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloud.cli import app

dev = typer.Typer(
    help="A developer environment on this machine: the orchestrator (SQLite, or PostgreSQL "
    "with --database-url), a broker, and local FCM, Web Push, SMTP and SMS servers, until "
    "Ctrl-C; and commands that talk to it (env, token, visit, push, why).",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(dev, name="dev")

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="VITRINA_DEV_DIR",
    help="where the environment keeps its state (database, logs, session) "
    "[default: ./.vitrina-dev]", show_default=False)]


@dev.callback()
def start(
    context: typer.Context,
    state_dir: StateDir = None,
    database_url: Annotated[str | None, typer.Option(
        help="the orchestrator's database, e.g. postgresql+psycopg://user@host/db "
        "[default: SQLite in the state directory]", show_default=False)] = None,
    tenant: Annotated[str, typer.Option(help="the shop's tenant id")] = "shop",
    port: Annotated[int | None, typer.Option(
        help="the API's port [default: a free one]", show_default=False)] = None,
    public_base_url: Annotated[str | None, typer.Option(
        help="where customers reach the API (links in messages); https turns email on "
        "[default: the API's own address]", show_default=False)] = None,
    amqtt: Annotated[bool, typer.Option(
        "--amqtt", help="use the in-process MQTT 3.1.1 broker even where Mosquitto is "
        "installed")] = False,
) -> None:
    """Start the environment (without a subcommand), until Ctrl-C."""
    if context.invoked_subcommand is not None:
        return
    from dev.environment import DevOptions, run_environment
    from dev.session import state_dir_from

    run_environment(DevOptions(
        state_dir=state_dir_from(state_dir), tenant=tenant, database_url=database_url,
        port=port, public_base_url=public_base_url, prefer_mosquitto=not amqtt,
    ))


def main() -> None:
    app()
