"""The orchestrator as a child process on this machine: its settings (`VITRINA_*`
variables) for a local broker and local provider servers, the migration, `serve`, and
the tenant's first admin key, made as an operator makes it.

The demo and the developer environment both start it this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session

from cloud.auth.keys import create_key
from cloud.auth.models import Role
from cloud.db import make_engine, migrate, utc_now, wait_for_database
from dev.processes import Supervisor
from provisioning.local_broker import LocalBroker, die_with_parent

#: The installed commands, from the environment this program runs in.
CLOUD_COMMAND = str(Path(sys.executable).with_name("vitrina-cloud"))
EDGE_COMMAND = str(Path(sys.executable).with_name("vitrina-edge"))
#: Generous bound for a slow machine; it only turns a hang into a clear failure.
STARTUP_TIMEOUT_S = 60.0
#: How often a condition waited for is looked at again.
POLL_INTERVAL_S = 0.1


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True, slots=True)
class OrchestratorSetup:
    """What the orchestrator is started with; `environment()` turns it into settings."""

    database_url: str
    broker: LocalBroker
    #: tenant -> (key id, secret): the pseudonymization key its gateways share.
    tenants: Mapping[str, tuple[str, str]]
    api_port: int
    #: The MQTT client id the worker is pinned to.
    client_id: str
    #: Each configured channel's settings (`channels.<name>`).
    channels: Mapping[str, Any] = field(default_factory=dict)
    #: Any further settings, as `VITRINA_*` variables.
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def environment(self) -> dict[str, str]:
        tenants = {tenant: {"keys": [{"key_id": key_id, "secret": secret}]}
                   for tenant, (key_id, secret) in self.tenants.items()}
        return {
            "VITRINA_DATABASE_URL": self.database_url,
            "VITRINA_MQTT__HOST": self.broker.host,
            "VITRINA_MQTT__PORT": str(self.broker.port),
            "VITRINA_MQTT__MQTT_V5": "true" if self.broker.mqtt_v5 else "false",
            "VITRINA_MQTT__SHARED_SUBSCRIPTION": "true" if self.broker.mqtt_v5 else "false",
            "VITRINA_MQTT__CLIENT_ID": self.client_id,
            "VITRINA_TENANTS": json.dumps(tenants),
            "VITRINA_CHANNELS": json.dumps(dict(self.channels)),
            "VITRINA_API__PORT": str(self.api_port),
            "VITRINA_LOG_FORMAT": "text",  # read by a person, not a log shipper
            **self.extra,
        }


def migrate_database(database_url: str) -> None:
    """What `vitrina-cloud migrate` does, in this process: it needs only the database, so
    it runs while the local servers start, without a process of its own to load the
    orchestrator's code (seconds on a busy machine)."""
    engine = make_engine(database_url)
    try:
        wait_for_database(engine)
    finally:
        engine.dispose()
    migrate(database_url)


def make_admin_key(database_url: str, *, tenant: str, name: str) -> str:
    """What `vitrina-cloud keys create --role admin` does, in this process (the demo runs
    the command, as an operator would; the developer environment saves the process)."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            _, key = create_key(session, role=Role.ADMIN, tenant=tenant, name=name,
                                created_by="cli", now=utc_now())
            session.commit()
    finally:
        engine.dispose()
    return key


def start_orchestrator(supervisor: Supervisor, environment: Mapping[str, str]) -> str:
    """`vitrina-cloud serve` (API and workers in one process), once it is ready."""
    supervisor.start("cloud", [CLOUD_COMMAND, "serve"], env=environment)
    api = f"http://127.0.0.1:{environment['VITRINA_API__PORT']}"
    wait_for(lambda: http_ok(f"{api}/readyz"), timeout=STARTUP_TIMEOUT_S,
             what=f"the orchestrator becoming ready (log in {supervisor.log_dir}/cloud.log)")
    return api


@contextlib.contextmanager
def admin_key_made(
    environment: Mapping[str, str], *, tenant: str, name: str
) -> Iterator[Callable[[], str]]:
    """The tenant's admin key, as an operator makes it: `vitrina-cloud keys create`, which
    needs only the migrated database, so it runs while the orchestrator starts. Yields
    what waits for the key. The key is kept in memory only (never written to a log);
    the command does not outlive the block."""
    process = subprocess.Popen(
        [CLOUD_COMMAND, "keys", "create", "--tenant", tenant, "--role", "admin",
         "--name", name],
        env={**os.environ, **environment},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )

    def key() -> str:
        try:
            made, problems = process.communicate(timeout=STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TimeoutError("`vitrina-cloud keys create` did not finish within "
                               f"{STARTUP_TIMEOUT_S:.0f}s") from None
        if process.returncode != 0:
            raise RuntimeError(f"could not create the admin key: {problems.strip()}")
        return made.strip()

    try:
        yield key
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes its pipes


def issue_key(api: str, admin_key: str, *, tenant: str, role: str, name: str) -> str:
    """A further key of the tenant's, as its admin issues it over the API."""
    issued = httpx.post(f"{api}/tenants/{tenant}/api-keys", json={"role": role, "name": name},
                        headers=bearer(admin_key), timeout=10.0)
    issued.raise_for_status()
    key: str = issued.json()["key"]
    return key
