"""The OpenAPI document as a developer reads it: every request and answer body has an
example, every example is valid against its own schema (checked with jsonschema-rs,
schemathesis' validator), every refusal a route raises is documented, and the webhooks
both ways are described.

The document is walked, not the routes listed by hand: a route or a model added without
its example, or raising a status it does not declare, fails here.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from jsonschema_rs import Draft202012Validator

from cloud.api import create_app
from cloud.commerce.models import CommerceEventType
from tests.cloud.factories import cloud_settings

APP = create_app(cloud_settings(tenant="examples", database_url="sqlite://"))
DOCUMENT = APP.openapi()
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
METHODS = frozenset({"get", "put", "post", "delete", "patch"})
#: `status.HTTP_404_NOT_FOUND`, `status_code=409`: a status a function answers with.
STATUS = re.compile(r"HTTP_(\d{3})_|status_code=(\d{3})\b")


def operations() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every operation of the API and every webhook it sends, named for a failure."""
    for section in ("paths", "webhooks"):
        for path, items in DOCUMENT.get(section, {}).items():
            for method, operation in items.items():
                if method in METHODS:
                    yield f"{method.upper()} {path}", operation


def bodies(operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each body of an operation (its request's and each answer's) by media type."""
    for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
        yield f"request {media_type}", media
    for code, response in operation["responses"].items():
        for media_type, media in response.get("content", {}).items():
            yield f"{code} {media_type}", media


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def has_example(schema: dict[str, Any]) -> bool:
    """Whether a reader finds an example of what `schema` describes: its own, its
    items', or one for every alternative (but null) it allows."""
    if schema.get("examples") or "example" in schema:
        return True
    target = resolve(schema)
    if target is not schema:
        return has_example(target)
    alternatives = [one for one in schema.get("anyOf", schema.get("oneOf", []))
                    if one.get("type") != "null"]
    if alternatives:
        return all(has_example(one) for one in alternatives)
    if schema.get("type") == "array" and "items" in schema:
        return has_example(schema["items"])
    return False


def test_every_body_has_an_example() -> None:
    missing = [f"{name}: {where}" for name, operation in operations()
               for where, media in bodies(operation)
               if not (media.get("example") is not None or media.get("examples")
                       or has_example(media.get("schema", {})))]
    assert missing == [], "bodies without an example:\n" + "\n".join(missing)


def examples_in(node: Any, where: str = "") -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, example, schema) for every example anywhere in the document: a schema's
    `examples`, a media type's or a parameter's `example` and named `examples`."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from examples_in(item, f"{where}/{index}")
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("schema"), dict):
        if "example" in node:
            yield where, node["example"], node["schema"]
        for name, named in (node.get("examples") or {}).items():
            yield f"{where}/examples/{name}", named["value"], node["schema"]
    elif isinstance(node.get("examples"), list):
        for value in node["examples"]:
            yield where, value, node
    for key, value in node.items():
        if key not in ("example", "examples"):
            yield from examples_in(value, f"{where}/{key}")


def test_every_example_is_valid_against_its_own_schema() -> None:
    found = list(examples_in(DOCUMENT))
    assert len(found) > 80, "the walk found too few examples: is it looking in the right place?"
    invalid = []
    for where, value, schema in found:
        # Refs are resolved against the document: the schema is checked inside a root
        # that holds the components, as in the document itself.
        validator = Draft202012Validator({**schema, "components": DOCUMENT["components"]},
                                         validate_formats=True)
        invalid += [f"{where}: {list(error.instance_path)}: {error.message}"
                    for error in validator.iter_errors(value)]
    assert invalid == [], "examples their schema refuses:\n" + "\n".join(invalid)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


#: A name called in a function's code: `_gateway_or_404(`, `needs_customer_token(`.
CALLED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\(")


@functools.cache
def _source(call: Callable[..., Any]) -> str | None:
    try:
        return inspect.getsource(call)
    except (OSError, TypeError):  # a class or a built-in: nothing of ours to read
        return None


def _api_functions(call: Callable[..., Any], seen: set[Any]) -> Iterator[str]:
    """The source of `call` and of every function of the API's modules it calls, the
    helpers that raise a route's refusals for it included."""
    if call in seen:
        return
    seen.add(call)
    source = _source(call)
    if source is None:
        return
    yield source
    module = inspect.getmodule(call)
    for name in set(CALLED.findall(source)):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__.startswith("cloud.api"):
            yield from _api_functions(helper, seen)


def raised(route: APIRoute) -> set[str]:
    """The error statuses the route's function, its dependencies and the API's helpers
    they call name in their code."""
    codes: set[str] = set()
    seen: set[Any] = set()
    for call in _calls(route.dependant):
        for source in _api_functions(call, seen):
            codes |= {first or second for first, second in STATUS.findall(source)}
    return {code for code in codes if code >= "400"}


def test_every_refusal_a_route_raises_is_documented() -> None:
    undocumented, checked = [], 0
    for context in routing.iter_route_contexts(APP.routes):
        route = context.route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in context.methods or ():
            checked += 1
            operation = DOCUMENT["paths"][context.path_format][method.lower()]
            missing = raised(route) - set(operation["responses"])
            if missing:
                undocumented.append(f"{method} {context.path_format}: {sorted(missing)}")
    assert checked == sum(1 for _name, _operation in operations()) - len(DOCUMENT["webhooks"])
    assert undocumented == [], "statuses raised but not documented:\n" + "\n".join(undocumented)


def test_every_operation_with_input_documents_its_422() -> None:
    """A route with parameters or a body can be sent invalid ones."""
    lacking = [name for name, operation in operations()
               if not name.startswith("POST scenario.step")
               and (operation.get("parameters") or "requestBody" in operation)
               and "422" not in operation["responses"]]
    assert lacking == []


def test_the_webhooks_both_ways_are_described() -> None:
    inbound = DOCUMENT["paths"]["/webhooks/{tenant}"]["post"]["requestBody"]
    union = resolve(inbound["content"]["application/json"]["schema"])
    assert set(union["discriminator"]["mapping"]) == {kind.value for kind in CommerceEventType}
    outbound = DOCUMENT["webhooks"]["scenario.step"]["post"]
    headers = {parameter["name"] for parameter in outbound["parameters"]}
    assert headers == {"X-Vitrina-Timestamp", "X-Vitrina-Signature"}
    assert has_example(outbound["requestBody"]["content"]["application/json"]["schema"])
