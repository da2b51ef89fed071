import pytest

from shared.errors import ContractError
from shared.topics import (
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


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ("", "tenant '' is not a valid id"),
        ("Acme", "tenant 'Acme' is not a valid id"),
        ("a+b", r"tenant 'a\+b' is not a valid id"),
        ("a#", "tenant 'a#' is not a valid id"),
        ("a/b", "tenant 'a/b' is not a valid id"),
        ("x" * 65, "is not a valid id"),
    ],
)
def test_builder_rejects_bad_segments(tenant: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        gateway_topic(tenant, "s", "g", "presence")


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("vitrina/v2/a/b/c/presence", "is not of the form"),
        ("vitrina/v1/a/b/presence", "is not of the form"),
        ("vitrina/v1/a/b/c/presence/extra", "is not of the form"),
        ("vitrina/v1/a/b/c/telemetry", "channel 'telemetry' is unknown"),
        ("vitrina/v1/a/B/c/status", "store 'B' is not a valid id"),
    ],
)
def test_parser_rejects_foreign_topics(topic: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_topic(topic)
