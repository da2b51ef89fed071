"""Every delivery channel the orchestrator knows, registered in one place.

The four built in are registered here; another one is a module with its adapter and one
more line below (`register` also lets a deployment's own code or a test add one at run
time). Everything that validates a channel name or a consent kind (templates, scenario
definitions, consent answers, settings) asks here, so a registered channel is accepted
everywhere at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator

from cloud.channels.base import CHANNEL_NAME_PATTERN, ChannelAdapter, ChannelName
from cloud.channels.email import EmailChannel
from cloud.channels.push import PushChannel
from cloud.channels.sms import SmsChannel
from cloud.channels.web_push import WebPushChannel
from cloud.suggest import did_you_mean

#: A consent kind that is not a channel: using in-store presence for marketing at all.
LOCATION_MARKETING = "location_marketing"

AnyAdapter = ChannelAdapter[Any, Any]

_ADAPTERS: dict[str, AnyAdapter] = {}


class UnknownChannelError(KeyError):
    """No channel of that name is registered."""


def register(adapter: AnyAdapter) -> None:
    """Make `adapter`'s channel known everywhere; a name may be registered once."""
    if not re.fullmatch(CHANNEL_NAME_PATTERN, adapter.name):
        raise ValueError(f"channel name {adapter.name!r} must match {CHANNEL_NAME_PATTERN}")
    if adapter.name in _ADAPTERS or adapter.name == LOCATION_MARKETING:
        raise ValueError(f"channel {adapter.name!r} is registered already")
    _ADAPTERS[adapter.name] = adapter


def unregister(name: str) -> None:
    """Forget a channel registered at run time (a test's own)."""
    _ADAPTERS.pop(name, None)


def adapter_for(name: str) -> AnyAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise UnknownChannelError(name) from None


def adapters() -> list[AnyAdapter]:
    """Every registered channel, in the order registered."""
    return list(_ADAPTERS.values())


def channel_names() -> list[str]:
    return list(_ADAPTERS)


def consent_kinds() -> list[str]:
    """What a customer can agree to: each channel's consent, and location marketing."""
    kinds = dict.fromkeys(adapter.consent for adapter in _ADAPTERS.values())
    return [*kinds, LOCATION_MARKETING]


def registered_channel(name: str) -> str:
    """Pydantic validator: `name` is a registered channel."""
    if name not in _ADAPTERS:
        raise ValueError(f"unknown channel {name!r}{did_you_mean(name, _ADAPTERS)}; "
                         f"known: {', '.join(_ADAPTERS)}")
    return name


def registered_consent(kind: str) -> str:
    """Pydantic validator: `kind` is something a customer can consent to."""
    known = consent_kinds()
    if kind not in known:
        raise ValueError(f"unknown consent {kind!r}; known: {', '.join(known)}")
    return kind


#: A channel name that must be registered (checked when a body or setting is read).
Channel = Annotated[ChannelName, AfterValidator(registered_channel)]
#: A consent kind: a registered channel's consent, or location marketing.
ConsentKind = Annotated[str, AfterValidator(registered_consent)]

for _builtin in (PushChannel(), WebPushChannel(), EmailChannel(), SmsChannel()):
    register(_builtin)
