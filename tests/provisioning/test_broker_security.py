"""Per-gateway credentials and ACLs on a real Mosquitto with TLS and dynamic security."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from provisioning.broker_security import (
    BrokerFiles,
    DynsecAdmin,
    DynsecError,
    MqttCredentials,
    load_broker_files,
)
from provisioning.certificates import make_certificate_authority
from shared.presence import (
    MAX_BATCH_EVENTS,
    MAX_PACKET_BYTES,
    MAX_PAYLOAD_BYTES,
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    decode_presence_batch,
    encode_presence_batch,
)
from shared.topics import gateway_topic

WAIT_S = 10.0
NOT_AUTHORIZED = 0x87


class Session:
    """A paho MQTT v5 client over TLS that records what happened to it."""

    def __init__(self, files: BrokerFiles, credentials: MqttCredentials, client_id: str,
                 protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol)
        self.client.username_pw_set(credentials.username, credentials.password)
        self.client.tls_set(ca_certs=str(files.ca_certificate), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.connect_reason: ReasonCode | None = None
        self.connect_properties: Properties | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.received = threading.Event()
        self.granted: list[ReasonCode] = []
        self.subscribed = threading.Event()
        self.acks: dict[int, ReasonCode] = {}
        self.acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("localhost", files.port)
        self.client.loop_start()

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connect_reason = reason
        self.connect_properties = properties
        self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.disconnected.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        self.messages.append((message.topic, bytes(message.payload)))
        self.received.set()

    def _on_subscribe(
        self, _c: object, _u: object, _mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        self.granted = reasons
        self.subscribed.set()

    def _on_publish(self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        with self.acked:
            self.acks[mid] = reason
            self.acked.notify_all()

    def publish(self, topic: str, payload: bytes = b"{}") -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.acks, WAIT_S), "no PUBACK"
            return self.acks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(WAIT_S), "no SUBACK"
        return self.granted[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    opened: list[Session] = []
    yield opened
    for session in opened:
        session.close()


def open_session(
    sessions: list[Session], files: BrokerFiles, credentials: MqttCredentials, client_id: str,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
) -> Session:
    session = Session(files, credentials, client_id, protocol)
    sessions.append(session)
    assert session.connected.wait(WAIT_S), "no CONNACK"
    return session


def admin(files: BrokerFiles) -> DynsecAdmin:
    return DynsecAdmin(
        host="localhost", port=files.port, admin=files.admin, ca_file=files.ca_certificate
    )


def test_a_gateway_publishes_only_on_its_own_topics(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g2")
        orchestrator = control.add_orchestrator(username=f"orchestrator-{mqtt_namespace}")
    assert gateway.client_id is not None
    assert orchestrator.client_id is not None
    worker = open_session(sessions, secure_broker, orchestrator, orchestrator.client_id)
    assert worker.connect_reason is not None
    assert not worker.connect_reason.is_failure
    shared = f"$share/workers-{mqtt_namespace}/vitrina/v1/+/+/+/presence"
    assert not worker.subscribe(shared).is_failure

    own = open_session(sessions, secure_broker, gateway, gateway.client_id)
    assert not own.connect_reason.is_failure  # type: ignore[union-attr]
    presence = gateway_topic(mqtt_namespace, "s1", "g1", "presence")
    assert own.publish(presence, b'{"ok": true}').value == 0
    assert worker.received.wait(WAIT_S)
    assert worker.messages == [(presence, b'{"ok": true}')]

    elsewhere = gateway_topic(mqtt_namespace, "s1", "g2", "presence")
    assert own.publish(elsewhere).value == NOT_AUTHORIZED
    assert own.publish(gateway_topic(mqtt_namespace, "s1", "g1", "config")).value == NOT_AUTHORIZED
    assert own.subscribe(f"vitrina/v1/{mqtt_namespace}/+/+/presence").is_failure
    assert own.subscribe(gateway_topic(mqtt_namespace, "s1", "g2", "config")).is_failure
    assert not own.subscribe(gateway_topic(mqtt_namespace, "s1", "g1", "config")).is_failure


def test_occupancy_goes_from_its_gateway_to_the_orchestrator_only(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        orchestrator = control.add_orchestrator(username=f"orchestrator-{mqtt_namespace}")
    assert gateway.client_id is not None
    assert orchestrator.client_id is not None
    worker = open_session(sessions, secure_broker, orchestrator, orchestrator.client_id)
    shared = f"$share/workers-{mqtt_namespace}/vitrina/v1/+/+/+/occupancy"
    assert not worker.subscribe(shared).is_failure
    own = open_session(sessions, secure_broker, gateway, gateway.client_id)
    occupancy = gateway_topic(mqtt_namespace, "s1", "g1", "occupancy")
    assert own.publish(occupancy, b'{"zones": []}').value == 0
    assert worker.received.wait(WAIT_S)
    assert worker.messages == [(occupancy, b'{"zones": []}')]
    assert own.publish(gateway_topic(mqtt_namespace, "s1", "g2", "occupancy")).value == (
        NOT_AUTHORIZED)
    assert own.subscribe(occupancy).is_failure  # counts go to the cloud, not to gateways


def test_a_gateway_enrolled_before_occupancy_is_granted_it(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    occupancy = gateway_topic(mqtt_namespace, "s1", "g1", "occupancy")
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        username = gateway.username
        control.execute({"command": "removeRoleACL", "rolename": username,  # an older role
                         "acltype": "publishClientSend", "topic": occupancy})
    assert gateway.client_id is not None
    own = open_session(sessions, secure_broker, gateway, gateway.client_id)
    assert own.publish(occupancy).value == NOT_AUTHORIZED
    with admin(secure_broker) as control:
        granted = control.grant_missing_acls(tenant=mqtt_namespace, store="s1", gateway="g1")
        again = control.grant_missing_acls(tenant=mqtt_namespace, store="s1", gateway="g1")
    assert granted == [f"publishClientSend {occupancy}"]
    assert again == []
    assert not own.publish(occupancy).is_failure  # accepted (nobody subscribed here)


def test_the_orchestrator_pushes_config_to_the_gateway(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        orchestrator = control.add_orchestrator(username=f"orchestrator-{mqtt_namespace}")
    config = gateway_topic(mqtt_namespace, "s1", "g1", "config")
    assert gateway.client_id is not None
    receiver = open_session(sessions, secure_broker, gateway, gateway.client_id)
    assert not receiver.subscribe(config).is_failure
    assert orchestrator.client_id == orchestrator.username
    sender = open_session(sessions, secure_broker, orchestrator, orchestrator.client_id)
    assert sender.publish(config, b'{"schema_version": "1.0"}').value == 0
    assert receiver.received.wait(WAIT_S)
    assert (
        sender.publish(gateway_topic(mqtt_namespace, "s1", "g1", "presence")).value
        == NOT_AUTHORIZED
    )


def largest_batch(tenant: str, store: str, gateway: str) -> bytes:
    """The largest presence message a gateway sends: as many events as the publisher puts
    in one (it stops at the payload limit), every field at its longest."""
    seen = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    key = "k" * 16

    def event(i: int) -> PresenceEvent:
        return PresenceEvent(
            event_id=f"{i:032x}", tenant=tenant, store=store, gateway=gateway,
            pseudonym=f"{key}:{i:032x}", key_id=key, scope=PseudonymScope.STABLE,
            kind="wifi_association", randomized=False, transition=Transition.DWELL,
            zone="z" * 64, rssi=-100.123456789, first_seen=seen,
            last_seen=seen + timedelta(seconds=86399.999999), dwell_s=86399.999999,
            sightings=123456789,
        )

    events = [event(i) for i in range(MAX_BATCH_EVENTS)]

    def batch(count: int) -> bytes:
        return encode_presence_batch(PresenceBatch(
            tenant=tenant, store=store, gateway=gateway, sent_at=seen, events=events[:count]))

    low, high = 1, MAX_BATCH_EVENTS  # the most events whose batch fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(batch(middle)) <= MAX_PAYLOAD_BYTES else (
            low, middle - 1)
    return batch(low)


def test_a_full_presence_batch_passes_and_a_larger_packet_is_refused(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    """The broker's packet limit (provisioning.local_broker.broker_limits) takes the
    largest message a gateway sends, on the longest topic, and disconnects a client
    sending more before forwarding anything of it."""
    store, gateway_id = "s" * 64, "g" * 64
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store=store, gateway=gateway_id)
        orchestrator = control.add_orchestrator(username=f"orchestrator-{mqtt_namespace}")
    assert gateway.client_id is not None
    presence = gateway_topic(mqtt_namespace, store, gateway_id, "presence")
    assert orchestrator.client_id is not None
    worker = open_session(sessions, secure_broker, orchestrator, orchestrator.client_id)
    assert not worker.subscribe(presence).is_failure

    own = open_session(sessions, secure_broker, gateway, gateway.client_id)
    assert own.connect_properties is not None
    announced = own.connect_properties.MaximumPacketSize  # type: ignore[attr-defined]
    assert announced == MAX_PACKET_BYTES
    largest = largest_batch(mqtt_namespace, store, gateway_id)
    assert MAX_PAYLOAD_BYTES - 1024 < len(largest) <= MAX_PAYLOAD_BYTES
    assert own.publish(presence, largest).value == 0
    assert worker.received.wait(WAIT_S)
    assert decode_presence_batch(worker.messages[0][1]) is not None
    own.close()

    # An MQTT 3.1.1 client is told no limit: the broker enforces it all the same.
    worker.received.clear()
    old = open_session(sessions, secure_broker, gateway, gateway.client_id,
                       MQTTProtocolVersion.MQTTv311)
    oversized = b"x" * MAX_PACKET_BYTES
    old.client.publish(presence, oversized, qos=1)
    assert old.disconnected.wait(WAIT_S), "the broker kept a client sending too much"
    assert not worker.received.wait(0.2)
    assert len(worker.messages) == 1


def test_wrong_password_wrong_client_id_and_revoked_gateways_are_refused(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        assert gateway.client_id is not None
        wrong = MqttCredentials(gateway.username, "not-the-password")
        refused = open_session(sessions, secure_broker, wrong, gateway.client_id)
        assert refused.connect_reason is not None
        assert refused.connect_reason.is_failure

        hijack = open_session(sessions, secure_broker, gateway, "someone-else")
        assert hijack.connect_reason is not None
        assert hijack.connect_reason.is_failure

        control.revoke_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        revoked = open_session(sessions, secure_broker, gateway, gateway.client_id)
        assert revoked.connect_reason is not None
        assert revoked.connect_reason.is_failure


def test_every_login_connects_only_as_its_own_client_id(
    secure_broker: BrokerFiles, mqtt_namespace: str, sessions: list[Session]
) -> None:
    """MQTT hands a client id's session to whoever connects with it last, so a login that
    could pick any id could knock a gateway offline. Each login is pinned to its own: an
    orchestrator login cannot take a gateway's id, a gateway's login cannot take the
    orchestrator's, and the orchestrator's two logins cannot take each other's."""
    with admin(secure_broker) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        worker = control.add_orchestrator(username=f"orch-{mqtt_namespace}",
                                          client_id=f"ingest-{mqtt_namespace}")
        publisher = control.add_config_publisher(username=f"orch-{mqtt_namespace}-config")
        for name in (gateway.username, "gw.anything"):
            with pytest.raises(DynsecError, match="gateways'"):
                control.add_orchestrator(username=f"orch2-{mqtt_namespace}", client_id=name)
            with pytest.raises(DynsecError, match="gateways'"):
                control.add_config_publisher(username=name)
    assert (worker.client_id, publisher.client_id) == (
        f"ingest-{mqtt_namespace}", publisher.username)
    assert gateway.client_id is not None
    online = open_session(sessions, secure_broker, gateway, gateway.client_id)
    config = gateway_topic(mqtt_namespace, "s1", "g1", "config")
    assert not online.subscribe(config).is_failure

    for login, other_id in [(worker, gateway.client_id), (publisher, gateway.client_id),
                            (gateway, worker.client_id), (gateway, publisher.client_id),
                            (worker, publisher.client_id), (publisher, worker.client_id),
                            (worker, worker.username)]:
        assert other_id is not None
        hijack = open_session(sessions, secure_broker, login, other_id)
        assert hijack.connect_reason is not None
        assert hijack.connect_reason.value == NOT_AUTHORIZED, (login.username, other_id)
    # The gateway was never cut off: it is still connected, publishing and receiving.
    assert online.client.is_connected()
    presence = gateway_topic(mqtt_namespace, "s1", "g1", "presence")
    assert not online.publish(presence).is_failure

    # Each as its own id: the config publisher writes configs and reads nothing.
    assert publisher.client_id is not None
    sender = open_session(sessions, secure_broker, publisher, publisher.client_id)
    assert not sender.connect_reason.is_failure  # type: ignore[union-attr]
    assert sender.publish(config, b'{"schema_version": "1.0"}').value == 0
    assert online.received.wait(WAIT_S)
    assert sender.publish(presence).value == NOT_AUTHORIZED
    assert sender.subscribe(f"vitrina/v1/{mqtt_namespace}/+/+/presence").is_failure
    assert worker.client_id is not None
    ingest = open_session(sessions, secure_broker, worker, worker.client_id)
    assert not ingest.connect_reason.is_failure  # type: ignore[union-attr]


def test_duplicate_enrolment_is_a_clear_error(
    secure_broker: BrokerFiles, mqtt_namespace: str
) -> None:
    with admin(secure_broker) as control:
        control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        with pytest.raises(DynsecError, match="createRole: Role already exists"):
            control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")


#: An MQTT 3.1.1 CONNECT for client id "test", sent in the clear.
PLAIN_CONNECT = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test"
CONNACK = 0x20


def test_plain_connections_get_no_connack(secure_broker: BrokerFiles) -> None:
    with socket.create_connection(("127.0.0.1", secure_broker.port), timeout=WAIT_S) as sock:
        sock.sendall(PLAIN_CONNECT)
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(bytes([CONNACK])), answer


def test_a_broker_certificate_from_another_authority_is_refused(
    secure_broker: BrokerFiles, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(make_certificate_authority("Someone else").certificate_pem())
    stranger = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    stranger.tls_set(ca_certs=str(other_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect("localhost", secure_broker.port)


def test_admin_credentials_can_be_loaded_back(secure_broker: BrokerFiles) -> None:
    loaded = load_broker_files(secure_broker.directory, port=secure_broker.port)
    assert loaded.admin == secure_broker.admin
    assert secure_broker.admin_file.stat().st_mode & 0o077 == 0
    assert secure_broker.ca_key.stat().st_mode & 0o077 == 0
