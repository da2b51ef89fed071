"""Mobile push through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

Each `FcmSender` owns a named firebase App built from the service-account file, so several
tenants' projects (and the tests) coexist in one process, and closing one sender tears
down only its App. Messages go out with firebase-admin's `messaging.send_each_async` in
chunks of at most 500 (the API's limit), on an event loop in a thread the sender owns, so
`send()` stays a plain blocking call for worker threads; per-token failures come back as
SendResults, never as exceptions.

The SDK builds, validates and encodes every message, fans the batch out and classifies
FCM's errors; the HTTP client it sends through is ours (cloud.channels.fcm_transport: a
kept aiohttp client with the endpoint redirect, the access token prepared once per batch,
no transport retries, and as many requests in flight as FCM's host takes now, with
time-outs that start when a request goes out), installed by cloud.channels.fcm_sdk, the
one module that touches firebase-admin's internals. Why this split, and what the
alternatives cost, is measured in docs/benchmarks/delivery.md.

A send ends by its deadline (the caller's, `cloud.channels.inflight.sending_until`, else
`budget_s` from its start): requests still waiting for a slot then are not sent
(NOT_SENT), and no retry starts after it. Each result carries the send's earlier tries of
its message and its own latency on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

import firebase_admin
from firebase_admin import credentials, exceptions, messaging
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from cloud.channels import fcm_sdk
from cloud.channels.dedupe import collapse_id
from cloud.channels.fcm_transport import (
    CONNECT_TIMEOUT_S,
    FCM_ORIGIN,
    POOL_CONNECTIONS,
    Exchange,
    ExchangeLog,
    FcmHttpClient,
    NotSentRequestError,
    exchange_key,
    google_auth_session,
    logging_exchanges,
)
from cloud.channels.inflight import (
    DEFAULT_SEND_BUDGET_S,
    InflightLimiter,
    LimitSettings,
    send_deadline,
    sending_until,
)
from cloud.channels.results import NOT_SENT, SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy, parse_retry_after, send_with_retries

__all__ = [
    "ANDROID_PRIORITY",
    "APNS_PRIORITY",
    "DEAD_TOKEN_ERRORS",
    "FCM_ORIGIN",
    "MAX_BATCH",
    "MAX_TTL_S",
    "PERMANENT_CODES",
    "POOL_CONNECTIONS",
    "FcmHttpClient",
    "FcmSender",
    "FcmSettings",
    "PushMessage",
    "build_message",
    "result_for_error",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One notification to one device token."""

    token: str
    title: str
    body: str
    #: Stable per (customer, scenario step): a replayed trigger must not send twice.
    idempotency_key: str
    image_url: str | None = None
    deep_link: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    ttl_s: int = 3600


class FcmSettings(BaseModel):
    """Firebase Cloud Messaging (HTTP v1) settings.

    `endpoint` replaces https://fcm.googleapis.com for a local FCM-compatible server;
    the OAuth token endpoint comes from the service-account file's `token_uri`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: str = Field(min_length=1, description="The Firebase project's id.")
    credentials_file: str = Field(
        min_length=1,
        description="The path of the Firebase service account's JSON key file.")
    endpoint: HttpUrl | None = Field(
        default=None,
        description="Replaces https://fcm.googleapis.com: a local FCM-compatible server.",
        json_schema_extra={"unset": "Google's FCM."})
    timeout_s: float = Field(
        default=10.0, gt=0,
        description="The wait for FCM's answer once a request is out (not the wait for a "
        "free slot).")
    connect_timeout_s: float = Field(
        default=CONNECT_TIMEOUT_S, gt=0,
        description="How long connecting may take (nothing is sent before it is done).")

#: FCM's send_each accepts at most 500 messages per call.
MAX_BATCH = 500
#: Every Vitrina push is user-visible and time-bound (the shopper is in front of the store
#: now), which is what FCM's high priority is for: it wakes a dozing device at once. FCM
#: demotes apps that use high priority for pushes that show nothing, which ours never do.
ANDROID_PRIORITY = "high"
#: APNs priority 10 (immediate) is only allowed for pushes that alert the user; ours do.
APNS_PRIORITY = "10"
#: FCM and APNs keep an undelivered message at most four weeks.
MAX_TTL_S = 28 * 24 * 3600
DEAD_TOKEN_ERRORS: Mapping[type[Exception], str] = {
    messaging.UnregisteredError: "UNREGISTERED",
    messaging.SenderIdMismatchError: "SENDER_ID_MISMATCH",
}
#: Errors that no retry can fix for this message (the token may still be fine).
PERMANENT_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT"})

T = TypeVar("T")


def _silence_token_deprecation() -> None:
    """Apps register FCM registration tokens, so `Message(token=...)` is what we must send.

    firebase-admin 7.7 nudges towards Firebase installation ids with a DeprecationWarning on
    every message; the warning says nothing actionable per send. (Adding the same filter
    again replaces it, so calling this per sender is harmless.)
    """
    warnings.filterwarnings(
        "ignore", message=r"Message\.token is deprecated", category=DeprecationWarning
    )


class _LoopThread:
    """An asyncio event loop running in a daemon thread that one sender owns."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and block the calling thread until it is done."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.run(self.loop.shutdown_default_executor())  # reauthorize() ran there
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def build_message(push: PushMessage, *, now: float | None = None) -> messaging.Message:
    """The FCM message for one PushMessage; raises ValueError for content FCM would refuse."""
    if not 0 <= push.ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be within 0..{MAX_TTL_S}, got {push.ttl_s}")
    key = collapse_id(push.idempotency_key)
    data = dict(push.data)
    extra = {"dedupe_key": key, **({"deep_link": push.deep_link} if push.deep_link else {})}
    clash = sorted(set(data) & set(extra))
    if clash:
        raise ValueError(f"data keys {clash} are reserved for the delivery layer")
    data.update(extra)
    expires_at = int(time.time() if now is None else now) + push.ttl_s
    return messaging.Message(
        token=push.token,
        notification=messaging.Notification(title=push.title, body=push.body, image=push.image_url),
        data=data,
        android=messaging.AndroidConfig(
            ttl=timedelta(seconds=push.ttl_s),
            priority=ANDROID_PRIORITY,
            notification=messaging.AndroidNotification(tag=key),
        ),
        apns=messaging.APNSConfig(
            headers={
                # APNs keeps the push as long as Android does, then drops it.
                "apns-expiration": str(expires_at),
                "apns-priority": APNS_PRIORITY,
                "apns-push-type": "alert",
                "apns-collapse-id": key,
            },
            # mutable-content lets the app's notification extension fetch the image.
            payload=messaging.APNSPayload(aps=messaging.Aps(mutable_content=bool(push.image_url))),
            fcm_options=messaging.APNSFCMOptions(image=push.image_url) if push.image_url else None,
        ),
    )


def result_for_error(token: str, error: Exception) -> SendResult:
    """Map a firebase-admin exception for one message to a SendResult."""
    for error_type, code in DEAD_TOKEN_ERRORS.items():
        if isinstance(error, error_type):
            return SendResult(token=token, ok=False, error_code=code, permanent=True)
    if isinstance(error, messaging.QuotaExceededError):
        return SendResult(
            token=token, ok=False, error_code="QUOTA_EXCEEDED", retry_after_s=_retry_after(error)
        )
    if isinstance(error, messaging.ThirdPartyAuthError):
        # APNs or web push credentials of the Firebase project are wrong: an operator's job.
        return SendResult(token=token, ok=False, error_code="THIRD_PARTY_AUTH_ERROR")
    if isinstance(error, exceptions.FirebaseError) and isinstance(
        error.cause, NotSentRequestError
    ):
        return SendResult(
            token=token, ok=False, error_code=NOT_SENT, retry_after_s=error.cause.retry_after_s
        )
    if isinstance(error, exceptions.FirebaseError):
        code = str(error.code)
        return SendResult(
            token=token,
            ok=False,
            error_code=code,
            permanent=code in PERMANENT_CODES,
            retry_after_s=_retry_after(error),
        )
    return SendResult(token=token, ok=False, error_code="UNKNOWN")


def _retry_after(error: exceptions.FirebaseError) -> float | None:
    response = error.http_response
    if response is None:
        return None
    return parse_retry_after(response.headers.get("Retry-After"))


class FcmSender:
    """`PushSender` for FCM HTTP v1. Thread-safe; one per (tenant) Firebase project.

    `settings.endpoint` sends to a local FCM-compatible server instead of Google's: FCM's
    origin through FcmHttpClient, google-auth's boundary lookup through its session (the
    token endpoint is the service-account file's `token_uri`). The App is private to the
    sender, which sends only with `send_each_async`, so the SDK's synchronous client is
    never used. The sender owns an event loop thread; `close()` (or leaving the `with`
    block) stops it and deletes the App.
    """

    def __init__(
        self, settings: FcmSettings, *, retry: RetryPolicy = DEFAULT_RETRY,
        limits: LimitSettings | None = None, budget_s: float = DEFAULT_SEND_BUDGET_S,
    ) -> None:
        """`limits`: the in-flight limiter's settings (by default, for `timeout_s` and
        the pool); `budget_s`: how long a send may take when its caller set no deadline."""
        _silence_token_deprecation()
        self.settings = settings
        self._retry = retry
        self._budget_s = budget_s
        self._app = firebase_admin.initialize_app(
            credentials.Certificate(settings.credentials_file),
            options={"projectId": settings.project_id, "httpTimeout": settings.timeout_s},
            name=f"vitrina-fcm-{settings.project_id}-{uuid.uuid4().hex[:8]}",
        )
        endpoint = str(settings.endpoint) if settings.endpoint else None
        self._credential = self._app.credential.get_credential()
        self._send_url = f"{FCM_ORIGIN}/v1/projects/{settings.project_id}/messages:send"
        self._token_lock = threading.Lock()
        self._token_session = google_auth_session(endpoint)
        self._token_request = auth_requests.Request(self._token_session)
        self._http = FcmHttpClient(
            endpoint, timeout_s=settings.timeout_s, reauthorize=self._reauthorize,
            connect_timeout_s=settings.connect_timeout_s, limits=limits,
        )
        self._loop = _LoopThread(f"fcm-{settings.project_id}")
        self._closed = False
        try:
            self._loop.run(self._http.open())
            self._sdk_client = fcm_sdk.install_client(self._app, self._http)
        except BaseException:
            self._sdk_client = None
            self.close()
            raise

    def send(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """Send a batch; one result per message, in order. Never raises for a per-token error."""
        if self._closed:
            raise RuntimeError("FcmSender is closed")
        results: dict[int, SendResult] = {}
        built: dict[int, messaging.Message] = {}
        for index, push in enumerate(messages):
            try:
                built[index] = build_message(push)
            except ValueError as exc:
                logger.warning("push %s not sent: %s", push.idempotency_key, exc)
                results[index] = SendResult(
                    token=push.token, ok=False, error_code="INVALID_ARGUMENT", permanent=True
                )
        order = sorted(built)
        deadline = send_deadline(self._budget_s)
        for start in range(0, len(order), MAX_BATCH):
            chunk = order[start : start + MAX_BATCH]
            results.update(
                send_with_retries(
                    lambda pending: self._send_once(messages, built, pending, deadline),
                    chunk, self._retry, deadline=deadline,
                )
            )
        return [results[index] for index in range(len(messages))]

    @property
    def limiter(self) -> InflightLimiter:
        """The in-flight limiter of this sender's requests (for metrics and tests)."""
        return self._http.limiter

    def deliver(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """The channel-neutral name for `send`."""
        return self.send(messages)

    def _send_once(
        self,
        messages: Sequence[PushMessage],
        built: Mapping[int, messaging.Message],
        pending: Sequence[int],
        deadline: float,
    ) -> dict[int, SendResult]:
        batch_error = self._ensure_access_token()
        if batch_error is not None:
            return {i: _replace_token(batch_error, messages[i].token) for i in pending}
        exchanges: ExchangeLog = {}
        try:
            response = self._loop.run(
                self._send_batch([built[i] for i in pending], deadline, exchanges)
            )
        except exceptions.FirebaseError as exc:
            # send_each_async raises only when something outside an HTTP exchange broke.
            logger.error("FCM batch of %d failed: %s", len(pending), exc)
            return {i: result_for_error(messages[i].token, exc) for i in pending}
        outcome: dict[int, SendResult] = {}
        for index, sent in zip(pending, response.responses, strict=True):
            push = messages[index]
            if sent.success:
                result = SendResult(
                    token=push.token, ok=True, provider_message_id=sent.message_id
                )
            else:
                result = result_for_error(push.token, sent.exception)
            seen = exchanges.get(exchange_key(push.token, collapse_id(push.idempotency_key)))
            outcome[index] = _with_exchanges(result, seen or [])
        return outcome

    async def _send_batch(
        self, batch: list[messaging.Message], deadline: float, exchanges: ExchangeLog
    ) -> messaging.BatchResponse:
        """send_each_async with the send's deadline for every request's slot, and their
        exchanges noted in `exchanges` (its requests run in tasks started here)."""
        with sending_until(deadline), logging_exchanges(exchanges):
            return await messaging.send_each_async(batch, app=self._app)

    def _ensure_access_token(self) -> SendResult | None:
        """Fetch the OAuth token if needed and hand its headers to the HTTP client, once
        per batch: the requests of a batch then carry ready-made headers instead of each
        asking the credential (and a cold credential is refreshed once, not per request)."""
        with self._token_lock:
            if not self._credential.valid:
                failure = self._refresh()
                if failure is not None:
                    return failure
            self._http.auth_headers = self._authorization()
        return None

    def _refresh(self) -> SendResult | None:
        """Refresh the access token (caller holds `_token_lock`); a SendResult on failure."""
        try:
            self._credential.refresh(self._token_request)
        except auth_exceptions.TransportError as exc:
            logger.error("FCM token endpoint unreachable: %s", exc)
            return SendResult(token="", ok=False, error_code="UNAVAILABLE")
        except auth_exceptions.RefreshError as exc:
            logger.error("FCM credentials refused: %s", exc)
            code = "UNAVAILABLE" if exc.retryable else "UNAUTHENTICATED"
            return SendResult(token="", ok=False, error_code=code)
        return None

    def _authorization(self) -> dict[str, str]:
        """The headers firebase-admin's client would put on a request to FCM: its metrics
        header, then google-auth's bearer token and regional access boundary.
        before_request also starts google-auth's boundary lookup (once per token, through
        the token session)."""
        headers = fcm_sdk.metrics_headers()
        self._credential.before_request(self._token_request, "POST", self._send_url, headers)
        return headers

    def _reauthorize(self, refused: str) -> Mapping[str, str] | None:
        """FCM answered 401 to a request sent with `refused`: refresh the token unless a
        request that saw the same 401 already did, and return the headers to retry with."""
        with self._token_lock:
            current = self._http.auth_headers
            if current.get("authorization") != refused:
                return current
            if self._refresh() is not None:
                return None
            fresh = self._authorization()
            self._http.auth_headers = fresh
            return fresh

    def close(self) -> None:
        """Close the HTTP clients, stop the event loop thread, then delete the App."""
        if self._closed:
            return
        self._closed = True
        self._loop.run(self._http.aclose())
        if self._sdk_client is not None:
            self._loop.run(self._sdk_client.aclose())
        self._loop.close()
        self._token_session.close()
        app = self._app
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            firebase_admin.delete_app(app)
            return
        # delete_app closes the async client with asyncio.run(), which a running loop forbids.
        closer = threading.Thread(target=firebase_admin.delete_app, args=(app,), name="fcm-close")
        closer.start()
        closer.join()

    def __enter__(self) -> FcmSender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _with_exchanges(result: SendResult, exchanges: Sequence[Exchange]) -> SendResult:
    """`result` with the latency of its exchange, after the exchanges before it in the same
    request (a 401, then the same request again with a fresh token)."""
    if not exchanges:
        return result
    *refused, last = exchanges
    earlier = tuple(
        SendResult(token=result.token, ok=False, error_code="UNAUTHENTICATED",
                   latency_ms=_ms(exchange.latency_s))
        for exchange in refused
    )
    timed = replace(result, latency_ms=_ms(last.latency_s) if last.sent else 0)
    return timed.after(earlier)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _replace_token(result: SendResult, token: str) -> SendResult:
    return replace(result, token=token)
