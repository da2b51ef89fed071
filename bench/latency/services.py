"""The processes a run starts besides the broker: the local FCM server, standing in for
Google, and the orchestrator's workers as deployed, with their settings."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.latency import KEY_ID, KEY_SECRET, PROJECT, TENANT
from bench.processes import CLOUD_COMMAND, stop_processes
from cloud.service import Stage
from cloud.settings import Settings
from provisioning.local_broker import LocalBroker

ROOT = Path(__file__).resolve().parent.parent.parent
#: Settings every run uses whatever else is tuned: quiet hours off (the run must not
#: depend on the time of day: at night every greeting would be held until morning).
BASE_OVERRIDES: dict[str, Any] = {"scenarios": {"quiet_hours": None}}


@contextlib.contextmanager
def fcm_server(workdir: Path) -> Iterator[tuple[str, Path]]:
    """The local FCM server in its own process (it stands in for Google's machines)."""
    credentials = workdir / "service-account.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.fcm", "--port", "0", "--project", PROJECT,
         "--credentials-out", str(credentials)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        yield str(announced["url"]), credentials
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`section.field=value` pairs (value as JSON where it parses) into nested settings."""
    values: dict[str, Any] = json.loads(json.dumps(BASE_OVERRIDES))
    for pair in pairs:
        name, _, raw = pair.partition("=")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, _, key = name.partition(".")
        if key:
            values.setdefault(section, {})[key] = value
        else:
            values[section] = value
    return values


def worker_settings(
    *, database_url: str, broker: LocalBroker, fcm_url: str, credentials: Path,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The worker's settings: production defaults but for where things are and
    `overrides`. Validated here (a typo fails before anything starts)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "tenants": {TENANT: {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "latency-worker",
                 "share_group": "latency", "session_expiry_s": 0},
        "channels": {"push": {"project_id": PROJECT, "credentials_file": str(credentials),
                              "endpoint": fcm_url}},
        "log_format": "text",
    }
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(section), dict):
            values[section] = {**values[section], **value}
        else:
            values[section] = value
    Settings(**values)
    return values


def settings_environment(values: dict[str, Any]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VITRINA_")}
    for name, value in values.items():
        env[f"VITRINA_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, dict | list) else str(value)
        )
    return env


def worker_commands(count: int, *, one_process: bool) -> list[list[str]]:
    """The `vitrina-cloud worker` command lines of `count` workers: as deployed, each a
    process per stage (`--stage`, what the systemd units and compose services run), or
    each one process running all the stages."""
    if one_process:
        return [["worker"] for _ in range(count)]
    return [["worker", "--stage", stage.value] for _ in range(count) for stage in Stage]


@contextlib.contextmanager
def worker_processes(
    values: dict[str, Any], commands: Sequence[list[str]], logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The worker processes, started and stopped as a process manager would (each its
    own MQTT client id, ingesting ones in one share group; SIGTERM on the way out, and
    each finishes its batch)."""
    processes = []
    try:
        for number, command in enumerate(commands):
            mine = {**values, "mqtt": {**values["mqtt"], "client_id": f"latency-worker-{number}"}}
            with (logs / f"worker-{number}.log").open("wb") as sink:
                processes.append(subprocess.Popen(
                    [*CLOUD_COMMAND, *command],
                    env=settings_environment(mine), stdout=sink, stderr=subprocess.STDOUT,
                    cwd=ROOT,
                ))
        yield processes
    finally:
        stop_processes(processes)
