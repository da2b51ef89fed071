"""`vitrina-edge enrol` against a real orchestrator over HTTPS and a real broker: judged
by its exit codes, its messages and the files it leaves."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from cloud.api import create_app
from cloud.db import session_scope
from cloud.gateways.models import RegisteredGateway
from provisioning.broker_security import BrokerFiles
from provisioning.local_broker import free_port
from shared.sealing import load_private_key, public_key_text
from tests.cloud.factories import bearer, issue_key
from tests.cloud.gateway_support import gateway_cloud_settings, gateway_login, https_api
from tests.edge.cli import run_cli

EXIT_OK, EXIT_CONFIG, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 2, 3, 4


class Cloud:
    def __init__(self, client: TestClient, url: str, ca: Path, headers: dict[str, str],
                 tenant: str) -> None:
        self.client, self.url, self.ca, self.headers, self.tenant = (
            client, url, ca, headers, tenant)

    def new_code(self, gateway: str) -> str:
        response = self.client.post(f"/tenants/{self.tenant}/stores/s1/gateways",
                                    json={"gateway": gateway}, headers=self.headers)
        assert response.status_code == 201, response.text
        code: str = response.json()["code"]
        return code


@pytest.fixture
def cloud(engine: Engine, migrated_url: str, tenant: str, secure_broker: BrokerFiles,
          tmp_path: Path) -> Iterator[Cloud]:
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=secure_broker)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client, https_api(app, tmp_path) as (url, ca):
        headers = bearer(issue_key(engine, tenant=tenant))
        client.put(f"/tenants/{tenant}/stores/s1", json={"name": "S1", "time_zone": "UTC"},
                   headers=headers).raise_for_status()
        yield Cloud(client, url, ca, headers, tenant)


def test_enrol_writes_a_private_bundle_whose_login_connects(cloud: Cloud, tmp_path: Path,
                                                             engine: Engine) -> None:
    code = cloud.new_code("gw-1")
    bundle = tmp_path / "etc-vitrina"
    done = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--ca-file", cloud.ca,
                   "--dir", bundle)
    assert done.returncode == EXIT_OK, done.stderr
    assert f"enrolled as {cloud.tenant}/s1/gw-1" in done.stdout
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    for name in ("edge.toml", "ca.crt", "seal.key"):
        assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o600, name
    assert f'ca_file = "{bundle / "ca.crt"}"' in (bundle / "edge.toml").read_text()
    # the gateway's own sealing key: made on the device, its public part sent with the code
    assert f'seal_key_file = "{bundle / "seal.key"}"' in (bundle / "edge.toml").read_text()
    assert sorted(path.name for path in bundle.iterdir()) == ["ca.crt", "edge.toml", "seal.key"]
    with session_scope(engine) as session:
        row = session.exec(select(RegisteredGateway)).one()
    assert row.seal_public_key == public_key_text(
        load_private_key((bundle / "seal.key").read_bytes()))
    with gateway_login(bundle / "edge.toml") as login:
        assert login.accepted, login.reason

    again = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--ca-file", cloud.ca,
                    "--dir", bundle)
    assert again.returncode == EXIT_CONFIG
    assert "--force" in again.stderr
    replayed = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--ca-file", cloud.ca,
                       "--dir", bundle, "--force")
    assert replayed.returncode == EXIT_REFUSED
    assert "refused: this enrolment code cannot be used" in replayed.stderr
    assert (bundle / "edge.toml").exists()  # a refusal keeps the bundle there


def test_an_existing_bundle_is_kept_and_the_code_not_spent_without_force(
    cloud: Cloud, tmp_path: Path
) -> None:
    bundle = tmp_path / "etc-vitrina"
    bundle.mkdir()
    (bundle / "edge.toml").write_text("# the gateway's current identity\n")
    code = cloud.new_code("gw-2")
    kept = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--ca-file", cloud.ca,
                   "--dir", bundle)
    assert kept.returncode == EXIT_CONFIG
    assert "a bundle is already in" in kept.stderr
    assert (bundle / "edge.toml").read_text() == "# the gateway's current identity\n"
    replaced = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--ca-file", cloud.ca,
                       "--dir", bundle, "--force")
    assert replaced.returncode == EXIT_OK, replaced.stderr
    assert "[identity]" in (bundle / "edge.toml").read_text()


def test_an_unreachable_or_untrusted_cloud_and_plain_http_are_told_apart(
    cloud: Cloud, tmp_path: Path
) -> None:
    code = cloud.new_code("gw-3")
    bundle = tmp_path / "bundle"
    nobody = run_cli("enrol", "--code", code, "--cloud", f"https://127.0.0.1:{free_port()}",
                     "--dir", bundle)
    assert nobody.returncode == EXIT_UNREACHABLE
    assert "cannot reach" in nobody.stderr
    assert "the code was not used" in nobody.stderr
    untrusted = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--dir", bundle)
    assert untrusted.returncode == EXIT_UNREACHABLE
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    plain = run_cli("enrol", "--code", code, "--cloud", "http://cloud.example", "--dir", bundle)
    assert plain.returncode == EXIT_CONFIG
    assert "https://" in plain.stderr
    assert not bundle.exists()
    trusted = run_cli("enrol", "--code", code, "--cloud", cloud.url, "--ca-file", cloud.ca,
                      "--dir", bundle)
    assert trusted.returncode == EXIT_OK, trusted.stderr
