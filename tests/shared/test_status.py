import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


#: Any JSON value, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)
VALID_STATUS = json.loads(GatewayStatus(
    tenant="acme", store="s1", gateway="g1", online=True, sent_at=datetime.now(UTC),
    uptime_s=1.0, queue_depth=0, sources={"ble": SourceHealth(alive=True, frames=1, errors=0)},
).model_dump_json())
VALID_CONFIG = json.loads(GatewayConfig(
    version=3, exit_after_s=90, zones=[ZoneThreshold(zone="counter", min_rssi=-55)],
    active_key_id="k2",
).model_dump_json())


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=1024))
def test_any_bytes_decode_to_a_status_or_a_contract_error(payload: bytes) -> None:
    for decode in (decode_gateway_status, decode_gateway_config):
        with contextlib.suppress(ContractError):
            decode(payload)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(VALID_STATUS)), st.sampled_from(sorted(VALID_CONFIG)),
       json_values)
def test_any_field_changed_to_any_json_is_decoded_or_refused_cleanly(
    status_field: str, config_field: str, value: object,
) -> None:
    """What a gateway (or the cloud) could put in a field: the decoder answers with the
    model or a ContractError naming the field, never anything else."""
    for decode, document in ((decode_gateway_status, {**VALID_STATUS, status_field: value}),
                             (decode_gateway_config, {**VALID_CONFIG, config_field: value})):
        with contextlib.suppress(ContractError):
            decode(json.dumps(document).encode())


def test_a_config_names_at_most_a_hundred_zones() -> None:
    zones = [{"zone": f"z{i}", "min_rssi": -50} for i in range(101)]
    with pytest.raises(ContractError, match="zones: List should have at most 100 items"):
        decode_gateway_config(json.dumps({"schema_version": "1.0", "zones": zones}).encode())
