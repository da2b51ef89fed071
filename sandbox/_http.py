"""A small asyncio HTTP/1.1 server that the provider stand-ins share.

The stand-ins answer clients that send hundreds of requests at once (firebase-admin's
batch send keeps a hundred connections busy), and a benchmark measures our senders
against them, so the server is event-driven and lean: one thread runs an asyncio loop,
each connection is a protocol object fed by httptools (the llhttp C parser), and a
complete request is answered from the parser's callback with one write. A thread per
connection would spend its core switching threads; a framework's per-request objects
would cost more than the stand-ins' handlers. Handlers stay plain synchronous functions
from Request to Response; they run on the loop and must not block (the stand-ins'
handlers only check, record and answer). Settings that matter for realistic clients:
- keep-alive (HTTP/1.1, pipelining answered in order) with TCP_NODELAY, otherwise Nagle
  plus delayed ACK cost ~40 ms per request;
- a deep listen backlog, because firebase-admin opens up to 100 connections at once;
- bounded request heads and bodies, so a broken client gets a 431 or 413 instead of
  exhausting memory; chunked bodies are refused (411) as the providers' APIs never need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
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
from urllib.parse import parse_qs, urlsplit

import httptools

logger = logging.getLogger(__name__)

#: Larger than any provider accepts (FCM: 4 KB data, Web Push: 4 KB record), small enough
#: that a runaway client cannot hurt the process.
MAX_BODY_BYTES = 1 << 20

#: Request line plus headers; real clients send a few hundred bytes.
MAX_HEAD_BYTES = 64 * 1024

#: firebase-admin's send_each opens up to 100 pooled connections in the same instant.
LISTEN_BACKLOG = 1024

#: After refusing a request the server closes its side but keeps reading (and dropping)
#: what the client still sends for this long: closing a socket with unread data resets
#: the connection, and the client would lose the answer that says why.
LINGER_S = 2.0

#: How long `start()` waits for the listening thread before calling the start broken.
STARTUP_TIMEOUT_S = 5.0

T = TypeVar("T")


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively; repeated fields joined by ", "."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Sequence[tuple[str, str]] = ()) -> None:
        self._fields: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            previous = self._fields.get(key)
            self._fields[key] = value if previous is None else f"{previous}, {value}"

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    #: Case-insensitive, as HTTP header names are (see Headers).
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


def _refuse_body(headers: Mapping[str, str]) -> Response | None:
    """The answer for a body this server will not read, before reading it (or None)."""
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        return json_response(
            411, {"error": "send a Content-Length; chunked bodies are not accepted"}
        )
    raw_length = headers.get("Content-Length", "0") or "0"
    try:
        length = int(raw_length)
    except ValueError:
        return json_response(400, {"error": f"bad Content-Length {raw_length!r}"})
    if length < 0:
        return json_response(400, {"error": f"bad Content-Length {raw_length!r}"})
    if length > MAX_BODY_BYTES:
        return json_response(413, {"error": f"body of {length} bytes exceeds {MAX_BODY_BYTES}"})
    return None


class _RefusedError(Exception):
    """Raised from a parser callback to stop reading a request that is answered already."""


class _HttpDate:
    """The Date header, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = email.utils.formatdate(second, usegmt=True)
        return self._text


def _encode(response: Response, *, close: bool, date: str) -> bytes:
    """Status line, headers and body in one buffer: one write, one TCP segment."""
    try:
        reason = http.HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    head = [f"HTTP/1.1 {response.status} {reason}", f"Date: {date}", "Server: vitrina-sandbox"]
    head.extend(f"{name}: {value}" for name, value in response.headers.items())
    head.append(f"Content-Length: {len(response.body)}")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


class _Connection(asyncio.Protocol):
    """One client connection: httptools parses, each complete request is answered in order.

    Answers are written from the parser's callbacks, so pipelined requests get their
    answers in order without any per-request task. A request the server will not read
    (chunked or oversized body, oversized head, malformed) is answered and the connection
    closed, since the rest of its bytes cannot be framed.
    """

    def __init__(self, server: LocalHTTPServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._fields: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._headers = Headers()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server._connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server._connections.discard(self._transport)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering after a refusal: drop what the client still sends
        try:
            self._parser.feed_data(data)
        except _RefusedError:
            pass
        except httptools.HttpParserError as exc:
            if not isinstance(exc.__context__, _RefusedError):
                self._answer(json_response(400, {"error": f"bad request: {exc}"}), close=True)

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))
        self._grow_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self._headers = Headers(self._fields)
        refusal = _refuse_body(self._headers)
        if refusal is not None:
            self._refuse(refusal)
        if self._headers.get("Expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("ascii", "replace")
        target = self._url.decode("latin-1")
        body = b"".join(self._body)
        response = self._server._respond(method, target, self._headers, body)
        self._answer(response, close=not self._parser.should_keep_alive())

    # -- helpers ---------------------------------------------------------------------------

    def _grow_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(
                json_response(431, {"error": f"request head exceeds {MAX_HEAD_BYTES} bytes"})
            )

    def _refuse(self, response: Response) -> None:
        self._answer(response, close=True)
        raise _RefusedError

    def _answer(self, response: Response, *, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._closing:
            return
        transport.write(_encode(response, close=close, date=self._server._date.now()))
        if close:
            self._closing = True
            if transport.can_write_eof():
                transport.write_eof()
                asyncio.get_running_loop().call_later(LINGER_S, transport.close)
            else:
                transport.close()


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
        self._connections: set[asyncio.Transport] = set()
        self._date = _HttpDate()
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
            self._thread.join(timeout=STARTUP_TIMEOUT_S)
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
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await loop.create_server(
            lambda: _Connection(self), sock=self._socket, backlog=LISTEN_BACKLOG
        )
        self._loop = loop
        if self._interrupted:
            self._stopping.set()
        if started is not None:
            started.set()
        try:
            await self._stopping.wait()
        finally:
            self._loop = None
            server.close()
            # Handlers run to completion inside a callback: no request is half-answered.
            for transport in list(self._connections):
                transport.abort()
            self._connections.clear()
            await server.wait_closed()

    def _respond(self, method: str, target: str, headers: Headers, body: bytes) -> Response:
        split = urlsplit(target)
        handler, params, path_known = self._router.dispatch(method, split.path)
        if handler is None:
            status = 405 if path_known else 404
            return json_response(status, {"error": f"{method} {split.path} is not served here"})
        request = Request(
            method=method,
            path=split.path,
            query=parse_qs(split.query),
            headers=headers,
            body=body,
            params=params,
        )
        try:
            return handler(request)
        except BadRequestError as exc:
            return json_response(400, {"error": str(exc)})
        except Exception:
            logger.exception("%s: handler for %s %s failed", self.name, method, split.path)
            return json_response(500, {"error": "internal error in the local server"})


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
