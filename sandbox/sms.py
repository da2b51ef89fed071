"""A local SMS provider speaking Twilio's Messages API, delivery receipts included.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form-encoded, HTTP Basic auth
with the account SID and auth token) checks the numbers and body as Twilio does and
answers 201 with the message resource, or Twilio's JSON error (`code`, `message`,
`status`). When the request names a StatusCallback, the provider later POSTs the
receipts ("sent", then "delivered" or "undelivered") there, signed with
X-Twilio-Signature, from a background thread, as the real one does.

Scripts per recipient: STOP (21610, the customer opted out), NOT_MOBILE (21614),
RATE_LIMITED (429 with Retry-After), UNAVAILABLE (503), UNDELIVERABLE (accepted, then
an "undelivered" receipt with error 30003).

    python -m sandbox.sms --port 8089   # prints {"url", "account_sid", "auth_token", "from_number"}
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

import requests

from sandbox.web import (
    Journal,
    OutcomeScript,
    Request,
    Response,
    Router,
    SandboxService,
    journal_page,
    json_response,
)

logger = logging.getLogger(__name__)

E164_RE = re.compile(r"\+[1-9]\d{6,14}")
MAX_BODY_CHARS = 1600
#: Pause before each receipt, so a test sees "queued" first, as with a real carrier.
RECEIPT_DELAY_S = 0.02


class SmsOutcome(StrEnum):
    DELIVER = "DELIVER"
    STOP = "STOP"
    NOT_MOBILE = "NOT_MOBILE"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    UNDELIVERABLE = "UNDELIVERABLE"


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    payload = url + "".join(f"{key}{form[key]}" for key in sorted(form))
    return base64.b64encode(
        hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    ).decode()


@dataclass(frozen=True, slots=True)
class SentSms:
    sid: str
    to: str
    from_number: str
    body: str
    status_callback: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    sid: str
    status: str
    http_status: int | None


class SmsSandbox(SandboxService):
    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_number: str = "+15005550006",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.from_number = from_number
        self.retry_after_s: int | None = 1
        self._outcomes = OutcomeScript(SmsOutcome.DELIVER)
        self.received: Journal[SentSms] = Journal()
        self.callbacks: Journal[CallbackAttempt] = Journal()
        self._callback_session = requests.Session()
        router = Router()
        router.add("POST", r"/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json", self._handle_send)
        router.add("GET", r"/_sandbox/messages", self._handle_list)
        super().__init__(router, host=host, port=port, name="sms")

    def stop(self) -> None:
        super().stop()
        self._callback_session.close()

    def script(
        self, number: str, *outcomes: SmsOutcome, then: SmsOutcome = SmsOutcome.DELIVER
    ) -> None:
        self._outcomes.set(number, outcomes, then)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[SentSms]:
        return self.received.wait_for(count, timeout_s, what="texts")

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.header("Authorization").partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(
            password, self.auth_token
        )

    def _handle_send(self, request: Request) -> Response:
        if not self._authorized(request) or request.params["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not E164_RE.fullmatch(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender != self.from_number:
            return _error(
                400,
                21212,
                f"The 'From' number {sender} is not a valid phone number for this account.",
            )
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        outcome = self._outcomes.next(to)
        if outcome is SmsOutcome.STOP:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        if outcome is SmsOutcome.NOT_MOBILE:
            return _error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if outcome in (SmsOutcome.RATE_LIMITED, SmsOutcome.UNAVAILABLE):
            headers = (
                {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}
            )
            if outcome is SmsOutcome.RATE_LIMITED:
                return _error(429, 20429, "Too Many Requests", headers)
            return _error(503, 20500, "Service unavailable", headers)
        sid = "SM" + secrets.token_hex(16)
        callback = form.get("StatusCallback") or None
        self.received.append(SentSms(sid, to, sender, body, callback, time.time()))
        if callback:
            final = "undelivered" if outcome is SmsOutcome.UNDELIVERABLE else "delivered"
            threading.Thread(
                target=self._send_receipts,
                args=(callback, sid, to, final),
                name="sms-receipts",
                daemon=True,
            ).start()
        return json_response(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": to,
                "from": sender,
                "body": body,
                "status": "queued",
                "num_segments": str(-(-len(body) // 153) if len(body) > 160 else 1),
                "error_code": None,
            },
        )

    def _send_receipts(self, url: str, sid: str, to: str, final: str) -> None:
        for status in ("sent", final):
            time.sleep(RECEIPT_DELAY_S)
            form = {
                "AccountSid": self.account_sid,
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "To": to,
                "From": self.from_number,
                "ApiVersion": "2010-04-01",
            }
            if status == "undelivered":
                form["ErrorCode"] = "30003"
            signature = twilio_signature(self.auth_token, url, form)
            try:
                answer = self._callback_session.post(
                    url, data=form, headers={"X-Twilio-Signature": signature}, timeout=5
                )
                self.callbacks.append(CallbackAttempt(sid, status, answer.status_code))
            except requests.RequestException as exc:
                logger.warning("status callback for %s failed: %s", sid, exc)
                self.callbacks.append(CallbackAttempt(sid, status, None))

    def _handle_list(self, request: Request) -> Response:
        return journal_page(
            request,
            self.received,
            key="messages",
            describe=lambda m: {
                "sid": m.sid,
                "to": m.to,
                "body": m.body,
                "received_at": m.received_at,
            },
        )


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    payload: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(status, payload, headers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.sms", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--from-number", default="+15005550006")
    args = parser.parse_args(argv)
    sandbox = SmsSandbox(host=args.host, port=args.port, from_number=args.from_number)
    print(
        json.dumps(
            {
                "url": sandbox.url,
                "account_sid": sandbox.account_sid,
                "auth_token": sandbox.auth_token,
                "from_number": sandbox.from_number,
            }
        ),
        flush=True,
    )
    sandbox.serve_until_terminated()
    return 0


if __name__ == "__main__":
    sys.exit(main())
