"""A push provider that answers slowly and takes only a few connections at a time.

The other stand-ins (sandbox.fcm, sandbox.webpush) check what they are sent and answer at
once, from a deep listen backlog. This one checks nothing (no credentials, no payloads)
and models capacity instead, on plain blocking sockets:

- `listen(backlog)` with a small backlog: the kernel holds at most that many connections
  the server has not accepted yet; past it, a new connection's SYN is dropped and the
  client's kernel sends it again 1 s, 3 s, 7 s later;
- at most `workers` connections are served at a time (a thread each): the next is
  accepted only when one closes. A request written on a connection still in the backlog
  waits there, and is read (and delivered) when its connection's turn comes, whether or
  not the client is still waiting for the answer;
- a send is answered `delay_s` after its request was read whole; it counts as delivered
  from that read on, as at a provider that stores a message, then answers;
- a connection is closed after `keepalive_requests` requests or `idle_s` without one
  (Apache's MaxKeepAliveRequests and KeepAliveTimeout), or after a request that asks for
  it (`Connection: close`).

It speaks enough of both protocols for the senders: FCM v1's send, Google's OAuth token
endpoint (any assertion gets a token) and the IAM access-boundary lookup google-auth makes
after it, answered at once and on connections closed after the answer; and RFC 8030's
push, answered 201. Deliveries are counted per collapse key (FCM: the message's
`data.dedupe_key`; Web Push: the `Topic` header), so a test reads how often each message
arrived, and `unanswered` counts deliveries whose client was gone when the answer came.

    python -m sandbox.slow --workers 4 --backlog 4 --delay 0.1   # prints {"url": ...}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import select
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Self

FCM_SEND = re.compile(r"/v1/projects/[^/]+/messages:send")
WEB_PUSH = re.compile(r"/push/(?P<id>[A-Za-z0-9_\-]+)")
BOUNDARY = re.compile(r"/v1/projects/-/serviceAccounts/[^/]+/allowedLocations")
#: A request's line and headers may not be longer (they are a few hundred bytes).
MAX_HEAD_BYTES = 16 * 1024
#: How often the accepting thread looks whether it should stop.
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class SlowProvider:
    """The provider on a loopback port; `with SlowProvider(workers=2) as slow: slow.url`."""

    def __init__(
        self, *, workers: int = 4, backlog: int = 4, delay_s: float = 0.05,
        keepalive_requests: int = 100, idle_s: float = 2.0, host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.workers, self.backlog, self.delay_s = workers, backlog, delay_s
        self.keepalive_requests, self.idle_s = keepalive_requests, idle_s
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(backlog)
        self._listener.settimeout(POLL_S)
        self.host, self.port = host, int(self._listener.getsockname()[1])
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        #: Sends delivered, by collapse key.
        self.deliveries: Counter[str] = Counter()
        #: Deliveries whose answer could not be written (the client had gone).
        self.unanswered = 0
        #: Connections accepted, and the most served at once.
        self.accepted = 0
        self.peak_open = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def duplicates(self) -> dict[str, int]:
        """Collapse keys delivered more than once, with their counts."""
        with self._lock:
            return {key: count for key, count in self.deliveries.items() if count > 1}

    def delivered(self) -> int:
        """Sends delivered, duplicates included."""
        with self._lock:
            return sum(self.deliveries.values())

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self._acceptor is None:
            self._acceptor = threading.Thread(target=self._accept, name="slow-accept",
                                              daemon=True)
            self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        with self._lock:
            still_open = list(self._open)
        for connection in still_open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def serve_until_terminated(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        self.start()
        with contextlib.suppress(KeyboardInterrupt):
            while not self._stopping.wait(0.5):
                pass
        self.stop()

    # -- serving --------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=POLL_S):
                continue  # every worker busy: the rest wait in the backlog
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, OSError):
                self._slots.release()
                continue
            with self._lock:
                self._open.add(connection)
                self.accepted += 1
                self.peak_open = max(self.peak_open, len(self._open))
            threading.Thread(target=self._serve, args=(connection,), name="slow-conn",
                             daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(self.idle_s)
            reader = connection.makefile("rb")
            for served in range(1, self.keepalive_requests + 1):
                request = _read_request(reader)
                if request is None or self._stopping.is_set():
                    break
                status, fields, body, close = self._answer(request)
                close = (close or served == self.keepalive_requests
                         or request.headers.get("connection", "").lower() == "close")
                sent = not _peer_gone(connection) and self._write(
                    connection, status, fields, body, close=close
                )
                if not sent and _is_send(request):
                    with self._lock:
                        self.unanswered += 1
                if close or not sent:
                    break
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._open.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()
            self._slots.release()

    def _answer(self, request: _Request) -> tuple[int, dict[str, str], bytes, bool]:
        """Status, headers, body, and whether to close the connection after it."""
        if request.method == "POST" and request.path == "/token":
            token = {"access_token": "slow-token", "expires_in": 3600, "token_type": "Bearer"}
            return 200, _JSON, json.dumps(token).encode(), True
        if request.method == "GET" and BOUNDARY.fullmatch(request.path):
            return 200, _JSON, b'{"locations":[],"encodedLocations":"0x0"}', True
        if request.method == "POST" and FCM_SEND.fullmatch(request.path):
            key = _fcm_key(request.body)
            self._deliver(key)
            time.sleep(self.delay_s)
            return 200, _JSON, json.dumps({"name": f"projects/p/messages/{key}"}).encode(), False
        push = WEB_PUSH.fullmatch(request.path) if request.method == "POST" else None
        if push is not None:
            key = request.headers.get("topic") or push["id"]
            self._deliver(key)
            time.sleep(self.delay_s)
            return 201, {"Location": f"{self.url}/message/{key}"}, b"", False
        return 404, _JSON, b'{"error":"not served here"}', False

    def _deliver(self, key: str) -> None:
        with self._lock:
            self.deliveries[key] += 1

    def _write(self, connection: socket.socket, status: int, fields: dict[str, str],
               body: bytes, *, close: bool) -> bool:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}",
                f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in fields.items()]
        if close:
            head.append("Connection: close")
        try:
            connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        except OSError:
            return False
        return True


_JSON = {"Content-Type": "application/json; charset=UTF-8"}
_REASONS = {200: "OK", 201: "Created", 404: "Not Found"}


def _read_request(reader: BinaryIO) -> _Request | None:
    """The next request on a connection; None when the client closed it or went idle."""
    try:
        line = reader.readline(MAX_HEAD_BYTES)
    except TimeoutError:
        return None
    if not line.strip():
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        field = reader.readline(MAX_HEAD_BYTES)
        size += len(field)
        if not field or size > MAX_HEAD_BYTES:
            raise ValueError("request head cut short or too long")
        if field in (b"\r\n", b"\n"):
            break
        name, _, value = field.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = reader.read(length) if length else b""
    if len(body) != length:
        raise ValueError("request body cut short")
    return _Request(method, path.split("?", 1)[0], headers, body)


def _is_send(request: _Request) -> bool:
    return request.method == "POST" and bool(
        FCM_SEND.fullmatch(request.path) or WEB_PUSH.fullmatch(request.path)
    )


def _peer_gone(connection: socket.socket) -> bool:
    """The client closed or reset the connection (it gave up waiting for the answer)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _fcm_key(body: bytes) -> str:
    """The collapse key of an FCM send (its token when it has none)."""
    try:
        message = json.loads(body)["message"]
        data = message.get("data") or {}
        return str(data.get("dedupe_key") or message.get("token"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.slow", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backlog", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--keepalive-requests", type=int, default=100)
    parser.add_argument("--idle", type=float, default=2.0)
    args = parser.parse_args(argv)
    provider = SlowProvider(
        workers=args.workers, backlog=args.backlog, delay_s=args.delay,
        keepalive_requests=args.keepalive_requests, idle_s=args.idle, port=args.port,
    )
    print(json.dumps({"url": provider.url}), flush=True)
    provider.serve_until_terminated()
    return 0


if __name__ == "__main__":
    sys.exit(main())
