"""Requests the orchestrator sends to URLs that tenants or apps gave it: the rules they
must pass when saved and when sent (`policy`), and HTTP sessions that connect only to
the address that was checked (`http`). docs/security.md says why."""

from cloud.outbound.http import PinnedAdapter, RefusedTargetError, guarded_session
from cloud.outbound.policy import (
    RESOLVE_TIMEOUT_S,
    AllowList,
    OutboundPolicy,
    OutboundRefusedError,
    PinnedTarget,
    Rule,
    Target,
    UnresolvedHostError,
    forbidden_kind,
    read_url,
    resolve_system,
    resolve_within,
)
from cloud.outbound.refusals import count_refusal

__all__ = [
    "RESOLVE_TIMEOUT_S",
    "AllowList",
    "OutboundPolicy",
    "OutboundRefusedError",
    "PinnedAdapter",
    "PinnedTarget",
    "RefusedTargetError",
    "Rule",
    "Target",
    "UnresolvedHostError",
    "count_refusal",
    "forbidden_kind",
    "guarded_session",
    "read_url",
    "resolve_system",
    "resolve_within",
]
