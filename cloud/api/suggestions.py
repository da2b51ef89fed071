"""'Did you mean' for request bodies: a refused name comes back with the nearest valid one.

pydantic says what is wrong (an unknown field, a value outside an enum, a step type that
does not exist) but not what was meant; a person writing a scenario or a template by hand
mostly misspells. For an unknown field the valid names are found by walking the route's
body schema along the problem's location, so this works for every body, not a list kept
by hand.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter
from starlette.requests import Request

from cloud.scenarios.conditions import CONDITION_KINDS
from cloud.suggest import did_you_mean

Schema = Mapping[str, Any]
_QUOTED = re.compile(r"'([^']*)'")


def suggestion(problem: Mapping[str, Any], request: Request) -> str:
    """What to append to the problem's message: a nearest valid name, or ''."""
    kind, context, value = problem.get("type"), problem.get("ctx") or {}, problem.get("input")
    if kind in ("enum", "literal_error") and isinstance(value, str):
        return did_you_mean(value, _QUOTED.findall(str(context.get("expected", ""))))
    if kind == "union_tag_invalid" and isinstance(context.get("tag"), str):
        return did_you_mean(context["tag"], _QUOTED.findall(str(context.get("expected_tags"))))
    if kind == "condition_kind" and isinstance(value, Mapping):
        return "".join(did_you_mean(str(key), CONDITION_KINDS) for key in value
                       if key not in CONDITION_KINDS)
    if kind == "extra_forbidden":
        location = list(problem.get("loc", ()))
        schema = _body_schema(request)
        if schema is None or len(location) < 2 or location[0] != "body":
            return ""
        allowed = _names_at(schema, location[1:-1])
        return did_you_mean(str(location[-1]), allowed) if allowed else ""
    return ""


def _body_schema(request: Request) -> Schema | None:
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    annotation = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return _schema_of(annotation) if annotation is not None else None


@functools.cache
def _schema_of(annotation: Any) -> Schema | None:
    try:
        return TypeAdapter(annotation).json_schema(by_alias=True)
    except Exception:
        return None


def _names_at(root: Schema, path: Sequence[Any]) -> set[str]:
    """The property names of every object the body schema allows at `path`."""
    defs = root.get("$defs", {})
    names: set[str] = set()
    for schema in _reach(root, list(path), defs):
        names.update(schema.get("properties", {}))
    return names


def _reach(schema: Schema, path: list[Any], defs: Mapping[str, Schema]) -> Iterable[Schema]:
    """Every sub-schema `path` can lead to. A string in the path that no branch of a union
    takes is a tagged union's tag (pydantic puts it in locations), and is stepped over."""
    schema = _resolve(schema, defs)
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        mapping = schema.get("discriminator", {}).get("mapping", {})
        if path and str(path[0]) in mapping:
            yield from _reach({"$ref": mapping[str(path[0])]}, path[1:], defs)
            return
        for branch in branches:
            yield from _reach(branch, path, defs)
            if path and isinstance(path[0], str) and not path[0].isdigit():
                yield from _reach(branch, path[1:], defs)
        return
    if not path:
        yield schema
        return
    step, rest = path[0], path[1:]
    if "properties" in schema and str(step) in schema["properties"]:
        yield from _reach(schema["properties"][str(step)], rest, defs)
    elif isinstance(schema.get("additionalProperties"), Mapping):
        yield from _reach(schema["additionalProperties"], rest, defs)
    elif "items" in schema and (isinstance(step, int) or str(step).isdigit()):
        yield from _reach(schema["items"], rest, defs)


def _resolve(schema: Schema, defs: Mapping[str, Schema]) -> Schema:
    while "$ref" in schema:
        schema = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
    return schema
