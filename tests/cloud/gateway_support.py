"""A cloud wired to a real broker with dynamic security, and a gateway enrolled from it:
what the gateway tests of the API and of the console share."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from fastapi import FastAPI
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.settings import Settings
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings, load_settings
from provisioning.broker_security import BrokerFiles, DynsecAdmin
from provisioning.certificates import issue_certificate, make_certificate_authority
from provisioning.local_broker import free_port
from tests.cloud.factories import Clock, bearer, cloud_settings, issue_key
from tests.cloud.running import WAIT_S, running_api, running_loop, wait_for

#: The store the gateway tests add their gateways to.
STORE = "madrid-1"


def gateway_cloud_settings(
    *, tenant: str, database_url: str, files: BrokerFiles, with_admin: bool = True,
    **changes: Any,
) -> Settings:
    """The orchestrator's settings for `files`' broker: its own logins, each pinned to its
    client id (made as `vitrina-provision add-orchestrator` does: the ingest worker's and
    the config publisher's) and, unless `with_admin` is false, the broker's admin login
    for enrolling and revoking."""
    with DynsecAdmin(host="localhost", port=files.port, admin=files.admin,
                     ca_file=files.ca_certificate) as control:
        orchestrator = control.add_orchestrator(username=f"orchestrator-{tenant}",
                                                client_id=f"worker-{tenant}")
        publisher = control.add_config_publisher(username=f"orchestrator-{tenant}-config")
    gateways: dict[str, Any] = {"ca_file": str(files.ca_certificate), "public_host": "localhost"}
    if with_admin:
        gateways |= {"broker_admin_username": files.admin.username,
                     "broker_admin_password": files.admin.password}
    return cloud_settings(
        tenant=tenant, database_url=database_url, gateways=gateways,
        mqtt={"host": "localhost", "port": files.port, "tls": True,
              "ca_file": str(files.ca_certificate), "username": orchestrator.username,
              "password": orchestrator.password, "client_id": orchestrator.client_id,
              "config_publisher": {"username": publisher.username,
                                   "password": publisher.password,
                                   "client_id": publisher.client_id},
              "session_expiry_s": 300, "share_group": f"g-{tenant}"},
        **changes,
    )


def write_bundle(directory: Path, files: dict[str, str]) -> Path:
    """What `vitrina-edge enrol` writes, for tests of the API alone; the config's path."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory / "edge.toml"


class GatewayLogin:
    """A paho client logged in with a gateway's bundle, as the agent logs in; it reads the
    gateway's config topic and notices when the broker ends its session."""

    def __init__(self, settings: EdgeSettings) -> None:
        mqtt_settings = settings.mqtt
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                                  protocol=mqtt.MQTTv5)
        password = mqtt_settings.password.get_secret_value() if mqtt_settings.password else None
        self.client.username_pw_set(mqtt_settings.username, password)
        self.client.tls_set(ca_certs=str(mqtt_settings.ca_file),
                            tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.reconnect_delay_set(60, 60)  # a test sees the first cut, not a retry
        self.reason: ReasonCode | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.configs: list[bytes] = []
        identity = settings.identity
        self.config_topic = (f"vitrina/v1/{identity.tenant}/{identity.store}/"
                             f"{identity.gateway}/config")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_args: self.disconnected.set()
        self.client.on_message = lambda _c, _u, message: self.configs.append(
            bytes(message.payload))
        self.client.connect(mqtt_settings.host, mqtt_settings.port)
        self.client.loop_start()
        self.connected.wait(WAIT_S)

    def _on_connect(self, _c: object, _u: object, _f: object, reason: ReasonCode,
                    _p: object) -> None:
        self.reason = reason
        if not reason.is_failure:
            self.client.subscribe(self.config_topic, qos=1)
        self.connected.set()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def https_api(app: FastAPI, directory: Path) -> Iterator[tuple[str, Path]]:
    """The API on a real port over TLS; its address and the CA that signed its certificate."""
    authority = make_certificate_authority("Test cloud CA")
    ca, cert, key = directory / "cloud-ca.crt", directory / "cloud.crt", directory / "cloud.key"
    authority.write(ca, directory / "cloud-ca.key")
    issue_certificate(authority, common_name="localhost", hostnames=["localhost"]).write(cert, key)
    with running_api(app, free_port(), tls=(cert, key)) as url:
        yield url, ca


@contextlib.contextmanager
def gateway_login(config: Path) -> Iterator[GatewayLogin]:
    login = GatewayLogin(load_settings(config, env={}))
    try:
        yield login
    finally:
        login.close()


@contextlib.contextmanager
def running_agent(config: Path, outbox: Path) -> Iterator[EdgeAgent]:
    """The gateway agent of an enrolled bundle, without capture sources, on its own loop
    in a thread: it connects, applies the cloud's config and heartbeats."""
    settings = load_settings(config, env={})
    settings = settings.model_copy(update={
        "outbox": settings.outbox.model_copy(update={"path": outbox})})
    agent = EdgeAgent(settings, [], live=True)
    with running_loop(agent.run, name="test-agent"):
        wait_for(lambda: agent.publisher.connected, what="agent connected")
        yield agent


@dataclass
class Cloud:
    client: TestClient
    engine: Engine
    tenant: str
    settings: Settings
    clock: Clock
    headers: dict[str, str]

    def path(self, rest: str = "") -> str:
        return f"/tenants/{self.tenant}/stores/{STORE}/gateways{rest}"

    @property
    def app(self) -> FastAPI:
        """The app, to run on a real port too (`https_api`)."""
        app = self.client.app
        assert isinstance(app, FastAPI)
        return app

    def add_gateway(self, gateway: str = "gw-1") -> dict[str, Any]:
        response = self.client.post(self.path(), json={"gateway": gateway}, headers=self.headers)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def enrol(self, code: str, **extra: Any) -> Any:
        return self.client.post("/enrol", json={"code": code, **extra})


@contextlib.contextmanager
def make_cloud(engine: Engine, settings: Settings, tenant: str) -> Iterator[Cloud]:
    clock = Clock(datetime.now(UTC))
    with TestClient(create_app(settings, engine=engine, now=clock)) as client:
        headers = bearer(issue_key(engine, tenant=tenant))
        stored = client.put(f"/tenants/{tenant}/stores/{STORE}",
                            json={"name": "Madrid", "time_zone": "Europe/Madrid"},
                            headers=headers)
        assert stored.status_code == 200, stored.text
        yield Cloud(client, engine, tenant, settings, clock, headers)
