"""Gateways registered, enrolled by code, configured and revoked through the API, against
a real Mosquitto with dynamic security: the login a code yields really connects, a
revocation really ends its session, a config really arrives retained and the gateway's
heartbeat really acknowledges it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import col, select

from cloud.audit import AuditEntry
from cloud.db import session_scope
from cloud.gateways.codes import CODE_ALPHABET
from cloud.gateways.models import RegisteredGateway
from cloud.presence.models import GatewayHealth
from provisioning.broker_security import BrokerFiles
from provisioning.cli import main as provision
from shared.status import decode_gateway_config
from tests.cloud.factories import KEY_ID, KEY_SECRET
from tests.cloud.gateway_support import (
    STORE,
    Cloud,
    gateway_cloud_settings,
    gateway_login,
    make_cloud,
    running_agent,
    write_bundle,
)
from tests.cloud.running import running_worker, wait_for
from tests.docs.snippets import snippet

ROOT = Path(__file__).resolve().parents[3]
CODE_FORMAT = re.compile(rf"^[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}$")
REFUSED = "this enrolment code cannot be used"


@pytest.fixture
def cloud(engine: Engine, migrated_url: str, tenant: str, secure_broker: BrokerFiles
          ) -> Iterator[Cloud]:
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=secure_broker)
    with make_cloud(engine, settings, tenant) as made:
        yield made


def test_a_code_is_shown_once_stored_hashed_and_yields_a_login_that_connects(
    cloud: Cloud, tmp_path: Path
) -> None:
    created = cloud.add_gateway()
    code = created["code"]
    assert CODE_FORMAT.fullmatch(code)
    assert created["command"].endswith(f"vitrina-edge enrol --code {code} --cloud "
                                       "http://testserver")
    # The command docs/console.md shows is this one, for its own code and address.
    documented = snippet("docs/console.md", "console-enrol").text.strip()
    assert created["command"] == re.sub(
        r"--code \S+ --cloud \S+", f"--code {code} --cloud http://testserver", documented)
    assert created["gateway"]["state"] == "pending"
    listed = cloud.client.get(cloud.path(), headers=cloud.headers).json()
    assert [row["gateway"] for row in listed] == ["gw-1"]
    assert code not in json.dumps(listed)
    with cloud.engine.connect() as connection:
        everything = "\n".join(repr(tuple(row)) for table in ("gateway_registry", "audit_entry")
                               for row in connection.execute(text(f"SELECT * FROM {table}")))
    assert code not in everything
    assert code.replace("-", "") not in everything
    with session_scope(cloud.engine) as session:
        row = session.exec(select(RegisteredGateway)).one()
        assert row.code_hash is not None
        assert len(row.code_hash) == 64

    enrolled = cloud.enrol(code.lower().replace("-", " "))  # as someone may type it
    assert enrolled.status_code == 200, enrolled.text
    bundle = enrolled.json()
    assert (bundle["tenant"], bundle["store"], bundle["gateway"]) == (cloud.tenant, STORE, "gw-1")
    config = write_bundle(tmp_path / "bundle", bundle["files"])
    assert 'ca_file = "/etc/vitrina/ca.crt"' in bundle["files"]["edge.toml"]
    assert 'timezone = "Europe/Madrid"' in bundle["files"]["edge.toml"]
    (tmp_path / "bundle" / "edge.toml").write_text(
        bundle["files"]["edge.toml"].replace("/etc/vitrina/ca.crt",
                                             str(tmp_path / "bundle" / "ca.crt")))
    with gateway_login(config) as login:
        assert login.accepted, login.reason

    replayed = cloud.enrol(code)
    assert replayed.status_code == 403
    assert replayed.json()["detail"].startswith(REFUSED)
    state = cloud.client.get(cloud.path(), headers=cloud.headers).json()[0]
    assert state["state"] == "enrolled"
    with session_scope(cloud.engine) as session:
        actions = [entry.action for entry in
                   session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))]
    assert actions == ["store.put", "gateway.create", "gateway.enrol"]


def test_expired_revoked_replaced_wrong_and_other_tenant_codes_get_one_answer(
    cloud: Cloud
) -> None:
    answers: dict[str, Any] = {}
    expired = cloud.add_gateway("gw-expired")["code"]
    revoked = cloud.add_gateway("gw-revoked")["code"]
    replaced = cloud.add_gateway("gw-replaced")["code"]
    other_tenant = cloud.add_gateway("gw-other")["code"]
    assert cloud.client.delete(cloud.path("/gw-revoked"), headers=cloud.headers
                               ).json()["state"] == "revoked"
    renewed = cloud.client.post(cloud.path("/gw-replaced/code"), headers=cloud.headers)
    assert renewed.status_code == 201
    assert renewed.json()["code"] != replaced
    answers["revoked"] = cloud.enrol(revoked)
    answers["replaced"] = cloud.enrol(replaced)
    answers["other tenant"] = cloud.enrol(other_tenant, tenant="another-shop")
    answers["wrong"] = cloud.enrol("AAAA-AAAA")
    answers["malformed"] = cloud.enrol("0000-00")
    assert cloud.enrol(renewed.json()["code"]).status_code == 200  # the new code works
    cloud.clock.now += timedelta(hours=24, seconds=1)
    answers["expired"] = cloud.enrol(expired)
    for name, answer in answers.items():
        assert answer.status_code == 403, name
        assert answer.json() == answers["wrong"].json(), name
    states = {row["gateway"]: row["state"] for row in
              cloud.client.get(cloud.path(), headers=cloud.headers).json()}
    assert states == {"gw-expired": "pending", "gw-revoked": "revoked",
                      "gw-replaced": "enrolled", "gw-other": "pending"}


def test_wrong_codes_from_one_address_are_slowed_down(cloud: Cloud) -> None:
    code = cloud.add_gateway()["code"]
    free = cloud.settings.gateways.enrol_free_failures
    for _ in range(free + 1):
        assert cloud.enrol("AAAA-AAAA").status_code == 403
    blocked = cloud.enrol(code)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    cloud.clock.now += timedelta(seconds=cloud.settings.gateways.enrol_backoff_s + 1)
    assert cloud.enrol(code).status_code == 200  # the right code was not used up


def test_the_gateways_installer_is_served_as_the_package_ships_it(cloud: Cloud) -> None:
    answer = cloud.client.get("/install/gateway.sh")  # no key: it holds no secret
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/x-shellscript")
    shipped = ROOT / "provisioning" / "install" / "install-gateway.sh"
    assert answer.content == shipped.read_bytes()


def test_a_code_is_only_reissued_before_enrolment_and_gateways_are_unique(cloud: Cloud) -> None:
    code = cloud.add_gateway()["code"]
    again = cloud.client.post(cloud.path(), json={"gateway": "gw-1"}, headers=cloud.headers)
    assert again.status_code == 409
    assert cloud.enrol(code).status_code == 200
    refused = cloud.client.post(cloud.path("/gw-1/code"), headers=cloud.headers)
    assert refused.status_code == 409
    assert "enrolled" in refused.json()["detail"]
    bad = cloud.client.post(cloud.path(), json={"gateway": "Not An Id"}, headers=cloud.headers)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "gateway"]
    missing = cloud.client.post(f"/tenants/{cloud.tenant}/stores/nowhere/gateways",
                                json={"gateway": "gw-2"}, headers=cloud.headers)
    assert missing.status_code == 404


def test_without_the_broker_admin_login_enrolment_is_503_naming_the_setting(
    engine: Engine, migrated_url: str, tenant: str, secure_broker: BrokerFiles
) -> None:
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=secure_broker, with_admin=False)
    with make_cloud(engine, settings, tenant) as cloud:
        code = cloud.add_gateway()["code"]
        answer = cloud.enrol(code)
    assert answer.status_code == 503
    assert "gateways.broker_admin_username" in answer.json()["detail"]
    with session_scope(engine) as session:
        assert session.exec(select(RegisteredGateway)).one().enrolled_at is None  # still good


def test_revoking_ends_the_gateways_session_and_its_login(cloud: Cloud, tmp_path: Path) -> None:
    code = cloud.add_gateway()["code"]
    bundle = cloud.enrol(code, directory=str(tmp_path / "bundle")).json()
    config = write_bundle(tmp_path / "bundle", bundle["files"])
    with gateway_login(config) as login:
        assert login.accepted
        revoked = cloud.client.delete(cloud.path("/gw-1"), headers=cloud.headers)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["state"] == "revoked"
        assert login.disconnected.wait(10), "the broker kept the revoked gateway's session"
    with gateway_login(config) as again:
        assert not again.accepted
    assert cloud.enrol(code).status_code == 403
    put = cloud.client.put(cloud.path("/gw-1/config"), json={"rssi_floor": -80},
                           headers=cloud.headers)
    assert put.status_code == 409
    with session_scope(cloud.engine) as session:
        entry = session.exec(select(AuditEntry).where(
            col(AuditEntry.action) == "gateway.revoke")).one()
    assert entry.target == f"gateway:{STORE}/gw-1"
    assert (entry.before["state"], entry.after["state"]) == ("enrolled", "revoked")


def test_a_config_is_published_retained_and_the_heartbeat_acknowledges_it(
    cloud: Cloud, tmp_path: Path
) -> None:
    code = cloud.add_gateway()["code"]
    bundle = cloud.enrol(code, directory=str(tmp_path / "bundle")).json()
    config_path = write_bundle(tmp_path / "bundle", bundle["files"])
    bad = cloud.client.put(cloud.path("/gw-1/config"), headers=cloud.headers, json={
        "zones": [{"zone": "door", "min_rssi": -300}], "rssi_flor": -80})
    assert bad.status_code == 422
    locations = [problem["loc"] for problem in bad.json()["detail"]]
    assert ["body", "zones", "0", "min_rssi"] in locations
    assert ["body", "rssi_flor"] in locations

    desired = {"rssi_floor": -85, "zones": [{"zone": "window", "min_rssi": -70},
                                            {"zone": "door", "min_rssi": -55}],
               "sources": {"wifi": False}}
    saved = cloud.client.put(cloud.path("/gw-1/config"), json=desired, headers=cloud.headers)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["desired_version"] == 1
    assert body["published_at"] is not None
    assert [zone["zone"] for zone in body["desired"]["zones"]] == ["door", "window"]
    with gateway_login(config_path) as login:
        wait_for(lambda: login.configs, what="the retained config")
        received = decode_gateway_config(login.configs[-1])
    assert received.version == 1
    assert received.rssi_floor == -85
    assert received.sources is not None
    assert received.sources.muted() == {"wifi"}

    with running_worker(cloud.settings, cloud.engine):
        with running_agent(config_path, tmp_path / "outbox.db") as agent:
            def applied() -> Any:
                found = cloud.client.get(cloud.path("/gw-1/config"), headers=cloud.headers).json()
                return found["applied"] and found["applied"]["version"] == 1 and found
            wait_for(applied, what="the heartbeat acknowledging version 1")
            assert agent.tracker.thresholds.rssi_floor == -85
            # a key id the gateway does not hold: it keeps version 1 and says why
            refused = cloud.client.put(cloud.path("/gw-1/config"), headers=cloud.headers,
                                       json={"active_key_id": "k9"})
            assert refused.json()["desired_version"] == 2

            def refusal() -> Any:
                found = cloud.client.get(cloud.path("/gw-1/config"), headers=cloud.headers).json()
                return found["applied"]["refused_version"] == 2 and found["applied"]
            answer = wait_for(refusal, what="the heartbeat refusing version 2")
        # the agent's retained offline status, stored before the worker stops
        wait_for(lambda: not cloud.client.get(cloud.path("/gw-1/health"),
                                              headers=cloud.headers).json()["current"]["online"],
                 what="the offline status")
    assert answer["version"] == 1
    assert "k9" in answer["refused_reason"]
    # the heartbeats' figures, stored with the gateway's history (one sample per 5 minutes)
    health = cloud.client.get(cloud.path("/gw-1/health"), headers=cloud.headers)
    assert health.status_code == 200, health.text
    history = health.json()
    current = history["current"]
    assert current["online"] is False
    assert current["config_version"] == 1
    assert current["cpu_percent"] is not None
    assert current["memory_bytes"] > 10 * 2**20
    assert current["disk_free_bytes"] > 0
    assert history["slot_s"] == 300
    assert history["retention_days"] == 30
    assert 1 <= len(history["points"]) <= 2  # a 5-minute slot, or two if one just ended
    assert history["points"][-1]["config_version"] == 1
    assert history["points"][-1]["memory_bytes"] == current["memory_bytes"]
    # the agent has stopped by now (its clean offline status), and keeps refusing version 2
    assert [alert["code"] for alert in history["alerts"]] == ["offline", "config_refused"]
    unknown = cloud.client.get(cloud.path("/gw-9/health"), headers=cloud.headers)
    assert unknown.status_code == 404
    with session_scope(cloud.engine) as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.action == "gateway.config")
                               .order_by(col(AuditEntry.id))).all()
    assert [entry.after["version"] for entry in entries] == [1, 2]


def test_a_store_with_gateways_not_revoked_cannot_be_deleted(cloud: Cloud) -> None:
    cloud.add_gateway("gw-door")
    cloud.add_gateway("gw-till")
    cloud.add_gateway("gw-old")
    assert cloud.client.delete(cloud.path("/gw-old"), headers=cloud.headers).status_code == 200
    store = f"/tenants/{cloud.tenant}/stores/{STORE}"
    refused = cloud.client.delete(store, headers=cloud.headers)
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "gw-door, gw-till" in detail
    assert "gw-old" not in detail
    assert detail.endswith("revoke them first")
    assert cloud.client.get(store, headers=cloud.headers).status_code == 200  # still there
    for gateway in ("gw-door", "gw-till"):
        revoked = cloud.client.delete(cloud.path(f"/{gateway}"), headers=cloud.headers)
        assert revoked.status_code == 200
    assert cloud.client.delete(store, headers=cloud.headers).status_code == 200


def test_a_registered_gateway_enrolled_offline_is_revoked_with_its_login(
    cloud: Cloud, secure_broker: BrokerFiles, tmp_path: Path
) -> None:
    cloud.add_gateway("gw-1")  # registered, but its code is never used...
    key_file = tmp_path / "tenant.key"
    key_file.write_text(KEY_SECRET)
    enrolled = provision([  # ...it is enrolled offline, as a site without a route does
        "enrol-gateway", "--broker-host", "localhost", "--broker-dir",
        str(secure_broker.directory), "--broker-port", str(secure_broker.port),
        "--tenant", cloud.tenant, "--store", STORE, "--gateway", "gw-1", "--key-id", KEY_ID,
        "--key-file", str(key_file), "--out", str(tmp_path / "bundle"),
        "--installed-dir", str(tmp_path / "bundle"), "--public-host", "localhost",
    ])
    assert enrolled == 0
    with gateway_login(tmp_path / "bundle" / "edge.toml") as login:
        assert login.accepted, login.reason
        revoked = cloud.client.delete(cloud.path("/gw-1"), headers=cloud.headers)
        assert revoked.status_code == 200, revoked.text
        assert login.disconnected.wait(10), "the offline login outlived the revocation"
    with gateway_login(tmp_path / "bundle" / "edge.toml") as again:
        assert not again.accepted


def test_a_gateway_that_reports_but_is_not_registered_is_named_as_enrolled_offline(
    cloud: Cloud
) -> None:
    with session_scope(cloud.engine) as session:
        session.add(GatewayHealth(tenant=cloud.tenant, store=STORE, gateway="gw-offline",
                                  online=True, status_sent_at=cloud.clock.now,
                                  received_at=cloud.clock.now))
        session.commit()
    answers = [
        cloud.client.delete(cloud.path("/gw-offline"), headers=cloud.headers),
        cloud.client.put(cloud.path("/gw-offline/config"), json={"rssi_floor": -80},
                         headers=cloud.headers),
        cloud.client.get(cloud.path("/gw-offline/config"), headers=cloud.headers),
    ]
    for answer in answers:
        assert answer.status_code == 404
        assert "not registered here: it was enrolled offline" in answer.json()["detail"]
        assert "vitrina-provision revoke-gateway" in answer.json()["detail"]
    unknown = cloud.client.delete(cloud.path("/gw-nowhere"), headers=cloud.headers)
    assert unknown.status_code == 404
    assert "enrolled offline" not in unknown.json()["detail"]
