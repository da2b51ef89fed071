"""The FCM sender's HTTP side: FcmHttpClient (aiohttp under firebase-admin) against real
sockets (scripted servers, a TLS relay, a CONNECT proxy), and the firebase-admin internals
it relies on (cloud.channels.fcm_sdk), checked against the installed release."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import firebase_admin
import httpx
import pytest
from firebase_admin import credentials, messaging

from cloud.channels import fcm_sdk
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
    received: list[bytes] = []
    closed = threading.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())
        closed.set()

    server = serve(script)
    client = client_for(server.port)

    async def inject() -> None:
        await client.open()
        try:
            await client.request("post", SEND_URL, headers={"X-Evil": "a\r\nX-Other: b"}, json={})
        finally:
            await client.aclose()

    with pytest.raises(ValueError, match="control character"):
        run(inject())
    if server.connections:  # aiohttp may connect before it checks the headers
        assert closed.wait(5)
    assert b"X-Other" not in b"".join(received)


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


class TlsRelay:
    """TLS in front (a self-signed certificate for 127.0.0.1), the plain local FCM server
    behind."""

    def __init__(self, upstream_url: str, directory: Path) -> None:
        self.cert, key = self_signed_certificate(directory)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(self.cert, key)
        upstream = ("127.0.0.1", urlsplit(upstream_url).port or 80)

        class Relay(socketserver.BaseRequestHandler):
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

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Relay)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def tls_relay(fcm_server: FcmSandbox, tmp_path: Path) -> Iterator[TlsRelay]:
    relay = TlsRelay(fcm_server.url, tmp_path)
    yield relay
    relay.close()


def test_the_sender_reaches_an_https_endpoint_with_the_configured_ca_bundle(
    fcm_server: FcmSandbox,
    fcm_credentials: Path,
    tls_relay: TlsRelay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_relay.cert))
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=tls_relay.url
    )

    with FcmSender(settings, retry=NO_RETRY) as sender:
        [result] = sender.send([push(make_token())])

    assert result.ok, result
    assert len(fcm_server.received.snapshot()) == 1


def test_an_untrusted_certificate_is_refused_as_unavailable(
    fcm_server: FcmSandbox, fcm_credentials: Path, tls_relay: TlsRelay
) -> None:
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=tls_relay.url
    )

    with FcmSender(settings, retry=NO_RETRY) as sender:
        [result] = sender.send([push(make_token())])

    assert result.error_code == "UNAVAILABLE"
    assert fcm_server.received.snapshot() == []


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class Proxy(ScriptedServer):
    """An HTTP proxy: CONNECT tunnels, and plain requests in absolute form (google-auth's
    token request to an http:// token_uri) forwarded on a connection of their own."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        super().__init__(self._proxy)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.seen.append(head.split(b"\r\n", 1)[0])
        method, target, rest = head.split(b" ", 2)
        if method == b"CONNECT":
            host, _, port = target.decode().partition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target.decode())
            upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
            path = url.path + (f"?{url.query}" if url.query else "")
            upstream_writer.write(b" ".join([method, path.encode(), rest]))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def test_the_sender_tunnels_through_the_environment_proxy(
    fcm_server: FcmSandbox,
    fcm_credentials: Path,
    tls_relay: TlsRelay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As it would reach Google from behind a proxy: HTTPS_PROXY, CONNECT, then TLS."""
    proxy = Proxy()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_relay.cert))
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=tls_relay.url
    )
    try:
        with FcmSender(settings, retry=NO_RETRY) as sender:
            assert sender._http.proxy == f"http://127.0.0.1:{proxy.port}"
            for name in ("HTTPS_PROXY", "HTTP_PROXY"):
                monkeypatch.delenv(name)  # settled at start: the sends still go through it
            results = sender.send([push(make_token()), push(make_token())])
    finally:
        proxy.close()

    assert all(r.ok for r in results), results
    relay = urlsplit(tls_relay.url).netloc.encode()
    assert b"CONNECT " + relay + b" HTTP/1.1" in proxy.seen
    assert len(fcm_server.received.snapshot()) == 2


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


# -- firebase-admin's internals (cloud.channels.fcm_sdk) -------------------------------------


def test_the_installed_firebase_admin_is_a_tested_release() -> None:
    """Fails when firebase-admin moves past the releases the sender was tested with: run
    this module and tests/cloud/channels/test_fcm.py against the new release, check the
    contract in cloud/channels/fcm_sdk.py, then widen TESTED_RANGE and the pin together."""
    assert fcm_sdk.version_tested(), (
        f"firebase-admin {firebase_admin.__version__} is outside the tested range "
        f"{fcm_sdk.TESTED_RANGE} (cloud/channels/fcm_sdk.py)"
    )
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    pins = re.findall(r'"firebase-admin([^"]*)"', pyproject)
    assert pins == [fcm_sdk.TESTED_RANGE], (
        f"pyproject.toml pins firebase-admin{pins}, cloud/channels/fcm_sdk.py was tested "
        f"with {fcm_sdk.TESTED_RANGE}"
    )


def test_the_sdk_still_has_the_shape_the_sender_relies_on(fcm_credentials: Path) -> None:
    version = firebase_admin.__version__
    service_class = getattr(messaging, "_MessagingService", None)
    assert service_class is not None, f"firebase-admin {version}: messaging._MessagingService"
    send_each = getattr(service_class, "send_each_async", None)
    assert send_each is not None, f"firebase-admin {version}: _MessagingService.send_each_async"
    source = inspect.getsource(send_each)
    assert "self._async_client.request(" in source, (
        f"firebase-admin {version}: _MessagingService.send_each_async no longer sends "
        "through self._async_client.request()"
    )
    assert "except httpx.HTTPError" in source, (
        f"firebase-admin {version}: _MessagingService.send_each_async no longer maps "
        "httpx.HTTPError, which FcmHttpClient raises"
    )
    assert callable(getattr(service_class, "encode_message", None)), (
        f"firebase-admin {version}: _MessagingService.encode_message"
    )
    app = firebase_admin.initialize_app(
        credentials.Certificate(str(fcm_credentials)),
        options={"projectId": PROJECT},
        name="shape-check",
    )
    try:
        ours = FcmHttpClient(None, timeout_s=5, reauthorize=never_reauthorize)
        original = fcm_sdk.install_client(app, ours)
        assert messaging._get_messaging_service(app)._async_client is ours
        run(original.aclose())
    finally:
        firebase_admin.delete_app(app)


def test_a_changed_sdk_shape_is_refused_naming_the_version_and_attribute(
    fcm_credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a release that renamed the method would look like.
    monkeypatch.delattr(messaging._MessagingService, "send_each_async")
    settings = FcmSettings(project_id=PROJECT, credentials_file=str(fcm_credentials))

    with pytest.raises(fcm_sdk.SdkShapeError) as raised:
        FcmSender(settings)

    message = str(raised.value)
    assert f"firebase-admin {firebase_admin.__version__}" in message
    assert "_MessagingService.send_each_async" in message
    assert raised.value.attribute == "_MessagingService.send_each_async"
