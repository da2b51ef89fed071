"""Doing something at most once per interval inside a loop that runs more often."""

from __future__ import annotations

import time


class Every:
    """Whether work done at most once per `interval_s` is due (monotonic clock): the first
    call says yes; after a yes, no until `interval_s` has passed.

        calendar = Every(3600)
        if calendar.due():
            ...
    """

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return False
        self._last = now
        return True
