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
  with the sender's retry policy and ignore Retry-After; the sender's policy owns retries.

Answers go back in the shape the SDK reads: the JSON body on success, and httpx's errors
otherwise (an HTTPStatusError carrying an httpx.Response for an HTTP error, ReadTimeout,
ConnectError, RemoteProtocolError), so the SDK's error classification runs unchanged.

`EndpointAdapter` covers google-auth: the OAuth token endpoint needs no redirect (it is
the service-account file's `token_uri`), but the regional-access-boundary lookup goes to
Google's IAM credentials API; with an endpoint set, it goes to the local server instead.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import requests
import requests.adapters
import requests.utils

FCM_ORIGIN = "https://fcm.googleapis.com"
#: google-auth asks this API (the mTLS variant when client certificates are configured)
#: for a service account's regional access boundary after fetching a token.
IAM_CREDENTIALS_ORIGINS = (
    "https://iamcredentials.googleapis.com",
    "https://iamcredentials.mtls.googleapis.com",
)
#: Keep-alive connections per sender. send_each_async starts up to 500 requests at once;
#: the rest wait for a free connection. An HTTP/1.1 connection carries one request per
#: round trip, so the rate to Google is at most this many per round-trip time; raise it
#: if FCM is far away (docs/benchmarks/delivery.md). firebase-admin's pools have this size.
POOL_CONNECTIONS = 100

#: What FcmHttpClient calls (in a worker thread) when FCM refuses an access token: it gets
#: the refused Authorization value and returns the headers to try again with, or None.
Reauthorize = Callable[[str], Mapping[str, str] | None]

#: Encodes request bodies exactly as httpx (firebase-admin's own client) would.
_JSON = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.origin = origin
        self.timeout_s = timeout_s
        self.auth_headers: Mapping[str, str] = {}
        self._reauthorize = reauthorize
        self._connections = connections
        scheme, _, rest = (self.endpoint or origin).partition("://")
        #: Scheme and authority this client sends to (an endpoint's path is kept in route()).
        self._origin_url = f"{scheme}://{rest.split('/', 1)[0]}"
        #: Settled once: looking the environment up per request is a real cost per send.
        self.proxy = environment_proxy(self._origin_url)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

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
        limit = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        auth = self.auth_headers
        status, fields, content = await self._exchange(
            method, target, {**fixed, **auth}, body, limit
        )
        if status == 401:
            refused = auth.get("authorization", "")
            fresh = await asyncio.get_running_loop().run_in_executor(
                None, self._reauthorize, refused
            )
            if fresh is not None:
                status, fields, content = await self._exchange(
                    method, target, {**fixed, **fresh}, body, limit
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
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        limit: aiohttp.ClientTimeout,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One exchange; transport failures become the httpx errors the SDK maps: a
        timeout DEADLINE_EXCEEDED, a refused or broken connection UNAVAILABLE, a
        malformed answer UNKNOWN."""
        session = self._session
        if session is None:
            raise RuntimeError("FcmHttpClient is not open")
        try:
            async with session.request(
                method, url, data=body, headers=headers, proxy=self.proxy, timeout=limit
            ) as response:
                content = await response.read()
                fields = list(response.headers.items()) if response.status >= 400 else []
                return response.status, fields, content
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                f"no answer within {limit.total}s", request=_r(method, url)
            ) from exc
        except aiohttp.ClientConnectionError as exc:  # refused, reset, closed early, TLS, DNS
            raise httpx.ConnectError(str(exc) or repr(exc), request=_r(method, url)) from exc
        except aiohttp.ClientError as exc:  # a malformed answer
            raise httpx.RemoteProtocolError(str(exc), request=_r(method, url)) from exc


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
