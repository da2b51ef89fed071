"""The HTTP side the provider stand-ins share, on aiohttp's server.

The stand-ins answer clients that send hundreds of requests at once (a batch of FCM
sends keeps a hundred connections busy) and a benchmark measures our senders against
them, so they run on aiohttp's low-level server: one thread runs an asyncio loop, the
requests are parsed by aiohttp's C parser (llhttp), and every request goes straight to
one dispatch function, without the application router's and middlewares' per-request
objects. Handlers stay plain synchronous functions from Request to Response; they run
on the loop and must not block (the stand-ins' handlers only check, record and answer).

aiohttp already does what realistic clients need: keep-alive and pipelining answered in
order, TCP_NODELAY, bounded request lines and header fields (a 400 beyond them). This
module adds what the providers' APIs do: bodies are announced with a Content-Length and
bounded (411 for a chunked body, 413 beyond MAX_BODY_BYTES, both before reading it), a
deep listen backlog, and JSON errors for unknown routes (404/405), malformed requests
(400) and handler bugs (500).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qs

from aiohttp import web, web_request

logger = logging.getLogger(__name__)

#: Larger than any provider accepts (FCM: 4 KB data, Web Push: 4 KB record), small enough
#: that a runaway client cannot hurt the process.
MAX_BODY_BYTES = 1 << 20

#: The longest request line or header field accepted; real clients send a few hundred
#: bytes. aiohttp answers 400 beyond it, and beyond its cap on the number of fields.
MAX_FIELD_BYTES = 16 * 1024

#: A batch of FCM sends opens up to 100 pooled connections in the same instant.
LISTEN_BACKLOG = 1024

#: How long `start()` waits for the listening thread before calling the start broken,
#: and `stop()` for kept-alive connections to close.
STARTUP_TIMEOUT_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    #: Looked up case-insensitively, as HTTP header names are.
    headers: Mapping[str, str]
    body: bytes
    #: Groups captured by the route pattern.
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        value = self.headers.get(name)
        return default if value is None else str(value)

    def json(self) -> Any:
        """The body parsed as JSON; raises BadRequestError with the parser's reason."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestError(f"body is not valid JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class BadRequestError(ValueError):
    """The request is malformed; the server answers 400 with this message."""


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(
        status, body, {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
    )


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Maps (method, path regex) to handlers; full-match on the path without the query."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append(_Route(method.upper(), re.compile(pattern), handler))

    def dispatch(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """The handler and captured params; the flag says the path exists for another method."""
        path_known = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            path_known = True
            if route.method == method:
                return route.handler, match.groupdict(), True
        return None, {}, path_known


def _refuse_body(request: web_request.BaseRequest) -> Response | None:
    """The answer for a body this server will not read, before reading it (or None).
    (aiohttp's parser already refuses a malformed Content-Length with a 400.)"""
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return json_response(
            411, {"error": "send a Content-Length; chunked bodies are not accepted"}
        )
    length = request.content_length or 0
    if length > MAX_BODY_BYTES:
        return json_response(413, {"error": f"body of {length} bytes exceeds {MAX_BODY_BYTES}"})
    return None


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bind now, so that the port (and the url) are known before the loop starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class LocalHTTPServer:
    """Serves a Router on a loopback port from an asyncio loop.

    Use as a context manager in tests (`start()` runs the loop in a background thread),
    or `serve_forever()` in a process of its own. Port 0 picks a free port; `url` is known
    once the socket is bound (in __init__).
    """

    def __init__(
        self, router: Router, *, host: str = "127.0.0.1", port: int = 0, name: str = "sandbox"
    ) -> None:
        self._router = router
        self._socket: socket.socket | None = _listening_socket(host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        #: Set by `interrupt()`, so that one arriving before the loop runs is not lost.
        self._interrupted = False
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        self.name = name

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            return
        started = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(started)), name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        if not started.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"{self.name}: server thread did not start")

    def stop(self) -> None:
        """Stop serving and close kept-alive connections, so the server really stops answering."""
        if self._thread is not None:
            self.interrupt()
            self._thread.join(timeout=2 * STARTUP_TIMEOUT_S)
            self._thread = None
        self._close_socket()

    def serve_forever(self) -> None:
        """Serve in the calling thread until `interrupt()` (the process entry points use this)."""
        try:
            asyncio.run(self._serve(None))
        finally:
            self._close_socket()

    def interrupt(self) -> None:
        """Make the serving loop return; safe from another thread or a signal handler."""
        self._interrupted = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def _serve(self, started: threading.Event | None) -> None:
        if self._socket is None:
            raise RuntimeError(f"{self.name}: the server was stopped")
        self._stopping = asyncio.Event()
        server = web.Server(
            self._handle,
            access_log=None,
            max_line_size=MAX_FIELD_BYTES,
            max_field_size=MAX_FIELD_BYTES,
        )
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=STARTUP_TIMEOUT_S)
        await runner.setup()
        site = web.SockSite(runner, self._socket, backlog=LISTEN_BACKLOG)
        await site.start()
        self._loop = asyncio.get_running_loop()
        if self._interrupted:
            self._stopping.set()
        if started is not None:
            started.set()
        try:
            await self._stopping.wait()
        finally:
            self._loop = None
            # Handlers run to completion without awaiting: no request is half-answered.
            # cleanup() stops listening and closes kept-alive connections.
            await runner.cleanup()

    async def _handle(self, request: web_request.BaseRequest) -> web.StreamResponse:
        refusal = _refuse_body(request)
        if refusal is not None:
            return _encode(refusal, close=True)
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await request.read() if request.body_exists else b""
        return _encode(self._respond(request, body), close=False)

    def _respond(self, incoming: web_request.BaseRequest, body: bytes) -> Response:
        method, path = incoming.method, incoming.path
        handler, params, path_known = self._router.dispatch(method, path)
        if handler is None:
            status = 405 if path_known else 404
            return json_response(status, {"error": f"{method} {path} is not served here"})
        request = Request(
            method=method,
            path=path,
            query=parse_qs(incoming.query_string),
            headers=incoming.headers,
            body=body,
            params=params,
        )
        try:
            return handler(request)
        except BadRequestError as exc:
            return json_response(400, {"error": str(exc)})
        except Exception:
            logger.exception("%s: handler for %s %s failed", self.name, method, path)
            return json_response(500, {"error": "internal error in the local server"})


def _encode(response: Response, *, close: bool) -> web.Response:
    """aiohttp's response for ours; `close` ends the connection after it (a request whose
    body was not read leaves bytes on the connection that cannot be framed)."""
    answer = web.Response(status=response.status, body=response.body, headers=response.headers)
    if close:
        answer.force_close()
    return answer


class Journal(Generic[T]):
    """An append-only, thread-safe record that tests can wait on."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def append(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait_for(self, count: int, timeout_s: float = 5.0, *, what: str = "items") -> list[T]:
        """Block until at least `count` items are recorded; TimeoutError says how many came."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self._items) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} {what}, got {len(self._items)} in {timeout_s}s"
                    )
                self._changed.wait(remaining)
            return list(self._items)


class SandboxService:
    """The lifecycle every HTTP stand-in shares: a health route, start/stop in a thread (or
    as a context manager) for tests, and serving in the calling thread for a process."""

    def __init__(self, router: Router, *, host: str, port: int, name: str) -> None:
        router.add("GET", r"/_sandbox/health", lambda _request: json_response(200, {"ok": True}))
        self._http = LocalHTTPServer(router, host=host, port=port, name=name)

    @property
    def url(self) -> str:
        return self._http.url

    def start(self) -> Self:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the calling thread (a process entry point)."""
        self._http.serve_forever()

    def interrupt(self) -> None:
        """Make `serve_forever()` return; safe from a signal handler."""
        self._http.interrupt()

    def serve_until_terminated(self) -> None:
        """Serve until SIGTERM or Ctrl-C: what each stand-in's `python -m` entry point does."""
        signal.signal(signal.SIGTERM, lambda *_: self.interrupt())
        with contextlib.suppress(KeyboardInterrupt):
            self.serve_forever()


OutcomeT = TypeVar("OutcomeT")


class OutcomeScript(Generic[OutcomeT]):
    """Scripted answers per address (token, subscription, number): the given ones in
    order, then a standing one; addresses never scripted get the default. Thread-safe."""

    def __init__(self, default: OutcomeT) -> None:
        self._default = default
        self._lock = threading.Lock()
        self._scripts: dict[str, tuple[deque[OutcomeT], OutcomeT]] = {}

    def set(self, address: str, outcomes: Sequence[OutcomeT], then: OutcomeT) -> None:
        with self._lock:
            self._scripts[address] = (deque(outcomes), then)

    def next(self, address: str) -> OutcomeT:
        with self._lock:
            scripted = self._scripts.get(address)
            if scripted is None:
                return self._default
            queue, then = scripted
            return queue.popleft() if queue else then


def journal_page(
    request: Request, journal: Journal[T], *, key: str, describe: Callable[[T], dict[str, Any]]
) -> Response:
    """`GET ...?since=N`: what was recorded from index N on, and the index to ask from next,
    so a demo or test in another process can follow along without missing anything."""
    try:
        since = int(request.query.get("since", ["0"])[0])
    except ValueError as exc:
        raise BadRequestError("since must be an integer") from exc
    items = journal.snapshot()
    return json_response(200, {key: [describe(item) for item in items[since:]], "next": len(items)})
