"""The container files are checked for syntax and for agreeing with the code they run:
no Docker engine is needed, and a renamed command, setting or file breaks a test."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from typer.main import get_command

from cloud.cli import app as cloud_cli
from cloud.service import Stage
from cloud.settings import Settings
from provisioning.broker_security import BrokerFiles, MqttCredentials
from provisioning.local_broker import broker_limits
from tests.docker_path import README, is_setting, option_values, read_env_file
from tests.docs.snippets import snippet

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}
#: Made by `vitrina-provision` on the admin's machine (docker/README.md), never committed.
GENERATED = Path("secrets")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return document


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in logical.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        instruction, _, arguments = stripped.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def cloud_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == "vitrina-cloud:latest"
    }


@pytest.mark.parametrize("name", ["Dockerfile.cloud", "Dockerfile.edge"])
def test_dockerfiles_use_known_instructions_and_existing_sources(name: str) -> None:
    instructions = dockerfile_instructions(DOCKER / name)
    assert instructions[0][0] == "FROM"
    assert {instruction for instruction, _ in instructions} <= INSTRUCTIONS
    for instruction, arguments in instructions:
        if instruction == "COPY" and not arguments.startswith("--from"):
            *sources, _destination = shlex.split(arguments)
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"


@pytest.mark.parametrize(
    ("name", "extra", "script"),
    [("Dockerfile.cloud", "cloud", "vitrina-cloud"), ("Dockerfile.edge", "edge", "vitrina-edge")],
)
def test_images_install_their_extra_and_run_its_command(name: str, extra: str, script: str) -> None:
    instructions = dockerfile_instructions(DOCKER / name)
    runs = " ".join(arguments for instruction, arguments in instructions if instruction == "RUN")
    assert f"'.[{extra}]'" in runs
    assert extra in PYPROJECT["project"]["optional-dependencies"]
    [entrypoint] = [json.loads(a) for i, a in instructions if i == "ENTRYPOINT"]
    assert entrypoint == [script]
    assert script in PYPROJECT["project"]["scripts"]


def test_edge_image_carries_no_cloud_code() -> None:
    copied = " ".join(
        a for i, a in dockerfile_instructions(DOCKER / "Dockerfile.edge") if i == "COPY"
    )
    assert "cloud" not in copied


def test_compose_builds_and_mounts_what_exists() -> None:
    document = compose()
    for name, service in document["services"].items():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                relative = Path(source[2:])
                assert relative.parts[0] == GENERATED.name or (DOCKER / relative).exists(), (
                    f"{name} mounts {source}, which does not exist"
                )
            else:
                assert source in document["volumes"], f"{name}: unknown volume {source}"
        for env_file in service.get("env_file", []):
            assert Path(env_file).parts[0] == GENERATED.name


def test_cloud_services_run_real_subcommands_with_options_they_accept() -> None:
    commands = get_command(cloud_cli).commands  # type: ignore[attr-defined]
    services = cloud_services()
    assert {"migrate", "api"} <= set(services)
    for name, service in services.items():
        subcommand, *arguments = service["command"]
        assert subcommand in commands, f"{name}: no such subcommand"
        try:
            commands[subcommand].make_context(subcommand, list(arguments))
        except click.ClickException as error:
            pytest.fail(f"{name}: {shlex.join(service['command'])}: {error}")


def test_the_worker_runs_as_a_service_per_stage() -> None:
    """Each stage in a service of its own (`worker --stage X`), every stage exactly once:
    they wake each other through PostgreSQL, and compose restarts whichever fails."""
    worker = get_command(cloud_cli).commands["worker"]  # type: ignore[attr-defined]
    stages: dict[str, list[Stage]] = {}
    for name, service in cloud_services().items():
        if service["command"][0] == "worker":
            context = worker.make_context("worker", list(service["command"][1:]))
            stages[name] = context.params["stage"] or []
    assert all(len(named) == 1 for named in stages.values()), stages
    assert Counter(stage for named in stages.values() for stage in named) == Counter(Stage)
    [ingest] = [name for name, named in stages.items() if named == [Stage.INGEST]]
    assert "--client-id" in cloud_services()[ingest]["command"]  # its session outlives it
    for name in [*stages, "api"]:
        service = cloud_services()[name]
        assert service["restart"] == "unless-stopped", name
        assert service["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        ), name
    assert "mosquitto" in cloud_services()[ingest]["depends_on"]


def test_cloud_settings_load_from_the_compose_files(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The TOML and the env files the README's steps write make valid settings, and name
    real settings only (tests/test_docker_path.py writes them with a running broker too;
    this needs none)."""
    services = cloud_services()
    environment = services["api"]["environment"]
    assert environment["VITRINA_CONFIG"] == "/etc/vitrina/cloud.toml"
    # What add-orchestrator writes (two logins, each pinned to its client id)...
    [pinned] = option_values("docker-broker-logins", "--client-id")
    [username] = option_values("docker-broker-logins", "--username")
    written = {"USERNAME": username, "PASSWORD": "secret", "TLS": "true", "CLIENT_ID": pinned,
               "CONFIG_PUBLISHER__USERNAME": f"{username}-config",
               "CONFIG_PUBLISHER__PASSWORD": "secret",
               "CONFIG_PUBLISHER__CLIENT_ID": f"{username}-config"}
    values = {f"VITRINA_MQTT__{name}": value for name, value in written.items()}
    # ...and the step that writes cloud.env, run as the README has it.
    (tmp_path / "docker" / "secrets").mkdir(parents=True)
    key = tmp_path / "service-account.json"
    key.write_text("{}")
    script = (snippet(README, "docker-settings-vars").text + f"FCM_KEY={key}\n"
              + snippet(README, "docker-cloud-secrets").text)
    subprocess.run(["bash", "-euc", script], cwd=tmp_path, check=True, timeout=30)
    values.update(read_env_file(tmp_path / "docker" / "secrets" / "cloud.env"))
    assert sorted(name for name in values if not is_setting(name)) == []
    for name in [name for name in os.environ if name.startswith("VITRINA_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VITRINA_CONFIG", str(DOCKER / "cloud.toml"))
    settings = Settings()
    assert settings.mqtt.host == "mosquitto"
    assert settings.mqtt.username == "orchestrator"
    assert settings.mqtt.tls
    # The ingest service connects as the id its login is pinned to.
    [ingest] = [s for s in services.values() if "ingest" in s.get("command", [])]
    command_id = ingest["command"][ingest["command"].index("--client-id") + 1]
    assert command_id == settings.mqtt.client_id
    assert settings.mqtt.config_publisher is not None
    assert settings.mqtt.config_publisher.pinned_client_id == "orchestrator-config"
    assert settings.database_url.startswith("postgresql+psycopg://")
    mounted = [v.split(":")[1] for v in services["api"]["volumes"]]
    assert settings.mqtt.ca_file in mounted
    assert f"{settings.api.port}:{settings.api.port}" in services["api"]["ports"]
    assert settings.tenant("demo") is not None
    assert settings.webhook_secrets_for("demo")
    assert settings.channels["push"].credentials_file.startswith("/etc/vitrina/fcm/")
    assert "./secrets/fcm:/etc/vitrina/fcm:ro" in services["api"]["volumes"]


def test_every_vitrina_name_in_the_compose_files_is_a_setting() -> None:
    """pydantic-settings ignores a misspelt `VITRINA_*` variable: the compose file's must
    each be a setting the orchestrator reads."""
    names = {name for service in compose()["services"].values()
             for name in service.get("environment", {}) if name.startswith("VITRINA_")}
    assert names
    assert sorted(name for name in names if not is_setting(name)) == []
    assert not is_setting("VITRINA_CHANNELS__PUSH__PROJECT")
    assert not is_setting("VITRINA_TRACKING_PUBLIC_BASE_URL")


def test_readme_key_commands_and_settings_exist() -> None:
    """The README's key commands are real `vitrina-cloud keys` subcommands with real
    options, and the setting the bootstrap writes is one the orchestrator reads."""
    readme = re.sub(r"\\\n\s*", "", (DOCKER / "README.md").read_text())
    used = re.findall(r"run --rm -T (?:--no-deps )?api keys (\w+)(.*)", readme)
    assert {name for name, _rest in used} == {"create", "bootstrap"}
    keys = get_command(cloud_cli).commands["keys"]  # type: ignore[attr-defined]
    for name, rest in used:
        command = keys.commands[name]
        options = {option for parameter in command.params for option in parameter.opts}
        assert set(re.findall(r"--[a-z-]+", rest.split(">>")[0])) <= options, name
    assert "VITRINA_OPERATOR_KEY_HASH" in readme
    assert "operator_key_hash" in Settings.model_fields
    assert "api" in cloud_services()


def test_broker_config_names_the_files_provisioning_writes() -> None:
    config = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    provisioned = BrokerFiles(Path("/mosquitto/secrets"), 8883, MqttCredentials("admin", "x"))
    for option, path in [
        ("cafile", provisioned.ca_certificate),
        ("certfile", provisioned.server_certificate),
        ("keyfile", provisioned.server_key),
    ]:
        assert f"{option} {path}\n" in config
    # The logins file is seeded into the data volume, where the plugin rewrites it.
    assert f"plugin_opt_config_file /mosquitto/data/{provisioned.dynsec.name}\n" in config
    start = (DOCKER / "mosquitto" / "start-broker.sh").read_text()
    for path in (provisioned.ca_certificate, provisioned.server_certificate,
                 provisioned.server_key, provisioned.dynsec):
        assert path.name in start
    assert "allow_anonymous false" in config
    listener = re.search(r"^listener (\d+)$", config, re.MULTILINE)
    assert listener is not None
    toml = tomllib.loads((DOCKER / "cloud.toml").read_text())
    assert int(listener.group(1)) == toml["mqtt"]["port"]
    assert f"{listener.group(1)}:{listener.group(1)}" in compose()["services"]["mosquitto"]["ports"]
    mounts = compose()["services"]["mosquitto"]["volumes"]
    assert "./mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    # The admin's files, read-only: the start script copies what the broker reads.
    assert "./secrets/broker:/vitrina/broker:ro" in mounts
    assert "./mosquitto/start-broker.sh:/vitrina/start-broker.sh:ro" in mounts
    assert "mosquitto-data:/mosquitto/data" in mounts
    # The packet limit is the one provisioning writes (sized from a full presence batch).
    assert f"{broker_limits()}\n" in config


def test_systemd_unit_runs_the_edge_command() -> None:
    unit = (ROOT / "provisioning" / "systemd" / "vitrina-edge.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.MULTILINE)
    assert exec_start is not None
    assert exec_start.group(1).endswith("vitrina-edge")
