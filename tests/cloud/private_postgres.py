"""A PostgreSQL server of the tests' own: the suite's (`tests.conftest.postgres_server`),
and one for each test that stops and restarts it (the suite's must never be restarted
under other tests).

A throwaway cluster is initialised in a temporary directory and controlled with pg_ctl.
Nothing in it has to survive a crash of the machine, so it does not wait for the disk:
fsync and synchronous commit are off, which makes creating and dropping a database per
test (a checkpoint each) and every commit cost a fraction of what they cost on a
durable server. Where memory-backed /dev/shm has room, the cluster lives there. As root,
the server runs as the `postgres` user, which PostgreSQL requires.
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
#: Memory-backed, when it has room for a cluster and a few hundred small databases.
IN_MEMORY = Path("/dev/shm")
IN_MEMORY_NEEDED = 2 * 1024**3
#: Settings for a server whose data is thrown away (see the module docstring), and room
#: for the connections of two test processes with the services they start.
THROWAWAY_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off",
                      "max_connections=300")


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

    @property
    def admin_dsn(self) -> str:
        """The libpq address of its `postgres` database (`tests.support.postgres`)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args]),
            check=True, capture_output=True,
        )

    def start(self) -> None:
        self._ctl(
            "-l", str(self.data / "server.log"),
            "-o", f"-p {self.port} -k {self.data} -c listen_addresses='{self.listen}' "
            + " ".join(f"-c {setting}" for setting in THROWAWAY_SETTINGS),
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
    workdir = Path(tempfile.mkdtemp(prefix="vitrina-pg-", dir=_room()))
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


def _room() -> Path | None:
    """`IN_MEMORY` when it has room, else the default temporary directory (None)."""
    try:
        free = shutil.disk_usage(IN_MEMORY).free
    except OSError:
        return None
    return IN_MEMORY if free >= IN_MEMORY_NEEDED else None


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
