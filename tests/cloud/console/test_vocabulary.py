"""The scenario and template pages name the API's vocabularies (entry events, step types,
channels, locales) in their own scripts: each list must be the API's, so that a kind
added to the API is offered by the console too, and nothing the API refuses is offered."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from cloud.channels import channel_names
from cloud.scenarios.spec import Step
from cloud.templates.formatting import Locale
from cloud.triggers import TriggerKind

SCRIPTS = Path(__file__).resolve().parents[3] / "cloud" / "api" / "console" / "static" / "js"


def listed(script: str, constant: str) -> list[str]:
    """The first string of each entry of `const NAME = [...]` (or the strings themselves)."""
    source = (SCRIPTS / script).read_text(encoding="utf-8")
    found = re.search(rf"const {constant} = \[(.*?)\];", source, re.DOTALL)
    assert found is not None, f"{constant} is not in {script}"
    body = found.group(1)
    pairs = re.findall(r'\[\s*"([^"]+)"', body)
    return pairs or re.findall(r'"([^"]+)"', body)


def step_types() -> list[str]:
    union = typing.get_args(Step)[0]
    return [typing.get_args(model.model_fields["type"].annotation)[0]
            for model in typing.get_args(union)]


def test_the_scenario_editor_offers_every_entry_event_step_type_and_channel() -> None:
    assert listed("scenario-flow.js", "TRIGGER_KINDS") == [kind.value for kind in TriggerKind]
    assert listed("scenario-flow.js", "STEP_TYPES") == step_types()
    assert listed("scenario-flow.js", "CHANNELS") == channel_names()


def test_the_template_editor_offers_every_locale() -> None:
    assert listed("pages/templates.js", "LOCALES") == [locale.value for locale in Locale]
