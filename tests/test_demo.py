"""`make demo` runs the story to the end with either broker, and leaves no process behind,
also when interrupted with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

DEMO = Path(sys.executable).with_name("vitrina-demo")
#: The story at ten times the pace a person watches it at: the five-minute visit in a
#: second. What is checked does not depend on the pace: the demo waits until the
#: orchestrator has nothing left to do before it counts the pushes.
TEST_SPEED = "300"
#: The demo's own bounds are 60 s per start-up step; this only stops a hang.
DEMO_TIMEOUT_S = 240


def processes_marked(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if marker.encode() in environment and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(marker: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def demo_environment(marker: str, broker: str) -> dict[str, str]:
    return {**os.environ, "VITRINA_DEMO_MARKER": marker, "VITRINA_DEMO_BROKER": broker}


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_the_demo_tells_the_whole_story(broker: str, tmp_path: Path) -> None:
    marker = f"demo-{uuid.uuid4().hex}"
    result = subprocess.run(
        [str(DEMO), "--speed", TEST_SPEED],
        cwd=tmp_path,
        env=demo_environment(marker, broker),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    expected_broker = "amqtt" if broker == "amqtt" else "mosquitto"
    for line in [
        f"broker: {expected_broker} on 127.0.0.1:",
        "gateway gw-1 sees Juan's phone enter (ble_app, stable pseudonym",
        "Juan's phone receives a push: “store-1”",
        "Juan: 1 push(es) recorded, 1 delivered (as expected)",
        "Ana: 0 push(es) recorded, 0 delivered (as expected)",
        "handled every trigger and has nothing left to send",
        "every one under a pseudonym",
        "demo complete",
    ]:
        assert line in output, f"missing {line!r} in:\n{output}"
    assert "Traceback" not in output
    assert wait_until_gone(marker) == []


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    marker = f"demo-{uuid.uuid4().hex}"
    demo = subprocess.Popen(
        [str(DEMO)],
        cwd=tmp_path,
        env=demo_environment(marker, "auto"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines = []
    # Interrupt once the orchestrator and the gateway are running: on the gateway's first
    # line of output, not on the line announcing it (the demo is then starting it).
    for line in demo.stdout:
        lines.append(line)
        if "edge │" in line:
            break
    assert len(processes_marked(marker)) >= 4, "".join(lines)  # demo, broker, fcm, cloud, edge
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, "".join(lines) + rest
    assert "everything the demo started has been stopped" in rest
    assert wait_until_gone(marker) == []
