"""A gateway's health over time, and the alerts read from it.

The history (`GatewayHealthSample`, a row per gateway and 5 minutes) holds counters as
the agent reports them: totals since the agent started. Rates are worked out here from
one sample to the next (frames per minute per source); an agent that restarted between
two samples starts its counters again, and its rate is counted from its start.

Alerts are judgements of the newest report and the last hour of samples, each with a
code that docs/operations.md ("Gateway health and alerts") explains:

- `offline` (critical): the gateway said it was going, or the broker published its last will;
- `silent` (critical): it says online, but no heartbeat arrived for `SILENT_AFTER`;
- `source_down` (critical): a capture source is not running;
- `source_restarts` (warning): a source restarted in the last hour (BLE scan watchdog,
  Wi-Fi socket reopened, hostapd reattached);
- `events_dropped` (critical): the outbox was full and dropped events in the last hour;
- `backlog` (warning): `BACKLOG_EVENTS` or more events wait in the outbox;
- `hot` (warning, critical from `HOT_CRITICAL_C`): the board is at `HOT_C` or warmer;
- `disk_low` (warning, critical under `DISK_CRITICAL_BYTES`): little room for the outbox;
- `cpu_busy` (warning): the agent averaged `BUSY_CPU_PERCENT` of a core over the hour;
- `config_refused` (warning): the gateway refused the cloud's config and keeps the last good one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cloud.examples import example
from cloud.presence.models import (
    HEALTH_SLOT_S,
    GatewayHealth,
    GatewayHealthPublic,
    GatewayHealthSample,
)

#: As the live page has it: three minutes without a heartbeat is no heartbeat.
SILENT_AFTER = timedelta(minutes=3)
ALERT_WINDOW = timedelta(hours=1)
BACKLOG_EVENTS = 1_000
#: A Raspberry Pi starts to throttle its CPU at 80 °C, and harder at 85 °C.
HOT_C = 80.0
HOT_CRITICAL_C = 85.0
DISK_WARNING_BYTES = 256 * 1024 * 1024
DISK_CRITICAL_BYTES = 32 * 1024 * 1024
BUSY_CPU_PERCENT = 80.0


class SourcePoint(BaseModel):
    alive: bool
    frames: int
    errors: int
    restarts: int
    #: Frames per minute since the sample before (None for the first of a series).
    frames_per_min: float | None = None


class HealthPoint(BaseModel):
    """One slot of the history: the last heartbeat in it."""

    slot: datetime
    sent_at: datetime
    software_version: str
    uptime_s: float
    queue_depth: int
    queue_depth_max: int
    published: int
    dropped: int
    rejected_frames: int
    devices_tracked: int
    config_version: int | None
    cpu_percent: float | None
    memory_bytes: int | None
    temperature_c: float | None
    disk_free_bytes: int | None
    sources: dict[str, SourcePoint]


class HealthAlert(BaseModel):
    code: str
    severity: Literal["warning", "critical"]
    message: str


class GatewayHealthHistory(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"store": "madrid-centro", "gateway": "gw-entrance", "current": None,
         "since": "2026-12-06T10:00:00Z", "slot_s": 300, "retention_days": 14, "points": [],
         "alerts": [{"code": "queue_growing", "severity": "warning",
                     "message": "the outbox grew for 30 minutes: is the broker reachable?"}]},
    ))

    store: str
    gateway: str
    #: The newest report (null: the gateway never reported).
    current: GatewayHealthPublic | None
    since: datetime
    slot_s: int = HEALTH_SLOT_S
    retention_days: int
    points: list[HealthPoint]
    alerts: list[HealthAlert]


def _elapsed(before: GatewayHealthSample, after: GatewayHealthSample) -> tuple[float, bool]:
    """Seconds between two samples, and whether the agent restarted in between."""
    seconds = (after.sent_at - before.sent_at).total_seconds()
    restarted = after.uptime_s < before.uptime_s or after.uptime_s < seconds
    return (min(seconds, after.uptime_s) if restarted else seconds), restarted


def _growth(before: int | None, after: int, restarted: bool) -> int:
    """How much a counter grew: all of it when the agent restarted in between."""
    if before is None or restarted or after < before:
        return after
    return after - before


def health_points(samples: Sequence[GatewayHealthSample]) -> list[HealthPoint]:
    points: list[HealthPoint] = []
    previous: GatewayHealthSample | None = None
    for sample in samples:
        elapsed, restarted = (0.0, False) if previous is None else _elapsed(previous, sample)
        sources: dict[str, SourcePoint] = {}
        for name, figures in (sample.sources or {}).items():
            frames = int(figures.get("frames", 0))
            rate = None
            if previous is not None and elapsed > 0:
                before = (previous.sources or {}).get(name, {}).get("frames")
                rate = round(_growth(before, frames, restarted) / elapsed * 60, 1)
            sources[name] = SourcePoint(alive=bool(figures.get("alive")), frames=frames,
                                        errors=int(figures.get("errors", 0)),
                                        restarts=int(figures.get("restarts", 0)),
                                        frames_per_min=rate)
        figures = {name: getattr(sample, name) for name in HealthPoint.model_fields
                   if name != "sources"}
        points.append(HealthPoint(**figures, sources=sources))
        previous = sample
    return points


def _over_window(samples: Sequence[GatewayHealthSample], name: str, now: datetime,
                 source: str | None = None) -> int:
    """How much a counter grew over the last hour of samples, agent restarts included."""
    recent = [sample for sample in samples if sample.sent_at >= now - ALERT_WINDOW]
    total = 0
    previous: GatewayHealthSample | None = None
    for sample in recent:
        value = _value(sample, name, source)
        if previous is not None:
            _, restarted = _elapsed(previous, sample)
            total += _growth(_value(previous, name, source), value, restarted)
        previous = sample
    return total


def _value(sample: GatewayHealthSample, name: str, source: str | None) -> int:
    if source is None:
        return int(getattr(sample, name))
    return int((sample.sources or {}).get(source, {}).get(name, 0))


def health_alerts(current: GatewayHealth | None, samples: Sequence[GatewayHealthSample],
                  *, now: datetime) -> list[HealthAlert]:
    """What deserves attention now (see the module docstring), most severe first."""
    if current is None:
        return []
    alerts: list[HealthAlert] = []

    def add(code: str, severity: Literal["warning", "critical"], message: str) -> None:
        alerts.append(HealthAlert(code=code, severity=severity, message=message))

    last = f"{current.status_sent_at:%Y-%m-%d %H:%M} UTC"
    if not current.online:
        add("offline", "critical", f"the gateway went offline at {last} (it stopped, or the "
            "broker lost it and published its last will)")
    elif now - current.status_sent_at > SILENT_AFTER:
        add("silent", "critical", f"no heartbeat since {last} although the gateway last said "
            "it was online")
    sources: dict[str, Any] = current.sources or {}
    for name, figures in sorted(sources.items()):
        if current.online and not figures.get("alive"):
            error = figures.get("last_error")
            add("source_down", "critical", f"source {name} is not running"
                + (f": {error}" if error else ""))
        restarts = _over_window(samples, "restarts", now, name)
        if restarts:
            add("source_restarts", "warning",
                f"source {name} restarted {restarts} time(s) in the last hour")
    dropped = _over_window(samples, "dropped", now)
    if dropped:
        add("events_dropped", "critical", f"the outbox was full and dropped {dropped} events "
            "in the last hour")
    if current.queue_depth >= BACKLOG_EVENTS:
        add("backlog", "warning", f"{current.queue_depth} events wait in the outbox: the "
            "broker is not taking them as fast as they come")
    if current.temperature_c is not None and current.temperature_c >= HOT_C:
        add("hot", "critical" if current.temperature_c >= HOT_CRITICAL_C else "warning",
            f"the board is at {current.temperature_c:g} °C: it slows its CPU down from "
            f"{HOT_C:g} °C")
    if current.disk_free_bytes is not None and current.disk_free_bytes < DISK_WARNING_BYTES:
        add("disk_low",
            "critical" if current.disk_free_bytes < DISK_CRITICAL_BYTES else "warning",
            f"{current.disk_free_bytes // (1024 * 1024)} MiB free for the outbox")
    busy = [sample.cpu_percent for sample in samples
            if sample.cpu_percent is not None and sample.sent_at >= now - ALERT_WINDOW]
    if busy and sum(busy) / len(busy) >= BUSY_CPU_PERCENT:
        add("cpu_busy", "warning", f"the agent used {sum(busy) / len(busy):.0f} % of a core "
            "on average over the last hour")
    if current.config_refused_version is not None:
        add("config_refused", "warning", f"the gateway refused config version "
            f"{current.config_refused_version}: {current.config_refused_reason}")
    alerts.sort(key=lambda alert: alert.severity != "critical")
    return alerts
