"""Running `vitrina-edge` as the operator does: a real process with a real config file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import edge
from edge.capture.replay import read_pcap_sightings
from edge.pseudonymize import SightingPseudonymizer
from edge.settings import EdgeSettings
from edge.tracker import Identity, Tracker, TrackerThresholds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(edge.__file__).parent / "example-config.toml"


def write_config(
    directory: Path, *, tenant: str, port: int, level: str = "INFO", extra: str = ""
) -> Path:
    """The shipped example config, pointed at a test broker, tenant and outbox."""
    text = EXAMPLE.read_text()
    for old, new in (
        ('tenant = "demo"', f'tenant = "{tenant}"'),
        ('host = "localhost"', 'host = "127.0.0.1"'),
        ("port = 1883", f"port = {port}"),
        ("/var/lib/vitrina/outbox.db", str(directory / "outbox.db")),
        ("status_interval_s = 30", "status_interval_s = 1"),
        ("reconnect_max_s = 30.0", "reconnect_max_s = 1.0"),
        ('level = "INFO"', f'level = "{level}"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = directory / "edge.toml"
    path.write_text(text + extra)
    return path


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edge.cli", *(str(arg) for arg in args)]


def run_cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, env=cli_env())


def start_cli(*args: str | Path, stderr: Path) -> subprocess.Popen[str]:
    with stderr.open("w") as log:
        return subprocess.Popen(cli_command(*args), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=log, text=True, env=cli_env())


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def expected_event_ids(settings: EdgeSettings, captures: Sequence[Path]) -> list[str]:
    """Every event a replay of `captures` must produce: the pipeline run offline."""
    identity = settings.identity
    pseudonymizer = SightingPseudonymizer(settings.keys.tenant_keys(), settings.keys.active,
                                          settings.tz)
    tracker = Tracker(Identity(identity.tenant, identity.store, identity.gateway),
                      TrackerThresholds.from_settings(settings.tracker, settings.zones))
    ids: list[str] = []
    beacons = settings.beacons.to_config()
    for capture in captures:
        for sighting in read_pcap_sightings(capture, beacons=beacons):
            ids.extend(event.event_id for event in tracker.observe(
                pseudonymizer.pseudonymize(sighting)))
    ids.extend(event.event_id for event in tracker.close())
    return ids
