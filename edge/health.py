"""The device's own figures for the heartbeat: the agent's CPU and memory, the board's
temperature, and the room left for the outbox.

Read from the kernel without a dependency: CPU time from `os.times()` (every thread of
the process), resident memory from /proc/self/statm, temperatures from
/sys/class/thermal/thermal_zone*/temp (millidegrees; the warmest zone is reported, the
SoC's on a Raspberry Pi), free space from statvfs. What the device cannot tell is None,
and the heartbeat leaves it out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")
PROC_STATM = Path("/proc/self/statm")
#: A zone reading outside this range is a sensor that is absent or broken, not a board.
PLAUSIBLE_CELSIUS = (-40.0, 150.0)


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    cpu_percent: float | None
    memory_bytes: int | None
    temperature_c: float | None
    disk_free_bytes: int | None


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def resident_bytes(statm: Path = PROC_STATM) -> int | None:
    try:
        pages = int(statm.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def board_temperature(root: Path = THERMAL_ROOT) -> float | None:
    """The warmest thermal zone in degrees Celsius, or None without a sensor."""
    readings = []
    for zone in sorted(root.glob("thermal_zone*/temp")):
        try:
            celsius = int(zone.read_text().strip()) / 1000
        except (OSError, ValueError):
            continue  # some zones refuse reads while their device sleeps
        if PLAUSIBLE_CELSIUS[0] <= celsius <= PLAUSIBLE_CELSIUS[1]:
            readings.append(celsius)
    return round(max(readings), 1) if readings else None


def free_bytes(path: Path) -> int | None:
    """Free space for unprivileged users on the file system holding `path`."""
    for candidate in (path, *path.parents):
        try:
            figures = os.statvfs(candidate)
        except OSError:
            continue
        return figures.f_bavail * figures.f_frsize
    return None


class HealthSampler:
    """Each `sample()` reports the CPU used since the previous one (or since creation)."""

    def __init__(self, outbox_path: Path, *, thermal_root: Path = THERMAL_ROOT,
                 statm: Path = PROC_STATM) -> None:
        self.outbox_dir = outbox_path.parent
        self.thermal_root = thermal_root
        self.statm = statm
        self._wall = time.monotonic()
        self._cpu = _cpu_seconds()

    def sample(self) -> DeviceFigures:
        wall, cpu = time.monotonic(), _cpu_seconds()
        elapsed = wall - self._wall
        percent = None if elapsed <= 0 else round(max(cpu - self._cpu, 0) / elapsed * 100, 1)
        self._wall, self._cpu = wall, cpu
        return DeviceFigures(
            cpu_percent=percent, memory_bytes=resident_bytes(self.statm),
            temperature_c=board_temperature(self.thermal_root),
            disk_free_bytes=free_bytes(self.outbox_dir))
