"""The gateway's configuration reference (docs/gateway-configuration.md) is its settings
model's own word."""

from __future__ import annotations

import pytest

from edge.cli import main
from edge.reference import REGENERATE, reference_markdown
from edge.settings import EdgeSettings
from shared.settings_reference import undocumented
from tests.docs.snippets import ROOT

REFERENCE = "docs/gateway-configuration.md"


def test_the_published_reference_is_what_the_model_says_now() -> None:
    published = (ROOT / REFERENCE).read_text(encoding="utf-8")
    assert published == reference_markdown(), (
        f"{REFERENCE} is out of date with edge/settings.py: regenerate it with "
        f"`{REGENERATE}` and commit the result")


def test_every_setting_says_what_it_does() -> None:
    missing = undocumented(EdgeSettings)
    assert missing == [], (
        "give these fields Field(description=...), and json_schema_extra=unset(...) where "
        f"they default to None: {missing}")


def test_the_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings-reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()
