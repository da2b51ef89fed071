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


def reference_markdown() -> str:
    """docs/gateway-configuration.md as the model says it now."""
    parts = [INTRO, "## Settings"]
    parts += [markdown_section(section, with_env=False)
              for section in sections(EdgeSettings, Place())]
    return "\n\n".join(parts).rstrip() + "\n"
