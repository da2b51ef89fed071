"""A local Web Push service (RFC 8030) that checks VAPID and decrypts what it is sent.

It plays both parts a browser vendor's push service and a browser play: `subscribe()`
makes a subscription the way `PushManager.subscribe()` does (a P-256 key pair and an
auth secret, bound to the sender's applicationServerKey), and a push to its endpoint is
- authenticated: `Authorization: vapid t=<JWT>, k=<key>` with an ES256 signature by `k`,
  `aud` equal to the endpoint's origin, `exp` in the future and at most 24 h away, and
  `sub` a mailto: or https: URL (RFC 8292); `k` must be the key the subscription was
  made for (403 otherwise, as browsers' services do);
- checked: TTL present, Urgency and Topic well-formed, Content-Encoding aes128gcm,
  at most 4096 bytes (413);
- decrypted with the subscription's private key and auth secret (RFC 8291), so a test
  reads exactly what the service worker would.

Scripted outcomes per subscription give 404, 410, 429 (with Retry-After) and 503.

    python -m sandbox.webpush --port 8088   # prints {"url": ...}; POST /_sandbox/subscriptions
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from sandbox.web import (
    BadRequestError,
    Journal,
    OutcomeScript,
    Request,
    Response,
    Router,
    SandboxService,
    journal_page,
    json_response,
)

#: RFC 8030 §7.2: a push service must accept 4096 bytes of payload and may refuse more.
MAX_PAYLOAD_BYTES = 4096
#: RFC 8292 §2: a VAPID JWT's `exp` must not be more than 24 hours in the future.
MAX_VAPID_LIFETIME_S = 24 * 3600
#: Clock skew tolerated between the application server and this service.
CLOCK_SKEW_S = 60
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
TOPIC_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")
VAPID_HEADER_RE = re.compile(r"vapid\s+(?P<params>.+)", re.IGNORECASE)


class PushOutcome(StrEnum):
    DELIVER = "DELIVER"
    NOT_FOUND = "NOT_FOUND"  # 404
    GONE = "GONE"  # 410: subscription expired or unsubscribed
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"  # 429
    UNAVAILABLE = "UNAVAILABLE"  # 503


_STATUS = {
    PushOutcome.NOT_FOUND: 404,
    PushOutcome.GONE: 410,
    PushOutcome.TOO_MANY_REQUESTS: 429,
    PushOutcome.UNAVAILABLE: 503,
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class BrowserSubscription:
    """A subscription as a browser holds it: public parts for the sender, private key kept."""

    id: str
    endpoint: str
    p256dh: str
    auth: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    application_server_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` returns in a browser."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }


@dataclass(frozen=True, slots=True)
class PushDelivery:
    """A push the service accepted, decrypted as the service worker would see it."""

    subscription_id: str
    message_id: str
    payload: bytes
    ttl_s: int
    urgency: str
    topic: str | None
    vapid_subject: str
    received_at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class PushRefusedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify_vapid(
    authorization: str, *, audience: str, now: float | None = None
) -> tuple[str, dict[str, Any]]:
    """Check an RFC 8292 Authorization header; return (public key b64url, claims).

    Raises PushRefusedError(401) naming the first problem.
    """
    match = VAPID_HEADER_RE.fullmatch(authorization.strip())
    if match is None:
        raise PushRefusedError(401, "Authorization must use the vapid scheme (RFC 8292)")
    params: dict[str, str] = {}
    for part in match.group("params").split(","):
        name, _, value = part.strip().partition("=")
        params[name.strip()] = value.strip()
    token, key = params.get("t"), params.get("k")
    if not token or not key:
        raise PushRefusedError(401, "vapid credentials need t= and k=")
    try:
        point = _b64url_decode(key)
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(claims_b64))
        signature = _b64url_decode(signature_b64)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise PushRefusedError(401, f"malformed vapid credentials: {exc}") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise PushRefusedError(401, "VAPID JWT must be signed with ES256")
    if len(signature) != 64:
        raise PushRefusedError(401, "ES256 signature must be 64 bytes (r || s)")
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public_key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise PushRefusedError(401, "VAPID signature does not verify with k") from exc
    if not isinstance(claims, dict):
        raise PushRefusedError(401, "VAPID claims must be a JSON object")
    if claims.get("aud") != audience:
        raise PushRefusedError(401, f"aud must be {audience!r}, got {claims.get('aud')!r}")
    exp = claims.get("exp")
    current = time.time() if now is None else now
    if not isinstance(exp, int) or exp < current - CLOCK_SKEW_S:
        raise PushRefusedError(401, "VAPID JWT expired")
    if exp > current + MAX_VAPID_LIFETIME_S + CLOCK_SKEW_S:
        raise PushRefusedError(401, "VAPID JWT exp is more than 24 hours away")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
        raise PushRefusedError(401, "VAPID sub must be a mailto: or https: URL")
    return _b64url(point), claims


class WebPushSandbox(SandboxService):
    """The push service on a loopback port; `with WebPushSandbox() as push: ...`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, BrowserSubscription] = {}
        self._gone: set[str] = set()
        self._outcomes = OutcomeScript(PushOutcome.DELIVER)
        #: Retry-After (seconds) sent with 429 and 503; None sends none.
        self.retry_after_s: int | None = 1
        self.received: Journal[PushDelivery] = Journal()
        #: Every refusal as (subscription id, HTTP status, reason), for assertions.
        self.refusals: Journal[tuple[str, int, str]] = Journal()
        router = Router()
        router.add("POST", r"/push/(?P<sid>[A-Za-z0-9_\-]+)", self._handle_push)
        router.add("POST", r"/_sandbox/subscriptions", self._handle_subscribe)
        router.add("GET", r"/_sandbox/deliveries", self._handle_list)
        super().__init__(router, host=host, port=port, name="webpush")

    # -- the browser's side ------------------------------------------------------------------

    def subscribe(self, application_server_key: str | None = None) -> BrowserSubscription:
        """A new subscription, bound to the sender's VAPID public key when one is given."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        point = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        sid = secrets.token_urlsafe(24)
        subscription = BrowserSubscription(
            id=sid,
            endpoint=f"{self.url}/push/{sid}",
            p256dh=_b64url(point),
            auth=_b64url(secrets.token_bytes(16)),
            private_key=private_key,
            application_server_key=application_server_key,
        )
        with self._lock:
            self._subscriptions[sid] = subscription
        return subscription

    def unsubscribe(self, subscription: BrowserSubscription) -> None:
        """The user revoked permission: pushes now get 410 Gone."""
        with self._lock:
            self._gone.add(subscription.id)

    def script(
        self,
        subscription: BrowserSubscription,
        *outcomes: PushOutcome,
        then: PushOutcome = PushOutcome.DELIVER,
    ) -> None:
        self._outcomes.set(subscription.id, outcomes, then)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[PushDelivery]:
        return self.received.wait_for(count, timeout_s, what="web pushes")

    # -- the push service's side -------------------------------------------------------------

    def _handle_push(self, request: Request) -> Response:
        sid = request.params["sid"]
        try:
            delivery = self._accept(sid, request)
        except PushRefusedError as exc:
            self.refusals.append((sid, exc.status, exc.reason))
            headers = {}
            if exc.status in (429, 503) and self.retry_after_s is not None:
                headers["Retry-After"] = str(self.retry_after_s)
            return json_response(exc.status, {"code": exc.status, "error": exc.reason}, headers)
        self.received.append(delivery)
        return Response(
            201,
            headers={
                "Location": f"{self.url}/message/{delivery.message_id}",
                "TTL": str(delivery.ttl_s),
            },
        )

    def _accept(self, sid: str, request: Request) -> PushDelivery:
        with self._lock:
            subscription = self._subscriptions.get(sid)
            gone = sid in self._gone
        if subscription is None:
            raise PushRefusedError(404, "no such subscription")
        if gone:
            raise PushRefusedError(410, "subscription expired or unsubscribed")
        key, claims = verify_vapid(request.header("Authorization"), audience=self.url)
        if (
            subscription.application_server_key is not None
            and key != subscription.application_server_key
        ):
            raise PushRefusedError(
                403, "VAPID key differs from the subscription's applicationServerKey"
            )
        ttl_text = request.header("TTL")
        if not ttl_text.isdigit():
            raise PushRefusedError(400, "TTL header (seconds) is required")
        urgency = request.header("Urgency", "normal")
        if urgency not in URGENCIES:
            raise PushRefusedError(400, f"Urgency must be one of {sorted(URGENCIES)}")
        topic = request.header("Topic") or None
        if topic is not None and not TOPIC_RE.fullmatch(topic):
            raise PushRefusedError(400, "Topic must be 1-32 URL-safe base64 characters")
        if len(request.body) > MAX_PAYLOAD_BYTES:
            raise PushRefusedError(
                413, f"payload of {len(request.body)} bytes exceeds {MAX_PAYLOAD_BYTES}"
            )
        payload = b""
        if request.body:
            if request.header("Content-Encoding").lower() != "aes128gcm":
                raise PushRefusedError(415, "Content-Encoding must be aes128gcm (RFC 8291)")
            try:
                payload = http_ece.decrypt(
                    request.body,
                    private_key=subscription.private_key,
                    auth_secret=_b64url_decode(subscription.auth),
                    version="aes128gcm",
                )
            except Exception as exc:  # http_ece raises bare ECE errors and cryptography's
                raise PushRefusedError(400, f"payload does not decrypt: {exc!r}") from exc
        outcome = self._outcomes.next(sid)
        if outcome is not PushOutcome.DELIVER:
            raise PushRefusedError(_STATUS[outcome], f"scripted {outcome.value}")
        return PushDelivery(
            subscription_id=sid,
            message_id=secrets.token_urlsafe(16),
            payload=payload,
            ttl_s=int(ttl_text),
            urgency=urgency,
            topic=topic,
            vapid_subject=str(claims["sub"]),
            received_at=time.time(),
        )

    # -- for a demo in another process -------------------------------------------------------

    def _handle_subscribe(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        if not isinstance(body, dict):
            raise BadRequestError('expected {"application_server_key": str | null}')
        key = body.get("application_server_key")
        if key is not None and not isinstance(key, str):
            raise BadRequestError("application_server_key must be a string")
        subscription = self.subscribe(key)
        return json_response(201, {"id": subscription.id, **subscription.to_json()})

    def _handle_list(self, request: Request) -> Response:
        return journal_page(
            request,
            self.received,
            key="deliveries",
            describe=lambda d: {
                "subscription_id": d.subscription_id,
                "payload": d.payload.decode("utf-8", "replace"),
                "ttl": d.ttl_s,
                "urgency": d.urgency,
                "topic": d.topic,
                "received_at": d.received_at,
            },
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.webpush", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    service = WebPushSandbox(host=args.host, port=args.port)
    print(json.dumps({"url": service.url}), flush=True)
    service.serve_until_terminated()
    return 0


if __name__ == "__main__":
    sys.exit(main())
