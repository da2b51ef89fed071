"""The one error type a contract violation raises, and how validation failures read."""

from __future__ import annotations

from pydantic import ValidationError

#: Every id in a topic or a payload (tenant, store, gateway, zone) follows one rule.
SEGMENT_RULE = "use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
_SEGMENT_FIELDS = frozenset({"tenant", "store", "gateway", "zone"})
#: A dead-letter reason names at most this many problems; the rest are counted.
MAX_PROBLEMS_LISTED = 10


class ContractError(ValueError):
    """A payload, topic or identifier does not satisfy the wire contract.

    The message is meant for an operator reading a dead-letter table or a log:
    it names the field and the rule that failed, never the offending value (which
    could carry something that must not be logged, such as a raw identifier).
    """


def describe_validation_error(error: ValidationError) -> str:
    """A readable summary that names fields and rules but never echoes input values."""
    problems = []
    for item in error.errors(include_input=False, include_url=False)[:MAX_PROBLEMS_LISTED]:
        location = ".".join(str(part) for part in item["loc"]) or "(message)"
        field = str(item["loc"][-1]) if item["loc"] else ""
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch" and field in _SEGMENT_FIELDS:
            message = f"not a valid id: {SEGMENT_RULE}"
        problems.append(f"{location}: {message}")
    more = error.error_count() - len(problems)
    suffix = f"; and {more} more" if more > 0 else ""
    return "; ".join(problems) + suffix
