"""The senders a delivery worker sends through: one per configured channel.

A channel whose settings are missing has no sender: its messages wait in the send queue,
retried every `cloud.leases.CONFIGURATION_BACKOFF`, until it is configured or they
expire. A caller may hand in senders of its own (a test's, or one it shares); those are
its to close.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from cloud.channels import ChannelSender, SenderEnvironment, adapter_for, adapters
from cloud.settings import Settings, is_https, needs_https

AnySender = ChannelSender[Any]


class ChannelSenders:
    """Senders by channel name; close when done (it closes those it opened)."""

    def __init__(
        self, senders: Mapping[str, AnySender] | None = None, *, owned: Mapping[str, AnySender]
        | None = None,
    ) -> None:
        """`senders` are the caller's; `owned` are closed by `close`."""
        self._owned = dict(owned or {})
        self._senders = {**self._owned, **dict(senders or {})}
        for name in self._senders:
            adapter_for(name)  # UnknownChannelError for a channel nobody registered

    @classmethod
    def open(
        cls, settings: Settings, *, engine: Engine, now: Callable[[], datetime],
        given: Mapping[str, AnySender] | None = None,
    ) -> ChannelSenders:
        """A sender for every configured channel not among `given` (the caller's own)."""
        environment = SenderEnvironment(
            engine=engine, public_base_url=settings.tracking.public_base_url, now=now,
            outbound=settings.outbound.policy(),
        )
        given = dict(given or {})
        owned: dict[str, AnySender] = {}
        try:
            for adapter in adapters():
                channel_settings = settings.channel_settings(adapter)
                if adapter.name not in given and channel_settings is not None:
                    owned[adapter.name] = adapter.open_sender(channel_settings, environment)
        except BaseException:
            for sender in owned.values():
                sender.close()
            raise
        return cls(given, owned=owned)

    def get(self, channel: str) -> AnySender | None:
        return self._senders.get(channel)

    def names(self) -> list[str]:
        return list(self._senders)

    def check_links(self, public_base_url: str) -> None:
        """Raises ValueError when a channel whose every message carries a one-click
        unsubscribe link has a sender but the links could not be https."""
        for name in self._senders:
            if adapter_for(name).needs_https_links and not is_https(public_base_url):
                raise ValueError(needs_https(name))

    def close(self) -> None:
        for sender in reversed(list(self._owned.values())):
            sender.close()
        self._owned.clear()

    def __enter__(self) -> ChannelSenders:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
