"""SMS through an HTTP provider, behind a small interface, with delivery receipts.

`SmsProvider` is what the rest of delivery needs from any SMS gateway: send one text,
and turn the provider's delivery-receipt webhook into a `DeliveryReceipt` after checking
that the provider really sent it. `TwilioSms` implements it for Twilio's Messages API
(form-encoded POST with HTTP Basic auth; receipts signed with X-Twilio-Signature), the
most widely copied shape among SMS providers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import requests
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from cloud.channels.push import SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy, parse_retry_after, send_with_retries

logger = logging.getLogger(__name__)

#: E.164: a plus, a non-zero country code digit, at most 15 digits in all.
E164_RE = re.compile(r"\+[1-9]\d{6,14}")
#: Providers split long texts into segments and refuse bodies past 1600 characters.
MAX_BODY_CHARS = 1600
#: Twilio error codes that mean the number will never take our texts (the customer sent
#: STOP, or it is a landline): forget the number for SMS.
DEAD_NUMBER_CODES = frozenset({21610, 21614})
#: Receipt statuses after which no other receipt follows.
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed"})


class InvalidReceiptError(ValueError):
    """The webhook is not a genuine, well-formed delivery receipt."""


@dataclass(frozen=True, slots=True)
class SmsMessage:
    to: str
    body: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    provider_message_id: str
    #: queued, sending, sent, delivered, undelivered, failed.
    status: str
    error_code: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


class SmsProvider(Protocol):
    def send(self, message: SmsMessage) -> SendResult:
        """Send one text; never raises for a provider or network error."""
        ...

    def parse_receipt(self, url: str, form: Mapping[str, str], signature: str) -> DeliveryReceipt:
        """Check and parse a receipt webhook; raises InvalidReceiptError."""
        ...


class TwilioSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr
    from_number: str = Field(pattern=r"^\+[1-9]\d{6,14}$")
    #: Where the provider posts delivery receipts (the orchestrator's public webhook).
    status_callback_url: HttpUrl | None = None
    base_url: HttpUrl = HttpUrl("https://api.twilio.com")
    timeout_s: float = Field(default=10.0, gt=0)


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """Twilio's webhook signature: HMAC-SHA1 over the URL and the sorted form fields."""
    payload = url + "".join(f"{key}{form[key]}" for key in sorted(form))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def check_message(message: SmsMessage) -> str | None:
    """Why the provider would refuse this text, or None."""
    if not E164_RE.fullmatch(message.to):
        return "recipient is not an E.164 number"
    if not message.body or len(message.body) > MAX_BODY_CHARS:
        return f"body must be 1-{MAX_BODY_CHARS} characters"
    return None


class TwilioSms:
    """`SmsProvider` for Twilio's Messages API (and providers that copy it)."""

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        base = str(settings.base_url).rstrip("/")
        self._url = f"{base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._session = requests.Session()
        self._session.auth = (settings.account_sid, settings.auth_token.get_secret_value())

    def send(self, message: SmsMessage) -> SendResult:
        form = {"To": message.to, "From": self.settings.from_number, "Body": message.body}
        if self.settings.status_callback_url is not None:
            form["StatusCallback"] = str(self.settings.status_callback_url)
        try:
            response = self._session.post(self._url, data=form, timeout=self.settings.timeout_s)
        except requests.Timeout:
            return SendResult(token=message.to, ok=False, error_code="DEADLINE_EXCEEDED")
        except requests.RequestException as exc:
            logger.warning("SMS provider unreachable: %s", exc)
            return SendResult(token=message.to, ok=False, error_code="UNAVAILABLE")
        return self._result(message.to, response)

    def _result(self, to: str, response: requests.Response) -> SendResult:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code in (200, 201):
            sid = body.get("sid")
            return SendResult(token=to, ok=True, provider_message_id=str(sid) if sid else None)
        code = body.get("code")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code == 429:
            return SendResult(
                token=to, ok=False, error_code="QUOTA_EXCEEDED", retry_after_s=retry_after
            )
        if response.status_code in (401, 403):
            return SendResult(token=to, ok=False, error_code="UNAUTHENTICATED")
        if response.status_code >= 500:
            return SendResult(
                token=to, ok=False, error_code="UNAVAILABLE", retry_after_s=retry_after
            )
        if code in DEAD_NUMBER_CODES:
            return SendResult(token=to, ok=False, error_code="UNREGISTERED", permanent=True)
        logger.warning("SMS refused: HTTP %s code %s", response.status_code, code)
        return SendResult(token=to, ok=False, error_code="INVALID_ARGUMENT", permanent=True)

    def parse_receipt(self, url: str, form: Mapping[str, str], signature: str) -> DeliveryReceipt:
        expected = twilio_signature(self.settings.auth_token.get_secret_value(), url, form)
        if not hmac.compare_digest(expected, signature):
            raise InvalidReceiptError("X-Twilio-Signature does not match")
        if form.get("AccountSid") != self.settings.account_sid:
            raise InvalidReceiptError("receipt is for another account")
        sid, status = form.get("MessageSid"), form.get("MessageStatus")
        if not sid or not status:
            raise InvalidReceiptError("receipt lacks MessageSid or MessageStatus")
        return DeliveryReceipt(
            provider_message_id=sid, status=status, error_code=form.get("ErrorCode") or None
        )

    def close(self) -> None:
        self._session.close()


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
