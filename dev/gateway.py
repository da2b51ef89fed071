"""A gateway on this machine that replays a recording: its config for a local broker,
and a recording made for one app install (the demo replays a recorded visit instead).

A visit is simulated through the gateway's own pipeline (decode, pseudonymize, track,
outbox, MQTT), so what the orchestrator receives is exactly what a store would send:
the pseudonym of the app's install id under the tenant's key, never the id itself.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from edge.captures import DEMO_APP_IBEACON_UUID, DEMO_APP_SERVICE_UUID
from edge.captures.generator.devices import approach, ble_address, ticks
from edge.captures.generator.frames import app_adverts
from edge.captures.generator.recorder import Recorder
from provisioning.local_broker import LocalBroker

#: The gateway's config template, next to this module.
CONFIG_TEMPLATE = Path(__file__).with_name("gateway.toml")
DEFAULT_TIMEZONE = "Europe/Madrid"
#: A simulated visit: the phone is near the door for this long, then gone. Long enough
#: for the gateway to see it enter and dwell, short enough to replay in a few seconds.
VISIT_SECONDS = 90.0
#: The app advertises about once a second while the shop's app is in the foreground.
ADVERT_PERIOD_S = 1.0
#: A scan response is 31 bytes: the service data's length, type and 128-bit UUID take 18.
MAX_INSTALL_ID_CHARS = 13


class InstallIdError(ValueError):
    """An install id the app's advert cannot carry."""


def write_gateway_config(
    path: Path, *, tenant: str, store: str, gateway: str, key_id: str, tenant_key: str,
    broker: LocalBroker, outbox: Path, timezone: str = DEFAULT_TIMEZONE,
) -> Path:
    """The gateway's TOML config: identity, the tenant's key, the app's beacon ids, and
    the broker; written readable by its owner only (it holds the tenant key)."""
    text = CONFIG_TEMPLATE.read_text(encoding="utf-8").format(
        tenant=tenant, store=store, gateway=gateway, key_id=key_id, tenant_key=tenant_key,
        timezone=timezone, app_ibeacon_uuid=DEMO_APP_IBEACON_UUID,
        app_service_uuid=DEMO_APP_SERVICE_UUID, mqtt_host=broker.host, mqtt_port=broker.port,
        mqtt_protocol=json.dumps("5" if broker.mqtt_v5 else "3.1.1"), outbox_path=outbox,
    )
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")
    return path


def record_app_visit(path: Path, *, install_id: str, start: float,
                     seconds: float = VISIT_SECONDS) -> Path:
    """A BLE recording of one phone whose shop app advertises `install_id` (the app's
    service UUID in its adverts, the install id in its scan responses, as the shop's
    Android app does), walking up to the door and away again."""
    if not install_id.isascii() or not 0 < len(install_id) <= MAX_INSTALL_ID_CHARS:
        raise InstallIdError(
            f"the app's advert carries an install id of 1 to {MAX_INSTALL_ID_CHARS} ASCII "
            f"characters (its scan response has 31 bytes); {install_id!r} does not fit")
    rng = random.Random(install_id)
    address = ble_address(rng, 0b01)  # a resolvable private address, as phones use
    indication, response = app_adverts(address, install_id)
    recorder = Recorder()
    for index, t in enumerate(ticks(rng, 0, seconds, ADVERT_PERIOD_S)):
        rssi = approach(t, 0, seconds, -52) + rng.gauss(0, 2)
        recorder.ble(start + t, rssi, index, indication)
        recorder.ble(start + t + 0.0004, rssi, index, response)
    recorder.write_pcapng(path)
    return path
