"""In-call retries of transient provider errors, shared by every channel.

A send call retries only what may succeed shortly (503, 500, 429, timeouts), with
exponential backoff plus jitter so that many workers hitting the same outage do not come
back in lockstep, and never sooner than the provider's Retry-After. A Retry-After longer
than `max_inline_wait_s` is not slept through: the result carries it so that the durable
queue (outside this package) reschedules the message instead of blocking a worker; nor is
a wait that would end past the send's deadline (`cloud.channels.inflight`).

Each result returned carries the earlier tries of its message (`SendResult.earlier`), so
that every provider call of the send goes on the message's record.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from cloud.channels.results import SendResult


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: Total tries per message, the first one included.
    attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    #: Random extra wait in [0, jitter_s]: spreads retries of concurrent workers.
    jitter_s: float = 0.5
    #: A worker sleeps through a Retry-After up to this long; longer waits go back to the queue.
    max_inline_wait_s: float = 30.0


DEFAULT_RETRY = RetryPolicy()
#: For callers (tests, the demo) that want one try and the raw outcome.
NO_RETRY = RetryPolicy(attempts=1)

SendOnce = Callable[[Sequence[int]], Mapping[int, SendResult]]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _pending_transient(results: Mapping[int, SendResult]) -> list[int]:
    return [index for index, result in results.items() if result.transient]


def send_with_retries(
    send_once: SendOnce,
    indices: Sequence[int],
    policy: RetryPolicy = DEFAULT_RETRY,
    *,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[int, SendResult]:
    """Call `send_once(pending)` until no transient failure is left, the policy gives up
    or the next try would start after `deadline` (a `clock()` time).

    `send_once` gets the indices still to send and returns a result for each of them.
    The returned mapping holds the last result of every index, with the earlier ones in
    its `earlier`.
    """
    final: dict[int, SendResult] = {}
    pending: list[int] = list(indices)
    backoff = wait_exponential_jitter(
        multiplier=policy.initial_backoff_s, max=policy.max_backoff_s, jitter=policy.jitter_s
    )

    def attempt() -> list[int]:
        nonlocal pending
        outcome = send_once(pending)
        for index, result in outcome.items():
            before = final.get(index)
            final[index] = result if before is None else result.after(before.history())
        pending = _pending_transient(outcome)
        return pending

    def hinted_wait(state: RetryCallState) -> float:
        return max((final[i].retry_after_s or 0.0 for i in pending), default=0.0)

    def wait(state: RetryCallState) -> float:
        return max(backoff(state), hinted_wait(state))

    def stop(state: RetryCallState) -> bool:
        return (
            stop_after_attempt(policy.attempts)(state)
            or hinted_wait(state) > policy.max_inline_wait_s
            or (deadline is not None and clock() + state.upcoming_sleep >= deadline)
        )

    retrying = Retrying(
        stop=stop,
        wait=wait,
        retry=retry_if_result(bool),
        sleep=sleep,
        retry_error_callback=lambda _state: pending,
    )
    retrying(attempt)
    return final
