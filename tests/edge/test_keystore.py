"""Keys the cloud delivers sealed in a config: opened all or none, kept in the key store
(still sealed, readable by the agent only) so a restart keeps them, and a key the cloud
no longer lists erased from the pipeline and from the store, even one of the config file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.agent import EdgeAgent
from edge.keystore import GatewayKeys, KeyDeliveryError
from edge.settings import EdgeSettings
from shared.errors import ContractError
from shared.pseudonym import TenantKey
from shared.sealing import (
    SealContext,
    new_private_key,
    parse_public_key,
    private_key_pem,
    seal_key,
)
from shared.status import GatewayConfig
from tests.edge.support import SECRET_HEX, make_settings

K1 = TenantKey.from_text("k1", SECRET_HEX)
K3 = TenantKey.from_text("k3", "c3" * 32)


def sealed_settings(tmp_path: Path, private: X25519PrivateKey | None = None) -> EdgeSettings:
    seal_file = tmp_path / "seal.key"
    seal_file.write_text(private_key_pem(private or new_private_key()))
    settings = make_settings(outbox=tmp_path / "outbox.db")
    return settings.model_copy(update={"keys": settings.keys.model_copy(
        update={"seal_key_file": seal_file})})


def config_for(settings: EdgeSettings, version: int, keys: list[TenantKey], active: str,
               *, gateway: str | None = None) -> GatewayConfig:
    """What the cloud sends: `keys` sealed to this gateway's public key."""
    assert settings.keys.seal_key_file is not None
    public = GatewayKeys(settings).public_key
    assert public is not None
    recipient = parse_public_key(public)
    identity = settings.identity
    context = SealContext(tenant=identity.tenant, store=identity.store,
                          gateway=gateway or identity.gateway, config_version=version)
    return GatewayConfig(version=version, active_key_id=active, keys=[
        seal_key(key, recipient=recipient, context=context).to_text() for key in keys])


def test_delivered_keys_replace_the_held_ones_survive_a_restart_and_retire(
    tmp_path: Path
) -> None:
    settings = sealed_settings(tmp_path)
    agent = EdgeAgent(settings, [], live=False)
    assert agent.status().key_ids == ["k1", "k2"]

    agent.apply_config(config_for(settings, 5, [K1, K3], "k3"))
    assert agent.pseudonymizer.active_key_id == "k3"
    assert agent.status().key_ids == ["k1", "k3"]  # k2 (of the file) is not listed: erased
    store = settings.key_store_path
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    text = store.read_text()
    assert K3.secret.hex() not in text
    assert SECRET_HEX not in text
    agent.outbox.close()

    restarted = EdgeAgent(settings, [], live=False)
    assert restarted.pseudonymizer.active_key_id == "k3"
    assert restarted.status().key_ids == ["k1", "k3"]
    restarted.apply_config(config_for(settings, 6, [K3], "k3"))  # k1 retired
    assert restarted.status().key_ids == ["k3"]
    assert '"k1"' in store.read_text()  # only as dropped: the file's copy stays unloaded
    assert "v1.k1." not in store.read_text()
    restarted.outbox.close()

    again = EdgeAgent(settings, [], live=False)
    assert again.status().key_ids == ["k3"]
    assert again.status().active_key_id == "k3"
    again.outbox.close()


def test_keys_that_cannot_be_taken_refuse_the_config_and_change_nothing(
    tmp_path: Path
) -> None:
    settings = sealed_settings(tmp_path)
    agent = EdgeAgent(settings, [], live=False)
    elsewhere = config_for(settings, 5, [K1, K3], "k3", gateway="gw-2")
    with pytest.raises(ContractError, match="does not open on this gateway"):
        agent.apply_config(elsewhere)
    replayed = config_for(settings, 5, [K1, K3], "k3").model_copy(update={"version": 6})
    with pytest.raises(ContractError, match="another config version"):
        agent.apply_config(replayed)
    with pytest.raises(KeyDeliveryError, match="not among the keys"):
        agent.apply_config(config_for(settings, 7, [K1, K3], "k2"))
    assert agent.status().key_ids == ["k1", "k2"]
    assert agent.pseudonymizer.active_key_id == "k1"
    assert not settings.key_store_path.exists()

    plain = make_settings(outbox=tmp_path / "plain" / "outbox.db")
    old = EdgeAgent(plain, [], live=False)
    with pytest.raises(KeyDeliveryError, match="re-enrol it to receive keys"):
        old.apply_config(config_for(settings, 5, [K1, K3], "k3"))
    agent.outbox.close()
    old.outbox.close()


def test_a_store_of_another_enrolment_is_ignored(tmp_path: Path) -> None:
    first = sealed_settings(tmp_path)
    agent = EdgeAgent(first, [], live=False)
    agent.apply_config(config_for(first, 5, [K3], "k3"))
    agent.outbox.close()
    reenrolled = sealed_settings(tmp_path)  # a new key pair at the same place
    assert GatewayKeys(reenrolled).ring.active == "k1"
    assert sorted(GatewayKeys(reenrolled).ring.keys) == ["k1", "k2"]
