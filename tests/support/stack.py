"""The whole product running as its own processes, for tests that drive it from outside:
`vitrina-cloud serve` on a database of the test's, talking to a broker and a local FCM
server, a shop's app registering shoppers over the API, and `vitrina-edge replay`
publishing a recorded capture as a store's gateway would."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from edge.captures import CAPTURES_DIR, DEMO_APP_IBEACON_UUID, DEMO_APP_SERVICE_UUID
from provisioning.local_broker import LocalBroker, free_port
from sandbox.fcm import FcmSandbox, make_token
from tests.support.shop_backend import ShopBackend

CAPTURE = CAPTURES_DIR / "demo.pcapng"
#: The store and gateway the replayed capture is published as.
STORE = "store-1"
KEY_ID = "e2e-1"
KEY_SECRET = "5f" * 32
BIN = Path(sys.executable).parent
#: Bounds for a loaded two-core machine; they turn a hang into a failure message.
STARTUP_TIMEOUT_S = 60.0
REPLAY_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Stack:
    tenant: str
    api: str
    database_url: str
    fcm: FcmSandbox
    logs: Path
    admin_key: str
    app_key: str
    #: The orchestrator's environment, for running its commands against the same database.
    environment: dict[str, str]
    #: The shop's backend: its key signs the customer tokens the app sends.
    backend: ShopBackend

    def as_app(self) -> httpx.Client:
        """What the shop's app holds: a key that can sign shoppers up, nothing more."""
        return httpx.Client(headers={"Authorization": f"Bearer {self.app_key}"}, timeout=10.0)

    def command(self, *arguments: str, stdin: str | None = None) -> str:
        """Run `vitrina-cloud <arguments>` as an operator would; its output (it must succeed)."""
        done = subprocess.run(
            [str(BIN / "vitrina-cloud"), *arguments], env={**os.environ, **self.environment},
            input=stdin, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S, check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def secrets(self) -> set[str]:
        return {key.split("_", 2)[2] for key in (self.admin_key, self.app_key)}


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def reachable(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()



@contextlib.contextmanager
def running_stack(
    *, broker: LocalBroker, tenant: str, database_url: str, workdir: Path
) -> Iterator[Stack]:
    """The orchestrator serving on a free port, its database migrated, an admin key made
    with the command line and an app key issued over the API; stopped on leaving."""
    with FcmSandbox(project_id="vitrina-e2e") as fcm:
        credentials = fcm.write_credentials(workdir / "fcm-service-account.json")
        api_port = free_port()
        environment = {
            "VITRINA_DATABASE_URL": database_url,
            "VITRINA_MQTT__HOST": broker.host,
            "VITRINA_MQTT__PORT": str(broker.port),
            "VITRINA_MQTT__CLIENT_ID": f"orchestrator-{tenant}",
            # Its own share group: a stopped orchestrator's persistent session (kept for
            # restarts) would otherwise still be handed part of the next test's messages.
            "VITRINA_MQTT__SHARE_GROUP": f"orchestrator-{tenant}",
            "VITRINA_TENANTS": json.dumps(
                {tenant: {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}}
            ),
            "VITRINA_CHANNELS__PUSH__PROJECT_ID": "vitrina-e2e",
            "VITRINA_CHANNELS__PUSH__CREDENTIALS_FILE": str(credentials),
            "VITRINA_CHANNELS__PUSH__ENDPOINT": fcm.url,
            "VITRINA_API__PORT": str(api_port),
            # The tests run whenever CI does: quiet hours would hold a greeting at night.
            "VITRINA_SCENARIOS": json.dumps({"quiet_hours": None}),
        }
        logs = workdir / "logs"
        logs.mkdir()
        unstarted = Stack(tenant=tenant, api=f"http://127.0.0.1:{api_port}",
                          database_url=database_url, fcm=fcm, logs=logs, admin_key="",
                          app_key="", environment=environment,
                          backend=ShopBackend.new(tenant))
        unstarted.command("migrate")
        admin_key = unstarted.command("keys", "create", "--tenant", tenant, "--role", "admin",
                                      "--name", "back office").strip()
        cloud = start(
            [str(BIN / "vitrina-cloud"), "serve"], env=environment, log=logs / "cloud.log"
        )
        try:
            wait_until(lambda: reachable(f"{unstarted.api}/readyz"),
                       timeout=STARTUP_TIMEOUT_S, what="orchestrator ready")
            issued = httpx.post(
                f"{unstarted.api}/tenants/{tenant}/api-keys",
                json={"role": "app", "name": "shop app"},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            assert issued.status_code == 201, issued.text
            signing = httpx.post(
                f"{unstarted.api}/tenants/{tenant}/customer-token-keys",
                json=unstarted.backend.registration(),
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            assert signing.status_code == 201, signing.text
            yield dataclasses.replace(unstarted, admin_key=admin_key,
                                      app_key=issued.json()["key"])
        finally:
            stop(cloud)


def register(stack: Stack, *, name: str, install_id: str, location_consent: bool) -> str:
    """Sign a shopper up the way the shop's app does; return the push token. Before its
    user signs in the app holds only its public key: an anonymous installation with the
    phone's push token and beacon id. At sign-in the shop's backend signs a customer
    token; with it the app makes the customer, claims the installation, and records
    consent."""
    base = f"{stack.api}/tenants/{stack.tenant}/customers"
    token = make_token(name)
    with stack.as_app() as client:
        installation = client.post(base, json={})
        assert installation.status_code == 201, installation.text
        installation_id = installation.json()["id"]
        for device in (
            {"kind": "fcm", "token": token},
            {"kind": "app_beacon", "install_id": install_id},
        ):
            answer = client.post(f"{base}/{installation_id}/devices", json=device)
            assert answer.status_code == 201, answer.text
        signed_in = stack.backend.headers(f"shop-user-{name}", now=datetime.now(UTC))
        created = client.post(base, headers=signed_in, json={
            "email": f"{name}@example.com", "first_name": name,
            "installation_id": installation_id,
        })
        assert created.status_code == 201, created.text
        customer = created.json()["id"]
        for channel, granted in (("push", True), ("location_marketing", location_consent)):
            answer = client.post(
                f"{base}/{customer}/consent", headers=signed_in,
                json={"channel": channel, "granted": granted, "source": "app.signup"},
            )
            assert answer.status_code == 201, answer.text
    return token


def replay_capture(
    stack: Stack, broker: LocalBroker, tmp_path: Path, *pace: str
) -> str:
    """Publish the demo capture as gateway gw-1 of store-1 (`pace`: `replay` options,
    as fast as possible unless given); the command's output."""
    config = tmp_path / "edge.toml"
    config.write_text(
        f"""
timezone = "Europe/Madrid"
status_interval_s = 1
[identity]
tenant = "{stack.tenant}"
store = "{STORE}"
gateway = "gw-1"
[keys]
active = "{KEY_ID}"
[[keys.key]]
key_id = "{KEY_ID}"
secret = "{KEY_SECRET}"
[beacons]
app_ibeacon_uuid = "{DEMO_APP_IBEACON_UUID}"
app_service_uuid = "{DEMO_APP_SERVICE_UUID}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "gw-{stack.tenant}"
[outbox]
path = "{tmp_path / "outbox.db"}"
[logging]
level = "DEBUG"
"""
    )
    result = subprocess.run(
        [
            str(BIN / "vitrina-edge"),
            "replay",
            "--config",
            str(config),
            "--pcap",
            str(CAPTURE),
            *(pace or ("--max-speed",)),
        ],
        capture_output=True,
        timeout=REPLAY_TIMEOUT_S,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    (stack.logs / "edge.log").write_text(output)
    assert result.returncode == 0, output
    return output
