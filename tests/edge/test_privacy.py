"""Raw identifiers never leave the gateway: not in MQTT payloads, logs or files.

A replay of the demo capture runs as a real `vitrina-edge` process at DEBUG level;
every MQTT message under its tenant, every line it writes and every file it leaves
behind is scanned for the identifiers the capture contains, in every spelling.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from edge.capture.replay import read_pcap_sightings
from edge.captures import (
    DEMO_ANA_INSTALL_ID,
    DEMO_CAPTURE,
    DEMO_EDDYSTONE_NAMESPACE,
    JUAN_INSTALL_ID,
)
from edge.settings import load_settings
from provisioning.local_broker import LocalBroker
from tests.edge.cli import run_cli, write_config
from tests.edge.mqtt import Collector

MAC_TEXT = re.compile(
    rb"(?i)(?<![0-9a-f])[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}(?![0-9a-f])"
)


def spellings(canonical: str) -> set[bytes]:
    """Every way a leaked identifier could be written, text and binary."""
    found = {canonical.encode()}
    kind, _, value = canonical.partition(":")
    if kind in ("wifi", "ble"):
        octets = value.split(":")
        for separator in (":", "-", ""):
            text = separator.join(octets)
            found |= {text.encode(), text.upper().encode()}
        found.add(bytes.fromhex("".join(octets)))
    elif kind == "ibeacon":
        proximity = uuid.UUID(value.rsplit(":", 2)[0])
        found |= {str(proximity).encode(), proximity.hex.encode(), proximity.bytes,
                  str(proximity).upper().encode()}
    elif kind == "eddystone":
        namespace, instance = value.split(":")
        found |= {namespace.encode(), instance.encode(), bytes.fromhex(namespace + instance)}
    elif kind == "app":
        found.add(value.encode())
    return found


def test_no_raw_identifier_in_payloads_logs_or_files(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port, level="DEBUG")
    settings = load_settings(config)
    identifiers = {
        sighting.canonical_id
        for sighting in read_pcap_sightings(DEMO_CAPTURE, beacons=settings.beacons.to_config())
    }
    kinds = {identifier.split(":")[0] for identifier in identifiers}
    assert {"wifi", "ble", "app", "ibeacon", "eddystone"} <= kinds  # the capture has them all
    forbidden = set().union(*(spellings(identifier) for identifier in identifiers))
    forbidden |= {JUAN_INSTALL_ID.encode(), DEMO_ANA_INSTALL_ID.encode(),
                  DEMO_EDDYSTONE_NAMESPACE.encode()}

    collector = Collector(broker.host, broker.port, mqtt_namespace)
    result = run_cli("replay", "--config", config, "--pcap", DEMO_CAPTURE, "--max-speed")
    assert result.returncode == 0, result.stderr
    status = run_cli("status", "--config", config, "--json")
    assert collector.wait_for(lambda c: len(c.presence_event_ids()) > 0)
    late = Collector(broker.host, broker.port, mqtt_namespace)  # retained messages too
    assert late.wait_for(lambda c: len(c.snapshot()) > 0)

    outputs: dict[str, bytes] = {
        "stdout": result.stdout.encode(),
        "stderr (logs)": result.stderr.encode(),
        "status": status.stdout.encode() + status.stderr.encode(),
    }
    for index, message in enumerate(collector.snapshot() + late.snapshot()):
        outputs[f"mqtt {message.topic} #{index}"] = message.topic.encode() + message.payload
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path != config]
    assert any(path.name == "outbox.db" for path in written)
    for path in written:
        outputs[f"file {path.name}"] = path.read_bytes()
    assert len(result.stderr.splitlines()) > 3  # the DEBUG run did log

    leaks = [
        f"{where}: {spelling!r}"
        for where, data in outputs.items()
        for spelling in forbidden
        if spelling in data or (spelling.isascii() and spelling.lower() in data.lower())
    ]
    assert leaks == []
    text_outputs = {k: v for k, v in outputs.items() if not k.startswith("file ")}
    assert [k for k, v in text_outputs.items() if MAC_TEXT.search(v)] == []
    collector.close()
    late.close()
