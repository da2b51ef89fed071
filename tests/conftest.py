"""Fixtures that give each test real infrastructure of its own.

- `broker`: a Mosquitto started for the session on a free port (its own config);
- `secure_broker`: one with TLS and dynamic security (per-client logins and ACLs);
- `mqtt_topic_prefix`: a unique topic namespace per test, so tests never see each
  other's retained messages or sessions;
- `postgres_server`: the suite's own PostgreSQL server (a throwaway cluster, see
  `tests.cloud.private_postgres`), where every PostgreSQL database of a test is made;
- `postgres_url`: a database created for the session and dropped afterwards;
- `database_url`: every storage test runs twice, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.broker_security import BrokerFiles, DynsecAdmin, provision_broker
from provisioning.local_broker import (
    LocalBroker,
    free_port,
    mosquitto_binary,
    start_mosquitto,
    stop_process,
)
from tests.cloud.private_postgres import private_postgres
from tests.support.postgres import SERVER_ENV, fresh_database


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    if mosquitto_binary() is None:
        pytest.fail(
            "mosquitto is not installed: run `apt-get install mosquitto` (the test command does)"
        )
    workdir = tmp_path_factory.mktemp("mosquitto")
    running, process = start_mosquitto(workdir=workdir)
    yield running
    stop_process(process)


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFiles]:
    """A Mosquitto as production runs it: TLS only, logins and ACLs from dynamic security,
    everything not granted refused. Tests enrol their own gateways under `mqtt_namespace`."""
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: run `apt-get install mosquitto`")
    files = provision_broker(
        tmp_path_factory.mktemp("secure-mosquitto"),
        port=free_port(),
        hostnames=["localhost", "127.0.0.1"],
    )
    _running, process = start_mosquitto(
        workdir=files.directory, port=files.port, config_text=files.config.read_text()
    )
    with DynsecAdmin(
        host="localhost", port=files.port, admin=files.admin, ca_file=files.ca_certificate
    ) as control:
        control.lock_down()
    yield files
    stop_process(process)


@pytest.fixture
def mqtt_namespace() -> str:
    """A tenant id no other test uses: topics, retained messages and client ids stay apart."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session", autouse=True)
def postgres_server() -> Iterator[str]:
    """The server the suite's databases are made on, named in `SERVER_ENV` for every
    helper and child process: a throwaway cluster of this test process's own, or the
    server `SERVER_ENV` already names."""
    if os.environ.get(SERVER_ENV):
        yield os.environ[SERVER_ENV]
        return
    with private_postgres() as server:
        os.environ[SERVER_ENV] = server.admin_dsn
        try:
            yield server.admin_dsn
        finally:
            del os.environ[SERVER_ENV]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database of each supported kind (a new one per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vitrina.db'}"
    else:
        with fresh_database() as url:
            yield url
