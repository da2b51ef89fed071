"""Fixtures for the orchestrator: migrated databases and a real FCM sender talking to the
local FCM v1 server (Google's servers are the one thing these tests do not reach)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cloud.db import make_engine, migrate
from cloud.delivery.fcm import FcmSender
from cloud.delivery.push import FcmSettings
from cloud.delivery.retry import RetryPolicy
from sandbox.fcm import FcmSandbox, ServiceAccount

FCM_PROJECT = "vitrina-cloud-test"
#: Short waits keep the suite fast when a test scripts transient FCM errors.
FAST_RETRY = RetryPolicy(
    attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05, max_inline_wait_s=5
)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
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
