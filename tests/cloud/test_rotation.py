"""A tenant's key rotation, step by step (`cloud.rotation.flow`): which key is active and
which are listed or retired, what each gateway's config carries, when a step is refused,
and a re-registered device keeping its customer while it gains its new links. On SQLite
alone (PostgreSQL runs the whole rotation in tests/test_key_rotation.py)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from cloud.cli import app
from cloud.customers import crud
from cloud.customers.models import AppBeaconRegistration, CustomerCreate, IdentityLink
from cloud.db import session_scope
from cloud.gateways.models import RegisteredGateway
from cloud.presence.crud import upsert_gateway_status
from cloud.presence.models import GatewayHealth
from cloud.rotation.flow import (
    RotationRefusedError,
    UnknownKeyError,
    activate,
    deliver,
    retire,
    sync_ring,
)
from cloud.settings import TenantSettings, get_settings
from shared.sealing import (
    SealContext,
    SealedKey,
    new_private_key,
    open_key,
    public_key_text,
)
from shared.status import GatewayStatus
from tests.cloud.factories import KEY_ID, KEY_SECRET, START

K2_SECRET = "d2" * 32
ONE_KEY = TenantSettings.model_validate({"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]})
#: The new key added at the front: the order no longer says which key is active.
TWO_KEYS = TenantSettings.model_validate({"keys": [{"key_id": "k2", "secret": K2_SECRET},
                                                   {"key_id": KEY_ID, "secret": KEY_SECRET}]})
SEALING = new_private_key()
NOW = START + timedelta(hours=1)


def add_gateways(session: Session, tenant: str) -> None:
    """gw-new enrolled with a sealing key; gw-old before there were any."""
    for gateway, sealing in (("gw-new", public_key_text(SEALING)), ("gw-old", None)):
        session.add(RegisteredGateway(tenant=tenant, store="s1", gateway=gateway,
                                      created_at=START, enrolled_at=START,
                                      seal_public_key=sealing))
    session.flush()


def report(session: Session, tenant: str, gateway: str, *, active: str,
           keys: list[str] | None) -> None:
    session.merge(GatewayHealth(tenant=tenant, store="s1", gateway=gateway, online=True,
                                status_sent_at=NOW, received_at=NOW, active_key_id=active,
                                key_ids=keys))
    session.flush()


def config_of(session: Session, gateway: str) -> dict[str, object]:
    row = session.exec(select(RegisteredGateway).where(RegisteredGateway.gateway == gateway)).one()
    session.refresh(row)
    return row.config or {}


def opened(session: Session, tenant: str) -> dict[str, bytes]:
    """What gw-new would open from its saved config."""
    document = config_of(session, "gw-new")
    version, texts = document["version"], document["keys"]
    assert isinstance(version, int)
    assert isinstance(texts, list)
    context = SealContext(tenant=tenant, store="s1", gateway="gw-new", config_version=version)
    return {key.key_id: key.secret for key in (
        open_key(SealedKey.from_text(text), private_key=SEALING, context=context)
        for text in texts)}


def test_a_key_is_listed_delivered_activated_and_retired_with_each_step_checked(
    sqlite_engine: Engine, tenant: str
) -> None:
    with session_scope(sqlite_engine) as session:
        add_gateways(session, tenant)
        ring = sync_ring(session, tenant=tenant, settings=ONE_KEY, now=START)
        assert (ring.active, ring.held) == (KEY_ID, [KEY_ID])

        ring = sync_ring(session, tenant=tenant, settings=TWO_KEYS, now=NOW)
        assert (ring.active, ring.held) == (KEY_ID, [KEY_ID, "k2"])  # listed, not active
        saved = deliver(session, ring=ring, now=NOW)
        assert [row.gateway for row in saved] == ["gw-new"]  # nothing to seal for gw-old
        assert opened(session, tenant) == {KEY_ID: bytes.fromhex(KEY_SECRET),
                                           "k2": bytes.fromhex(K2_SECRET)}
        assert config_of(session, "gw-new")["active_key_id"] == KEY_ID
        assert K2_SECRET not in json.dumps(config_of(session, "gw-new"))
        assert deliver(session, ring=ring, now=NOW) == []  # already carried

        report(session, tenant, "gw-new", active=KEY_ID, keys=[KEY_ID])
        with pytest.raises(RotationRefusedError, match=r"do not report holding key 'k2'.*gw-new"):
            activate(session, tenant=tenant, settings=TWO_KEYS, key_id="k2", now=NOW)
        report(session, tenant, "gw-new", active=KEY_ID, keys=[KEY_ID, "k2"])
        report(session, tenant, "gw-old", active=KEY_ID, keys=None)
        with pytest.raises(RotationRefusedError, match=r"gw-old .*re-enrol it to receive keys"):
            activate(session, tenant=tenant, settings=TWO_KEYS, key_id="k2", now=NOW)
        ring, saved = activate(session, tenant=tenant, settings=TWO_KEYS, key_id="k2",
                               now=NOW, force=True)
        assert ring.active == "k2"
        assert sorted(row.gateway for row in saved) == ["gw-new", "gw-old"]
        assert config_of(session, "gw-old") == {"schema_version": "1.0", "version": 1,
                                                "active_key_id": "k2"}
        assert config_of(session, "gw-new")["active_key_id"] == "k2"

        with pytest.raises(RotationRefusedError, match="k2' is the tenant's active key"):
            retire(session, tenant=tenant, settings=TWO_KEYS, key_id="k2", now=NOW)
        with pytest.raises(RotationRefusedError, match=r"still the active key of .*gw-new"):
            retire(session, tenant=tenant, settings=TWO_KEYS, key_id=KEY_ID, now=NOW)
        report(session, tenant, "gw-new", active="k2", keys=[KEY_ID, "k2"])
        report(session, tenant, "gw-old", active="k2", keys=None)
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=NOW)
        crud.register_device(session, customer=customer, now=NOW,
                             registration=AppBeaconRegistration(kind="app_beacon",
                                                                install_id="inst-1"),
                             pseudonymizers=ring.linking())
        ring, saved = retire(session, tenant=tenant, settings=TWO_KEYS, key_id=KEY_ID, now=NOW)
        assert ring.states[KEY_ID].links_deleted == 1
        assert [row.gateway for row in saved] == ["gw-new"]
        assert opened(session, tenant) == {"k2": bytes.fromhex(K2_SECRET)}
        links = session.exec(select(IdentityLink.key_id)).all()
        assert links == ["k2"]
        session.commit()

    with session_scope(sqlite_engine) as session:  # the settings still list k1: unused
        ring = sync_ring(session, tenant=tenant, settings=TWO_KEYS, now=NOW)
        assert [p.key_id for p in ring.linking()] == ["k2"]
        assert retire(session, tenant=tenant, settings=TWO_KEYS, key_id=KEY_ID,
                      now=NOW)[1] == []  # again: nothing more to do
        with pytest.raises(RotationRefusedError, match="never comes back"):
            activate(session, tenant=tenant, settings=TWO_KEYS, key_id=KEY_ID, now=NOW)
        with pytest.raises(UnknownKeyError, match="add it to the tenant's keys"):
            activate(session, tenant=tenant, settings=TWO_KEYS, key_id="k9", now=NOW)


def test_a_process_without_a_key_in_use_refuses_to_deliver_rather_than_drop_it(
    sqlite_engine: Engine, tenant: str
) -> None:
    with session_scope(sqlite_engine) as session:
        add_gateways(session, tenant)
        sync_ring(session, tenant=tenant, settings=TWO_KEYS, now=NOW)
        behind = sync_ring(session, tenant=tenant, settings=ONE_KEY, now=NOW)  # not restarted
        assert behind.missing == ["k2"]
        with pytest.raises(RotationRefusedError, match=r"lack the secret of key.*k2"):
            deliver(session, ring=behind, now=NOW)


def test_a_device_registered_again_keeps_its_customer_and_gains_the_new_keys_links(
    sqlite_engine: Engine, tenant: str
) -> None:
    beacon = AppBeaconRegistration(kind="app_beacon", install_id="inst-42")
    with session_scope(sqlite_engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=NOW)
        first = crud.register_device(session, customer=customer, registration=beacon, now=NOW,
                                     pseudonymizers=ONE_KEY.pseudonymizers())
        again = crud.register_device(session, customer=customer, registration=beacon, now=NOW,
                                     pseudonymizers=TWO_KEYS.pseudonymizers())
        assert again.id == first.id
        owners = crud.customers_for_pseudonyms(session, tenant=tenant, pseudonyms=[
            crud.link_pseudonyms(beacon, [pseudonymizer])[0][1]
            for pseudonymizer in TWO_KEYS.pseudonymizers()])
        assert set(owners.values()) == {customer.id}
        assert len(owners) == 2
        assert sorted(crud.link_key_ids(session, device_id=first.id or 0)) == [KEY_ID, "k2"]


def test_the_command_shows_activates_and_retires(
    sqlite_engine: Engine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(sqlite_engine) as session:
        add_gateways(session, tenant)
        session.commit()
    monkeypatch.setenv("VITRINA_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("VITRINA_TENANTS", json.dumps({tenant: {"keys": [
        {"key_id": "k2", "secret": K2_SECRET}, {"key_id": KEY_ID, "secret": KEY_SECRET}]}}))
    monkeypatch.setenv("VITRINA_LOG_FORMAT", "text")

    def run(*arguments: str) -> tuple[int, str]:
        get_settings.cache_clear()
        handlers, level = logging.root.handlers[:], logging.root.level
        try:
            result = CliRunner().invoke(app, ["pseudonym-keys", *arguments, "--tenant", tenant])
        finally:
            get_settings.cache_clear()
            logging.root.handlers[:] = handlers
            logging.root.setLevel(level)
        return result.exit_code, result.output

    code, output = run("status")
    assert code == 0, output
    assert "active key k2" in output  # first listed when the tenant is first seen
    assert "s1/gw-old: not live" in output
    assert "re-enrol it to receive keys" in output
    code, output = run("retire", "k2")
    assert code == 1
    assert "refused: key 'k2' is the tenant's active key" in output
    code, output = run("retire", KEY_ID)
    assert code == 0, output
    assert "key k1 is retired; 1 gateway config(s) saved" in output
    assert "0 identity link(s) deleted" in output


def test_a_last_will_does_not_overwrite_what_the_last_heartbeat_said_of_the_keys(
    sqlite_engine: Engine, tenant: str
) -> None:
    """The will is composed when the agent starts: its key ids may be from before a
    rotation the gateway took since."""
    def upsert(online: bool, sent_at: timedelta, active: str, keys: list[str]) -> None:
        with session_scope(sqlite_engine) as session:
            upsert_gateway_status(session, received_at=NOW, status=GatewayStatus(
                tenant=tenant, store="s1", gateway="gw-new", online=online,
                sent_at=NOW + sent_at, active_key_id=active, key_ids=keys))
            session.commit()

    upsert(True, timedelta(0), "k2", [KEY_ID, "k2"])
    upsert(False, timedelta(seconds=5), KEY_ID, [KEY_ID])  # the will, from before
    with session_scope(sqlite_engine) as session:
        row = session.get(GatewayHealth, (tenant, "s1", "gw-new"))
        assert row is not None
        assert (row.online, row.active_key_id, row.key_ids) == (False, "k2", [KEY_ID, "k2"])
