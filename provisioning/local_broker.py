"""Start a private MQTT broker on a free loopback port, for the demo and the tests.

Mosquitto is the production broker, so it is preferred. Where it is not installed
the demo falls back to amqtt, an in-process Python broker that speaks MQTT 3.1.1
only: callers must then do without shared subscriptions and MQTT v5 properties,
which `LocalBroker.mqtt_v5` tells them.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.presence import MAX_PACKET_BYTES

#: Mosquitto on a Pi or a busy CI machine binds in well under a second; this
#: bound only turns a broken install into a clear error instead of a hang.
STARTUP_TIMEOUT_S = 15.0


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For `preexec_fn`: have the kernel SIGTERM the child when its parent dies.

    A demo or a test run that is killed outright (SIGKILL, OOM) cannot clean up;
    without this its brokers and servers would linger on their ports.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class BrokerStartError(RuntimeError):
    """The broker process exited or never started listening."""


@dataclass(frozen=True, slots=True)
class LocalBroker:
    host: str
    port: int
    kind: str
    mqtt_v5: bool
    workdir: Path
    pid: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, also where /usr/sbin is not on PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def broker_limits() -> str:
    """What any of our brokers takes at most: a packet carrying the largest legitimate
    message (a full presence batch, `shared.presence.MAX_PACKET_BYTES`); a client
    sending a larger one is disconnected before its payload is read."""
    return f"max_packet_size {MAX_PACKET_BYTES}"


def render_plain_config(*, port: int, workdir: Path, extra: str = "") -> str:
    """A loopback-only listener; anonymous access, since only this host can reach it."""
    return "\n".join(
        [
            "per_listener_settings true",
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            broker_limits(),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            extra,
            "",
        ]
    )


def wait_until_listening(host: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerStartError(f"broker exited with code {process.returncode} at startup")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise BrokerStartError(f"broker did not listen on {host}:{port} within {STARTUP_TIMEOUT_S}s")


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it lingers: never leave a broker behind."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def launch_broker(command: list[str], *, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a broker process in its own session, tied to our life, and wait until it
    listens on `port`; a broker that dies or never listens is stopped and reported."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent
        )
    try:
        wait_until_listening("127.0.0.1", port, process)
    except BrokerStartError:
        stop_process(process)
        raise
    return process


def start_mosquitto(
    *,
    workdir: Path,
    port: int | None = None,
    config_text: str | None = None,
) -> tuple[LocalBroker, subprocess.Popen[bytes]]:
    binary = mosquitto_binary()
    if binary is None:
        raise BrokerStartError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    port = port or free_port()
    config_path = workdir / "mosquitto.conf"
    # Stay the invoking user: Mosquitto started as root would switch to the `mosquitto`
    # user, which clears the parent-death signal, and could not read the private files.
    config = config_text or render_plain_config(port=port, workdir=workdir)
    config_path.write_text(f"user {getpass.getuser()}\n{config}")
    process = launch_broker(
        [binary, "-c", str(config_path)], port=port, log_path=workdir / "mosquitto.log"
    )
    return LocalBroker("127.0.0.1", port, "mosquitto", True, workdir, process.pid), process


def start_amqtt(
    *, workdir: Path, port: int | None = None
) -> tuple[LocalBroker, subprocess.Popen[bytes]]:
    port = port or free_port()
    process = launch_broker(
        [sys.executable, "-m", "provisioning.amqtt_broker", "--port", str(port)],
        port=port,
        log_path=workdir / "amqtt.log",
    )
    return LocalBroker("127.0.0.1", port, "amqtt", False, workdir, process.pid), process


@contextlib.contextmanager
def local_broker(
    *, prefer_mosquitto: bool = True, workdir: Path | None = None
) -> Iterator[LocalBroker]:
    """Run a broker for the duration of the block; always stopped on the way out."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="vitrina-broker-"))
            )
        if prefer_mosquitto and mosquitto_binary() is not None:
            broker, process = start_mosquitto(workdir=workdir)
        else:
            broker, process = start_amqtt(workdir=workdir)
        stack.callback(stop_process, process)
        yield broker
