"""What a gateway receives for its code: the files `vitrina-provision enrol-gateway`
writes (`provisioning.bundle`), so the agent reads them unchanged."""

from __future__ import annotations

from pathlib import Path

from cloud.settings import Settings, TenantSettings
from provisioning.broker_security import MqttCredentials
from provisioning.bundle import BUNDLE_CA, BUNDLE_CONFIG, GatewayIdentity, render_edge_config


def bundle_files(
    settings: Settings, *, tenant: TenantSettings, identity: GatewayIdentity,
    credentials: MqttCredentials, ca_certificate: str, timezone: str, directory: str,
) -> dict[str, str]:
    """`edge.toml` (identity, the tenant's keys, the broker login) and the broker's CA.
    The config names the CA where the device keeps the bundle (`directory`)."""
    gateways, mqtt = settings.gateways, settings.mqtt
    config = render_edge_config(
        identity=identity, credentials=credentials,
        broker_host=gateways.public_host or mqtt.host,
        broker_port=gateways.public_port or mqtt.port,
        tenant_keys=tenant.tenant_keys(),
        ca_path=Path(directory) / BUNDLE_CA,
        timezone=timezone,
    )
    return {BUNDLE_CONFIG: config, BUNDLE_CA: ca_certificate}
