"""The one error type a contract violation raises, and how validation failures read."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

#: Every id in a topic or a payload (tenant, store, gateway, zone) follows one rule.
SEGMENT_RULE = "use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
_SEGMENT_FIELDS = frozenset({"tenant", "store", "gateway", "zone"})
#: A dead-letter reason names at most this many problems; the rest are counted.
MAX_PROBLEMS_LISTED = 10
#: An enum member as Python shows it, `<DeviceKind.FCM: 'fcm'>`: what a reader writes is
#: only the value inside.
_ENUM_REPR = re.compile(r"<[A-Za-z_]\w*\.\w+: ('(?:[^'\\]|\\.)*'|\"[^\"]*\"|-?\d+)>")


class ContractError(ValueError):
    """A payload, topic or identifier does not satisfy the wire contract.

    The message is meant for an operator reading a dead-letter table or a log:
    it names the field and the rule that failed, never the offending value (which
    could carry something that must not be logged, such as a raw identifier).
    """


def plain_values(message: str) -> str:
    """`message` with every enum member as its value (`'fcm'`, not
    `<DeviceKind.FCM: 'fcm'>`): pydantic names the expected tags of a discriminated union
    by their Python representation, which no client can send."""
    return _ENUM_REPR.sub(lambda found: found.group(1), message)


def describe_validation_error(error: ValidationError) -> str:
    """A readable summary that names fields and rules but never echoes input values."""
    items = [
        problem for item in error.errors(include_input=False, include_url=False)
        for problem in spread_located(item)
    ]
    problems = []
    for item in items[:MAX_PROBLEMS_LISTED]:
        location = ".".join(str(part) for part in item["loc"]) or "(message)"
        field = str(item["loc"][-1]) if item["loc"] else ""
        message = plain_values(item["msg"])
        if item["type"] == "string_pattern_mismatch" and field in _SEGMENT_FIELDS:
            message = f"not a valid id: {SEGMENT_RULE}"
        problems.append(f"{location}: {message}")
    more = len(items) - len(problems)
    suffix = f"; and {more} more" if more > 0 else ""
    return "; ".join(problems) + suffix


class LocatedError(ValueError):
    """Several problems a model's own validator found, each at its own place below it.

    A model validator sees the whole document, but pydantic places whatever it raises at
    the model itself; a check across parts (a step jumping to an unknown step) belongs at
    the part concerned. Raise this from the validator: pydantic keeps it in the error's
    context, its message reads on its own, and `spread_located` turns it back into one
    problem per place, below the model's.
    """

    def __init__(self, problems: Sequence[tuple[Sequence[str | int], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = [(tuple(loc), message) for loc, message in problems]


def spread_located(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A validation error item (`ValidationError.errors()`) as the problems it stands for:
    itself, or each problem of a `LocatedError` at the model's place plus its own."""
    raised = (error.get("ctx") or {}).get("error")
    base = list(error.get("loc", ()))
    if not isinstance(raised, LocatedError):
        return [{"loc": base, "msg": error.get("msg", ""), "type": error.get("type", "")}]
    return [
        {"loc": base + list(loc), "msg": message, "type": "value_error"}
        for loc, message in raised.problems
    ]
