"""Delivery channels: how a message reaches a customer.

Each channel is one adapter (`ChannelAdapter`, see `cloud.channels.base`): its consent,
its address, its template form, its settings, its payloads and sender, its receipts.
`cloud.channels.registry` registers them in one place; everything else looks a channel
up there by name:

    adapter = adapter_for(message.channel)
    payload = adapter.payload(outbound, recipient)
"""

from cloud.channels.base import (
    AddressSource,
    CapDefault,
    ChannelAdapter,
    ChannelName,
    ChannelSender,
    ContentForm,
    DeliveryReceipt,
    DeploymentSender,
    DeviceAddress,
    InvalidReceiptError,
    Outbound,
    ProfileAddress,
    ReceiptChannel,
    Recipient,
    SenderEnvironment,
    TemplateMeasure,
    TrackedLinks,
    UnsendableError,
)
from cloud.channels.registry import (
    LOCATION_MARKETING,
    Channel,
    ConsentKind,
    UnknownChannelError,
    adapter_for,
    adapters,
    channel_names,
    consent_kinds,
    register,
    unregister,
)
from cloud.channels.results import SendResult

__all__ = [
    "LOCATION_MARKETING",
    "AddressSource",
    "CapDefault",
    "Channel",
    "ChannelAdapter",
    "ChannelName",
    "ChannelSender",
    "ConsentKind",
    "ContentForm",
    "DeliveryReceipt",
    "DeploymentSender",
    "DeviceAddress",
    "InvalidReceiptError",
    "Outbound",
    "ProfileAddress",
    "ReceiptChannel",
    "Recipient",
    "SendResult",
    "SenderEnvironment",
    "TemplateMeasure",
    "TrackedLinks",
    "UnknownChannelError",
    "UnsendableError",
    "adapter_for",
    "adapters",
    "channel_names",
    "consent_kinds",
    "register",
    "unregister",
]
