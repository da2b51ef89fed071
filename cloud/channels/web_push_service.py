"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).

pywebpush encrypts each payload to the subscription's keys and signs the VAPID JWT with
the tenant's key; this module decides what goes in (a JSON payload the service worker
under `web/` understands, TTL, Urgency, Topic), refuses payloads the push services would
refuse, and maps the push service's answer to a SendResult.

An endpoint comes from whoever holds the tenant's public app key, so it is checked when
registered (the API) and again at each send: pywebpush posts through a
`cloud.outbound.guarded_session`, which connects only to public https addresses it
checked (or allow-listed ones), redirects included. A refused endpoint fails its
message for good (`FORBIDDEN_TARGET`); the device stays, as it may be an allow-list
away from working.

Pushes go out from a few threads, as many at a time to each push service's host as the
adaptive limiter (cloud.channels.inflight) lets: each thread takes the next push whose host
has a free slot, so a slow service holds back only its own pushes. The time-out clock starts
when a push goes out: requests' connect time-out (failing it, nothing was sent: UNAVAILABLE)
and read time-out (the wait for the answer once the request is written: DEADLINE_EXCEEDED,
after which the service may have the push, and a retry, under the same Topic, replaces it).
Pushes still without a slot at the send's deadline are not sent (NOT_SENT).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush

from cloud.channels.dedupe import collapse_id
from cloud.channels.inflight import (
    DEFAULT_SEND_BUDGET_S,
    InflightLimiter,
    LimitSettings,
    Permit,
    Signal,
    host_key,
    send_deadline,
    signal_for_status,
)
from cloud.channels.results import NOT_SENT, SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy, parse_retry_after, send_with_retries
from cloud.channels.vapid import VapidKeys, b64url_decode
from cloud.outbound import (
    OutboundPolicy,
    OutboundRefusedError,
    RefusedTargetError,
    count_refusal,
    guarded_session,
)

logger = logging.getLogger(__name__)

Urgency = Literal["very-low", "low", "normal", "high"]
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
#: Push services must accept 4096 bytes of encrypted body (RFC 8030 §7.2). aes128gcm adds
#: an 86-byte header (salt 16, record size 4, key id length 1, key id 65), a 1-byte padding
#: delimiter and a 16-byte tag to the single record, which leaves this much for the payload.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 1 - 16
#: RFC 8030 §5.4: a Topic is at most 32 characters of the URL-safe base64 alphabet.
TOPIC_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")
#: RFC 8292 allows a JWT for up to 24 h; 12 h leaves room for clock skew at the service.
VAPID_EXP_S = 12 * 3600
#: Push services are few (one per browser vendor): threads enough for one service's
#: limit to grow while others are slow, without opening a socket per message. Also the
#: most pushes in flight to one host.
DEFAULT_WORKERS = 16
#: How long connecting to a push service may take (nothing is sent before it is done).
CONNECT_TIMEOUT_S = 5.0
#: How often a thread with nothing startable looks again for slots others freed.
POLL_S = 0.05
#: The error code of a message whose endpoint the outbound rules refused.
FORBIDDEN_TARGET = "FORBIDDEN_TARGET"


class InvalidSubscriptionError(ValueError):
    """The subscription JSON a browser sent is unusable; the message says why."""


@dataclass(frozen=True, slots=True)
class WebPushSubscription:
    """What `PushSubscription.toJSON()` gives in the browser: an endpoint and two keys."""

    endpoint: str
    p256dh: str
    auth: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, policy: OutboundPolicy
                  ) -> WebPushSubscription:
        """Validate a browser's subscription; raises InvalidSubscriptionError. The
        endpoint must pass `policy` (public https, or allow-listed), as it must again
        when sent to.
        """
        endpoint = data.get("endpoint")
        keys = data.get("keys")
        if not isinstance(endpoint, str) or not isinstance(keys, Mapping):
            raise InvalidSubscriptionError("expected {endpoint, keys: {p256dh, auth}}")
        try:
            policy.check_url(endpoint)
        except OutboundRefusedError as refusal:
            raise InvalidSubscriptionError(f"endpoint {refusal.reason}") from None
        p256dh, auth = keys.get("p256dh"), keys.get("auth")
        if not isinstance(p256dh, str) or not isinstance(auth, str):
            raise InvalidSubscriptionError("keys.p256dh and keys.auth must be strings")
        try:
            point, secret = b64url_decode(p256dh), b64url_decode(auth)
        except ValueError as exc:
            raise InvalidSubscriptionError(f"keys are not base64url: {exc}") from exc
        if len(point) != 65 or point[0] != 4:
            raise InvalidSubscriptionError("keys.p256dh is not an uncompressed P-256 point")
        if len(secret) != 16:
            raise InvalidSubscriptionError("keys.auth must be 16 bytes")
        return cls(endpoint=endpoint, p256dh=p256dh, auth=auth)

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True, slots=True)
class WebPushMessage:
    subscription: WebPushSubscription
    title: str
    body: str
    #: Stable per (customer, scenario step), as for mobile push.
    idempotency_key: str
    url: str | None = None
    icon_url: str | None = None
    image_url: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    ttl_s: int = 3600
    urgency: Urgency = "normal"
    #: Replaces an undelivered message with the same topic at the push service; defaults
    #: to a digest of the idempotency key, so a replayed send replaces its twin.
    topic: str | None = None
    #: Where the service worker under web/ POSTs {tag, opened_at} when the user clicks
    #: (the tracking endpoint that records the open); https or the site's own origin.
    open_url: str | None = None


class PayloadTooLargeError(ValueError):
    pass


def payload_for(message: WebPushMessage) -> bytes:
    """The JSON the service worker reads; raises PayloadTooLargeError past the 4 KB record."""
    tag = collapse_id(message.idempotency_key)
    document: dict[str, Any] = {"title": message.title, "body": message.body, "tag": tag}
    for key, value in (
        ("url", message.url),
        ("icon", message.icon_url),
        ("image", message.image_url),
        ("open_url", message.open_url),
    ):
        if value:
            document[key] = value
    if message.data:
        document["data"] = dict(message.data)
    encoded = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    if len(encoded) > MAX_PLAINTEXT_BYTES:
        raise PayloadTooLargeError(f"payload is {len(encoded)} bytes, limit {MAX_PLAINTEXT_BYTES}")
    return encoded


def headers_for(message: WebPushMessage) -> dict[str, str]:
    if message.urgency not in URGENCIES:
        raise ValueError(f"urgency must be one of {sorted(URGENCIES)}, got {message.urgency!r}")
    topic = message.topic or collapse_id(message.idempotency_key)
    if not TOPIC_RE.fullmatch(topic):
        raise ValueError(f"topic must be 1-32 URL-safe base64 characters, got {topic!r}")
    return {"Urgency": message.urgency, "Topic": topic}


def result_for_response(endpoint: str, response: requests.Response) -> SendResult:
    """Map a push service's answer (RFC 8030 §5, plus what the big services send)."""
    status = response.status_code
    if status in (200, 201, 202):
        return SendResult(
            token=endpoint, ok=True, provider_message_id=response.headers.get("Location")
        )
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (404, 410):
        # The subscription expired or the user revoked permission: forget it.
        return SendResult(token=endpoint, ok=False, error_code="UNREGISTERED", permanent=True)
    if status == 413:
        return SendResult(token=endpoint, ok=False, error_code="PAYLOAD_TOO_LARGE", permanent=True)
    if status == 429:
        return SendResult(
            token=endpoint, ok=False, error_code="QUOTA_EXCEEDED", retry_after_s=retry_after
        )
    if status in (401, 403):
        # The VAPID signature or key was refused: the tenant's configuration, not this address.
        return SendResult(token=endpoint, ok=False, error_code="UNAUTHENTICATED")
    if status >= 500:
        code = "UNAVAILABLE" if status in (502, 503, 504) else "INTERNAL"
        return SendResult(token=endpoint, ok=False, error_code=code, retry_after_s=retry_after)
    return SendResult(token=endpoint, ok=False, error_code="INVALID_ARGUMENT", permanent=True)


class WebPushSender:
    """Sends web pushes for one tenant (one VAPID key). Thread-safe."""

    def __init__(
        self,
        vapid: VapidKeys,
        *,
        subject: str,
        policy: OutboundPolicy,
        timeout_s: float = 10.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
        workers: int = DEFAULT_WORKERS,
        tenant: str = "",
        limiter: InflightLimiter | None = None,
        budget_s: float = DEFAULT_SEND_BUDGET_S,
    ) -> None:
        """`policy` decides which endpoints may be posted to; `tenant` names the sender
        in logs and metrics. `timeout_s` is the wait for an answer once a push is out;
        `limiter` may be shared by the senders of several tenants (by default, one of the
        sender's own, allowing up to `workers` pushes in flight per host); `budget_s`:
        how long a send may take when its caller set no deadline."""
        self.subject = subject
        self.tenant = tenant
        self.application_server_key = vapid.application_server_key
        self._vapid = Vapid.from_pem(vapid.private_pem)
        try:
            # Push services use `sub` to reach the sender's operator; refuse a bad one now,
            # at start, rather than on every send.
            self._vapid.sign({"sub": subject, "aud": "https://push.example"})
        except VapidException as exc:
            raise ValueError(
                f"VAPID subject must be mailto:<address> or https://<host>: {exc}"
            ) from exc
        self._timeouts = (connect_timeout_s, timeout_s)
        self._retry = retry
        self._workers = workers
        self._budget_s = budget_s
        self.limiter = limiter or InflightLimiter(
            LimitSettings.for_timeout(timeout_s, maximum=workers)
        )
        self._session = guarded_session(policy, pool_maxsize=workers, max_retries=0)

    def deliver(self, messages: Sequence[WebPushMessage]) -> list[SendResult]:
        """One result per message, in order. Never raises for a per-subscription error."""
        results: dict[int, SendResult] = {}
        prepared: dict[int, tuple[bytes, dict[str, str]]] = {}
        for index, message in enumerate(messages):
            endpoint = message.subscription.endpoint
            try:
                prepared[index] = (payload_for(message), headers_for(message))
            except PayloadTooLargeError as exc:
                logger.warning("web push %s not sent: %s", message.idempotency_key, exc)
                results[index] = SendResult(
                    token=endpoint, ok=False, error_code="PAYLOAD_TOO_LARGE", permanent=True
                )
            except ValueError as exc:
                logger.warning("web push %s not sent: %s", message.idempotency_key, exc)
                results[index] = SendResult(
                    token=endpoint, ok=False, error_code="INVALID_ARGUMENT", permanent=True
                )

        deadline = send_deadline(self._budget_s)

        def send_once(pending: Sequence[int]) -> dict[int, SendResult]:
            lanes = _Lanes(self.limiter, deadline)
            for index in pending:
                lanes.add(host_key(messages[index].subscription.endpoint), index)
            outcomes: dict[int, SendResult] = {}

            def work() -> None:
                while (job := lanes.next()) is not None:
                    index, permit = job
                    try:
                        outcomes[index] = self._send_one(messages[index], *prepared[index],
                                                         permit=permit)
                    finally:
                        lanes.released()

            threads = min(self._workers, len(pending))
            if not threads:
                return outcomes
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webpush") as pool:
                for done in [pool.submit(work) for _ in range(threads)]:
                    done.result()
            for index, retry_after in lanes.unsent.items():
                outcomes[index] = SendResult(
                    token=messages[index].subscription.endpoint, ok=False, error_code=NOT_SENT,
                    retry_after_s=retry_after, latency_ms=0,
                )
            return outcomes

        results.update(
            send_with_retries(send_once, sorted(prepared), self._retry, deadline=deadline)
        )
        return [results[index] for index in range(len(messages))]

    def _send_one(
        self, message: WebPushMessage, payload: bytes, headers: dict[str, str], *,
        permit: Permit,
    ) -> SendResult:
        """One push under `permit`, which is released with what the answer said."""
        signal, latency, retry_after = Signal.NONE, None, None
        started = time.monotonic()
        if permit.close_connection:
            headers = {**headers, "Connection": "close"}  # frees a slot for a stuck push
        try:
            result, response = self._post(message, payload, headers)
            if response is not None:
                signal = signal_for_status(response.status_code)
                latency = response.elapsed.total_seconds()
                if signal is Signal.OVERLOAD:
                    retry_after = result.retry_after_s
            elif result.error_code in ("DEADLINE_EXCEEDED", "UNAVAILABLE"):
                signal = Signal.OVERLOAD
            return replace(result, latency_ms=round(
                (time.monotonic() - started if latency is None else latency) * 1000
            ))
        finally:
            self.limiter.release(permit, signal, latency_s=latency, retry_after_s=retry_after)

    def _post(
        self, message: WebPushMessage, payload: bytes, headers: dict[str, str]
    ) -> tuple[SendResult, requests.Response | None]:
        """The push and what came of it, with the answer if there was one."""
        endpoint = message.subscription.endpoint
        try:
            response = webpush(
                subscription_info=message.subscription.to_json(),
                data=payload,  # pywebpush encrypts bytes as well as str
                vapid_private_key=self._vapid,
                # A fresh dict per call: pywebpush writes aud and exp into it.
                vapid_claims={"sub": self.subject, "exp": _vapid_expiry()},
                content_encoding="aes128gcm",
                timeout=self._timeouts,
                ttl=message.ttl_s,
                headers=dict(headers),
                requests_session=self._session,
            )
        except RefusedTargetError as exc:
            count_refusal(exc.refusal, client="web_push", stage="send", tenant=self.tenant)
            return SendResult(
                token=endpoint, ok=False, error_code=FORBIDDEN_TARGET, permanent=True
            ), None
        except WebPushException as exc:
            if exc.response is None:
                logger.warning("web push to %s refused before sending: %s", _origin(endpoint), exc)
                return SendResult(
                    token=endpoint, ok=False, error_code="INVALID_ARGUMENT", permanent=True
                ), None
            return result_for_response(endpoint, exc.response), exc.response
        except requests.ConnectTimeout:  # before Timeout: it is one, but nothing was sent
            logger.warning("web push service %s: no connection in time", _origin(endpoint))
            return SendResult(token=endpoint, ok=False, error_code="UNAVAILABLE"), None
        except requests.Timeout:
            return SendResult(token=endpoint, ok=False, error_code="DEADLINE_EXCEEDED"), None
        except requests.RequestException as exc:
            logger.warning("web push service %s unreachable: %s", _origin(endpoint), exc)
            return SendResult(token=endpoint, ok=False, error_code="UNAVAILABLE"), None
        if not isinstance(response, requests.Response):  # pragma: no cover - only with curl=True
            raise TypeError("pywebpush returned no response")
        return result_for_response(endpoint, response), response

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> WebPushSender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Lanes:
    """One send call's pushes by host, handed to the sending threads as the limiter frees
    slots: the next host in turn with a free slot gives its next push. At the deadline,
    or once a host is held by a Retry-After past it (or past the limiter's `hold_wait_s`),
    what is left is not sent (`unsent`, with the host's remaining hold)."""

    def __init__(self, limiter: InflightLimiter, deadline: float) -> None:
        self._limiter = limiter
        self._deadline = deadline
        self._lanes: dict[str, deque[int]] = {}
        self._changed = threading.Condition()
        self.unsent: dict[int, float | None] = {}

    def add(self, key: str, index: int) -> None:
        self._lanes.setdefault(key, deque()).append(index)

    def next(self) -> tuple[int, Permit] | None:
        """The next push to send and its permit; None when nothing is left to start."""
        with self._changed:
            while self._lanes:
                if time.monotonic() >= self._deadline:
                    for key in list(self._lanes):
                        held = self._limiter.held_for(key)
                        for index in self._lanes.pop(key):
                            self.unsent[index] = held or None
                    break
                for key, lane in list(self._lanes.items()):
                    permit = self._limiter.try_acquire(key, behind=len(lane) - 1)
                    if permit is None:
                        continue
                    del self._lanes[key]  # back in at the end: hosts take turns
                    index = lane.popleft()
                    if lane:
                        self._lanes[key] = lane
                    return index, permit
                remaining = self._deadline - time.monotonic()
                wait = min(remaining, self._limiter.settings.hold_wait_s)
                for key in list(self._lanes):
                    held = self._limiter.held_for(key)
                    if remaining <= 0 or held >= wait:
                        for index in self._lanes.pop(key):
                            self.unsent[index] = held or None
                if self._lanes:
                    self._changed.wait(min(remaining, POLL_S))
            return None

    def released(self) -> None:
        """A push is over: its slot may be free for another."""
        with self._changed:
            self._changed.notify()


def _vapid_expiry() -> int:
    return int(time.time()) + VAPID_EXP_S


def _origin(endpoint: str) -> str:
    """Scheme and host only: the path of an endpoint is a per-user capability, not for logs."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"
