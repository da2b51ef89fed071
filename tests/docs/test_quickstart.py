"""docs/quickstart.md, run as a developer runs it: every block in order, in a shell, the
developer environment in one terminal and everything else in a second, against a
PostgreSQL server of the test's own; the push must arrive at the local FCM server and
`why` must say it was sent.

One environment for the whole page: the blocks build on each other, as they do for a
reader, so they are checked in one run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.private_postgres import BIN_CANDIDATES, PrivatePostgres, private_postgres
from tests.docs.snippets import ROOT, snippet

QUICKSTART = "docs/quickstart.md"
#: The first terminal: install, a database, the environment (until Ctrl-C).
FIRST_TERMINAL = ("quickstart-install", "quickstart-database", "quickstart-start")
#: The second terminal, in order.
SECOND_TERMINAL = ("quickstart-env", "quickstart-store", "quickstart-offer",
                   "quickstart-scenario", "quickstart-customer", "quickstart-order",
                   "quickstart-visit", "quickstart-received", "quickstart-why",
                   "quickstart-location", "quickstart-push")
#: What `vitrina-cloud dev` prints once everything has started.
READY_LINE = "Press Ctrl-C to stop everything."
STEPS_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
MARKER = "### block "


def block(block_id: str) -> str:
    return snippet(QUICKSTART, block_id).text


def activate_line() -> str:
    """The install block's activation: what the second terminal runs first, as the page
    says ("with the virtual environment active")."""
    [line] = [line for line in block("quickstart-install").splitlines()
              if "activate" in line]
    return line


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


def shell_environment(postgres: PrivatePostgres, state_dir: Path) -> dict[str, str]:
    """A developer's shell: their PostgreSQL found by the client library's own variables,
    the PostgreSQL client tools on PATH, and the environment's state directory named."""
    tools = [str(directory) for directory in BIN_CANDIDATES]
    return {
        **{name: value for name, value in os.environ.items()
           if not name.startswith(("VITRINA_", "PG"))},
        "PATH": os.pathsep.join([*tools, os.environ.get("PATH", "")]),
        "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGUSER": "postgres",
        "VITRINA_DEV_DIR": str(state_dir),
    }


def wait_for_ready(process: subprocess.Popen[str]) -> str:
    """The first terminal's output up to the ready line (the process goes on)."""
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if line.strip() == READY_LINE:
            return "".join(seen)
    raise AssertionError("vitrina-cloud dev ended before it was ready:\n" + "".join(seen))


def outputs(transcript: str) -> dict[str, str]:
    """The second terminal's output, by block."""
    parts = re.split(rf"^{MARKER}(\S+)$", transcript, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_quickstart_gets_a_developer_to_a_push(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    environment = shell_environment(postgres, tmp_path / "vitrina-dev")
    first = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", "\n".join(block(b) for b in FIRST_TERMINAL)],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        started = wait_for_ready(first)
        assert "tenant          shop" in started
        script = "\n".join([activate_line(), *(
            f"echo; echo '{MARKER}{block_id}'\n{block(block_id)}"
            for block_id in SECOND_TERMINAL)])
        second = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=environment,
            capture_output=True, text=True, timeout=STEPS_TIMEOUT_S, check=False,
        )
        assert second.returncode == 0, second.stdout + second.stderr
        said = outputs(second.stdout)

        push = ("“Welcome, Juan!” 20% off Heat-pump dryer 8 kg at Vitrina Madrid Centro "
                "with code ")
        assert push in said["quickstart-visit"], said["quickstart-visit"]
        received = json.loads(said["quickstart-received"])["messages"]
        assert [m["message"]["token"] for m in received] == [
            "quickstart-phone:APA91b-registration-token"]
        assert "store-cross-sell" in said["quickstart-why"]
        assert re.search(r"push store-cross-sell/push: sent", said["quickstart-why"])
        assert "enter madrid-centro-door" in said["quickstart-location"]
        assert "no push arrived" in said["quickstart-location"]
        assert ": sent" in said["quickstart-push"]
    finally:
        # Ctrl-C in the first terminal: SIGINT to its foreground process group.
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGINT)
        try:
            rest, _ = first.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)
            raise
    assert "stopping: everything `vitrina-cloud dev` started is being stopped" in rest
    assert not (tmp_path / "vitrina-dev" / "session.json").exists()
