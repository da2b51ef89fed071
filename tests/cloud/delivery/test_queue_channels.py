"""The send queue's other channels against their local providers, on SQLite and
PostgreSQL: web push through a push service that checks VAPID and decrypts, email through
an SMTP relay (tracked links, open pixel, one-click unsubscribe), SMS through an HTTP
provider whose signed delivery receipts come back to the running API."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import col

from cloud.api import create_app
from cloud.channels import DeploymentSender
from cloud.channels.dedupe import collapse_id
from cloud.channels.retry import NO_RETRY
from cloud.channels.sms import SmsSender
from cloud.channels.smtp import EmailSender, SmtpSettings
from cloud.channels.twilio import TwilioSettings, TwilioSms
from cloud.channels.web_push import TenantWebPushSenders, tenant_vapid_keys
from cloud.db import session_scope
from cloud.delivery.senders import ChannelSenders
from cloud.delivery.worker import DeliveryWorker
from cloud.messages.models import AttemptOutcome, Message, MessageStatus
from provisioning.local_broker import free_port
from sandbox.sms import SmsOutcome, SmsSandbox, twilio_signature
from sandbox.smtp import TRY_LATER, SmtpSandbox
from sandbox.webpush import PushOutcome, WebPushSandbox
from tests.cloud.delivery.queue_helpers import (
    BASE_URL,
    NOW,
    attempts,
    device,
    message,
    new_customer,
    outgoing,
    queue,
    queue_settings,
    token_for,
)
from tests.cloud.factories import CLOCKLESS_LIMITS, LOCAL_SERVERS
from tests.cloud.running import running_api

SUBJECT = "mailto:ops@shop.example"


def test_web_push_is_encrypted_to_the_subscription_tracked_and_dead_ones_dropped(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    settings = queue_settings(tenant=tenant, database_url=migrated_url,
                              channels={"web_push": {"subject": SUBJECT}})
    with session_scope(engine) as session:
        keys = tenant_vapid_keys(session, tenant=tenant, now=NOW)  # what the shop subscribes with
        session.commit()
    web = TenantWebPushSenders(engine, subject=SUBJECT, now=lambda: NOW,
                               policy=LOCAL_SERVERS, retry=NO_RETRY,
                               limits=CLOCKLESS_LIMITS)
    with WebPushSandbox() as service:
        browser, revoked, busy = (service.subscribe(keys.application_server_key) for _ in "abc")
        service.unsubscribe(revoked)
        service.script(busy, PushOutcome.TOO_MANY_REQUESTS)
        service.retry_after_s = 60
        consent = ("web_push",)
        juan = new_customer(engine, tenant, consent=consent, web_push=[browser.to_json()])
        gone = new_customer(engine, tenant, consent=consent, web_push=[revoked.to_json()])
        later = new_customer(engine, tenant, consent=consent, web_push=[busy.to_json()])
        delivered, unsubscribed, limited = (i or 0 for i in queue(
            engine, *(
                outgoing(tenant, customer, f"web:{n}", channel="web_push",
                         data={"offer": "dryer-50"})
                for n, customer in enumerate((juan, gone, later))
            ),
        ))
        worker = DeliveryWorker(
            engine=engine, senders=ChannelSenders({"web_push": web}), settings=settings,
            rng=random.Random(3),
        )

        assert worker.run_once(NOW) == 3
        [push] = service.wait_for(1)
        assert worker.run_once(NOW + timedelta(seconds=60)) == 1
        web.close()

    row = message(engine, delivered)
    assert row.status == MessageStatus.DELIVERED  # the push service's 201 is all there is
    assert row.sent_at == row.delivered_at == NOW
    assert push.subscription_id == browser.id
    assert push.topic == collapse_id("web:0")  # a resend replaces it at the push service
    payload = push.json()
    token = token_for("web:0")
    assert payload["title"] == "20% off the dryer"
    assert payload["tag"] == collapse_id("web:0")
    assert payload["url"] == f"{BASE_URL}/c/{token}"
    assert payload["open_url"] == f"{BASE_URL}/o/{token}"
    assert payload["data"] == {"offer": "dryer-50", "message_id": str(delivered),
                               "open_url": f"{BASE_URL}/o/{token}"}
    assert message(engine, unsubscribed).status == MessageStatus.FAILED
    assert message(engine, unsubscribed).error_code == "UNREGISTERED"
    assert not device(engine, revoked.endpoint).active
    assert [a.outcome for a in attempts(engine, limited)] == [
        AttemptOutcome.TRANSIENT, AttemptOutcome.SENT,
    ]
    assert attempts(engine, limited)[0].provider == "webpush"

    # The service worker reports the click's open to open_url, as a CORS-simple request.
    app = create_app(settings, engine=engine, now=lambda: NOW + timedelta(minutes=5))
    with TestClient(app) as client:
        report = client.post(
            f"/o/{token}", content=json.dumps({"tag": payload["tag"], "opened_at": "x"}),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        assert report.status_code == 422  # a bad time is refused, not guessed
        report = client.post(
            f"/o/{token}", headers={"Content-Type": "text/plain;charset=UTF-8"},
            content=json.dumps({"tag": payload["tag"],
                                "opened_at": (NOW + timedelta(minutes=4)).isoformat()}),
        )
        assert report.status_code == 204
    assert message(engine, delivered).opened_at == NOW + timedelta(minutes=4)


def test_email_and_sms_go_out_tracked_and_sms_receipts_come_back_signed(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    port = free_port()
    with (
        SmtpSandbox(username="shop", password="s3cret") as relay,
        SmsSandbox() as provider,
    ):
        smtp = SmtpSettings(
            host="127.0.0.1", port=relay.port, username="shop", password="s3cret",
            ca_file=str(relay.ca_file), from_address="news@shop.example",
            unsubscribe_mailto="unsubscribe@shop.example",
        )
        twilio = TwilioSettings(
            account_sid=provider.account_sid, auth_token=provider.auth_token,
            from_number=provider.from_number, base_url=provider.url,
            status_callback_url=f"http://127.0.0.1:{port}/receipts/sms",
        )
        settings = queue_settings(
            tenant=tenant, database_url=migrated_url, channels={
                "email": smtp.model_dump(),
                "sms": twilio.model_dump(),
            },
        )
        relay.reject("gone@example.net")
        relay.reject("busy@example.net", TRY_LATER, times=1)
        provider.script("+34600000002", SmsOutcome.UNDELIVERABLE)
        provider.script("+34600000003", SmsOutcome.STOP)
        email, sms = ("email",), ("sms",)
        customers = [
            new_customer(engine, tenant, consent=email, email="juan@example.net"),
            new_customer(engine, tenant, consent=email, email="gone@example.net"),
            new_customer(engine, tenant, consent=email, email="busy@example.net"),
            new_customer(engine, tenant, consent=sms, phone="+34600000001"),
            new_customer(engine, tenant, consent=sms, phone="+34600000002"),
            new_customer(engine, tenant, consent=sms, phone="+34600000003"),
        ]
        channels = ["email"] * 3 + ["sms"] * 3
        mailed, bounced, deferred, texted, undelivered, stopped = (i or 0 for i in queue(
            engine, *(
                outgoing(tenant, customer, f"m:{n}", channel=channel)
                for n, (customer, channel) in enumerate(zip(customers, channels, strict=True))
            ),
        ))
        sms_provider = TwilioSms(twilio)
        worker = DeliveryWorker(
            engine=engine, settings=settings, rng=random.Random(5),
            senders=ChannelSenders({
                "email": DeploymentSender(EmailSender(smtp, retry=NO_RETRY).deliver),
                "sms": DeploymentSender(SmsSender(sms_provider, retry=NO_RETRY).deliver),
            }),
        )
        app = create_app(settings, engine=engine, now=lambda: NOW + timedelta(seconds=30))
        with running_api(app, port):
            assert worker.run_once(NOW) == 6
            provider.callbacks.wait_for(4)  # "sent" and a final receipt for two texts
            assert worker.run_once(NOW + timedelta(minutes=5)) == 1  # the deferred email
        sms_provider.close()
        received = relay.wait_for(2)
        with TestClient(app) as client:
            receipt = {"AccountSid": provider.account_sid, "MessageSid": "SMearly",
                       "MessageStatus": "delivered"}
            forged = client.post("/receipts/sms", data=receipt,
                                 headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
            assert forged.status_code == 403
            # A receipt ahead of its text's record is kept, and applied once it is recorded.
            callback = f"http://127.0.0.1:{port}/receipts/sms"
            signature = twilio_signature(provider.auth_token, callback, receipt)
            early = client.post("/receipts/sms", data=receipt,
                                headers={"X-Twilio-Signature": signature})
            assert early.status_code == 204
        [ahead] = queue(engine, outgoing(tenant, customers[3], "m:6", channel="sms"))
        with session_scope(engine) as session:
            session.execute(update(Message).where(col(Message.id) == ahead).values(
                status=MessageStatus.SENT.value, sent_at=NOW, provider_message_id="SMearly",
                next_attempt_at=NOW + timedelta(days=1),
            ))
            session.commit()
        assert message(engine, ahead or 0).status == MessageStatus.SENT
        worker.run_once(NOW + timedelta(minutes=6))
        assert message(engine, ahead or 0).status == MessageStatus.DELIVERED

    # Email: tracked links and an open pixel in the HTML, one-click unsubscribe in the headers.
    token = token_for("m:0")
    first = next(mail for mail in received if mail.recipients == ("juan@example.net",))
    assert message(engine, mailed).status == MessageStatus.SENT
    assert first.message["List-Unsubscribe"] == (
        f"<{BASE_URL}/u/{token}>, <mailto:unsubscribe@shop.example?subject=unsubscribe>"
    )
    assert first.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert collapse_id("m:0") in first.message["Message-ID"]
    html = first.part("html")
    assert html.count(f'href="{BASE_URL}/c/{token}/0"') == 2  # the same link twice
    assert "shop.example/dryers" not in html
    assert f'href="{BASE_URL}/u/{token}"' in html  # the unsubscribe link stays direct
    assert f'src="{BASE_URL}/o/{token}.gif"' in html
    assert message(engine, bounced).status == MessageStatus.FAILED
    assert message(engine, bounced).error_code == "UNREGISTERED"
    assert [a.outcome for a in attempts(engine, deferred)] == [
        AttemptOutcome.TRANSIENT, AttemptOutcome.SENT,
    ]
    # SMS: the provider's receipts set delivered_at, or fail the message.
    row = message(engine, texted)
    assert row.status == MessageStatus.DELIVERED
    assert row.delivered_at is not None
    assert provider.received.snapshot()[0].body.endswith(f"/c/{token_for('m:3')}")
    assert message(engine, undelivered).status == MessageStatus.FAILED
    assert message(engine, undelivered).error_code == "undelivered:30003"
    assert message(engine, stopped).status == MessageStatus.FAILED
    assert message(engine, stopped).error_code == "UNREGISTERED"
    assert attempts(engine, stopped)[0].provider == "sms"
