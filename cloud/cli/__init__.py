"""`vitrina-cloud`: migrate the database, run the worker, the API, or both; manage API keys,
customer token keys and console members; rebuild footfall roll-ups; rotate the tenants'
pseudonymization keys; print the configuration reference."""

from __future__ import annotations

import typer

from cloud.cli.customer_tokens import customer_tokens
from cloud.cli.keys import keys
from cloud.cli.members import members
from cloud.cli.pseudonym_keys import pseudonym_keys
from cloud.cli.reference import reference
from cloud.cli.rollups import rollups
from cloud.cli.running import app as running

app = typer.Typer(
    help="Vitrina orchestrator. Settings come from VITRINA_* variables and the TOML file "
    "named by VITRINA_CONFIG.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(running)
app.add_typer(keys, name="keys")
app.add_typer(members, name="members")
app.add_typer(customer_tokens, name="customer-tokens")
app.add_typer(rollups, name="rollups")
app.add_typer(pseudonym_keys, name="pseudonym-keys")
app.add_typer(reference, name="settings")


def main() -> None:
    app()
