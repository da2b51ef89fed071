"""In-call retries: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence

import pytest

from cloud.channels.results import SendResult
from cloud.channels.retry import RetryPolicy, parse_retry_after, send_with_retries

POLICY = RetryPolicy(
    attempts=4, initial_backoff_s=0.1, max_backoff_s=0.4, jitter_s=0.05, max_inline_wait_s=10
)


class ScriptedProvider:
    """Answers each index from a list of outcomes, one per call, the last one for ever."""

    def __init__(self, script: Mapping[int, Sequence[SendResult]]) -> None:
        self.script = {i: list(results) for i, results in script.items()}
        self.calls: list[list[int]] = []

    def __call__(self, pending: Sequence[int]) -> dict[int, SendResult]:
        self.calls.append(list(pending))
        return {
            i: self.script[i].pop(0) if len(self.script[i]) > 1 else self.script[i][0]
            for i in pending
        }


OK = SendResult(token="t", ok=True, provider_message_id="m")
BUSY = SendResult(token="t", ok=False, error_code="UNAVAILABLE")
DEAD = SendResult(token="t", ok=False, error_code="UNREGISTERED", permanent=True)
AUTH = SendResult(token="t", ok=False, error_code="UNAUTHENTICATED")


def quota(seconds: float) -> SendResult:
    return SendResult(token="t", ok=False, error_code="QUOTA_EXCEEDED", retry_after_s=seconds)


def test_only_transient_failures_are_sent_again() -> None:
    provider = ScriptedProvider({0: [OK], 1: [DEAD], 2: [BUSY, OK], 3: [AUTH]})
    sleeps: list[float] = []

    results = send_with_retries(provider, [0, 1, 2, 3], POLICY, sleep=sleeps.append)

    assert provider.calls == [[0, 1, 2, 3], [2]]
    assert results == {0: OK, 1: DEAD, 2: OK.after((BUSY,)), 3: AUTH}
    assert len(sleeps) == 1


def test_backoff_grows_with_jitter_and_stops_after_the_attempts() -> None:
    provider = ScriptedProvider({0: [BUSY]})
    sleeps: list[float] = []

    results = send_with_retries(provider, [0], POLICY, sleep=sleeps.append)

    assert len(provider.calls) == POLICY.attempts
    assert results[0].history() == (BUSY,) * POLICY.attempts  # every try on the record
    assert len(sleeps) == POLICY.attempts - 1
    for sleep, base in zip(sleeps, [0.1, 0.2, 0.4], strict=True):
        assert base <= sleep <= base + POLICY.jitter_s


def test_retry_after_outweighs_a_shorter_backoff() -> None:
    provider = ScriptedProvider({0: [quota(3), OK], 1: [BUSY, OK]})
    sleeps: list[float] = []

    results = send_with_retries(provider, [0, 1], POLICY, sleep=sleeps.append)

    assert sleeps == [3.0]
    assert results == {0: OK.after((quota(3),)), 1: OK.after((BUSY,))}


def test_no_try_starts_past_the_deadline() -> None:
    provider = ScriptedProvider({0: [BUSY, OK]})
    clock = [100.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    # The first backoff (0.1-0.15 s) would end past the deadline: no second try.
    results = send_with_retries(
        provider, [0], POLICY, sleep=sleep, deadline=100.1, clock=lambda: clock[0]
    )
    assert results[0] == BUSY
    assert len(provider.calls) == 1

    # With time for it, the retry goes, and both tries are on the result.
    provider = ScriptedProvider({0: [BUSY, OK]})
    results = send_with_retries(
        provider, [0], POLICY, sleep=sleep, deadline=clock[0] + 5, clock=lambda: clock[0]
    )
    assert results[0].history() == (BUSY, OK)


def test_retry_after_beyond_the_inline_limit_is_handed_back() -> None:
    provider = ScriptedProvider({0: [quota(60), OK]})
    sleeps: list[float] = []

    results = send_with_retries(provider, [0], POLICY, sleep=sleeps.append)

    assert sleeps == []
    assert results[0].retry_after_s == 60
    assert results[0].transient


def test_an_exception_from_the_provider_is_not_swallowed() -> None:
    def broken(pending: Sequence[int]) -> dict[int, SendResult]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        send_with_retries(broken, [0], POLICY, sleep=lambda _s: None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 5 ", 5.0), (None, None), ("", None), ("soon", None), ("-3", None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    header = email.utils.formatdate(time.time() + 30, usegmt=True)

    parsed = parse_retry_after(header)

    assert parsed is not None
    assert 28 <= parsed <= 30
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
