"""docs/scenarios.md, the scenario and template reference: every example in it is accepted
as written, the error it shows is the API's, and it names every entry point, attribute,
step, field, condition, template field and filter the code knows."""

from __future__ import annotations

import json
import re
import typing
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.channels import channel_names
from cloud.scenarios.conditions import CONDITION_KINDS, Comparison, Condition
from cloud.scenarios.segments import (
    SegmentCreate,
    book_of,
    scenario_segment_problems,
    segment_problems,
    with_segment,
)
from cloud.scenarios.spec import (
    Entry,
    OfferChoice,
    ScenarioSpec,
    SendStep,
    Step,
    save_problems,
)
from cloud.templates.compiler import compile_template
from cloud.templates.context import FIELDS
from cloud.templates.filters import FILTERS
from cloud.templates.formatting import Currency, Locale, format_money, format_percent
from cloud.templates.spec import TemplateSpec
from cloud.triggers import TRIGGER_ATTRIBUTES
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.docs.snippets import snippet

DOC = "docs/scenarios.md"
SCENARIOS = ["scenario-minimal", "scenario-cross-sell", "scenario-cart", "scenario-birthday",
             "scenario-reactivation", "scenario-loyalty"]


def example(snippet_id: str) -> typing.Any:
    return json.loads(snippet(DOC, snippet_id).text)


@pytest.mark.parametrize("snippet_id", SCENARIOS)
def test_each_example_scenario_is_accepted_as_written(snippet_id: str) -> None:
    assert save_problems(ScenarioSpec.model_validate(example(snippet_id))) == []


def test_the_filter_condition_and_template_examples_are_accepted_as_written() -> None:
    Entry.model_validate(example("scenario-where"))
    TypeAdapter(Condition).validate_python(example("scenario-conditions"))
    compile_template(TemplateSpec.model_validate(
        {"channel": "push", "locale": "en-US", **example("template-push")}))


def test_the_segment_examples_are_accepted_as_written() -> None:
    segment = SegmentCreate.model_validate(example("segment-washer-buyers"))
    staff = book_of({"staff": (1, TypeAdapter(Condition).validate_python({"tag": "staff"}))})
    assert segment_problems("washer-buyers-30d", segment, staff, []) == []
    saved = with_segment(staff, "washer-buyers-30d", segment.conditions)
    spec = ScenarioSpec.model_validate(example("scenario-segment"))
    assert save_problems(spec) == []
    assert scenario_segment_problems(spec, saved) == []


def test_the_error_shown_is_the_one_the_api_gives(sqlite_engine: Engine) -> None:
    settings = cloud_settings(tenant="shop", database_url=str(sqlite_engine.url))
    document = {**example("scenario-minimal"), "entry": {"event": "cart.abandon"}}
    with TestClient(create_app(settings, engine=sqlite_engine),
                    headers=bearer(issue_key(sqlite_engine, tenant="shop"))) as client:
        answer = client.put("/tenants/shop/scenarios/store-welcome", json=document)
    assert answer.status_code == 422
    assert answer.json()["detail"] == example("scenario-error")["detail"]


def _code_names(text: str) -> set[str]:
    """What the prose sets as code (`name`), the fenced examples left out."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return set(re.findall(r"`([^`]+)`", prose))


def _fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def _step_models() -> list[type[BaseModel]]:
    union = typing.get_args(Step)[0]
    return list(typing.get_args(union))


def test_the_reference_names_everything_a_definition_or_template_may_use() -> None:
    text = snippet(DOC, "scenario-minimal").path.read_text(encoding="utf-8")
    named = _code_names(text)
    wanted = set(TRIGGER_ATTRIBUTES) | {a for attrs in TRIGGER_ATTRIBUTES.values() for a in attrs}
    wanted |= set(CONDITION_KINDS) | set(typing.get_args(Comparison))
    wanted |= set(FIELDS) | set(FILTERS) | set(channel_names()) | set(Locale)
    wanted |= _fields(ScenarioSpec) | _fields(Entry) | _fields(OfferChoice) | _fields(SendStep)
    for model in _step_models():
        wanted |= _fields(model)
        wanted.add(typing.get_args(model.model_fields["type"].annotation)[0])
    for model in CONDITION_KINDS.values():
        for info in model.model_fields.values():
            inner = info.annotation
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                wanted |= _fields(inner)
    missing = sorted(str(name) for name in wanted if str(name) not in named)
    assert missing == [], f"{DOC} does not name: {missing}"


def test_the_filter_outputs_shown_are_what_the_filters_print() -> None:
    assert format_percent(20, Locale.FR_FR) == "20\u00a0%"
    assert format_percent(20, Locale.EN_US) == "20%"
    assert format_money(Decimal("1234.50"), Currency.EUR, Locale.ES_ES) == "1.234,50\u00a0€"
