import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud.channels.email import EmailChannel
from cloud.channels.push import PushChannel
from cloud.settings import CONFIG_FILE_VARIABLE, Settings, get_settings
from shared.pseudonym import Pseudonymizer
from tests.docs.snippets import snippet


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("VITRINA_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()


def test_defaults_are_the_embedded_setup() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///./vitrina.db"
    assert settings.mqtt.port == 1883
    assert settings.mqtt.shared_subscription is True
    assert settings.channels == {}
    assert settings.tenants == {}


def test_environment_uses_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINA_MQTT__HOST", "broker.example")
    monkeypatch.setenv("VITRINA_MQTT__PORT", "8883")
    monkeypatch.setenv("VITRINA_MQTT__TLS", "true")
    monkeypatch.setenv("VITRINA_MQTT__SHARED_SUBSCRIPTION", "false")
    monkeypatch.setenv("VITRINA_DATABASE_URL", "postgresql://vitrina@db/vitrina")
    monkeypatch.setenv(
        "VITRINA_TENANTS", '{"acme": {"keys": [{"key_id": "k1", "secret": "' + "ab" * 32 + '"}]}}'
    )
    settings = Settings()
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("broker.example", 8883, True)
    assert settings.mqtt.shared_subscription is False
    assert settings.database_url == "postgresql+psycopg://vitrina@db/vitrina"
    pseudonymizer = settings.tenants["acme"].pseudonymizers()[0]
    assert isinstance(pseudonymizer, Pseudonymizer)
    assert pseudonymizer.key_id == "k1"


def test_toml_file_named_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "vitrina.toml"
    config.write_text(
        'database_url = "sqlite:///x.db"\n'
        'webhook_secrets = ["s3cret"]\n'
        "[mqtt]\nhost = \"from-file\"\nport = 1884\n"
        "[channels.push]\nproject_id = \"shop\"\ncredentials_file = \"/etc/vitrina/sa.json\"\n"
        "[tenants.acme]\n"
        f'keys = [{{ key_id = "k2", secret = "{"cd" * 16}" }}, '
        f'{{ key_id = "k1", secret = "{"ef" * 16}" }}]\n'
    )
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    monkeypatch.setenv("VITRINA_MQTT__PORT", "1999")  # the environment wins over the file
    settings = get_settings()
    assert settings.mqtt.host == "from-file"
    assert settings.mqtt.port == 1999
    push = settings.channel_settings(PushChannel())
    assert push is not None
    assert push.project_id == "shop"
    assert [key.key_id for key in settings.tenants["acme"].tenant_keys()] == ["k2", "k1"]
    assert settings.webhook_secrets[0].get_secret_value() == "s3cret"
    assert get_settings() is settings  # built once, then reused


def test_missing_config_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(tmp_path / "absent.toml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.toml"):
        Settings()


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ({"acme": {"keys": [{"key_id": "k1", "secret": "abcd"}]}}, "16-64 bytes"),
        ({"acme": {"keys": [{"key_id": "k1", "secret": "not a key!"}]}}, "neither hex nor"),
        ({"acme": {"keys": []}}, "at least 1"),
        ({"Bad Tenant": {"keys": [{"key_id": "k1", "secret": "ab" * 16}]}}, "tenant id"),
        (
            {"acme": {"keys": [{"key_id": "k1", "secret": "ab" * 16}] * 2}},
            "listed twice",
        ),
    ],
)
def test_bad_tenant_keys_are_rejected(tenants: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(tenants=tenants)


def test_secrets_do_not_show_in_repr() -> None:
    settings = Settings(
        tenants={"acme": {"keys": [{"key_id": "k1", "secret": "ab" * 16}]}},
        mqtt={"password": "hunter2"},
    )
    assert "abab" not in repr(settings)
    assert "hunter2" not in repr(settings)


def test_the_operator_key_is_configured_by_its_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().operator_key_hash is None
    assert Settings().api.metrics_public is True
    monkeypatch.setenv("VITRINA_OPERATOR_KEY_HASH", "AB" * 32)
    monkeypatch.setenv("VITRINA_API__METRICS_PUBLIC", "false")
    settings = Settings()
    assert settings.operator_key_hash == "ab" * 32
    assert settings.api.metrics_public is False


@pytest.mark.parametrize("value", ["ab" * 31, "vk_0123456789ab_" + "a" * 43, "zz" * 32])
def test_anything_but_a_sha256_is_refused_as_the_operator_key_hash(value: str) -> None:
    with pytest.raises(ValidationError, match="operator_key_hash"):
        Settings(operator_key_hash=value)


def test_trusted_proxies_are_addresses_or_networks_never_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VITRINA_API__TRUSTED_PROXIES", '["10.0.0.0/8", " ::1 "]')
    assert Settings().api.trusted_proxies == ["10.0.0.0/8", "::1"]
    for value in (["*"], ["proxy.internal"], ["10.0.0.1/8"]):
        with pytest.raises(ValidationError, match="trusted_proxies"):
            Settings(api={"trusted_proxies": value})


SMTP = {"host": "smtp.example", "from_address": "news@shop.example"}


def test_email_needs_an_https_public_base_url_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every email carries an https one-click unsubscribe link: a deployment with email and
    the default (http) base URL refuses to start, saying which setting to fix, rather than
    leaving every email to be retried in the queue for hours."""
    monkeypatch.setenv("VITRINA_CHANNELS__EMAIL", json.dumps(SMTP))
    with pytest.raises(ValidationError, match="VITRINA_TRACKING__PUBLIC_BASE_URL"):
        Settings()
    with pytest.raises(ValidationError, match="RFC 8058"):
        Settings(tracking={"public_base_url": "http://t.shop.example"})
    secure = Settings(tracking={"public_base_url": "https://t.shop.example"})
    assert secure.channel_settings(EmailChannel()) is not None
    # Without email an http base URL is fine (a local setup, push and SMS only).
    monkeypatch.delenv("VITRINA_CHANNELS__EMAIL")
    assert Settings().tracking.public_base_url.startswith("http://")


def test_settings_an_earlier_release_read_elsewhere_are_named_with_their_new_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match=r"fcm is now channels.push"):
        Settings.model_validate({"fcm": {"project_id": "shop", "credentials_file": "/sa.json"}})
    with pytest.raises(ValidationError, match=r"delivery.smtp is now channels.email"):
        Settings(delivery={"smtp": SMTP})
    monkeypatch.setenv("VITRINA_FCM__PROJECT_ID", "shop")
    with pytest.raises(ValueError, match="VITRINA_FCM__PROJECT_ID are now VITRINA_CHANNELS"):
        get_settings()


def test_channel_settings_are_read_by_their_channel_and_never_echoed() -> None:
    with pytest.raises(ValidationError, match="unknown channel 'pigeon'"):
        Settings(channels={"pigeon": {}})
    with pytest.raises(ValidationError) as refused:
        Settings(channels={"sms": {"account_sid": "nope", "auth_token": "hunter2",
                                   "from_number": "+34600000000"}})
    assert "sms: account_sid" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_outbound_allow_list_as_docs_security_md_writes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "vitrina.toml"
    config.write_text(snippet("docs/security.md", "security-outbound-allow").text)
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    assert get_settings().outbound.allow == ["10.20.0.0/16", "push.shop.internal:8443"]
    get_settings.cache_clear()
    monkeypatch.setenv("VITRINA_OUTBOUND__ALLOW", '["10.20.0.0/16"]')
    assert get_settings().outbound.allow == ["10.20.0.0/16"]
