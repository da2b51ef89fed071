from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scapy.utils import RawPcapWriter

from edge.captures import DEMO_CAPTURE, GARBAGE_FRAMES_CAPTURE, NOT_A_CAPTURE, TRUNCATED_CAPTURE
from edge.cli import main
from edge.outbox import Outbox, read_stats
from edge.settings import get_settings, load_settings
from provisioning.local_broker import LocalBroker, free_port
from shared.status import GatewayStatus, SourceHealth, decode_gateway_status
from tests.edge.cli import EXAMPLE, expected_event_ids, run_cli, start_cli, write_config
from tests.edge.mqtt import Collector

SUMMARY_LINE = re.compile(r"  (\S.*?)\s{2,}(\S.*)")


def parse_summary(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()
    assert lines[0] == "replay summary"
    summary = {}
    for line in lines[1:]:
        match = SUMMARY_LINE.fullmatch(line)
        assert match is not None, line
        summary[match.group(1)] = match.group(2)
    return summary


@pytest.fixture(autouse=True)
def fresh_settings_cache() -> None:
    get_settings.cache_clear()


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.startswith("OK: demo/store-1/gw-1")


def test_check_config_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('gateway = "gw-1"', 'gateway = "GW 1"')
                   .replace("exit_after_s = 120.0", "exit_after_s = -1"))
    assert main(["check-config", "--config", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "identity.gateway: " in out
    assert "tracker.exit_after_s: Input should be greater than 0" in out
    assert "4190e298" not in out  # the key never shows


def test_replay_publishes_everything_and_prints_a_summary(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port)
    expected = expected_event_ids(load_settings(config), [DEMO_CAPTURE])
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    result = run_cli("replay", "--config", config, "--pcap", DEMO_CAPTURE, "--max-speed")
    assert result.returncode == 0, result.stderr
    summary = parse_summary(result.stdout)
    assert summary["events"].startswith(f"{len(expected)} (enter")
    assert summary["published"].startswith(f"{len(expected)} events")
    assert summary["drops"] == "0"
    assert summary["still queued"] == "0"
    assert (summary["files"], summary["rejected frames"], summary["salvaged frames"]) == (
        "1", "0", "0")
    assert int(summary["frames"]) > int(summary["sightings"]) > len(expected)
    assert "x (sightings per event)" in summary["reduction ratio"]
    assert collector.wait_for(lambda c: len(c.presence_event_ids()) == len(expected))
    assert sorted(collector.presence_event_ids()) == sorted(expected)
    for line in result.stderr.splitlines():
        json.loads(line)  # structured logs only
    status = run_cli("status", "--config", config, "--json")
    report = json.loads(status.stdout)
    assert report["queue_depth"] == 0
    assert report["published_total"] == len(expected)
    assert report["last_status"]["online"] is False
    collector.close()


def test_replay_without_a_broker_keeps_events_and_says_so(
    mqtt_namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, tenant=mqtt_namespace, port=free_port())
    result = run_cli("replay", "--config", config, "--pcap", DEMO_CAPTURE, "--max-speed",
                     "--drain-timeout", "1", "--quiet")
    assert result.returncode == 1
    assert "still in the outbox" in result.stderr
    assert "broker not reachable; retrying" in result.stderr
    status = run_cli("status", "--config", config)
    assert status.returncode == 0
    depth = next(line for line in status.stdout.splitlines() if line.startswith("queue depth"))
    assert int(depth.split()[-1]) == len(expected_event_ids(load_settings(config),
                                                              [DEMO_CAPTURE]))


@pytest.mark.parametrize(
    ("capture", "message"),
    [
        (TRUNCATED_CAPTURE,
         "malformed-truncated.pcap: truncated after 9 frames (record 9 data is truncated)"),
        (NOT_A_CAPTURE,
         "malformed-not-a-capture.pcap: not a pcap or pcapng file (unknown magic number)"),
        (None, "empty.pcap: empty file"),
    ],
    ids=["truncated", "not-a-capture", "empty"],
)
def test_replay_of_an_unreadable_capture_exits_5_and_says_how_far_it_got(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path, capture: Path | None, message: str
) -> None:
    if capture is None:
        capture = tmp_path / "empty.pcap"
        capture.write_bytes(b"")
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port)
    result = run_cli("replay", "--config", config, "--pcap", DEMO_CAPTURE, capture,
                     "--max-speed", "--quiet")
    assert result.returncode == 5, result.stderr
    assert f"cannot read capture {message}\n" in result.stderr
    summary = parse_summary(result.stdout)
    assert summary["files"] == "2 (1 could not be read)"
    read = 9 if capture == TRUNCATED_CAPTURE else 0
    assert summary["frames"] == str(1041 + read)  # the frames before the damage count
    assert summary["rejected frames"] == "0"  # a file's damage is not a frame's
    assert summary["still queued"] == "0"  # what could be read was published
    replay = last_heartbeat(config)["sources"]["replay"]  # as the cloud was told
    assert (replay["files_failed"], replay["errors"], replay["frames"]) == (1, 0, 1041 + read)
    assert replay["last_error"] == message


def test_replay_counts_broken_frames_apart_from_files_and_exits_0(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A readable capture with broken frames in it: the frames are rejected and counted,
    the file is not a failure (it was read to its end), and the replay succeeds."""
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port)
    result = run_cli("replay", "--config", config, "--pcap", DEMO_CAPTURE,
                     GARBAGE_FRAMES_CAPTURE, "--max-speed", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "cannot read capture" not in result.stderr
    summary = parse_summary(result.stdout)
    assert (summary["files"], summary["frames"], summary["rejected frames"]) == (
        "2", str(1041 + 6), "6")
    replay = last_heartbeat(config)["sources"]["replay"]
    assert (replay["files_failed"], replay["errors"], replay["last_error"]) == (0, 6, None)
    assert main(["status", "--config", str(config)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("source replay"))
    assert line.endswith("frames=1047 errors=6 restarts=0")  # no file failure to show


def test_status_shows_file_failures_scan_modes_and_errors_per_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, tenant="t1", port=free_port())
    status = GatewayStatus(
        tenant="t1", store="store-1", gateway="gw-1", online=False, sent_at=datetime.now(UTC),
        sources={
            "replay": SourceHealth(alive=False, frames=9, errors=0, files_failed=1,
                                   last_error="a.pcap: truncated after 9 frames (...)"),
            "ble": SourceHealth(alive=True, frames=5, errors=0, mode="active",
                                degraded="passive scanning unavailable, scanning actively"),
        },
    )
    outbox = Outbox(tmp_path / "outbox.db", max_events=10)
    outbox.record_status(status.model_dump_json())
    outbox.close()
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert ("source replay     alive=False frames=9 errors=0 restarts=0 files_failed=1\n"
            "  last error: a.pcap: truncated after 9 frames (...)\n") in out
    assert ("source ble        alive=True frames=5 errors=0 restarts=0 mode=active\n"
            "  degraded: passive scanning unavailable, scanning actively\n") in out


def last_heartbeat(config: Path) -> dict[str, Any]:
    """The last status the agent recorded (and published) before it stopped."""
    _stats, status = read_stats(load_settings(config).outbox.path)
    assert status is not None
    heartbeat: dict[str, Any] = json.loads(status)
    return heartbeat


def test_replay_names_an_unsupported_link_type(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    ethernet = tmp_path / "ethernet.pcap"
    writer = RawPcapWriter(str(ethernet), linktype=1)
    writer.write_header(None)
    for index in range(3):
        writer.write_packet(bytes(60), sec=1_709_373_600 + index, usec=0)
    writer.close()
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port)
    result = run_cli("replay", "--config", config, "--pcap", ethernet, "--max-speed", "--quiet")
    assert result.returncode == 5, result.stderr
    assert "cannot read capture ethernet.pcap: link type 1 is not supported" in result.stderr
    summary = parse_summary(result.stdout)
    assert summary["unsupported"] == "3 (link type 1: 3)"
    assert summary["rejected frames"] == "0"
    assert "malformed" not in result.stderr


def test_replay_rejects_missing_files_and_bad_configs(tmp_path: Path) -> None:
    assert run_cli("replay", "--config", EXAMPLE, "--pcap", tmp_path / "nope.pcap").returncode == 2
    assert run_cli("status", "--config", tmp_path / "missing.toml").returncode == 2


def test_run_stops_cleanly_on_sigterm(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port)
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    agent = start_cli("run", "--config", config, stderr=tmp_path / "agent.log")

    def statuses() -> list[bool]:
        return [decode_gateway_status(m.payload).online for m in collector.snapshot()
                if m.topic.endswith("/status")]

    assert collector.wait_for(lambda c: True in statuses(), 15)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(15) == 0
    assert collector.wait_for(lambda c: statuses()[-1] is False)
    assert "agent stopped" in (tmp_path / "agent.log").read_text()
    collector.close()
