"""Writing the gateway's secret-bearing files (bundle, key store, config) safely.

Each holds a tenant key or a login, so it is written readable by its owner only, and
through a temporary file renamed into place: a crash or a full disk leaves the old file or
the new one, never half of each.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Owner read/write only: the agent's user, nobody else on the device.
PRIVATE_FILE_MODE = 0o600


def write_private(path: Path, text: str, *, mode: int = PRIVATE_FILE_MODE,
                  group: int | None = None,
                  check: Callable[[Path], object] | None = None) -> None:
    """Replace `path` with `text` atomically, with `mode` (and owned by `group` if given,
    for the agent's group to read); `check` may refuse the new file (by raising) before
    it replaces the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if group is not None:
            os.chown(temporary, -1, group)
        os.chmod(temporary, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if check is not None:
            check(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
