"""The orchestrator's systemd units (provisioning/systemd/): each runs a real
`vitrina-cloud` command with options it accepts, the worker template covers every stage
once, the long-running ones restart on failure, all are hardened, and systemd's own
verifier accepts them. systemd is not needed running, only `systemd-analyze`."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from collections import Counter
from pathlib import Path

import click
import pytest
from typer.main import get_command

from cloud.cli import app as cloud_cli
from cloud.service import Stage
from cloud.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "provisioning" / "systemd"
TARGET = "vitrina-cloud.target"
WORKER = "vitrina-worker@.service"
SERVICES = ["vitrina-migrate.service", "vitrina-api.service", WORKER]
#: Where the units expect the project's virtual environment.
INSTALLED = "/opt/vitrina/bin/"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Present, with these values, in every unit that runs the orchestrator.
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "UMask": "0077",
}


def entries(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of a unit file in order, repeated keys kept (systemd allows
    them; configparser would keep only the last)."""
    found = []
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def section(name: str, wanted: str) -> dict[str, str]:
    return {key: value for part, key, value in entries(name) if part == wanted}


def listed(name: str, wanted: str, key: str) -> list[str]:
    """A list-valued setting's items, over all its lines."""
    return [item for part, found, value in entries(name) if (part, found) == (wanted, key)
            for item in value.split()]


def instances() -> list[str]:
    """The worker instances the target starts."""
    return [unit.removeprefix("vitrina-worker@").removesuffix(".service")
            for unit in listed(TARGET, "Unit", "Wants") if unit.startswith("vitrina-worker@")]


def command_line(name: str, instance: str | None = None) -> list[str]:
    command = section(name, "Service")["ExecStart"]
    if instance is not None:
        command = command.replace("%i", instance)
    return shlex.split(command)


def test_the_target_starts_migrations_the_api_and_each_stage_once() -> None:
    wanted = listed(TARGET, "Unit", "Wants")
    assert {"vitrina-migrate.service", "vitrina-api.service"} <= set(wanted)
    assert Counter(instances()) == Counter(stage.value for stage in Stage)
    assert section(TARGET, "Install")["WantedBy"] == "multi-user.target"
    for unit in wanted:
        template = re.sub(r"@[^.]+\.", "@.", unit)
        assert (UNITS / template).is_file(), f"{TARGET} wants {unit}, which is not shipped"


@pytest.mark.parametrize("name", SERVICES)
def test_each_unit_runs_a_real_command_with_options_it_accepts(name: str) -> None:
    commands = get_command(cloud_cli).commands  # type: ignore[attr-defined]
    for instance in instances() if name == WORKER else [None]:
        program, subcommand, *arguments = command_line(name, instance)
        assert program.startswith(INSTALLED)
        script = program.removeprefix(INSTALLED)
        # The command's entry point runs cloud.cli's commands (and adds `dev` only where
        # the development install is), so the units' subcommands are cloud.cli's.
        assert PYPROJECT["project"]["scripts"][script] == "dev.cli:main"
        assert subcommand in commands, f"{name}: no subcommand {subcommand!r}"
        try:
            context = commands[subcommand].make_context(subcommand, list(arguments))
        except click.ClickException as error:
            pytest.fail(f"{name}: {shlex.join([subcommand, *arguments])}: {error}")
        if instance is not None:
            assert context.params["stage"] == [Stage(instance)]


@pytest.mark.parametrize("name", SERVICES)
def test_each_unit_is_hardened_and_reads_its_settings(name: str) -> None:
    service = section(name, "Service")
    assert {key: service.get(key) for key in HARDENING} == HARDENING
    assert service["User"] == service["Group"] == "vitrina-cloud"
    assert service["Environment"] == "VITRINA_CONFIG=/etc/vitrina/cloud.toml"
    assert service["EnvironmentFile"] == "/etc/vitrina/cloud.env"


@pytest.mark.parametrize("name", ["vitrina-api.service", WORKER])
def test_long_running_units_restart_on_failure_after_the_migration(name: str) -> None:
    service, unit = section(name, "Service"), section(name, "Unit")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"  # the batch in hand is finished first
    assert unit["StartLimitIntervalSec"] == "0"  # a long outage does not exhaust restarts
    assert "vitrina-migrate.service" in listed(name, "Unit", "Requires")
    assert "vitrina-migrate.service" in listed(name, "Unit", "After")
    assert unit["PartOf"] == TARGET


def test_the_migration_runs_once_and_stays_done() -> None:
    service = section("vitrina-migrate.service", "Service")
    assert service["Type"] == "oneshot"
    assert service["RemainAfterExit"] == "yes"
    assert command_line("vitrina-migrate.service")[1] == "migrate"


def test_the_settings_the_install_notes_name_exist() -> None:
    notes = (UNITS / TARGET).read_text()
    named = {name.split("__")[0].lower() for name in re.findall(r"VITRINA_([A-Z_]+)", notes)}
    assert {"database_url", "tenants", "channels"} <= named
    assert named <= set(Settings.model_fields)


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is part of systemd; install it to verify units"
    executable = ROOT / ".venv" / "bin" / "vitrina-cloud"
    assert executable.is_file()
    names = [TARGET, *SERVICES]
    for name in names:
        text = (UNITS / name).read_text().replace(f"{INSTALLED}vitrina-cloud", str(executable))
        (tmp_path / name).write_text(text)
    verified = [TARGET, *(name for name in SERVICES if name != WORKER),
                *(f"vitrina-worker@{instance}.service" for instance in instances())]
    result = subprocess.run(
        [analyze, "verify", *(f"./{name}" for name in verified)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )
    problems = [line for line in result.stderr.splitlines()
                if any(name.split("@")[0] in line for name in names)]
    assert problems == [], result.stderr
    assert result.returncode == 0, result.stderr
