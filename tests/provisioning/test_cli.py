"""Enrol a gateway with `vitrina-provision`, then run the real gateway with its bundle over
TLS with its own login, and read what it published with an orchestrator login."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.captures import CAPTURES_DIR
from provisioning.broker_security import BrokerFiles, MqttCredentials
from provisioning.cli import main
from shared.presence import decode_presence_batch
from tests.provisioning.test_broker_security import WAIT_S, Session

BIN = Path(sys.executable).parent


def provision(*arguments: str, files: BrokerFiles) -> int:
    return main(
        [*arguments, "--broker-dir", str(files.directory), "--broker-port", str(files.port)]
    )


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def received_event_ids(session: Session) -> set[str]:
    return {
        event.event_id
        for _topic, payload in list(session.messages)
        for event in decode_presence_batch(payload).events
    }


def test_an_enrolled_gateway_publishes_over_tls_with_its_own_login(
    secure_broker: BrokerFiles, mqtt_namespace: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "tenant.key"
    key_file.write_text("7a" * 32)
    bundle = tmp_path / "bundle"
    assert (
        provision(
            "enrol-gateway",
            "--tenant",
            mqtt_namespace,
            "--store",
            "s1",
            "--gateway",
            "g1",
            "--key-id",
            "k1",
            "--key-file",
            str(key_file),
            "--out",
            str(bundle),
            "--installed-dir",
            str(bundle),
            files=secure_broker,
        )
        == 0
    )
    assert (bundle / "edge.toml").stat().st_mode & 0o077 == 0
    env_file = tmp_path / "orchestrator.env"
    assert (
        provision(
            "add-orchestrator",
            "--username",
            f"orch-{mqtt_namespace}",
            "--out",
            str(env_file),
            files=secure_broker,
        )
        == 0
    )
    login = read_env(env_file)
    # Two logins, each pinned to its client id: the ingest worker's and the publisher's.
    assert login["VITRINA_MQTT__CLIENT_ID"] == f"orch-{mqtt_namespace}"
    assert login["VITRINA_MQTT__CONFIG_PUBLISHER__USERNAME"] == (
        login["VITRINA_MQTT__CONFIG_PUBLISHER__CLIENT_ID"]) == f"orch-{mqtt_namespace}-config"

    check = subprocess.run(
        [str(BIN / "vitrina-edge"), "check-config", "--config", str(bundle / "edge.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    worker = Session(
        secure_broker,
        MqttCredentials(login["VITRINA_MQTT__USERNAME"], login["VITRINA_MQTT__PASSWORD"]),
        login["VITRINA_MQTT__CLIENT_ID"],
    )
    try:
        assert worker.connected.wait(WAIT_S)
        assert not worker.subscribe(
            f"$share/w-{mqtt_namespace}/vitrina/v1/{mqtt_namespace}/+/+/presence"
        ).is_failure
        replay = subprocess.run(
            [
                str(BIN / "vitrina-edge"),
                "replay",
                "--config",
                str(bundle / "edge.toml"),
                "--pcap",
                str(CAPTURES_DIR / "demo.pcapng"),
                "--max-speed",
                "--quiet",
                "--outbox",
                str(tmp_path / "outbox.db"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        published = re.search(r"events\s+(\d+)", replay.stdout)
        assert published is not None, replay.stdout
        expected = int(published.group(1))
        deadline = time.monotonic() + WAIT_S
        while len(received_event_ids(worker)) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(received_event_ids(worker)) == expected > 0
    finally:
        worker.close()


def test_enrolling_with_a_bad_key_fails_clearly(
    secure_broker: BrokerFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "tenant.key"
    key_file.write_text("too short")
    code = provision(
        "enrol-gateway",
        "--tenant",
        "t",
        "--store",
        "s",
        "--gateway",
        "g",
        "--key-id",
        "k1",
        "--key-file",
        str(key_file),
        "--out",
        str(tmp_path / "bundle"),
        files=secure_broker,
    )
    assert code == 2
    assert "neither hex nor base64" in capsys.readouterr().err


def test_grant_missing_acls_needs_a_gateway_or_the_orchestrator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grant-missing-acls", "--broker-dir", str(tmp_path), "--tenant", "t"]) == 2
    assert "--orchestrator" in capsys.readouterr().err


def test_broker_init_names_the_plugin_it_is_given(tmp_path: Path) -> None:
    """An admin whose Mosquitto put its plugin somewhere else names it (docker/README.md)."""
    plugin = "/opt/mosquitto/lib/mosquitto_dynamic_security.so"
    assert main(["broker-init", str(tmp_path / "broker"), "--hostname", "localhost",
                 "--plugin", plugin]) == 0
    assert f"plugin {plugin}\n" in (tmp_path / "broker" / "mosquitto.conf").read_text()
