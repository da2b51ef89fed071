"""FcmHttpClient, the HTTP/1.1 transport under firebase-admin: framing, reuse, timeouts,
TLS and proxies, against real sockets (scripted servers, a TLS relay, a CONNECT proxy)."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cloud.channels.fcm import FCM_ORIGIN, FcmHttpClient, FcmSender, FcmSettings, PushMessage
from cloud.channels.retry import NO_RETRY
from sandbox.fcm import FcmSandbox, make_token
from sandbox.smtp import self_signed_certificate
from tests.cloud.channels.conftest import PROJECT

SEND_URL = f"{FCM_ORIGIN}/v1/projects/{PROJECT}/messages:send"
OK_BODY = b'{"name":"projects/p/messages/1"}'

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ScriptedServer:
    """An asyncio TCP server in a thread; each connection runs `script`. Counts connections."""

    def __init__(self, script: Script) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._script = script
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            await self._script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            for writer in self._writers:
                writer.transport.abort()
            await asyncio.sleep(0)  # let the closed transports' callbacks release their sockets

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def run(coroutine: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coroutine

    return asyncio.run(main())


async def exchange(client: FcmHttpClient, count: int = 1) -> list[Any]:
    await client.open()
    try:
        return [
            (await client.request("post", SEND_URL, headers={"X-Test": "1"}, json={"n": n})).json()
            for n in range(count)
        ]
    finally:
        await client.aclose()


def never_reauthorize(_refused: str) -> None:
    raise AssertionError("no 401 expected")


def client_for(port: int, *, timeout_s: float = 5.0, scheme: str = "http") -> FcmHttpClient:
    return FcmHttpClient(
        f"{scheme}://127.0.0.1:{port}", timeout_s=timeout_s, reauthorize=never_reauthorize
    )


def test_keep_alive_answers_reuse_one_connection(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY)

    server = serve(script)

    replies = run(exchange(client_for(server.port), count=3))

    assert replies == [json.loads(OK_BODY)] * 3
    assert server.connections == 1
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(f"POST /v1/projects/{PROJECT}/messages:send HTTP/1.1".encode())
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"X-Test: 1" in head
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"n": 0}


def test_chunked_answers_and_interim_answers_are_framed(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5\r\n" + OK_BODY[:5] + b"\r\n")
            rest = OK_BODY[5:]
            writer.write(b"%x\r\n" % len(rest) + rest + b"\r\n0\r\n\r\n")

    server = serve(script)

    replies = run(exchange(client_for(server.port), count=2))

    assert replies == [json.loads(OK_BODY)] * 2
    assert server.connections == 1


def test_an_answer_ending_with_the_connection_is_read_whole_and_not_reused(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + OK_BODY)
        await writer.drain()

    server = serve(script)

    replies = run(exchange(client_for(server.port), count=2))

    assert replies == [json.loads(OK_BODY)] * 2
    assert server.connections == 2


def test_a_connection_the_server_closed_while_idle_is_replaced(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # Keep-alive promised, then the server drops the idle connection anyway.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY)
        await writer.drain()

    server = serve(script)
    client = client_for(server.port)

    async def two_apart() -> list[Any]:
        await client.open()
        try:
            first = await client.request("post", SEND_URL, json={})
            await asyncio.sleep(0.2)  # the server's close reaches the idle connection
            second = await client.request("post", SEND_URL, json={})
            return [first.json(), second.json()]
        finally:
            await client.aclose()

    assert run(two_apart()) == [json.loads(OK_BODY)] * 2
    assert server.connections == 2


def test_http_errors_carry_the_response_the_sdk_parses(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    error = b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}'

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n"
            % len(error)
            + error
        )

    server = serve(script)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        run(exchange(client_for(server.port)))

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers; returns when the client gives up

    server = serve(script)

    with pytest.raises(httpx.ReadTimeout):
        run(exchange(client_for(server.port, timeout_s=0.2)))


def test_a_malformed_answer_is_a_protocol_error(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
        await reader.read()

    server = serve(script)

    with pytest.raises(httpx.RemoteProtocolError):
        run(exchange(client_for(server.port)))


def test_a_line_break_in_a_header_is_refused_before_sending(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    server = serve(script)
    client = client_for(server.port)

    async def inject() -> None:
        await client.open()
        try:
            await client.request("post", SEND_URL, headers={"X-Evil": "a\r\nX-Other: b"}, json={})
        finally:
            await client.aclose()

    with pytest.raises(ValueError, match="line break"):
        run(inject())
    assert server.connections == 0


def test_only_the_configured_origin_is_served(fcm_server: FcmSandbox) -> None:
    client = FcmHttpClient(fcm_server.url, timeout_s=5, reauthorize=never_reauthorize)

    async def elsewhere() -> None:
        await client.open()
        try:
            await client.request("get", "https://iid.googleapis.com/iid/info/x")
        finally:
            await client.aclose()

    with pytest.raises(ValueError, match="only sends to"):
        run(elsewhere())


def test_a_refused_token_is_reauthorized_once_then_the_401_stands(
    fcm_server: FcmSandbox,
) -> None:
    asked: list[str] = []

    def reauthorize(refused: str) -> dict[str, str] | None:
        asked.append(refused)
        return None  # the token endpoint refuses too

    client = FcmHttpClient(fcm_server.url, timeout_s=5, reauthorize=reauthorize)
    client.auth_headers = {"authorization": "Bearer forged"}

    with pytest.raises(httpx.HTTPStatusError) as raised:
        run(exchange(client))

    assert raised.value.response.status_code == 401
    assert asked == ["Bearer forged"]


def push(token: str) -> PushMessage:
    return PushMessage(token=token, title="20% off", body="Only today", idempotency_key="k1")


def test_the_sender_reaches_an_https_endpoint_with_the_configured_ca_bundle(
    fcm_server: FcmSandbox,
    fcm_credentials: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    upstream = ("127.0.0.1", urlsplit(fcm_server.url).port or 80)

    class Relay(socketserver.BaseRequestHandler):
        """TLS in front, the plain local FCM server behind."""

        def handle(self) -> None:
            with (
                server_tls.wrap_socket(self.request, server_side=True) as front,
                socket.create_connection(upstream) as back,
            ):
                while True:
                    readable, _, _ = select.select([front, back], [], [], 5)
                    if not readable:
                        return
                    for source in readable:
                        data = source.recv(65536)
                        if not data:
                            return
                        (back if source is front else front).sendall(data)

    tls_front = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Relay)
    tls_front.daemon_threads = True
    threading.Thread(target=tls_front.serve_forever, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    settings = FcmSettings(
        project_id=PROJECT,
        credentials_file=str(fcm_credentials),
        endpoint=f"https://127.0.0.1:{tls_front.server_address[1]}",
    )
    try:
        with FcmSender(settings, retry=NO_RETRY) as sender:
            [result] = sender.send([push(make_token())])
    finally:
        tls_front.shutdown()
        tls_front.server_close()

    assert result.ok, result
    assert len(fcm_server.received.snapshot()) == 1


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def test_the_sender_tunnels_through_the_environment_proxy(
    fcm_server: FcmSandbox,
    fcm_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tunnels: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, rest = head.split(b" ", 2)
        if method == b"CONNECT":
            tunnels.append(head.split(b"\r\n", 1)[0])
            host, _, port = target.decode().partition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # google-auth's requests (token, boundary lookup) come in absolute form
            url = urlsplit(target.decode())
            upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
            upstream_writer.write(b" ".join([method, url.path.encode(), rest]))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    front = ScriptedServer(proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{front.port}")
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=fcm_server.url
    )
    try:
        client = FcmHttpClient(fcm_server.url, timeout_s=5, reauthorize=never_reauthorize)
        assert client._proxy == f"http://127.0.0.1:{front.port}"
        with FcmSender(settings, retry=NO_RETRY) as sender:
            monkeypatch.delenv("HTTP_PROXY")  # settled at start: the sends still tunnel
            results = sender.send([push(make_token()), push(make_token())])
    finally:
        front.close()

    assert all(r.ok for r in results), results
    port = urlsplit(fcm_server.url).port
    # A tunnel per pooled connection (the two sends go out at once).
    assert tunnels
    assert set(tunnels) == {f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()}


def test_a_silent_server_gives_deadline_exceeded_which_is_transient(
    serve: Callable[[Script], ScriptedServer], fcm_server: FcmSandbox, fcm_credentials: Path
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    silent = serve(script)
    settings = FcmSettings(
        project_id=PROJECT,
        credentials_file=str(fcm_credentials),
        endpoint=f"http://127.0.0.1:{silent.port}",
        timeout_s=0.2,
    )

    with FcmSender(settings, retry=NO_RETRY) as sender:
        [result] = sender.send([push(make_token())])

    assert result.error_code == "DEADLINE_EXCEEDED"
    assert result.transient


def test_an_endpoint_with_a_path_keeps_it(serve: Callable[[Script], ScriptedServer]) -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY)
        await reader.read()

    server = serve(script)
    client = FcmHttpClient(
        f"http://127.0.0.1:{server.port}/fcm/", timeout_s=5, reauthorize=never_reauthorize
    )

    run(exchange(client))

    assert seen[0].startswith(f"POST /fcm/v1/projects/{PROJECT}/messages:send ".encode())
