"""A gateway's config bundle: the edge TOML and the broker's CA, ready to copy to the device.

The bundle holds the gateway's broker password and the tenant key, so it is written
readable by its owner only; the installer copies it to /etc/vitrina/ and forgets it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioning.broker_security import MqttCredentials
from shared.pseudonym import TenantKey

BUNDLE_CONFIG = "edge.toml"
BUNDLE_CA = "ca.crt"
#: Where the systemd unit expects the bundle on the gateway.
INSTALLED_DIRECTORY = Path("/etc/vitrina")


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    tenant: str
    store: str
    gateway: str


def _quoted(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(value)


def render_edge_config(
    *,
    identity: GatewayIdentity,
    credentials: MqttCredentials,
    broker_host: str,
    broker_port: int,
    tenant_keys: Sequence[TenantKey],
    ca_path: Path,
    timezone: str,
    seal_key_file: Path | None = None,
) -> str:
    """The gateway's `edge.toml`. The first key is the active one; the others stay so
    that pseudonyms made under them still link while the tenant rotates keys.
    `seal_key_file`: the gateway's own private sealing key (made on the device at
    enrolment), which opens the keys of later rotations."""
    if not tenant_keys:
        raise ValueError("a gateway needs at least one tenant key")
    client_id = credentials.client_id or credentials.username
    keys: list[str] = []
    for key in tenant_keys:
        keys += [
            "[[keys.key]]",
            f"key_id = {_quoted(key.key_id)}",
            f"secret = {_quoted(key.secret.hex())}",
            "",
        ]
    return "\n".join(
        [
            "# Vitrina gateway configuration, made at enrolment. Readable by the agent only.",
            f"timezone = {_quoted(timezone)}",
            "",
            "[identity]",
            f"tenant = {_quoted(identity.tenant)}",
            f"store = {_quoted(identity.store)}",
            f"gateway = {_quoted(identity.gateway)}",
            "",
            "[keys]",
            f"active = {_quoted(tenant_keys[0].key_id)}",
            *([f"seal_key_file = {_quoted(str(seal_key_file))}"] if seal_key_file else []),
            "",
            *keys,
            "[mqtt]",
            f"host = {_quoted(broker_host)}",
            f"port = {broker_port}",
            "tls = true",
            f"ca_file = {_quoted(str(ca_path))}",
            f"username = {_quoted(credentials.username)}",
            f"password = {_quoted(credentials.password)}",
            f"client_id = {_quoted(client_id)}",
            "",
        ]
    )


def write_bundle(
    directory: Path,
    *,
    identity: GatewayIdentity,
    credentials: MqttCredentials,
    broker_host: str,
    broker_port: int,
    tenant_key: TenantKey,
    ca_certificate: Path,
    timezone: str = "UTC",
    installed_directory: Path = INSTALLED_DIRECTORY,
) -> Path:
    """Write `edge.toml` and `ca.crt` into `directory`; return the config's path.

    The config names the CA where it will be installed (`installed_directory`), so
    the bundle works once copied to the gateway.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    shutil.copyfile(ca_certificate, directory / BUNDLE_CA)
    config = directory / BUNDLE_CONFIG
    config.touch(mode=0o600)
    config.write_text(
        render_edge_config(
            identity=identity,
            credentials=credentials,
            broker_host=broker_host,
            broker_port=broker_port,
            tenant_keys=[tenant_key],
            ca_path=installed_directory / BUNDLE_CA,
            timezone=timezone,
        )
    )
    return config
