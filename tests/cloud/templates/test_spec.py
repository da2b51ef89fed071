from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.channels import ContentForm, channel_names
from cloud.templates.spec import (
    EmailParts,
    PushParts,
    TemplateLimits,
    TemplateSpec,
    TextParts,
)


def test_a_template_is_for_a_registered_channel() -> None:
    with pytest.raises(ValidationError, match="unknown channel 'fax'"):
        TemplateSpec.model_validate({"channel": "fax", "locale": "es-ES",
                                     "parts": {"text": "x"}})


def test_parts_are_chosen_by_the_channel() -> None:
    push = TemplateSpec.model_validate(
        {"channel": "web_push", "locale": "es-ES", "parts": {"title": "T", "body": "B"}}
    )
    assert isinstance(push.parts, PushParts)
    assert push.parts.form is ContentForm.NOTIFICATION
    email = TemplateSpec.model_validate(
        {"channel": "email", "locale": "en-GB", "parts": {"subject": "S", "html": "H", "text": "T"}}
    )
    assert isinstance(email.parts, EmailParts)
    sms = TemplateSpec.model_validate({"channel": "sms", "locale": "fr-FR", "parts": {"text": "x"}})
    assert isinstance(sms.parts, TextParts)


def test_round_trips_through_json_without_the_inner_channel() -> None:
    spec = TemplateSpec.model_validate({
        "channel": "push", "locale": "de-DE",
        "parts": {"title": "T", "body": "B", "deep_link": "app://x"},
    })
    dumped = spec.model_dump(mode="json", exclude_none=True)
    assert dumped == {
        "channel": "push", "locale": "de-DE",
        "parts": {"title": "T", "body": "B", "deep_link": "app://x"},
    }
    assert TemplateSpec.model_validate_json(spec.model_dump_json()) == spec


def test_sources_lists_present_parts_in_order() -> None:
    spec = TemplateSpec.model_validate({
        "channel": "push", "locale": "de-DE",
        "parts": {"deep_link": "app://x", "body": "B", "title": "T"},
    })
    assert spec.parts.sources() == {"title": "T", "body": "B", "deep_link": "app://x"}


def _errors(data: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        TemplateSpec.model_validate(data)
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


def test_parts_of_another_channel_are_refused() -> None:
    assert _errors({"channel": "sms", "locale": "es-ES", "parts": {"title": "a", "body": "b"}}) == [
        (("parts", "text", "text"), "missing"),
        (("parts", "text", "title"), "extra_forbidden"),
        (("parts", "text", "body"), "extra_forbidden"),
    ]
    # The form follows the channel: parts cannot name another one.
    assert _errors({
        "channel": "sms", "locale": "es-ES",
        "parts": {"form": "notification", "title": "a", "body": "b"},
    }) == [
        (("parts", "text", "text"), "missing"),
        (("parts", "text", "title"), "extra_forbidden"),
        (("parts", "text", "body"), "extra_forbidden"),
    ]


def test_unknown_locale_and_channel_are_refused() -> None:
    assert _errors({"channel": "fax", "locale": "xx-XX", "parts": {"text": "x"}}) == [
        (("channel",), "value_error"),
        (("locale",), "enum"),
        (("parts",), "union_tag_not_found"),
    ]


def test_empty_and_oversized_parts_are_refused() -> None:
    assert _errors({"channel": "sms", "locale": "es-ES", "parts": {"text": ""}}) == [
        (("parts", "text", "text"), "string_too_short"),
    ]
    assert _errors({"channel": "sms", "locale": "es-ES", "parts": {"text": "x" * 4001}}) == [
        (("parts", "text", "text"), "string_too_long"),
    ]


def test_lone_surrogates_are_refused() -> None:
    assert _errors({"channel": "sms", "locale": "es-ES", "parts": {"text": "a\ud800"}}) == [
        (("parts", "text", "text"), "string_unicode"),
    ]


def test_limits_must_be_positive() -> None:
    assert TemplateLimits().sms_max_segments == 4
    with pytest.raises(ValueError, match="sms_max_segments must be at least 1"):
        TemplateLimits(sms_max_segments=0)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["title", "body", "image_url", "deep_link", "subject", "html", "text", "channel", "x"]
)
_spec_like = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from([*channel_names(), "fax", "", None]) | _json,
        "locale": st.sampled_from(["es-ES", "en-US", "es", "EN-us", ""]) | _json,
        "parts": st.dictionaries(_keys, st.text(max_size=30) | _json, max_size=5) | _json,
        "extra": _json,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_spec_like, _json))
def test_parsing_raises_only_validation_errors(data: Any) -> None:
    try:
        spec = TemplateSpec.model_validate(data)
    except ValidationError:
        return
    assert spec.parts.form is spec.form
