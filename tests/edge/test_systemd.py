"""sd_notify, and the unit file: checked statically and by systemd's own verifier."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from edge.systemd import notify

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "provisioning" / "systemd" / "vitrina-edge.service"


def service_section() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return dict(parser["Service"])


def test_unit_is_hardened_and_restarts() -> None:
    service = service_section()
    assert service["Restart"] == "always"
    assert service["Type"] == "notify"
    assert service["CapabilityBoundingSet"].split() == ["CAP_NET_RAW", "CAP_NET_ADMIN"]
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["User"] != "root"
    assert service["ExecStart"].endswith("vitrina-edge run --config /etc/vitrina/edge.toml")
    assert "check-config" in service["ExecStartPre"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is part of systemd; install it to verify units"
    executable = ROOT / ".venv" / "bin" / "vitrina-edge"
    unit = tmp_path / "vitrina-edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/vitrina/bin/vitrina-edge", str(executable)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    problems = [line for line in result.stderr.splitlines() if "vitrina-edge.service" in line]
    assert problems == []


def test_notify_speaks_the_sd_notify_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1")
        assert server.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("WATCHDOG=1")
