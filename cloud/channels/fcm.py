"""Mobile push through Firebase Cloud Messaging (HTTP v1) with firebase-admin.

Each `FcmSender` owns a named firebase App built from the service-account file, so several
tenants' projects (and the tests) coexist in one process, and closing one sender tears
down only its App. Messages go out with `messaging.send_each_async` in chunks of at most
500 (the API's limit), on an event loop in a thread the sender owns, so `send()` stays a
plain blocking call for worker threads; per-token failures come back as SendResults,
never as exceptions.

Why the async path, and why its HTTP client is ours (`FcmHttpClient`): the synchronous
`send_each` fans out to a thread per message over requests/urllib3, and the threads only
take turns at the GIL; firebase-admin's async client (httpx) costs about 1 ms of CPU per
request here, most of it in the client's own layers. The SDK still builds, validates and
encodes every message, fans the batch out and classifies FCM's errors; we only swap the
object it sends through, as we already swap its requests adapter. See
docs/benchmarks/delivery.md for the measurements.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import firebase_admin
import httptools
import httpx
import requests
import requests.adapters
import requests.utils
from firebase_admin import _http_client, credentials, exceptions, messaging
from google.auth import exceptions as auth_exceptions
from google.auth.transport import requests as auth_requests
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from urllib3.util.retry import Retry

from cloud.channels.dedupe import collapse_id
from cloud.channels.results import SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy, parse_retry_after, send_with_retries

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

    project_id: str = Field(min_length=1)
    credentials_file: str = Field(min_length=1, description="service-account JSON path")
    endpoint: HttpUrl | None = None
    timeout_s: float = Field(default=10.0, gt=0)

FCM_ORIGIN = "https://fcm.googleapis.com"
#: google-auth asks this API for a service account's regional access boundary after
#: fetching a token; with a local endpoint, the local server answers it as well.
IAM_CREDENTIALS_ORIGIN = "https://iamcredentials.googleapis.com"
#: FCM's send_each accepts at most 500 messages per call.
MAX_BATCH = 500
#: Keep-alive connections per sender. send_each_async starts up to 500 requests at once; the
#: rest wait for a free connection. An HTTP/1.1 connection carries one request per round
#: trip, so the rate to Google is at most this many per round trip: 2,000 sends/s at 50 ms,
#: about what one worker's CPU sends (docs/benchmarks/delivery.md). Raise it if FCM is
#: further away. firebase-admin's own pools have this size.
POOL_CONNECTIONS = 100
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


def _silence_token_deprecation() -> None:
    """Apps register FCM registration tokens, so `Message(token=...)` is what we must send.

    firebase-admin 7.7 nudges towards Firebase installation ids with a DeprecationWarning on
    every message; the warning says nothing actionable per send. (Adding the same filter
    again replaces it, so calling this per sender is harmless.)
    """
    warnings.filterwarnings(
        "ignore", message=r"Message\.token is deprecated", category=DeprecationWarning
    )


class FcmEndpointAdapter(requests.adapters.HTTPAdapter):
    """The transport for https://fcm.googleapis.com on the messaging service's session
    (and, with a local endpoint, for the IAM credentials origin on google-auth's sessions).

    Why an adapter rather than patching a URL: firebase-admin builds its FCM URLs from a
    hard-coded origin and offers no option for another endpoint, but every request goes
    through a `requests.Session` on which it mounts an adapter for exactly that origin.
    Mounting ours on the same prefix replaces theirs through a public requests API, covers
    every FCM URL the SDK may build (send, topic management), keeps google-auth's bearer
    token and its refresh-on-401, and lets us own two policies:

    - redirection: with `endpoint` set, the origin is swapped for a local FCM-compatible
      server before the connection is chosen (the OAuth token endpoint needs no such trick:
      it comes from the service-account file's `token_uri`);
    - retries: firebase-admin's adapter retries 500/503 up to four times on its own, which
      would multiply with ours and ignore Retry-After. Here the transport retries only a
      failed connect (nothing was sent) and tenacity, above, owns every other retry.
    """

    #: Kept when requests copies the adapter (google-auth copies its session for the
    #: background boundary lookup); HTTPAdapter restores only the names listed here.
    __attrs__ = [*requests.adapters.HTTPAdapter.__attrs__, "endpoint", "origin", "_proxies"]

    def __init__(self, endpoint: str | None, *, origin: str = FCM_ORIGIN) -> None:
        super().__init__(
            pool_connections=1,
            pool_maxsize=POOL_CONNECTIONS,
            pool_block=True,
            max_retries=Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0),
        )
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.origin = origin
        #: requests picked proxies for fcm.googleapis.com; the local endpoint needs its own.
        self._proxies = requests.utils.get_environ_proxies(self.endpoint) if self.endpoint else None

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if self.endpoint and request.url and request.url.startswith(self.origin):
            request.url = self.endpoint + request.url[len(self.origin) :]
            kwargs["proxies"] = self._proxies
        return super().send(request, *args, **kwargs)


def pin_environment(session: requests.Session, url: str) -> None:
    """Resolve once what requests would look up in the environment on every request.

    With `trust_env` requests scans all environment variables for proxy settings on each
    call, about a quarter of the client's time per push on a small machine. The proxies
    and CA bundle it would find are settled here, at start, instead.
    """
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def _auth_request_session(session: requests.Session) -> requests.Session:
    """The session google-auth uses for its own calls (token refresh, boundary lookup)
    on behalf of firebase-admin's authorized session."""
    auth_request = getattr(session, "_auth_request", None)
    auth_session = getattr(auth_request, "session", None)
    if not isinstance(auth_session, requests.Session):
        raise RuntimeError("google-auth's authorized session has no auth request session")
    return auth_session


def _messaging_session(app: firebase_admin.App) -> requests.Session:
    """The authorized session firebase-admin's messaging service sends through.

    firebase-admin exposes no accessor for it; its absence means the SDK changed shape,
    which the tests against the local server would show at once.
    """
    service = messaging._get_messaging_service(app)
    session = getattr(getattr(service, "_client", None), "session", None)
    if not isinstance(session, requests.Session):
        raise RuntimeError(
            f"firebase-admin {firebase_admin.__version__}: "
            "messaging service has no requests session to mount on"
        )
    return session


T = TypeVar("T")

#: What FcmHttpClient calls (in a worker thread) when FCM refuses an access token: it gets
#: the refused Authorization value and returns the headers to try again with, or None.
Reauthorize = Callable[[str], Mapping[str, str] | None]


@dataclass(frozen=True, slots=True)
class FcmReply:
    """A successful FCM answer; firebase-admin reads only its JSON body."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


#: Encodes request bodies exactly as httpx (firebase-admin's own client) would.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encode_json(payload: Any) -> bytes:
    return _JSON.encode(payload).encode()


def _ssl_context() -> ssl.SSLContext:
    """Verify Google's certificate against the CA bundle requests would use."""
    bundle = (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )
    return ssl.create_default_context(cafile=bundle)


#: An HTTP answer: status, header fields as sent, body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

#: A pooled connection idle longer than this is closed instead of reused: servers drop
#: idle keep-alive connections after a while, and reusing one just as the server closes
#: it would fail the request.
IDLE_CLOSE_S = 30.0


class ConnectionClosedError(ConnectionError):
    """The server closed the connection before its answer was complete."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, answers parsed by
    httptools (llhttp): Content-Length, chunked and until-close bodies, interim 1xx
    answers skipped, keep-alive decided as HTTP/1.1 says."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._fields: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head_done = False

    # -- asyncio.Protocol (asyncio sets TCP_NODELAY on TCP transports itself) ---------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._fields
        )
        if self._head_done and not framed:
            # An answer without length ends where the connection does.
            self._finish(reusable=False)
        else:
            self._fail(ConnectionClosedError("connection closed before the answer was complete"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            self._reset()  # 100 Continue and friends: the real answer follows
            return
        self._finish(reusable=self._parser.should_keep_alive())

    # -- the exchange ------------------------------------------------------------------------

    async def exchange(self, request: bytes, timeout_s: float) -> Answer:
        """Send `request`; the answer, or TimeoutError if none is complete in `timeout_s`."""
        transport = self.transport
        if transport is None or self.closed:
            raise ConnectionClosedError("connection is closed")
        self._reset()
        self.reusable = False
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self._waiter = waiter
        transport.write(request)
        timer = self._loop.call_later(timeout_s, self._time_out, timeout_s)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _finish(self, *, reusable: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self.reusable = reusable
            waiter.set_result((self._status, self._fields, b"".join(self._body)))

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _time_out(self, timeout_s: float) -> None:
        self._fail(TimeoutError(f"no complete answer within {timeout_s}s"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _ProxyHandshake(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT; the tunnel then gets the real protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answer: asyncio.Future[bytes] = loop.create_future()
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" in self._buffer and not self.answer.done():
            self.answer.set_result(self._buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionClosedError("the proxy closed the connection"))


class _ConnectionPool:
    """Up to `limit` keep-alive connections to one origin; requests beyond that wait for
    a free connection. The most recently used idle connection is reused first (its TCP
    window is warm; the others age out after IDLE_CLOSE_S). Lives on one event loop."""

    def __init__(
        self, origin: str, *, limit: int, ssl_context: ssl.SSLContext, proxy: str | None
    ) -> None:
        parsed = urlsplit(origin)
        self.tls = parsed.scheme == "https"
        self.host = parsed.hostname or ""
        self.port = parsed.port or (443 if self.tls else 80)
        default_port = 443 if self.tls else 80
        self.authority = self.host if self.port == default_port else f"{self.host}:{self.port}"
        self._ssl = ssl_context if self.tls else None
        self._proxy = urlsplit(proxy) if proxy else None
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def exchange(self, request: bytes, timeout_s: float) -> Answer:
        async with self._slots:
            connection = self._idle_connection() or await self._connect(timeout_s)
            try:
                answer = await connection.exchange(request, timeout_s)
            except BaseException:
                self._discard(connection)
                raise
            if connection.reusable and not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                self._discard(connection)
            return answer

    def _idle_connection(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_CLOSE_S:
                return connection
            self._discard(connection)
        return None

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def _connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(loop)
        try:
            async with asyncio.timeout(timeout_s):
                if self._proxy is None:
                    await loop.create_connection(
                        lambda: connection,
                        self.host,
                        self.port,
                        ssl=self._ssl,
                        server_hostname=self.host if self.tls else None,
                    )
                else:
                    await self._tunnel(loop, connection)
        except BaseException:
            connection.close()  # whatever was opened before the failure
            raise
        self._open.add(connection)
        return connection

    async def _tunnel(self, loop: asyncio.AbstractEventLoop, connection: _Connection) -> None:
        """Reach the origin through an HTTP proxy with CONNECT (then TLS, for https)."""
        assert self._proxy is not None
        transport, handshake = await loop.create_connection(
            lambda: _ProxyHandshake(loop), self._proxy.hostname or "", self._proxy.port or 80
        )
        target = f"{self.host}:{self.port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self._proxy.username:
            secret = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
            head += f"Proxy-Authorization: Basic {base64.b64encode(secret.encode()).decode()}\r\n"
        transport.write((head + "\r\n").encode("latin-1"))
        try:
            answer = await handshake.answer
        except BaseException:
            transport.abort()
            raise
        if answer.split(b" ", 2)[1:2] != [b"200"]:
            transport.abort()
            raise ConnectionRefusedError(f"proxy refused CONNECT {target}: {answer[:60]!r}")
        if self._ssl is not None:
            try:
                tls = await loop.start_tls(
                    transport, connection, self._ssl, server_hostname=self.host
                )
            except BaseException:
                transport.abort()
                raise
            if tls is None:  # pragma: no cover - only for transports that cannot do TLS
                transport.abort()
                raise ConnectionError("proxy connection cannot carry TLS")
            transport = tls
        else:
            transport.set_protocol(connection)
        connection.connection_made(transport)

    def close(self) -> None:
        for connection in list(self._open):
            self._discard(connection)
        self._idle.clear()


class FcmHttpClient:
    """The HTTP client firebase-admin's messaging service sends through on the async path.

    It stands in for the SDK's `HttpxAsyncClient` (same `request()`/`aclose()` contract:
    a reply with `.json()`, `httpx.HTTPStatusError` carrying an `httpx.Response` for an
    HTTP error, httpx transport errors for the rest, so the SDK's error classification
    runs unchanged) and owns the policies that matter per request:

    - transport: a pool of `POOL_CONNECTIONS` keep-alive HTTP/1.1 connections on asyncio
      with httptools' C parser, one write per request. It speaks only what FCM's send
      needs (one origin, small JSON bodies) and costs about 60 µs of CPU per request
      here, where aiohttp costs 200 and httpx 900;
    - redirection: with `endpoint` set, FCM's origin is swapped for a local FCM-compatible
      server (firebase-admin hard-codes the origin);
    - authorization: the sender puts a ready-made header set in `auth_headers` once per
      batch, so no request pays for a credential check; a 401 asks `reauthorize` once
      (one refresh per refused token however many requests saw it), then tries again;
    - proxies and CA bundle: read from the environment once, as requests would (an
      http:// proxy, used with CONNECT);
    - retries: none here. firebase-admin's client retries 500/503 four times on its own,
      which would multiply with the sender's policy and ignore Retry-After.

    Not thread-safe: it lives on the sender's event loop (`open` and `aclose` run there).
    """

    def __init__(
        self,
        endpoint: str | None,
        *,
        timeout_s: float,
        reauthorize: Reauthorize,
        origin: str = FCM_ORIGIN,
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.origin = origin
        self.timeout_s = timeout_s
        self.auth_headers: Mapping[str, str] = {}
        self._reauthorize = reauthorize
        target = urlsplit(self.endpoint or origin)
        #: Scheme and authority this client sends to (an endpoint's path is kept in route()).
        self._target = (target.scheme, target.netloc)
        origin_url = f"{target.scheme}://{target.netloc}"
        proxies = requests.utils.get_environ_proxies(origin_url)
        self._proxy = proxies.get(target.scheme) or proxies.get("all")
        self._origin_url = origin_url
        self._pool: _ConnectionPool | None = None

    def route(self, url: str) -> str:
        """Where a request for `url` goes: the local endpoint for FCM's origin, if set."""
        if self.endpoint and url.startswith(self.origin):
            return self.endpoint + url[len(self.origin) :]
        return url

    async def open(self) -> None:
        if self._pool is None:
            self._pool = _ConnectionPool(
                self._origin_url,
                limit=POOL_CONNECTIONS,
                ssl_context=_ssl_context(),
                proxy=self._proxy,
            )

    async def aclose(self) -> None:
        """Close the pool (firebase-admin's delete_app calls this too, then it is a no-op)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK client's keyword, per request
    ) -> FcmReply:
        target = self.route(url)
        pool = self._pool
        if pool is None:
            raise RuntimeError("FcmHttpClient is not open")
        split = urlsplit(target)
        if (split.scheme, split.netloc) != self._target:
            raise ValueError(f"this client only sends to {self._origin_url}, not {target}")
        path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        body = b"" if json is None else _encode_json(json)
        fixed = dict(headers or {})
        if json is not None:
            fixed["Content-Type"] = "application/json"
        timeout_s = self.timeout_s if timeout is None else timeout
        auth = self.auth_headers
        head = _request_head(method, path, pool.authority, {**fixed, **auth}, len(body))
        status, fields, content = await self._exchange(pool, head + body, method, target, timeout_s)
        if status == 401:
            refused = auth.get("authorization", "")
            fresh = await asyncio.get_running_loop().run_in_executor(
                None, self._reauthorize, refused
            )
            if fresh is not None:
                head = _request_head(method, path, pool.authority, {**fixed, **fresh}, len(body))
                status, fields, content = await self._exchange(
                    pool, head + body, method, target, timeout_s
                )
        if status >= 400:
            request = httpx.Request(method.upper(), target)
            response = httpx.Response(status, headers=fields, content=content, request=request)
            raise httpx.HTTPStatusError(
                f"HTTP {status} from {target}", request=request, response=response
            )
        return FcmReply(status, content)

    @staticmethod
    async def _exchange(
        pool: _ConnectionPool, request: bytes, method: str, url: str, timeout_s: float
    ) -> Answer:
        """One exchange; transport failures become the httpx errors the SDK maps: a
        timeout DEADLINE_EXCEEDED, a refused or broken connection UNAVAILABLE (as the
        requests path reported them), a malformed answer UNKNOWN."""
        try:
            return await pool.exchange(request, timeout_s)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc), request=httpx.Request(method, url)) from exc
        except OSError as exc:  # refused, reset, closed early, TLS failures, DNS
            raise httpx.ConnectError(str(exc), request=httpx.Request(method, url)) from exc


def _request_head(
    method: str, path: str, authority: str, headers: Mapping[str, str], length: int
) -> bytes:
    lines = [f"{method.upper()} {path} HTTP/1.1", f"Host: {authority}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append(f"Content-Length: {length}")
    head = "\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise ValueError("a header name or value holds a line break")
    return (head + "\r\n\r\n").encode("latin-1")


def _install_http_client(app: firebase_admin.App, client: FcmHttpClient) -> Any:
    """Make firebase-admin's messaging service send through `client`; returns the SDK's
    own async client (for closing). Like `_messaging_session`, a changed SDK shape fails
    here, loudly, rather than sending through a client without our policies."""
    service = messaging._get_messaging_service(app)
    original = getattr(service, "_async_client", None)
    if not isinstance(original, _http_client.HttpxAsyncClient):
        raise RuntimeError(
            f"firebase-admin {firebase_admin.__version__}: "
            "messaging service has no async HTTP client to replace"
        )
    service._async_client = client
    return original


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

    `settings.endpoint` sends to a local FCM-compatible server instead of Google's (see
    FcmHttpClient, and FcmEndpointAdapter for the SDK's synchronous requests session and
    google-auth's calls). The sender owns an event loop thread for firebase-admin's async
    send; `close()` (or leaving the `with` block) stops it and deletes the App.
    """

    def __init__(self, settings: FcmSettings, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        _silence_token_deprecation()
        self.settings = settings
        self._retry = retry
        self._app = firebase_admin.initialize_app(
            credentials.Certificate(settings.credentials_file),
            options={"projectId": settings.project_id, "httpTimeout": settings.timeout_s},
            name=f"vitrina-fcm-{settings.project_id}-{uuid.uuid4().hex[:8]}",
        )
        self._credential = self._app.credential.get_credential()
        self._send_url = f"{FCM_ORIGIN}/v1/projects/{settings.project_id}/messages:send"
        session = _messaging_session(self._app)
        endpoint = str(settings.endpoint) if settings.endpoint else None
        # The SDK's synchronous path is not used for sending, but no call of it may leak
        # to Google when a local endpoint is set.
        pin_environment(session, FCM_ORIGIN)
        session.mount(FCM_ORIGIN, FcmEndpointAdapter(endpoint))
        self._token_lock = threading.Lock()
        self._token_session = requests.Session()
        if endpoint:
            for auth_session in (self._token_session, _auth_request_session(session)):
                auth_session.mount(
                    IAM_CREDENTIALS_ORIGIN,
                    FcmEndpointAdapter(endpoint, origin=IAM_CREDENTIALS_ORIGIN),
                )
        self._token_request = auth_requests.Request(self._token_session)
        self._http = FcmHttpClient(
            endpoint, timeout_s=settings.timeout_s, reauthorize=self._reauthorize
        )
        self._loop = _LoopThread(f"fcm-{settings.project_id}")
        self._loop.run(self._http.open())
        self._sdk_client = _install_http_client(self._app, self._http)
        self._closed = False

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
        for start in range(0, len(order), MAX_BATCH):
            chunk = order[start : start + MAX_BATCH]
            results.update(
                send_with_retries(
                    lambda pending: self._send_once(messages, built, pending), chunk, self._retry
                )
            )
        return [results[index] for index in range(len(messages))]

    def deliver(self, messages: Sequence[PushMessage]) -> list[SendResult]:
        """The channel-neutral name for `send`."""
        return self.send(messages)

    def _send_once(
        self,
        messages: Sequence[PushMessage],
        built: Mapping[int, messaging.Message],
        pending: Sequence[int],
    ) -> dict[int, SendResult]:
        batch_error = self._ensure_access_token()
        if batch_error is not None:
            return {i: _replace_token(batch_error, messages[i].token) for i in pending}
        try:
            response = self._loop.run(
                messaging.send_each_async([built[i] for i in pending], app=self._app)
            )
        except exceptions.FirebaseError as exc:
            # send_each_async raises only when something outside an HTTP exchange broke.
            logger.error("FCM batch of %d failed: %s", len(pending), exc)
            return {i: result_for_error(messages[i].token, exc) for i in pending}
        outcome: dict[int, SendResult] = {}
        for index, sent in zip(pending, response.responses, strict=True):
            token = messages[index].token
            if sent.success:
                outcome[index] = SendResult(
                    token=token, ok=True, provider_message_id=sent.message_id
                )
            else:
                outcome[index] = result_for_error(token, sent.exception)
        return outcome

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
        """The headers google-auth puts on a request to FCM: the bearer token, its metrics
        header, and the regional access boundary. before_request also starts google-auth's
        boundary lookup (once per token, through the token session)."""
        headers = dict(_http_client.METRICS_HEADERS)
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
        """Stop the event loop thread, then delete this sender's firebase App."""
        if self._closed:
            return
        self._closed = True
        self._loop.run(self._http.aclose())
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


def _replace_token(result: SendResult, token: str) -> SendResult:
    return SendResult(
        token=token,
        ok=result.ok,
        provider_message_id=result.provider_message_id,
        error_code=result.error_code,
        permanent=result.permanent,
        retry_after_s=result.retry_after_s,
    )
