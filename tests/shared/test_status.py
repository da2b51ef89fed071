import json
from datetime import UTC, datetime

import pytest

from shared.errors import ContractError
from shared.status import (
    GatewayConfig,
    GatewayStatus,
    SourceHealth,
    ZoneThreshold,
    decode_gateway_config,
    decode_gateway_status,
)


def test_status_round_trip() -> None:
    status = GatewayStatus(
        tenant="acme",
        store="s1",
        gateway="g1",
        online=True,
        sent_at=datetime.now(UTC),
        uptime_s=12.5,
        queue_depth=3,
        sources={"ble": SourceHealth(alive=True, frames=10, errors=0)},
    )
    assert decode_gateway_status(status.model_dump_json().encode()) == status


def test_the_device_figures_of_status_1_1_are_left_out_when_absent() -> None:
    sent_at = datetime.now(UTC)
    status = GatewayStatus(tenant="acme", store="s1", gateway="g1", online=True,
                           sent_at=sent_at, cpu_percent=3.5, memory_bytes=48_000_000,
                           disk_free_bytes=2**30)
    document = json.loads(status.model_dump_json())
    assert document["schema_version"] == "1.1"
    assert (document["cpu_percent"], document["memory_bytes"]) == (3.5, 48_000_000)
    assert "temperature_c" not in document  # a board without a sensor says nothing
    assert decode_gateway_status(status.model_dump_json().encode()) == status
    # a 1.0 gateway's heartbeat reads as one without figures; a reader of 1.0 ignores them
    older = decode_gateway_status(json.dumps({
        "schema_version": "1.0", "tenant": "acme", "store": "s1", "gateway": "g1",
        "online": True, "sent_at": sent_at.isoformat()}).encode())
    assert (older.cpu_percent, older.memory_bytes, older.temperature_c) == (None, None, None)


def test_config_round_trip_and_partial_updates() -> None:
    config = GatewayConfig(
        exit_after_s=90, zones=[ZoneThreshold(zone="counter", min_rssi=-55)], active_key_id="k2"
    )
    decoded = decode_gateway_config(config.model_dump_json().encode())
    assert decoded == config
    assert decoded.rssi_floor is None  # unset fields keep the gateway's own value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"exit_after_s": -1}, r"exit_after_s: Input should be greater than 0"),
        (
            {"zones": [{"zone": "x", "min_rssi": -50, "colour": "red"}]},
            r"zones\.0\.colour: Extra inputs",
        ),
        ({"active_key_id": "Key One"}, r"active_key_id: String should match pattern"),
        ({"schema_version": "3.0"}, r"schema_version 3\.0 is not supported"),
    ],
)
def test_bad_config_is_rejected(change: dict[str, object], message: str) -> None:
    document: dict[str, object] = {"schema_version": "1.0", **change}
    with pytest.raises(ContractError, match=message):
        decode_gateway_config(json.dumps(document).encode())
