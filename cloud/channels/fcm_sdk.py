"""Every use of firebase-admin's internals, in one place.

Why any: firebase-admin offers no public way to choose the HTTP client its messaging
service sends through. Its `send_each_async` builds, validates and encodes each message,
fans the batch out and turns FCM's answers into typed errors (UnregisteredError,
QuotaExceededError with the HTTP response, ...), and all of that we keep. What we
replace is the object it sends through, `_MessagingService._async_client`: the SDK's own
(httpx, with its own 500/503 retries and a credential check per request) costs several
times the CPU per send of a kept aiohttp client, cannot be pointed at a local endpoint,
and would retry underneath our retry policy (docs/benchmarks/delivery.md).

The contract we rely on, checked by `install_client` at every sender's start and by
tests/cloud/channels/test_fcm_transport.py against the installed release:
- `messaging._get_messaging_service(app)` returns the app's `_MessagingService`;
- its `_async_client` is an `_http_client.HttpxAsyncClient`, and `send_each_async` calls
  `await _async_client.request("post", url=..., headers=..., json=...)`, reads `.json()`
  from the result and classifies `httpx.HTTPError`s (status errors by their response);
- `_MessagingService.encode_message(message)` is the JSON the SDK sends (the benchmark
  uses it to prepare bodies for its baseline).

firebase-admin is pinned in pyproject.toml to the releases this was tested with
(TESTED_RANGE); widening the pin means running those tests against the new release.
"""

from __future__ import annotations

import platform
from typing import Any

import firebase_admin
from firebase_admin import _http_client, messaging

#: The firebase-admin releases the sender was tested with (the pin in pyproject.toml).
TESTED_RANGE = ">=7.7,<7.8"
TESTED_FROM = (7, 7)
TESTED_BELOW = (7, 8)


class SdkShapeError(RuntimeError):
    """firebase-admin no longer has the internal shape the sender relies on."""

    def __init__(self, attribute: str, problem: str) -> None:
        super().__init__(
            f"firebase-admin {firebase_admin.__version__} (tested: {TESTED_RANGE}): "
            f"{attribute} {problem}; the FCM sender cannot install its HTTP client. "
            "See cloud/channels/fcm_sdk.py."
        )
        self.attribute = attribute


def sdk_version() -> tuple[int, ...]:
    return tuple(int(part) for part in firebase_admin.__version__.split(".")[:2])


def version_tested() -> bool:
    return TESTED_FROM <= sdk_version() < TESTED_BELOW


def install_client(app: firebase_admin.App, client: object) -> Any:
    """Make the app's messaging service send through `client`; returns the SDK's own async
    client, which the caller closes. Raises SdkShapeError rather than send through a
    client without our policies."""
    service_of = getattr(messaging, "_get_messaging_service", None)
    if not callable(service_of):
        raise SdkShapeError("messaging._get_messaging_service", "is missing")
    service = service_of(app)
    if not callable(getattr(type(service), "send_each_async", None)):
        raise SdkShapeError("_MessagingService.send_each_async", "is missing")
    original = getattr(service, "_async_client", None)
    expected = getattr(_http_client, "HttpxAsyncClient", None)
    if expected is None or not isinstance(original, expected):
        raise SdkShapeError(
            "_MessagingService._async_client",
            f"is {type(original).__name__}, not _http_client.HttpxAsyncClient",
        )
    service._async_client = client
    return original


def encode_message(message: messaging.Message) -> Any:
    """The JSON object firebase-admin sends for `message` (the `message` field of the body)."""
    return messaging._MessagingService.encode_message(message)


def metrics_headers() -> dict[str, str]:
    """The client-metrics header firebase-admin puts on every request it sends, in the
    format its HTTP clients use."""
    return {
        "x-goog-api-client": (
            f"gl-python/{platform.python_version()} fire-admin/{firebase_admin.__version__}"
        )
    }
