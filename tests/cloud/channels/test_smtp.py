"""EmailSender against the local SMTP relay: STARTTLS or TLS, AUTH, MIME, bounces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cloud.channels.dedupe import collapse_id
from cloud.channels.retry import RetryPolicy
from cloud.channels.smtp import EmailMessage, EmailSender, SmtpSettings
from sandbox.smtp import TRY_LATER, SmtpSandbox

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05)


@pytest.fixture
def relay() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(username="shop", password="s3cret") as smtp:
        yield smtp


def settings_for(relay: SmtpSandbox, **overrides: Any) -> SmtpSettings:
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": relay.port,
        "username": "shop",
        "password": "s3cret",
        "ca_file": str(relay.ca_file),
        "from_address": "news@shop.example",
        "from_name": "The Shop",
        "unsubscribe_mailto": "unsubscribe@shop.example",
    }
    fields.update(overrides)
    return SmtpSettings(**fields)


def mail(to: str = "juan@example.net", key: str = "welcome-1", **overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "to": to,
        "subject": "Your 27 loyalty credit",
        "text": "Hello Juan, you have 27 credit.",
        "html": "<p>Hello Juan, you have <b>27</b> credit.</p>",
        "idempotency_key": key,
        "unsubscribe_url": "https://shop.example/unsubscribe/tok123",
    }
    fields.update(overrides)
    return EmailMessage(**fields)


def test_email_goes_out_authenticated_with_both_parts_and_unsubscribe(relay: SmtpSandbox) -> None:
    [result] = EmailSender(settings_for(relay)).deliver([mail()])

    assert result.ok
    [received] = relay.wait_for(1)
    assert received.login == "shop"
    assert received.recipients == ("juan@example.net",)
    message = received.message
    assert message["From"] == "The Shop <news@shop.example>"
    assert message["Subject"] == "Your 27 loyalty credit"
    assert message["Message-ID"] == f"<{collapse_id('welcome-1')}@shop.example>"
    assert result.provider_message_id == message["Message-ID"]
    assert message["List-Unsubscribe"] == (
        "<https://shop.example/unsubscribe/tok123>, "
        "<mailto:unsubscribe@shop.example?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert received.part("plain").strip() == "Hello Juan, you have 27 credit."
    assert received.part("html").strip() == "<p>Hello Juan, you have <b>27</b> credit.</p>"


def test_implicit_tls_relay() -> None:
    with SmtpSandbox(username="shop", password="s3cret", implicit_tls=True) as relay:
        [result] = EmailSender(settings_for(relay, security="tls")).deliver([mail()])
        assert result.ok
        assert relay.wait_for(1)[0].login == "shop"


def test_hard_bounce_is_a_dead_address_and_the_batch_goes_on(relay: SmtpSandbox) -> None:
    relay.reject("gone@example.net")

    results = EmailSender(settings_for(relay), retry=FAST_RETRY).deliver(
        [mail("a@example.net", "k1"), mail("gone@example.net", "k2"), mail("b@example.net", "k3")]
    )

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_code == "UNREGISTERED"
    assert results[1].address_dead
    assert [m.recipients for m in relay.received.snapshot()] == [
        ("a@example.net",),
        ("b@example.net",),
    ]


def test_temporary_failure_is_retried(relay: SmtpSandbox) -> None:
    relay.reject("busy@example.net", TRY_LATER, times=1)

    [result] = EmailSender(settings_for(relay), retry=FAST_RETRY).deliver(
        [mail("busy@example.net")]
    )

    assert result.ok
    assert len(relay.received.snapshot()) == 1


def test_wrong_password_is_not_retried_and_not_permanent(relay: SmtpSandbox) -> None:
    [result] = EmailSender(settings_for(relay, password="nope"), retry=FAST_RETRY).deliver([mail()])

    assert result.error_code == "UNAUTHENTICATED"
    assert not result.permanent
    assert not result.transient
    # smtplib tries each mechanism the relay offers; every try was refused, none retried later.
    failures = relay.auth_failures.snapshot()
    assert failures
    assert set(failures) == {"shop"}
    assert len(failures) <= 2


def test_untrusted_certificate_is_refused(relay: SmtpSandbox) -> None:
    [result] = EmailSender(settings_for(relay, ca_file=None), retry=FAST_RETRY).deliver([mail()])

    assert result.error_code == "TLS_UNTRUSTED"
    assert not result.transient
    assert relay.received.snapshot() == []


def test_unreachable_relay_is_transient(relay: SmtpSandbox) -> None:
    sender = EmailSender(settings_for(relay), retry=RetryPolicy(attempts=1))
    relay.stop()

    [result] = sender.deliver([mail()])

    assert result.error_code == "UNAVAILABLE"
    assert result.transient


def test_unsubscribe_link_must_be_https(relay: SmtpSandbox) -> None:
    results = EmailSender(settings_for(relay)).deliver(
        [mail(key="k1", unsubscribe_url="http://shop.example/u"), mail(key="k2")]
    )

    assert [r.error_code for r in results] == ["INVALID_ARGUMENT", None]
    assert len(relay.received.snapshot()) == 1
