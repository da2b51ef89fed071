import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.identifiers import IdentifierKind, wifi_identifier
from shared.presence import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    decode_presence_batch,
    encode_presence_batch,
    make_event_id,
)
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.topics import TopicChannel, parse_topic

PSEUDONYMIZER = Pseudonymizer(TenantKey.from_text("k1", "11" * 32))
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make_event(index: int = 0, **changes: Any) -> PresenceEvent:
    pseudonym = PSEUDONYMIZER.stable(wifi_identifier(f"00:1a:11:00:00:{index % 256:02x}"))
    fields: dict[str, Any] = {
        "event_id": make_event_id(
            tenant="acme",
            store="s1",
            gateway="g1",
            pseudonym=pseudonym,
            transition=Transition.ENTER,
            first_seen=START,
            sequence=index,
        ),
        "tenant": "acme",
        "store": "s1",
        "gateway": "g1",
        "pseudonym": pseudonym,
        "key_id": "k1",
        "scope": PseudonymScope.STABLE,
        "kind": IdentifierKind.WIFI_PROBE,
        "randomized": False,
        "transition": Transition.ENTER,
        "zone": "entrance",
        "rssi": -61.5,
        "first_seen": START,
        "last_seen": START + timedelta(seconds=4),
        "dwell_s": 4.0,
        "sightings": 3,
    }
    fields.update(changes)
    return PresenceEvent(**fields)


def make_batch(count: int = 2) -> PresenceBatch:
    return PresenceBatch(
        tenant="acme",
        store="s1",
        gateway="g1",
        sent_at=START,
        events=[make_event(i) for i in range(count)],
    )


def as_document(batch: PresenceBatch) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode_presence_batch(batch))
    return document


def test_batch_round_trips_through_bytes() -> None:
    batch = make_batch(3)
    assert decode_presence_batch(encode_presence_batch(batch)) == batch


def test_event_ids_are_deterministic_and_distinct() -> None:
    event = make_event(0)
    again = make_event_id(
        tenant="acme",
        store="s1",
        gateway="g1",
        pseudonym=event.pseudonym,
        transition=Transition.ENTER,
        first_seen=START,
        sequence=0,
    )
    assert event.event_id == again
    assert len({make_event(i).event_id for i in range(50)}) == 50


def test_newer_minor_version_with_unknown_fields_is_accepted() -> None:
    document = as_document(make_batch(1))
    document["schema_version"] = "1.7"
    document["future_field"] = {"anything": 1}
    document["events"][0]["future_event_field"] = "x"
    assert decode_presence_batch(json.dumps(document).encode()).events[0] == make_event(0)


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.1"])
def test_unknown_major_version_is_rejected_clearly(version: str) -> None:
    document = as_document(make_batch(1))
    document["schema_version"] = version
    with pytest.raises(
        ContractError, match=rf"schema_version {version} is not supported: this build reads 1\.x"
    ):
        decode_presence_batch(json.dumps(document).encode())


@pytest.mark.parametrize("version", [1, "1", "v1.0", None])
def test_malformed_version_is_rejected(version: object) -> None:
    document = as_document(make_batch(1))
    document["schema_version"] = version
    with pytest.raises(ContractError, match=r"schema_version must be a string 'major\.minor'"):
        decode_presence_batch(json.dumps(document).encode())


def test_missing_version_is_rejected() -> None:
    document = as_document(make_batch(1))
    del document["schema_version"]
    with pytest.raises(ContractError, match="has no schema_version"):
        decode_presence_batch(json.dumps(document).encode())


@pytest.mark.parametrize("field", ["event_id", "pseudonym", "transition", "first_seen", "rssi"])
def test_missing_event_fields_are_named(field: str) -> None:
    document = as_document(make_batch(1))
    del document["events"][0][field]
    with pytest.raises(ContractError, match=rf"events\.0\.{field}: Field required"):
        decode_presence_batch(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rssi", "strong", r"events\.0\.rssi: Input should be a valid number"),
        ("rssi", -300, r"events\.0\.rssi: Input should be greater than or equal to -127"),
        (
            "transition",
            "teleport",
            r"events\.0\.transition: Input should be 'enter', 'dwell' or 'exit'",
        ),
        ("kind", "nfc", r"events\.0\.kind: Input should be"),
        (
            "first_seen",
            "2026-11-23T10:00:00",
            r"events\.0\.first_seen: Input should have timezone info",
        ),
        ("sightings", 0, r"events\.0\.sightings: Input should be greater than or equal to 1"),
        ("pseudonym", "00:1a:11:00:00:01", r"events\.0\.pseudonym: String should match pattern"),
        (
            "zone",
            "Front Door",
            r"events\.0\.zone: not a valid id: use 1-64 characters of a-z",
        ),
    ],
)
def test_wrong_types_are_rejected_with_field_and_rule(
    field: str, value: object, message: str
) -> None:
    document = as_document(make_batch(1))
    document["events"][0][field] = value
    with pytest.raises(ContractError, match=message):
        decode_presence_batch(json.dumps(document).encode())


@pytest.mark.parametrize("field", ["pseudonym", "tenant", "zone", "kind"])
def test_error_message_never_echoes_the_offending_value(field: str) -> None:
    document = as_document(make_batch(1))
    document["events"][0][field] = "00:1a:11:00:00:01"
    with pytest.raises(ContractError) as caught:
        decode_presence_batch(json.dumps(document).encode())
    assert "00:1a:11:00:00:01" not in str(caught.value)


def test_cross_field_rules() -> None:
    with pytest.raises(ValueError, match="key_id does not match"):
        make_event(key_id="k2")
    with pytest.raises(ValueError, match="randomized address may only carry a daily pseudonym"):
        make_event(randomized=True)
    with pytest.raises(ValueError, match="last_seen is before first_seen"):
        make_event(last_seen=START - timedelta(seconds=1))


def test_batch_events_must_come_from_the_batch_gateway() -> None:
    document = as_document(make_batch(2))
    document["events"][1]["gateway"] = "g2"
    with pytest.raises(
        ContractError, match="every event must come from the batch's tenant/store/gateway"
    ):
        decode_presence_batch(json.dumps(document).encode())


def test_batch_must_come_from_the_topic_gateway() -> None:
    payload = encode_presence_batch(make_batch(1))
    assert decode_presence_batch(payload, topic=parse_topic("vitrina/v1/acme/s1/g1/presence"))
    with pytest.raises(ContractError, match="names a different gateway than its topic"):
        decode_presence_batch(payload, topic=parse_topic("vitrina/v1/acme/s1/g2/presence"))
    assert parse_topic("vitrina/v1/acme/s1/g1/presence").channel is TopicChannel.PRESENCE


def test_oversized_batches_are_rejected() -> None:
    document = as_document(make_batch(1))
    document["events"] = document["events"] * (MAX_BATCH_EVENTS + 1)
    payload = json.dumps(document).encode()
    assert len(payload) < MAX_PAYLOAD_BYTES
    with pytest.raises(
        ContractError, match=f"events: List should have at most {MAX_BATCH_EVENTS} items"
    ):
        decode_presence_batch(payload)


def test_oversized_payloads_are_rejected_before_parsing() -> None:
    with pytest.raises(ContractError, match=f"the limit is {MAX_PAYLOAD_BYTES}"):
        decode_presence_batch(b" " * (MAX_PAYLOAD_BYTES + 1))


def test_empty_batches_are_rejected() -> None:
    document = as_document(make_batch(1))
    document["events"] = []
    with pytest.raises(ContractError, match="events: List should have at least 1 item"):
        decode_presence_batch(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"{", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"[" * 100_000, "not valid UTF-8 JSON|nests too deeply"),
    ],
)
def test_non_json_payloads_are_rejected(payload: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode_presence_batch(payload)


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_fuzzed_bytes_only_ever_raise_contract_error(payload: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode_presence_batch(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.sampled_from(list(make_event(0).model_dump(mode="json"))), json_values)
def test_fuzzed_field_values_only_ever_raise_contract_error(field: str, value: object) -> None:
    document = as_document(make_batch(1))
    document["events"][0][field] = value
    with contextlib.suppress(ContractError):
        decode_presence_batch(json.dumps(document).encode())
