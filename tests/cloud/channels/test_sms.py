"""SMS through TwilioSms against the local provider, receipts through a real webhook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import pytest

from cloud.channels import DeliveryReceipt, InvalidReceiptError
from cloud.channels.retry import RetryPolicy
from cloud.channels.sms import SmsSender
from cloud.channels.sms_message import SmsMessage
from cloud.channels.twilio import TwilioSettings, TwilioSms
from sandbox.sms import SmsOutcome, SmsSandbox
from sandbox.web import Journal, LocalHTTPServer, Request, Response, Router

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05)
JUAN = "+34600111222"


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    form: dict[str, str]
    signature: str


@pytest.fixture
def provider() -> Iterator[SmsSandbox]:
    with SmsSandbox() as sms:
        yield sms


@pytest.fixture
def webhook() -> Iterator[tuple[str, Journal[Webhook]]]:
    """The orchestrator's receipt endpoint, as a real HTTP server recording what came."""
    calls: Journal[Webhook] = Journal()
    server: LocalHTTPServer

    def receive(request: Request) -> Response:
        form = dict(parse_qsl(request.body.decode()))
        calls.append(
            Webhook(f"{server.url}{request.path}", form, request.header("X-Twilio-Signature"))
        )
        return Response(204)

    router = Router()
    router.add("POST", r"/v1/webhooks/sms", receive)
    server = LocalHTTPServer(router, name="webhook")
    server.start()
    yield f"{server.url}/v1/webhooks/sms", calls
    server.stop()


def twilio(
    provider: SmsSandbox, callback: str | None = None, token: str | None = None
) -> TwilioSms:
    return TwilioSms(
        TwilioSettings(
            account_sid=provider.account_sid,
            auth_token=token or provider.auth_token,
            from_number=provider.from_number,
            status_callback_url=callback,
            base_url=provider.url,
        )
    )


def text(
    to: str = JUAN, key: str = "cart-1", body: str = "15% off your washer, 24 h: shop.example/c/1"
) -> SmsMessage:
    return SmsMessage(to=to, body=body, idempotency_key=key)


def test_text_is_sent_and_receipts_verify(
    provider: SmsSandbox, webhook: tuple[str, Journal[Webhook]]
) -> None:
    url, calls = webhook
    adapter = twilio(provider, callback=url)

    [result] = SmsSender(adapter).deliver([text()])

    assert result.ok
    [sent] = provider.wait_for(1)
    assert result.provider_message_id == sent.sid
    assert (sent.to, sent.from_number, sent.status_callback) == (JUAN, provider.from_number, url)
    receipts = [adapter.parse_receipt(c.url, c.form, c.signature) for c in calls.wait_for(2)]
    assert receipts == [
        DeliveryReceipt(sent.sid, "sent"),
        DeliveryReceipt(sent.sid, "delivered"),
    ]
    assert receipts[-1].final
    assert receipts[-1].delivered


def test_undelivered_receipt_carries_the_error(
    provider: SmsSandbox, webhook: tuple[str, Journal[Webhook]]
) -> None:
    url, calls = webhook
    provider.script(JUAN, then=SmsOutcome.UNDELIVERABLE)
    adapter = twilio(provider, callback=url)

    assert SmsSender(adapter).deliver([text()])[0].ok

    last = calls.wait_for(2)[-1]
    receipt = adapter.parse_receipt(last.url, last.form, last.signature)
    assert receipt.status == "undelivered"
    assert receipt.error_code == "30003"
    assert receipt.final
    assert not receipt.delivered


def test_forged_or_tampered_receipts_are_refused(
    provider: SmsSandbox, webhook: tuple[str, Journal[Webhook]]
) -> None:
    url, calls = webhook
    adapter = twilio(provider, callback=url)
    SmsSender(adapter).deliver([text()])
    genuine = calls.wait_for(1)[0]

    with pytest.raises(InvalidReceiptError, match="Signature"):
        adapter.parse_receipt(
            genuine.url, {**genuine.form, "MessageStatus": "delivered"}, genuine.signature
        )
    with pytest.raises(InvalidReceiptError, match="Signature"):
        adapter.parse_receipt(genuine.url + "?x=1", genuine.form, genuine.signature)
    with pytest.raises(InvalidReceiptError):
        adapter.parse_receipt(genuine.url, genuine.form, "")


@pytest.mark.parametrize("outcome", [SmsOutcome.STOP, SmsOutcome.NOT_MOBILE])
def test_opted_out_or_landline_numbers_are_dead(provider: SmsSandbox, outcome: SmsOutcome) -> None:
    provider.script(JUAN, then=outcome)

    [result] = SmsSender(twilio(provider), retry=FAST_RETRY).deliver([text()])

    assert result.error_code == "UNREGISTERED"
    assert result.address_dead
    assert provider.received.snapshot() == []


def test_rate_limit_waits_for_retry_after(provider: SmsSandbox) -> None:
    provider.script(JUAN, SmsOutcome.RATE_LIMITED)
    started = time.monotonic()

    [result] = SmsSender(twilio(provider), retry=FAST_RETRY).deliver([text()])

    assert result.ok
    assert time.monotonic() - started >= 1.0


def test_outage_is_transient_after_retries(provider: SmsSandbox) -> None:
    provider.retry_after_s = None
    provider.script(JUAN, then=SmsOutcome.UNAVAILABLE)

    [result] = SmsSender(twilio(provider), retry=FAST_RETRY).deliver([text()])

    assert result.error_code == "UNAVAILABLE"
    assert result.transient


def test_wrong_credentials(provider: SmsSandbox) -> None:
    [result] = SmsSender(twilio(provider, token="0" * 32), retry=FAST_RETRY).deliver([text()])

    assert result.error_code == "UNAUTHENTICATED"
    assert not result.transient
    assert not result.permanent


def test_bad_numbers_and_bodies_never_leave(provider: SmsSandbox) -> None:
    results = SmsSender(twilio(provider)).deliver(
        [
            text(to="600111222"),
            text(key="k2", body=""),
            text(key="k3", body="x" * 1601),
            text(key="k4"),
        ]
    )

    assert [r.error_code for r in results] == ["INVALID_ARGUMENT"] * 3 + [None]
    assert len(provider.received.snapshot()) == 1


def test_unreachable_provider_is_transient(provider: SmsSandbox) -> None:
    adapter = twilio(provider)
    provider.stop()

    [result] = SmsSender(adapter, retry=RetryPolicy(attempts=1)).deliver([text()])

    assert result.error_code == "UNAVAILABLE"
    assert result.transient


def test_settings_refuse_malformed_accounts() -> None:
    with pytest.raises(ValueError, match="account_sid"):
        TwilioSettings(account_sid="nope", auth_token="t", from_number="+15005550006")
