"""What every refusal looks like, and how a route documents the ones it can give.

Every 4xx the API sends is a JSON object with `detail`: a sentence saying what to fix
(most refusals), a list of problems each at its field (422, as FastAPI's own validation
errors are), or an object with a machine-readable reason (a few refusals that apps act
on). A 422 of the request's shape also carries `message`, the problems in one line.

Routes declare what they can answer besides success, next to themselves:

    @router.put("/offers/{key}", responses=refusals(409))

and the API adds what holds for whole groups (`cloud.api.app`): 401/403/404 of the
tenant scope, 413 of the body limit, 422 of validation. The contract test
(tests/cloud/api/test_contract.py) holds every route to its documented answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.examples import example


class FieldProblem(BaseModel):
    """One problem of a request, at the place it was found (`["body", "steps", 2]`,
    `["query", "limit"]`, `["path", "customer_id"]`)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str | None = None


class ErrorBody(BaseModel):
    """A refusal: what is wrong, and what to do about it."""

    model_config = ConfigDict(extra="allow", json_schema_extra=example(
        {"detail": "customer 'cus_0000' of tenant 'acme' not found"},
        {"detail": [{"loc": ["body", "email"], "msg": "String should match pattern",
                     "type": "string_pattern_mismatch"}],
         "message": "invalid request: email: String should match pattern"},
        {"detail": {"reason": "location_consent_missing",
                    "msg": "the customer never answered the location-based marketing question: "
                           "location reports need a recorded yes (channel location_marketing); "
                           "nothing was stored"}},
    ))

    detail: str | list[FieldProblem] | dict[str, Any] = Field(
        description="What is wrong: a sentence, a list of problems each at its field, "
        "or an object with a machine-readable `reason` (or `message`) and its sentence."
    )
    message: str | None = Field(
        default=None, description="With a list of problems: all of them in one line."
    )


#: What each refusal means, as the OpenAPI document says it.
MEANINGS: Mapping[int, str] = {
    400: "The request is malformed.",
    401: "No credentials, or credentials that do not authenticate (a key, a session, a "
         "customer token, a signature).",
    403: "The caller is authenticated but may not do this.",
    404: "Not found (or not this caller's to see).",
    409: "Conflicts with what exists.",
    413: "The request body is larger than this route takes (the limit is in the message "
         "and in the operation's `x-max-body-bytes`); nothing of it was processed.",
    422: "The request's content is invalid: each problem at its field.",
    429: "Too many attempts: wait as `Retry-After` says.",
    503: "A service this needs is not available now: try again later.",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route (or router) that can refuse with `codes`."""
    return {code: {"model": ErrorBody, "description": MEANINGS[code]} for code in codes}
