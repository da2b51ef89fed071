"""Fixtures for the orchestrator: migrated databases and a real FCM sender talking to the
local FCM v1 server (Google's servers are the one thing these tests do not reach)."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import Engine

from cloud.auth import passwords
from cloud.channels.fcm import FcmSender, FcmSettings
from cloud.channels.retry import RetryPolicy
from cloud.db import make_engine, migrate
from sandbox.fcm import FcmSandbox, ServiceAccount
from tests.support.postgres import admin_connection, fresh_database, server_url

FCM_PROJECT = "vitrina-cloud-test"
#: Short waits keep the suite fast when a test scripts transient FCM errors.
FAST_RETRY = RetryPolicy(
    attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05, max_inline_wait_s=5
)


@pytest.fixture(scope="session")
def schema_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated database of each kind, built once; tests get copies of it (migrating
    every test's database anew would dominate the suite's time). The migrations themselves
    are tested on empty databases in test_db.py."""
    sqlite_file = tmp_path_factory.mktemp("schema") / "template.db"
    migrate(f"sqlite:///{sqlite_file}")
    with fresh_database("vitrina_template") as url:
        migrate(url)
        yield {"sqlite": str(sqlite_file), "postgresql": url.rsplit("/", 1)[1]}


@contextlib.contextmanager
def postgres_copy(schema_templates: dict[str, str]) -> Iterator[str]:
    """A new PostgreSQL database holding the current schema (a copy of the template)."""
    name = f"vitrina_test_{uuid.uuid4().hex[:12]}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(schema_templates["postgresql"])
        ))
    try:
        yield f"{server_url()}/{name}"
    finally:
        with admin_connection() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def migrated_copy(kind: str, tmp_path: Path, schema_templates: dict[str, str]) -> Iterator[str]:
    """A new database of `kind` ("sqlite", "postgresql") holding the current schema."""
    if kind == "sqlite":
        target = tmp_path / "vitrina.db"
        shutil.copyfile(schema_templates["sqlite"], target)
        yield f"sqlite:///{target}"
        return
    with postgres_copy(schema_templates) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(
    request: pytest.FixtureRequest, tmp_path: Path, schema_templates: dict[str, str]
) -> Iterator[str]:
    """A new database of each kind holding the current schema (a copy of the template):
    every storage test runs on SQLite and on PostgreSQL."""
    with migrated_copy(request.param, tmp_path, schema_templates) as url:
        yield url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(schema_templates: dict[str, str], tmp_path: Path) -> Iterator[Engine]:
    """One migrated SQLite database, for tests where the kind of database does not matter."""
    target = tmp_path / "vitrina.db"
    shutil.copyfile(schema_templates["sqlite"], target)
    engine = make_engine(f"sqlite:///{target}")
    yield engine
    engine.dispose()


@pytest.fixture
def tenant(mqtt_namespace: str) -> str:
    return mqtt_namespace


@pytest.fixture(scope="session")
def fcm_account() -> ServiceAccount:
    return ServiceAccount.generate(FCM_PROJECT)  # RSA key generation: once per session


@pytest.fixture
def fcm_server(fcm_account: ServiceAccount) -> Iterator[FcmSandbox]:
    with FcmSandbox(FCM_PROJECT, service_account=fcm_account) as server:
        yield server


@pytest.fixture
def fcm_settings(fcm_server: FcmSandbox, tmp_path: Path) -> FcmSettings:
    credentials = fcm_server.write_credentials(tmp_path / "service-account.json")
    return FcmSettings(
        project_id=FCM_PROJECT, credentials_file=str(credentials), endpoint=fcm_server.url
    )


@pytest.fixture
def sender(fcm_settings: FcmSettings) -> Iterator[FcmSender]:
    with FcmSender(fcm_settings, retry=FAST_RETRY) as sender:
        yield sender


#: Argon2id at its cheapest: signing members in by the hundred at the recommended cost
#: (0.17 s a hash here) would dominate the suite. Only the parameters change; the code
#: paths are the ones production runs, and the password tests check the real ones.
CHEAP_HASHER = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))


@pytest.fixture(autouse=True)
def cheap_password_hashes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "real_password_cost" not in request.keywords:
        monkeypatch.setattr(passwords, "_hasher", lambda: CHEAP_HASHER)
