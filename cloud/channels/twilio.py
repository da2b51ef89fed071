"""Twilio's Messages API (form-encoded POST with HTTP Basic auth; delivery receipts
signed with X-Twilio-Signature), the most widely copied shape among SMS providers: the
`SmsProvider` the SMS channel sends through (`cloud.channels.sms`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping

import requests
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from cloud.channels.base import DeliveryReceipt, InvalidReceiptError
from cloud.channels.results import SendResult
from cloud.channels.retry import parse_retry_after
from cloud.channels.sms_message import SmsMessage

logger = logging.getLogger(__name__)

#: Twilio error codes that mean the number will never take our texts (the customer sent
#: STOP, or it is a landline): forget the number for SMS.
DEAD_NUMBER_CODES = frozenset({21610, 21614})


class TwilioSettings(BaseModel):
    """An SMS provider speaking Twilio's Messages API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$",
                             description="The provider account's id (AC...).")
    auth_token: SecretStr = Field(
        description="The account's auth token (also checks receipts' signatures).")
    from_number: str = Field(pattern=r"^\+[1-9]\d{6,14}$",
                             description="The sending number, E.164.")
    status_callback_url: HttpUrl | None = Field(
        default=None,
        description="Where the provider posts delivery receipts (the orchestrator's public "
        "webhook, `<public base URL>/receipts/sms`).",
        json_schema_extra={"unset": "no receipts: texts stay `sent`, never `delivered`."})
    base_url: HttpUrl = Field(default=HttpUrl("https://api.twilio.com"),
                              description="The provider's API (a local server in tests).")
    timeout_s: float = Field(default=10.0, gt=0,
                             description="How long the provider may take to answer.")


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """Twilio's webhook signature: HMAC-SHA1 over the URL and the sorted form fields."""
    payload = url + "".join(f"{key}{form[key]}" for key in sorted(form))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


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
        # As bytes: a header may carry any character, which compare_digest refuses as text.
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
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


