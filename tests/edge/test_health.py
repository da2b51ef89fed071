"""The device's figures for the heartbeat, read from a thermal tree laid out as the kernel
lays out /sys/class/thermal and from this process's own /proc entries."""

from __future__ import annotations

import os
import time
from pathlib import Path

from edge.health import HealthSampler, board_temperature


def zone(root: Path, number: int, reading: str) -> None:
    directory = root / f"thermal_zone{number}"
    directory.mkdir(parents=True)
    (directory / "temp").write_text(reading + "\n")


def test_the_warmest_plausible_zone_is_the_board_temperature(tmp_path: Path) -> None:
    assert board_temperature(tmp_path) is None  # no sensor: left out of the heartbeat
    zone(tmp_path, 0, "48312")  # a Raspberry Pi's SoC, in millidegrees
    zone(tmp_path, 1, "not ready")  # a zone whose device sleeps
    zone(tmp_path, 2, "-273000")  # an absent sensor's placeholder
    zone(tmp_path, 3, "51950")
    assert board_temperature(tmp_path) == 52.0


def test_a_sample_reports_the_cpu_used_since_the_last(tmp_path: Path) -> None:
    zone(tmp_path / "thermal", 0, "61000")
    sampler = HealthSampler(tmp_path / "state" / "outbox.db", thermal_root=tmp_path / "thermal")
    started = sum(os.times()[:2])
    while sum(os.times()[:2]) - started < 0.1:  # a tenth of a second of CPU, however long
        pass  # the loaded machine takes to give it
    busy = sampler.sample()
    assert busy.cpu_percent is not None
    assert busy.cpu_percent >= 5
    assert busy.memory_bytes is not None
    assert busy.memory_bytes > 2**20
    assert busy.temperature_c == 61.0
    assert busy.disk_free_bytes is not None  # the outbox's directory need not exist yet
    time.sleep(0.2)
    idle = sampler.sample()
    assert idle.cpu_percent is not None
    assert idle.cpu_percent < busy.cpu_percent
