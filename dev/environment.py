"""`vitrina-cloud dev`: the orchestrator (API and workers), a broker, and local servers
that speak the FCM, Web Push, SMTP and SMS providers' protocols, all on this machine,
wired together through the orchestrator's ordinary settings; until Ctrl-C.

It makes what a shop's developer needs to point an app at it (a tenant, an admin key, an
app key, a webhook secret, a key to sign customer tokens with), prints where everything
is, and leaves a session file in its state directory for the `vitrina-cloud dev ...`
commands (push, visit, why) to find it by.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx
from sqlalchemy.engine import make_url

from cloud.auth.customer_tokens import generate_key_pair
from cloud.auth.models import TokenAlgorithm
from dev.orchestrator import (
    OrchestratorSetup,
    bearer,
    http_ok,
    issue_key,
    make_admin_key,
    migrate_database,
    start_orchestrator,
)
from dev.processes import Supervisor, supervised
from dev.services import Servers, start_all
from dev.session import DevSession, NotRunningError, forget_session, tenant_key
from provisioning.local_broker import LocalBroker, free_port, local_broker

KEY_ID = "dev-1"
#: The orchestrator's MQTT client id in the developer environment (pinned, as deployed).
CLIENT_ID = "dev-orchestrator"
#: Lines of the children's output shown on the terminal; the rest is in the log files.
SHOWN_LINES = re.compile(r" (WARNING|ERROR|CRITICAL) ")


@dataclass(frozen=True, slots=True)
class DevOptions:
    state_dir: Path
    tenant: str = "shop"
    database_url: str | None = None
    port: int | None = None
    public_base_url: str | None = None
    prefer_mosquitto: bool = True


def echo_problems(name: str, line: str) -> None:
    """A child's warnings and errors, as they happen; everything is in its log file."""
    if SHOWN_LINES.search(line):
        print(f"    {name:>7} │ {line}", flush=True)


def email_allowed(public_base_url: str) -> bool:
    """Email needs an https public base URL (its one-click unsubscribe link)."""
    return public_base_url.startswith("https://")


def orchestrator_setup(
    options: DevOptions, *, database_url: str, broker: LocalBroker, servers: Servers,
    secret: str, webhook_secret: str,
) -> OrchestratorSetup:
    """Every channel pointed at its local server; web pushes may go to the local push
    service (plain http on loopback, which the outbound rules otherwise refuse); quiet
    hours off, so that a push tried at night is sent, not held until morning."""
    port = options.port or free_port()
    api = f"http://127.0.0.1:{port}"
    public = options.public_base_url or api
    channels: dict[str, object] = {
        "push": servers.fcm.settings(),
        "web_push": servers.web_push.settings(),
        "sms": servers.sms.settings(receipts_url=f"{api}/receipts/sms"),
    }
    if email_allowed(public):
        channels["email"] = servers.smtp.settings()
    return OrchestratorSetup(
        database_url=database_url, broker=broker, tenants={options.tenant: (KEY_ID, secret)},
        api_port=port, client_id=CLIENT_ID, channels=channels,
        extra={
            "VITRINA_TRACKING__PUBLIC_BASE_URL": public,
            "VITRINA_OUTBOUND__ALLOW": json.dumps([servers.web_push.host_port]),
            "VITRINA_WEBHOOK_SECRETS": json.dumps([webhook_secret]),
            "VITRINA_SCENARIOS": json.dumps({"quiet_hours": None}),
        },
    )


def register_token_key(api: str, admin_key: str, tenant: str) -> tuple[str, str]:
    """A customer-token key for the session, registered as the shop's backend registers
    its own: the private half stays in the session file, for `vitrina-cloud dev token`."""
    private_pem, public_pem = generate_key_pair(TokenAlgorithm.ES256)
    kid = f"dev-{datetime.now(UTC):%Y%m%d%H%M%S}"
    httpx.post(f"{api}/tenants/{tenant}/customer-token-keys", headers=bearer(admin_key),
               json={"kid": kid, "algorithm": "ES256", "public_key_pem": public_pem},
               timeout=10.0).raise_for_status()
    return kid, private_pem



def refuse_a_second_environment(state: Path) -> None:
    """One environment per state directory: a second would share its database and keys.
    A session file left by one that was killed outright is not a running environment."""
    try:
        running = DevSession.load(state)
    except NotRunningError:
        return
    if http_ok(f"{running.api}/healthz"):
        raise RuntimeError(f"a developer environment is already running with state in "
                           f"{state}/ (API {running.api}): use it, or name another "
                           "directory with --state-dir")


def prepare_database(database_url: str, tenant: str) -> str:
    """Migrate, then make the tenant's admin key for this session (shown only to the
    session's commands, kept as a hash in the database)."""
    migrate_database(database_url)
    return make_admin_key(database_url, tenant=tenant, name="developer environment")


class StopRequested:
    """Ctrl-C (SIGINT) or SIGTERM: the environment stops, and everything it started.

    The signal raises KeyboardInterrupt where the main thread is, as Python does for
    Ctrl-C; when that lands somewhere that swallows it (a fork's handlers, a finaliser),
    the request is still remembered, and each start-up step and the final wait look."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def _handle(self, _signal: int, _frame: FrameType | None) -> None:
        self.event.set()
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequested]:
        previous = {number: signal.signal(number, self._handle)
                    for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def checkpoint(self) -> None:
        """Go no further once a stop was asked for."""
        if self.event.is_set():
            raise KeyboardInterrupt

    def wait(self) -> None:
        """Until a stop is asked for."""
        with contextlib.suppress(KeyboardInterrupt):
            self.event.wait()


def run_environment(options: DevOptions) -> None:
    """Start everything, print where it is, and wait for Ctrl-C; everything started is
    stopped on the way out, whatever happens (the broker last, after its clients)."""
    state = options.state_dir
    refuse_a_second_environment(state)
    for directory in ("logs", "broker"):
        (state / directory).mkdir(parents=True, exist_ok=True)
    with (
        StopRequested().installed() as stop,
        local_broker(workdir=state / "broker", prefer_mosquitto=options.prefer_mosquitto)
        as broker,
        supervised(echo_problems, state / "logs") as supervisor,
    ):
        stop.checkpoint()
        session, servers, public_base_url = start(options, broker, supervisor, stop)
        session.save()
        try:
            print(summary(session, broker=broker, servers=servers,
                          public_base_url=public_base_url), flush=True)
            stop.wait()
            print("\nstopping: everything `vitrina-cloud dev` started is being stopped",
                  flush=True)
        finally:
            forget_session(state)


def start(options: DevOptions, broker: LocalBroker, supervisor: Supervisor,
          stop: StopRequested) -> tuple[DevSession, Servers, str]:
    """The local servers and the migration side by side, then the orchestrator, then
    what the session's commands need (keys, a token key): the session, the servers and
    the public base URL."""
    state = options.state_dir
    secret = tenant_key(state)
    webhook_secret = secrets.token_urlsafe(24)
    database_url = options.database_url or f"sqlite:///{state / 'vitrina.db'}"
    with ThreadPoolExecutor(1, thread_name_prefix="migrate") as background:
        admin_key_made = background.submit(prepare_database, database_url, options.tenant)
        servers = start_all(supervisor, state, smtp_password=secrets.token_urlsafe(12))
        admin_key = admin_key_made.result()
    stop.checkpoint()
    setup = orchestrator_setup(options, database_url=database_url, broker=broker,
                               servers=servers, secret=secret, webhook_secret=webhook_secret)
    environment = setup.environment()
    api = start_orchestrator(supervisor, environment)
    stop.checkpoint()
    app_key = issue_key(api, admin_key, tenant=options.tenant, role="app",
                        name="developer app")
    kid, private_pem = register_token_key(api, admin_key, options.tenant)
    session = DevSession(
        state_dir=str(state), tenant=options.tenant, api=api,
        database_url=setup.database_url, admin_key=admin_key, app_key=app_key,
        webhook_secret=webhook_secret, token_kid=kid, token_private_pem=private_pem,
        key_id=KEY_ID, tenant_key=secret, broker_host=broker.host,
        broker_port=broker.port, broker_mqtt_v5=broker.mqtt_v5,
        fcm_url=servers.fcm.url, fcm_project=servers.fcm.project,
        fcm_credentials=str(servers.fcm.credentials), web_push_url=servers.web_push.url,
        smtp_listing=servers.smtp.listing,
        email_wired="email" in setup.channels, sms_url=servers.sms.url,
    )
    stop.checkpoint()
    return session, servers, environment["VITRINA_TRACKING__PUBLIC_BASE_URL"]


def summary(session: DevSession, *, broker: LocalBroker, servers: Servers,
            public_base_url: str) -> str:
    """Where everything is and how to point an app at it."""
    database = make_url(session.database_url).render_as_string(hide_password=True)
    email = (f"smtp://{servers.smtp.host}:{servers.smtp.port} (STARTTLS, CA "
             f"{servers.smtp.ca_file}); received mail: {servers.smtp.listing}/_sandbox/emails"
             if session.email_wired else
             f"smtp://{servers.smtp.host}:{servers.smtp.port} is running but email is off: it "
             "needs an https public base URL for its one-click unsubscribe link "
             "(--public-base-url https://...)")
    lines = [
        "Vitrina developer environment",
        f"  API             {session.api}   (console: {session.api}/console, "
        f"OpenAPI: {session.api}/docs)",
        f"  tenant          {session.tenant}",
        f"  database        {database}",
        f"  broker          mqtt://{broker.host}:{broker.port} ({broker.kind}, "
        f"{'MQTT v5' if broker.mqtt_v5 else 'MQTT 3.1.1'})",
        f"  FCM             {servers.fcm.url}   received pushes: {servers.fcm.url}"
        "/_sandbox/messages",
        f"  Web Push        {servers.web_push.url}   (a subscription for a browser: POST "
        f"{servers.web_push.url}/_sandbox/subscriptions)",
        f"  email           {email}",
        f"  SMS             {servers.sms.url}   sent texts: {servers.sms.url}/_sandbox/messages",
        f"  links           {public_base_url} (tracked links and receipts point here)",
        "  quiet hours     off here (deployed, messages decided 21:00-09:00 wait until 09:00)",
        f"  logs            {session.state_dir}/logs/",
        "",
        "Point an app at it: in another terminal, in this directory,",
        '  eval "$(vitrina-cloud dev env)"',
        "exports VITRINA_API_URL, VITRINA_TENANT, VITRINA_ADMIN_KEY (the back office's key), "
        "VITRINA_APP_KEY (the app's public key), VITRINA_WEBHOOK_SECRET (signs the shop's "
        "webhooks) and VITRINA_FCM_URL, all made for this session.",
        "Then: `vitrina-cloud dev token --subject <user>` signs a customer token as the "
        "shop's backend would; `vitrina-cloud dev visit` walks a customer's phone into a "
        "store; `vitrina-cloud dev push` sends a test push; `vitrina-cloud dev why` shows "
        "what the engine decided and why. The quickstart: docs/quickstart.md.",
        "",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)
