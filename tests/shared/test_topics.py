import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.topics import (
    OCCUPANCY_SHARED_SUBSCRIPTION,
    PRESENCE_SHARED_SUBSCRIPTION,
    TopicAddress,
    TopicChannel,
    gateway_topic,
    parse_topic,
)


def test_topic_round_trip() -> None:
    topic = gateway_topic("acme", "store-7", "gw_1", TopicChannel.PRESENCE)
    assert topic == "vitrina/v1/acme/store-7/gw_1/presence"
    address = parse_topic(topic)
    assert address == TopicAddress("acme", "store-7", "gw_1", TopicChannel.PRESENCE)
    assert address.topic == topic


@pytest.mark.parametrize("channel", list(TopicChannel))
def test_every_channel_round_trips(channel: TopicChannel) -> None:
    assert parse_topic(gateway_topic("a", "b", "c", channel)).channel is channel


def test_shared_subscription_matches_presence_topics_only() -> None:
    assert PRESENCE_SHARED_SUBSCRIPTION == "$share/orchestrator/vitrina/v1/+/+/+/presence"
    assert OCCUPANCY_SHARED_SUBSCRIPTION == "$share/orchestrator/vitrina/v1/+/+/+/occupancy"


@pytest.mark.parametrize("tenant", ["", "Acme", "a+b", "a#", "a/b", "x" * 65])
def test_builder_rejects_bad_segments_without_echoing_them(tenant: str) -> None:
    with pytest.raises(
        ContractError, match=r"^tenant is not a valid id: use 1-64 characters"
    ) as caught:
        gateway_topic(tenant, "s", "g", "presence")
    assert tenant == "" or tenant not in str(caught.value)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("vitrina/v2/a/b/c/presence", "is not of the form"),
        ("vitrina/v1/a/b/presence", "is not of the form"),
        ("vitrina/v1/a/b/c/presence/extra", "is not of the form"),
        (
            "vitrina/v1/a/b/c/telemetry",
            r"channel is unknown \(expected presence, status, config, occupancy\)",
        ),
        ("vitrina/v1/a/B/c/status", "^store is not a valid id"),
    ],
)
def test_parser_rejects_foreign_topics(topic: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_topic(topic)


SEGMENTS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.lists(
    st.text(max_size=70) | SEGMENTS | st.sampled_from(["vitrina", "v1", "presence", "+", "#"]),
    max_size=8).map("/".join))
def test_any_topic_parses_to_an_address_or_a_contract_error(topic: str) -> None:
    """A topic comes from the broker as any publisher wrote it: it names a gateway
    whose topic is exactly it, or it is refused with a ContractError."""
    try:
        address = parse_topic(topic)
    except ContractError:
        return
    assert address.topic == topic


@settings(max_examples=100, deadline=None)
@given(SEGMENTS, SEGMENTS, SEGMENTS, st.sampled_from(list(TopicChannel)))
def test_every_valid_topic_round_trips(
    tenant: str, store: str, gateway: str, channel: TopicChannel,
) -> None:
    assert parse_topic(gateway_topic(tenant, store, gateway, channel)) == TopicAddress(
        tenant, store, gateway, channel)
