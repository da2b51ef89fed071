"""At start-up the orchestrator says what its settings leave off: channels that are not
configured, a public base URL only this machine reaches, the quiet hours in force (the
process itself says it too: tests/cloud/test_cli.py)."""

from __future__ import annotations

import logging
from datetime import time

import pytest

from cloud.channels.fcm import FcmSettings
from cloud.channels.web_push import WebPushSettings
from cloud.service import log_configuration
from cloud.settings import QuietHours, ScenarioSettings, Settings, is_loopback_url

KEYS = {"keys": [{"key_id": "k1", "secret": "ab" * 32}]}


def _said(caplog: pytest.LogCaptureFixture, settings: Settings) -> list[tuple[int, str]]:
    with caplog.at_level(logging.INFO, logger="cloud.service"):
        log_configuration(settings)
    return [(record.levelno, record.getMessage()) for record in caplog.records
            if record.name == "cloud.service"]


def test_out_of_the_box_every_channel_is_off_and_links_are_local(
    caplog: pytest.LogCaptureFixture,
) -> None:
    said = _said(caplog, Settings(tenants={"acme": KEYS, "beta": KEYS}))
    warnings = [text for level, text in said if level == logging.WARNING]
    assert len(warnings) == 5  # four channels and the base URL, once each
    [push] = [text for text in warnings if text.startswith("channel push ")]
    assert "no FCM: pushes to the shop's Android and iOS apps are not sent" in push
    assert "VITRINA_CHANNELS__PUSH__PROJECT_ID, VITRINA_CHANNELS__PUSH__CREDENTIALS_FILE" in push
    [web_push] = [text for text in warnings if text.startswith("channel web_push ")]
    assert "VITRINA_CHANNELS__WEB_PUSH__SUBJECT" in web_push
    assert any(text.startswith("channel email ") and "no SMTP" in text for text in warnings)
    assert any(text.startswith("channel sms ") and "no SMS provider" in text
               for text in warnings)
    [base] = [text for text in warnings if text.startswith("tracking.public_base_url")]
    assert "http://127.0.0.1:8000 (the default)" in base
    assert "will not work on a customer's device" in base
    [quiet] = [text for level, text in said if level == logging.INFO]
    assert quiet.startswith("quiet hours 21:00-09:00 on each customer's clock (else their "
                            "store's, else their tenant's, else UTC)")
    assert "per tenant: acme 21:00-09:00 (everyone's), beta 21:00-09:00 (everyone's)." in quiet
    assert quiet.endswith("A tenant's own quiet hours and time zone (PUT "
                          "/tenants/{tenant}/preferences, the console's Shop settings) come "
                          "before these, and a store's own before the tenant's for the "
                          "journeys its visits start.")


def test_configured_channels_and_a_public_address_are_not_mentioned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        channels={"push": FcmSettings(project_id="p", credentials_file="/sa.json"),
                  "web_push": WebPushSettings(subject="mailto:ops@shop.example")},
        tracking={"public_base_url": "https://push.shop.example"},
        scenarios=ScenarioSettings(quiet_hours=None),
    )
    said = _said(caplog, settings)
    assert [text.split(" is ")[0] for level, text in said if level == logging.WARNING] == [
        "channel email", "channel sms"]
    assert said[-1][1].startswith("quiet hours are off: marketing messages go out at any hour")


def test_quiet_hours_as_configured_and_per_tenant(caplog: pytest.LogCaptureFixture) -> None:
    scenarios = ScenarioSettings(
        quiet_hours=QuietHours(start=time(22), end=time(8)), default_time_zone="Europe/Madrid",
        tenant_quiet_hours={"beta": QuietHours(start=time(23), end=time(7)), "gamma": None})
    settings = Settings(tenants={"acme": KEYS, "beta": KEYS, "gamma": KEYS},
                        scenarios=scenarios)
    note = _said(caplog, settings)[-1][1]
    assert note.startswith("quiet hours 22:00-08:00 on each customer's clock (else their "
                           "store's, else their tenant's, else Europe/Madrid)")
    assert ("per tenant: acme 22:00-08:00 (everyone's), beta 23:00-07:00 (its own), gamma "
            "off (its own). A tenant's own") in note


def test_quiet_hours_of_an_unknown_tenant_are_refused() -> None:
    with pytest.raises(ValueError, match="tenant_quiet_hours names tenants that are not "
                                         "configured: beta"):
        Settings(tenants={"acme": KEYS},
                 scenarios={"tenant_quiet_hours": {"beta": {"start": "22:00"}}})


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8000", True), ("http://localhost", True), ("http://[::1]:80", True),
    ("http://127.1.2.3", True), ("https://push.shop.example", False),
    ("http://10.0.0.5:8000", False),
])
def test_loopback_addresses(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback
