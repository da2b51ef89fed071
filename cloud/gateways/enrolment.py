"""What a gateway receives for its code: the files `vitrina-provision enrol-gateway`
writes (`provisioning.bundle`), so the agent reads them unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cloud.settings import Settings
from provisioning.broker_security import MqttCredentials
from provisioning.bundle import BUNDLE_CA, BUNDLE_CONFIG, GatewayIdentity, render_edge_config
from shared.pseudonym import TenantKey

#: The gateway's private sealing key, which `vitrina-edge enrol` writes beside the config.
SEAL_KEY_FILE = "seal.key"


def bundle_files(
    settings: Settings, *, keys: Sequence[TenantKey], identity: GatewayIdentity,
    credentials: MqttCredentials, ca_certificate: str, timezone: str, directory: str,
    sealing: bool = False,
) -> dict[str, str]:
    """`edge.toml` (identity, the tenant's keys in use, active first, the broker login) and
    the broker's CA. The config names the CA where the device keeps the bundle
    (`directory`), and, for a gateway that sent a sealing key (`sealing`), the private
    key the device wrote there."""
    gateways, mqtt = settings.gateways, settings.mqtt
    config = render_edge_config(
        identity=identity, credentials=credentials,
        broker_host=gateways.public_host or mqtt.host,
        broker_port=gateways.public_port or mqtt.port,
        tenant_keys=keys,
        ca_path=Path(directory) / BUNDLE_CA,
        timezone=timezone,
        seal_key_file=Path(directory) / SEAL_KEY_FILE if sealing else None,
    )
    return {BUNDLE_CONFIG: config, BUNDLE_CA: ca_certificate}
