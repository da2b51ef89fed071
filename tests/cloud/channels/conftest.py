"""A local FCM server (and its service account) shared by the FCM sender tests.

The RSA key generation is the slow part, so one service account serves the module; each
test still gets a server of its own, with its own records and scripts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.fcm import FcmSandbox, ServiceAccount

PROJECT = "vitrina-test"


@pytest.fixture(scope="session")
def service_account() -> ServiceAccount:
    return ServiceAccount.generate(PROJECT)


@pytest.fixture
def fcm_server(service_account: ServiceAccount) -> Iterator[FcmSandbox]:
    with FcmSandbox(PROJECT, service_account=service_account) as server:
        yield server


@pytest.fixture
def fcm_credentials(fcm_server: FcmSandbox, tmp_path: Path) -> Path:
    return fcm_server.write_credentials(tmp_path / "service-account.json")
