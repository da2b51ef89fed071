"""What the benches that run `vitrina-cloud worker` processes share."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence

#: `vitrina-cloud` as this interpreter runs it (no console script needed on the PATH).
CLOUD_COMMAND = [sys.executable, "-c", "from cloud.cli import main; main()"]
#: A worker finishes its batch on SIGTERM; one that takes longer than this is killed.
STOP_TIMEOUT_S = 30


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all, then wait for each, killing what does not end in time."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
