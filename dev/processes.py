"""Child processes that never outlive the program that started them (the demo, the
developer environment).

Each child runs in its own session, so Ctrl-C reaches only the parent, which then
stops the children in reverse order (SIGTERM, then SIGKILL). On Linux the kernel
is also asked to kill a child if the parent itself dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.local_broker import die_with_parent

#: A child gets this long to shut down cleanly before it is killed.
STOP_GRACE_S = 8.0


@dataclass
class Supervisor:
    """Starts children, pipes their output through `on_line`, and stops them all."""

    on_line: Callable[[str, str], None]
    log_dir: Path
    children: list[tuple[str, subprocess.Popen[str]]] = field(default_factory=list)
    #: Each child's first line of output that is a JSON object: the local provider
    #: servers announce where they listen (and their credentials) in one.
    _announcements: dict[int, queue.Queue[str]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            list(command),
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.children.append((name, process))
        self._announcements[process.pid] = queue.Queue(maxsize=1)
        threading.Thread(target=self._pump, args=(name, process), daemon=True).start()
        return process

    def _pump(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        announcement = self._announcements[process.pid]
        with open(self.log_dir / f"{name}.log", "a", encoding="utf-8") as log:
            for line in process.stdout:
                if announcement.empty() and line.startswith("{"):
                    announcement.put(line.rstrip("\n"))
                log.write(line)
                log.flush()
                self.on_line(name, line.rstrip("\n"))

    def announcement(self, process: subprocess.Popen[str], *, timeout: float) -> str:
        """The child's first line of output that is a JSON object, waited for: a server
        that prints where it listens has started once it has said so (a warning its
        libraries print first is passed over). Raises TimeoutError otherwise."""
        try:
            return self._announcements[process.pid].get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"process {process.pid} did not say where it listens within "
                               f"{timeout:.0f}s (log in {self.log_dir}/)") from None

    def stop_all(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.children):
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.children.clear()


@contextlib.contextmanager
def supervised(on_line: Callable[[str, str], None], log_dir: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(on_line=on_line, log_dir=log_dir)
    try:
        yield supervisor
    finally:
        supervisor.stop_all()
