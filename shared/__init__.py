"""Wire contracts shared by the gateway (`edge`) and the orchestrator (`cloud`).

Everything both sides must agree on lives here and nowhere else: topic names,
the versioned presence/status/config schemas, and pseudonymization. This package
imports nothing of ours, so the gateway can install it without the cloud stack.
"""

from shared.errors import ContractError, describe_validation_error
from shared.identifiers import IdentifierKind, canonical_identifier, is_randomized_mac
from shared.presence import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    decode_presence_batch,
    encode_presence_batch,
    make_event_id,
)
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.status import GatewayConfig, GatewayStatus, decode_gateway_config, decode_gateway_status
from shared.topics import (
    PRESENCE_SHARED_SUBSCRIPTION,
    TopicAddress,
    TopicChannel,
    gateway_topic,
    parse_topic,
)

__all__ = [
    "MAX_BATCH_EVENTS",
    "MAX_PAYLOAD_BYTES",
    "PRESENCE_SHARED_SUBSCRIPTION",
    "SCHEMA_VERSION",
    "ContractError",
    "GatewayConfig",
    "GatewayStatus",
    "IdentifierKind",
    "PresenceBatch",
    "PresenceEvent",
    "PseudonymScope",
    "Pseudonymizer",
    "TenantKey",
    "TopicAddress",
    "TopicChannel",
    "Transition",
    "canonical_identifier",
    "decode_gateway_config",
    "decode_gateway_status",
    "decode_presence_batch",
    "describe_validation_error",
    "encode_presence_batch",
    "gateway_topic",
    "is_randomized_mac",
    "make_event_id",
    "parse_topic",
]
