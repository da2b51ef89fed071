"""The shared loopback HTTP server: routing, limits, failures, lifecycle."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from sandbox.web import (
    MAX_BODY_BYTES,
    MAX_FIELD_BYTES,
    Journal,
    LocalHTTPServer,
    Request,
    Response,
    Router,
    json_response,
)


def echo(request: Request) -> Response:
    return json_response(
        200, {"id": request.params["id"], "body": request.json(), "q": request.query}
    )


def boom(_request: Request) -> Response:
    raise RuntimeError("handler bug")


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    router = Router()
    router.add("POST", r"/items/(?P<id>\w+)", echo)
    router.add("GET", r"/boom", boom)
    with_server = LocalHTTPServer(router, name="test")
    with_server.start()
    yield with_server
    with_server.stop()


def test_routes_params_query_and_json(server: LocalHTTPServer) -> None:
    response = requests.post(f"{server.url}/items/a1?x=1&x=2", json={"k": "v"}, timeout=5)

    assert response.json() == {"id": "a1", "body": {"k": "v"}, "q": {"x": ["1", "2"]}}


def test_keep_alive_requests_are_not_delayed(server: LocalHTTPServer) -> None:
    with requests.Session() as session:
        session.post(f"{server.url}/items/w", json=1, timeout=5)
        started = time.perf_counter()
        for _ in range(20):
            session.post(f"{server.url}/items/w", json=1, timeout=5)
        elapsed = time.perf_counter() - started

    # Nagle plus delayed ACK would cost ~40 ms per request: 20 of them at least 0.8 s.
    assert elapsed < 0.5


def test_a_failing_handler_is_a_500_and_the_server_goes_on(server: LocalHTTPServer) -> None:
    assert requests.get(f"{server.url}/boom", timeout=5).status_code == 500
    assert requests.post(f"{server.url}/items/b", json=2, timeout=5).status_code == 200


def test_oversized_and_chunked_bodies_are_refused(server: LocalHTTPServer) -> None:
    too_big = requests.post(f"{server.url}/items/c", data=b"x" * (MAX_BODY_BYTES + 1), timeout=5)
    chunked = requests.post(f"{server.url}/items/c", data=iter([b"{}"]), timeout=5)

    assert too_big.status_code == 413
    assert chunked.status_code == 411


def test_bad_content_length_is_a_400(server: LocalHTTPServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /items/d HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        assert sock.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request")


def test_stop_closes_kept_alive_connections() -> None:
    router = Router()
    router.add("POST", r"/items/(?P<id>\w+)", echo)
    server = LocalHTTPServer(router)
    server.start()
    session = requests.Session()
    session.post(f"{server.url}/items/e", json=1, timeout=5)

    server.stop()

    with pytest.raises(requests.ConnectionError):
        session.post(f"{server.url}/items/e", json=1, timeout=5)


def test_journal_wait_for_wakes_on_append() -> None:
    journal: Journal[int] = Journal()
    threading.Timer(0.05, journal.append, args=(7,)).start()

    assert journal.wait_for(1, timeout_s=5) == [7]
    assert len(journal) == 1
    journal.clear()
    assert journal.snapshot() == []


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` whole answers (each with a Content-Length) from a raw socket."""
    buffer = b""
    answers: list[bytes] = []
    while len(answers) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end]
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            end = head_end + 4 + length
            if len(buffer) >= end:
                answers.append(buffer[:end])
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers"
        buffer += chunk
    return answers


def test_pipelined_requests_are_answered_in_order(server: LocalHTTPServer) -> None:
    requests_bytes = b"".join(
        b"POST /items/p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (n, n)
        for n in range(3)
    )
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(requests_bytes)
        answers = read_answers(sock, 3)

    bodies = [answer.split(b"\r\n\r\n", 1)[1] for answer in answers]
    assert [b'"id":"p%d"' % n in body for n, body in enumerate(bodies)] == [True] * 3


def test_an_oversized_head_is_refused(server: LocalHTTPServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /boom HTTP/1.1\r\nX-Big: " + b"a" * (MAX_FIELD_BYTES + 1) + b"\r\n\r\n")
        assert sock.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request")


def test_expect_continue_and_http_1_0_close(server: LocalHTTPServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /items/q HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        [answer] = read_answers(sock, 1)
        # An HTTP/1.0 client gets an HTTP/1.0 answer, which ends the connection.
        assert answer.startswith(b"HTTP/1.0 200")
        assert sock.recv(100) == b""  # the server closed its side


def test_headers_are_case_insensitive() -> None:
    router = Router()
    router.add(
        "GET",
        r"/h",
        lambda request: json_response(
            200, {"agent": request.header("x-agent"), "Agent": request.headers["X-AGENT"]}
        ),
    )
    with_server = LocalHTTPServer(router)
    with_server.start()
    try:
        answer = requests.get(f"{with_server.url}/h", headers={"X-Agent": "a"}, timeout=5)
    finally:
        with_server.stop()

    assert answer.json() == {"agent": "a", "Agent": "a"}
