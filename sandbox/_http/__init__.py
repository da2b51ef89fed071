"""The former import path of the shared HTTP server, now `sandbox.web`; kept until the
callers that still import it from here move to `sandbox.web`."""

from sandbox.web import (
    MAX_BODY_BYTES,
    BadRequestError,
    Handler,
    Journal,
    LocalHTTPServer,
    OutcomeScript,
    Request,
    Response,
    Router,
    SandboxService,
    journal_page,
    json_response,
)

__all__ = [
    "MAX_BODY_BYTES",
    "BadRequestError",
    "Handler",
    "Journal",
    "LocalHTTPServer",
    "OutcomeScript",
    "Request",
    "Response",
    "Router",
    "SandboxService",
    "journal_page",
    "json_response",
]
