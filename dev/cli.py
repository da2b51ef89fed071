"""`vitrina-cloud`: the orchestrator's commands (`cloud.cli`), and `vitrina-cloud dev`, the
developer environment and the tools that talk to it.

The orchestrator's package may not import the local provider servers or the gateway, so
the command that puts them together lives here and adds itself to the orchestrator's
command line. Each `dev` command imports only what it uses, and `vitrina-cloud dev ...`
skips loading the orchestrator's own commands (seconds of imports: the API, the
workers): a developer runs these tools many times a minute. A deployment's
`vitrina-cloud serve` loads nothing of `dev` beyond this module.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dev.session import DevSession

dev = typer.Typer(
    help="A developer environment on this machine: the orchestrator (SQLite, or PostgreSQL "
    "with --database-url), a broker, and local FCM, Web Push, SMTP and SMS servers, until "
    "Ctrl-C; and commands that talk to it (env, token, visit, push, why).",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)
DEV_PROGRAM = "vitrina-cloud dev"

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
    import httpx

    from dev.environment import DevOptions, run_environment
    from dev.session import state_dir_from

    try:
        run_environment(DevOptions(
            state_dir=state_dir_from(state_dir), tenant=tenant, database_url=database_url,
            port=port, public_base_url=public_base_url, prefer_mosquitto=not amqtt,
        ))
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: everything `vitrina-cloud dev` started has been stopped",
                   err=True)
        raise typer.Exit(130) from None
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as error:
        typer.echo(f"vitrina-cloud dev could not start: {error}", err=True)
        raise typer.Exit(1) from None


@contextmanager
def _session(state_dir: Path | None) -> Iterator[DevSession]:
    """The running environment's session; its absence, or a refusal on the way, is said
    in one line rather than a traceback."""
    import httpx

    from dev.session import DevSession, NotRunningError, ToolError, state_dir_from

    try:
        yield DevSession.load(state_dir_from(state_dir))
    except (NotRunningError, ToolError, httpx.HTTPError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None


Customer = Annotated[str, typer.Option(
    "--customer", help="the customer's public id (cus_...), as the API returns it")]


@dev.command("env")
def env_command(state_dir: StateDir = None) -> None:
    """Print `export` lines for the session's API URL, tenant, keys, webhook secret and
    local servers: `eval "$(vitrina-cloud dev env)"`."""
    from dev.session import exports

    with _session(state_dir) as session:
        typer.echo(exports(session))


@dev.command("token")
def token_command(
    subject: Annotated[str, typer.Option(
        help="the shop's own id of its signed-in user (the customer's external_id)")],
    state_dir: StateDir = None,
) -> None:
    """Print a customer token for SUBJECT, signed as the shop's backend signs one at
    sign-in (the app sends it in X-Customer-Token; it lasts 15 minutes)."""
    from dev.tokens import customer_token

    with _session(state_dir) as session:
        typer.echo(customer_token(session, subject))


@dev.command("visit")
def visit_command(
    store: Annotated[str | None, typer.Option(
        help="with --install-id: the store (key) whose gateway sees the phone")] = None,
    install_id: Annotated[str | None, typer.Option(
        help="the install id the app's beacon advertises (as registered as an app_beacon "
        "device): a gateway in --store replays a visit of that phone")] = None,
    customer: Annotated[str | None, typer.Option(
        help="with --at: the customer whose app reports the location")] = None,
    at: Annotated[str | None, typer.Option(
        help="LAT,LON of a location fix the app reports for --customer")] = None,
    accuracy_m: Annotated[float, typer.Option(help="the fix's accuracy, metres")] = 10.0,
    state_dir: StateDir = None,
) -> None:
    """Simulate a visit: a gateway replay for an app's beacon (--install-id, --store), or
    a location report (--customer, --at); then wait until the orchestrator has handled it,
    and show the pushes it sent."""
    from dev import visits
    from dev.session import pushes_received

    with _session(state_dir) as session:
        if install_id is not None and store is not None:
            result = visits.visit_by_beacon(session, install_id=install_id, store=store)
            state = "handled" if result.settled else "not all handled yet"
            typer.echo(f"gateway {result.gateway} in store {store} saw the phone of install "
                       f"id {install_id}; it published {result.published} presence events "
                       f"under pseudonyms, {state} by the orchestrator")
            _echo_pushes(result.pushes)
        elif customer is not None and at is not None:
            lat, lon = _coordinates(at)
            before = len(pushes_received(session))
            outcome = visits.visit_by_location(session, customer=customer, lat=lat, lon=lon,
                                              accuracy_m=accuracy_m)
            moves = ", ".join(f"{t['kind']} {t['geofence']} (store {t['store']})"
                              for t in outcome["transitions"]) or "no geofence entered or left"
            typer.echo(f"location ({lat}, {lon}) reported for {customer}: {moves}")
            _echo_pushes(pushes_received(session)[before:])
        else:
            typer.echo("name --install-id and --store (a gateway sees the app's beacon), or "
                       "--customer and --at LAT,LON (the app reports a location)", err=True)
            raise typer.Exit(2)


def _coordinates(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter("LAT,LON, e.g. 40.4168,-3.7038", param_hint="--at") from None
    return lat, lon


def _echo_pushes(pushes: list[dict[str, object]]) -> None:
    if not pushes:
        typer.echo("no push arrived at the local FCM server: `vitrina-cloud dev why "
                   "--customer ...` says why")
    for received in pushes:
        message = received.get("message")
        if isinstance(message, dict):
            notification = message.get("notification") or {}
            typer.echo(f"push to {str(message.get('token'))[:24]}…: "
                       f"“{notification.get('title')}” {notification.get('body')}")


@dev.command("push")
def push_command(
    customer: Annotated[str | None, typer.Option(
        help="send to each of this customer's FCM devices")] = None,
    token: Annotated[str | None, typer.Option(help="send to this FCM registration token")
                     ] = None,
    title: str = "Test push",
    body: str = "Sent by vitrina-cloud dev push",
    state_dir: StateDir = None,
) -> None:
    """Send a test push through the orchestrator's FCM sender and the session's provider
    settings, to a customer's devices or one token: it checks the path from sender to
    device, not any scenario (no consent, cap or template applies)."""
    from dev import pushes

    with _session(state_dir) as session:
        tokens = [token] if token else (pushes.device_tokens(session, customer)
                                        if customer else [])
        if not tokens:
            typer.echo("no FCM token to send to: name --token, or a --customer with an active "
                       "fcm device", err=True)
            raise typer.Exit(1)
        for sent_to, outcome in pushes.send_test_push(session, tokens=tokens, title=title,
                                                     body=body):
            typer.echo(f"{sent_to[:24]}…: {outcome}")


@dev.command("why")
def why_command(customer: Customer, state_dir: StateDir = None) -> None:
    """What the engine decided for a customer and why: consent, devices, each journey's
    steps with their outcomes and reasons (held, suppressed, skipped), and the messages."""
    from dev.why import explain

    with _session(state_dir) as session:
        typer.echo(explain(session, customer))


#: What the developer environment runs besides the orchestrator: the local provider
#: servers, the gateway, the in-process broker and SMTP server (the `dev` extra).
NEEDS = ("sandbox", "edge", "amqtt", "aiosmtpd")


def installed() -> bool:
    """Whether this installation can run the developer environment: an image of the
    orchestrator alone (docker/Dockerfile.cloud) cannot, and does not offer it."""
    return all(importlib.util.find_spec(name) is not None for name in NEEDS)


def main() -> None:
    if sys.argv[1:2] == ["dev"]:
        if not installed():
            typer.echo("`vitrina-cloud dev` needs the development install: in a checkout, "
                       "pip install -e '.[dev]' (or make .venv/.installed)", err=True)
            raise SystemExit(2)
        dev(args=sys.argv[2:], prog_name=DEV_PROGRAM)
        return
    from cloud.cli import app

    if installed():
        app.add_typer(dev, name="dev")
    app()
