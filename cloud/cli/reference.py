"""`vitrina-cloud settings reference`: the orchestrator's configuration reference
(docs/configuration.md), made from the settings models so it cannot drift from them.

Every setting is read from the environment (`VITRINA_...`) over the TOML file that
`VITRINA_CONFIG` names; the sections come from `cloud.settings.Settings`, and each
delivery channel's from its adapter's own settings model (`cloud.channels`), with what
customers miss while it is not configured.
"""

from __future__ import annotations

from typing import Any

import typer

from cloud.channels import adapters
from cloud.settings import CONFIG_FILE_VARIABLE, Settings
from shared.settings_reference import Place, Section, markdown_section, sections

ENV_PREFIX = "VITRINA_"
#: Regenerating the published reference (the test that compares them says the same).
REGENERATE = "vitrina-cloud settings reference > docs/configuration.md"
#: The examples' pseudonymization key (an example: `vitrina-provision` makes real ones).
EXAMPLE_SECRET = "3f1c0b5e7a9d2c4e6f8a0b1c3d5e7f90a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1"

INTRO = f"""\
# Orchestrator configuration

<!-- Generated from the settings models by `{REGENERATE}`: edit the models'
descriptions (cloud/settings.py, cloud/channels/), not this file. -->

Every setting of the orchestrator (`vitrina-cloud serve`, `worker`, `api` and the other
commands), read once at start-up. The gateway's settings are in
[gateway-configuration.md](gateway-configuration.md).

## Where settings come from

- **Environment variables** win: `VITRINA_` and the setting's path in capitals, its parts
  joined by two underscores: `tracking.public_base_url` is
  `VITRINA_TRACKING__PUBLIC_BASE_URL`, `channels.push.project_id` is
  `VITRINA_CHANNELS__PUSH__PROJECT_ID`. Names are not case-sensitive.
- **A TOML file**, named by `{CONFIG_FILE_VARIABLE}`, for everything else: sections are
  tables (`[tracking]`, `[channels.push]`, `[tenants.acme]`). A setting given in both
  places takes the environment's value; the rest of its section keeps the file's.
- **Lists and tables are JSON** in one variable (`VITRINA_WEBHOOK_SECRETS='["s1", "s2"]'`,
  `VITRINA_API__TRUSTED_PROXIES='["10.0.0.0/8"]'`); a whole section may be JSON too
  (`VITRINA_SCENARIOS__QUIET_HOURS='{{"start": "22:00", "end": "08:00"}}'`), and `null`
  switches off a section that may be off (`VITRINA_SCENARIOS__QUIET_HOURS=null`).
- **Names in a path** (a tenant id, a channel) are written as they are, in capitals in a
  variable's name: `VITRINA_TENANTS__ACME__KEYS` is tenant `acme`'s keys. Tenant ids are
  lower case, so this spelling always reaches them.
- A setting that is wrong stops the start with a message naming the setting and the rule,
  never the value (it may be a secret).

Durations take seconds (`3600`) or ISO 8601 (`PT1H`, `P7D`); times of day `HH:MM`.

For example, in the environment:

```sh id=config-env-example
export VITRINA_DATABASE_URL=postgresql://vitrina:secret@db.internal/vitrina
export VITRINA_TRACKING__PUBLIC_BASE_URL=https://push.shop.example
export VITRINA_TENANTS__ACME__KEYS='[{{"key_id": "k1", "secret": "{EXAMPLE_SECRET}"}}]'
export VITRINA_CHANNELS__WEB_PUSH__SUBJECT=mailto:ops@shop.example
export VITRINA_SCENARIOS__QUIET_HOURS__START=22:00
export VITRINA_WEBHOOK_SECRETS='["whsec-2026-11", "whsec-2026-05"]'
```

or in the file `{CONFIG_FILE_VARIABLE}` names:

```toml id=config-toml-example
database_url = "postgresql://vitrina:secret@db.internal/vitrina"

[tracking]
public_base_url = "https://push.shop.example"

[tenants.acme]
keys = [{{ key_id = "k1", secret = "{EXAMPLE_SECRET}" }}]

[channels.push]
project_id = "acme-shop"
credentials_file = "/etc/vitrina/fcm-service-account.json"

[scenarios.quiet_hours]
start = "22:00"
end = "08:00"
```

At start-up the orchestrator logs, once, which delivery channels are not configured,
whether the public base URL is still the loopback default, and the quiet hours that apply
by these settings. A tenant's own quiet hours and time zone, and a store's own quiet hours,
set through the API or the console, come before them (docs/scenarios.md, "Quiet hours").
"""

CHANNELS_INTRO = """\
## Delivery channels

A channel is on once its section is set (`[channels.<name>]`, or
`VITRINA_CHANNELS__<NAME>__...`; the whole section may also be JSON in
`VITRINA_CHANNELS__<NAME>`). A message for a channel that is off waits in the send queue
until the channel is configured or the message expires."""


def settings_sections() -> list[Section]:
    """The sections of `Settings` (the channels' own come from `channel_sections`)."""
    return sections(Settings, Place(env=ENV_PREFIX))


def channel_sections() -> list[tuple[Any, list[Section]]]:
    """Each registered channel, and the sections of its settings model."""
    found = []
    for adapter in adapters():
        place = Place(path=("channels", adapter.name), env=f"{ENV_PREFIX}CHANNELS__"
                      f"{adapter.name.upper()}")
        found.append((adapter, sections(adapter.settings_model, place)))
    return found


def reference_markdown() -> str:
    """docs/configuration.md as the models say it now."""
    parts = [INTRO, "## Settings"]
    parts += [markdown_section(section, with_env=True) for section in settings_sections()]
    parts.append(CHANNELS_INTRO)
    for adapter, found in channel_sections():
        for index, section in enumerate(found):
            text = markdown_section(section, with_env=True)
            if index == 0:
                heading, _, rest = text.partition("\n\n")
                text = (f"{heading}\n\n**Unset:** {adapter.unconfigured}; the orchestrator "
                        f"says so at start-up.\n\n{rest}")
            parts.append(text)
    return "\n\n".join(parts).rstrip() + "\n"


reference = typer.Typer(help="The orchestrator's settings.", no_args_is_help=True)


@reference.command("reference")
def reference_command() -> None:
    """Print the configuration reference (Markdown): every VITRINA_* variable and TOML
    key, its type, default, what it does and what happens when it is unset."""
    typer.echo(reference_markdown(), nl=False)
