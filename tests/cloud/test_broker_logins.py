"""The orchestrator's broker logins, each pinned to one client id: the config publisher
connects as its own, and a pinned ingest login cannot publish configs under a made-up
id (the refusal names the setting that fixes it)."""

from __future__ import annotations

import pytest

from cloud.gateways.broker import BrokerUnavailableError, publish_retained, publisher_login
from cloud.settings import MqttSettings
from provisioning.broker_security import BrokerFiles, DynsecAdmin
from shared.topics import gateway_topic
from tests.provisioning.test_broker_security import Session, open_session


def broker_settings(files: BrokerFiles, **changes: object) -> MqttSettings:
    return MqttSettings.model_validate({
        "host": "localhost", "port": files.port, "tls": True,
        "ca_file": str(files.ca_certificate), **changes})


def test_configs_go_out_as_the_publishers_pinned_id_only(
    secure_broker: BrokerFiles, mqtt_namespace: str,
) -> None:
    with DynsecAdmin(host="localhost", port=secure_broker.port, admin=secure_broker.admin,
                     ca_file=secure_broker.ca_certificate) as control:
        gateway = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="g1")
        worker = control.add_orchestrator(username=f"orch-{mqtt_namespace}")
        publisher = control.add_config_publisher(username=f"orch-{mqtt_namespace}-config")
    topic = gateway_topic(mqtt_namespace, "s1", "g1", "config")
    ingest_only = broker_settings(secure_broker, username=worker.username,
                                  password=worker.password, client_id=worker.client_id)
    assert publisher_login(ingest_only)[2].startswith(f"orch-{mqtt_namespace}-config-")
    with pytest.raises(BrokerUnavailableError, match=r"mqtt\.config_publisher"):
        publish_retained(ingest_only, topic, b'{"schema_version": "1.0"}')

    both = broker_settings(secure_broker, username=worker.username, password=worker.password,
                           client_id=worker.client_id, config_publisher={
                               "username": publisher.username,
                               "password": publisher.password})
    assert publisher_login(both)[2] == publisher.username
    sessions: list[Session] = []
    try:
        assert gateway.client_id is not None
        receiver = open_session(sessions, secure_broker, gateway, gateway.client_id)
        assert not receiver.subscribe(topic).is_failure
        publish_retained(both, topic, b'{"schema_version": "1.0"}')
        assert receiver.received.wait(10)
        assert receiver.messages == [(topic, b'{"schema_version": "1.0"}')]
    finally:
        for session in sessions:
            session.close()
