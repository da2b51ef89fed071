"""How large a request may be: its body, per route, refused before it is read.

A request body larger than its route takes is refused with 413 and a JSON body naming
the limit, and the connection is closed, so that a client cannot make the API read (or
hold) a body of any size:

- with a `Content-Length` above the limit, before the application is called: not one
  byte of the body is read;
- without one (chunked), or with a false one, as the chunks arrive: the request fails
  as soon as the bytes counted pass the limit, whatever the route was doing with them.

Every route takes the default (`api.max_body_bytes`, 256 KiB) unless it declares more,
next to itself, because what it legitimately takes is larger:

    @router.put("/templates/...", openapi_extra=body_limit(2 * MIB))

The limit of each operation is in the OpenAPI document (`x-max-body-bytes`).

Headers: the HTTP server stops buffering a request line and headers still incomplete
past `api.max_header_bytes` (400, `cloud.service.api_server_config`); complete ones past
it, which the server may have read in one piece, are refused here (431).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
MIB = 1024 * KIB
#: Where an operation's limit is declared (and shown in the OpenAPI document).
LIMIT_KEY = "x-max-body-bytes"


def body_limit(max_bytes: int) -> dict[str, Any]:
    """A route's `openapi_extra` declaring that it takes bodies up to `max_bytes`."""
    return {LIMIT_KEY: max_bytes}


class BodyTooLarge(HTTPException):
    """Raised into the application from `receive` once the bytes counted pass the limit;
    FastAPI answers it as any HTTP refusal (JSON), and the middleware does when it
    escapes."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, too_large(what, limit),
                         headers={"Connection": "close"})


def too_large(what: str, limit: int) -> str:
    return (f"request body too large: {what} takes at most {limit} bytes; nothing was "
            "processed")


class RequestLimits:
    """The ASGI middleware enforcing the headers' limit and each route's body limit (see
    the module).

    The route's own limit is known once the request is routed, which is before the
    application asks for the first chunk of the body: the declared length is checked
    then, before that chunk is read, and every chunk is counted after. A route that
    answers without reading the body at all (a refusal of its credentials) answers 413
    all the same when the declared length is above its limit: the connection closes
    instead of the server reading the rest to keep it open."""

    def __init__(self, app: ASGIApp, *, default: int, max_header_bytes: int) -> None:
        self.app = app
        self.default = default
        self.max_header_bytes = max_header_bytes

    def limit_for(self, scope: Scope) -> tuple[str, int]:
        """The request as the client sent it, and its route's limit."""
        extra = getattr(scope.get("route"), "openapi_extra", None) or {}
        return f"{scope['method']} {scope['path']}", int(extra.get(LIMIT_KEY, self.default))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _header_bytes(scope) > self.max_header_bytes:
            await _refuse(send, status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE,
                          f"request headers too large: at most {self.max_header_bytes} bytes "
                          "with the request line")
            return
        declared = _content_length(scope)
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            what, limit = self.limit_for(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(what, limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(what, limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                what, limit = self.limit_for(scope)
                if declared is not None and declared > limit:
                    await _refuse(send, status.HTTP_413_CONTENT_TOO_LARGE, too_large(what, limit))
                    raise _Answered
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _Answered:
            pass
        except BodyTooLarge as error:
            if started:
                raise
            await _refuse(send, status.HTTP_413_CONTENT_TOO_LARGE, str(error.detail))


class _Answered(Exception):  # noqa: N818 (a signal, not an error)
    """The route's answer was replaced by the 413: stop it there."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                return None  # the server refuses it; the count below holds anyway
            # Nothing we take has 16 digits: no need to read an int of any length.
            return int(value) if len(value) < 16 else 10**16
    return None


def _header_bytes(scope: Scope) -> int:
    """The request line and headers as they came (near enough: separators counted)."""
    line = (len(scope["method"]) + len(scope.get("raw_path") or b"")
            + len(scope.get("query_string") or b"") + 12)
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def _refuse(send: Send, code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start", "status": code,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
