"""`vitrina-edge settings-reference`: the gateway's configuration reference
(docs/gateway-configuration.md), made from `edge.settings.EdgeSettings` so it cannot
drift from it."""

from __future__ import annotations

from edge.settings import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    KEY_SECRET_ENV_PREFIX,
    MQTT_PASSWORD_ENV,
    EdgeSettings,
)
from shared.settings_reference import Place, markdown_section, sections

#: Regenerating the published reference (the test that compares them says the same).
REGENERATE = "vitrina-edge settings-reference > docs/gateway-configuration.md"

INTRO = f"""\
# Gateway configuration

<!-- Generated from the settings model by `{REGENERATE}`: edit the model's
descriptions (edge/settings.py), not this file. -->

Every setting of the gateway agent (`vitrina-edge`), read once at start-up from one TOML
file: `--config`, else the file `{CONFIG_PATH_ENV}` names, else `{DEFAULT_CONFIG_PATH}`
(enrolment writes it). `vitrina-edge check-config` reads it and names every problem. The
orchestrator's settings are in [configuration.md](configuration.md).

Secrets may come from the environment instead, so that a config bundle can be shipped
without them:

- `{KEY_SECRET_ENV_PREFIX}<KEY_ID>` overrides the secret of key `<key_id>` (upper case,
  `-` written as `_`): `{KEY_SECRET_ENV_PREFIX}DEMO_2024` for key `demo-2024`;
- `{MQTT_PASSWORD_ENV}` overrides `mqtt.password`.

Every section refuses unknown keys: a typo stops the agent rather than falling back to a
default.
"""


STORE_BEACON = """\
## The store beacon

With `[sources.ble]` enabled (and `advertise` left true), the gateway also advertises the
store's own beacon through BlueZ's LE advertising API (`org.bluez.LEAdvertisingManager1` over
D-Bus, alongside its scanning), so that the shop's app can recognise the store even when the
phone is in a pocket and the app is not running (docs/app-guide.md, "The store's beacon"). What
it advertises comes from the cloud, per gateway, in the `beacon` part of its config (`PUT
/tenants/{tenant}/stores/{store}/gateways/{gateway}/config`, delivered on the config topic):

```json id=gateway-store-beacon
{"beacon": {"uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0", "ibeacon": true,
            "eddystone": true, "measured_power": -59}}
```

- `uuid`: the iBeacon proximity UUID the app monitors, the same for every store of the shop;
- `ibeacon` (default true), `eddystone` (default false): an iBeacon, and an Eddystone-EID
  frame (service data 0xFEAA), each as an advertisement of its own;
- `measured_power`: the RSSI a phone reads at 1 m (default -59), for distance estimates;
- `key_id`: the tenant key the rotation derives from; the cloud names the active one.

The major and minor (the EID on Eddystone) rotate every 15 minutes: eight bytes of
HMAC-SHA256 over the period's number under a key derived for the store from the tenant's key
(`shared/beacon.py`), which the cloud computes too and checks the app's reports against, so
an id recorded outside the store is refused once its period has passed. A config without
`beacon` stops the advertising. When the adapter is reset or unplugged, BlueZ drops the
advertisement; the gateway registers it again as soon as the adapter is back (and retries
with backoff while it is not), as its scanner restarts. The rotating id is never logged.
"""


def reference_markdown() -> str:
    """docs/gateway-configuration.md as the model says it now."""
    parts = [INTRO, "## Settings"]
    parts += [markdown_section(section, with_env=False)
              for section in sections(EdgeSettings, Place())]
    parts.append(STORE_BEACON)
    return "\n\n".join(parts).rstrip() + "\n"
