from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge
from edge.settings import (
    EdgeSettings,
    SettingsError,
    get_settings,
    load_settings,
    parse_settings,
)
from tests.edge.support import SECRET_HEX, settings_document

EXAMPLE = Path(edge.__file__).parent / "example-config.toml"


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, env={})
    assert (settings.identity.tenant, settings.identity.store, settings.identity.gateway) == (
        "demo", "store-1", "gw-1",
    )
    assert settings.keys.active in settings.keys.tenant_keys()
    assert settings.mqtt.host == "localhost"
    assert [zone.zone for zone in settings.zones] == ["entrance", "floor"]
    assert settings.tz.key == "Europe/Madrid"  # type: ignore[attr-defined]


def test_defaults_fill_everything_but_identity_and_keys() -> None:
    settings = parse_settings(
        {"identity": {"tenant": "t", "store": "s", "gateway": "g"},
         "keys": {"active": "k1", "key": [{"key_id": "k1", "secret": SECRET_HEX}]}},
        path=Path("x.toml"), env={},
    )
    assert settings.tracker.enter_sightings >= 1
    assert settings.client_id == "edge-t-s-g"
    assert not settings.mqtt.uses_tls


def test_errors_name_the_field_and_the_rule(tmp_path: Path) -> None:
    document = settings_document()
    document["identity"] = {"tenant": "Bad Tenant", "store": "s"}
    document["tracker"] = {"enter_sightings": 0, "exit_after": 3}
    with pytest.raises(SettingsError) as caught:
        parse_settings(document, path=tmp_path / "edge.toml", env={})
    problems = caught.value.problems
    assert any(p.startswith("identity.tenant:") and "not a valid id" in p for p in problems)
    assert any(p.startswith("identity.gateway:") and "required" in p.lower() for p in problems)
    assert any(p.startswith("tracker.enter_sightings:") and "greater than" in p for p in problems)
    assert any(p.startswith("tracker.exit_after:") and "not permitted" in p for p in problems)
    assert str(tmp_path / "edge.toml") in str(caught.value)


def test_active_key_must_exist_and_secrets_must_decode() -> None:
    document = settings_document()
    document["keys"] = {"active": "nope", "key": [{"key_id": "k1", "secret": "zz-not-a-key"}]}
    with pytest.raises(SettingsError) as caught:
        parse_settings(document, path=Path("e.toml"), env={})
    text = str(caught.value)
    assert "keys.key.0.secret: key must be" in text or "neither hex nor base64" in text
    assert "zz-not-a-key" not in text


def test_a_bad_secret_is_never_echoed() -> None:
    document = settings_document()
    short = "ab" * 4
    document["keys"] = {"active": "k1", "key": [{"key_id": "k1", "secret": short}]}
    with pytest.raises(SettingsError) as caught:
        parse_settings(document, path=Path("e.toml"), env={})
    assert short not in str(caught.value)
    assert "16-64 bytes" in str(caught.value)


def test_secrets_never_show_in_repr() -> None:
    settings = parse_settings(
        settings_document(mqtt={"username": "gw", "password": "hunter2-secret"}),
        path=Path("e.toml"), env={},
    )
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert SECRET_HEX not in text
    assert "hunter2-secret" not in text
    assert repr(settings.keys.tenant_keys()["k1"]).count("5a5a") == 0


def test_environment_overrides_secrets() -> None:
    env = {"VITRINA_EDGE_KEY_K1": "77" * 32, "VITRINA_EDGE_MQTT_PASSWORD": "from-env"}
    settings = parse_settings(
        settings_document(mqtt={"username": "gw", "password": "in-file"}),
        path=Path("e.toml"), env=env,
    )
    assert settings.keys.tenant_keys()["k1"].secret == bytes.fromhex("77" * 32)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-env"


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    broken = write_toml(tmp_path / "broken.toml", "[identity\ntenant=")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken)


def test_unknown_zone_names_timezone_and_channels_are_rejected() -> None:
    document = settings_document(
        timezone="Mars/Olympus",
        zones=[{"zone": "a", "min_rssi": -50}, {"zone": "a", "min_rssi": -60}],
        sources={"wifi_monitor": {"enabled": True, "channels": [1, 200]}},
    )
    with pytest.raises(SettingsError) as caught:
        parse_settings(document, path=Path("e.toml"), env={})
    text = str(caught.value)
    assert "timezone: unknown time zone" in text
    assert "zones: zone names must be unique" in text
    assert "sources.wifi_monitor.channels: unknown Wi-Fi channels [200]" in text


def test_tls_files_go_together_and_enabled_replay_needs_files() -> None:
    document = settings_document(sources={"replay": {"enabled": True}})
    document["mqtt"] = {"cert_file": "/etc/c.pem"}
    with pytest.raises(SettingsError) as caught:
        parse_settings(document, path=Path("e.toml"), env={})
    assert "cert_file and key_file go together" in str(caught.value)
    assert "sources.replay: Value error" not in str(caught.value)
    assert "needs at least one path" in str(caught.value)


def test_get_settings_reads_once(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    path = write_toml(tmp_path / "edge.toml", text)
    get_settings.cache_clear()
    try:
        first = get_settings(path)
        path.write_text(text.replace('gateway = "gw-1"', 'gateway = "gw-2"'))
        assert get_settings(path) is first
        assert isinstance(first, EdgeSettings)
    finally:
        get_settings.cache_clear()


def test_example_is_valid_toml_with_every_section() -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    for section in ("identity", "keys", "beacons", "sources", "tracker", "zones", "mqtt",
                    "outbox", "logging"):
        assert section in document


def test_the_occupancy_default_is_the_estimators_calibration() -> None:
    from edge.occupancy.estimator import SCANS_PER_PHONE_PER_MINUTE
    from edge.settings import OccupancySettings

    assert OccupancySettings().scans_per_phone_per_minute == SCANS_PER_PHONE_PER_MINUTE


#: Text that looks like TOML often enough to get past the parser: keys, tables, values.
toml_lines = st.lists(
    st.one_of(
        st.sampled_from(["[identity]", "[keys]", "[[keys.key]]", "[mqtt]", "[tracker]",
                         "[sources.ble]", "[[zones]]", "[outbox]", "[logging]", "[", "]"]),
        st.tuples(st.sampled_from(["tenant", "store", "gateway", "active", "key_id", "secret",
                                   "host", "port", "tls", "zone", "min_rssi", "path",
                                   "enabled", "x"]),
                  st.one_of(st.integers(), st.floats().map(repr), st.booleans().map(str).map(
                      str.lower), st.text(max_size=12).map(lambda t: '"' + t + '"'),
                      st.just("[1, 2]"), st.just("{a = 1}"), st.text(max_size=8)),
                  ).map(lambda pair: f"{pair[0]} = {pair[1]}"),
        st.text(max_size=30),
    ),
    max_size=12,
).map("\n".join)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(toml_lines | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_config_file_loads_or_says_what_is_wrong(tmp_path: Path, text: str) -> None:
    """The gateway's config file as anyone might write it: settings, or a SettingsError
    listing the problems, never another exception."""
    path = write_toml(tmp_path / "edge.toml", text)
    with contextlib.suppress(SettingsError):
        load_settings(path, env={})
