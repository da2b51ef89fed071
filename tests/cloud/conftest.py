"""Fixtures for the orchestrator: migrated databases and a recording push sender."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine

from cloud.db import make_engine, migrate
from cloud.delivery.push import PushMessage, SendResult


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def tenant(mqtt_namespace: str) -> str:
    return mqtt_namespace


class RecordingSender:
    """A PushSender that accepts everything except tokens listed as dead (Google's
    servers are the one thing these tests do not reach)."""

    def __init__(self, dead_tokens: Sequence[str] = ()) -> None:
        self.sent: list[PushMessage] = []
        self.dead = set(dead_tokens)
        self._lock = threading.Lock()

    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        results = []
        with self._lock:
            for message in messages:
                if message.token in self.dead:
                    results.append(SendResult(
                        token=message.token, ok=False, error_code="UNREGISTERED", permanent=True
                    ))
                    continue
                self.sent.append(message)
                results.append(SendResult(
                    token=message.token, ok=True,
                    provider_message_id=f"projects/p/messages/{len(self.sent)}",
                ))
        return results


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()
