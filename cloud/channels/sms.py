"""SMS: texts to the customer's own phone number, through an HTTP provider.

`SmsProvider` is what the channel needs from any SMS gateway: send one text, and turn
the provider's delivery-receipt callback into a `DeliveryReceipt` after checking that
the provider really sent it (`TwilioSms` implements it). Receipts come later, by
callback to `/receipts/sms`: an accepted text is "sent" until one says delivered or
failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from cloud.channels.base import (
    CapDefault,
    ChannelAdapter,
    ContentForm,
    DeliveryReceipt,
    DeploymentSender,
    Outbound,
    ProfileAddress,
    ReceiptChannel,
    Recipient,
    SenderEnvironment,
    TemplateMeasure,
)
from cloud.channels.results import SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy, send_with_retries
from cloud.channels.sms_message import SmsMessage
from cloud.channels.twilio import TwilioSettings, TwilioSms

logger = logging.getLogger(__name__)

NAME = "sms"
#: E.164: a plus, a non-zero country code digit, at most 15 digits in all.
E164_RE = re.compile(r"\+[1-9]\d{6,14}")
#: Providers split long texts into segments and refuse bodies past 1600 characters.
MAX_BODY_CHARS = 1600


class SmsProvider(Protocol):
    def send(self, message: SmsMessage) -> SendResult:
        """Send one text; never raises for a provider or network error."""
        ...

    def parse_receipt(self, url: str, form: Mapping[str, str], signature: str) -> DeliveryReceipt:
        """Check and parse a receipt webhook; raises InvalidReceiptError."""
        ...


def check_message(message: SmsMessage) -> str | None:
    """Why the provider would refuse this text, or None."""
    if not E164_RE.fullmatch(message.to):
        return "recipient is not an E.164 number"
    if not message.body or len(message.body) > MAX_BODY_CHARS:
        return f"body must be 1-{MAX_BODY_CHARS} characters"
    return None


class SmsSender:
    """Delivers a batch of texts through one provider, retrying what is transient."""

    def __init__(self, provider: SmsProvider, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.provider = provider
        self._retry = retry

    def deliver(self, messages: Sequence[SmsMessage]) -> list[SendResult]:
        """One result per message, in order. Never raises for a per-number error."""
        results: dict[int, SendResult] = {}
        sendable: list[int] = []
        for index, message in enumerate(messages):
            problem = check_message(message)
            if problem is None:
                sendable.append(index)
                continue
            logger.warning("SMS %s not sent: %s", message.idempotency_key, problem)
            results[index] = SendResult(
                token=message.to, ok=False, error_code="INVALID_ARGUMENT", permanent=True
            )

        def send_once(pending: Sequence[int]) -> dict[int, SendResult]:
            return {index: self.provider.send(messages[index]) for index in pending}

        results.update(send_with_retries(send_once, sendable, self._retry))
        return [results[index] for index in range(len(messages))]


class SmsChannel(ChannelAdapter[TwilioSettings, SmsMessage], ReceiptChannel[TwilioSettings]):
    name = NAME
    consent = NAME
    provider = "sms"
    form = ContentForm.TEXT
    measures = frozenset({TemplateMeasure.SMS_SEGMENTS})
    address = ProfileAddress("phone")
    settings_model = TwilioSettings
    unconfigured = "no SMS provider: texts are not sent"
    signature_header = "X-Twilio-Signature"
    # Customers put up with very few texts a week from a shop.
    default_cap = CapDefault(max=2, per=timedelta(days=7))

    def payload(self, outbound: Outbound, recipient: Recipient) -> SmsMessage | None:
        if not recipient.address:
            return None
        return SmsMessage(to=recipient.address, body=outbound.part("text", outbound.body),
                          idempotency_key=outbound.idempotency_key)

    def open_sender(
        self, settings: TwilioSettings, environment: SenderEnvironment
    ) -> DeploymentSender[SmsMessage]:
        url = self.receipt_url(settings, environment.public_base_url)
        provider = TwilioSms(settings.model_copy(update={"status_callback_url": url}))
        return DeploymentSender(SmsSender(provider).deliver, provider.close)

    def receipt_url(self, settings: TwilioSettings, public_base_url: str) -> str:
        """Receipts come back to this API unless the settings name another address."""
        if settings.status_callback_url is not None:
            return str(settings.status_callback_url)
        return f"{public_base_url.rstrip('/')}/receipts/{NAME}"

    def parse_receipt(
        self, settings: TwilioSettings, *, url: str, form: Mapping[str, str], signature: str
    ) -> DeliveryReceipt:
        provider = TwilioSms(settings)
        try:
            return provider.parse_receipt(url, form, signature)
        finally:
            provider.close()
