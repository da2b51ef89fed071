from __future__ import annotations

import pytest

from cloud.templates.errors import TemplateError


def test_message_names_part_line_and_keeps_them_apart() -> None:
    error = TemplateError("unknown field 'x'", part="body", line=3, field="x")
    assert str(error) == "body: line 3: unknown field 'x'"
    assert (error.part, error.line, error.field, error.reason) == (
        "body", 3, "x", "unknown field 'x'"
    )


def test_message_without_location_is_the_reason() -> None:
    assert str(TemplateError("no parts")) == "no parts"
    assert str(TemplateError("too long", part="title")) == "title: too long"


def test_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad"):
        raise TemplateError("bad")
