"""A shop's webhook endpoint for the outbound webhook tests: a real local HTTP server that
records every request, answers as scripted (200 unless told otherwise), and can be made
to hang until released, like a shop server that stopped answering."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

#: How long a hanging request waits to be released before it answers anyway.
HANG_LIMIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes


class ShopEndpoint:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._script: dict[str, deque[tuple[int, dict[str, str]]]] = defaultdict(deque)
        #: Paths whose requests hang until `release` is set.
        self.hanging: set[str] = set()
        self.release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def script(self, path: str, *answers: tuple[int, dict[str, str]]) -> None:
        """The next answers to requests on `path`, in order; then 200 again."""
        with self._lock:
            self._script[path].extend(answers)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        with self._lock:
            self._lock.wait_for(lambda: len(self._received) >= count, timeout=timeout_s)
            return list(self._received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with endpoint._lock:
                    endpoint._received.append(Received(
                        path=self.path, body=body,
                        headers={name.lower(): value for name, value in self.headers.items()},
                    ))
                    endpoint._lock.notify_all()
                    answers = endpoint._script[self.path]
                    status, headers = answers.popleft() if answers else (200, {})
                if self.path in endpoint.hanging:
                    endpoint.release.wait(HANG_LIMIT_S)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
