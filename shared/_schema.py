"""Versioning and decoding shared by every message schema."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, StringConstraints, ValidationError

from shared.errors import ContractError, describe_validation_error
from shared.topics import SEGMENT_PATTERN

#: Major.minor. A reader accepts every minor of its major (unknown fields are
#: ignored) and refuses other majors, whose meaning it cannot know.
SCHEMA_VERSION = "1.0"
SCHEMA_MAJOR = 1
_VERSION_PATTERN = re.compile(r"^(\d{1,4})\.(\d{1,4})$")

#: Large enough for a full batch of events, small enough that one bad
#: publisher cannot make a worker allocate without bound.
MAX_PAYLOAD_BYTES = 256 * 1024
#: The largest MQTT packet a broker of ours accepts (Mosquitto's `max_packet_size`,
#: written by provisioning and in docker/mosquitto): a payload at the limit above, plus
#: room for the fixed header, the topic (under 300 bytes for ids at their longest), the
#: packet id and MQTT v5 properties. A client sending more is disconnected before the
#: broker reads the payload.
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024

ModelT = TypeVar("ModelT", bound=BaseModel)


#: Ids are checked by pydantic-core's own regex engine: several times cheaper per
#: event than a Python validator, and the error is reworded without the value
#: (`describe_validation_error`).
SegmentId = Annotated[str, StringConstraints(pattern=SEGMENT_PATTERN.pattern)]
TenantId = SegmentId
StoreId = SegmentId
GatewayId = SegmentId
ZoneId = SegmentId


def check_schema_version(version: Any) -> None:
    if not isinstance(version, str) or not (match := _VERSION_PATTERN.fullmatch(version)):
        raise ContractError("schema_version must be a string 'major.minor', e.g. '1.0'")
    if int(match.group(1)) != SCHEMA_MAJOR:
        raise ContractError(
            f"schema_version {version} is not supported: this build reads {SCHEMA_MAJOR}.x"
        )


def decode_message(payload: bytes | bytearray, model: type[ModelT], what: str) -> ModelT:
    """Validate a message; ContractError says what is wrong, one problem class at a time.

    Valid payloads take one pass through pydantic-core's JSON parser. Only a payload
    that fails goes the careful way (size, JSON, version, then fields), so a message
    from an unknown major version is reported as that and not as a list of fields.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            f"{what} payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        message = model.model_validate_json(payload)
    except ValidationError:
        pass
    else:
        if "schema_version" in message.model_fields_set:  # the models default it for writers
            check_schema_version(getattr(message, "schema_version", None))
            return message
    document = _parse_json_object(payload, what)
    if "schema_version" not in document:
        raise ContractError(f"{what} payload has no schema_version")
    check_schema_version(document["schema_version"])
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ContractError(f"invalid {what}: {describe_validation_error(error)}") from None


def _parse_json_object(payload: bytes | bytearray, what: str) -> dict[str, Any]:
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
    return document
