"""Which group of a scenario a customer is in: its holdout, and its A/B variant. Stable:
the same customer lands in the same group on every worker and every run."""

from __future__ import annotations

import hashlib

from cloud.scenarios.spec import ScenarioSpec


def bucket(*parts: object) -> int:
    """A stable number in [0, 10000) for holdout and A/B assignment: the same customer
    lands in the same group of a scenario on every worker and every run."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def assign_variant(spec: ScenarioSpec, tenant: str, customer_id: int) -> str | None:
    if not spec.variants:
        return None
    total = sum(variant.weight for variant in spec.variants)
    point = bucket(tenant, spec.key, customer_id, "variant") * total // 10_000
    for variant in spec.variants:
        if point < variant.weight:
            return variant.key
        point -= variant.weight
    return spec.variants[-1].key


def in_holdout(spec: ScenarioSpec, tenant: str, customer_id: int) -> bool:
    return bucket(tenant, spec.key, customer_id, "holdout") < spec.holdout_percent * 100
