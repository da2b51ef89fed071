"""Versioning and decoding shared by every message schema."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError

from shared.errors import ContractError
from shared.topics import validate_segment

#: Major.minor. A reader accepts every minor of its major (unknown fields are
#: ignored) and refuses other majors, whose meaning it cannot know.
SCHEMA_VERSION = "1.0"
SCHEMA_MAJOR = 1
_VERSION_PATTERN = re.compile(r"^(\d{1,4})\.(\d{1,4})$")

#: Large enough for a full batch of events, small enough that one bad
#: publisher cannot make a worker allocate without bound.
MAX_PAYLOAD_BYTES = 256 * 1024

ModelT = TypeVar("ModelT", bound=BaseModel)


def _segment(field: str) -> AfterValidator:
    return AfterValidator(lambda value: _checked_segment(field, value))


def _checked_segment(field: str, value: str) -> str:
    try:
        return validate_segment(field, value)
    except ContractError as error:
        raise ValueError(str(error)) from None


TenantId = Annotated[str, _segment("tenant")]
StoreId = Annotated[str, _segment("store")]
GatewayId = Annotated[str, _segment("gateway")]
ZoneId = Annotated[str, _segment("zone")]


def check_schema_version(version: Any) -> None:
    if not isinstance(version, str) or not (match := _VERSION_PATTERN.fullmatch(version)):
        raise ContractError("schema_version must be a string 'major.minor', e.g. '1.0'")
    if int(match.group(1)) != SCHEMA_MAJOR:
        raise ContractError(
            f"schema_version {version} is not supported: this build reads {SCHEMA_MAJOR}.x"
        )


def describe_validation_error(error: ValidationError) -> str:
    """A readable summary that names fields and rules but never echoes input values."""
    problems = []
    for item in error.errors(include_input=False, include_url=False)[:10]:
        location = ".".join(str(part) for part in item["loc"]) or "(message)"
        problems.append(f"{location}: {item['msg']}")
    more = error.error_count() - len(problems)
    suffix = f"; and {more} more" if more > 0 else ""
    return "; ".join(problems) + suffix


def decode_message(payload: bytes | bytearray, model: type[ModelT], what: str) -> ModelT:
    """Size check, JSON parse, version check, then validation — each with its own message."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            f"{what} payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        document = json.loads(payload)
    except UnicodeDecodeError:
        raise ContractError(f"{what} payload is not valid UTF-8 JSON (bad encoding)") from None
    except json.JSONDecodeError as error:
        raise ContractError(f"{what} payload is not valid UTF-8 JSON ({error.msg})") from None
    except RecursionError:
        raise ContractError(f"{what} payload nests too deeply") from None
    if not isinstance(document, dict):
        raise ContractError(f"{what} payload must be a JSON object")
    if "schema_version" not in document:
        raise ContractError(f"{what} payload has no schema_version")
    check_schema_version(document["schema_version"])
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ContractError(f"invalid {what}: {describe_validation_error(error)}") from None
