"""Gateways' health history: a sample per gateway and 5 minutes (the newest heartbeat of
the slot, the deepest outbox it saw), kept for the retention; rates per source from one
sample to the next, agent restarts included; and the alerts read from it all."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from cloud.db import session_scope
from cloud.presence.crud import health_history, purge_health_history, upsert_gateway_status
from cloud.presence.health import health_alerts, health_points
from cloud.presence.models import GatewayHealth, GatewayHealthSample
from shared.status import GatewayStatus, SourceHealth
from tests.cloud.factories import START


def heartbeat(tenant: str, at: datetime, *, uptime_s: float, frames: int, online: bool = True,
              restarts: int = 0, **figures: Any) -> GatewayStatus:
    return GatewayStatus(
        tenant=tenant, store="s1", gateway="g1", online=online, sent_at=at, uptime_s=uptime_s,
        sources={"ble": SourceHealth(alive=True, frames=frames, errors=0, restarts=restarts)},
        **figures)


def test_heartbeats_are_kept_one_per_slot_for_the_retention(engine: Engine, tenant: str
                                                            ) -> None:
    reports = [
        heartbeat(tenant, START, uptime_s=1000, frames=100, queue_depth=50, cpu_percent=4.0),
        heartbeat(tenant, START + timedelta(seconds=60), uptime_s=1060, frames=130,
                  queue_depth=10, cpu_percent=3.5, memory_bytes=52_000_000,
                  temperature_c=48.2, disk_free_bytes=2**33),
        # a late retained copy of an older heartbeat, and the last will: neither is a sample
        heartbeat(tenant, START + timedelta(seconds=30), uptime_s=1030, frames=115),
        heartbeat(tenant, START + timedelta(seconds=400), uptime_s=0, frames=0, online=False),
        heartbeat(tenant, START + timedelta(seconds=600), uptime_s=1600, frames=430,
                  restarts=1),
        # the agent restarted in between: its counters start again
        heartbeat(tenant, START + timedelta(seconds=900), uptime_s=100, frames=50),
    ]
    with session_scope(engine) as session:
        for report in reports:
            upsert_gateway_status(session, status=report, received_at=report.sent_at)
        session.commit()
        samples = health_history(session, tenant=tenant, store="s1", gateway="g1",
                                 since=START - timedelta(hours=1))
        points = health_points(samples)
        assert [point.slot - START for point in points] == [
            timedelta(0), timedelta(minutes=10), timedelta(minutes=15)]
        first = points[0]
        assert first.sent_at == START + timedelta(seconds=60)  # the newest of its slot
        assert (first.queue_depth, first.queue_depth_max) == (10, 50)
        assert (first.cpu_percent, first.memory_bytes, first.temperature_c) == (
            3.5, 52_000_000, 48.2)
        assert first.disk_free_bytes == 2**33
        assert first.sources["ble"].frames_per_min is None  # nothing to count from
        assert points[1].sources["ble"].frames_per_min == round(300 / 540 * 60, 1)
        assert points[1].sources["ble"].restarts == 1
        assert points[2].sources["ble"].frames_per_min == 30.0  # 50 frames in its 100 s

        assert purge_health_history(session, before=START + timedelta(minutes=5)) == 1
        session.commit()
        kept = health_history(session, tenant=tenant, store="s1", gateway="g1",
                              since=START - timedelta(hours=1))
    assert [sample.slot - START for sample in kept] == [timedelta(minutes=10),
                                                        timedelta(minutes=15)]


def sample(at: datetime, **fields: Any) -> GatewayHealthSample:
    values: dict[str, Any] = {"tenant": "t", "store": "s1", "gateway": "g1", "slot": at,
                              "sent_at": at, "uptime_s": 3600.0, "sources": {}}
    return GatewayHealthSample(**(values | fields))


def test_alerts_read_the_newest_report_and_the_last_hour() -> None:
    now = START + timedelta(hours=2)
    ble = {"alive": True, "frames": 10, "errors": 0, "restarts": 2}
    samples = [
        sample(now - timedelta(minutes=50), dropped=0, cpu_percent=85.0,
               sources={"ble": ble}),
        sample(now - timedelta(minutes=20), dropped=40, cpu_percent=95.0, uptime_s=5400.0,
               sources={"ble": ble | {"restarts": 5}}),
    ]
    current = GatewayHealth(
        tenant="t", store="s1", gateway="g1", online=True,
        status_sent_at=now - timedelta(seconds=20), received_at=now, queue_depth=4_200,
        sources={"ble": {"alive": False, "frames": 10, "errors": 3, "restarts": 5,
                         "last_error": "no advert for 60 s: scanning restarted"}},
        temperature_c=82.5, disk_free_bytes=100 * 2**20, config_refused_version=3,
        config_refused_reason="active key id 'k9' is not provisioned")
    alerts = health_alerts(current, samples, now=now)
    assert [(alert.code, alert.severity) for alert in alerts] == [
        ("source_down", "critical"), ("events_dropped", "critical"),
        ("source_restarts", "warning"), ("backlog", "warning"), ("hot", "warning"),
        ("disk_low", "warning"), ("cpu_busy", "warning"), ("config_refused", "warning")]
    messages = {alert.code: alert.message for alert in alerts}
    assert messages["source_down"] == ("source ble is not running: no advert for 60 s: "
                                       "scanning restarted")
    assert messages["source_restarts"] == "source ble restarted 3 time(s) in the last hour"
    assert messages["events_dropped"] == ("the outbox was full and dropped 40 events in the "
                                          "last hour")
    assert messages["cpu_busy"] == "the agent used 90 % of a core on average over the last hour"

    quiet = GatewayHealth(tenant="t", store="s1", gateway="g1", online=True,
                          status_sent_at=now - timedelta(minutes=10), received_at=now)
    assert [alert.code for alert in health_alerts(quiet, [], now=now)] == ["silent"]
    gone = GatewayHealth(tenant="t", store="s1", gateway="g1", online=False,
                         status_sent_at=now, received_at=now,
                         sources={"ble": {"alive": False}})
    assert [alert.code for alert in health_alerts(gone, [], now=now)] == ["offline"]
