"""The HTTP side of the FCM sender: what firebase-admin's messaging service sends through,
and where google-auth's own calls go.

`FcmHttpClient` stands in for the SDK's async client (see cloud.channels.fcm_sdk for how
it is installed and why). It sends with aiohttp, a kept client: a pool of keep-alive
connections, TLS verified against the CA bundle requests would use, an HTTP proxy from
the environment (CONNECT for https), all settled once at start. On top it owns the
policies that matter per request:

- redirection: with an endpoint set, FCM's origin is swapped for a local FCM-compatible
  server (firebase-admin hard-codes https://fcm.googleapis.com);
- authorization: the sender puts ready-made headers in `auth_headers` once per batch, so
  no request pays for a credential check; a 401 asks `reauthorize` once (one refresh per
  refused token, however many requests saw it), then tries again;
- retries: none. The SDK's own client retries 500 and 503 four times, which would multiply
  with the sender's retry policy and ignore Retry-After; the sender's policy owns retries;
- requests in flight: at most what the adaptive limiter (cloud.channels.inflight) allows
  to FCM's host now. send_each_async starts a batch's 500 requests at once; each waits
  for a permit, then goes out on a kept connection (the pool is as large as the limit may
  grow, so a permit next to never waits for a connection);
- time-outs: the clock starts when the request goes out. Waiting for a permit does not
  count (the send's deadline bounds it: a request without a permit by then is not sent,
  `NotSentRequestError`); connecting has its own time-out, and failing to connect means
  nothing was sent (UNAVAILABLE); `timeout_s` is the wait for the answer once the request
  is written (and for each pause while it is read), so DEADLINE_EXCEEDED is the one
  outcome after which FCM may have the message and a retry may be a second copy (sent
  under the same collapse key).

Answers go back in the shape the SDK reads: the JSON body on success, and httpx's errors
otherwise (an HTTPStatusError carrying an httpx.Response for an HTTP error, ReadTimeout,
ConnectError, RemoteProtocolError), so the SDK's error classification runs unchanged. What
the SDK does not carry back, each exchange's latency (from its start on its connection:
never the wait for a permit) and a 401 answered before a retry with a fresh token, the
client notes in the batch's `ExchangeLog` when the sender opens one
(`logging_exchanges`), by message.

`EndpointAdapter` covers google-auth: the OAuth token endpoint needs no redirect (it is
the service-account file's `token_uri`), but the regional-access-boundary lookup goes to
Google's IAM credentials API; with an endpoint set, it goes to the local server instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json as jsonlib
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import requests
import requests.adapters
import requests.utils

from cloud.channels.inflight import (
    InflightLimiter,
    LimitSettings,
    NotSentError,
    Signal,
    send_deadline,
    signal_for_status,
)
from cloud.channels.retry import parse_retry_after

FCM_ORIGIN = "https://fcm.googleapis.com"
#: google-auth asks this API (the mTLS variant when client certificates are configured)
#: for a service account's regional access boundary after fetching a token.
IAM_CREDENTIALS_ORIGINS = (
    "https://iamcredentials.googleapis.com",
    "https://iamcredentials.mtls.googleapis.com",
)
#: Keep-alive connections per sender, and the most requests the limiter lets be in flight.
#: send_each_async starts up to 500 requests at once; the rest wait for a permit. An
#: HTTP/1.1 connection carries one request per round trip, so the rate to Google is at most
#: this many per round-trip time; raise it if FCM is far away (docs/benchmarks/delivery.md).
#: firebase-admin's pools have this size.
POOL_CONNECTIONS = 100
#: How long connecting to FCM (TCP, TLS, a proxy's tunnel) may take; nothing is sent yet.
CONNECT_TIMEOUT_S = 5.0

#: What FcmHttpClient calls (in a worker thread) when FCM refuses an access token: it gets
#: the refused Authorization value and returns the headers to try again with, or None.
Reauthorize = Callable[[str], Mapping[str, str] | None]

#: Encodes request bodies exactly as httpx (firebase-admin's own client) would.
_JSON = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class NotSentRequestError(httpx.ConnectError):
    """The limiter gave no permit before the send's deadline: nothing was sent. The SDK
    maps it as a ConnectError (UNAVAILABLE); the sender reads it back from the error's
    cause (`retry_after_s`: the host's remaining Retry-After hold)."""

    def __init__(self, reason: NotSentError, *, request: httpx.Request) -> None:
        super().__init__(str(reason), request=request)
        self.retry_after_s = reason.retry_after_s


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to FCM as the client saw it: the HTTP status (None: no answer), the
    time from its start on a connection (connecting included, for a new one) to its answer
    or failure, and whether it was sent at all (not without a permit)."""

    status: int | None
    latency_s: float
    sent: bool = True


#: A batch's exchanges by message (`exchange_key`), in order.
ExchangeLog = dict[str, list[Exchange]]
_EXCHANGES: contextvars.ContextVar[ExchangeLog | None] = contextvars.ContextVar(
    "vitrina_fcm_exchanges", default=None
)


def exchange_key(token: str | None, dedupe_key: str | None) -> str:
    """The key a message's exchanges are logged under: its token and its collapse key."""
    return f"{token}|{dedupe_key}"


@contextlib.contextmanager
def logging_exchanges(log: ExchangeLog) -> Iterator[None]:
    """Requests made inside (and in tasks started inside) note their exchanges in `log`."""
    token = _EXCHANGES.set(log)
    try:
        yield
    finally:
        _EXCHANGES.reset(token)


def _note(json: Any, exchange: Exchange) -> None:
    log = _EXCHANGES.get()
    if log is None or not isinstance(json, dict):
        return
    message = json.get("message")
    if not isinstance(message, dict):
        return
    data = message.get("data")
    dedupe = data.get("dedupe_key") if isinstance(data, dict) else None
    log.setdefault(exchange_key(message.get("token"), dedupe), []).append(exchange)


@dataclass(frozen=True, slots=True)
class FcmReply:
    """A successful FCM answer; firebase-admin reads only its JSON body."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def ca_bundle() -> str:
    """The CA bundle requests would verify Google's certificate against."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )


def environment_proxy(url: str) -> str | None:
    """The proxy requests would use for `url` (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY)."""
    proxies = requests.utils.get_environ_proxies(url)
    scheme = url.split("://", 1)[0]
    return proxies.get(scheme) or proxies.get("all")


class FcmHttpClient:
    """The HTTP client firebase-admin's messaging service sends through (module docstring).

    Not thread-safe: it lives on the sender's event loop (`open`, `request` and `aclose`
    run there).
    """

    def __init__(
        self,
        endpoint: str | None,
        *,
        timeout_s: float,
        reauthorize: Reauthorize,
        origin: str = FCM_ORIGIN,
        connections: int = POOL_CONNECTIONS,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        limits: LimitSettings | None = None,
    ) -> None:
        """`timeout_s`: the wait for an answer once a request is out; `limits`: the
        limiter's (by default: `LimitSettings.for_timeout`, up to `connections`)."""
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.origin = origin
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.auth_headers: Mapping[str, str] = {}
        self._reauthorize = reauthorize
        self._connections = connections
        scheme, _, rest = (self.endpoint or origin).partition("://")
        #: Scheme and authority this client sends to (an endpoint's path is kept in route()).
        self._origin_url = f"{scheme}://{rest.split('/', 1)[0]}"
        #: Settled once: looking the environment up per request is a real cost per send.
        self.proxy = environment_proxy(self._origin_url)
        self._timeout = self._timeouts(timeout_s)
        self._session: aiohttp.ClientSession | None = None
        settings = limits or LimitSettings.for_timeout(timeout_s, maximum=connections)
        if settings.maximum > connections:
            raise ValueError("the limit may not grow past the pool's connections")
        #: Requests in flight to this client's origin (one key: it sends nowhere else).
        self.limiter = InflightLimiter(settings)

    def _timeouts(self, answer_s: float) -> aiohttp.ClientTimeout:
        """No total: the wait for a pooled connection is the limiter's (and nil, as the
        pool holds as many connections as permits may be out); connecting, then each read
        of the answer once the request is written, have their own."""
        return aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self.connect_timeout_s, sock_read=answer_s
        )

    def route(self, url: str) -> str:
        """Where a request for `url` goes: the local endpoint for FCM's origin, if set."""
        if self.endpoint and url.startswith(self.origin):
            return self.endpoint + url[len(self.origin) :]
        return url

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._connections, ssl=ssl.create_default_context(cafile=ca_bundle())
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self._timeout,
                trust_env=False,
            )

    async def aclose(self) -> None:
        """Close the pool (firebase-admin's delete_app calls this too, then it is a no-op)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
        if not target.startswith(self._origin_url + "/"):
            raise ValueError(f"this client only sends to {self._origin_url}, not {target}")
        body = b"" if json is None else _JSON.encode(json).encode()
        fixed = dict(headers or {})
        if json is not None:
            fixed["Content-Type"] = "application/json"
        limit = self._timeout if timeout is None else self._timeouts(timeout)
        try:
            permit = await self.limiter.acquire(self._origin_url, deadline=send_deadline())
        except NotSentError as reason:
            _note(json, Exchange(None, 0.0, sent=False))
            raise NotSentRequestError(reason, request=_r(method, target)) from None
        if permit.close_connection:
            fixed["Connection"] = "close"  # frees the host's slot for a stuck request
        outcome = _Outcome()
        try:
            auth = self.auth_headers
            status, fields, content = await self._exchange(
                outcome, method, target, {**fixed, **auth}, body, limit, json
            )
            if status == 401:
                refused = auth.get("authorization", "")
                fresh = await asyncio.get_running_loop().run_in_executor(
                    None, self._reauthorize, refused
                )
                if fresh is not None:
                    status, fields, content = await self._exchange(
                        outcome, method, target, {**fixed, **fresh}, body, limit, json
                    )
        finally:
            self.limiter.release(
                permit, outcome.signal, latency_s=outcome.latency_s,
                retry_after_s=outcome.retry_after_s,
            )
        if status >= 400:
            request = httpx.Request(method.upper(), target)
            response = httpx.Response(status, headers=fields, content=content, request=request)
            raise httpx.HTTPStatusError(
                f"HTTP {status} from {target}", request=request, response=response
            )
        return FcmReply(status, content)

    async def _exchange(
        self,
        outcome: _Outcome,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        limit: aiohttp.ClientTimeout,
        json: Any,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One exchange, noted in `outcome` (for the limiter) and in the batch's log;
        transport failures become the httpx errors the SDK maps: no answer in time
        DEADLINE_EXCEEDED, no connection (nothing sent) or a broken one UNAVAILABLE, a
        malformed answer UNKNOWN."""
        session = self._session
        if session is None:
            raise RuntimeError("FcmHttpClient is not open")
        # Connecting, then each read, have their own time-outs; this bounds an answer
        # trickled in byte by byte, which would hold its permit for ever.
        ceiling = (limit.sock_connect or 0.0) + 2 * (limit.sock_read or 0.0)
        status: int | None = None
        started = time.monotonic()
        try:
            async with asyncio.timeout(ceiling or None), session.request(
                method, url, data=body, headers=headers, proxy=self.proxy, timeout=limit
            ) as response:
                content = await response.read()
                status = response.status
                fields = list(response.headers.items()) if status >= 400 else []
        except aiohttp.ConnectionTimeoutError as exc:  # before TimeoutError: it is one
            outcome.failed(Signal.OVERLOAD)
            raise httpx.ConnectError(
                f"no connection within {limit.sock_connect}s", request=_r(method, url)
            ) from exc
        except TimeoutError as exc:
            outcome.failed(Signal.OVERLOAD)
            raise httpx.ReadTimeout(
                f"no answer within {limit.sock_read}s", request=_r(method, url)
            ) from exc
        except aiohttp.ClientConnectionError as exc:  # refused, reset, closed early, TLS, DNS
            outcome.failed(Signal.OVERLOAD)
            raise httpx.ConnectError(str(exc) or repr(exc), request=_r(method, url)) from exc
        except aiohttp.ClientError as exc:  # a malformed answer
            outcome.failed(Signal.NONE)
            raise httpx.RemoteProtocolError(str(exc), request=_r(method, url)) from exc
        finally:
            # From the exchange's start: its connecting (for a new connection) and the
            # answer; the wait for a permit came before, and a pooled connection is
            # there at once (the pool holds as many as the limit may grow to).
            latency = time.monotonic() - started
            outcome.latency_s = latency
            _note(json, Exchange(status, latency))
        outcome.answered(status, fields)
        return status, fields, content


class _Outcome:
    """What the limiter hears when a request's permit is released: its last exchange."""

    __slots__ = ("latency_s", "retry_after_s", "signal")

    def __init__(self) -> None:
        self.signal = Signal.NONE
        self.latency_s: float | None = None
        self.retry_after_s: float | None = None

    def failed(self, signal: Signal) -> None:
        self.signal, self.retry_after_s = signal, None

    def answered(self, status: int, fields: list[tuple[str, str]]) -> None:
        self.signal = signal_for_status(status)
        self.retry_after_s = None
        if self.signal is Signal.OVERLOAD:
            retry_after = next((v for k, v in fields if k.lower() == "retry-after"), None)
            self.retry_after_s = parse_retry_after(retry_after)


def _r(method: str, url: str) -> httpx.Request:
    return httpx.Request(method.upper(), url)


class EndpointAdapter(requests.adapters.HTTPAdapter):
    """A requests transport that sends what is addressed to `origin` to `endpoint`.

    Mounted on google-auth's session for the IAM credentials origins when a local
    endpoint is set: mounting an adapter on a URL prefix is requests' public way to
    choose the transport for exactly those URLs, and it survives google-auth's copy of the
    session for its background lookup.
    """

    #: Kept when requests copies the adapter; HTTPAdapter restores only the names listed.
    __attrs__ = [*requests.adapters.HTTPAdapter.__attrs__, "endpoint", "origin", "_proxies"]

    def __init__(self, endpoint: str, *, origin: str) -> None:
        super().__init__()
        self.endpoint = endpoint.rstrip("/")
        self.origin = origin
        #: requests picked proxies for the original host; the local endpoint needs its own.
        self._proxies = requests.utils.get_environ_proxies(self.endpoint)

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if request.url and request.url.startswith(self.origin):
            request.url = self.endpoint + request.url[len(self.origin) :]
            kwargs["proxies"] = self._proxies
        return super().send(request, *args, **kwargs)


def google_auth_session(endpoint: str | None) -> requests.Session:
    """The session google-auth fetches tokens and looks boundaries up with; with an
    endpoint, nothing it sends leaves for Google."""
    session = requests.Session()
    if endpoint:
        for origin in IAM_CREDENTIALS_ORIGINS:
            session.mount(origin, EndpointAdapter(endpoint, origin=origin))
    return session
