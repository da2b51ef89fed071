"""A configuration reference read off pydantic settings models, rendered as Markdown.

The orchestrator and the gateway document their settings in the models themselves: every
field has a `description` (what it does), and a field that may be left out without a
default value (None) says what happens then (`unset(...)`). This module walks such a
model into sections of entries (the TOML key, the environment variable where there is
one, the type, the default, the text) and renders them, so the published reference
(docs/configuration.md) is made from the code and a test can hold the two together.

Each product adds what only it knows (the orchestrator's channel sections, the gateway's
environment overrides) around these pieces (`cloud.cli.settings`, `edge.reference`).
"""

from __future__ import annotations

import datetime
import enum
import json
import types
import typing
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, HttpUrl, SecretStr, TypeAdapter
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: The `json_schema_extra` key that holds what happens when a setting is left unset.
UNSET_KEY = "unset"
#: The `json_schema_extra` key that names the keys of a table of sections (`<tenant>`).
KEY_NAME = "key_name"


def unset(text: str, *, key_name: str | None = None) -> JsonDict:
    """`json_schema_extra` for a field: what happens when it is left unset (and, for a
    table keyed by names, what the names are)."""
    extra: JsonDict = {UNSET_KEY: text}
    if key_name is not None:
        extra[KEY_NAME] = key_name
    return extra


def keyed(key_name: str) -> JsonDict:
    """`json_schema_extra` for a table of sections: what its keys are (`tenant`)."""
    return {KEY_NAME: key_name}


@dataclass(frozen=True, slots=True)
class Entry:
    """One setting: where it is, how it is spelled, what it does."""

    key: str
    env: str | None
    type: str
    default: str
    description: str
    unset: str | None
    required: bool


@dataclass(frozen=True, slots=True)
class Section:
    """A TOML table (`[mqtt]`, `[tenants.<tenant>]`) and the settings directly in it."""

    key: str
    doc: str
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a model sits: its TOML path and its environment variable's stem (None when
    its fields cannot be set one by one, as inside a list)."""

    path: tuple[str, ...] = ()
    env: str | None = None
    delimiter: str = "__"

    def key(self, name: str) -> str:
        return ".".join((*self.path, name))

    def env_of(self, name: str) -> str | None:
        if self.env is None:
            return None
        return (self.env + self.delimiter if not self.env.endswith("_") else self.env) + (
            name.upper())

    def below(self, name: str, *, settable: bool = True) -> Place:
        return Place(path=(*self.path, name), env=self.env_of(name) if settable else None,
                     delimiter=self.delimiter)


class MissingDocumentationError(ValueError):
    """A settings field without a description (or without its unset text)."""


def undocumented(model: type[BaseModel], *, prefix: str = "") -> list[str]:
    """Every field below `model` that has no description, or that defaults to None
    without saying what happens then: the reference would have a hole there."""
    missing: list[str] = []
    for name, info in model.model_fields.items():
        where = f"{prefix}{name}"
        if not (info.description or "").strip():
            missing.append(f"{where}: no description")
        if info.default is None and _extra(info, UNSET_KEY) is None:
            missing.append(f"{where}: defaults to None but says not what unset means")
        for inner in _models_in(info.annotation):
            missing.extend(undocumented(inner, prefix=f"{where}."))
    return missing


def sections(model: type[BaseModel], place: Place, *, doc: str | None = None) -> list[Section]:
    """The section of `model` at `place`, then those of the models below it, in the order
    of the fields."""
    own = Section(key=".".join(place.path), doc=_doc(model) if doc is None else doc)
    found = [own]
    for name, info in model.model_fields.items():
        annotation = _strip_optional(info.annotation)
        nested = _model(annotation)
        if nested is not None and _model(info.annotation) is not None and not _optional(
                info.annotation):
            found.extend(sections(nested, place.below(name)))
            continue
        own.entries.append(entry(name, info, place))
        if nested is not None:  # an optional section: its row above, its fields below
            found.extend(sections(nested, place.below(name)))
        elif (inner := _table_of_models(annotation)) is not None:
            key_name = str(_extra(info, KEY_NAME) or "name")
            below = place.below(name).below(f"<{key_name}>")
            found.extend(sections(inner, below))
        elif (item := _list_of_models(annotation)) is not None:
            found.extend(sections(item, place.below(f"{name}[]", settable=False)))
    return [section for section in found if section.entries]


def entry(name: str, info: FieldInfo, place: Place) -> Entry:
    """One field's row."""
    required = info.is_required()
    return Entry(
        key=place.key(name),
        env=place.env_of(name),
        type=type_name(info.annotation, info.metadata),
        default="required" if required else _default(info),
        description=_text(info.description or ""),
        unset=_text(str(_extra(info, UNSET_KEY) or "")) or None,
        required=required,
    )


def type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A reader's name for a field's type, with its bounds."""
    base = _type_name(annotation)
    bounds = _bounds(metadata, " items" if base.startswith(("list", "table")) else
                     " characters")
    return f"{base} ({bounds})" if bounds else base


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], args[1:])
    if origin in (typing.Union, types.UnionType):
        kept = [arg for arg in args if arg is not type(None)]
        return " or ".join(_type_name(arg) for arg in kept)
    if origin is Literal:
        return "one of " + ", ".join(f"`{_plain(arg)}`" for arg in args)
    if origin in (list, tuple, frozenset, set, Sequence):
        return f"list of {_plural(_type_name(args[0]))}" if args else "list"
    if origin is dict:
        return f"table of {_plural(_type_name(args[1]))}" if len(args) == 2 else "table"
    if isinstance(annotation, type):
        return _simple_type(annotation)
    return "section" if annotation is Any else "value"


def _simple_type(annotation: type) -> str:
    if issubclass(annotation, BaseModel):
        return "section"
    if issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{_plain(member)}`" for member in annotation)
    names: list[tuple[type, str]] = [
        (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
        (SecretStr, "secret string"), (Path, "path"), (datetime.time, "time of day (HH:MM)"),
        (datetime.timedelta, "duration (seconds, or ISO 8601 such as P7D)"),
        (HttpUrl, "URL"), (uuid.UUID, "UUID"),
    ]
    for kind, name in names:
        if issubclass(annotation, kind):
            return name
    return annotation.__name__


def _plural(name: str) -> str:
    if name == "section":
        return "sections"
    return name if name.startswith(("one of", "list", "table")) else f"{name}s"


def _bounds(metadata: Sequence[Any], length_unit: str) -> str:
    """`1 to 65535`, `more than 0`, `1 to 64 characters`, `matching ...`."""
    low: Any = None
    high: Any = None
    low_word, high_word = "at least", "at most"
    shortest: int | None = None
    longest: int | None = None
    pattern: str | None = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt):
            low, low_word = item.gt, "more than"
        elif isinstance(item, annotated_types.Le):
            high = item.le
        elif isinstance(item, annotated_types.Lt):
            high, high_word = item.lt, "less than"
        elif isinstance(item, annotated_types.MinLen):
            shortest = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            longest = item.max_length
        elif getattr(item, "pattern", None):
            pattern = item.pattern
    parts = [_range(_shown(low), _shown(high), low_word, high_word, "")]
    parts.append(_range(shortest or None, longest, "at least", "at most", length_unit))
    if pattern:
        parts.append(f"matching `{pattern}`")
    return ", ".join(part for part in parts if part)


def _range(low: Any, high: Any, low_word: str, high_word: str, unit: str) -> str:
    if unit and low == 1 and high is None:
        return "not empty"
    if low is not None and high is not None and low_word == "at least" and (
            high_word == "at most"):
        return f"{low} to {high}{unit}"
    words = [f"{low_word} {low}" if low is not None else "",
             f"{high_word} {high}" if high is not None else ""]
    text = ", ".join(word for word in words if word)
    return f"{text}{unit}" if text else ""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "made up per process"
    shown = TypeAdapter(Any).dump_python(value, mode="json")
    if shown == "":
        return '`""`'
    return f"`{json.dumps(shown, ensure_ascii=False) if not isinstance(shown, str) else shown}`"


def _shown(bound: Any) -> Any:
    """A bound as a reader says it: a duration in days or seconds."""
    if not isinstance(bound, datetime.timedelta):
        return bound
    if bound.days and not bound.seconds and not bound.microseconds:
        return f"{bound.days} days"
    return f"{bound.total_seconds():g} s"


def _plain(value: Any) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _extra(info: FieldInfo, key: str) -> Any:
    extra = info.json_schema_extra
    return extra.get(key) if isinstance(extra, dict) else None


def _text(text: str) -> str:
    return " ".join(text.split())


def _doc(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")
    return _text(own) if isinstance(own, str) else ""


def _optional(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return _optional(typing.get_args(annotation)[0])
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None) in typing.get_args(annotation)


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return _strip_optional(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    found = _strip_optional(annotation)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def _table_of_models(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is dict:
        return _model(typing.get_args(annotation)[1])
    return None


def _list_of_models(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        return _model(typing.get_args(annotation)[0])
    return None


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    annotation = _strip_optional(annotation)
    for found in (_model(annotation), _table_of_models(annotation),
                  _list_of_models(annotation)):
        if found is not None:
            yield found


# --- Markdown ----------------------------------------------------------------------------


def markdown_table(section: Section, *, with_env: bool) -> str:
    """A section as a Markdown table."""
    header = ["Setting", *(["Environment variable"] if with_env else []), "Type", "Default",
              "What it does; when unset"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for item in section.entries:
        key = item.key.rsplit(".", 1)[-1] if section.key else item.key
        cells = [f"`{key}`"]
        if with_env:
            cells.append(f"`{item.env}`" if item.env else "(in the section's JSON)")
        text = item.description
        if item.unset:
            text += f" **Unset:** {item.unset}"
        cells += [item.type, item.default, text]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def markdown_section(section: Section, *, with_env: bool, level: int = 3) -> str:
    """A section's heading, its model's text, and its table."""
    if not section.key:
        title = "Top level"
    elif section.key.endswith("[]"):
        title = f"`[[{section.key.removesuffix('[]')}]]` (each item)"
    else:
        title = f"`[{section.key}]`"
    parts = [f"{'#' * level} {title}"]
    if section.doc:
        parts.append(section.doc)
    parts.append(markdown_table(section, with_env=with_env))
    return "\n\n".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
