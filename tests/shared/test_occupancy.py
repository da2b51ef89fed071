import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.occupancy import (
    MAX_ZONES,
    OccupancyMethod,
    OccupancyReport,
    ZoneOccupancy,
    decode_occupancy_report,
    encode_occupancy_report,
)
from shared.topics import TopicChannel, gateway_topic, parse_topic

MINUTE = datetime(2026, 11, 23, 10, 7, tzinfo=UTC)


def report(**changes: Any) -> OccupancyReport:
    fields: dict[str, Any] = {
        "tenant": "acme", "store": "s1", "gateway": "g1",
        "sent_at": MINUTE + timedelta(minutes=6), "window_start": MINUTE,
        "zones": [ZoneOccupancy(zone="floor", people=2.4, addresses=17, frames=120, scans=9),
                  ZoneOccupancy(zone="door", people=0.0)],
    }
    fields.update(changes)
    return OccupancyReport(**fields)


def document(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode_occupancy_report(report()))
    body.update(changes)
    return body


def test_round_trip_names_counts_only() -> None:
    original = report()
    payload = encode_occupancy_report(original)
    assert decode_occupancy_report(payload) == original
    assert set(json.loads(payload)) == {
        "schema_version", "tenant", "store", "gateway", "sent_at", "window_start", "window_s",
        "method", "zones"}
    assert set(json.loads(payload)["zones"][0]) == {"zone", "people", "addresses", "frames",
                                                    "scans"}
    assert original.method is OccupancyMethod.PROBE_RATE


def test_an_empty_minute_is_a_report() -> None:
    assert decode_occupancy_report(encode_occupancy_report(report(zones=[]))).zones == []


def test_the_topic_must_name_the_reporting_gateway() -> None:
    payload = encode_occupancy_report(report())
    own = parse_topic(gateway_topic("acme", "s1", "g1", TopicChannel.OCCUPANCY))
    other = parse_topic(gateway_topic("acme", "s1", "g2", TopicChannel.OCCUPANCY))
    assert decode_occupancy_report(payload, topic=own).gateway == "g1"
    with pytest.raises(ContractError, match="different gateway than its topic"):
        decode_occupancy_report(payload, topic=other)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window_start": "2026-11-23T10:07:30Z"}, "whole minute"),
        ({"window_s": 90}, "multiple of 60"),
        ({"window_s": 30}, "greater than or equal to 60"),
        ({"zones": [{"zone": "a", "people": 1}, {"zone": "a", "people": 2}]}, "unique"),
        ({"zones": [{"zone": "a", "people": -1}]}, "zones.0.people"),
        ({"zones": [{"zone": "A b", "people": 1}]}, "not a valid id"),
        ({"zones": [{"zone": f"z{i}", "people": 1} for i in range(MAX_ZONES + 1)]}, "zones"),
        ({"method": "camera"}, "method"),
        ({"schema_version": "2.0"}, "not supported"),
        ({"window_start": "2026-11-23T10:07:00"}, "timezone"),
    ],
)
def test_malformed_reports_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode_occupancy_report(json.dumps(document(**changes)).encode())


def test_not_a_number_is_refused() -> None:
    payload = json.dumps(document()).replace("2.4", "NaN").encode()
    with pytest.raises(ContractError, match="people"):
        decode_occupancy_report(payload)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_are_a_report_or_a_contract_error(payload: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode_occupancy_report(payload)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(document())), _json_values, max_size=9))
def test_any_report_shaped_document_is_a_report_or_a_contract_error(
    changes: dict[str, Any],
) -> None:
    with contextlib.suppress(ContractError):
        decode_occupancy_report(json.dumps(document(**changes)).encode())
