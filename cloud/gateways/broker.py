"""The broker side of enrolment: gateway logins through Mosquitto's dynamic security
(`provisioning.broker_security`, the same commands `vitrina-provision` runs), and each
gateway's config retained on its config topic.

Everything here blocks on the network (paho's own thread does the I/O and these calls
wait for its answers), so routes call it from FastAPI's thread pool, never from the
event loop.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud.settings import MqttSettings, Settings
from provisioning.broker_security import DynsecAdmin, DynsecError, MqttCredentials
from shared.topics import TopicChannel, gateway_topic

#: A broker answers in milliseconds; this bounds a request waiting on one that is gone.
BROKER_TIMEOUT_S = 10.0


class BrokerUnavailableError(RuntimeError):
    """The broker cannot be used for this (a setting is missing, or it does not answer);
    the message says which, for the admin who reads the 503."""


def broker_admin(settings: Settings) -> DynsecAdmin:
    """A dynamic-security session as the broker's admin; BrokerUnavailableError names the
    missing setting."""
    gateways = settings.gateways
    missing = [name for name, value in (
        ("gateways.broker_admin_username", gateways.broker_admin_username),
        ("gateways.broker_admin_password", gateways.broker_admin_password),
    ) if value is None]
    if missing:
        raise BrokerUnavailableError(
            f"enrolling and revoking gateways needs the broker's admin login: set "
            f"{' and '.join(missing)} (VITRINA_GATEWAYS__BROKER_ADMIN_USERNAME, "
            "VITRINA_GATEWAYS__BROKER_ADMIN_PASSWORD)")
    assert gateways.broker_admin_username is not None
    assert gateways.broker_admin_password is not None
    mqtt_settings = settings.mqtt
    ca = mqtt_settings.ca_file or gateways.ca_file
    return DynsecAdmin(
        host=mqtt_settings.host, port=mqtt_settings.port,
        admin=MqttCredentials(gateways.broker_admin_username,
                              gateways.broker_admin_password.get_secret_value()),
        ca_file=Path(ca) if (mqtt_settings.tls and ca) else None,
    )


def gateway_ca_certificate(settings: Settings) -> str:
    """The CA (PEM) a gateway trusts for the broker; BrokerUnavailableError when unset."""
    path = settings.gateways.ca_file or settings.mqtt.ca_file
    if path is None:
        raise BrokerUnavailableError(
            "gateways connect over TLS and need the broker's CA: set gateways.ca_file "
            "(VITRINA_GATEWAYS__CA_FILE) or mqtt.ca_file")
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise BrokerUnavailableError(f"gateways.ca_file cannot be read: {error}") from None


def create_login(settings: Settings, *, tenant: str, store: str, gateway: str
                 ) -> MqttCredentials:
    """The gateway's broker login and role; an earlier login of the same gateway (made by
    `vitrina-provision`, or an enrolment whose answer never arrived) is replaced."""
    try:
        with broker_admin(settings) as control:
            with contextlib.suppress(DynsecError):
                control.revoke_gateway(tenant=tenant, store=store, gateway=gateway)
            return control.enrol_gateway(tenant=tenant, store=store, gateway=gateway)
    except (DynsecError, OSError) as error:
        raise BrokerUnavailableError(f"the broker did not create the login: {error}") from None


def delete_login(settings: Settings, *, tenant: str, store: str, gateway: str) -> None:
    """Delete the login; the broker ends its live session at once. A login that is
    already gone is no error (a revocation retried)."""
    try:
        with broker_admin(settings) as control:
            try:
                control.revoke_gateway(tenant=tenant, store=store, gateway=gateway)
            except DynsecError as error:
                if "not found" not in str(error).lower():
                    raise
    except (DynsecError, OSError) as error:
        raise BrokerUnavailableError(f"the broker did not delete the login: {error}") from None


#: MQTT v5's reason for ending a connection whose client id another connection took.
SESSION_TAKEN_OVER = 0x8E


def publisher_login(settings: MqttSettings) -> tuple[str | None, str | None, str]:
    """The username, password and client id configs are published with: the config
    publisher's own login, pinned to its client id (`mqtt.config_publisher`), or else the
    worker's login under a fresh client id each time (brokers that pin no ids)."""
    login = settings.config_publisher
    if login is not None:
        return login.username, login.password.get_secret_value(), login.pinned_client_id
    password = settings.password.get_secret_value() if settings.password else None
    return (settings.username, password,
            f"{settings.client_id[:40]}-config-{uuid.uuid4().hex[:8]}")


def _client(settings: MqttSettings) -> mqtt.Client:
    protocol = MQTTProtocolVersion.MQTTv5 if settings.mqtt_v5 else MQTTProtocolVersion.MQTTv311
    username, password, client_id = publisher_login(settings)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if username is not None:
        client.username_pw_set(username, password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    return client


def publish_retained(settings: MqttSettings, topic: str, payload: bytes) -> None:
    """Publish once, retained, QoS 1, and wait for the broker's acknowledgement, as the
    orchestrator (whose roles alone may write config topics). An empty payload clears
    the retained message.

    Processes that share the config publisher's pinned client id publish one at a time:
    one connecting while another publishes takes the connection over, and the one cut
    off fails at once (BrokerUnavailableError); its config is published again later."""
    client = _client(settings)
    connected = threading.Event()
    settled = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        settled.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason: object,
                      _p: object) -> None:
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            refused.append("another process publishing as this client id took the "
                           "connection over")
        settled.set()
        connected.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(60, 60)  # one try: a config not taken is published later
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except (OSError, ssl.SSLError) as error:
        raise BrokerUnavailableError(f"the broker cannot be reached: {error}") from None
    client.loop_start()
    try:
        if not connected.wait(BROKER_TIMEOUT_S) or refused or not client.is_connected():
            why = refused[0] if refused else "no answer"
            raise BrokerUnavailableError(
                f"the broker refused the orchestrator's login: {why}"
                f"{_PINNED_HINT if 'authori' in why.lower() else ''}")
        info = client.publish(topic, payload, qos=1, retain=True)
        settled.wait(BROKER_TIMEOUT_S)
        if not info.is_published() or refused:
            raise BrokerUnavailableError(
                "the broker did not take the config"
                f"{f' ({refused[0]})' if refused else ''}: is the orchestrator's login one "
                "made with `vitrina-provision add-orchestrator`?")
    finally:
        client.disconnect()
        client.loop_stop()


#: Why a login the broker knows may still be refused: it is pinned to another client id.
_PINNED_HINT = (" (a login pinned to a client id, as `vitrina-provision add-orchestrator` "
                "makes them, publishes configs only as mqtt.config_publisher)")


def config_topic(tenant: str, store: str, gateway: str) -> str:
    return gateway_topic(tenant, store, gateway, TopicChannel.CONFIG)
