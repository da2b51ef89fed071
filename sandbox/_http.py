"""A small threaded HTTP/1.1 server that the provider stand-ins share.

The standard library's server is enough for loopback traffic and keeps the stand-ins free
of extra dependencies. Three settings matter for realistic clients:
- keep-alive (HTTP/1.1) with buffered writes and TCP_NODELAY, otherwise every response is
  split into two segments and Nagle plus delayed ACK cost ~40 ms per request;
- a deep listen backlog, because firebase-admin opens up to 100 connections at once;
- bounded request bodies, so a broken client gets a 413 instead of exhausting memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

#: Larger than any provider accepts (FCM: 4 KB data, Web Push: 4 KB record), small enough
#: that a runaway client cannot hurt the process.
MAX_BODY_BYTES = 1 << 20

#: firebase-admin's send_each opens up to 100 pooled connections in the same instant.
LISTEN_BACKLOG = 1024

#: How long `start()` waits for the listening thread before calling the start broken.
STARTUP_TIMEOUT_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], router: Router, name: str) -> None:
        self.router = router
        self.sandbox_name = name
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self._connections_lock:
            self._connections.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections so a stopped server really stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: status line, headers and body leave in one segment
    server: _Server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        response = self._respond(method)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def _respond(self, method: str) -> Response:
        split = urlsplit(self.path)
        body_or_error = self._read_body()
        if isinstance(body_or_error, Response):
            self.close_connection = True
            return body_or_error
        handler, params, path_known = self.server.router.dispatch(method, split.path)
        if handler is None:
            status = 405 if path_known else 404
            return json_response(status, {"error": f"{method} {split.path} is not served here"})
        request = Request(
            method=method,
            path=split.path,
            query=parse_qs(split.query),
            headers=self.headers,
            body=body_or_error,
            params=params,
        )
        try:
            return handler(request)
        except BadRequestError as exc:
            return json_response(400, {"error": str(exc)})
        except Exception:
            logger.exception(
                "%s: handler for %s %s failed", self.server.sandbox_name, method, split.path
            )
            return json_response(500, {"error": "internal error in the local server"})

    def _read_body(self) -> bytes | Response:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return json_response(
                411, {"error": "send a Content-Length; chunked bodies are not accepted"}
            )
        raw_length = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return json_response(400, {"error": f"bad Content-Length {raw_length!r}"})
        if length < 0:
            return json_response(400, {"error": f"bad Content-Length {raw_length!r}"})
        if length > MAX_BODY_BYTES:
            return json_response(413, {"error": f"body of {length} bytes exceeds {MAX_BODY_BYTES}"})
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: " + format, self.server.sandbox_name, *args)


class LocalHTTPServer:
    """Serves a Router on a loopback port from a background thread.

    Use as a context manager in tests, or `serve_forever()` in a process of its own.
    Port 0 picks a free port; `url` is known once the socket is bound (in __init__).
    """

    def __init__(
        self, router: Router, *, host: str = "127.0.0.1", port: int = 0, name: str = "sandbox"
    ) -> None:
        self._server = _Server((host, port), router, name)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = int(self._server.server_address[1])
        self.name = name

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            return
        started = threading.Event()

        def run() -> None:
            started.set()
            self._server.serve_forever(poll_interval=0.05)

        self._thread = threading.Thread(target=run, name=f"{self.name}-http", daemon=True)
        self._thread.start()
        if not started.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"{self.name}: server thread did not start")

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=STARTUP_TIMEOUT_S)
            self._thread = None
        self._server.drop_connections()
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the process entry points use this)."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def interrupt(self) -> None:
        """Make a `serve_forever()` running in another thread return (signal handlers use it)."""
        threading.Thread(target=self._server.shutdown, daemon=True).start()


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
