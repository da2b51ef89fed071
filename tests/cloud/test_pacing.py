"""`cloud.pacing.Every`: due at once, then not again until its interval has passed."""

from __future__ import annotations

import time

import pytest

from cloud.pacing import Every


def test_due_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    every = Every(1.0)
    assert every.due()
    assert not every.due()
    clock[0] = 100.9
    assert not every.due()
    clock[0] = 101.0
    assert every.due()
    clock[0] = 101.5
    assert not every.due()  # counted from the last yes, not from the start
