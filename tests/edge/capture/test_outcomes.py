"""Reasons and the bounded identity cache."""

from __future__ import annotations

from edge.capture.outcomes import IDENTITY_CACHE_LIMIT, RejectReason, SkipReason, remember


def test_reason_values_are_unique_across_both_families() -> None:
    values = [reason.value for reason in RejectReason] + [reason.value for reason in SkipReason]
    assert len(values) == len(set(values))


def test_the_cache_never_grows_past_its_limit() -> None:
    cache: dict[bytes, str] = {}
    for number in range(IDENTITY_CACHE_LIMIT * 2 + 5):
        remember(cache, number.to_bytes(4, "big"), str(number))
        assert len(cache) <= IDENTITY_CACHE_LIMIT
    last = IDENTITY_CACHE_LIMIT * 2 + 4
    assert cache[last.to_bytes(4, "big")] == str(last)  # the newest entry is always kept
