"""`make demo` runs the story to the end with either broker, keeps the console open with a
sign-in made for the demo until Ctrl-C, and leaves no process behind, also when
interrupted in the middle."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from demo.run import RECORD_START, ChildEcho

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


def sign_in_to_the_console(line: str) -> list[str]:
    """Sign in with what the demo printed and read, through the API as the console does,
    what a newcomer is told they will see: the gateway, the visit, the scenario, the push."""
    found = re.search(r"console is open at (\S+)/console: sign in as (\S+) with the "
                      r"password (\S+) ", line)
    assert found is not None, line
    api, email, password = found.groups()
    with httpx.Client(base_url=api, timeout=10) as browser:
        assert browser.get("/console/login").status_code == 200
        signed = browser.post("/auth/login", json={"email": email, "password": password},
                              headers={"X-Requested-With": "vitrina-console"})
        assert signed.status_code == 200, signed.text
        [membership] = signed.json()["memberships"]
        tenant = membership["tenant"]
        assert browser.get(f"/console/t/{tenant}/live").status_code == 200
        gateways = browser.get(f"/tenants/{tenant}/gateways").json()
        scenarios = browser.get(f"/tenants/{tenant}/scenarios").json()
        funnel = browser.get(f"/tenants/{tenant}/analytics/funnel", params={
            "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}).json()
    return [f"gateway {row['gateway']}" for row in gateways] + [
        f"scenario {row['key']}" for row in scenarios] + [
        f"sent {row['sent']}" for row in funnel if row["sent"]]


@pytest.mark.parametrize("broker", ["auto", "amqtt"])
def test_the_demo_tells_the_whole_story_then_keeps_the_console_open(
    broker: str, tmp_path: Path
) -> None:
    marker = f"demo-{uuid.uuid4().hex}"
    demo = subprocess.Popen(
        [str(DEMO), "--speed", TEST_SPEED], cwd=tmp_path, env=demo_environment(marker, broker),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    seen: list[str] = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    for line in demo.stdout:
        lines.append(line)
        if "console is open at" in line:
            seen = sign_in_to_the_console(line)
        if "press Ctrl-C to stop everything" in line or time.monotonic() > deadline:
            break
    assert len(processes_marked(marker)) >= 3, "".join(lines)  # demo, fcm, cloud (+ broker)
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    output = "".join(lines) + rest
    assert demo.returncode == 0, output
    assert "gateway gw-1" in seen, seen
    assert "sent 1" in seen, seen
    assert any(item.startswith("scenario ") for item in seen), seen
    expected_broker = "amqtt" if broker == "amqtt" else "mosquitto"
    for line in [
        f"broker: {expected_broker} on 127.0.0.1:",
        "gateway gw-1 sees Juan's phone enter (ble_app, stable pseudonym",
        "Juan's phone receives a push: “Vitrina Madrid Centro”",
        "Juan: 1 push(es) recorded, 1 delivered (as expected)",
        "Ana: 0 push(es) recorded, 0 delivered (as expected)",
        "handled every trigger and has nothing left to send",
        "every one under a pseudonym",
        "demo complete",
        "more devices left as soon as they were seen",
        "what to try next: `vitrina-cloud dev`",
        "docs/quickstart.md",
        "stopping: everything the demo started is being stopped",
    ]:
        assert line in output, f"missing {line!r} in:\n{output}"
    assert "Traceback" not in output
    assert_the_output_is_a_story(output)
    assert wait_until_gone(marker) == []


def assert_the_output_is_a_story(output: str) -> None:
    """No fragment of a child's log record without its start (a migration's description
    running over lines), no passer-by's exit told one by one, no store named by its key
    in a push."""
    for line in output.splitlines():
        child = re.match(r"\s+(\w+) │ (.*)$", line)
        if child is not None and child.group(1) == "cloud":
            assert RECORD_START.match(child.group(2)), f"a stray fragment: {line!r}"
        assert not re.search(r"sees a device \S+ leave after 0s", line), line
    assert "alembic" not in output.lower()
    assert "receives a push: “store-1”" not in output


def test_a_quiet_log_record_is_hidden_with_all_its_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    echo = ChildEcho()
    for line in [
        "2024-03-02 10:00:00,001 INFO alembic.runtime.migration Running upgrade 1 -> 2, Stores,",
        "and the rest of the migration's description.",
        "2024-03-02 10:00:01,002 WARNING cloud something a developer should see",
        "  its second line",
    ]:
        echo("cloud", line)
    shown = capsys.readouterr().out
    assert "migration" not in shown
    assert "something a developer should see" in shown
    assert "its second line" in shown


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
