"""`make demo`: a gateway replays a recorded store visit; the orchestrator recognises the
consenting customer and a push arrives at a local FCM-compatible service. Then the
orchestrator stays up with the console open, and a sign-in made for the demo, until
Ctrl-C.

Everything runs on this machine with embedded defaults: a broker started here
(Mosquitto, or an in-process MQTT 3.1.1 broker where Mosquitto is missing), SQLite,
and real processes for the push service, the orchestrator and the gateway. The
story is narrated from the outside: what crosses MQTT (pseudonyms only), what the
orchestrator decided, what the phone received.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.api.access import CUSTOMER_TOKEN_HEADER
from cloud.auth.customer_tokens import generate_key_pair, sign_customer_token
from cloud.auth.models import TokenAlgorithm
from cloud.db import make_engine
from demo.shop_config import load_shop, shop_config
from demo.welcome import configure_welcome
from dev.gateway import write_gateway_config
from dev.orchestrator import (
    CLOUD_COMMAND,
    EDGE_COMMAND,
    STARTUP_TIMEOUT_S,
    OrchestratorSetup,
    admin_key_made,
    bearer,
    issue_key,
    migrate_database,
    start_orchestrator,
    wait_for,
)
from dev.processes import Supervisor, supervised
from dev.progress import Progress, read_progress
from dev.services import start_fcm
from edge.captures import (
    CAPTURES_DIR,
    DEMO_ANA_INSTALL_ID,
    DEMO_GATEWAY,
    DEMO_TENANT,
    JUAN_INSTALL_ID,
)
from provisioning.local_broker import LocalBroker, free_port, local_broker
from shared.identifiers import app_identifier
from shared.presence import PresenceBatch, Transition, decode_presence_batch
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.status import decode_gateway_status
from shared.topics import TOPIC_ROOT, TopicChannel, parse_topic

WORKDIR = Path(".demo")
#: `amqtt` forces the fallback broker even where Mosquitto is installed.
BROKER_CHOICE_VARIABLE = "VITRINA_DEMO_BROKER"
KEY_ID = "demo-2024"
#: The recorded visit lasts five minutes; thirty times faster keeps the demo short
#: while the gateway still sees sightings arrive over time, as in a store, at a pace a
#: person can follow (`--speed` changes it).
REPLAY_SPEED = 30.0
#: A generous bound for a slow machine; it only turns a hang into a clear failure.
SETTLE_TIMEOUT_S = 30.0
#: The gateway stands in the shop's one store (demo/scenarios/shop.json), so pushes
#: greet shoppers with its name.
DEMO_SHOP_STORE = next(iter(shop_config()["stores"]))
#: The app signs in once, at the start of the story, and the story is over in minutes.
DEMO_TOKEN_LIFETIME = timedelta(minutes=15)
#: The console sign-in the demo makes for whoever runs it (an owner of the demo tenant).
CONSOLE_LOGIN = "owner@demo.example"


@dataclass(frozen=True, slots=True)
class Shopper:
    name: str
    email: str
    install_id: str
    location_consent: bool

    @property
    def external_id(self) -> str:
        """The shop's own id of the shopper: what its backend signs tokens for."""
        return f"shop-user-{self.name.lower()}"

    @property
    def fcm_token(self) -> str:
        """Shaped like an FCM registration token (instance id, colon, token)."""
        return f"demo-instance-{self.install_id}:APA91b-demo-registration-token"


SHOPPERS = (
    Shopper("Juan", "juan@example.com", JUAN_INSTALL_ID, location_consent=True),
    # Ana uses the app and accepts pushes, but not location-based marketing: she must get nothing.
    Shopper("Ana", "ana@example.com", DEMO_ANA_INSTALL_ID, location_consent=False),
)


def say(text: str) -> None:
    print(f"▶ {text}", flush=True)


#: Start-up chatter of the orchestrator's libraries, and its notes on what the settings
#: leave off (the demo sets up push alone, on purpose); still written to the demo's log files.
QUIET_LINES = re.compile(r" INFO (alembic|uvicorn)[.:]| (INFO|WARNING) cloud\.service ")
#: How a log record starts ("2024-03-02 10:00:00,123 INFO ..."); a line that does not
#: is the rest of the record before it (a migration's description runs over lines).
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


class ChildEcho:
    """Shows the children's output beside the story, without their libraries' start-up
    chatter: a quiet record is hidden with all of its lines."""

    def __init__(self) -> None:
        self._hiding: dict[str, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            if RECORD_START.match(line):
                self._hiding[name] = QUIET_LINES.search(line) is not None
            elif not line.strip() or self._hiding.get(name, False):
                return
            if self._hiding.get(name, False):
                return
        if name == "fcm" and line.startswith("{"):
            return  # where the push service listens, told by the story itself
        print(f"    {name:>6} │ {line}", flush=True)


def fresh_workdir() -> Path:
    if WORKDIR.exists():
        shutil.rmtree(WORKDIR)
    WORKDIR.mkdir(parents=True)
    return WORKDIR.resolve()


def orchestrator_setup(*, workdir: Path, broker: LocalBroker, tenant_key: str,
                       push: dict[str, str]) -> OrchestratorSetup:
    return OrchestratorSetup(
        database_url=f"sqlite:///{workdir / 'vitrina.db'}", broker=broker,
        tenants={DEMO_TENANT: (KEY_ID, tenant_key)}, api_port=free_port(),
        client_id="demo-orchestrator", channels={"push": push},
        # The demo runs whenever someone starts it: quiet hours would hold the push at night.
        extra={"VITRINA_SCENARIOS": '{"quiet_hours": null}'},
    )


def issue_app_key(api: str, admin_key: str) -> str:
    """The app's key, as the shop's admin issues it over the API (kept in memory only)."""
    app_key = issue_key(api, admin_key, tenant=DEMO_TENANT, role="app", name="demo shop app")
    say("the back office issues the shop app its own key: public, so alone it may only "
        "make an anonymous installation")
    return app_key


@dataclass(frozen=True)
class ShopSigningKey:
    """The shop's backend's key for customer tokens: the private half stays in the
    backend (here, in memory), the public half is registered with the tenant."""

    kid: str
    private_pem: str

    def token_for(self, shopper: Shopper) -> str:
        """What the backend hands the app when its user signs in."""
        return sign_customer_token(
            private_key_pem=self.private_pem, algorithm=TokenAlgorithm.ES256, kid=self.kid,
            tenant=DEMO_TENANT, subject=shopper.external_id, now=datetime.now(UTC),
            lifetime=DEMO_TOKEN_LIFETIME,
        )


def register_signing_key(api: str, admin_key: str) -> ShopSigningKey:
    """The back office registers its backend's public key (POST .../customer-token-keys)."""
    private_pem, public_pem = generate_key_pair(TokenAlgorithm.ES256)
    signing = ShopSigningKey(kid="demo-backend-1", private_pem=private_pem)
    httpx.post(
        f"{api}/tenants/{DEMO_TENANT}/customer-token-keys", headers=bearer(admin_key),
        json={"kid": signing.kid, "algorithm": "ES256", "public_key_pem": public_pem},
        timeout=10.0,
    ).raise_for_status()
    say("the shop's backend registers the public half of its ES256 key: it signs a "
        "short-lived customer token when a shopper signs in to the app")
    return signing


def register_shoppers(api: str, app_key: str, signing: ShopSigningKey) -> dict[str, str]:
    """What the shop's app does: before sign-in, an anonymous installation with the
    phone's push token and beacon id (the app key alone can do no more); at sign-in,
    the customer, claiming the installation, and their consent, with their token."""
    ids: dict[str, str] = {}
    base = f"{api}/tenants/{DEMO_TENANT}/customers"
    with httpx.Client(timeout=10.0, headers=bearer(app_key)) as client:
        for shopper in SHOPPERS:
            installation = client.post(base, json={"locale": "es-ES"})
            installation.raise_for_status()
            installation_id = installation.json()["id"]
            for device in (
                {"kind": "fcm", "token": shopper.fcm_token},
                {"kind": "app_beacon", "install_id": shopper.install_id},
            ):
                client.post(f"{base}/{installation_id}/devices", json=device).raise_for_status()
            signed_in = {CUSTOMER_TOKEN_HEADER: signing.token_for(shopper)}
            created = client.post(base, headers=signed_in, json={
                "email": shopper.email, "first_name": shopper.name,
                "installation_id": installation_id,
            })
            created.raise_for_status()
            customer_id = created.json()["id"]
            ids[shopper.name] = customer_id
            for channel, granted in (
                ("push", True),
                ("location_marketing", shopper.location_consent),
            ):
                client.post(
                    f"{base}/{customer_id}/consent", headers=signed_in,
                    json={"channel": channel, "granted": granted, "source": "app.signup"},
                ).raise_for_status()
            consent = "push + in-store offers" if shopper.location_consent else "push only"
            say(
                f"{shopper.name}'s app registers its push token and beacon id anonymously; "
                f"{shopper.name} signs in ({consent}) and the installation becomes theirs"
            )
    return ids


class PresenceWatcher:
    """Subscribes like any other MQTT client and narrates what the gateway publishes."""

    def __init__(self, broker: LocalBroker, names: dict[str, str]) -> None:
        self._names = names
        self._online: dict[str, bool] = {}
        self.events = 0
        #: Devices that left as soon as they came (a passer-by's probe burst): counted,
        #: not told one by one.
        self.passed_by = 0
        self._lock = threading.Lock()
        protocol = mqtt.MQTTv5 if broker.mqtt_v5 else mqtt.MQTTv311
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"demo-watch-{secrets.token_hex(3)}",
            protocol=protocol,
        )
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(f"{TOPIC_ROOT}/{DEMO_TENANT}/+/+/#", qos=1)
        self._client.loop_start()

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        address = parse_topic(message.topic)
        if address.channel is TopicChannel.STATUS:
            status = decode_gateway_status(message.payload)
            if self._online.get(address.gateway) != status.online:
                self._online[address.gateway] = status.online
                say(f"gateway {address.gateway} is {'online' if status.online else 'offline'}")
        elif address.channel is TopicChannel.PRESENCE:
            self._narrate(decode_presence_batch(message.payload, topic=address))

    def _narrate(self, batch: PresenceBatch) -> None:
        for event in batch.events:
            with self._lock:
                self.events += 1
            who = self._names.get(event.pseudonym, f"a device {event.pseudonym[:18]}…")
            if event.transition is Transition.ENTER:
                say(
                    f"gateway {event.gateway} sees {who} enter ({event.kind.value}, "
                    f"{event.scope.value} pseudonym, zone {event.zone}, {event.rssi:.0f} dBm)"
                )
            elif event.transition is Transition.EXIT:
                if round(event.dwell_s) == 0 and event.pseudonym not in self._names:
                    with self._lock:
                        self.passed_by += 1
                    continue
                say(f"gateway {event.gateway} sees {who} leave after {event.dwell_s:.0f}s")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def replay_visit(
    supervisor: Supervisor,
    *,
    workdir: Path,
    broker: LocalBroker,
    tenant_key: str,
    speed: float,
    narrate_pushes: Callable[[], None],
) -> int:
    """Run the gateway's replay to the end, narrating pushes as the phones receive them."""
    config = write_gateway_config(
        workdir / "edge.toml", tenant=DEMO_TENANT, store=DEMO_SHOP_STORE, gateway=DEMO_GATEWAY,
        key_id=KEY_ID, tenant_key=tenant_key, broker=broker, outbox=workdir / "outbox.db",
    )
    capture = CAPTURES_DIR / "demo.pcapng"
    say(f"the gateway replays a recorded five-minute visit ({capture.name}) at {speed:g}x")
    process = supervisor.start(
        "edge",
        [
            EDGE_COMMAND,
            "replay",
            "--config",
            str(config),
            "--pcap",
            str(capture),
            "--speed",
            str(speed),
        ],
    )
    while True:
        narrate_pushes()
        try:
            return process.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            continue


def pushes_received(fcm_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{fcm_url}/_sandbox/messages", timeout=5.0)
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


class PushNarrator:
    """Tells each push once, as the local push service receives it."""

    def __init__(self, fcm_url: str) -> None:
        self._url = fcm_url
        self._told = 0
        self._owners = {shopper.fcm_token: shopper.name for shopper in SHOPPERS}

    @property
    def told(self) -> int:
        return self._told

    def __call__(self) -> None:
        messages = pushes_received(self._url)
        for received in messages[self._told :]:
            message = received["message"]
            notification = message.get("notification", {})
            owner = self._owners.get(message.get("token", ""), "an unknown device")
            say(
                f"📱 {owner}'s phone receives a push: “{notification.get('title')}” — "
                f"{notification.get('body')}"
            )
        self._told = len(messages)


def check_outcome(api: str, admin_key: str, customer_ids: dict[str, str], fcm_url: str) -> bool:
    """Juan (consent to in-store offers) gets exactly one push; Ana (no such consent) none.

    Counted on both sides: what the orchestrator recorded as sent, and what the push
    service actually received for the shopper's token.
    """
    received = [m["message"].get("token") for m in pushes_received(fcm_url)]
    ok = True
    for shopper in SHOPPERS:
        response = httpx.get(
            f"{api}/tenants/{DEMO_TENANT}/customers/{customer_ids[shopper.name]}/messages",
            headers=bearer(admin_key),
            timeout=5.0,
        )
        response.raise_for_status()
        recorded = sum(1 for m in response.json() if m.get("status") == "sent")
        delivered = received.count(shopper.fcm_token)
        expected = 1 if shopper.location_consent else 0
        verdict = "as expected" if recorded == delivered == expected else f"expected {expected}"
        say(f"{shopper.name}: {recorded} push(es) recorded, {delivered} delivered ({verdict})")
        ok &= recorded == delivered == expected
    return ok


def wait_until_settled(
    database: Path, watcher: PresenceWatcher, narrate_pushes: Callable[[], None]
) -> int:
    """Until the orchestrator has done all the visit asked of it (`dev.progress`) and the
    watcher has seen every event cross MQTT, telling pushes as they arrive; returns how
    many events the gateway published. Whatever would wrongly follow (a push to Ana, a
    second one to Juan) has been sent by then."""
    engine = make_engine(f"sqlite:///{database}")
    latest: Progress | None = None

    def settled() -> bool:
        nonlocal latest
        narrate_pushes()
        latest = read_progress(engine, tenant=DEMO_TENANT, store=DEMO_SHOP_STORE,
                               gateway=DEMO_GATEWAY)
        return latest.settled and watcher.events >= latest.published

    try:
        wait_for(settled, timeout=SETTLE_TIMEOUT_S,
                 what="the orchestrator finishing the visit's work")
    except TimeoutError as error:
        raise TimeoutError(f"{error} (logs in {WORKDIR}/); last seen: {latest}") from None
    finally:
        engine.dispose()
    narrate_pushes()
    return latest.published if latest is not None else 0


def run_story(*, speed: float = REPLAY_SPEED, stay: bool = True) -> bool:
    """The story; then, with `stay`, the orchestrator and the console stay up until
    Ctrl-C."""
    workdir = fresh_workdir()
    tenant_key = secrets.token_hex(32)
    pseudonymizer = Pseudonymizer(TenantKey.from_text(KEY_ID, tenant_key))
    names = {
        pseudonymizer.stable(app_identifier(s.install_id)): f"{s.name}'s phone" for s in SHOPPERS
    }
    # The broker is entered first so that it is stopped last, after its clients.
    prefer_mosquitto = os.environ.get(BROKER_CHOICE_VARIABLE, "auto") != "amqtt"
    with (
        local_broker(workdir=workdir, prefer_mosquitto=prefer_mosquitto) as broker,
        supervised(ChildEcho(), workdir) as supervisor,
    ):
        flavour = "MQTT v5" if broker.mqtt_v5 else "MQTT 3.1.1, one worker, no shared subscription"
        say(f"broker: {broker.kind} on 127.0.0.1:{broker.port} ({flavour})")
        fcm = start_fcm(supervisor, workdir)
        fcm_url = fcm.url
        say(f"local FCM-compatible push service on {fcm_url}")
        environment = orchestrator_setup(workdir=workdir, broker=broker, tenant_key=tenant_key,
                                         push=fcm.settings()).environment()
        migrate_database(environment["VITRINA_DATABASE_URL"])
        with admin_key_made(environment, tenant=DEMO_TENANT,
                            name="demo back office") as admin_key_ready:
            api = start_orchestrator(supervisor, environment)
            say(f"orchestrator ready on {api} (SQLite at {workdir / 'vitrina.db'})")
            admin_key = admin_key_ready()
        say("the shop's back office gets an admin key (`vitrina-cloud keys create`; "
            "shown once, stored only as a hash)")
        app_key = issue_app_key(api, admin_key)
        configure_welcome(api, DEMO_TENANT, admin_key)
        with httpx.Client(base_url=api, headers=bearer(admin_key), timeout=10.0) as back_office:
            shop = load_shop(back_office, tenant=DEMO_TENANT)
        say(f"the back office loads the shop's catalogue of journeys: {shop.offers} offers, "
            f"{shop.templates} templates, {shop.scenarios} scenarios (demo/scenarios/shop.json)")
        say("the back office saves a push template and the scenario \"greet app users who "
            "walk into a store\" (entry: presence.enter; consent to push and to in-store "
            "offers checked on every send)")
        customer_ids = register_shoppers(api, app_key, register_signing_key(api, admin_key))
        watcher = PresenceWatcher(broker, names)
        narrate_pushes = PushNarrator(fcm_url)
        try:
            exit_code = replay_visit(
                supervisor,
                workdir=workdir,
                broker=broker,
                tenant_key=tenant_key,
                speed=speed,
                narrate_pushes=narrate_pushes,
            )
            if exit_code != 0:
                say(f"the gateway replay failed with exit code {exit_code}")
                return False
            published = wait_until_settled(workdir / "vitrina.db", watcher, narrate_pushes)
            say(f"the orchestrator has stored the {published} events the gateway published, "
                "handled every trigger and has nothing left to send")
            if watcher.passed_by:
                say(f"{watcher.passed_by} more devices left as soon as they were seen (passers-by "
                    "whose phones probed once): counted for footfall, not told one by one")
            say(f"{watcher.events} presence events crossed MQTT, every one under a pseudonym")
            ok = check_outcome(api, admin_key, customer_ids, fcm_url)
            say("demo complete" if ok else "demo finished, but the outcome was not the "
                "expected one")
        finally:
            watcher.close()
        if ok:
            what_next()
        if stay:
            open_console(environment, api)
            wait_for_interrupt()
        return ok


def open_console(environment: dict[str, str], api: str) -> None:
    """Make the demo's console sign-in as an operator makes a tenant's first owner
    (`vitrina-cloud members add`, the password on standard input), and say where to go."""
    password = secrets.token_urlsafe(12)
    made = subprocess.run(
        [CLOUD_COMMAND, "members", "add", "--email", CONSOLE_LOGIN, "--tenant", DEMO_TENANT,
         "--role", "owner", "--name", "Demo owner", "--password-stdin"],
        input=f"{password}\n", env={**os.environ, **environment}, capture_output=True,
        text=True, timeout=STARTUP_TIMEOUT_S, check=False,
    )
    if made.returncode != 0:
        raise RuntimeError(f"could not make the console sign-in: {made.stderr.strip()}")
    say(f"the console is open at {api}/console: sign in as {CONSOLE_LOGIN} with the "
        f"password {password} (made for this demo) to see the gateway, the visit, the "
        "scenario and the push it sent")
    say("the orchestrator keeps running: press Ctrl-C to stop everything")


def what_next() -> None:
    """Where a developer goes from here: the same pieces, for their own shop and app."""
    say("what to try next: `vitrina-cloud dev` starts the same pieces for your own shop "
        "(PostgreSQL or SQLite, local FCM, Web Push, SMTP and SMS servers, keys made for "
        "the session), and docs/quickstart.md takes you from there to a first push to "
        "your app in fifteen minutes")


def wait_for_interrupt() -> None:
    """Until Ctrl-C: the console stays open meanwhile."""
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    print(flush=True)
    say("stopping: everything the demo started is being stopped")


def replay_speed(text: str) -> float:
    speed = float(text)
    if not speed > 0:
        raise argparse.ArgumentTypeError("the replay speed must be positive")
    return speed


def main(argv: list[str] | None = None) -> None:
    summary = " ".join((__doc__ or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument(
        "--speed", type=replay_speed, default=REPLAY_SPEED,
        help=f"how many times faster than recorded the gateway replays the five-minute "
             f"visit (default: {REPLAY_SPEED:g}, a pace a person can follow)",
    )
    parser.add_argument(
        "--exit", action="store_true",
        help="stop when the story ends instead of keeping the console open until Ctrl-C",
    )
    args = parser.parse_args(argv)
    try:
        ok = run_story(speed=args.speed, stay=not args.exit)
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started has been stopped", flush=True)
        raise SystemExit(130) from None
    except (TimeoutError, RuntimeError, httpx.HTTPError) as error:
        say(f"the demo failed: {error}")
        raise SystemExit(1) from None
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
