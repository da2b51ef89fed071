"""The configuration reference (docs/configuration.md) is the settings models' own word:
it matches what `vitrina-cloud settings reference` prints now, every field carries its
description, and the spellings it documents load."""

from __future__ import annotations

import os
import shlex
from datetime import time, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.channels import adapters
from cloud.cli import app
from cloud.cli.reference import REGENERATE, channel_sections, reference_markdown, settings_sections
from cloud.settings import CONFIG_FILE_VARIABLE, Settings
from shared.settings_reference import Entry, undocumented
from tests.docs.snippets import ROOT, snippet

REFERENCE = "docs/configuration.md"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VITRINA_"):
            monkeypatch.delenv(name)


def test_the_published_reference_is_what_the_models_say_now() -> None:
    published = (ROOT / REFERENCE).read_text(encoding="utf-8")
    assert published == reference_markdown(), (
        f"{REFERENCE} is out of date with the settings models: regenerate it with "
        f"`{REGENERATE}` and commit the result")


def test_the_command_prints_the_reference() -> None:
    result = CliRunner().invoke(app, ["settings", "reference"])
    assert result.exit_code == 0, result.output
    assert result.output == reference_markdown()


def test_every_setting_says_what_it_does_and_what_unset_means() -> None:
    missing = undocumented(Settings)
    for adapter in adapters():
        missing += undocumented(adapter.settings_model, prefix=f"channels.{adapter.name}.")
        assert adapter.unconfigured != "messages on it are not sent", (
            f"channel {adapter.name} says not what customers miss while it is off")
    assert missing == [], (
        "give these fields Field(description=...), and json_schema_extra=unset(...) where "
        f"they default to None: {missing}")


def _entry(key: str) -> Entry:
    entries = [entry for section in settings_sections() for entry in section.entries]
    entries += [entry for _, found in channel_sections() for section in found
                for entry in section.entries]
    return next(entry for entry in entries if entry.key == key)


def test_documented_variable_names_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The names the reference prints, set as printed (a name in the path in capitals)."""
    def env(key: str, value: str, **names: str) -> None:
        name = _entry(key).env
        assert name is not None
        for placeholder, real in names.items():
            name = name.replace(f"<{placeholder.upper()}>", real.upper())
        monkeypatch.setenv(name, value)

    env("tracking.public_base_url", "https://push.shop.example")
    env("scenarios.quiet_hours.end", "07:30")
    env("scenarios.channel_caps.<channel>.max", "4", channel="sms")
    env("scenarios.channel_caps.<channel>.per", "P2D", channel="sms")
    env("tenants.<tenant>.webhook_secrets", '["whsec"]', tenant="acme")
    env("tenants.<tenant>.keys", '[{"key_id": "k1", "secret": "' + "ab" * 32 + '"}]',
        tenant="acme")
    env("channels.push.project_id", "acme-shop")
    env("channels.push.credentials_file", "/etc/vitrina/sa.json")
    env("api.trusted_proxies", '["10.0.0.0/8"]')
    env("scenarios.tenant_quiet_hours.<tenant>.start", "23:00", tenant="acme")
    settings = Settings()
    acme_quiet = settings.scenarios.quiet_hours_for("acme")
    assert acme_quiet is not None
    assert (acme_quiet.start, acme_quiet.end) == (time(23), time(9))
    assert settings.tracking.public_base_url == "https://push.shop.example"
    assert settings.scenarios.quiet_hours is not None
    assert settings.scenarios.quiet_hours.end == time(7, 30)
    assert settings.scenarios.quiet_hours.start == time(21)  # the rest of it stays
    assert set(settings.scenarios.channel_caps) == {"sms"}  # the table is replaced
    assert settings.scenarios.channel_caps["sms"].per == timedelta(days=2)
    assert settings.webhook_secrets_for("acme") == ["whsec"]
    assert settings.channels["push"].project_id == "acme-shop"
    assert settings.api.trusted_proxies == ["10.0.0.0/8"]


def _exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words:
            assert words[0] == "export", line
            name, _, value = words[1].partition("=")
            found[name] = value
    return found


def test_the_environment_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _exports(snippet(REFERENCE, "config-env-example").text).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://vitrina:")
    assert settings.tracking.public_base_url == "https://push.shop.example"
    assert [key.key_id for key in settings.tenants["acme"].keys] == ["k1"]
    assert settings.channels["web_push"].subject == "mailto:ops@shop.example"
    assert settings.scenarios.quiet_hours is not None
    assert settings.scenarios.quiet_hours.start == time(22)
    assert settings.webhook_secrets_for("acme") == ["whsec-2026-11", "whsec-2026-05"]


def test_the_file_example_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "vitrina.toml"
    config.write_text(snippet(REFERENCE, "config-toml-example").text, encoding="utf-8")
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    settings = Settings()
    assert settings.tenants["acme"].keys[0].key_id == "k1"
    assert settings.channels["push"].credentials_file == (
        "/etc/vitrina/fcm-service-account.json")
    assert settings.scenarios.quiet_hours is not None
    assert settings.scenarios.quiet_hours.end == time(8)


def test_quiet_hours_switch_off_with_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINA_SCENARIOS__QUIET_HOURS", "null")
    assert Settings().scenarios.quiet_hours is None
