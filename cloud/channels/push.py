"""Mobile push: notifications to the app's devices through Firebase Cloud Messaging.

Addresses are the FCM registration tokens the app registered (`DeviceKind.FCM`); each
message goes to every active token of the customer and counts as sent when FCM accepts
it for any of them. FCM gives no delivery receipt: a 200 means Google took the message,
not that a phone showed it, so pushes stay "sent". A tap on the notification leads
through the tracked link when the message has one, else to the template's deep link.
"""

from __future__ import annotations

from datetime import timedelta

from cloud.channels.base import (
    CapDefault,
    ChannelAdapter,
    ContentForm,
    DeploymentSender,
    DeviceAddress,
    Outbound,
    Recipient,
    SenderEnvironment,
    TemplateMeasure,
)
from cloud.channels.fcm import MAX_BATCH, FcmSender, FcmSettings, PushMessage

NAME = "push"


class PushChannel(ChannelAdapter[FcmSettings, PushMessage]):
    name = NAME
    consent = NAME
    provider = "fcm"
    form = ContentForm.NOTIFICATION
    measures = frozenset({TemplateMeasure.NOTIFICATION_CHARS})
    address = DeviceAddress("fcm")
    settings_model = FcmSettings
    max_batch = MAX_BATCH
    # A shop's own customers tolerate a few pushes a day; past that they switch
    # notifications off, which costs every later message.
    default_cap = CapDefault(max=3, per=timedelta(days=1))
    unconfigured = ("no FCM: pushes to the shop's Android and iOS apps are not sent (they "
                    "wait in the send queue until FCM is configured or they expire)")

    def payload(self, outbound: Outbound, recipient: Recipient) -> PushMessage | None:
        if not recipient.address:
            return None
        links = outbound.links
        click = links.click if links is not None else None
        return PushMessage(
            token=recipient.address, title=outbound.part("title", outbound.title),
            body=outbound.part("body", outbound.body), idempotency_key=outbound.idempotency_key,
            image_url=outbound.content.get("image_url"),
            deep_link=outbound.content.get("deep_link") or click,
            data=outbound.data(), ttl_s=outbound.ttl_s,
        )

    def open_sender(
        self, settings: FcmSettings, environment: SenderEnvironment
    ) -> DeploymentSender[PushMessage]:
        sender = FcmSender(settings)
        return DeploymentSender(sender.send, sender.close)
