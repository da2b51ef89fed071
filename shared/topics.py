"""MQTT topic names: `vitrina/v1/{tenant}/{store}/{gateway}/{channel}`.

Built and parsed in one place so a gateway and a worker can never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from shared.errors import SEGMENT_RULE, ContractError

TOPIC_ROOT = "vitrina/v1"

#: Identifier segments are restricted so they can never contain MQTT wildcards,
#: separators or anything that needs escaping in a URL or a log line.
SEGMENT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

#: Orchestrator workers share this subscription, so adding a worker adds capacity.
PRESENCE_SHARED_SUBSCRIPTION = f"$share/orchestrator/{TOPIC_ROOT}/+/+/+/presence"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/+/status"
#: Occupancy estimates (aggregates, no identifiers) go to the same shared group.
OCCUPANCY_SHARED_SUBSCRIPTION = f"$share/orchestrator/{TOPIC_ROOT}/+/+/+/occupancy"


class TopicChannel(StrEnum):
    PRESENCE = "presence"
    STATUS = "status"
    CONFIG = "config"
    #: People estimated per zone and minute: counts only, never an identifier.
    OCCUPANCY = "occupancy"


@dataclass(frozen=True, slots=True)
class TopicAddress:
    tenant: str
    store: str
    gateway: str
    channel: TopicChannel

    @property
    def topic(self) -> str:
        return gateway_topic(self.tenant, self.store, self.gateway, self.channel)

    def check_sender(self, what: str, *, tenant: str, store: str, gateway: str) -> None:
        """A message must name the gateway whose topic it came on, so one gateway's
        credentials cannot speak for another; ContractError otherwise."""
        if (tenant, store, gateway) != (self.tenant, self.store, self.gateway):
            raise ContractError(f"{what} names a different gateway than its topic")


def validate_segment(name: str, value: str) -> str:
    """Return `value` if it is a valid tenant/store/gateway id, else raise ContractError."""
    if not SEGMENT_PATTERN.fullmatch(value):
        raise ContractError(f"{name} is not a valid id: {SEGMENT_RULE}")
    return value


def gateway_topic(tenant: str, store: str, gateway: str, channel: TopicChannel | str) -> str:
    """The topic a gateway publishes (presence, status, occupancy) or listens on (config)."""
    channel = TopicChannel(channel)
    validate_segment("tenant", tenant)
    validate_segment("store", store)
    validate_segment("gateway", gateway)
    return f"{TOPIC_ROOT}/{tenant}/{store}/{gateway}/{channel.value}"


def parse_topic(topic: str) -> TopicAddress:
    """Split a concrete topic into its parts; raise ContractError on anything else."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise ContractError(
            f"topic is not of the form {TOPIC_ROOT}/<tenant>/<store>/<gateway>/<channel>"
        )
    tenant, store, gateway, channel = parts[2:]
    try:
        parsed_channel = TopicChannel(channel)
    except ValueError:
        known = ", ".join(c.value for c in TopicChannel)
        raise ContractError(f"topic channel is unknown (expected {known})") from None
    return TopicAddress(
        tenant=validate_segment("tenant", tenant),
        store=validate_segment("store", store),
        gateway=validate_segment("gateway", gateway),
        channel=parsed_channel,
    )
