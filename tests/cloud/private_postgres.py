"""A PostgreSQL server of a test's own, for tests that stop and restart it.

The shared server must never be restarted under other tests, so a throwaway cluster is
initialised in a temporary directory (fsync off: it is thrown away) and controlled with
pg_ctl. As root, the server runs as the `postgres` user, which PostgreSQL requires.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from provisioning.local_broker import free_port

BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _bin(name: str) -> str:
    for directory in BIN_CANDIDATES:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the PostgreSQL server package")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass(frozen=True, slots=True)
class PrivatePostgres:
    data: Path
    port: int
    #: Addresses it listens on, comma-separated (more than loopback: reached from other
    #: network namespaces, each connection trusted as on loopback).
    listen: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args]),
            check=True, capture_output=True,
        )

    def start(self) -> None:
        self._ctl(
            "-l", str(self.data / "server.log"),
            "-o", f"-p {self.port} -k {self.data} -c listen_addresses='{self.listen}' "
                  "-c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


@contextlib.contextmanager
def private_postgres(*, listen: str = "127.0.0.1", trust: str | None = None
                     ) -> Iterator[PrivatePostgres]:
    """A throwaway cluster on `listen`; `trust` (a CIDR network) is let in without a
    password, as loopback is."""
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="vitrina-pg-"))
    data = workdir / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    try:
        with _cluster(data, listen=listen, trust=trust) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _cluster(data: Path, *, listen: str, trust: str | None) -> Iterator[PrivatePostgres]:
    subprocess.run(
        _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                      "--no-sync"]),
        check=True, capture_output=True,
    )
    if trust is not None:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {trust} trust\n")
    server = PrivatePostgres(data, free_port(), listen)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
